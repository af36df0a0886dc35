package msgq

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/usysv/usysv/internal/clock"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// The ring: the lock-free FIFO lane in front of the store (layout.go has
// the bytes, doc.go the design). Sends and FIFO receives use it, without
// the lock, while it is open: the store is then empty and nobody sleeps.
// Everything that needs more takes the lock, closes the ring and moves its
// messages into the store (flush.go).
//
// A send claims the slot of the tail's position (CAS on the slot's word,
// which records who claims it), writes the message into it, and commits
// (CAS on the tail word, which also counts the bytes): the commit is the
// send's linearization point, and it fails if the ring closed meanwhile
// (the sender then gives the slot back and takes the lock path). So every
// position before the tail holds a whole message, and a sender that dies
// leaves at most an uncommitted claim at the tail, recognisable by its
// pid and start time, which repair gives back.
//
// A receive copies the head's message speculatively and takes it with one
// CAS on the head word (which fails if anyone took it first or the ring
// closed): the copy was made while the message was the head, so it is
// valid. A slot behind the head is free for the next lap as it is: the
// sender of that lap claims it straight from the word it holds. So a
// receive leaves no state that a receiver that dies could strand.

// Ring words (ringCtl.head, ringCtl.tail):
//
//	bit  63      closed: lock-free calls go to the lock path
//	bits 32..62  position (31 bits, wrapping)
//	bits  0..31  text bytes that went past this end (wrapping)
const (
	ringClosed = 1 << 63
	posMask    = 1<<31 - 1
)

func rpos(w uint64) uint32   { return uint32(w>>32) & posMask }
func rbytes(w uint64) uint32 { return uint32(w) }

func ringWord(closed bool, pos, bytes uint32) uint64 {
	w := uint64(pos&posMask)<<32 | uint64(bytes)
	if closed {
		w |= ringClosed
	}
	return w
}

// radv is ring word w advanced past one message of n text bytes.
func radv(w uint64, n uint32) uint64 {
	return w&ringClosed | uint64((rpos(w)+1)&posMask)<<32 | uint64(rbytes(w)+n)
}

// seqFree is the word of p's slot before any message was ever in it (the
// all-zero ring), or after a sender gave it back.
func (v *view) seqFree(p uint32) uint64 { return uint64(p &^ v.mask) }

// Claim words (a slot's word once a sender claimed it; it stays after the
// send commits, and after the message is taken):
//
//	bit  63      claimed
//	bits 61..62  0 (reserved)
//	bits 39..60  the sender's task (shm.Identity: a thread that lives as long
//	             as its process image; 22 bits: Linux ids are below 1<<22)
//	bits 32..38  text length of the message
//	bits 24..31  low 8 bits of the task's start time (against id reuse)
//	bits  0..23  low 24 bits of the position
//
// A slot of position p holds a message iff its word claims p and the tail
// is past p. It is free for p iff it holds seqFree(p) or a claim of
// p-nslots and the head is past p-nslots.
const (
	claimed    = 1 << 63
	claimRsvd  = 3 << 61
	pidShift   = 39
	pidBits    = 22
	lenShift   = 32
	lenMask    = 127
	startShift = 24
	cposMask   = 1<<24 - 1
)

// claimBase is the part of a process image's claim words that names it;
// 0 if its task id does not fit (it then never claims without the lock).
// A task, not the pid: a sender that execs after its claim is gone as a
// dead one is, and its claim is given back as a dead one's.
func claimBase(task int, start uint32) uint64 {
	if task <= 0 || task >= 1<<pidBits {
		return 0
	}
	return uint64(task)<<pidShift | uint64(start&0xff)<<startShift
}

func selfClaim() uint64 { return claimBase(shm.Identity()) }

// claimWord is this process's claim of position p's slot for a message of
// n bytes.
func (v *view) claimWord(n, p uint32) uint64 {
	return claimed | v.me | uint64(n)<<lenShift | uint64(p&cposMask)
}

func claimLen(c uint64) uint32 { return uint32(c>>lenShift) & lenMask }
func claimTask(c uint64) int   { return int(c >> pidShift & (1<<pidBits - 1)) }

// claimFor reports whether c is a claim of position p's slot.
func claimFor(c uint64, p uint32) bool {
	return c&(claimed|claimRsvd) == claimed && uint32(c)&cposMask == p&cposMask
}

// claimAlive reports whether the process image that made claim c may
// still be running (a task of that id exists and its start time matches).
func claimAlive(c uint64) bool {
	task := claimTask(c)
	if self, st := shm.Identity(); task == self {
		// One of our goroutines, or a dead image whose task id we reuse.
		return uint8(st) == uint8(c>>startShift)
	}
	if task == 0 {
		return false
	}
	st, err := kernel.ProcessStartTime(task)
	if err != nil {
		return !errors.Is(err, kernel.ESRCH) // (out of file descriptors, say: it may live)
	}
	return uint8(st) == uint8(c>>startShift)
}

