//go:build race

package shm

import (
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The race detector sees no synchronisation through mapped memory (it
// ignores atomics outside the Go heap), so goroutines of one process that
// hand data over through the segment lock would look racy. Lock and Unlock
// therefore also acquire and release a Go-heap object standing for the lock
// word at that mapped address.

var raceObjs sync.Map // uintptr (mapped address of a lock word) → *uint64

func raceObj(w *atomic.Uint32) unsafe.Pointer {
	v, ok := raceObjs.Load(uintptr(unsafe.Pointer(w)))
	if !ok {
		v, _ = raceObjs.LoadOrStore(uintptr(unsafe.Pointer(w)), new(uint64))
	}
	return unsafe.Pointer(v.(*uint64))
}

const raceOn = true

func raceAcquire(w *atomic.Uint32) { runtime.RaceAcquire(raceObj(w)) }
func raceRelease(w *atomic.Uint32) { runtime.RaceReleaseMerge(raceObj(w)) }
