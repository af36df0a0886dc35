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
//	bits 32..63  low 32 bits of the task's start time (kernel.ProcessStartTime)
//	bit  31      lockWaiters: someone may be sleeping in FUTEX_WAIT
//	bits  0..29  the holder's task: the tid of its sentinel thread (life.go)
//	             (0: unlocked)
//
// The futex is the low 32 bits (the word is little-endian). Because tid and
// start time are set by the same CAS, a waiter always sees a consistent
// pair: it can tell a dead holder from a live one even after the tid is
// reused, without a second store on the fast path. Taking and releasing
// the lock are one locked instruction each.
//
// The task is the sentinel thread rather than the process because an exec
// ends a holder as surely as a death: the goroutine that held the lock is
// gone with the old image, which the process's pid and start time outlive.
// The sentinel thread does not. (A word that names a pid, from a process
// that could not read its sentinel's start time, is looked up as a pid:
// /proc has both.)
//
// A holder that dies (or execs) leaves the lock held; the next process that
// wants it finds the holder dead, takes the lock over, and is told so (Lock
// returns true) so that it repairs what the holder left half done before
// going on. Deaths are noticed at once when the registry wakes the lock's
// sleepers after a client died, and otherwise (and execs always) within
// LivenessInterval. A stopped (SIGSTOP) holder is alive and is never taken
// over.
//
// Goroutines of one process share the pid; the lock is not reentrant.
type Mutex struct {
	word         *atomic.Uint64
	futex        *atomic.Uint32 // the low half of word
	section      *atomic.Uint64 // the holder's critical-section counter (Enter)
	sectionPlain *uint64        // the same word, for Unlock's plain increment
	holderPid    *atomic.Uint32 // the holder's pid (Holder), stored after taking the lock
	pid          uint32         // this process's pid, for holderPid (selfPid, read once)
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
		sectionPlain: plainWord(&s.h.section), deadGen: &s.h.deadGen,
		holderPid: &s.h.holderPid, pid: selfPid()}
}

// me is this process image's lock word (identity, in life.go).
func me() uint64 {
	lives.start.Do(startSentinel)
	return lives.ident
}

// Identity names this process image for as long as it runs, as the lock
// word does: the task (a thread id, or the pid if the thread's start time
// could not be read) and the low 32 bits of its start time. It changes at
// an exec; /proc/<task>/stat has the start time while the image runs.
// (msgq's ring claims name their senders so.)
func Identity() (task int, start uint32) {
	w := me()
	return int(uint32(w) & lockPidMask), uint32(w >> 32)
}

// TryLock takes the lock if it is free, without waiting.
func (m *Mutex) TryLock() bool {
	if m.word.CompareAndSwap(0, me()) {
		m.taken()
		return true
	}
	return false
}

// taken records the new holder's pid (Holder).
func (m *Mutex) taken() {
	raceAcquire(m.futex)
	StoreOwned32(m.holderPid, m.pid)
}

// Lock takes the lock, waiting as long as it takes. It returns true when the
// previous holder died while holding it: the caller now holds the lock and
// must repair the state the lock protects before relying on it.
func (m *Mutex) Lock() (ownerDied bool) {
	if m.TryLock() {
		return false
	}
	return m.lockWait()
}

// lockWait is Lock once the first CAS failed, out of line so that LockAs
// inlines.
//
//go:noinline
func (m *Mutex) lockWait() bool {
	died, _ := m.lockSlow(nil)
	return died
}

// lockSlow is Lock once the first CAS failed. With a giveUp, it returns
// that giveUp's error instead, without the lock, once the giveUp ends the
// wait (LockAsWithin).
func (m *Mutex) lockSlow(g *giveUp) (ownerDied bool, err error) {
	mine := me()
	checked := false
	// Spin briefly: critical sections are a few hundred nanoseconds.
	for i := 0; i < 100; i++ {
		if w := m.word.Load(); w == 0 && m.word.CompareAndSwap(0, mine) {
			m.taken()
			return false, g.done()
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
				m.taken()
				return false, g.done()
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
					m.taken()
					return true, g.done()
				}
			} else {
				m.aliveGen.Store(gen)
				m.aliveHolder.Store(holder)
			}
			continue
		}
		until := time.Now().Add(LivenessInterval)
		if g != nil {
			if err := g.ended(m, &until); err != nil {
				return false, err
			}
		}
		clock.Park()
		err := kernel.FutexWait(m.futex, uint32(w), until)
		if w2 := m.word.Load(); err == nil && w2 != w {
			if uint32(w2) == uint32(w) {
				checked = false // the same holder, another start time: abandoned (Abandon)
			}
			continue
		}
		if m.word.Load() == w && holderDead(w) && m.word.CompareAndSwap(w, mine|lockWaiters) {
			m.taken()
			return true, g.done()
		}
	}
}