// ringTries bounds the retries of one lock-free attempt (CAS lost to
// others, stale words); past it the call takes the lock path.
const ringTries = 1 << 10

// Results of ringPut.
const (
	putDone     = iota
	putFull     // Linux's queue-full test fails (linearized at the head's read)
	putBusy     // another sender is writing the tail's slot
	putFallback // the lock path must do it; nothing changed
)

// ringFits is Linux's queue-full test on the ring with tail word t and head
// word h (the store is empty while the ring is open), plus a free slot.
func ringFits(t, h uint64, n uint32, qb uint64, ns uint32) int {
	qn := (rpos(t) - rpos(h)) & posMask
	if qn > ns {
		return putFallback // a stale or corrupt head
	}
	if uint64(rbytes(t)-rbytes(h))+uint64(n) > qb || uint64(qn)+1 > qb {
		return putFull
	}
	if qn == ns {
		return putFallback // the ring is full, the queue not: the store takes it
	}
	return putDone
}

// roomSlow is the second half of ringPut's room check (that a message of
// n bytes fits with the tail at t): ringPut first compares with the head
// word this handle's senders saw last, so that senders do not pull the
// receivers' cache line on every message; when that says no, or is too old
// to compare with t, this reads the head.
func (q *Queue) roomSlow(t uint64, n uint32, qb uint64) int {
	p := rpos(t)
	h := q.v.rc.head.Load()
	q.headSeen.Store(h)
	q.headAt.Store(p) // after headSeen: a reader that sees p sees h or newer
	return ringFits(t, h, n, qb, q.v.nslots)
}

// committedSlow is the second half of ringTake's check that position p
// (at the head) is before the tail: ringTake first compares with the tail
// this handle's receivers saw last, for the same reason; when that says
// no, this reads the pub hint, and the tail only if the hint says no.
func (q *Queue) committedSlow(p uint32) bool {
	ns := q.v.nslots
	t := uint32(q.v.rc.pub.Load()) & posMask // the hint first (see pub)
	if (t-p-1)&posMask >= ns {
		t = rpos(q.v.rc.tail.Load())
	}
	if (t-p-2)&posMask < ns {
		// More than this one message: worth keeping for the next calls.
		q.tailSeen.Store(uint64(t)<<32 | uint64(p))
	}
	return (t-p-1)&posMask < ns
}

// The pub hint (ringCtl.pub): after its commit, a sender stores the
// position the tail moved to in a word of its own line. Receivers that
// keep up with the senders look there instead of at the tail, and spin on
// it while the ring is empty, so that the tail's line stays with the
// senders: a receiver's load of the tail between two commits would make
// the next commit's CAS wait for the line (it was half a 1P→1C stream's
// sending time).
//
// pub is only a hint, stored without a CAS, and may go back (a sender
// that stores late): what it promises is that the tail was past
// uint32(pub) at some time. Positions only grow, and a committed message
// stays until the head passes it (taken, or flushed with the ring
// closed, which a receiver's CAS on the head sees), so a head position p
// within nslots below uint32(pub) holds a committed message. A stale or
// wrong value only sends the receiver to the tail. Closing the ring flips
// bit 62, so that receivers spinning on pub see the close (not bit 63:
// ringSpin reads that as a closed ring word).
const pubClosedFlip = 1 << 62

// flipPub marks a close in the pub hint (lock held).
func (v *view) flipPub() {
	for {
		o := v.rc.pub.Load()
		if v.rc.pub.CompareAndSwap(o, o^pubClosedFlip) {
			return
		}
	}
}

// storeHint stores v in *w without a barrier (shm.StoreOwned: Go's atomic
// Store is a locked XCHG on amd64, which would wait for the line like a
// CAS). For hints only: concurrent stores may land in any order.
func storeHint(w *atomic.Uint64, v uint64) { shm.StoreOwned(w, v) }

// Warming. The lines of a slot were last read by a receiver, so a sender
// waits for each to come back from the receiver's CPU: for the first at
// its claim (a CAS), then, since a CAS is a full barrier, for the second
// (the copy's stores) at its commit, one after the other. After its
// commit a sender stores into a word of each line of the slot ringWarm
// positions ahead (warm1 and warm2, which nobody reads) with plain stores,
// which the CPU sends off together without waiting: by the time a sender
// claims that slot, its lines are here. A 1P→1C stream of single sends
// went from 5.4–6.1× the kernel to 8.2–9.5× in the same runs, 2P→2C from
// 6.2–6.7× to 10–11×. The stores change nothing anyone reads: a message
// still in that slot (a full queue) keeps its words, and senders that
// warm the same slot at once only race on the warm words. (Receivers
// that loaded the next committed slot's lines before their CAS on the
// head made an in-process stream slower, 11–12 → 7 M/s; after the CAS
// they changed nothing measurable.)
const ringWarm = 4

