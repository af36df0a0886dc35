package sem

import (
	"context"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/usysv/usysv/internal/clock"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/registry"
)

// Op is semop(2) on the set: ops are applied atomically in array order,
// blocking until all can be. A blocked Op ends when ctx does, with nothing
// applied and an error matching both ctx.Err() and kernel.EINTR.
func (s *Array) Op(ctx context.Context, ops ...Buf) error {
	return s.run(ctx, ops, nil)
}

// TryOp is Op that never blocks: as if every op had IPC_NOWAIT.
// An op that cannot proceed gives EAGAIN, with nothing applied.
func (s *Array) TryOp(ops ...Buf) error {
	if err := checkOps(ops); err != nil {
		return err
	}
	if len(ops) == 1 {
		b := ops[0]
		b.Flg |= IPC_NOWAIT
		return s.run(context.Background(), []Buf{b}, nil)
	}
	cp := make([]Buf, len(ops))
	for i, b := range ops {
		b.Flg |= IPC_NOWAIT
		cp[i] = b
	}
	return s.run(context.Background(), cp, nil)
}

// TimedOp is semtimedop(2): Op giving up with EAGAIN, nothing applied, once
// timeout has passed. A negative timeout is EINVAL.
func (s *Array) TimedOp(timeout time.Duration, ops ...Buf) error {
	if err := checkOps(ops); err != nil {
		return err
	}
	if timeout < 0 {
		return kernel.EINVAL
	}
	deadline := time.Now().Add(timeout)
	return s.run(context.Background(), ops, &deadline)
}

// run is the path of every Op: a fast path (fast.go) when one can decide,
// else the general one, until deadline if not nil. (It takes the deadline
// by pointer, and calls the fast paths itself, so that little is live
// across their calls: what is gets stored before their locked
// instructions, and each store delays them.)
func (s *Array) run(ctx context.Context, ops []Buf, deadline *time.Time) error {
	r := fastSlow
	switch {
	case len(ops) != 1:
		if ok, err := s.lean(ops); ok {
			return err
		}
	case ops[0].Flg&SEM_UNDO == 0:
		var err error
		if r, err = s.quick(ops[0]); r == fastDone {
			return err
		}
	case s.open(gateFor(ops[0])) && !s.undoerDied():
		if r, err := s.fastUndo(ops[0]); r == fastDone {
			return err
		}
	}
	var dl time.Time
	if deadline != nil {
		dl = *deadline
	}
	return s.afterFast(ctx, ops, dl, r)
}

// afterFast runs what the fast paths did not decide, as r says.
func (s *Array) afterFast(ctx context.Context, ops []Buf, deadline time.Time, r fastResult) error {
	switch r {
	case fastPost:
		return s.post(ctx, ops, deadline)
	case fastLocked:
		return s.slowOp(ctx, ops, deadline)
	case fastBlock:
		return s.block(ctx, ops, deadline)
	}
	return s.slow(ctx, ops, deadline)
}

// slow is the general path, for what the fast paths left.
func (s *Array) slow(ctx context.Context, ops []Buf, deadline time.Time) error {
	if slowHook != nil {
		slowHook()
	}
	if err := checkOps(ops); err != nil {
		return err
	}
	return s.op(ctx, ops, deadline)
}

// op runs ops (already checked: 1 ≤ len ≤ SEMOPM). The zero deadline means
// none. This is the path every Op takes; its first part is the fast path.
func (s *Array) op(ctx context.Context, ops []Buf, deadline time.Time) error {
	if s.closed.Load() {
		return ErrClosed
	}
	seg := s.seg
	if seg.Removed() {
		return kernel.EINVAL
	}
	if s.deadGen.Load() != s.seenGen.Load() {
		s.tryRepair(false)
	}
	if err := s.settleWithin(ctx, deadline); err != nil {
		return err
	}
	if len(ops) == 1 {
		b := ops[0]
		if int(b.Num) >= s.nsems {
			return s.failedUndo(ops, kernel.EFBIG)
		}
		if !s.permitted(b.Op != 0) {
			return s.failedUndo(ops, kernel.EACCES)
		}
		s.refreshGate()
		r, err := s.fastOne(b)
		if r == fastDone {
			return err
		}
		if r == fastBlock && preQueueSpin > 0 {
			r, err = s.spinOne(b)
		}
		if r == fastDone {
			return err
		}
	} else {
		alter := false
		for _, b := range ops {
			if int(b.Num) >= s.nsems {
				return s.failedUndo(ops, kernel.EFBIG)
			}
			if b.Op != 0 {
				alter = true
			}
		}
		if !s.permitted(alter) {
			return s.failedUndo(ops, kernel.EACCES)
		}
		s.refreshGate()
	}
	return s.slowOp(ctx, ops, deadline)
}