// holderDead reports whether the holder named by lock word w is gone: no
// such task (its process died or exec'd), a zombie, or a task with that id
// but another start time.
func holderDead(w uint64) bool {
	id := uint32(w) & lockPidMask
	if id == 0 {
		return false
	}
	if mine := me(); id == uint32(mine) {
		// Another goroutine of ours, unless the word names a start time
		// that is not ours: a lock we abandoned (Abandon).
		return uint32(w>>32) != uint32(mine>>32)
	}
	st, err := kernel.ProcessStartTime(int(id))
	if err != nil {
		// Gone (or a zombie); any other error (this process out of file
		// descriptors, say) says nothing, and a live holder's lock must
		// not be taken: the caller looks again later.
		return errors.Is(err, kernel.ESRCH)
	}
	// (A start time of 0 is a holder's that could not read its own.)
	return uint32(st) != uint32(w>>32) && uint32(w>>32) != 0
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
// recovered panic). So the lock word keeps this task id but takes a start
// time that is not this process's, which no live holder's word has: the
// next process or goroutine that wants the lock finds its holder dead,
// takes it over and repairs (Lock returns true), as after a kill -9 at
// the same instruction. Sleepers are woken to look.
func (m *Mutex) Abandon() {
	StoreOwned(m.section, m.section.Load()+1)
	for {
		w := m.word.Load()
		if m.word.CompareAndSwap(w, abandoned(w)) {
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
// lock, and returns its number, for Open. It records the holder's pid
// (Holder), which LockAs and TryLockAs leave to it.
func (m *Mutex) Enter() uint64 {
	t := m.section.Load() + 1
	StoreOwned(m.section, t)
	StoreOwned32(m.holderPid, m.pid)
	return t
}

// Open reports whether section t (Enter) is still open: its goroutine
// holds the lock and has not unlocked since.
func (m *Mutex) Open(t uint64) bool { return m.section.Load() == t }

// Sections returns the section counter, which every Enter and every Unlock
// advance: while it reads the same, whoever held the lock then has not
// unlocked.
func (m *Mutex) Sections() uint64 { return m.section.Load() }

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

// abandoned is lock word w with a start time that is not its holder's,
// and not 0 either (which holderDead takes for "unknown": alive).
func abandoned(w uint64) uint64 {
	if w ^= abandonFlip; w>>32 == 0 {
		w |= 1 << 32
	}
	return w
}

// Holder returns the pid of the process holding the lock, or 0: the
// process of the task the word names, or, if that task is gone (a dead
// or exec'd holder), the pid its holder stored after taking the lock. It
// reads /proc: for tests and diagnostics. (HolderTask is the word's.)
func (m *Mutex) Holder() int {
	task := m.HolderTask()
	if task == 0 {
		return 0
	}
	if pid, err := kernel.ThreadGroup(task); err == nil {
		return pid
	}
	return int(m.holderPid.Load())
}

// HolderTask returns the task the lock word names (a tid, or a pid:
// identity), or 0 if the lock is free. A group stop (SIGSTOP) stops every
// task of the process: kernel.ProcessStopped tells it of the task too.
func (m *Mutex) HolderTask() int { return int(uint32(m.word.Load()) & lockPidMask) }

// Held reports whether the lock is held.
func (m *Mutex) Held() bool { return m.HolderTask() != 0 }

// selfPid is this process's pid (kernel.Self).
func selfPid() uint32 {
	pid, _ := kernel.Self()
	return uint32(pid)
}

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
	m.taken()
	return true
}

func (m *Mutex) wakeAll() {
	if m.word.Load()&lockWaiters != 0 {
		_, _ = kernel.FutexWake(m.futex, 1<<30)
	}
}
