package shm

import (
	"runtime"
	"sync/atomic"
	"time"

	"github.com/usysv/usysv/kernel"
)

// Mutex is the segment's robust lock, shared by every process that maps it.
//
// Lock word (32 bits):
//
//	bit 31      lockWaiters: someone may be sleeping in FUTEX_WAIT on the word
//	bits 0..29  pid of the holder (0: unlocked)
//
// The holder also records pid<<32 | low 32 bits of its start time in the
// owner word, so that a waiter can tell a dead holder from a live one even
// after the pid is reused. A holder that dies leaves the lock held; the next
// process that wants it finds the holder dead, takes the lock over, and is
// told so (Lock returns true) so that it repairs what the holder left half
// done before going on. Deaths are noticed at once when the registry wakes
// the lock's sleepers after a client died, and otherwise within
// LivenessInterval.
//
// Goroutines of one process share the pid; the lock is not reentrant.
type Mutex struct {
	word  *atomic.Uint32
	owner *atomic.Uint64
}

const (
	lockWaiters = 1 << 31
	lockPidMask = 1<<30 - 1
)

// LivenessInterval bounds how long a waiter sleeps on the lock before it
// checks whether the holder is still alive.
const LivenessInterval = 100 * time.Millisecond

// Lock returns the segment's mutex.
func (s *Segment) Lock() *Mutex {
	return &Mutex{word: &s.h.lock, owner: &s.h.lockOwnr}
}

// TryLock takes the lock if it is free, without waiting.
func (m *Mutex) TryLock() bool {
	pid, start := kernel.Self()
	if m.word.CompareAndSwap(0, uint32(pid)) {
		m.owner.Store(uint64(pid)<<32 | uint64(uint32(start)))
		raceAcquire(m.word)
		return true
	}
	return false
}

// Lock takes the lock, waiting as long as it takes. It returns true when the
// previous holder died while holding it: the caller now holds the lock and
// must repair the state the lock protects before relying on it.
func (m *Mutex) Lock() (ownerDied bool) {
	if m.TryLock() {
		return false
	}
	return m.lockSlow()
}

func (m *Mutex) lockSlow() bool {
	pid, start := kernel.Self()
	me := uint32(pid)
	// Spin briefly: critical sections are a few hundred nanoseconds.
	for i := 0; i < 100; i++ {
		if w := m.word.Load(); w == 0 && m.word.CompareAndSwap(0, me) {
			m.owner.Store(uint64(pid)<<32 | uint64(uint32(start)))
			raceAcquire(m.word)
			return false
		}
		if i >= 90 {
			runtime.Gosched()
		}
	}
	for {
		w := m.word.Load()
		if w == 0 {
			// Having slept, take it with the waiters bit set so that our
			// Unlock wakes whoever else sleeps.
			if m.word.CompareAndSwap(0, me|lockWaiters) {
				m.owner.Store(uint64(pid)<<32 | uint64(uint32(start)))
				raceAcquire(m.word)
				return false
			}
			continue
		}
		if w&lockWaiters == 0 && !m.word.CompareAndSwap(w, w|lockWaiters) {
			continue
		}
		err := kernel.FutexWait(m.word, w|lockWaiters, time.Now().Add(LivenessInterval))
		if err == nil && m.word.Load() != w|lockWaiters {
			continue
		}
		if w2 := m.word.Load(); w2 == w|lockWaiters && m.holderDead(w2&lockPidMask) {
			if m.word.CompareAndSwap(w2, me|lockWaiters) {
				m.owner.Store(uint64(pid)<<32 | uint64(uint32(start)))
				raceAcquire(m.word)
				return true
			}
		}
	}
}

func (m *Mutex) holderDead(pid uint32) bool {
	if pid == 0 {
		return false
	}
	if self, _ := kernel.Self(); int(pid) == self {
		return false // another goroutine of ours
	}
	st, err := kernel.ProcessStartTime(int(pid))
	if err != nil {
		return true
	}
	if o := m.owner.Load(); uint32(o>>32) == pid && uint32(o) != uint32(st) {
		return true // the pid now names another process
	}
	return false
}

// Unlock releases the lock and wakes one sleeper if there may be any.
//
// The owner record is cleared first: the next holder stores its own only
// after its CAS of the word, and in between a waiter must not match the new
// holder's pid against this holder's start time (after pid reuse the two
// can share a pid, and the live holder would look dead).
func (m *Mutex) Unlock() {
	raceRelease(m.word)
	m.owner.Store(0)
	if m.word.Swap(0)&lockWaiters != 0 {
		_, _ = kernel.FutexWake(m.word, 1)
	}
}

// Holder returns the pid holding the lock, or 0.
func (m *Mutex) Holder() int { return int(m.word.Load() & lockPidMask) }

// RecoverIfDead takes the lock over if its holder is dead, and reports
// whether it did: the caller then holds the lock, repairs and unlocks.
func (m *Mutex) RecoverIfDead() bool {
	w := m.word.Load()
	if w == 0 || !m.holderDead(w&lockPidMask) {
		return false
	}
	pid, start := kernel.Self()
	if !m.word.CompareAndSwap(w, uint32(pid)|lockWaiters) {
		return false
	}
	m.owner.Store(uint64(pid)<<32 | uint64(uint32(start)))
	raceAcquire(m.word)
	return true
}

func (m *Mutex) wakeAll() {
	if m.word.Load()&lockWaiters != 0 {
		_, _ = kernel.FutexWake(m.word, 1<<30)
	}
}
