package sem

import (
	"context"
	"math/bits"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/usysv/usysv/internal/clock"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/registry"
	"github.com/usysv/usysv/shm"
)

type (
	clearable  = atomic.Uint32
	waiterSlot = shm.WaiterSlot
)

// The locked path. Everything here runs with the segment lock held.
//
// A transaction (one op array, a SETVAL/SETALL, or the undo of a dead
// process) goes:
//
//  1. freeze: CAS FROZEN into each word it touches (after writing the
//     word's data into shadow), so that no fast path changes it;
//  2. evaluate on a private working copy (as the kernel's
//     perform_atomic_semop_slow, in array order);
//  3. journal: shadow ← new word data, jadj ← new semadj values, then
//     jcommit ← kind|slot|errno|count: the commit point;
//  4. apply: words ← shadow (still FROZEN), semadj ← jadj, kind-specific
//     clears, the waiter's outcome; jcommit ← 0;
//  5. at unlock, unfreeze every frozen word, setting WAITED exactly where a
//     queued waiter still names the semaphore.
//
// Whoever takes the lock over from a dead holder (or repairs after a
// death) finds FROZEN words: if jcommit is set it redoes step 4 (every
// step is an absolute store, so redoing is harmless), otherwise nothing was
// applied; then it unfreezes. Either all of a transaction is applied or
// none.

// scratch is per-handle working memory for the lock holder.
type scratch struct {
	frozen     []int32  // words frozen in this critical section
	frozenMark []uint64 // bitset of frozen
	work       []uint64 // working word data of frozen words
	adj        []int32  // eval: working semadj of the current record
	adjMark    []uint64
	adjTouched []int32
	ref        []uint64 // unfreeze: semaphores named by queued waiters
	slotList   []int32  // queue.go: the queued waiters' slots
	wq         []qent   // queue.go: the queued waiters, by ticket
	merged     bool     // queue.go: a complex waiter is queued
	sawLeft    bool     // queue.go: waiting saw a waiter that left
	nums       []uint16 // queue.go: semaphores with a waiter of theirs
	zeroNums   []uint16 // queue.go: semaphores to look at for zero
	ops        []Buf    // a waiter's ops, read from the arena
	wake       []int32  // slots completed in this critical section
	dirty      []int32
	queued     int32 // the slot this critical section queued its caller in, or -1 (guard)
}

func (sc *scratch) init(nsems, slots int) {
	words := (nsems + 63) / 64
	sc.frozen = make([]int32, 0, 64)
	sc.frozenMark = make([]uint64, words)
	sc.work = make([]uint64, nsems)
	sc.adj = make([]int32, nsems)
	sc.adjMark = make([]uint64, words)
	sc.ref = make([]uint64, words)
	sc.slotList = make([]int32, 0, slots)
	sc.wq = make([]qent, 0, slots)
	sc.nums = make([]uint16, 0, slots)
	sc.zeroNums = make([]uint16, 0, SEMOPM)
	sc.ops = make([]Buf, 0, SEMOPM)
	sc.wake = make([]int32, 0, 8)
	sc.queued = -1
}

func has(bits []uint64, i int) bool { return bits[i>>6]&(1<<(uint(i)&63)) != 0 }
func set(bits []uint64, i int)      { bits[i>>6] |= 1 << (uint(i) & 63) }
func clr(bits []uint64, i int)      { bits[i>>6] &^= 1 << (uint(i) & 63) }

// lock takes the segment lock and opens this goroutine's critical section
// (shm.Mutex.Enter), whose number it returns for guard: every caller
// writes defer s.guard(s.lock()). If the holder died, it repairs first.
//
// A free lock is taken with one CAS. Otherwise goroutines of this process
// first queue on a Go mutex, so that they park in the scheduler instead of
// holding OS threads in FUTEX_WAIT. (The race detector, blind to
// synchronisation through mapped memory, sees the handle's scratch memory
// handed over through the segment lock's own annotations.)
func (s *Array) lock() uint64 {
	if s.mu.TryLockAs(s.me) {
		s.localHeld = false
		return s.mu.Enter()
	}
	t, _ := s.lockWait(context.Background(), time.Time{})
	return t
}

// lockWithin is lock for an Op, which stops waiting for the lock when ctx
// ends (canceled) or the deadline passes (EAGAIN, as semtimedop's expiry;
// the zero deadline is none), with nothing done. The lock is held by
// another for a few hundred nanoseconds, unless its holder is stopped
// (SIGSTOP): then until it is continued.
func (s *Array) lockWithin(ctx context.Context, deadline time.Time) (uint64, error) {
	if s.mu.TryLockAs(s.me) {
		s.localHeld = false
		return s.mu.Enter(), nil
	}
	return s.lockWait(ctx, deadline)
}

// lockWait is lockWithin once the lock was found held.
func (s *Array) lockWait(ctx context.Context, deadline time.Time) (uint64, error) {
	err := s.lockLocal(ctx, deadline)
	died := false
	if err == nil {
		if died, err = s.mu.LockAsWithin(ctx, deadline, s.me); err != nil {
			<-s.local
		}
	}
	switch {
	case err == kernel.ETIMEDOUT:
		return 0, kernel.EAGAIN
	case err != nil:
		return 0, canceled(ctx)
	}
	s.localHeld = true
	t := s.mu.Enter()
	if died {
		s.repairGuarded(t, true)
	}
	return t, nil
}

// lockLocal takes the handle's local mutex, unless ctx ends first (its
// error) or the deadline passes (kernel.ETIMEDOUT).
func (s *Array) lockLocal(ctx context.Context, deadline time.Time) error {
	select {
	case s.local <- struct{}{}:
		return nil
	default:
	}
	var expired <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		expired = t.C
	}
	select {
	case s.local <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-expired:
		return kernel.ETIMEDOUT
	}
}

// guard, deferred by every goroutine that takes the segment lock, with its
// section's number t, is what keeps a panic inside the section (a segment
// corrupted beyond what the code handles; FINDINGS F14) from stopping
// every process: if the panic unwinds through the deferring call while
// section t is open, the set is handled as if this process had died at
// that instruction, and then the panic goes on, for the caller to recover
// or not. The waiter slot the section queued its caller in is given up as
// a dead process's (the repair dequeues it), the handle's scratch is
// reset (as another process's would be clean), and salvage repairs. A
// section that its goroutine has ended is left alone: another goroutine
// may hold the lock by then.
func (s *Array) guard(t uint64) {
	if !s.mu.Open(t) {
		return
	}
	if r := recover(); r != nil {
		if q := s.sc.queued; q >= 0 {
			s.v.slots[q].Abandon()
		}
		s.sc.reset()
		s.salvage(t)
		panic(r)
	}
}

