package shm

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestCoLocation(t *testing.T) {
	var w atomic.Uint64
	var c CoLocation
	cpu := 0
	getcpu := func() int { return cpu }
	ask := func(pid uint32) bool { return c.same(&w, pid, getcpu) }
	assert.False(t, ask(1), "nobody asked before: no news of a peer")
	assert.Equal(t, uint64(1)<<32|1, w.Load(), "the call is recorded: pid, cpu+1")

	// The peer (pid 2) begins a spin on CPU 0; our next ask, one in
	// coLocEvery, sees it there.
	w.Store(2<<32 | 1)
	for i := 1; i < coLocEvery; i++ {
		assert.False(t, ask(1), "between asks: the last answer")
	}
	assert.Equal(t, uint64(2)<<32|1, w.Load(), "only one call in coLocEvery asks")
	assert.True(t, ask(1), "the peer began its spin on this CPU")
	for i := 1; i < coLocEvery; i++ {
		assert.True(t, ask(1), "between asks: the last answer")
	}

	// Then the peer moves to CPU 1.
	w.Store(2<<32 | 2)
	assert.False(t, ask(1))

	// Our own last call is no news: the answer stays.
	c.co.Store(true)
	for i := 1; i < coLocEvery; i++ {
		ask(1)
	}
	cpu = 1
	assert.True(t, ask(1), "this process asked last: the last answer stays")
	assert.Equal(t, uint64(1)<<32|2, w.Load())
}

func TestCoLocationYieldBacksOff(t *testing.T) {
	var c CoLocation
	calls := 0
	fast := func() { calls++ }
	slow := func() { calls++; time.Sleep(yieldSlow) }
	c.yield(fast)
	c.yield(fast)
	assert.Equal(t, 2, calls, "fast yields: every call yields")

	// A slow yield turns the next yieldSkip off, a second one in a row
	// twice as many.
	c.yield(slow)
	for range yieldSkip {
		c.yield(slow)
	}
	assert.Equal(t, 3, calls, "skipped after a slow yield")
	c.yield(slow)
	assert.Equal(t, 4, calls)
	for range 2 * yieldSkip {
		c.yield(slow)
	}
	assert.Equal(t, 4, calls, "twice as many skipped after a second slow one")

	// A fast yield ends the doubling: the next slow one skips yieldSkip.
	c.yield(fast)
	c.yield(slow)
	for range yieldSkip {
		c.yield(fast)
	}
	assert.Equal(t, 6, calls)
	c.yield(fast)
	assert.Equal(t, 7, calls)

	// The doubling stops at yieldSkip<<10.
	c.slow.Store(40)
	c.yield(slow)
	assert.Equal(t, int32(yieldSkip<<10), c.skip.Load())
}
