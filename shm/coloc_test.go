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
	moves := 0
	moveOff := func(int) bool { moves++; return true }
	ask := func(pid uint32) bool { return c.same(&w, pid, getcpu, moveOff) }
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
	assert.Zero(t, moves, "the peer's pid is the higher: it is the one to move")
}

func TestCoLocationMoves(t *testing.T) {
	var w atomic.Uint64
	var c CoLocation
	cpu := 0
	var movedFrom []int
	getcpu := func() int { return cpu }
	moveOff := func(from int) bool { movedFrom = append(movedFrom, from); cpu = 1 - from; return true }
	ask := func() bool {
		for i := 1; i < coLocEvery; i++ { // to the call that asks
			c.same(&w, 3, getcpu, moveOff)
		}
		return c.same(&w, 3, getcpu, moveOff)
	}

	// The peer (pid 2, lower than ours) spins on our CPU: we move.
	w.Store(2<<32 | 1)
	assert.False(t, ask(), "moved: no longer on the peer's CPU")
	assert.Equal(t, []int{0}, movedFrom)
	assert.Equal(t, uint64(3)<<32|2, w.Load(), "where it went is recorded for the peer")

	// Together again at once: not before hopMin has passed.
	w.Store(2<<32 | 2)
	assert.True(t, ask(), "too soon to move again")
	assert.Len(t, movedFrom, 1)

	// A move that cannot be made (one CPU allowed) leaves the answer:
	// together.
	c.moved.Store(0)
	c.gap.Store(0)
	w.Store(2<<32 | 2)
	moveOff = func(from int) bool { movedFrom = append(movedFrom, from); return false }
	assert.True(t, ask())
	assert.Equal(t, []int{0, 1}, movedFrom, "tried")
	assert.Equal(t, uint64(3)<<32|2, w.Load())
}

func TestCoLocationMoveBacksOff(t *testing.T) {
	var c CoLocation
	ms := int64(time.Millisecond)
	now := int64(1000 * time.Second)
	assert.True(t, c.mayMove(now), "the first move")
	assert.False(t, c.mayMove(now+ms/2), "within hopMin of it")
	assert.True(t, c.mayMove(now+ms), "hopMin later")
	assert.Equal(t, 2*ms, c.gap.Load(), "together again within twice the gap: the gap doubles")
	assert.False(t, c.mayMove(now+2*ms))
	assert.True(t, c.mayMove(now+3*ms))
	assert.Equal(t, 4*ms, c.gap.Load())
	c.gap.Store(int64(hopMax))
	assert.True(t, c.mayMove(now+3*ms+int64(hopMax)))
	assert.Equal(t, int64(hopMax), c.gap.Load(), "no more than hopMax")
	assert.True(t, c.mayMove(now+5*ms+3*int64(hopMax)))
	assert.Equal(t, ms, c.gap.Load(), "a move that lasted: back to hopMin")
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