// salvage repairs what section t, cut short by a panic, left half done, at
// once and in place (the lock is still held), and unlocks; then it wakes
// every sleeper, as the registry does after a death (its eager repair and
// shm.Segment.WakeAll): a waiter the section completed but did not wake
// would sleep on. If the repair panics too (the same corruption), the lock
// is given up as if this process had died holding it (shm.Mutex.Abandon),
// so that the next taker, here or in another process, repairs again
// instead of waiting for ever on a live process; that second panic is
// dropped, and the first goes on.
func (s *Array) salvage(t uint64) {
	defer func() {
		if recover() != nil && s.mu.Open(t) {
			s.sc.reset()
			held := s.localHeld
			s.mu.Abandon()
			if held {
				<-s.local
			}
		}
	}()
	s.repairLocked(true)
	s.unlock()
	s.seg.WakeAll()
}

// reset empties the scratch as a section begins with it: nothing frozen or
// marked, no lists.
func (sc *scratch) reset() {
	clear(sc.frozenMark)
	clear(sc.adjMark)
	sc.frozen = sc.frozen[:0]
	sc.adjTouched = sc.adjTouched[:0]
	sc.wq = sc.wq[:0]
	sc.ops = sc.ops[:0]
	sc.wake = sc.wake[:0]
	sc.dirty = sc.dirty[:0]
	sc.queued = -1
}

// unlock unfreezes, wakes the waiters completed in this critical section
// and releases the lock.
func (s *Array) unlock() {
	if gen := s.deadGen.Load(); gen != s.seenGen.Load() {
		// A death reported while we held the lock: calls that found it
		// held left its repair to us (tryRepair).
		s.repairLocked(false)
		s.seenGen.Store(gen)
	} else if s.undoerDied() {
		s.repairLocked(false) // (the same, for a death not reported yet: settle)
	}
	s.unfreezeAll()
	// Wake after releasing the lock (the woken often wants it next); the
	// slots stay valid, since only their owners free them.
	var local [16]int32
	n := copy(local[:], s.sc.wake)
	if len(s.sc.wake) > n {
		s.sc.wake = s.sc.wake[n:]
		s.wakeCompleted()
	}
	s.sc.wake = s.sc.wake[:0]
	s.sc.queued = -1
	held := s.localHeld
	s.mu.Unlock()
	if held {
		<-s.local
	}
	if n > 0 {
		crashpoint(StepUnlocked)
	}
	for _, idx := range local[:n] {
		s.wakeSlot(&s.v.slots[idx])
	}
}

// wakeSlot tells the waiter in slot that it is done, and wakes it if it
// sleeps.
func (s *Array) wakeSlot(slot *waiterSlot) {
	slot.Futex.Add(1)
	if slot.Arg[argSleep].Load() != 0 {
		_, _ = kernel.FutexWake(&slot.Futex, 1)
		s.spin.sleptOrWoke()
	}
}

// freeze makes word i the lock holder's for this critical section.
//
// A word with a SEM_UNDO intent is frozen only once the intent is
// complete, and that is judged again after the word is frozen: a look at
// the record's semadj parity and then a CAS on the word is not enough, since
// parity is one bit. Between the look and the CAS, the record's process can
// complete one op and start another that leaves the word exactly as it was
// (same value, sempid, record, delta and parity: two ops of the same size
// from the same value), and that one is in flight. The CAS would then
// succeed and take the intent off the word, and the lock holder would read
// and write the semadj while that op's own semadj store is still to come:
// one of the two changes lost (TestFreezeIntentABA). Frozen, the word
// cannot change, so the intent on it is the one judged: if it is complete,
// its fields are cleared; if it is in flight, the word is given back as it
// was and waited for.
func (s *Array) freeze(i int) {
	sc := &s.sc
	if has(sc.frozenMark, i) {
		return
	}
	w := &s.v.words[i]
	var (
		since time.Time // when we started waiting for the intent now on the word
		seen  uint64    // that word
	)
	for spins := 0; ; spins++ {
		o := w.Load()
		if o&flagPending != 0 && s.inFlight(o, i) {
			if o&flagFrozen != 0 {
				// Frozen by a dead holder to judge the intent (below):
				// give it back as it was.
				putWord(w, o&^flagFrozen)
				continue
			}
			// A lock-free SEM_UNDO op is between its CAS and its store,
			// or its owner died there, or the intent is forged.
			if o != seen {
				seen, since, spins = o, time.Time{}, 0
			}
			if spins == 0 || spins&127 == 127 {
				if since.IsZero() {
					since = time.Now()
				}
				if s.settleIntent(i, o, spins > 0, time.Since(since)) {
					continue
				}
			}
			if spins < 1024 {
				runtime.Gosched()
			} else {
				time.Sleep(50 * time.Microsecond) // its owner is stopped, or preempted for long
			}
			continue
		}
		d := o & dataMask
		putWord(&s.v.shadow[i], d)
		// (FROZEN already: left by a dead holder whose journal the repair
		// has dealt with; we own it now.)
		if o&flagFrozen == 0 {
			if o&flagPending != 0 {
				crashpoint(StepFreezeLook)
			}
			if !w.CompareAndSwap(o, o|flagFrozen) {
				continue
			}
			if o&flagPending != 0 && s.inFlight(o, i) {
				putWord(w, o) // an identical later intent, in flight: wait for it
				continue
			}
		}
		if o&intentMask != 0 {
			putWord(w, d|o&flagWaited|flagFrozen) // the completed intent's fields go
		}
		sc.work[i] = d
		break
	}
	set(sc.frozenMark, i)
	sc.frozen = append(sc.frozen, int32(i))
}

// intentBound is how long the lock holder waits for an in-flight SEM_UNDO
// op of a live process (its owner's two steps are nanoseconds apart, but
// the owner may be preempted, or stopped, between them) before it drops
// the intent. It is timed from when freeze first saw the word as it is:
// ops that follow one another on the word, each in flight when it looks,
// do not add up to it.
const intentBound = time.Second