// failedUndo returns err, a semop failure that Linux reports after it gave
// the process its undo structure for the set (do_semtimedop calls
// find_alloc_undo, which checks no permission, before its EFBIG and EACCES
// checks). With a SEM_UNDO op in ops this process takes its undo record
// here as well, so that its exit, as Linux's exit_sem, sets otime and
// looks at the waiters again. (A process that cannot map the set at all
// cannot: sem.Op's numBeforePerm.)
func (s *Array) failedUndo(ops []Buf, err error) error {
	for _, b := range ops {
		if b.Flg&SEM_UNDO != 0 {
			s.claimUnlocked()
			break
		}
	}
	return err
}

// claimUnlocked takes this process's undo record under the lock (none if
// the set is removed or every record is taken).
func (s *Array) claimUnlocked() {
	defer s.guard(s.lock())
	if !s.seg.Removed() {
		_, _ = s.claimRecord()
	}
	s.unlock()
}

// permitted reports whether this process may read (alter false) or alter
// the set, using a decision cached until the set's permissions change.
func (s *Array) permitted(alter bool) bool {
	seq := s.seg.PermSeq()
	c := s.perm.Load()
	if c&permValid == 0 || uint32(c>>32) != seq {
		c = s.refreshPerm()
	}
	if alter {
		return c&permAlter != 0
	}
	return c&permRead != 0
}

func (s *Array) refreshPerm() uint64 {
	uid, gid, mode, seq := s.seg.Perm()
	p := s.seg.Params()
	cr := registry.Self()
	c := uint64(seq)<<32 | permValid
	if registry.Permitted(cr, uid, gid, p.CUID, p.CGID, mode, registry.Read) {
		c |= permRead
	}
	if registry.Permitted(cr, uid, gid, p.CUID, p.CGID, mode, registry.Write) {
		c |= permAlter
	}
	s.perm.Store(c)
	return c
}

// spinOne re-checks a single op that would block (no IPC_NOWAIT) for a
// while before it queues, so that a peer about to post does not cost us a
// sleep; for how long is the handle's spin policy's call (spin.go).
func (s *Array) spinOne(b Buf) (fastResult, error) {
	tight, budget, kind := s.spin.start(preQueueSpin)
	if budget <= 0 {
		return fastBlock, nil
	}
	r, err := fastBlock, error(nil)
	sp := s.newSpinner(tight, budget)
	for r == fastBlock && sp.next() {
		r, err = s.fastOne(b)
	}
	if r != fastSlow {
		s.spin.ended(kind, r == fastDone, sp.paid())
	}
	return r, err
}

// fastOne is one lock-free attempt at a single op.
func (s *Array) fastOne(b Buf) (fastResult, error) {
	if b.Flg&SEM_UNDO == 0 {
		return s.fastSingle(b)
	}
	return s.fastUndo(b)
}

type fastResult int

const (
	fastDone   fastResult = iota // finished, with the error returned
	fastBlock                    // the op must wait
	fastSlow                     // the fast path cannot decide: take the lock
	fastPost                     // quick: a post on a word the lock holders own: post
	fastLocked                   // quick: another op on such a word: slowOp
)