// warm stores into both lines of position p's slot (see ringWarm).
func (v *view) warm(p uint32) {
	s := &v.ring[p&v.mask]
	s.warm1, s.warm2 = 0, 0
}

// ringPut sends one message of at most slotText bytes through the ring.
// With putBusy it also returns the tail's slot and the claim it holds.
func (q *Queue) ringPut(mtype int64, data []byte, qb uint64) (int, *slot, uint64) {
	v := q.v
	rc := v.rc
	n := uint32(len(data))
	hit := false
	for try := 0; try < ringTries; try++ {
		t := rc.tail.Load()
		if t&ringClosed != 0 {
			return putFallback, nil, 0
		}
		// room, inlined: the cached head first.
		if (rpos(t)-q.headAt.Load())&posMask >= 1<<30 || ringFits(t, q.headSeen.Load(), n, qb, v.nslots) != putDone {
			if r := q.roomSlow(t, n, qb); r != putDone {
				return r, nil, 0
			}
		}
		p := rpos(t)
		s := &v.ring[p&v.mask]
		sv := s.seq.Load()
		// room said the head is past p-nslots: the previous lap's
		// message, if any, was taken.
		if sv != v.seqFree(p) && !claimFor(sv, p-v.nslots) {
			if claimFor(sv, p) {
				if rc.tail.Load() == t {
					return putBusy, s, sv
				}
			}
			continue // t is stale
		}
		if !hit {
			hit = true
			crashPoint(stepSendLocked)
		}
		if !s.seq.CompareAndSwap(sv, v.claimWord(n, p)) {
			continue
		}
		// Only the claimer of the tail's slot moves the tail, so if it is
		// still t the slot was the one free for p. If not, t was stale and
		// sv only looked right (a claim of a position 1<<24 ahead, say):
		// put back what was there.
		if rc.tail.Load() != t {
			s.seq.Store(sv)
			continue
		}
		crashPoint(stepRingClaimed)
		s.mtype, s.len = mtype, n
		crashPoint(stepSendAlloc)
		copy(s.text[:], data)
		crashPoint(stepSendWritten)
		crashPoint(stepRingWritten)
		// The commit point. Only the claimer of p's slot moves the tail
		// from p, so this fails only if the ring closed (or the word was
		// overwritten): give the slot back.
		if !rc.tail.CompareAndSwap(t, radv(t, n)) {
			s.seq.Store(sv)
			return putFallback, nil, 0
		}
		storeHint(&rc.pub, uint64((p+1)&posMask))
		v.warm(p + ringWarm)
		crashPoint(stepSendLinked)
		return putDone, nil, 0
	}
	return putFallback, nil, 0
}

// stampSend records lspid and stime, storing only what changed, with
// plain stores (shm.StoreOwned): Go's atomic Store is a locked XCHG, which
// waits until the send's stores to the receivers' lines (pub, the warmed
// slot) have reached them. In alternating runs the message ping-pong's
// round trip was 9% shorter (9 of 12 pairs) with plain stores here and
// in stampRecv. Concurrent sends may land their stamps in either order,
// as they could with locked stores.
func (q *Queue) stampSend() {
	rc := q.v.rc
	if rc.lspid.Load() != q.pid {
		shm.StoreOwned32(&rc.lspid, q.pid)
	}
	if now := clock.Now(); rc.stime.Load() != now {
		shm.StoreOwned((*atomic.Uint64)(unsafe.Pointer(&rc.stime)), uint64(now))
	}
}

// stampRecv records lrpid and rtime as stampSend does lspid and stime.
func (q *Queue) stampRecv() {
	rc := q.v.rc
	if rc.lrpid.Load() != q.pid {
		shm.StoreOwned32(&rc.lrpid, q.pid)
	}
	if now := clock.Now(); rc.rtime.Load() != now {
		shm.StoreOwned((*atomic.Uint64)(unsafe.Pointer(&rc.rtime)), uint64(now))
	}
}

// Results of ringTake.
const (
	takeDone     = iota
	takeEmpty    // no message at all (linearized at the tail's read)
	takeOther    // the first message does not match
	takeE2BIG    // the first message matches and is too big
	takeFallback // the lock path must do it; nothing taken
)