// settleIntent deals with the in-flight SEM_UNDO intent w on word i, seen
// by the lock holder for waited so far, if it need not wait for it, and
// reports whether it did (the word changed: look again). Whether the owner
// lives is looked up (in /proc) only with look:
//
//   - its record's process is dead, or its record's Life is marked (the
//     process exec'd, which ended the op's goroutine, or is dying): the op
//     is completed (its semadj updated), as the dead process's repair
//     would;
//   - no goroutine of that process holds the semadj word's claim
//     (adjBusy): every real intent is placed and completed under the
//     claim, so this one was written by someone else into the segment
//     (fuzz finding F5: the lock holder used to wait for ever, holding the
//     lock). It is dropped: the word keeps its value, and no semadj
//     changes, as no op of that process is owed one;
//   - it has been in flight for intentBound with its owner alive: the
//     owner is stopped or starved between its two steps, or the claim was
//     forged too. It is dropped as well, so that the set stays usable. An
//     owner that then resumes completes its own op (its semadj store),
//     which is right, except that it overwrites any change the lock holders
//     made to that semadj word meanwhile (a SETVAL's clear, an op of its
//     process that took the lock): that change is lost.
func (s *Array) settleIntent(i int, w uint64, look bool, waited time.Duration) bool {
	r := int((w & recMask) >> recShift)
	a := s.v.recs[r].adj[i].Load()
	if uint64(a&adjParity>>16) == (w&parityBit)>>parityShift {
		return true // completed meanwhile
	}
	if a&adjBusy != 0 && waited < intentBound {
		if !look {
			return false
		}
		h := s.v.recs[r].hdr
		if pid := h.pid.Load(); pid != 0 && !h.life.Dead() && s.alive(int(pid), h.start.Load()) {
			return false
		}
		s.completePending(i)
		return true
	}
	// Dropped on the word frozen, and judged again there: by now the word
	// may hold a later, identical intent, in flight under its claim (see
	// freeze), which must not go.
	word := &s.v.words[i]
	if !word.CompareAndSwap(w, w|flagFrozen) {
		return true
	}
	a = s.v.recs[r].adj[i].Load()
	if uint64(a&adjParity>>16) != (w&parityBit)>>parityShift && (a&adjBusy == 0 || waited >= intentBound) {
		putWord(word, w&^intentMask)
	} else {
		putWord(word, w)
	}
	return true
}

// completePending applies the semadj update of an in-flight PENDING op on
// word i (its owner is dead; we hold the lock, so nobody else can).
func (s *Array) completePending(i int) {
	w := s.v.words[i].Load()
	if w&flagPending == 0 || !s.inFlight(w, i) {
		return
	}
	r := int((w & recMask) >> recShift)
	aw := &s.v.recs[r].adj[i]
	a := aw.Load()
	na := int(int16(uint16(a))) + int(int16(uint16(w>>deltaShift)))
	na = max(-(SEMAEM + 1), min(SEMAEM, na))
	aw.Store(uint32(uint16(int16(na))) | uint32((w&parityBit)>>parityShift)<<16)
}

// unfreezeAll releases every frozen word, with WAITED set exactly where a
// queued waiter names the semaphore (everywhere while an array that only
// waits for zero on several is queued: queue.go).
func (s *Array) unfreezeAll() {
	sc := &s.sc
	if len(sc.frozen) == 0 {
		return
	}
	waiting := s.v.hdr.nwait.Load() != 0
	if waiting {
		clear(sc.ref)
		slots := s.v.slotsInUse()
		for idx := range slots {
			slot := &slots[idx]
			if slot.State.Load() != stWaiting {
				continue
			}
			off, n, _ := unpackSlotOps(slot.Arg[argOps].Load())
			if off < 0 || n < 1 || n > SEMOPM || off+n > len(s.v.arena) {
				continue
			}
			zero := n > 1
			for k := 0; k < n; k++ {
				e := s.v.arena[off+k].Load()
				if num := int(uint16(e)); num < s.nsems {
					set(sc.ref, num)
				}
				zero = zero && unpackOp(e).Op == 0
			}
			if zero { // (enqueue: every word)
				for i := range sc.ref {
					sc.ref[i] = ^uint64(0)
				}
			}
		}
	}
	for _, i32 := range sc.frozen {
		i := int(i32)
		if !has(sc.frozenMark, i) {
			continue // released already (apply with final), maybe frozen again and listed twice
		}
		w := &s.v.words[i]
		d := w.Load() & dataMask
		if waiting && has(sc.ref, i) {
			d |= flagWaited
		}
		putWord(w, d)
		clr(sc.frozenMark, i)
	}
	sc.frozen = sc.frozen[:0]
}

func (s *Array) wakeCompleted() {
	for _, idx := range s.sc.wake {
		s.wakeSlot(&s.v.slots[idx])
	}
	s.sc.wake = s.sc.wake[:0]
}

// eval performs ops on the working copy, as the kernel does: in array
// order, later ops seeing earlier ones. It returns 0 on success (the
// working copy then holds the new values with sempid = pid, and sc.adj the
// record's new semadj values), -errno for ERANGE or EAGAIN (an op that
// would block with IPC_NOWAIT), or 1 for "would block", with the index of
// the op that blocks. On failure the working copy is as it was.
func (s *Array) eval(ops []Buf, pid uint64, rec int) (res, blockAt int) {
	sc := &s.sc
	sc.adjTouched = sc.adjTouched[:0]
	k := 0
	res = 0
	for ; k < len(ops); k++ {
		b := ops[k]
		i := int(b.Num)
		s.freeze(i)
		cur := int(sc.work[i] & valueMask)
		if b.Op == 0 && cur != 0 {
			res = 1
			break
		}
		nv := cur + int(b.Op)
		if nv < 0 {
			res = 1
			break
		}
		if nv > SEMVMX {
			res = -int(kernel.ERANGE)
			break
		}
		if b.Flg&SEM_UNDO != 0 {
			if rec < 0 {
				res = -int(kernel.EINVAL)
				break
			}
			if !has(sc.adjMark, i) {
				set(sc.adjMark, i)
				sc.adjTouched = append(sc.adjTouched, int32(i))
				sc.adj[i] = int32(int16(uint16(s.v.recs[rec].adj[i].Load())))
			}
			na := int(sc.adj[i]) - int(b.Op)
			if na < -(SEMAEM+1) || na > SEMAEM {
				res = -int(kernel.ERANGE)
				break
			}
			sc.adj[i] = int32(na)
		}
		sc.work[i] = sc.work[i]&^valueMask | uint64(nv)
	}
	if res == 1 {
		blockAt = k
		if ops[k].Flg&IPC_NOWAIT != 0 {
			res = -int(kernel.EAGAIN)
		}
	}
	if res != 0 {
		// Undo the working copy of ops[0:k].
		for j := k - 1; j >= 0; j-- {
			i := int(ops[j].Num)
			sc.work[i] = sc.work[i]&^valueMask | uint64(int(sc.work[i]&valueMask)-int(ops[j].Op))
		}
		for _, i := range sc.adjTouched {
			clr(sc.adjMark, int(i))
		}
		sc.adjTouched = sc.adjTouched[:0]
		return res, blockAt
	}
	for _, b := range ops {
		i := int(b.Num)
		sc.work[i] = sc.work[i]&valueMask | pid
	}
	return 0, 0
}