// fastSingle is one op without SEM_UNDO on a word no transaction or waiter
// holds: one CAS that sets semval and sempid together.
//
// A completed SEM_UNDO intent on the word keeps its fields: the CAS could
// not tell it from a later, identical intent of the same record that is in
// flight (parity is one bit: see fastUndo), and taking that one off the
// word would let a lock holder read and write the record's semadj before
// its op stores it. The fields go when a lock holder freezes the word, or
// with the next SEM_UNDO op's intent.
func (s *Array) fastSingle(b Buf) (fastResult, error) {
	w := &s.v.words[b.Num]
	for try := 0; try < 16; try++ {
		old := w.Load()
		if old&slowMask != 0 {
			return fastSlow, nil
		}
		if old&flagPending != 0 && s.inFlight(old, int(b.Num)) {
			return fastSlow, nil
		}
		val := int(old & valueMask)
		nv := val + int(b.Op)
		switch {
		case b.Op == 0:
			if val != 0 {
				return s.blocked(b)
			}
			if old&pidMask == s.pid {
				s.touchOtime()
				return fastDone, nil
			}
		case nv < 0:
			return s.blocked(b)
		case nv > SEMVMX:
			return fastDone, kernel.ERANGE
		}
		if w.CompareAndSwap(old, uint64(nv)|s.pid|old&intentMask) {
			s.touchOtime()
			return fastDone, nil
		}
	}
	return fastSlow, nil
}

func (s *Array) blocked(b Buf) (fastResult, error) {
	if b.Flg&IPC_NOWAIT != 0 {
		return fastDone, kernel.EAGAIN
	}
	return fastBlock, nil
}

// fastUndo is one SEM_UNDO op without the lock, once this process has an
// undo record. The CAS on the semaphore's word applies the value and
// leaves a PENDING intent (record, semadj delta, parity); the store of the
// record's semadj word then completes it. A process killed between the two
// leaves an in-flight intent that whoever next needs the word (or the
// repair of the dead process) completes, so the op is applied whole.
// Others treat an in-flight word as slow, and the lock holder waits for it
// (it finishes within nanoseconds unless its owner died; see freeze).
//
// The semadj word is claimed first (adjBusy, one CAS): one goroutine of
// the process at a time runs this on a (record, semaphore), across all its
// handles. Without that, goroutines mixing SEM_UNDO and plain ops on one
// semaphore could meet an ABA: one reads the semadj, others complete
// SEM_UNDO ops and plain ops put the word back as it was, and its CAS then
// succeeds with a stale parity, so that its intent looks complete while it
// is in flight and a second op's semadj store races with its own (a lost
// semadj change, or a word left looking in flight for ever). With the
// claim, the parity read is the current one: only the claim's holder
// flips it (the lock holder's semadj writes keep parity and claim), and
// the store that completes the op releases the claim.
//
// The same ABA threatens whoever takes a completed intent off the word
// (parity is one bit: two ops of the record can leave the word exactly as
// it was, the second in flight). So an intent leaves the word only on a
// decision that cannot be overtaken: the lock holder's, made on the word
// frozen (freeze); ours, replacing an intent of our own record under its
// claim; or ours replacing another record's intent, checked again once our
// own intent guards the word (below). Plain ops keep the intent fields
// (fastSingle).
func (s *Array) fastUndo(b Buf) (fastResult, error) {
	u, num := s.undo.Load(), int(b.Num)
	if u == nil || num >= len(u.adj) || num >= len(s.words) {
		return fastSlow, nil
	}
	w, aw := &s.words[num], &u.adj[num]
	a := aw.Load()
	if a&adjBusy != 0 || !aw.CompareAndSwap(a, a|adjBusy) {
		return fastSlow, nil // another goroutine of ours is at it: take the lock
	}
	a |= adjBusy // (its value may change under the lock holder: see undoDone; its parity not)
	// The usual case, straight through: a word with no intent or with our
	// own completed one, an op that neither waits nor overflows, a CAS
	// that wins. Anything else: undoLoop, from the word's load on. (Few
	// stores before the CAS: each one delays it.)
	old := w.Load()
	parity := uint64(a&adjParity>>16) ^ 1
	if old&(slowMask|flagPending) == 0 ||
		old&(slowMask|flagPending|recMask) == flagPending|u.bits && (old&parityBit)>>parityShift != parity {
		val, na := int(old&valueMask), int(int16(uint16(a)))-int(b.Op)
		nv := val + int(b.Op)
		if nv >= 0 && nv <= SEMVMX && (b.Op != 0 || val == 0) && na >= -(SEMAEM+1) && na <= SEMAEM {
			nw := uint64(nv) | s.pid | flagPending | parity<<parityShift | u.bits | uint64(uint16(-b.Op))<<deltaShift
			crashpoint(StepUndoRead)
			if w.CompareAndSwap(old, nw) {
				return s.undoDone(b, w, aw, a, old, nw)
			}
		}
	}
	return s.undoLoop(b, u, w, aw, a)
}

