//go:build !race

package sem

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A caller whose goroutines change its op array while Op runs (a data race
// of theirs, so not built with -race) gets what it gets, but cannot leave
// the set locked: the unguarded lean section checks each semaphore number
// it uses again (semop copies the array, which cost the lean path 20%).
// Before, a number changed out of range after lean's first check panicked
// in that section, lock held, and every later op on the set waited for
// ever.
func TestRacyCallerArray(t *testing.T) {
	s := newSet(t, 2)
	ctx := context.Background()
	require.NoError(t, s.Op(ctx, b(0, 1, 0), b(1, 1, 0))) // (opens the gate)
	ops := []Buf{b(0, 1, 0), b(1, -1, IPC_NOWAIT)}
	var stop atomic.Bool
	flipped := make(chan struct{})
	go func() {
		defer close(flipped)
		for i := 0; !stop.Load(); i++ {
			ops[1].Num = uint16(1 + i&1*59999) // 1, 60000, 1, ...
		}
	}()
	calls := make(chan struct{})
	go func() {
		defer close(calls)
		for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); {
			func() {
				defer func() { _ = recover() }()
				_ = s.Op(ctx, ops...)
				_ = s.Op(ctx, b(0, -1, IPC_NOWAIT), b(1, 1, 0))
			}()
		}
	}()
	select {
	case <-calls:
		stop.Store(true)
		<-flipped
	case <-time.After(10 * time.Second):
		stop.Store(true)
		s.mu.Abandon() // (as if the holder had died, so that the cleanup can go on)
		t.Fatal("calls on the set are stuck: a panic left the lock held")
	}
	require.NoError(t, s.Op(ctx, b(0, 1, 0), b(1, 1, 0)), "the set is usable")
	assert.NoError(t, s.check())
}