// commit journals and applies a successful eval of ops (rec: the undo
// record of their process, slot: the waiter they belong to, or -1), or,
// with errno != 0, the failure of waiter slot. final: see apply.
func (s *Array) commit(ops []Buf, rec, slot, errno int, final bool) {
	sc := &s.sc
	v := s.v
	nadj := 0
	if errno == 0 {
		for _, b := range ops {
			i := int(b.Num)
			putWord(&v.shadow[i], sc.work[i])
		}
		for _, i := range sc.adjTouched {
			old := v.recs[rec].adj[i].Load()
			putWord(&v.jadj[nadj], uint64(i)<<32|uint64(old&adjParity)|uint64(uint16(int16(sc.adj[i]))))
			nadj++
			clr(sc.adjMark, int(i))
		}
		sc.adjTouched = sc.adjTouched[:0]
	}
	putWord(&v.hdr.jarg, uint64(rec+1))
	putWord(&v.hdr.jcommit, packCommit(jkOps, slot, errno, nadj))
	crashpoint(StepCommitted)
	sc.dirty = sc.dirty[:0]
	for _, b := range ops {
		if errno == 0 {
			sc.dirty = append(sc.dirty, int32(b.Num))
		}
	}
	s.apply(sc.dirty, final)
}

// apply carries out the committed journal. dirty lists the words to store
// from shadow; nil means every word still frozen (redo after a death).
// With final (no waiter queued, so nothing else in this critical section
// touches them), the words are released at once instead of at unlock.
//
// Order matters for redo: semadj values and the waiter's outcome first,
// then the words. A word already released was applied with everything
// before it, and may since have been changed by a lock-free op (its semadj
// too), so redo skips every semaphore that is no longer frozen.
func (s *Array) apply(dirty []int32, final bool) {
	v := s.v
	c := v.hdr.jcommit.Load()
	kind, slot, errno, nadj := unpackCommit(c)
	frozen := func(i int) bool { return v.words[i].Load()&flagFrozen != 0 }
	arg := v.hdr.jarg.Load() // (any value: the segment may be corrupt)
	switch kind {
	case jkOps:
		if r := arg - 1; arg >= 1 && r < uint64(len(v.recs)) {
			for k := 0; k < nadj && k < len(v.jadj); k++ {
				e := v.jadj[k].Load()
				if i := e >> 32; i < uint64(s.nsems) && frozen(int(i)) {
					setAdj(&v.recs[r].adj[i], uint32(e))
				}
			}
		}
	case jkSetVal:
		if arg < uint64(s.nsems) && frozen(int(arg)) {
			for r := range v.recs {
				clearAdj(&v.recs[r].adj[arg])
			}
		}
	case jkSetAll:
		for r := range v.recs {
			if v.recs[r].hdr.pid.Load() == 0 {
				continue
			}
			for i := range v.recs[r].adj {
				if frozen(i) {
					clearAdj(&v.recs[r].adj[i])
				}
			}
		}
	case jkUndo:
		// Nobody touches a dead process's record but the lock holder.
		if r := arg; r < uint64(len(v.recs)) {
			rc := &v.recs[r]
			for i := range rc.adj {
				if rc.adj[i].Load() != 0 {
					put32(&rc.adj[i], 0)
				}
			}
			s.stripIntents(int(r))
			rc.hdr.start.Store(0)
			rc.hdr.pid.Store(0)
		}
	}
	crashpoint(StepApplying)
	if dirty == nil {
		for _, i := range s.sc.frozen {
			if has(s.sc.frozenMark, int(i)) && frozen(int(i)) {
				putWord(&v.words[i], v.shadow[i].Load()|flagFrozen)
				s.sc.work[i] = v.shadow[i].Load()
			}
		}
	} else {
		for _, i := range dirty {
			if final {
				// Listed twice (an array naming a semaphore twice): the
				// first release is the only one; after it the word is
				// anyone's.
				if !has(s.sc.frozenMark, int(i)) {
					continue
				}
				putWord(&v.words[i], v.shadow[i].Load())
				clr(s.sc.frozenMark, int(i))
				if afterRelease != nil {
					afterRelease(s, int(i))
				}
			} else {
				putWord(&v.words[i], v.shadow[i].Load()|flagFrozen)
			}
		}
	}
	if kind == jkUndo || kind == jkOps && errno == 0 {
		s.touchOtime()
	}
	// The waiter learns its outcome last: when it returns, its ops are
	// visible to everyone.
	if kind == jkOps && slot >= 0 && slot < len(v.slots) {
		ws := &v.slots[slot]
		if ws.State.Load() == stClaimed { // (claimed before its commit: queue.go)
			putWord(&ws.Arg[argResult], uint64(errno))
			// (A plain store is enough here: the waiter reads it without
			// ordering needs of its own, and wakeSlot's atomic add orders
			// it before the look at argSleep.)
			put32(&ws.State, stDone)
			putWord(&v.hdr.nwait, v.hdr.nwait.Load()-1)
			s.sc.wake = append(s.sc.wake, int32(slot))
		}
	}
	putWord(&v.hdr.jcommit, 0)
}

// afterRelease, if set (by tests), runs after each early release of a word
// in apply: another process may change the word from then on.
var afterRelease func(s *Array, i int)

// slowHook, if set (by tests), runs as a call takes the general path (slow).
var slowHook func()

// clearAdj sets a semadj to 0, keeping its parity (an in-flight PENDING op
// compares against it; none can be in flight on a frozen word, but the
// parity must stay what the last completed op left).
func clearAdj(a *clearable) {
	if o := a.Load(); o&0xFFFF != 0 {
		setAdj(a, o&adjParity)
	}
}

