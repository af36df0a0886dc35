package testutil

import (
	"context"
	"time"
)

// LostWakeupContext returns a context whose deadline passes after d but
// whose Done channel never closes: what a sleeper sees when the wake-up
// its context's expiry sends is lost (a process that can write a segment
// can rewrite the futex word it was sent on). A blocking call given it
// must still return once the deadline passes.
func LostWakeupContext(d time.Duration) context.Context {
	return lostWakeup{Context: context.Background(), end: time.Now().Add(d), done: make(chan struct{})}
}

type lostWakeup struct {
	context.Context
	end  time.Time
	done chan struct{}
}

func (c lostWakeup) Deadline() (time.Time, bool) { return c.end, true }
func (c lostWakeup) Done() <-chan struct{}       { return c.done }
func (c lostWakeup) Err() error {
	if time.Now().Before(c.end) {
		return nil
	}
	return context.DeadlineExceeded
}
