package sem

import (
	"cmp"
	"slices"

	"github.com/usysv/usysv/kernel"
)

// The wait queues, as Linux keeps them (ipc/sem.c), so that every queued
// waiter is looked at exactly when Linux looks at it: which waiters a
// change completes, which it fails (an IPC_NOWAIT op that would now block:
// EAGAIN; an overflow: ERANGE), in which order (sempid is the last one's),
// and which op each still blocks on (GETNCNT, GETZCNT) all follow.
//
// Linux queues a blocked array on one of four lists:
//
//   - a single op that alters: the list of its semaphore (pending_alter),
//     or the set's global alter list while complex waiters exist;
//   - a single wait-for-zero op: the zero list of its semaphore;
//   - an array of two or more ops (complex) that alters: the global alter
//     list; one that only waits for zero: the global zero list.
//
// While a complex waiter is queued (complex_count > 0) every altering
// waiter is on the global alter list: queueing the first complex waiter
// moves the per-semaphore lists there (merge_queues: each spliced at the
// front, semaphore 0's first, so they end up in descending semaphore
// order), and singles that come later join at its tail; once no complex
// waiter is left, the lock's release moves them back, in that order
// (unmerge_queues).
//
// Here every list is the queued waiters in ticket order, filtered by kind
// (and semaphore): a waiter's ticket is its position in the list it is on.
// A new waiter takes the next ticket (the tail); merging gives the single
// altering waiters new tickets in merge order (enqueue: rekeyForMerge),
// and unmerging needs nothing, since it keeps that order. Whether the set
// is merged is whether a complex waiter is queued when a change is looked
// at (smartUpdate).
//
// After a change, do_smart_update (smartUpdate): first the zero lists
// (wakeupZero: those of the changed semaphores that are now 0, then the
// global one if any was), then either the global alter list, when merged,
// or the per-semaphore lists of the semaphores raised (all of them after
// SETVAL, SETALL or an undo, whose changes Linux does not list). A scan
// (updateQueue) completes or fails each waiter that no longer blocks; a
// completion runs wakeupZero for that waiter's semaphores, and on the
// global list starts the scan over. A scan of one semaphore's list stops
// when that semaphore is 0. An op array that only waits for zero changes
// nothing and looks at no queue.
//
// The lock-free paths (fast.go) change only words that no queued waiter
// names (not WAITED), and run no scan. That skips nothing: a waiter whose
// semaphores did not change since Linux last looked at it would block
// again, on the same op, and every change to a semaphore it names takes
// the lock and runs smartUpdate. Except for the complex wait-for-zero
// waiters: Linux looks at those whenever a change leaves any semaphore it
// named at 0, whatever semaphores they name, and one may then fail (an
// IPC_NOWAIT op on a semaphore that left 0 unseen) or block on another
// op. So while one is queued every word is kept WAITED (enqueue freezes
// them all, unfreezeAll marks them), which sends every op on the set to
// the lock.
//
// After a repair that took the lock over from a dead holder, every list
// is looked at (smartUpdate(nil)): the holder may have died between its
// change and its look.

// Waiter kinds: which list a queued waiter is on.
const (
	kAlter1 = iota // one op that alters
	kZero1         // one wait-for-zero op
	kAlterN        // an array that alters
	kZeroN         // an array that only waits for zero
)

// qent is a queued waiter, as the scans see it.
type qent struct {
	ticket uint64
	idx    int32 // its slot
	num    uint16
	kind   uint8
	gone   bool // completed or failed in this scan
}

// alters reports whether an op array changes a value (Linux: alter); one
// that only waits for zero looks at no queue when it succeeds.
func alters(ops []Buf) bool {
	for _, b := range ops {
		if b.Op != 0 {
			return true
		}
	}
	return false
}

// waiterKind classifies an op array as Linux queues it.
func waiterKind(ops []Buf) uint8 {
	alter := alters(ops)
	switch {
	case len(ops) == 1 && alter:
		return kAlter1
	case len(ops) == 1:
		return kZero1
	case alter:
		return kAlterN
	}
	return kZeroN
}

// collectWaiters fills sc.wq with the queued waiters in ticket order. A
// waiter whose array cannot be read back (a corrupted segment) is failed
// with EINVAL.
func (s *Array) collectWaiters() {
	sc := &s.sc
	q := sc.wq[:0]
	list := s.waiting()
	if sc.sawLeft {
		s.dropLeft()
	}
	for _, idx := range list {
		ops, _, ok := s.waiterOps(&s.v.slots[idx])
		if !ok {
			if s.claim(idx) {
				s.commit(nil, -1, int(idx), int(kernel.EINVAL), false)
			}
			continue
		}
		q = append(q, qent{ticket: s.v.slots[idx].Arg[argTicket].Load(), idx: idx, num: ops[0].Num, kind: waiterKind(ops)})
	}
	slices.SortStableFunc(q, byTicket)
	sc.wq = q
	sc.merged = false
	for i := range q {
		if q[i].kind >= kAlterN {
			sc.merged = true
		}
	}
}