// setAdj stores the adjustment and parity of a frozen semaphore's semadj
// word, keeping its claim bit: a goroutine of the record's process may
// hold it, about to find the word frozen (fastUndo), and releases it with
// an atomic AND that must not be lost, nor undo this store.
func setAdj(a *clearable, v uint32) {
	for {
		o := a.Load()
		n := v&^adjBusy | o&adjBusy
		if o == n || a.CompareAndSwap(o, n) {
			return
		}
	}
}

// stripIntents removes stale PENDING intents naming record r from every
// word, so that the record can be reused.
func (s *Array) stripIntents(r int) {
	for i := range s.v.words {
		w := &s.v.words[i]
		for {
			o := w.Load()
			if o&flagPending == 0 || int((o&recMask)>>recShift) != r {
				break
			}
			if w.CompareAndSwap(o, o&^intentMask) {
				break
			}
		}
	}
}

// waiterOps reads a queued waiter's op array from the arena into sc.ops,
// checking everything (the segment is shared with other processes).
func (s *Array) waiterOps(slot *waiterSlot) ([]Buf, int, bool) {
	off, n, rec := unpackSlotOps(slot.Arg[argOps].Load())
	if off < 0 || n < 1 || n > SEMOPM || off+n > len(s.v.arena) || rec < -1 || rec >= len(s.v.recs) {
		return nil, -1, false
	}
	ops := s.sc.ops[:0]
	undo := false
	for k := 0; k < n; k++ {
		b := unpackOp(s.v.arena[off+k].Load())
		if int(b.Num) >= s.nsems {
			return nil, -1, false
		}
		if b.Flg&SEM_UNDO != 0 {
			undo = true
		}
		ops = append(ops, b)
	}
	if undo && (rec < 0 || s.v.recs[rec].hdr.pid.Load() != uint64(slot.PID.Load())) {
		return nil, -1, false
	}
	s.sc.ops = ops
	return ops, rec, true
}

// enqueue queues the caller as a waiter for ops: a free slot, its array in
// the arena, a ticket (the tail of its list; queue.go). Every semaphore the
// array names is frozen so that unlock marks it WAITED (every semaphore,
// for an array that only waits for zero on several).
//
// With asleep, the waiter will not spin first: wakers are told at once
// that it may be asleep (argSleep), which saves it that store later.
func (s *Array) enqueue(ops []Buf, rec, blockAt int, asleep bool) (int, error) {
	v := s.v
	idx := -1
	for i := range v.slots {
		st := v.slots[i].State.Load()
		if st == stLeft {
			s.dequeue(i) // (queue.go: leaving the queue)
			st = v.slots[i].State.Load()
		}
		if st == 0 {
			idx = i
			break
		}
	}
	if idx < 0 {
		return -1, ErrNoWaiterSlot
	}
	off := s.arenaAlloc(len(ops))
	if off < 0 {
		return -1, ErrNoWaiterSlot
	}
	for k, b := range ops {
		putWord(&v.arena[off+k], packOp(b))
		s.freeze(int(b.Num))
	}
	switch waiterKind(ops) {
	case kZeroN:
		// Looked at after any change that leaves a semaphore at 0
		// (queue.go): every op on the set must take the lock meanwhile.
		for i := range v.words {
			s.freeze(i)
		}
		fallthrough
	case kAlterN:
		s.rekeyForMerge()
	}
	slot := &v.slots[idx]
	if uint64(idx) >= v.hdr.slotsHi.Load() {
		putWord(&v.hdr.slotsHi, uint64(idx+1)) // before the slot is in use
	}
	pid, start := kernel.Self()
	ticket := v.hdr.ticket.Load() + 1
	putWord(&v.hdr.ticket, ticket)
	put32(&slot.PID, uint32(pid))
	putWord(&slot.Start, start)
	putWord(&slot.Arg[argTicket], ticket)
	putWord(&slot.Arg[argOps], packSlotOps(off, len(ops), rec))
	putWord(&slot.Arg[argResult], 0)
	putWord(&slot.Arg[argBlock], uint64(blockAt))
	sleep := uint64(0)
	if asleep {
		sleep = 1
	}
	putWord(&slot.Arg[argSleep], sleep) // (the owner's, outside the lock, from now on)
	slot.Life.Hold()                    // (released by finish or abandon)
	put32(&slot.State, stWaiting)       // (wakers look under the lock)
	s.sc.queued = int32(idx)
	putWord(&v.hdr.nwait, v.hdr.nwait.Load()+1)
	s.rewakeDone(idx)
	return idx, nil
}

// rewakeDone adds to this critical section's wake-ups every other waiter
// that is completed (stDone) and may be asleep (argSleep): a call about to
// sleep (enqueue) first wakes them. Such a waiter's waker either died
// between releasing the lock and its wake-up (crash step unlocked; with the
// registry's host the one that died, nothing else would wake it until the
// next registry: chaos FINDINGS F4) or is on its way (then this is one
// spare FUTEX_WAKE, on a path that is about to make a system call anyway).
// A waiter the registry or a waker freed meanwhile takes a spurious wake-up
// at worst, which its sleep loop ignores.
func (s *Array) rewakeDone(own int) {
	for i := range s.v.slotsInUse() {
		sl := &s.v.slots[i]
		if i == own || sl.State.Load() != stDone || sl.Arg[argSleep].Load() == 0 || slices.Contains(s.sc.wake, int32(i)) {
			continue
		}
		s.sc.wake = append(s.sc.wake, int32(i))
	}
}

// arenaAlloc finds n free consecutive arena entries (first fit among the
// arrays of queued waiters), or returns -1.
func (s *Array) arenaAlloc(n int) int {
	v := s.v
	pos := 0
	for {
		if pos+n > len(v.arena) {
			return -1
		}
		moved := false
		slots := v.slotsInUse()
		for i := range slots {
			if st := slots[i].State.Load(); st != stWaiting && st != stLeft {
				continue
			}
			off, m, _ := unpackSlotOps(slots[i].Arg[argOps].Load())
			if off < pos+n && pos < off+m {
				pos = off + m
				moved = true
			}
		}
		if !moved {
			return pos
		}
	}
}

