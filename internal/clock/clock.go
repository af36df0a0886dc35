// Package clock is a coarse wall clock in whole seconds, cheap enough for
// every semop and msgsnd to stamp otime / stime with it.
//
// Now costs two atomic loads while the clock is in use. A goroutine keeps the
// cached second current by sleeping until each second boundary; it stops
// when a whole second passes with no call to Now, so an idle process has no
// timer at all. The value may lag the true second by the timer's latency,
// as the kernel's own ktime_get_real_seconds lags by up to a tick.
package clock

import (
	"sync/atomic"
	"time"
)

const (
	stopped = iota // no ticker; cached value stale
	running        // ticker running, nobody called Now since its last tick
	used           // ticker running and Now was called since its last tick
)

var (
	state  atomic.Uint32
	cached atomic.Int64
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
	now := time.Now().Unix()
	cached.Store(now)
	if state.CompareAndSwap(stopped, used) {
		go tick()
	}
	return now
}

func tick() {
	for {
		now := time.Now()
		next := now.Truncate(time.Second).Add(time.Second)
		time.Sleep(next.Sub(now))
		cached.Store(time.Now().Unix())
		if state.CompareAndSwap(used, running) {
			continue
		}
		if state.CompareAndSwap(running, stopped) {
			return
		}
	}
}
