package sem

import (
	"github.com/usysv/usysv/internal/clock"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// The fast paths: what an Op costs when it need not wait and nobody else
// is in its way. Each either decides the call (ok true, with its result)
// or reports false, and the general path (op.go) runs it from the start,
// checking everything in Linux's order; so a fast path only has to be
// right when it decides, and may give up whenever anything is unusual.
//
//   - quick: one op, no SEM_UNDO: the gate, one CAS on the word.
//   - fastUndo (op.go) behind the gate: one SEM_UNDO op, once this
//     process has an undo record: the semadj word's claim, the word's CAS
//     with an intent, the semadj store.
//   - lean: a short array with no SEM_UNDO whose semaphores no waiter
//     names: a transaction under the segment lock without the general
//     machinery (see lean).

// The gate is one word per handle caching what every op checks first:
// the handle is open, every death the registry reported has been repaired
// by this handle, and the permission decision for the set's current
// permission sequence:
//
//	bits  0..31  permSeq the decision was made for
//	bits 32..61  deadGen (low 30 bits) this handle has repaired up to
//	bit  62      alter permitted
//	bit  63      read permitted
//
// A fast path needing alter (or read) goes on only if the gate, masked to
// permSeq, deadGen and that bit, equals the header's current permSeq and
// deadGen with that bit: one load of the gate and two of the header's
// mutable line. A stale gate only sends calls to the general path, which
// checks each condition and refreshes the gate; 0 (closed, or never
// refreshed) never matches. (deadGen is compared modulo 2^30: a handle
// would miss a repair only if exactly a multiple of 2^30 deaths were
// reported between two of its calls.)
const (
	gateGenShift = 32
	gateGenMask  = 1<<30 - 1
	gateAlter    = 1 << 62
	gateRead     = 1 << 63
	gateKeyMask  = 1<<62 - 1

	live = uint32(shm.StateLive)
)

// gateKey is the gate's key part for the header as it is now.
func (s *Array) gateKey() uint64 {
	return uint64(s.permSeq.Load()) | uint64(s.deadGen.Load()&gateGenMask)<<gateGenShift
}

// open reports whether the gate lets a call needing gateAlter or gateRead
// through: handle open, set live, nothing to repair, permitted.
// The mapped header is read only once the gate has the bit, which a
// closed handle's gate never has (Close zeroes it before unmapping).
func (s *Array) open(need uint64) bool {
	g := s.gate.Load()
	return g&need != 0 && g&gateKeyMask == s.gateKey() && s.state.Load() == live
}

// refreshGate recomputes the gate from the handle's repair generation and
// permission cache. The general path calls it once both are current.
func (s *Array) refreshGate() {
	c := s.perm.Load()
	if c&permValid == 0 {
		return
	}
	g := uint64(uint32(c>>32)) | uint64(s.seenGen.Load()&gateGenMask)<<gateGenShift
	if c&permAlter != 0 {
		g |= gateAlter
	}
	if c&permRead != 0 {
		g |= gateRead
	}
	if s.gate.Load() != g && !s.closed.Load() {
		s.gate.Store(g)
	}
}

// quick is one op without SEM_UNDO on a word no transaction or waiter
// holds and with no SEM_UNDO intent in flight on it: one CAS that sets
// semval and sempid together (keeping a completed intent's fields, as
// fastSingle does). Once the gate has let the op through, quick also
// decides where an op it cannot finish goes, so that the call does not
// check again what the gate stands for (op.go: run):
//
//   - fastPost: a post (op > 0) on a word a waiter names or a transaction
//     holds: the lock, and the post's own locked path (post);
//   - fastLocked: any other op on such a word: the general locked path;
//   - fastBlock: an op that must wait (no IPC_NOWAIT): spin, then queue;
//   - fastSlow: everything else (semaphore out of range, gate shut, a
//     dead process's undo to apply first (undoerDied), an intent in
//     flight on the word, a lost race): the general path from the start.
//
// (touchOtime is written out here: one call less per op.)
func (s *Array) quick(b Buf) (fastResult, error) {
	words := s.words
	num := int(b.Num)
	if num >= len(words) {
		return fastSlow, nil
	}
	if !s.open(gateFor(b)) || s.undoerDied() {
		return fastSlow, nil
	}
	w := &words[num]
	old := w.Load()
	if old&(slowMask|flagPending) != 0 {
		switch {
		case old&slowMask == 0:
			if s.inFlight(old, num) {
				return fastSlow, nil
			}
			// A completed SEM_UNDO intent: the op goes on, and the
			// intent's fields stay (fastSingle).
		case b.Op > 0:
			return fastPost, nil
		default:
			return fastLocked, nil
		}
	}
	nv := int(old&valueMask) + int(b.Op)
	switch {
	case b.Op > 0:
		if nv > SEMVMX {
			return fastDone, kernel.ERANGE
		}
	case nv < 0 || b.Op == 0 && nv != 0:
		if b.Flg&IPC_NOWAIT != 0 {
			return fastDone, kernel.EAGAIN
		}
		return fastBlock, nil
	case b.Op == 0 && old&pidMask == s.pid:
		if now := clock.Now(); s.otime.Load() < now {
			s.bumpOtime(now)
		}
		return fastDone, nil
	}
	if !w.CompareAndSwap(old, uint64(nv)|s.pid|old&intentMask) {
		return fastSlow, nil
	}
	if now := clock.Now(); s.otime.Load() < now {
		s.bumpOtime(now)
	}
	return fastDone, nil
}

// gateFor is the gate bit an op needs: read for wait-for-zero, else alter.
func gateFor(b Buf) uint64 {
	if b.Op == 0 {
		return gateRead
	}
	return gateAlter
}

// touchOtime records that an op succeeded now (semop's sem_otime); it
// writes only when the second changes.
func (s *Array) touchOtime() {
	if now := clock.Now(); s.otime.Load() < now {
		s.bumpOtime(now)
	}
}

func (s *Array) bumpOtime(now int64) {
	for {
		o := s.otime.Load()
		if o >= now || s.otime.CompareAndSwap(o, now) {
			return
		}
	}
}

// leanMax is the longest array the lean path takes.
const leanMax = 8

// lean runs a short op array with no SEM_UNDO as one transaction under the
// segment lock, when nothing the general transaction (txn.go) is for is
// needed: no semadj, no waiter to serve (none of the semaphores is marked
// WAITED, so no queued waiter's array can change outcome), no repair, and
// the lock free at the first try. What it keeps is what makes it atomic
// and crash-safe, in the journal's own format, so that the general repair
// finishes or drops it:
//
//  1. take the lock (one CAS); freeze each semaphore the array names, in
//     array order as it evaluates (one CAS each; the frozen word keeps its
//     value, so an uncommitted transaction is simply unfrozen by repair);
//  2. evaluate on copies held in registers, as eval does;
//  3. on success: shadow ← new words, jcommit ← a jkOps commit with no
//     semadj and no waiter (the commit point), then release each word with
//     its new value, jcommit ← 0, unlock.
//
// Everything written in 3 is the lock holder's alone (the journal) or a
// word it froze, so plain stores (putWord) do; the locked instructions
// are the lock, one freeze per semaphore and the unlock. A process killed
// anywhere leaves the lock held; whoever takes it over runs repairLocked,
// which finds the frozen words and redoes the commit from shadow if
// jcommit is set, or just unfreezes them if not: all or nothing.
//
// An array that would block without IPC_NOWAIT, a word that is frozen,
// WAITED or has an in-flight SEM_UNDO op, a held lock, a dead process's
// undo to apply first (undoerDied): the general path.
func (s *Array) lean(ops []Buf) (bool, error) {
	if len(ops) < 2 || len(ops) > leanMax {
		return false, nil
	}
	words := s.words
	need := uint64(gateRead)
	for _, b := range ops {
		if b.Flg&SEM_UNDO != 0 || int(b.Num) >= len(words) {
			return false, nil
		}
		if b.Op != 0 {
			need = gateAlter
		}
	}
	if !s.open(need) || s.undoerDied() || !s.mu.TryLockAs(s.me) {
		return false, nil
	}
	s.localHeld = false
	t := s.mu.Enter()
	if crash.on { // (crashpoint)
		return s.leanGuarded(ops, t)
	}
	return s.leanLocked(ops, false)
}

// leanGuarded is the lean section with its crash points armed, under the
// guard (txn.go) that makes a panic one of them injects a death at that
// point (panic_test.go).
//
// Unarmed, the section runs without the guard, because nothing in it can
// panic: every index it takes from the segment is bounded before use (a
// semaphore number by the section's own check against words, a record
// number by its five bits, below UndoRecords: recordBound); and a fault on
// the mapping (a handle closed under its own call) ends the process, guard
// or not.
// The deferred call cost BenchmarkThreeOps 5% (median of 20 alternating
// runs: 152 against 144 ns; the runs spread from 100 to 200 ns).
func (s *Array) leanGuarded(ops []Buf, t uint64) (bool, error) {
	defer s.guard(t)
	crashHit(StepLeanLocked)
	return s.leanLocked(ops, true)
}

// recordBound: this constant fails to compile unless every record number
// a word can hold (recMask) names one of the UndoRecords records, since
// inFlight indexes the records by it without a check.
const _ = uint(UndoRecords - 1 - recMask>>recShift) // recordBound

// leanLocked is lean's section, the segment lock held (armed: the crash
// points are).
//
// Op k's result is work[k], its semaphore's data after it. A semaphore
// the array names again is frozen once: a later op finds its word frozen,
// takes the value from the last earlier op that named it and marks that
// one superseded (skip), so that shadow and release write each word once,
// with its final value. (Once released, a word is anyone's: a second
// store would undo another process's op.) The semaphore numbers are
// copied (nums) as they are checked: the caller's goroutines may change
// its array meanwhile. Laid out this way, op by op, without a search for
// each op's semaphore among those already frozen and with one test for
// every way an op can fail, the section for a P and a V of three
// semaphores took 92 ns against 143 (medians of 30 alternating runs), and
// BenchmarkThreeOps 136 ns against 178 (12 alternating runs).
func (s *Array) leanLocked(ops []Buf, armed bool) (bool, error) {
	words := s.words
	hdr := s.v.hdr
	if s.state.Load() != live || hdr.jcommit.Load() != 0 {
		s.mu.Unlock() // removed meanwhile (EIDRM), or a journal to redo
		return false, nil
	}
	var (
		nums [leanMax]uint16 // op k's semaphore
		work [leanMax]uint64 // op k's semaphore's data after op k
		skip uint            // bit k: a later op names op k's semaphore
	)
	for k, b := range ops {
		// (The number is checked again: lean checked it in the caller's
		// array, which the caller's goroutines may have changed since;
		// out of range here would be a panic with the lock held.)
		if int(b.Num) >= len(words) {
			s.leanAbort(nums[:k])
			return false, nil
		}
		nums[k] = b.Num
		w := &words[b.Num]
		o := w.Load()
		cur := int(o & valueMask)
		if o&(slowMask|flagPending) != 0 {
			j := k - 1
			for j >= 0 && nums[j] != b.Num {
				j--
			}
			if j >= 0 { // frozen by op j
				skip |= 1 << j
				cur = int(work[j] & valueMask)
				goto eval
			}
			// Frozen, WAITED or an in-flight SEM_UNDO op: the general
			// path, which waits and retries.
			if o&slowMask != 0 || s.inFlight(o, int(b.Num)) {
				s.leanAbort(nums[:k])
				return false, nil
			}
		}
		if !w.CompareAndSwap(o, o|flagFrozen) {
			s.leanAbort(nums[:k]) // a race lost: the general path
			return false, nil
		}
		// A completed SEM_UNDO intent is dropped (by the release or
		// leanAbort), once judged again on the frozen word, as freeze
		// does: it may be a later identical one, in flight.
		if o&flagPending != 0 && s.inFlight(o, int(b.Num)) {
			putWord(w, o)
			s.leanAbort(nums[:k])
			return false, nil
		}
		if armed {
			crashHit(StepLeanFrozen)
		}
	eval:
		nv := cur + int(b.Op)
		if b.Op == 0 && cur != 0 || nv < 0 || nv > SEMVMX {
			if armed {
				crashHit(StepLeanEvaluated) // (a death here unfreezes)
			}
			s.leanAbort(nums[:k+1])
			switch {
			case nv > SEMVMX:
				return true, kernel.ERANGE
			case b.Flg&IPC_NOWAIT != 0:
				return true, kernel.EAGAIN
			}
			return false, nil // must wait: the general path queues it
		}
		work[k] = uint64(nv) | s.pid
	}
	if armed {
		crashHit(StepLeanEvaluated)
	}
	n, shadow := len(ops), s.v.shadow
	for k := 0; k < n; k++ {
		if skip&(1<<k) == 0 {
			putWord(&shadow[nums[k]], work[k])
		}
	}
	putWord(&hdr.jcommit, leanCommit)
	if armed {
		crashHit(StepLeanCommitted)
	}
	for k := 0; k < n; k++ {
		if skip&(1<<k) != 0 {
			continue
		}
		putWord(&words[nums[k]], work[k])
		if armed {
			crashHit(StepLeanReleasing)
		}
		if afterRelease != nil {
			afterRelease(s, int(nums[k]))
		}
	}
	if now := clock.Now(); s.otime.Load() < now { // (touchOtime)
		s.bumpOtime(now)
	}
	putWord(&hdr.jcommit, 0)
	s.mu.Unlock()
	return true, nil
}

// leanCommit is the journal entry of a lean transaction: an op array
// applied by its caller, no semadj entries, no waiter.
var leanCommit = packCommit(jkOps, -1, 0, 0)

// leanAbort unfreezes the words of nums, which lean froze (a number named
// twice is unfrozen twice, to the same data: a frozen word keeps its
// data), and releases the lock.
func (s *Array) leanAbort(nums []uint16) {
	for _, i := range nums {
		w := &s.words[i]
		putWord(w, w.Load()&dataMask)
	}
	s.mu.Unlock()
}
