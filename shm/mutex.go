package shm

import (
	"errors"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/usysv/usysv/internal/clock"
	"github.com/usysv/usysv/kernel"
)

// Mutex is the segment's robust lock, shared by every process that maps it.
//
// Lock word (64 bits, one CAS takes it):
//
//	bits 32..63  low 32 bits of the holder's start time (kernel.Self)
//	bit  31      lockWaiters: someone may be sleeping in FUTEX_WAIT
//	bits  0..29  pid of the holder (0: unlocked)
//
// The futex is the low 32 bits (the word is little-endian). Because pid and
// start time are set by the same CAS, a waiter always sees a consistent
// pair: it can tell a dead holder from a live one even after the pid is
// reused, without a second store on the fast path. Taking and releasing
// the lock are one locked instruction each.
//
// A holder that dies leaves the lock held; the next process that wants it
// finds the holder dead, takes the lock over, and is told so (Lock returns
// true) so that it repairs what the holder left half done before going on.
// Deaths are noticed at once when the registry wakes the lock's sleepers
// after a client died, and otherwise within LivenessInterval. A stopped
// (SIGSTOP) holder is alive and is never taken over.
//
// Goroutines of one process share the pid; the lock is not reentrant.
type Mutex struct {
	word         *atomic.Uint64
	futex        *atomic.Uint32 // the low half of word
	section      *atomic.Uint64 // the holder's critical-section counter (Enter)
	sectionPlain *uint64        // the same word, for Unlock's plain increment
	deadGen      *atomic.Uint32 // the segment's dead generation
	// The last holder a waiter found alive (its lock word without the
	// waiters bit) and the dead generation before it looked: until the
	// generation moves, that holder is not looked up in /proc again (a
	// read of /proc/pid/stat costs microseconds, on every contended wait).
	aliveHolder atomic.Uint64
	aliveGen    atomic.Uint32
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
	return &Mutex{word: &s.h.lock, futex: s.lockFutex, section: &s.h.section,
		sectionPlain: plainWord(&s.h.section), deadGen: &s.h.deadGen}
}

// me is this process's lock word.
func me() uint64 {
	pid, start := kernel.Self()
	return uint64(uint32(start))<<32 | uint64(pid)
}