// ringTake receives the ring's first message into m if it matches (mode,
// typ). On failure m.Data may hold a discarded speculative copy.
func (q *Queue) ringTake(m *Msg, mode int, typ int64, noerror bool) int {
	v := q.v
	rc := v.rc
	hit := false
	for try := 0; try < ringTries; try++ {
		h := rc.head.Load()
		if h&ringClosed != 0 {
			return takeFallback
		}
		p := rpos(h)
		s := &v.ring[p&v.mask]
		// Whether p is committed (committed, inlined: the cached tail
		// first) before anything of its slot is read: a receiver that
		// keeps up with the sender would otherwise pull the slot's line
		// away while the sender claims and writes it (the claim's CAS was
		// two thirds of a 1P→1C stream's sending time).
		c := q.tailSeen.Load()
		if ((p-uint32(c))&posMask < 1<<30 && (uint32(c>>32)-p-1)&posMask < v.nslots || q.committedSlow(p)) && claimFor(s.seq.Load(), p) {
			// Valid while the head is still h: position p's message
			// cannot be replaced before it is taken.
			mt, n := s.mtype, s.len
			if n > slotText || mt < 0 || mt != 0 && (!matches(mt, mode, typ) || int(n) > len(m.Data) && !noerror) {
				if rc.head.Load() != h {
					continue
				}
				switch {
				case n > slotText || mt < 0:
					return takeFallback // corrupt: the lock path reports it
				case !matches(mt, mode, typ):
					return takeOther
				}
				return takeE2BIG
			}
			k := 0
			if mt != 0 { // 0: a skip record (left by a repair), taken and dropped
				if !hit {
					hit = true
					crashPoint(stepRecvLocked)
				}
				k = copy(m.Data, s.text[:n])
				crashPoint(stepRecvCopied)
				crashPoint(stepRingTaken)
			}
			// The commit point: the copy is ours if the head is still h.
			if !rc.head.CompareAndSwap(h, radv(h, n)) {
				continue
			}
			if mt == 0 {
				continue
			}
			crashPoint(stepRecvUnlinked)
			crashPoint(stepRecvFreed) // the slot is free once the head passed it
			m.N, m.Type = k, mt
			return takeDone
		}
		// Free, the previous lap's message, or being written: nothing at p
		// yet, unless the tail moved on since this handle last read it.
		t := rc.tail.Load()
		if t&ringClosed != 0 {
			return takeFallback
		}
		if rpos(t) == p {
			return takeEmpty
		}
	}
	return takeFallback
}

// ringTakeMany receives up to len(ms) messages (FIFO) from the head of the
// ring with one CAS on the head word: it copies every message committed
// behind the head speculatively, stopping before one too big for its
// buffer, and takes them all at once (the copies were made while the head
// did not move, so they are valid). It returns how many it received; 0
// also when the ring is closed or empty, or the first message is too big.
func (q *Queue) ringTakeMany(ms []Msg, noerror bool) int {
	v := q.v
	rc := v.rc
	for try := 0; try < ringTries; try++ {
		h := rc.head.Load()
		if h&ringClosed != 0 {
			return 0
		}
		hp := rpos(h)
		// Committed up to the pub hint, if it is ahead; else the tail.
		avail := (uint32(rc.pub.Load()) - hp) & posMask
		if avail == 0 || avail > v.nslots {
			t := rc.tail.Load()
			if t&ringClosed != 0 {
				return 0
			}
			avail = (rpos(t) - hp) & posMask
		}
		if avail > v.nslots {
			return 0
		}
		var i, bytes uint32
		got := 0
		for ; i < avail && got < len(ms); i++ {
			p := (hp + i) & posMask
			s := &v.ring[p&v.mask]
			if !claimFor(s.seq.Load(), p) {
				break // taken and reused meanwhile: h is stale
			}
			mt, n := s.mtype, s.len
			if n > slotText || mt < 0 || mt != 0 && int(n) > len(ms[got].Data) && !noerror {
				break // stop before it: the next call reports it
			}
			bytes += n
			if mt != 0 {
				if got == 0 {
					crashPoint(stepRecvLocked)
				}
				ms[got].N = copy(ms[got].Data, s.text[:n])
				ms[got].Type = mt
				got++
			}
		}
		if i == 0 {
			return 0
		}
		if got != 0 {
			crashPoint(stepRecvCopied)
			crashPoint(stepRingTaken)
		}
		next := h&ringClosed | uint64((hp+i)&posMask)<<32 | uint64(rbytes(h)+bytes)
		if rc.head.CompareAndSwap(h, next) {
			if got != 0 {
				crashPoint(stepRecvUnlinked)
				crashPoint(stepRecvFreed)
			}
			return got
		}
	}
	return 0
}

// Results of ringScan.
const (
	scanNone   = iota // no message matches (linearized at the tail's read)
	scanFound         // one further in the ring matches: the lock path takes it
	scanUnsure        // the ring moved meanwhile: look again
)

