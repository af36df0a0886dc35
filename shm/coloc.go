package shm

import (
	"sync/atomic"
	"time"

	"github.com/usysv/usysv/kernel"
)

// CoLocation tells a spinner whether the peer it waits for runs on its
// CPU, so that it yields the CPU between looks (sched_yield) instead of
// holding it: peers that hand work back and forth are often put on one
// CPU by the scheduler (they wake each other, and neither ever sleeps),
// and then every look without a yield only delays the answer. On
// separate CPUs a yield costs a system call per look, and delays the
// answer as much.
//
// Each object keeps one word saying which process last began a spin, and
// on which CPU (pid<<32 | cpu+1); a handle keeps a CoLocation, its last
// answer. Only one call of Same in coLocEvery asks again (the others take
// the last answer): getcpu(2) is a real system call here (several hundred
// nanoseconds on this VM, under mitigations), and the peer's answer, which
// often comes during it, waits for it. Asked at the start of every spin it
// took a quarter of a 1P→1C stream's receiving time; asked by every
// ping-pong spin, a third of the round trip (both measured in package msgq,
// where this began).
//
// A handle yields through its CoLocation too (Yield), which stops
// yielding for a while when a yield turns out slow.
//
// Yields alone do not always part the two. In make bench's semaphore
// ping-pong the pair stayed on one CPU, handing the semaphore over by
// yields at 6.5–8.7 µs a round trip against 0.2–0.3 µs apart, for the
// whole run, in 5 of 13 runs of `usysv bench -case sem` (the handles'
// own answers: together at 8112 of 8480 asks), while the other CPU was
// idle. Why the scheduler left them there is not settled (its load
// balancer leaves a task that ran within the last half millisecond
// where it is until balancing has failed a few times, and two peers
// that yield to each other always have). So when Same finds the peer on
// this CPU, the process with the higher pid (one of the two, so that
// they do not both move, perhaps to the same CPU) moves itself to
// another CPU its affinity mask allows (kernel.MoveOffCPU, which leaves
// the mask as it was) and records where it went. It does so at most
// once per gap, which doubles (from hopMin up to hopMax) while a move
// does not last: on a machine with no idle CPU the scheduler soon puts
// the two together again, and moving costs a few system calls and a
// migration. With it (and package sem's spin after a wake-up, which a
// parted pair needed), none of 20 such runs stayed together.
type CoLocation struct {
	co    atomic.Bool
	ask   atomic.Int32
	skip  atomic.Int32 // yields still to skip after a slow one
	slow  atomic.Int32 // slow yields in a row
	moved atomic.Int64 // when this handle last moved off its peer's CPU (Unix ns)
	gap   atomic.Int64 // how long after that it may move again (0: hopMin)
}

// coLocEvery: one call of Same in coLocEvery asks getcpu.
const coLocEvery = 16

// Same reports whether the process that last began a spin on the object
// whose word is w (in ping-pong: the peer, spinning for this call's
// answer) did so on the CPU this one runs on; pid is this process's.
func (c *CoLocation) Same(w *atomic.Uint64, pid uint32) bool {
	return c.same(w, pid, kernel.Getcpu, kernel.MoveOffCPU)
}

func (c *CoLocation) same(w *atomic.Uint64, pid uint32, getcpu func() int, moveOff func(cpu int) bool) bool {
	if c.ask.Add(1)%coLocEvery == 1 {
		cpu := getcpu()
		co, peer := swapCPU(w, pid, cpu)
		if peer != 0 {
			if co && pid > peer && c.mayMove(time.Now().UnixNano()) && moveOff(cpu) {
				w.Store(cpuWord(pid, getcpu()))
				co = false
			}
			c.co.Store(co)
		}
	}
	return c.co.Load()
}

// mayMove reports whether the handle may move off its peer's CPU now, and
// if so counts the move: not within gap of the last one, and gap doubles
// when this one comes within twice gap of it (that move did not last).
func (c *CoLocation) mayMove(now int64) bool {
	last, gap := c.moved.Load(), c.gap.Load()
	if gap == 0 {
		gap = int64(hopMin)
	}
	switch d := now - last; {
	case d < gap:
		return false
	case d < 2*gap:
		gap = min(2*gap, int64(hopMax))
	default:
		gap = int64(hopMin)
	}
	c.gap.Store(gap)
	c.moved.Store(now)
	return true
}

const (
	hopMin = time.Millisecond
	hopMax = time.Second
)

func cpuWord(pid uint32, cpu int) uint64 { return uint64(pid)<<32 | uint64(cpu+1) }

// swapCPU records a call of process pid on cpu as the latest in w and
// compares it with the one before, of process peer. peer is 0 when this
// process asked last (no news of the peer), or nobody had.
func swapCPU(w *atomic.Uint64, pid uint32, cpu int) (co bool, peer uint32) {
	me := cpuWord(pid, cpu)
	prev := w.Swap(me)
	if prev>>32 == me>>32 || prev == 0 {
		return false, 0
	}
	return uint32(prev) == uint32(me), uint32(prev >> 32)
}

// Yield is sched_yield(2), for a spinner whose peer may need its CPU.
//
// On Linux's EEVDF scheduler a yield moves the yielder's deadline a whole
// slice back: when other threads want the CPU too, the yielder may wait
// milliseconds to run again, while its peer waits for it (measured here,
// two CPUs with two CPU-bound processes besides a semaphore ping-pong: a
// p99 round trip of 4 ms, and a mean ten times the kernel's). So a yield
// that kept the caller off its CPU for yieldSlow or more turns this
// handle's yields off for its next yieldSkip calls of Yield, twice as many
// after each further slow one in a row (up to yieldSkip<<10); the handle
// then spins without yielding and sleeps when its spin ends, as it would
// on a busy machine anyway. A fast yield ends the doubling.
func (c *CoLocation) Yield() { c.yield(kernel.SchedYield) }

func (c *CoLocation) yield(sched func()) {
	if c.skip.Load() > 0 {
		c.skip.Add(-1)
		return
	}
	t := time.Now()
	sched()
	if time.Since(t) < yieldSlow {
		if c.slow.Load() != 0 {
			c.slow.Store(0)
		}
		return
	}
	c.skip.Store(yieldSkip << min(c.slow.Add(1)-1, 10))
}

const (
	yieldSlow = 200 * time.Microsecond
	yieldSkip = 64
)