// dequeue takes a still-queued waiter out (timeout, cancellation, death),
// or one that left the queue (stLeft).
func (s *Array) dequeue(idx int) {
	slot := &s.v.slots[idx]
	if ops, _, ok := s.waiterOps(slot); ok {
		for _, b := range ops {
			s.freeze(int(b.Num)) // so that unlock recomputes WAITED
		}
	}
	if slot.State.CompareAndSwap(stWaiting, 0) || slot.State.CompareAndSwap(stLeft, 0) {
		putWord(&s.v.hdr.nwait, s.v.hdr.nwait.Load()-1)
	}
}

// claimRecord returns this process's undo record, taking a free one.
func (s *Array) claimRecord() (int, error) {
	pid, start := kernel.Self()
	if r := s.recIndex(); r >= 0 && s.v.recs[r].hdr.pid.Load() == uint64(pid) && s.v.recs[r].hdr.start.Load() == start {
		return r, nil
	}
	for pass := 0; pass < 2; pass++ {
		for r := range s.v.recs {
			h := s.v.recs[r].hdr
			if h.pid.Load() == uint64(pid) && h.start.Load() == start {
				if h.life.Dead() {
					// Ours from before an exec: this image's list now.
					s.releaseClaims(r)
					h.life.Hold()
					putWord(&s.v.hdr.undoers, s.v.hdr.undoers.Load()|1<<r)
				}
				s.setRec(r)
				return r, nil
			}
		}
		for r := range s.v.recs {
			h := s.v.recs[r].hdr
			if h.pid.Load() == 0 {
				h.life.Hold() // (first: it clears a dead holder's mark)
				h.start.Store(start)
				h.pid.Store(uint64(pid))
				putWord(&s.v.hdr.undoers, s.v.hdr.undoers.Load()|1<<r)
				s.setRec(r)
				return r, nil
			}
		}
		if pass == 0 {
			s.repairLocked(false) // frees the records of dead processes
		}
	}
	return -1, ErrNoUndoRecord
}

// releaseClaims finishes what record r's previous image left when it
// exec'd (lock held): the exec ended its goroutines anywhere inside
// fastUndo, holding the claim of a semadj word (adjBusy), perhaps with
// the op in flight on the semaphore's word. The op is completed, as
// settleIntent completes it, and the claim dropped, so that this image's
// SEM_UNDO ops on that semaphore need not take the lock for ever.
func (s *Array) releaseClaims(r int) {
	rec := &s.v.recs[r]
	for i := range rec.adj {
		if rec.adj[i].Load()&adjBusy == 0 {
			continue
		}
		if w := s.v.words[i].Load(); int((w&recMask)>>recShift) == r {
			s.completePending(i) // (if an op of r is in flight there)
		}
		if a := rec.adj[i].Load(); a&adjBusy != 0 {
			rec.adj[i].Store(a &^ adjBusy)
		}
	}
}

func init() {
	registry.RegisterRepair(shm.KindSem, eagerRepair)
}

// eagerRepair is the registry's repair hook (it runs in the process that
// hosts the registry, after a client died): the same repair every handle
// runs lazily, done at once. It never waits for a live lock holder; that
// holder, or the next operation, repairs instead. (The registry's host
// recovers a panic of its hooks and goes on: guard matters here too.)
func eagerRepair(seg *shm.Segment) {
	v, err := newView(seg)
	if err != nil || seg.Removed() {
		return
	}
	s := makeSet(seg.ID(), seg, v)
	s.seenGen.Store(seg.DeadGen()) // (what this pass repairs: unlock need not again)
	s.local <- struct{}{}
	switch {
	case s.mu.TryLock():
		s.localHeld = true
		s.repairGuarded(s.mu.Enter(), false)
	case s.mu.RecoverIfDead():
		s.localHeld = true
		s.repairGuarded(s.mu.Enter(), true)
	default:
		<-s.local
		return
	}
	s.unlock()
}

// repairGuarded is repairLocked in section t, guarded there: for the
// repairs that run before their section's caller has deferred its own
// guard, or that have no such caller.
func (s *Array) repairGuarded(t uint64, full bool) {
	defer s.guard(t)
	s.repairLocked(full)
}

// repair runs the repair pass for the deaths the registry reported so far,
// waiting for the lock as long as it takes.
func (s *Array) repair() {
	gen := s.seg.DeadGen()
	defer s.guard(s.lock())
	s.repairLocked(false)
	s.seenGen.Store(gen)
	s.unlock()
}

// tryRepair is repair for every call that finds a death reported since its
// handle last repaired, and for a new handle (chaos finding F3); it reports
// whether it repaired (full: scanning every word, as after a take-over).
// It never waits for a live lock holder: a process stopped (SIGSTOP) while
// holding the lock must not stop, with any unrelated death, every
// operation on the set, lock-free ones included. If the lock is held by a
// live process, the repair is left pending (seenGen is not advanced, so
// the gate stays shut and calls keep coming here) and the call goes on. It
// is done by the holder before it unlocks (unlock), by the next call that
// finds the lock free, or by the registry's eager repair.
//
// Going on without it is safe because what a dead process leaves is found
// where it matters by whoever needs it: a word it left frozen or with its
// SEM_UNDO intent in flight sends every op to the lock (which is where the
// repair runs); its waiter slots matter only to lock holders; and its
// undo record's adjustments, not applied yet, are as if it had died a
// little later. The calls needing the lock wait for the holder anyway.
//
// Whether the holder lives is looked up (in /proc) at most once per
// shm.LivenessInterval for the same holder.
func (s *Array) tryRepair(full bool) bool {
	gen := s.seg.DeadGen()
	died := false
	if !s.mu.TryLockAs(s.me) {
		h := s.mu.HolderTask()
		if h != 0 && h == int(s.liveHolder.Load()) &&
			time.Now().UnixNano()-s.liveSeen.Load() < int64(shm.LivenessInterval) {
			return false
		}
		if !s.mu.RecoverIfDead() {
			if h = s.mu.HolderTask(); h != 0 {
				s.liveHolder.Store(int32(h))
				s.liveSeen.Store(time.Now().UnixNano())
			}
			return false
		}
		died = true
	}
	s.localHeld = false
	defer s.guard(s.mu.Enter())
	s.repairLocked(full || died)
	s.seenGen.Store(gen)
	s.unlock()
	return true
}