// ringScan looks through the ring for a message matching (mode, typ) when
// the first one does not. It only reads: a message behind the first can
// be taken only under the lock.
func (q *Queue) ringScan(mode int, typ int64) int {
	v := q.v
	rc := v.rc
	h := rc.head.Load()
	t := rc.tail.Load()
	if (h|t)&ringClosed != 0 {
		return scanUnsure
	}
	hp := rpos(h)
	n := (rpos(t) - hp) & posMask
	if n > v.nslots {
		return scanUnsure
	}
	for i := uint32(0); i < n; i++ {
		p := (hp + i) & posMask
		s := &v.ring[p&v.mask]
		if !claimFor(s.seq.Load(), p) {
			return scanUnsure // taken and its slot reused meanwhile
		}
		if mt := s.mtype; mt != 0 && matches(mt, mode, typ) {
			return scanFound
		}
	}
	// Every message read was still there when the head was read again
	// (none can be replaced before the head passes it).
	if rc.head.Load() != h {
		return scanUnsure
	}
	return scanNone
}

// spinner is the state of one call's watching of the ring (ringSpin).
type spinner struct {
	on        bool
	start     time.Time
	budget    time.Duration
	polite    time.Duration // spinPolite, or 0 when the peer shares this CPU; -1: not decided yet
	seen      uint64        // the watched word as of before the caller's last look
	closed    bool          // ringSpin returned at once for a closed word already
	answering bool          // a receiver's spin for a reply: its handle sent since its last receive (noteSent)
}

func (st *spinner) finish(q *Queue) {
	if st.on {
		q.leave()
	}
}

// Stream mode, for receivers. A receiver that keeps up with a stream
// finds the ring empty after almost every message and spins for the next,
// which comes a fraction of a microsecond later: each message is then
// handed over alone, the receiver pulling the pub line and the slot's
// lines to its CPU while the sender claims, writes and publishes, and the
// sender waiting for them back each time. A 1P→1C stream of single sends
// ran at the speed of those transfers: 4.4–4.8× the kernel here.
//
// So after streamQuick spins in a row that ended quickly (within the
// first 128 looks) the handle's receivers look at the pub hint only every
// streamGap. The senders meanwhile fill slots undisturbed, and the next
// receives find a run of messages and take them without waiting (5–8×
// in the same runs, before warming). A look after a gap that finds fewer than streamRun
// messages ends the mode: a peer that answers (ping-pong) rather than
// streams would otherwise wait a gap for each message. The gap is what
// stream mode adds to a message's latency, at most.
//
// A ping-pong's receive spins end quickly too, so its receivers entered
// stream mode after every second round trip, and each time waited a gap
// for the reply: make bench's message ping-pong had a p99 of 4.8–8.7 µs
// against a median of 0.57–0.78 µs. A handle that sends between its
// receives answers what it receives: its receives are replies, not a
// stream, and they neither count towards stream mode nor spin in it
// (noteSent). In six alternating runs the ping-pong's p99 went to
// 0.8–4 µs in five (156 µs in one on a busy machine), against 6–44 µs;
// the median moved within the noise. (Doubling the quick spins needed
// after each stream mode that ended on a short run did as well for the
// ping-pong, but cost the 1P→1C stream about 40% in alternating runs:
// streams end it so too.)
const (
	streamQuick = 2
	streamGap   = 4 * time.Microsecond
	streamRun   = 4
)

// noteSent records that the handle sent a message: its next receive spin
// is for a reply (see streamGap).
func (q *Queue) noteSent() {
	if !q.sent.Load() {
		q.sent.Store(true)
	}
}

// noteQuick records whether a receiver's spin (not in stream mode) ended
// quickly.
func (q *Queue) noteQuick(quick bool) {
	switch n := q.streamy.Load(); {
	case quick && n < streamQuick:
		q.streamy.Store(n + 1)
	case !quick && n != 0:
		q.streamy.Store(0)
	}
}

// streamSpin is ringSpin on the pub hint in stream mode: a look every
// streamGap, within the spin's budget.
func (q *Queue) streamSpin(st *spinner) bool {
	rc := q.v.rc
	for {
		if v := rc.pub.Load(); v != st.seen {
			st.seen = v
			run := (uint32(v) - rpos(rc.head.Load())) & posMask
			if run < streamRun || run > q.v.nslots {
				q.streamy.Store(0) // a reply, not a stream
			}
			return q.spinDone(true, st.budget)
		}
		now := time.Now()
		if st.start.IsZero() {
			st.start = now
		} else if now.Sub(st.start) > st.budget {
			q.streamy.Store(0)
			return q.spinDone(false, st.budget)
		}
		if q.closed.Load() {
			return false
		}
		for time.Since(now) < streamGap {
		}
	}
}