// TryLock takes the lock if it is free, without waiting.
func (m *Mutex) TryLock() bool {
	if m.word.CompareAndSwap(0, me()) {
		raceAcquire(m.futex)
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
	mine := me()
	checked := false
	// Spin briefly: critical sections are a few hundred nanoseconds.
	for i := 0; i < 100; i++ {
		if w := m.word.Load(); w == 0 && m.word.CompareAndSwap(0, mine) {
			raceAcquire(m.futex)
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
			if m.word.CompareAndSwap(0, mine|lockWaiters) {
				raceAcquire(m.futex)
				return false
			}
			continue
		}
		if w&lockWaiters == 0 {
			if !m.word.CompareAndSwap(w, w|lockWaiters) {
				continue
			}
			w |= lockWaiters
		}
		if !checked {
			// Before the first sleep, ask whether the holder lives: a
			// waiter that arrives after the registry woke everyone for
			// this death would otherwise sleep a whole LivenessInterval.
			// A holder found alive since the last death the registry
			// reported needs no second look: if it has died since, the
			// registry's wake-up for that death comes after this read.
			checked = true
			holder, gen := w&^lockWaiters, m.deadGen.Load()
			if m.aliveHolder.Load() == holder && m.aliveGen.Load() == gen {
				continue
			}
			if holderDead(w) {
				if m.word.CompareAndSwap(w, mine|lockWaiters) {
					raceAcquire(m.futex)
					return true
				}
			} else {
				m.aliveGen.Store(gen)
				m.aliveHolder.Store(holder)
			}
			continue
		}
		clock.Park()
		err := kernel.FutexWait(m.futex, uint32(w), time.Now().Add(LivenessInterval))
		if w2 := m.word.Load(); err == nil && w2 != w {
			if uint32(w2) == uint32(w) {
				checked = false // the same holder, another start time: abandoned (Abandon)
			}
			continue
		}
		if m.word.Load() == w && holderDead(w) && m.word.CompareAndSwap(w, mine|lockWaiters) {
			raceAcquire(m.futex)
			return true
		}
	}
}

// holderDead reports whether the holder named by lock word w is gone: no
// such process, a zombie, or a process with that pid but another start time.
func holderDead(w uint64) bool {
	pid := uint32(w) & lockPidMask
	if pid == 0 {
		return false
	}
	if self, start := kernel.Self(); int(pid) == self {
		// Another goroutine of ours, unless the word names a start time
		// that is not ours: a lock we abandoned (Abandon).
		return uint32(w>>32) != uint32(start)
	}
	st, err := kernel.ProcessStartTime(int(pid))
	if err != nil {
		// Gone (or a zombie); any other error (this process out of file
		// descriptors, say) says nothing, and a live holder's lock must
		// not be taken: the caller looks again later.
		return errors.Is(err, kernel.ESRCH)
	}
	return uint32(st) != uint32(w>>32)
}

// Unlock releases the lock and wakes one sleeper if there may be any. It
// ends the holder's section (Enter), if it opened one.
func (m *Mutex) Unlock() {
	// StoreOwned(m.section, m.section.Load()+1), written so that Unlock
	// stays within the inliner's budget on amd64 (with raceRelease only in
	// race builds): as a call, Unlock cost the lean path of short arrays
	// about 5 ns.
	if plainStores {
		*m.sectionPlain++
	} else {
		StoreOwned(m.section, m.section.Load()+1)
	}
	if raceOn {
		raceRelease(m.futex)
	}
	if m.word.Swap(0)&lockWaiters != 0 {
		m.wakeOne()
	}
}

// wakeOne is Unlock's wake-up, out of line so that Unlock inlines.
//
//go:noinline
func (m *Mutex) wakeOne() { _, _ = kernel.FutexWake(m.futex, 1) }

// Abandon gives up the lock, held by the calling goroutine, as if this
// process had died holding it, for a critical section that a panic cuts
// short (a segment corrupted beyond what the code expects). A plain
// Unlock would publish whatever the section left half done; a lock left
// held would stop every process for good, since this one lives on (a
// recovered panic). So the lock word keeps this pid but takes a start
// time that is not this process's, which no live holder's word has: the
// next process or goroutine that wants the lock finds its holder dead,
// takes it over and repairs (Lock returns true), as after a kill -9 at
// the same instruction. Sleepers are woken to look.
func (m *Mutex) Abandon() {
	StoreOwned(m.section, m.section.Load()+1)
	for {
		w := m.word.Load()
		if m.word.CompareAndSwap(w, w^abandonFlip) {
			break
		}
	}
	raceRelease(m.futex)
	_, _ = kernel.FutexWake(m.futex, 1<<30)
}

// Critical sections. A goroutine that has taken the lock calls Enter and
// defers a guard (each kind has its own: sem and msgq) that, if a panic
// unwinds its stack while Open says its section is still open, handles it
// as a death at that point (the kind repairs at once, or, if that panics
// too, abandons the lock: Abandon) before the panic goes on. The guard
// must know that this goroutine, and not another of the same process,
// holds the lock: a panic may come after the section's Unlock, while
// another goroutine holds the lock. The section counter in the header
// says so: the holder alone writes it, Enter and Unlock (and Abandon) each
// add one, so a section's number is the counter's value from its Enter
// until its Unlock, and never again.
//
// The counter shares the lock word's cache line, which the holder has
// just written: Enter, Unlock's increment and a guard that finds its
// section closed cost a few plain loads and stores.

// Enter opens a critical section of the calling goroutine, which holds the
// lock, and returns its number, for Open.
func (m *Mutex) Enter() uint64 {
	t := m.section.Load() + 1
	StoreOwned(m.section, t)
	return t
}

// Open reports whether section t (Enter) is still open: its goroutine
// holds the lock and has not unlocked since.
func (m *Mutex) Open(t uint64) bool { return m.section.Load() == t }

// Abandon marks waiter slot w, held by the calling process, as if this
// process had died holding it: its Life is marked dead and its start time
// becomes one that is not this process's, so that wakers skip it and the
// next repair frees it (or does what its kind does with a dead process's
// slot), as after a kill -9. The kinds' guards use it for the slots a call
// held when a panic cut its section short.
func (w *WaiterSlot) Abandon() {
	w.Life.Abandon()
	w.Start.Store(w.Start.Load() ^ abandonFlip)
}

// abandonFlip turns a holder's start time into one that is not its own.
const abandonFlip = 0xffffffff << 32

// Holder returns the pid holding the lock, or 0.
func (m *Mutex) Holder() int { return int(uint32(m.word.Load()) & lockPidMask) }

// RecoverIfDead takes the lock over if its holder is dead, and reports
// whether it did: the caller then holds the lock, repairs and unlocks.
func (m *Mutex) RecoverIfDead() bool {
	w := m.word.Load()
	if w == 0 || !holderDead(w) {
		return false
	}
	for !m.word.CompareAndSwap(w, me()|lockWaiters) {
		// Only the waiters bit may have changed (a waiter went to sleep):
		// the dead holder is still there, so try again.
		w2 := m.word.Load()
		if w2&^lockWaiters != w&^lockWaiters {
			return false
		}
		w = w2
	}
	raceAcquire(m.futex)
	return true
}

func (m *Mutex) wakeAll() {
	if m.word.Load()&lockWaiters != 0 {
		_, _ = kernel.FutexWake(m.futex, 1<<30)
	}
}