// repairLocked makes the set consistent after deaths: a dead lock holder's
// transaction (full: scan every word for FROZEN), dead processes' waiter
// slots and in-flight SEM_UNDO ops, their undo records (applied, clamped to
// [0, SEMVMX], sempid = the dead process), then the wake-up scan.
func (s *Array) repairLocked(full bool) {
	v := s.v
	sc := &s.sc
	committed := v.hdr.jcommit.Load() != 0
	if full || committed {
		for i := range v.words {
			w := v.words[i].Load()
			if w&flagFrozen != 0 && w&flagPending != 0 && !committed && s.inFlight(w, i) {
				// Frozen by the dead holder to judge an intent (freeze,
				// settleIntent) that is in flight: give it back as it was.
				putWord(&v.words[i], w&^flagFrozen)
				continue
			}
			if w&flagFrozen != 0 && !has(sc.frozenMark, i) {
				set(sc.frozenMark, i)
				sc.frozen = append(sc.frozen, int32(i))
				if !committed {
					putWord(&v.shadow[i], w&dataMask)
				}
				sc.work[i] = w & dataMask
			}
		}
		if committed {
			s.apply(nil, false)
		}
	}
	// Waiter slots of dead processes (the whole table: slotsHi is
	// recomputed here).
	nwait := uint64(0)
	hi := 0
	for idx := range v.slots {
		slot := &v.slots[idx]
		st := slot.State.Load()
		if st == 0 {
			continue
		}
		if st == stClaimed {
			// Claimed by the dead holder, and not completed (the redo
			// above completed the one it committed): queued still.
			put32(&slot.State, stWaiting)
			st = stWaiting
		}
		if st == stLeft || slot.Life.Dead() || !s.alive(int(slot.PID.Load()), slot.Start.Load()) {
			if st == stWaiting || st == stLeft {
				s.dequeue(idx)
			} else {
				slot.State.CompareAndSwap(st, 0)
			}
			continue
		}
		switch {
		case st == stWaiting:
			nwait++
		case full:
			// Completed, perhaps by the dead holder, which then had no
			// time to wake it (the registry's death pass wakes every
			// slot, but it may not know of this death yet).
			s.sc.wake = append(s.sc.wake, int32(idx))
		}
		hi = idx + 1
	}
	putWord(&v.hdr.nwait, nwait)
	putWord(&v.hdr.slotsHi, uint64(hi))
	// Undo records of dead processes.
	undoers := uint64(0)
	for r := range v.recs {
		h := v.recs[r].hdr
		pid := h.pid.Load()
		if pid == 0 {
			continue
		}
		if s.alive(int(pid), h.start.Load()) {
			undoers |= 1 << r
			if h.life.Dead() && !kernel.ProcessExiting(int(pid)) {
				s.sawAlive(r, h) // it exec'd (undoerDied; a dying one: settle)
			}
			continue
		}
		s.applyUndo(r, pid)
		s.smartUpdate(nil) // (exit_sem)
	}
	if undoers != v.hdr.undoers.Load() {
		putWord(&v.hdr.undoers, undoers)
	}
	if full || committed {
		// A dead lock holder's change, redone or applied, whose waiters
		// it may not have looked at.
		s.smartUpdate(nil)
	}
}

// applyUndo applies dead record r's adjustments as exit_sem does, in one
// transaction, and frees the record.
func (s *Array) applyUndo(r int, pid uint64) {
	v := s.v
	sc := &s.sc
	rc := &v.recs[r]
	for i := range v.words {
		if w := v.words[i].Load(); w&flagPending != 0 && int((w&recMask)>>recShift) == r {
			s.completePending(i)
		}
	}
	sc.dirty = sc.dirty[:0]
	p := (pid << pidShift) & pidMask
	for i := range rc.adj {
		a := int(int16(uint16(rc.adj[i].Load())))
		if a == 0 {
			continue
		}
		s.freeze(i)
		nv := max(0, min(SEMVMX, int(sc.work[i]&valueMask)+a))
		sc.work[i] = uint64(nv) | p
		putWord(&v.shadow[i], sc.work[i])
		sc.dirty = append(sc.dirty, int32(i))
	}
	putWord(&v.hdr.jarg, uint64(r))
	putWord(&v.hdr.jcommit, packCommit(jkUndo, -1, 0, 0))
	crashpoint(StepUndoCommitted)
	s.apply(sc.dirty, false)
}

// undoerDied reports whether a process holding an undo record of the set
// has died (its record's Life says so) and its adjustments wait to be
// applied: the calls that see it repair first (settle), so that an undo is
// applied once the death can be seen, as Linux applies it in the exit.
// This process's own record does not count: it lives.
//
// A marked record whose process this handle found alive and not exiting,
// at two looks execConfirm apart (sawAlive), does not count until a death
// is reported or the second ends (seenAlive): the process exec'd (execve
// keeps semadj; the new image Holds the record again when it next uses
// it, claimRecord); settle and the repair look again after that. One that
// is dying and not dead yet (for microseconds after a kill, seconds while
// a core is dumped) is not stamped: every call looks again.
//
// (Inlined: the fast paths pay two loads and a test while no record but
// this process's own has a holder.)
func (s *Array) undoerDied() bool {
	return s.undoers.Load()&^s.ownUndo.Load() != 0 && s.anyMarkedUndoer()
}

// anyMarkedUndoer is undoerDied's look at the records, out of line so that
// undoerDied inlines.
//
//go:noinline
func (s *Array) anyMarkedUndoer() bool { return s.markedUndoer() >= 0 }

// markedUndoer returns a record of another process whose Life is marked
// and that counts for undoerDied, or -1.
func (s *Array) markedUndoer() int { return s.markedUndoerIn(s.undoers.Load() &^ s.ownUndo.Load()) }

// markedUndoerIn is markedUndoer among the records in m.
func (s *Array) markedUndoerIn(m uint64) int {
	for m &= 1<<UndoRecords - 1; m != 0; m &= m - 1 {
		r := bits.TrailingZeros64(m)
		if h := s.v.recs[r].hdr; h.life.Dead() && !s.seenAlive(r, h) {
			return r
		}
	}
	return -1
}

// seenAlive reports whether this handle found the process now holding
// record r (head h) alive although the record's Life is marked, since the
// last death reported (the set's deadGen) and in the current second. (The
// record may have passed to another process since: the stamp names the
// process, pid and start time.)
//
// The registry watches every client process until it exits, and reports
// its death by bumping deadGen: a stamp lasts until then, so that the fast
// paths of every process do not pay a look at the clock on each call for
// as long as a process that exec'd lives (a whole program's run, in the
// common take-a-semaphore-then-exec pattern: P+V took 4.5× as long when
// they did). The second bounds it for a process no registry watches (one
// that exec'd before the registry's host changed).
func (s *Array) seenAlive(r int, h *recHdr) bool {
	a := &s.aliveAt[r]
	w := a.who.Load()
	return w != 0 && a.gen.Load() == s.deadGen.Load() && a.sec.Load() == clock.Now() &&
		w == aliveKey(h.pid.Load(), h.start.Load())
}