// waitOpen is the spin of a batch sender that found the ring closed (it
// returns false at once if the ring is open) while no receiver sleeps: receivers are taking the store's messages, and the
// one that empties it opens the ring again (unlock), unless something
// else keeps it closed (opensWhenEmpty). It waits for that,
// within the spin's budget, and reports whether the ring opened. Without
// it a batch sender hands the rest of its batch to the lock path, which
// closes the ring again each time it takes the lock; as long as the
// senders keep up, the store is then never empty when a receiver
// unlocks, and the ring stays closed: a 1P→1C stream of 64-message
// batches sent 92% of its messages through the lock, no faster than
// single sends.
func (q *Queue) waitOpen(st *spinner) bool {
	rc := q.v.rc
	if rc.tail.Load()&ringClosed == 0 {
		return false // open: the sender fell back for another reason (all slots in use)
	}
	if !st.on && !st.begin(q) || st.budget == 0 || !q.v.ctl.opensWhenEmpty() {
		return false
	}
	for i := 1; ; i++ {
		if rc.tail.Load()&ringClosed == 0 {
			return q.spinDone(true, st.budget)
		}
		if i&127 == 0 {
			if st.pace(q) {
				return q.spinDone(false, st.budget)
			}
			if q.closed.Load() || !q.v.ctl.opensWhenEmpty() {
				return false
			}
		}
	}
}

// begin starts a spin: the call is now in its slow path (enter), with
// spinBudget to spend. It reports false if the handle is closed.
func (st *spinner) begin(q *Queue) bool {
	if q.enter() != nil {
		return false
	}
	st.on = true
	st.budget = q.spinBudget()
	st.polite = -1 // decided at the first look at the clock
	return true
}

// pace is a spin's look at the clock, every 128 looks: it starts the
// spin's clock at the first, yields the CPU once the spin has gone on for
// longer than its polite phase (politeFor), and reports whether the
// budget is spent.
func (st *spinner) pace(q *Queue) (spent bool) {
	now := time.Now()
	if st.polite < 0 {
		st.polite = q.politeFor()
	}
	switch d := now.Sub(st.start); {
	case st.start.IsZero():
		st.start = now
	case d > st.budget:
		return true
	case d > st.polite:
		q.coloc.Yield()
	}
	return false
}

// ringSpin waits for word w to change (the pub hint: a message sent or
// the ring closed, for receivers; the head: a message taken or the ring
// closed, for senders) for at most spinBudget in all, counted from the
// call's first spin, and reports whether it changed. Watching only the
// word that matters keeps the other side's cache line out of the spin.
func (q *Queue) ringSpin(st *spinner, w *atomic.Uint64) bool {
	if !st.on {
		if !st.begin(q) || st.budget == 0 {
			return false
		}
		// The value to watch is taken before the caller looks again,
		// so that a change right after its last look is not missed.
		st.seen = w.Load()
		return true
	}
	if st.budget == 0 {
		return false
	}
	old := st.seen
	if old&ringClosed != 0 && w != &q.v.rc.pub { // (pub's bit 63 means nothing)
		// Closed: whatever the caller waits for now happens under the
		// lock, without touching w; its next look sees the closed bit,
		// or the ring open again. Once: a caller back with the word
		// unchanged did not see the ring closed where it looked (the head
		// closed and the tail open is a corrupt segment), and would come
		// back for ever; it waits for a change, within the budget.
		if v := w.Load(); v != old || !st.closed {
			st.seen, st.closed = v, true
			return true
		}
	}
	if w == &q.v.rc.pub {
		if q.sent.Load() {
			q.sent.Store(false) // an answerer: its receives are replies
			if q.streamy.Load() != 0 {
				q.streamy.Store(0)
			}
			st.answering = true
		} else if q.streamy.Load() >= streamQuick {
			return q.streamSpin(st)
		}
	}
	// An answerer waits for one reply, which a ping-pong's peer sends a
	// fraction of a microsecond later, and pauses before each look
	// (shm.Pause): in alternating runs the message ping-pong's round trip
	// was 9% shorter with the pause (9 of 12 pairs). A pause takes about
	// 30 ns here, so it looks at the clock every 16 looks rather than
	// every 128. Other spins do not pause: a stream receiver's quick spins
	// are counted in looks (noteQuick), and nothing was measured for the
	// others.
	paceMask := 127
	if st.answering {
		paceMask = 15
	}
	for i := 1; ; i++ {
		if st.answering {
			shm.Pause()
		}
		if v := w.Load(); v != old {
			st.seen = v
			if w == &q.v.rc.pub && !st.answering {
				q.noteQuick(i < 128 && st.start.IsZero())
			}
			return q.spinDone(true, st.budget)
		}
		if i&paceMask == 0 {
			if st.pace(q) {
				if w == &q.v.rc.pub && !st.answering {
					q.noteQuick(false)
				}
				return q.spinDone(false, st.budget)
			}
			if q.closed.Load() {
				return false
			}
			if i&4095 == 0 {
				runtime.Gosched()
			}
		}
	}
}