// undoLoop is fastUndo's general case, once it holds the claim on aw
// (whose value was a): it judges the word as it finds it, and retries a
// lost CAS.
func (s *Array) undoLoop(b Buf, u *undoRec, w *atomic.Uint64, aw *atomic.Uint32, a uint32) (fastResult, error) {
	na := int(int16(uint16(a))) - int(b.Op)
	if na < -(SEMAEM+1) || na > SEMAEM {
		unclaim(aw)
		return fastSlow, nil // let the locked path decide, on a stable semadj
	}
	num := int(b.Num)
	parity := uint64(a&adjParity>>16) ^ 1
	intent := s.pid | flagPending | parity<<parityShift | u.bits | uint64(uint16(-b.Op))<<deltaShift
	for try := 0; try < 16; try++ {
		old := w.Load()
		if old&slowMask != 0 {
			break
		}
		if old&flagPending != 0 {
			// (An intent of our record in flight while we hold the claim
			// is forged: the lock holder drops it.)
			if old&recMask == u.bits {
				if parity == (old&parityBit)>>parityShift {
					break
				}
			} else if s.inFlight(old, num) {
				break
			}
		}
		val := int(old & valueMask)
		nv := val + int(b.Op)
		switch {
		case b.Op == 0 && val != 0, nv < 0:
			unclaim(aw)
			return s.blocked(b)
		case nv > SEMVMX:
			unclaim(aw)
			return fastDone, kernel.ERANGE
		}
		nw := uint64(nv) | intent
		crashpoint(StepUndoRead)
		if !w.CompareAndSwap(old, nw) {
			continue
		}
		// Our intent is in flight: until we complete it, nobody else
		// writes this semadj word, and no lock holder changes any semadj
		// of this semaphore (it waits for us in freeze).
		if old&flagPending != 0 && old&recMask != u.bits && s.inFlight(old, num) {
			// The intent we replaced looked complete, but that record's
			// parity has moved since: the word held a later op of that
			// record, identical and in flight, when we replaced it. Put it
			// back and take the lock, which waits for it.
			if giveBack(w, nw, old) {
				unclaim(aw)
				return fastSlow, nil
			}
		}
		return s.undoDone(b, w, aw, a, old, nw)
	}
	unclaim(aw)
	return fastSlow, nil
}

// undoDone completes a fastUndo op whose CAS put its intent on the word
// (nw, replacing old): the store of the semadj claimed with value a,
// which releases the claim.
func (s *Array) undoDone(b Buf, w *atomic.Uint64, aw *atomic.Uint32, a uint32, old, nw uint64) (fastResult, error) {
	// Our semadj's value may have changed between our read and our CAS
	// on the word (a SETVAL that cleared it, keeping its parity, and left
	// the word as it was): then adjust the value there now.
	// (Both callers checked the range on the value claimed.)
	if a2 := aw.Load(); a2 != a {
		a = a2
	}
	na := int(int16(uint16(a))) - int(b.Op)
	if na < -(SEMAEM+1) || na > SEMAEM {
		giveBack(w, nw, old)
		unclaim(aw)
		return fastDone, kernel.ERANGE
	}
	crashpoint(StepUndoCAS)
	put32(aw, uint32(uint16(int16(na)))|uint32(nw&parityBit>>parityShift)<<16) // (releases the claim)
	if now := clock.Now(); s.otime.Load() < now {                              // (touchOtime)
		s.bumpOtime(now)
	}
	return fastDone, nil
}

// giveBack undoes fastUndo's CAS of word w from old to nw while its intent
// is in flight: nobody else changes such a word, but a lock holder may
// have it frozen for a moment (freeze judges intents on the word frozen,
// and gives an in-flight one back at once). It reports false if the word
// is no longer as we left it (our intent dropped after intentBound, which
// loses the op's semadj change; see settleIntent).
func giveBack(w *atomic.Uint64, nw, old uint64) bool {
	var since time.Time
	for !w.CompareAndSwap(nw, old) {
		if w.Load() != nw|flagFrozen {
			return false
		}
		if since.IsZero() {
			since = time.Now()
		} else if time.Since(since) > intentBound {
			return false // (its holder died there; the repair gives it back)
		}
		runtime.Gosched()
	}
	return true
}

