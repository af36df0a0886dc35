// Package clock is a coarse wall clock in whole seconds, cheap enough for
// every semop and msgsnd to stamp otime / stime with it.
//
// Now costs one atomic load while the clock is in use. A timer keeps the
// cached second current by firing at each second boundary; it stops when
// a whole second passes with no call to Now, so an idle process has no
// timer at all, and at once when a caller is about to sleep in the kernel
// (Park): on this kind of machine every wake-up of an otherwise idle Go
// process costs it about 0.4 ms of CPU (the runtime's monitor
// thread wakes with it), which the last ticks of a blocked waiter's clock
// would otherwise spend. While the timer is stopped, Now reads the wall
// clock (time.Now, tens of ns), and only the armAfter-th such call arms
// the timer again: a process that sleeps between every few calls (a
// ping-pong whose partner sleeps) would otherwise arm it after each
// wake-up, and arming a timer that is now the runtime's earliest wakes
// its network poller (a write(2) and an epoll_pwait(2) on the path of the
// call that woke up, measured: a few µs added to each post). The value
// may lag the true second by the timer's latency, as the kernel's own
// ktime_get_real_seconds lags by up to a tick.
package clock

import (
	"sync"
	"sync/atomic"
	"time"
)

const (
	stopped = iota // no timer; cached value stale
	running        // timer armed, nobody called Now since it last fired
	used           // timer armed and Now was called since it last fired
)

// armAfter is how many calls of Now while the timer is stopped arm it.
const armAfter = 64

var (
	state  atomic.Uint32
	cached atomic.Int64
	cold   atomic.Uint32 // calls of Now since the timer stopped

	mu  sync.Mutex  // arms and stops tmr
	tmr *time.Timer // fires tick at the next second boundary; nil until first used
)

// Now returns the current Unix time in seconds. Its common case inlines.
func Now() int64 {
	if state.Load() == used {
		return cached.Load()
	}
	return nowSlow()
}

func nowSlow() int64 {
	switch state.Load() {
	case used:
		return cached.Load()
	case running:
		if state.CompareAndSwap(running, used) {
			return cached.Load()
		}
	}
	now := time.Now()
	advance(now.Unix())
	if cold.Add(1) >= armAfter && state.CompareAndSwap(stopped, used) {
		cold.Store(0)
		mu.Lock()
		arm(now)
		mu.Unlock()
	}
	return now.Unix()
}

// arm sets the timer for the second boundary after now. mu held.
func arm(now time.Time) {
	d := now.Truncate(time.Second).Add(time.Second).Sub(now)
	if tmr == nil {
		tmr = time.AfterFunc(d, tick)
	} else {
		tmr.Reset(d)
	}
}

// advance sets the cached second to sec unless it is already later (a
// caller that read the clock before a boundary and stores after one that
// read it after must not put it back).
func advance(sec int64) {
	for {
		c := cached.Load()
		if c >= sec || cached.CompareAndSwap(c, sec) {
			return
		}
	}
}

// tick updates the cached second at a boundary, and arms the timer for the
// next one if Now was called since the last, else stops.
func tick() {
	now := time.Now()
	advance(now.Unix())
	mu.Lock()
	defer mu.Unlock()
	for {
		switch state.Load() {
		case used:
			if state.CompareAndSwap(used, running) {
				arm(now)
				return
			}
		case running:
			if state.CompareAndSwap(running, stopped) {
				return
			}
		default: // stopped by Park, and perhaps not yet restarted
			return
		}
	}
}

// Park tells the clock that its caller is about to sleep in the kernel:
// the timer stops now rather than at the next boundaries, and the next
// calls to Now (from any goroutine) read the wall clock until one of them
// arms it again (armAfter).
// If the timer has just fired (its tick waits for mu), or Now is arming it
// (likewise), the state goes back to running: that tick, unless Now is
// called meanwhile, is the last.
func Park() {
	cold.Store(0)
	if state.Load() == stopped {
		return
	}
	mu.Lock()
	if tmr != nil && tmr.Stop() {
		state.Store(stopped)
	} else {
		state.CompareAndSwap(used, running)
	}
	mu.Unlock()
}
