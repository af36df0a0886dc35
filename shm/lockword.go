package shm

import (
	"context"
	"time"

	"github.com/usysv/usysv/kernel"
)

// LockWord is the value the lock word holds while this process holds the
// lock (its image's identity: sentinel tid and start time, mutex.go), for a hot path that keeps it: LockAs and
// TryLockAs then take the lock with one inlined CAS, without looking the
// caller's identity up.
func LockWord() uint64 { return me() }

// LockAs is Lock given this process's LockWord. It returns what Lock
// returns.
func (m *Mutex) LockAs(lockWord uint64) (ownerDied bool) {
	if m.word.CompareAndSwap(0, lockWord) {
		raceAcquire(m.futex)
		return false
	}
	return m.lockWait()
}

// TryLockAs is TryLock given this process's LockWord.
func (m *Mutex) TryLockAs(lockWord uint64) bool {
	if m.word.CompareAndSwap(0, lockWord) {
		raceAcquire(m.futex)
		return true
	}
	return false
}

// LockAsWithin is LockAs for a call that may stop waiting: once ctx ends
// it returns ctx.Err(), and once deadline passes (the zero time: never)
// kernel.ETIMEDOUT, in both cases without the lock. A free lock is taken
// whatever ctx and deadline say. (A stopped holder keeps the lock for as
// long as it is stopped: this is how a call with a time limit keeps to
// its limit all the same.)
func (m *Mutex) LockAsWithin(ctx context.Context, deadline time.Time, lockWord uint64) (ownerDied bool, err error) {
	if m.word.CompareAndSwap(0, lockWord) {
		raceAcquire(m.futex)
		return false, nil
	}
	if ctx.Done() == nil && deadline.IsZero() {
		return m.lockSlow(nil)
	}
	return m.lockSlow(&giveUp{ctx: ctx, deadline: deadline})
}

// giveUp is what ends a LockAsWithin wait early.
type giveUp struct {
	ctx      context.Context
	deadline time.Time
	slept    bool // the waiter has slept: it may hold a wake-up (ended)
	// From the first sleep, ctx's end wakes the lock's sleepers (all of
	// them: which one is this waiter is not known), again every
	// millisecond until the waiter has left (left closed): the first
	// wake-up may come just before the waiter's FUTEX_WAIT.
	stop       func() bool
	left, gone chan struct{}
}

// ended is called before each sleep. It returns the error that ends the
// wait, if there is one: then it first passes on the wake-up the waiter
// may have taken, for Unlock wakes its sleepers one at a time and the
// next taker must not be left asleep. Otherwise it lowers *until to the
// deadline and arms ctx's wake-up.
func (g *giveUp) ended(m *Mutex, until *time.Time) error {
	err := g.ctx.Err()
	if err == nil && !g.deadline.IsZero() && !time.Now().Before(g.deadline) {
		err = kernel.ETIMEDOUT
	}
	if err != nil {
		if g.slept {
			_, _ = kernel.FutexWake(m.futex, 1)
		}
		_ = g.done()
		return err
	}
	if g.deadline.Before(*until) && !g.deadline.IsZero() {
		*until = g.deadline
	}
	if g.stop == nil && g.ctx.Done() != nil {
		g.left, g.gone = make(chan struct{}), make(chan struct{})
		g.stop = context.AfterFunc(g.ctx, func() {
			defer close(g.gone)
			t := time.NewTicker(time.Millisecond)
			defer t.Stop()
			for {
				_, _ = kernel.FutexWake(m.futex, 1<<30)
				select {
				case <-g.left:
					return
				case <-t.C:
				}
			}
		})
	}
	g.slept = true
	return nil
}

// done disarms ctx's wake-up as the waiter leaves, and waits for it to end
// if it runs, so that it makes no wake-up after the call returned (nil g:
// nothing to do). It returns nil, for lockSlow's returns.
func (g *giveUp) done() error {
	if g == nil || g.stop == nil {
		return nil
	}
	close(g.left)
	if !g.stop() {
		<-g.gone
	}
	g.stop = nil
	return nil
}