// sendRing goes on with a send whose first try through the ring gave r
// (not putDone): it spins while the queue is full, then sleeps for room
// with the ring open, and retries. done=false: the lock path must do the
// call (nothing was sent); spun says whether it spun, slept whether it
// slept (sendMsgs' waited).
func (q *Queue) sendRing(ctx context.Context, mtype int64, data []byte, nowait bool, r int, s *slot, sv uint64) (done, spun, slept bool, err error) {
	for ; ; slept = true {
		if r == putFallback {
			return false, spun, slept, nil
		}
		d, sp, full, err := q.ringSendSlow(ctx, mtype, data, nowait, slept, r, s, sv)
		spun = spun || sp
		if d || !full {
			return d, spun, slept, err
		}
		// Full, the ring open: sleep until a receive makes room.
		retry, err := q.sleepForRoom(ctx, uint32(len(data)), slept)
		if err != nil {
			return true, spun, true, err
		}
		if !retry || !q.ringReady(permWrite) {
			return false, spun, true, nil
		}
		r, s, sv = q.ringPut(mtype, data, q.qbytes())
		if r == putDone {
			q.stampSend()
			return true, spun, true, nil
		}
	}
}

// ringSendSlow spins (unless nospin) while the queue is full. done=false:
// the call must go on elsewhere, nothing was sent: with full, the queue is
// still full (sleepForRoom), else the lock path must do it.
func (q *Queue) ringSendSlow(ctx context.Context, mtype int64, data []byte, nowait, nospin bool, r int, s *slot, sv uint64) (done, spun, full bool, err error) {
	var st spinner
	defer st.finish(q)
	for ; ; r, s, sv = q.ringPut(mtype, data, q.qbytes()) {
		switch r {
		case putDone:
			q.stampSend()
			return true, st.on, false, nil
		case putFallback:
			return false, st.on, false, nil
		case putBusy:
			if !q.waitSender(ctx, s, sv) {
				return false, st.on, false, nil
			}
			continue
		}
		if nowait {
			return true, false, true, ErrFull
		}
		if nospin || !q.ringSpin(&st, &q.v.rc.head) {
			return false, true, true, nil
		}
	}
}

// sleepForRoom sleeps in a waiter slot until a receive may have made room
// for a message of size bytes, leaving the ring open: receivers through
// the ring see the sleeper in sendWake and wake it (as Linux's receivers
// wake every sender whose message now fits). It reports retry=false when
// the lock path should take over (the ring closed, no free waiter slot).
// waited says that this send slept for room before (see sendMsgs).
func (q *Queue) sleepForRoom(ctx context.Context, size uint32, waited bool) (retry bool, err error) {
	if err := q.enter(); err != nil {
		return false, err
	}
	defer q.leave()
	var w waiter
	defer w.done()
	var wl wakeList
	defer q.v.guard(q.mu, &wl, &w)
	if err := q.lockWithin(ctx, &wl); err != nil {
		return false, err
	}
	retry, err = q.sleepForRoomLocked(ctx, size, &w, &wl, waited)
	q.release(&w)
	q.unlock(&wl)
	return retry, err
}

// sleepForRoomLocked is sleepForRoom between its lock and its unlock; it
// releases the lock to sleep and takes it again.
func (q *Queue) sleepForRoomLocked(ctx context.Context, size uint32, w *waiter, wl *wakeList, waited bool) (bool, error) {
	v := q.v
	rc := v.rc
	// Linux's order: EACCES, EIDRM, then whether it fits. A send that
	// waited before looks at its permission only when its message fits,
	// which the retry does, or when it is woken for room (below).
	if !waited && q.access()&permWrite == 0 {
		return false, kernel.EACCES
	}
	if q.seg.Removed() {
		return false, kernel.EIDRM
	}
	if !v.isOpen() {
		return false, nil
	}
	q.claim(w, slotSend, uint64(size), 0)
	if w.slot == nil {
		// No free slot: the overflow sleepers need the lock path, which
		// counts itself again. (Left counted, this call would keep the
		// ring closed until the next change: maybeOpen.)
		q.v.ctl.ovfWait.Add(^uint32(0))
		w.ovf = false
		return false, nil
	}
	for {
		seen := w.slot.Futex.Load()
		// Look again now that sendWake counts this sender: a receive that
		// moved the head before this read is seen here; one after it sees
		// sendWake and wakes the slot.
		t, h := rc.tail.Load(), rc.head.Load()
		if t&ringClosed != 0 || ringFits(t, h, size, q.qbytes(), v.nslots) != putFull {
			return true, nil // (the retry looks at the permission: Linux's loop does)
		}
		// Not the permission: a change of it does not end a sender's
		// wait (stopped).
		if err := q.stopped(ctx, 0); err != nil {
			return false, err
		}
		q.rewakeSenders(wl) // (not this one: its message does not fit)
		q.unlock(wl)
		if q.seg.DeadGen() != q.deadGen.Load() {
			q.lock(wl)
			return true, nil // repair first
		}
		q.sleep(ctx, w, seen)
		q.lock(wl)
		// Woken: for room (it fits now, unless another sender woken with
		// it took the room), or by what ends the wait, or by an IPC_SET
		// or a death (it still does not fit: sleep on). A waker for room
		// took it off sendWake (argWoken); count it again, or the next
		// receive would not wake it (release takes it off at the end).
		// Woken for room, it looks at its permission, as Linux's sender
		// does whenever it is woken (it is woken only for room), even if
		// another took the room.
		if w.slot.Arg[argWoken].Swap(0) != 0 {
			rc.sendWake.Add(1)
			if q.access()&permWrite == 0 {
				return false, kernel.EACCES
			}
		}
	}
}