func byTicket(a, b qent) int { return cmp.Compare(a.ticket, b.ticket) }

// waiting lists the slots of the queued waiters, in slot order (in
// sc.slotList), and lowers slotsHi to just past the last slot in use.
// A waiter whose process has died is not listed (shm.Life: Linux drops it
// in the exit itself); its slot stays queued until the repair frees it.
// Nor is one that left (stLeft); sc.sawLeft says whether there was one.
func (s *Array) waiting() []int32 {
	list := s.sc.slotList[:0]
	slots := s.v.slotsInUse()
	hi := 0
	s.sc.sawLeft = false
	for idx := range slots {
		switch slots[idx].State.Load() {
		case 0:
			continue
		case stWaiting:
			if !slots[idx].Life.Dead() {
				list = append(list, int32(idx))
			}
		case stLeft:
			s.sc.sawLeft = true
		}
		hi = idx + 1
	}
	if hi < len(slots) {
		putWord(&s.v.hdr.slotsHi, uint64(hi))
	}
	s.sc.slotList = list
	return list
}

// smartUpdate is the kernel's do_smart_update after a change: ops is the
// array that made it, or nil when the changed semaphores are not listed
// (SETVAL, SETALL, an undo, a repair). Only an array that alters changes
// anything; callers do not call it for one that only waits for zero.
func (s *Array) smartUpdate(ops []Buf) {
	if s.v.hdr.nwait.Load() == 0 {
		return
	}
	s.collectWaiters()
	s.wakeupZero(ops)
	switch {
	case s.sc.merged:
		s.updateQueue(-1)
	case ops == nil:
		// Every semaphore's list, in semaphore order: those that have one.
		nums := s.sc.nums[:0]
		for _, e := range s.sc.wq {
			if e.kind == kAlter1 {
				nums = append(nums, e.num)
			}
		}
		slices.Sort(nums)
		nums = slices.Compact(nums)
		s.sc.nums = nums
		for _, i := range nums {
			s.updateQueue(int(i))
		}
	default:
		for _, b := range ops {
			if b.Op > 0 {
				s.updateQueue(int(b.Num))
			}
		}
	}
}

// onAlterList reports whether e is on the alter list scanned for num (-1: the
// global list, which holds every altering waiter while the set is merged).
func onAlterList(e *qent, num int) bool {
	if e.gone {
		return false
	}
	if num < 0 {
		return e.kind == kAlter1 || e.kind == kAlterN
	}
	return e.kind == kAlter1 && int(e.num) == num
}

// updateQueue is the kernel's update_queue on the alter list of semaphore
// num, or on the global one (num -1): complete or fail, in list order,
// every waiter that no longer blocks; after a completion, wake the zero
// waiters it made, and on the global list (or after a complex waiter)
// start over, since it may have let an earlier one proceed.
func (s *Array) updateQueue(num int) {
	q := s.sc.wq
again:
	for k := range q {
		e := &q[k]
		if !onAlterList(e, num) {
			continue
		}
		if num >= 0 && s.value(num) == 0 {
			// A single decrement cannot proceed on 0, and nothing on
			// this list is an increment.
			return
		}
		res := s.evalWaiter(e)
		if res == 1 {
			continue
		}
		e.gone = true
		if res != 0 {
			continue
		}
		s.wakeupZero(s.sc.ops)
		if e.kind == kAlterN || s.sc.merged && s.altersLeft() {
			goto again
		}
	}
}

// altersLeft reports whether an altering waiter is still queued.
func (s *Array) altersLeft() bool {
	for i := range s.sc.wq {
		if onAlterList(&s.sc.wq[i], -1) {
			return true
		}
	}
	return false
}

// wakeupZero is the kernel's do_smart_wakeup_zero after ops (nil: every
// semaphore): the zero list of each semaphore ops names that is now 0,
// then, if any was, the global zero list.
func (s *Array) wakeupZero(ops []Buf) {
	sc := &s.sc
	hasZero1, hasZeroN := false, false
	for _, e := range sc.wq {
		if !e.gone {
			hasZero1 = hasZero1 || e.kind == kZero1
			hasZeroN = hasZeroN || e.kind == kZeroN
		}
	}
	if !hasZero1 && !hasZeroN {
		return
	}
	// Copied: waking reads other waiters' arrays into sc.ops.
	nums := sc.zeroNums[:0]
	if ops == nil {
		for i := 0; i < s.nsems; i++ {
			nums = append(nums, uint16(i))
		}
	} else {
		for _, b := range ops {
			nums = append(nums, b.Num)
		}
	}
	sc.zeroNums = nums
	gotZero := false
	for _, i := range nums {
		if s.value(int(i)) == 0 {
			gotZero = true
			if hasZero1 {
				s.wakeConstOps(int(i))
			}
		}
	}
	if gotZero && hasZeroN {
		s.wakeConstOps(-1)
	}
}