// unclaim releases a semadj word's claim without having changed it (the
// lock holder may have changed its value meanwhile: an atomic AND).
func unclaim(aw *atomic.Uint32) { aw.And(^uint32(adjBusy)) }

// inFlight reports whether a PENDING word's SEM_UNDO op has not yet
// updated its record's semadj.
func (s *Array) inFlight(w uint64, num int) bool {
	r := int((w & recMask) >> recShift)
	a := s.v.recs[r].adj[num].Load()
	return uint64(a&adjParity>>16) != (w&parityBit)>>parityShift
}

// block is a single op without SEM_UNDO that must wait, once quick's gate
// has let it through: what op does after its checks (a spin, then the
// locked path), without repeating them.
func (s *Array) block(ctx context.Context, ops []Buf, deadline time.Time) error {
	if preQueueSpin > 0 {
		if r, err := s.spinOne(ops[0]); r == fastDone {
			return err
		}
	}
	return s.slowOp(ctx, ops, deadline)
}

// slowOp runs ops under the segment lock: evaluated and applied as one
// journaled transaction, then the waiter queue is re-scanned; or, if they
// must block, queued in the waiter table, and waited for.
func (s *Array) slowOp(ctx context.Context, ops []Buf, deadline time.Time) error {
	t, err := s.lockWithin(ctx, deadline)
	if err != nil {
		return err
	}
	defer s.guard(t)
	crashpoint(StepLocked)
	return s.opLocked(ctx, ops, deadline)
}

// opLocked is slowOp once the lock is held; it unlocks.
func (s *Array) opLocked(ctx context.Context, ops []Buf, deadline time.Time) error {
	if s.seg.Removed() {
		s.unlock()
		return kernel.EIDRM
	}
	rec := -1
	for _, b := range ops {
		if b.Flg&SEM_UNDO != 0 {
			var err error
			if rec, err = s.claimRecord(); err != nil {
				s.unlock()
				return err
			}
			break
		}
	}
	res, blockAt := s.eval(ops, s.pid, rec)
	crashpoint(StepEvaluated)
	switch {
	case res == 0:
		s.commit(ops, rec, -1, 0, s.v.hdr.nwait.Load() == 0)
		if alters(ops) {
			s.smartUpdate(ops)
		}
		s.unlock()
		return nil
	case res < 0:
		s.unlock()
		return kernel.Errno(-res)
	}
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		s.unlock()
		return kernel.EAGAIN
	}
	if ctx.Err() != nil {
		s.unlock()
		return canceled(ctx)
	}
	// From enqueue until its result is read the waiter uses its slot: a
	// dropped cached handle's segment is not retired (forget; its words
	// would read zeros) before it is done. (Removed and retired since the
	// check above, the wait finds the set removed: EIDRM.)
	s.seg.BeginSleep()
	defer s.seg.EndSleep()
	spin := waiterSpin > 0 && s.spin.credit.Load() > 0
	idx, err := s.enqueue(ops, rec, blockAt, !spin)
	crashpoint(StepEnqueued)
	if err == nil {
		s.releaseQueued(ops)
	}
	s.unlock()
	if err != nil {
		return err
	}
	return s.wait(ctx, idx, deadline, spin)
}

// releaseQueued releases, WAITED, the frozen words of a critical section
// that has just queued ops, when they are all words ops names (as they
// are unless a repair froze others): a queued waiter names each of them,
// which spares unlock its scan of the waiter table (unfreezeAll).
func (s *Array) releaseQueued(ops []Buf) {
	sc := &s.sc
	if len(sc.frozen) > len(ops) || len(ops) > leanMax {
		return
	}
	for _, i := range sc.frozen {
		named := false
		for _, b := range ops {
			if int32(b.Num) == i {
				named = true
				break
			}
		}
		if !named {
			return
		}
	}
	for _, i32 := range sc.frozen {
		i := int(i32)
		if !has(sc.frozenMark, i) {
			continue
		}
		w := &s.v.words[i]
		putWord(w, w.Load()&dataMask|flagWaited)
		clr(sc.frozenMark, i)
	}
	sc.frozen = sc.frozen[:0]
}