// wakeRoom wakes the senders asleep for room whose message now fits; a
// receive through the ring calls it when sendWake says there are any.
func (q *Queue) wakeRoom() {
	var wl wakeList
	defer q.v.guard(q.mu, &wl, nil)
	q.lock(&wl)
	if q.v.ctl.sendWait > 0 {
		q.wakeSenders(&wl)
	}
	q.unlock(&wl)
}

// waitSender waits for the sender that claimed the tail's slot (word sv)
// to commit or give it back. A dead claimer's slot it gives back itself
// (settleTail: a CAS from the dead claim, safe beside lock-free senders
// and a lock holder), so that senders need not wait for the lock, whose
// holder may be stopped, to get past it. It reports false if the lock path
// should take over: the claimer is taking longer than claimWait
// (preempted, or stopped: the lock path closes the ring and goes on
// without it; the claim, not committed, sent nothing, and its sender will
// find the ring closed).
func (q *Queue) waitSender(ctx context.Context, s *slot, sv uint64) bool {
	switch waitClaim(&s.seq, sv, ctx) {
	case waitChanged:
		return true
	case waitDead:
		q.v.settleTail()
		return true
	}
	return false
}

// ringRecv is a receive through the ring, spinning while nothing matches.
// done=false: the lock path must do the call (nothing was taken).
func (q *Queue) ringRecv(ctx context.Context, m *Msg, mode int, typ int64, flags int) (done, spun bool, err error) {
	r := q.ringTake(m, mode, typ, flags&MSG_NOERROR != 0)
	switch r {
	case takeDone:
		q.stampRecv()
		if q.v.rc.sendWake.Load() != 0 {
			q.wakeRoom()
		}
		return true, false, nil
	case takeFallback:
		return false, false, nil
	}
	return q.ringRecvSlow(ctx, m, mode, typ, flags, r)
}

// ringRecvSlow goes on with a receive whose first try through the ring
// gave r (not takeDone or takeFallback): it spins while nothing matches.
func (q *Queue) ringRecvSlow(ctx context.Context, m *Msg, mode int, typ int64, flags int, r int) (done, spun bool, err error) {
	var st spinner
	defer st.finish(q)
	nowait := flags&IPC_NOWAIT != 0
	noerr := flags&MSG_NOERROR != 0
	unsure := 0
	for ; ; r = q.ringTake(m, mode, typ, noerr) {
		switch r {
		case takeDone:
			q.stampRecv()
			if q.v.rc.sendWake.Load() != 0 {
				q.wakeRoom()
			}
			return true, st.on, nil
		case takeE2BIG:
			return true, st.on, kernel.E2BIG
		case takeFallback:
			return false, st.on, nil
		case takeOther:
			switch q.ringScan(mode, typ) {
			case scanFound:
				return false, st.on, nil
			case scanUnsure:
				if unsure++; unsure > 64 {
					return false, st.on, nil
				}
				continue
			case scanNone:
				if nowait {
					return true, false, ErrEmpty
				}
			}
		case takeEmpty:
			if nowait {
				return true, false, ErrEmpty
			}
		}
		if !q.ringSpin(&st, &q.v.rc.pub) {
			return false, true, nil
		}
	}
}

// Results of waitClaim.
const (
	waitChanged = iota
	waitDead    // the claimer is dead
	waitOver    // claimWait passed, or the context ended
)

// claimWait bounds how long a sender waits for another sender's claim of
// the tail's slot before it takes the lock path.
const claimWait = 2 * time.Millisecond

// waitClaim waits for word w to move from sv, another sender's claim: it
// spins, then yields the CPU (the claimer may be waiting for it); after a
// millisecond it checks that the claimer lives.
func waitClaim(w *atomic.Uint64, sv uint64, ctx context.Context) int {
	for i := 0; i < 1000; i++ {
		if w.Load() != sv {
			return waitChanged
		}
	}
	start := time.Now()
	checked := false
	for {
		if w.Load() != sv {
			return waitChanged
		}
		d := time.Since(start)
		if d >= time.Millisecond && !checked {
			checked = true
			if !claimAlive(sv) {
				if w.Load() != sv {
					return waitChanged
				}
				return waitDead
			}
		}
		if d > claimWait || ctx.Err() != nil {
			return waitOver
		}
		kernel.SchedYield()
	}
}