// wakeConstOps is the kernel's wake_const_ops on the zero list of
// semaphore num, or the global one (-1): complete or fail, in list order,
// every waiter that no longer blocks. (Completing one changes no value.)
func (s *Array) wakeConstOps(num int) {
	q := s.sc.wq
	for k := range q {
		e := &q[k]
		if e.gone || num >= 0 && (e.kind != kZero1 || int(e.num) != num) || num < 0 && e.kind != kZeroN {
			continue
		}
		if s.evalWaiter(e) != 1 {
			e.gone = true
		}
	}
}

// evalWaiter re-evaluates queued waiter e, as perform_atomic_semop: it
// completes it (0), fails it (an errno, negated), or records the op it now
// blocks on (1). The waiter's array is left in sc.ops.
func (s *Array) evalWaiter(e *qent) int {
	idx := int(e.idx)
	slot := &s.v.slots[idx]
	if !s.claim(e.idx) {
		return -int(kernel.EINVAL) // (gone: its call ended, or the set was removed meanwhile)
	}
	crashpoint(StepClaimed)
	ops, rec, ok := s.waiterOps(slot)
	if !ok {
		s.commit(nil, -1, idx, int(kernel.EINVAL), false)
		return -int(kernel.EINVAL)
	}
	pid := (uint64(slot.PID.Load()) << pidShift) & pidMask
	res, blockAt := s.eval(ops, pid, rec)
	switch {
	case res == 1:
		if uint64(blockAt) != slot.Arg[argBlock].Load() {
			putWord(&slot.Arg[argBlock], uint64(blockAt))
		}
		put32(&slot.State, stWaiting) // (unclaimed: it waits on)
	case res == 0:
		s.commit(ops, rec, idx, 0, false)
	default:
		s.commit(nil, -1, idx, -res, false)
	}
	return res
}

// Leaving the queue. A waiter whose call ends (its timeout, its context)
// leaves without the lock, by a CAS of its State from stWaiting to stLeft
// (abandon, op.go); so that its ops are never applied after that, a lock
// holder claims a waiter before it evaluates it, by a CAS from stWaiting
// to stClaimed, and then completes it (apply, post: stDone) or puts it
// back (stWaiting). Of the two CASes exactly one wins. A waiter that finds
// itself claimed waits for the claimer's section to decide; a claim whose
// holder died is put back by the repair, after the journal's redo has
// completed the one it committed. A left slot stays in the table (and in
// nwait) until a lock holder dequeues it: the leaver, if it gets the lock
// at once, else the next general section (collectWaiters: dropLeft), or
// enqueue, which then reuses it.
//
// (A waiter on Linux leaves its queue under the set's lock, which a
// process never holds while it is stopped. Here a lock holder can be
// stopped (SIGSTOP), and a waiter's timeout must not wait for it.)

// claim claims the waiter in slot idx (stWaiting → stClaimed), or reports
// that it is not waiting.
func (s *Array) claim(idx int32) bool {
	return s.v.slots[idx].State.CompareAndSwap(stWaiting, stClaimed)
}

// dropLeft dequeues every waiter that left the queue (lock held).
func (s *Array) dropLeft() {
	for idx := range s.v.slotsInUse() {
		if s.v.slots[idx].State.Load() == stLeft {
			s.dequeue(idx)
		}
	}
	s.sc.sawLeft = false
}

// value is semaphore i's value as the lock holder sees it: its working
// copy if frozen, else the word (which, named by a queued waiter, is
// WAITED: only lock holders change it).
func (s *Array) value(i int) int {
	if has(s.sc.frozenMark, i) {
		return int(s.sc.work[i] & valueMask)
	}
	return int(s.v.words[i].Load() & valueMask)
}

// rekeyForMerge gives the queued single altering waiters new tickets in
// the order merge_queues leaves them on the global list (descending
// semaphore, each semaphore's in its own order), as the first complex
// waiter is queued; enqueue calls it before it takes that waiter's ticket.
func (s *Array) rekeyForMerge() {
	v := s.v
	q := s.sc.wq[:0]
	for _, idx := range s.waiting() {
		slot := &v.slots[idx]
		ops, _, ok := s.waiterOps(slot)
		if !ok {
			continue
		}
		switch waiterKind(ops) {
		case kAlterN, kZeroN:
			return // merged already
		case kAlter1:
			q = append(q, qent{ticket: slot.Arg[argTicket].Load(), idx: idx, num: ops[0].Num})
		}
	}
	slices.SortStableFunc(q, func(a, b qent) int {
		if a.num != b.num {
			return cmp.Compare(b.num, a.num)
		}
		return byTicket(a, b)
	})
	// The tickets are taken first: a death halfway leaves some singles
	// in merge order and some not, but no two waiters with one ticket.
	t := v.hdr.ticket.Load()
	putWord(&v.hdr.ticket, t+uint64(len(q)))
	for _, e := range q {
		t++
		putWord(&v.slots[e.idx].Arg[argTicket], t)
	}
	s.sc.wq = q[:0]
}
