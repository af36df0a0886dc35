//go:build !race

package shm

import "sync/atomic"

// raceAcquire and raceRelease tell the race detector about the segment
// lock (see race.go); without -race they are nothing.
const raceOn = false

func raceAcquire(*atomic.Uint32) {}
func raceRelease(*atomic.Uint32) {}
