package sem

import (
	"errors"
	"fmt"

	"github.com/usysv/usysv/shm"
)

// check walks the set's invariants and returns what is broken. Tests call
// it when no operation is in progress on the set; it takes the lock.
func (s *Array) check() error {
	if s.closed.Load() {
		return ErrClosed
	}
	defer s.guard(s.lock())
	v := s.v
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: sem %d: "+format, append([]any{shm.ErrCorrupt, s.id}, a...)...))
	}
	if c := v.hdr.jcommit.Load(); c != 0 {
		bad("journal left committed: %#x", c)
	}
	for i := range v.words {
		w := v.words[i].Load()
		if w&flagFrozen != 0 {
			bad("semaphore %d left frozen", i)
		}
		if w&valueMask > SEMVMX {
			bad("semaphore %d value %d > SEMVMX", i, w&valueMask)
		}
		if w&flagPending != 0 && s.inFlight(w, i) {
			bad("semaphore %d has an unfinished SEM_UNDO op", i)
		}
	}
	// Waiters: well-formed, disjoint arena ranges, counted, and those of
	// live processes with their semaphores marked WAITED, and none that
	// could proceed (a lost wake-up) or fail where Linux would have looked
	// at it.
	n := uint64(0)
	type span struct{ off, n int }
	var spans []span
	hi := v.hdr.slotsHi.Load()
	for idx := range v.slots {
		slot := &v.slots[idx]
		st := slot.State.Load()
		if st != 0 && uint64(idx) >= hi {
			bad("slot %d in use at or above slotsHi %d", idx, hi)
		}
		switch st {
		case 0, stDone:
			continue
		case stLeft:
			n++ // (counted until a lock holder dequeues it)
			continue
		case stWaiting:
		default:
			bad("slot %d in state %d", idx, st)
			continue
		}
		n++
		ops, rec, ok := s.waiterOps(slot)
		if !ok {
			bad("slot %d has a malformed op array", idx)
			continue
		}
		off, cnt, _ := unpackSlotOps(slot.Arg[argOps].Load())
		for _, sp := range spans {
			if off < sp.off+sp.n && sp.off < off+cnt {
				bad("slot %d op array overlaps another", idx)
			}
		}
		spans = append(spans, span{off, cnt})
		if slot.Life.Dead() {
			continue // gone, as on Linux: only its slot waits for the repair
		}
		for _, b := range ops {
			if v.words[b.Num].Load()&flagWaited == 0 {
				bad("semaphore %d named by waiter %d is not marked WAITED", b.Num, idx)
			}
		}
		cp := append([]Buf(nil), ops...)
		res, _ := s.eval(cp, s.pid, rec)
		if res == 0 {
			for _, b := range cp {
				s.sc.work[b.Num] = v.words[b.Num].Load() & dataMask
			}
			for _, i := range s.sc.adjTouched {
				clr(s.sc.adjMark, int(i))
			}
			s.sc.adjTouched = s.sc.adjTouched[:0]
		}
		// One that now fails waits for Linux's next look, if it only waits
		// for zero on several semaphores (queue.go); and meanwhile every
		// word is WAITED.
		if res == 0 || res < 0 && waiterKind(cp) != kZeroN {
			bad("waiter %d (%v) could complete (%d) but is still queued", idx, cp, res)
		}
		if waiterKind(cp) == kZeroN {
			for i := range v.words {
				if v.words[i].Load()&flagWaited == 0 {
					bad("semaphore %d is not marked WAITED while waiter %d waits for zero on several", i, idx)
				}
			}
		}
	}
	if got := v.hdr.nwait.Load(); got != n {
		bad("nwait %d, %d waiters queued", got, n)
	}
	for r := range v.recs {
		h := v.recs[r].hdr
		for i := range v.recs[r].adj {
			a := v.recs[r].adj[i].Load()
			if a&^(adjParity|0xFFFF) != 0 {
				bad("record %d semadj %d has stray bits %#x", r, i, a)
			}
			if h.pid.Load() == 0 && a&0xFFFF != 0 {
				bad("free record %d has semadj %d = %d", r, i, int16(a))
			}
		}
	}
	s.unlock()
	return errors.Join(errs...)
}