// postMax is the most waiters on its semaphore a post completes itself;
// with more, the general path does.
const postMax = 8

// post is a single op > 0 without SEM_UNDO (V) on a word that a waiter
// names or a transaction holds, once quick's gate has let it through. It
// is the general locked path (eval, commit, smartUpdate) cut down to what
// a post does while no complex waiter is queued (queue.go): Linux then
// scans only this semaphore's alter list, in order, stopping at 0, and
// after each completion that leaves the semaphore at 0, its zero list. So,
// under the lock:
//
//  1. scan the waiter table once (waiting, which lowers slotsHi): the
//     single-op waiters on the semaphore, by ticket, are the candidates;
//     a complex waiter anywhere (the queues are merged), a SEM_UNDO
//     candidate, more than postMax, a removed set, anything unusual: the
//     general path, from the lock on (opLocked);
//  2. freeze the word and store the post's new value in it, still frozen:
//     one word, so that store is the post's commit point (a death before
//     it leaves the old value, which repair unfreezes; after it, the new);
//  3. complete the decrements that can now proceed, in ticket order, until
//     the value is 0, and when it is, every zero waiter, in ticket order;
//     each as a journaled transaction in the general format (shadow,
//     jcommit naming the slot, then the word, the outcome, jcommit ← 0),
//     which repair redoes;
//  4. release the word, WAITED if a candidate still waits, and unlock,
//     which wakes the completed.
func (s *Array) post(ctx context.Context, ops []Buf, deadline time.Time) error {
	t, err := s.lockWithin(ctx, deadline)
	if err != nil {
		return err
	}
	defer s.guard(t)
	crashpoint(StepLocked)
	v, sc := s.v, &s.sc
	i := int(ops[0].Num)
	if s.state.Load() != live || len(sc.frozen) != 0 || v.hdr.jcommit.Load() != 0 {
		return s.opLocked(context.Background(), ops, time.Time{})
	}
	var (
		cand [postMax]int32 // candidate slots, by ticket
		tick [postMax]uint64
		op   [postMax]int16
		n    int
	)
	for _, idx := range s.waiting() {
		slot := &v.slots[idx]
		off, m, _ := unpackSlotOps(slot.Arg[argOps].Load())
		if m != 1 || off < 0 || off >= len(v.arena) {
			return s.opLocked(context.Background(), ops, time.Time{})
		}
		e := unpackOp(v.arena[off].Load())
		if int(e.Num) != i {
			continue
		}
		if e.Flg&SEM_UNDO != 0 || e.Op > 0 || n == postMax {
			return s.opLocked(context.Background(), ops, time.Time{})
		}
		t := slot.Arg[argTicket].Load()
		j := n
		for ; j > 0 && tick[j-1] > t; j-- {
			cand[j], tick[j], op[j] = cand[j-1], tick[j-1], op[j-1]
		}
		cand[j], tick[j], op[j] = idx, t, e.Op
		n++
	}
	s.freeze(i)
	val := int(sc.work[i]&valueMask) + int(ops[0].Op)
	if val > SEMVMX {
		return s.opLocked(context.Background(), ops, time.Time{}) // (ERANGE)
	}
	crashpoint(StepPostFrozen)
	w := &v.words[i]
	d := uint64(val) | s.pid
	putWord(w, d|flagFrozen)
	s.touchOtime()
	crashpoint(StepPostApplied)
	left := n
	complete := func(k int) {
		idx := cand[k]
		cand[k] = -1
		left--
		slot := &v.slots[idx]
		if !s.claim(idx) {
			return // (gone: its call ended, or the set was removed meanwhile)
		}
		crashpoint(StepClaimed)
		val += int(op[k])
		d = uint64(val) | uint64(slot.PID.Load())<<pidShift&pidMask
		putWord(&v.shadow[i], d)
		putWord(&v.hdr.jcommit, packCommit(jkOps, int(idx), 0, 0))
		crashpoint(StepPostCommitted)
		putWord(w, d|flagFrozen)
		putWord(&slot.Arg[argResult], 0)
		put32(&slot.State, stDone)
		putWord(&v.hdr.nwait, v.hdr.nwait.Load()-1)
		sc.wake = append(sc.wake, idx)
		putWord(&v.hdr.jcommit, 0)
		crashpoint(StepPostCompleted)
	}
	for k := 0; k < n && val != 0; k++ {
		if cand[k] < 0 || op[k] == 0 || val+int(op[k]) < 0 {
			continue
		}
		complete(k)
		if val == 0 {
			for z := 0; z < n; z++ {
				if cand[z] >= 0 && op[z] == 0 {
					complete(z)
				}
			}
		}
	}
	if left > 0 {
		d |= flagWaited
	}
	putWord(w, d)
	clr(sc.frozenMark, i)
	sc.frozen = sc.frozen[:0]
	if afterRelease != nil {
		afterRelease(s, i)
	}
	s.unlock()
	return nil
}