// sawAlive notes that record r's process (head h), its Life marked, was
// found alive and not exiting now; it stamps the record once that has
// held at two looks execConfirm apart. A first look is not enough:
// ProcessExiting misses the moment between a killed process's main thread
// taking its SIGKILL and its PF_EXITING, and when the other threads (the
// Life's among them) have gone by then, a dying process looks exec'd for
// that moment. Stamped then, its undo stayed unapplied after it was
// reaped, until the registry reported the death or the second ended
// (TestUndoAfterSlowDeath on a loaded machine, a few rounds in a
// thousand; the moment lasted 27–38 µs there). Until the stamp, every
// call looks again, as for a dying process.
func (s *Array) sawAlive(r int, h *recHdr) {
	a := &s.aliveAt[r]
	key := aliveKey(h.pid.Load(), h.start.Load())
	now := time.Now().UnixNano()
	if a.first.Load() != key {
		a.firstAt.Store(now)
		a.first.Store(key) // after firstAt: a reader that sees key sees its time
		return
	}
	if now-a.firstAt.Load() < int64(execConfirm) {
		return
	}
	a.who.Store(0)
	a.gen.Store(s.deadGen.Load())
	a.sec.Store(clock.Now())
	a.who.Store(aliveKey(h.pid.Load(), h.start.Load()))
}

// aliveKey names a process by pid (22 bits) and start time (the rest);
// never 0 for a process.
func aliveKey(pid, start uint64) uint64 { return pid&(1<<22-1) | start<<22 }

// aliveStamp is one record's seenAlive stamp.
type aliveStamp struct {
	who atomic.Uint64 // aliveKey of the process found alive; 0 none
	gen atomic.Uint32 // the set's deadGen then
	sec atomic.Int64  // clock.Now() then

	first   atomic.Uint64 // aliveKey of the process sawAlive first found alive
	firstAt atomic.Int64  // when (Unix ns)
}

// execConfirm is how long a process whose Life is marked must have been
// found alive and not exiting before its record is stamped (sawAlive):
// far longer than the moment ProcessExiting misses (27–38 µs measured on
// a loaded machine) and than a few scheduler slices, should the thread be
// preempted in it; short enough that a process that exec'd costs others
// only that long of looks at /proc.
const execConfirm = 20 * time.Millisecond

// settle repairs if undoerDied, waiting for the lock while its holder
// runs, as a read on Linux waits for the kernel's lock: the holder's
// sections are short, and it repairs before it unlocks (unlock), so the
// wait ends at its unlock, however long a loaded machine keeps it off its
// CPU (up to settleMax). A holder that is stopped (SIGSTOP) is not waited
// for, whether it was stopped before the wait or during it: the calls go
// on as if the death came later, as with tryRepair (a stopped holder must
// not stop lock-free calls); until that holder unlocks, settle does not
// wait on it again (a later holding of the lock is waited for afresh,
// should it be continued by then).
func (s *Array) settle() { _ = s.settleWithin(context.Background(), time.Time{}) }

// settleWithin is settle for an Op, which stops waiting for the holder
// when ctx ends (canceled) or the deadline passes (EAGAIN, as semtimedop's
// expiry; the zero deadline is none), with nothing done, as lockWithin
// stops waiting for the lock. (Otherwise a TimedOp of a millisecond could
// take up to settleMax.)
func (s *Array) settleWithin(ctx context.Context, deadline time.Time) error {
	if !s.undoerDied() {
		return nil
	}
	// The marked records of live processes first (each looked at once):
	// nothing to repair.
	m := s.undoers.Load() &^ s.ownUndo.Load()
	r := s.markedUndoerIn(m)
	for ; r >= 0; r = s.markedUndoerIn(m) {
		m &^= 1 << r
		h := s.v.recs[r].hdr
		pid := h.pid.Load()
		if pid == 0 || !s.alive(int(pid), h.start.Load()) {
			break
		}
		if !kernel.ProcessExiting(int(pid)) {
			s.sawAlive(r, h) // it exec'd, or seems to (sawAlive)
		}
		// (A dying one is not stamped: nothing to repair yet, as on Linux
		// until the exit's end, and the next call looks again.)
	}
	if r < 0 {
		return nil
	}
	start := time.Now()
	look := settleLook
	for !s.tryRepair(false) {
		if !s.undoerDied() {
			break // repaired by the holder as it unlocked
		}
		sec := s.mu.Sections()
		h := s.mu.HolderTask()
		if h != 0 && int32(h) == s.stoppedHolder.Load() && sec == s.stoppedSection.Load() {
			return nil // (tryRepair found it alive: stopped still, or continued but not unlocked yet)
		}
		if ctx.Err() != nil {
			return canceled(ctx)
		}
		now := time.Now()
		if !deadline.IsZero() && !now.Before(deadline) {
			return kernel.EAGAIN
		}
		d := now.Sub(start)
		if d > settleMax {
			return nil
		}
		if d > look {
			look = d + settleRelook
			if h != 0 && kernel.ProcessStopped(h) {
				s.stoppedSection.Store(sec)
				s.stoppedHolder.Store(int32(h))
				return nil
			}
		}
		if d < settleLook {
			runtime.Gosched()
		} else {
			time.Sleep(settleNap) // leave the CPU to the holder
		}
	}
	s.stoppedHolder.Store(0)
	return nil
}

// settle's waits for the lock: when it first looks whether the holder is
// stopped, and then how often; how long it naps between tries after the
// first look (Go's timers make that about a millisecond); when it gives
// up on a holder that runs on (one stopped in a way /proc does not show
// as stopped: frozen by a cgroup, say).
const (
	settleLook   = 200 * time.Microsecond
	settleRelook = 10 * time.Millisecond
	settleNap    = 100 * time.Microsecond
	settleMax    = time.Second
)

// alive reports whether the process pid that started at start still runs.
func (s *Array) alive(pid int, start uint64) bool {
	if self, st := kernel.Self(); pid == self && start == st {
		return true
	}
	return kernel.ProcessAlive(pid, start)
}