// wait sleeps until the waiter in slot idx is completed by a waker (who
// applied its whole array, or failed it), the set is removed (EIDRM), ctx
// ends or the deadline passes (nothing applied).
//
// With spin, the waiter re-checks for a while first, and tells wakers that
// it may be asleep only then (argSleep); without, enqueue told them.
func (s *Array) wait(ctx context.Context, idx int, deadline time.Time, spin bool) error {
	if done, err := s.sleep(ctx, idx, deadline, spin); !done {
		return s.abandon(idx, err)
	}
	return s.finish(idx)
}

// sleep is wait until the waiter is completed (done) or must give up with
// err. The slot is the call's throughout, outside the lock: a panic here
// is the waiter's death (sleepGuard).
func (s *Array) sleep(ctx context.Context, idx int, deadline time.Time, spin bool) (done bool, err error) {
	defer s.sleepGuard(idx)
	slot := &s.v.slots[idx]
	if spin {
		// Queued: re-check for a while before sleeping (spin.go). A waker
		// that completes us meanwhile makes no system call.
		for sp := s.newSpinner(waiterSpin, waiterSpin); ; {
			if slot.State.Load() == stDone {
				s.spin.ended(kindCredit, true, sp.paid())
				return true, nil
			}
			if !sp.next() {
				s.spin.ended(kindCredit, false, false)
				break
			}
		}
		// Before the re-check below: a waker that completes us after it
		// sees argSleep and wakes us; one before, the re-check sees.
		slot.Arg[argSleep].Store(1)
	}
	crashpoint(StepWaiting)
	if ctx.Done() != nil {
		// The wake-up runs in a goroutine of its own and touches the slot:
		// wait for it if it has started, so that it never writes to the
		// segment after Op returned (and the caller perhaps Closed the set,
		// unmapping it: fuzz finding F4).
		woke := new(atomic.Bool)
		stop := context.AfterFunc(ctx, func() {
			slot.Futex.Add(1)
			_, _ = kernel.FutexWake(&slot.Futex, 1)
			woke.Store(true)
		})
		defer func() {
			if !stop() {
				for !woke.Load() {
					runtime.Gosched()
				}
			}
		}()
	}
	// The sleep is bounded by the context's deadline too, not only by the
	// wake-up its expiry sends: a process that can write the segment could
	// otherwise swallow that wake-up (fuzz FINDINGS F14, formerly U3).
	ctxEnd, _ := ctx.Deadline()
	for {
		// A waker sets State, then adds to Futex: if f has its add, the
		// check below sees State; if not, FutexWait(f) returns at once.
		f := slot.Futex.Load()
		if slot.State.Load() == stDone {
			return true, nil
		}
		if s.seg.Removed() {
			return false, kernel.EIDRM
		}
		until := deadline
		if !ctxEnd.IsZero() && (until.IsZero() || ctxEnd.Before(until)) {
			until = ctxEnd
		}
		if s.deadGen.Load() != s.seenGen.Load() {
			if s.tryRepair(false) {
				continue
			}
			// A live process holds the lock: it repairs before it
			// unlocks, but a lean array (fast.go) does not; look again
			// now and then.
			if t := time.Now().Add(repairPoll); until.IsZero() || t.Before(until) {
				until = t
			}
		}
		if ctx.Err() != nil {
			return false, canceled(ctx)
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return false, kernel.EAGAIN
		}
		clock.Park()
		_ = kernel.FutexWait(&slot.Futex, f, until)
		if slot.State.Load() == stDone { // the usual wake-up: straight out
			s.spin.sleptOrWoke()
			return true, nil
		}
	}
}

// sleepGuard, deferred by sleep, handles a panic while the call is queued
// outside the lock as the waiter's death there: its slot is given up as a
// dead process's, and the repair that dequeues it runs at once if the
// lock is free (else the next repair does; until then a waker may still
// complete it, as if the waiter had died just after). Then the panic goes
// on. (A panic under the lock is guard's.)
func (s *Array) sleepGuard(idx int) {
	if r := recover(); r != nil {
		s.v.slots[idx].Abandon()
		s.tryRepair(true)
		panic(r)
	}
}

// repairPoll is how often a waiter whose set has a repair pending, with
// its lock held by a live process, tries the repair again.
const repairPoll = 10 * time.Millisecond

// finish returns a completed waiter's outcome and frees its slot.
func (s *Array) finish(idx int) error {
	slot := &s.v.slots[idx]
	e := slot.Arg[argResult].Load()
	slot.Life.Release()
	put32(&slot.State, 0) // the slot is ours to free: no one else writes it now
	if e != 0 {
		return kernel.Errno(e)
	}
	return nil
}

// abandon ends a queued waiter's call with err (its timeout or context
// ended, or the set was removed), unless a waker completed it meanwhile:
// then that outcome stands (its ops were applied). It leaves the queue
// without the lock (queue.go: leaving the queue), so that a lock holder
// that is stopped (SIGSTOP) does not keep the call from ending, unless
// that holder had claimed it: then the holder decides, and the call waits
// for it as for a waker that has begun.
func (s *Array) abandon(idx int, err error) error {
	slot := &s.v.slots[idx]
	// Released first: once it has left, the slot may be dequeued and
	// taken by another process's waiter, with the same Life word. (A
	// death from here on is found by the repair's look at the process.)
	slot.Life.Release()
	// A removed set is scanned by nobody again, and its lock may belong
	// to a process that will never return to it: the slot is just freed.
	removed := err == kernel.EIDRM && s.seg.Removed()
	for turn := 0; ; turn++ {
		switch slot.State.Load() {
		case stDone:
			return s.finish(idx)
		case stWaiting:
			next := uint32(stLeft)
			if removed {
				next = 0
			}
			if slot.State.CompareAndSwap(stWaiting, next) {
				if !removed {
					s.dropSelf(idx)
				}
				return err
			}
		case stClaimed:
			if removed {
				return err
			}
			// The claimer is inside its critical section (or stopped
			// there: then this waits for it to be continued).
			if turn < claimTurns {
				runtime.Gosched()
			} else {
				s.settleClaim(idx)
			}
		default:
			return err // (freed by a repair that took this process for dead)
		}
	}
}

// dropSelf dequeues the waiter in slot idx, which has left the queue, if
// the lock comes within leaveWait; otherwise a later holder does.
func (s *Array) dropSelf(idx int) {
	t, err := s.lockWithin(context.Background(), time.Now().Add(leaveWait))
	if err != nil {
		return
	}
	defer s.guard(t)
	if s.v.slots[idx].State.Load() == stLeft { // (else another holder did)
		s.dequeue(idx)
	}
	s.unlock()
}

// settleClaim is abandon's look at a claim of the waiter in slot idx that
// lasts: it waits for the lock for up to leaveWait. A claimer that runs
// decides meanwhile (and unlocks); one that died there is taken over, and
// the repair puts its claim back; a claim that no holder made (a corrupt
// segment: the lock was free) is void, and the waiter leaves. A claimer
// that is stopped keeps the lock, and the claim stands.
func (s *Array) settleClaim(idx int) {
	t, err := s.lockWithin(context.Background(), time.Now().Add(leaveWait))
	if err != nil {
		return
	}
	defer s.guard(t)
	if slot := &s.v.slots[idx]; slot.State.Load() == stClaimed {
		put32(&slot.State, stLeft)
		s.dequeue(idx)
	}
	s.unlock()
}

// leaveWait is how long a waiter that left the queue waits for the lock
// to dequeue itself, or one that finds itself claimed for its claimer:
// far longer than a running holder's section. A waiter that finds itself
// claimed first yields claimTurns times.
const (
	leaveWait  = time.Millisecond
	claimTurns = 100
)
