package msgq

import "sync/atomic"

// The ring seen from the lock: closing it, moving its messages into the
// store (flush), opening it again, and repairing what dead claimers left.
// Everything here runs with the segment lock held; lock-free calls run
// concurrently, so every change of a slot or ring word that they may also
// change is a CAS, or happens while the ring is closed (they then only
// claim and give back, restoring what they found).
//
// Modes: the ring is open (both words' closed bit clear) only while the
// store is empty, nobody sleeps in a waiter slot or on the overflow word,
// and no flush is half done. A locked operation that needs the store
// (anything but a FIFO send or receive that the ring can do) closes it and
// flushes; the unlock opens it again when the conditions hold. So the
// store never holds a message younger than one in the ring, and a message
// sent while receivers sleep always goes through the lock (hand-over in
// their order).

func closeWord(w *atomic.Uint64) {
	for {
		o := w.Load()
		if o&ringClosed != 0 || w.CompareAndSwap(o, o|ringClosed) {
			return
		}
	}
}

func openWord(w *atomic.Uint64) {
	for {
		o := w.Load()
		if o&ringClosed == 0 || w.CompareAndSwap(o, o&^ringClosed) {
			return
		}
	}
}

// setClosed closes the ring: the tail first (no send commits any more),
// then the head (no receive commits any more).
func (v *view) setClosed() {
	if v.nslots == 0 {
		return
	}
	if (v.rc.tail.Load()|v.rc.head.Load())&ringClosed == 0 {
		v.noteClose()
	}
	closeWord(&v.rc.tail)
	closeWord(&v.rc.head)
	v.flipPub() // (receivers spinning on the hint see the close)
}

// noteClose judges the open period that a close ends: if messages went
// into the ring and none out of it (the head did not move, and the close
// will move them into the store), opening it bought nothing (typically:
// rounds of sends and typed receives, which close it again each round),
// and the next open waits for a number of locked sections that doubles
// with each such period in a row, up to 64. A close of an empty ring (a
// receiver about to sleep) says nothing. Lock held.
func (v *view) noteClose() {
	c := v.ctl
	h, t := v.rc.head.Load(), v.rc.tail.Load()
	if rpos(h) != c.openHead&posMask {
		c.useless, c.openSkip = 0, 0
		return
	}
	if rpos(t) == rpos(h) {
		return
	}
	if c.useless < 6 {
		c.useless++
	}
	c.openSkip = 1 << c.useless
}

// isOpen reports whether lock-free calls may use the ring.
func (v *view) isOpen() bool {
	return v.nslots != 0 && (v.rc.tail.Load()|v.rc.head.Load())&ringClosed == 0
}

// maybeOpen opens the ring if the store is empty and nobody waits in the
// queue; unlock calls it. It reports whether it opened it.
func (v *view) maybeOpen() bool {
	if v.nslots == 0 {
		return false
	}
	rc := v.rc
	if (rc.tail.Load()|rc.head.Load())&ringClosed == 0 {
		return false
	}
	c := v.ctl
	if c.head != 0 || c.recvWait != 0 || c.ovfWait.Load() != 0 || c.flushOn != 0 {
		return false
	}
	if c.openSkip != 0 {
		c.openSkip--
		return false
	}
	v.settleTail() // a dead sender's claim at the tail would stop every sender
	c.openHead = rpos(rc.head.Load())
	openWord(&rc.head)
	openWord(&rc.tail)
	return true
}

// flush moves the messages of the (closed) ring into the store, in order,
// as one batch: it copies the messages into chains linked to one another,
// records its intent, links the batch to the store's tail (the commit
// point) and moves the head past it. Every position before the tail holds
// a whole message and none can be taken meanwhile (the head is closed), so
// it waits for nobody and claims nothing. A flusher that dies before the
// link leaves the ring as it was (the chains are unreachable; the store's
// rebuild frees them); after it, repair finishes the flush from the record.
func (v *view) flush() error {
	if v.nslots == 0 {
		return nil
	}
	rc := v.rc
	c := v.ctl
	h, t := rc.head.Load(), rc.tail.Load()
	hp, tp := rpos(h), rpos(t)
	n := (tp - hp) & posMask
	if n == 0 {
		return nil
	}
	if n > v.nslots {
		return corrupt("ring holds %d messages in %d slots", n, v.nslots)
	}
	// The store's tail, read once: the words are plain memory that another
	// process may write (corrupt), and what was checked must be what is
	// used.
	var tailHdr *msgHdr
	if ct := c.tail; ct != 0 {
		h, err := v.first(ct)
		if err != nil {
			return err
		}
		tailHdr = h
	}
	var first, last uint32
	var k, msgBytes uint64
	var bytes uint32
	for i := uint32(0); i < n; i++ {
		p := (hp + i) & posMask
		s := &v.ring[p&v.mask]
		mt, ln := s.mtype, s.len
		if !claimFor(s.seq.Load(), p) || ln > slotText || mt < 0 {
			return v.unflush(first, corrupt("ring message at position %d: word %#x, type %d, length %d", p, s.seq.Load(), mt, ln))
		}
		bytes += ln
		if mt == 0 {
			continue // a skip record: dropped
		}
		b, err := v.write(mt, c.seq, s.text[:ln])
		if err != nil {
			return v.unflush(first, err)
		}
		c.seq++
		if last == 0 {
			first = b + 1
		} else {
			v.hdr(last - 1).next = b + 1
		}
		last = b + 1
		k++
		msgBytes += uint64(ln)
	}
	c.flushFirst, c.flushTo, c.flushOn = first, tp, 1
	if first != 0 {
		if tailHdr == nil {
			c.head = first
		} else {
			tailHdr.next = first
		}
		c.tail = last
		crashPoint(stepRingFlushed)
		c.qnum += k
		c.cbytes += msgBytes
	}
	rc.head.Store(ringWord(true, tp, rbytes(h)+bytes))
	c.flushOn = 0
	return nil
}

// unflush undoes a flush that failed after writing the chains from first.
func (v *view) unflush(first uint32, err error) error {
	for m, n := first, uint32(0); m != 0 && m <= v.nblocks && n < v.nblocks; n++ {
		h := v.hdr(m - 1)
		next, l := h.next, h.len // (read once: another process may write them)
		if l <= v.maxMsg {
			if last, err := v.chainLast(m-1, uint32(chainBlocks(uint64(l)))); err == nil {
				v.freeChain(m-1, last)
			}
		}
		m = next
	}
	return err
}

// chainLast returns the last block of the k-block chain at b.
func (v *view) chainLast(b, k uint32) (uint32, error) {
	for i := uint32(1); i < k; i++ {
		nx := v.links[b]
		if nx == 0 || nx > v.nblocks {
			return 0, corrupt("message chain ends early")
		}
		b = nx - 1
	}
	return b, nil
}

// settleTail gives back the tail's slot if a sender that died claimed it
// (it never committed: nothing was sent). The claim of a live sender is
// left: it commits, or gives the slot back itself when it finds the ring
// closed. Lock-free senders may run meanwhile: the settlement is a CAS
// from the dead claim, and a dead claim never moves otherwise.
func (v *view) settleTail() {
	if v.nslots == 0 {
		return
	}
	p := rpos(v.rc.tail.Load())
	s := &v.ring[p&v.mask]
	if sv := s.seq.Load(); claimFor(sv, p) && !claimAlive(sv) {
		s.seq.CompareAndSwap(sv, v.seqFree(p))
	}
}

// rebuildRing is the ring's part of a full repair (a lock holder died, or
// the queue is being salvaged): it closes the ring, finishes a flush the
// dead holder left half done (after the store was rebuilt, so that the
// record can be checked against the list), turns anything in the ring
// that is not a whole message into a skip record and anything outside it
// that is not a free slot into one, gives back a dead sender's claim, and
// recounts the tail's bytes.
func (v *view) rebuildRing() {
	if v.nslots == 0 {
		return
	}
	rc := v.rc
	c := v.ctl
	v.setClosed()
	if c.flushOn != 0 {
		v.finishFlush()
		c.flushOn = 0
	}
	h, t := rc.head.Load(), rc.tail.Load()
	hp, tp := rpos(h), rpos(t)
	n := (tp - hp) & posMask
	if n > v.nslots { // the words are garbage: the ring's messages are lost
		hp, n = tp, 0
		rc.head.Store(ringWord(true, tp, rbytes(t)))
		h = rc.head.Load()
	}
	var bytes uint32
	for i := uint32(0); i < v.nslots; i++ {
		p := (hp + i) & posMask
		s := &v.ring[p&v.mask]
		sv := s.seq.Load()
		if i < n {
			if !claimFor(sv, p) || s.len > slotText || s.mtype < 0 {
				s.mtype, s.len = 0, 0
				s.seq.CompareAndSwap(sv, v.claimWord(0, p))
			}
			bytes += s.len
			continue
		}
		switch {
		case sv == v.seqFree(p) || claimFor(sv, p-v.nslots):
		case i == n && claimFor(sv, p) && claimAlive(sv):
			// A sender claiming the tail: it will find the ring closed
			// and give the slot back.
		default:
			s.seq.CompareAndSwap(sv, v.seqFree(p))
		}
	}
	rc.tail.Store(ringWord(true, tp, rbytes(h)+bytes))
}

// finishFlush completes the flush whose intent record a dead lock holder
// left: if its batch is in the store's list, the head moves past it. If
// not, the ring is as it was before the flush.
func (v *view) finishFlush() {
	rc := v.rc
	c := v.ctl
	if c.flushFirst == 0 || !v.listHas(c.flushFirst) {
		// Nothing linked: the holder died before the link (or the batch
		// held only skip records, which may stay).
		return
	}
	h := rc.head.Load()
	hp, to := rpos(h), c.flushTo&posMask
	n := (to - hp) & posMask
	if n > v.nslots {
		return // garbage record
	}
	var bytes uint32
	for i := uint32(0); i < n; i++ {
		p := (hp + i) & posMask
		s := &v.ring[p&v.mask]
		if !claimFor(s.seq.Load(), p) || s.len > slotText {
			return // not the batch the record names
		}
		bytes += s.len
	}
	rc.head.Store(ringWord(true, to, rbytes(h)+bytes))
}

// listHas reports whether message m is in the store's list.
func (v *view) listHas(m uint32) bool {
	for cur, n := v.ctl.head, uint32(0); cur != 0 && cur <= v.nblocks && n < v.nblocks; n++ {
		if cur == m {
			return true
		}
		cur = v.hdr(cur - 1).next
	}
	return false
}

// counts is qnum and cbytes: the store's plus the ring's, read as a
// consistent pair (the head read twice around the tail).
func (v *view) counts() (qnum, cbytes uint64) {
	c := v.ctl
	qnum, cbytes = c.qnum, c.cbytes
	if v.nslots == 0 {
		return qnum, cbytes
	}
	rc := v.rc
	var h, t uint64
	for i := 0; i < 1000; i++ {
		h = rc.head.Load()
		t = rc.tail.Load()
		if rc.head.Load() == h {
			break
		}
	}
	if n := (rpos(t) - rpos(h)) & posMask; n <= v.nslots {
		qnum += uint64(n)
		cbytes += uint64(rbytes(t) - rbytes(h))
	}
	return qnum, cbytes
}

// checkRing walks the ring's invariants (the ring closed, or quiescent).
func (v *view) checkRing() error {
	if v.nslots == 0 {
		return nil
	}
	rc := v.rc
	c := v.ctl
	h, t := rc.head.Load(), rc.tail.Load()
	if (h^t)&ringClosed != 0 {
		return corrupt("ring head %#x and tail %#x disagree on closed", h, t)
	}
	if h&ringClosed == 0 && (c.head != 0 || c.recvWait != 0) {
		return corrupt("the ring is open while the store holds messages or receivers sleep")
	}
	if c.flushOn != 0 {
		return corrupt("a flush never finished")
	}
	hp, tp := rpos(h), rpos(t)
	n := (tp - hp) & posMask
	if n > v.nslots {
		return corrupt("ring holds %d messages in %d slots", n, v.nslots)
	}
	var bytes uint32
	for i := uint32(0); i < v.nslots; i++ {
		p := (hp + i) & posMask
		s := &v.ring[p&v.mask]
		sv := s.seq.Load()
		if i < n {
			if !claimFor(sv, p) || s.len > slotText || s.mtype < 0 || claimLen(sv) != s.len {
				return corrupt("ring slot of position %d: word %#x, type %d, length %d", p, sv, s.mtype, s.len)
			}
			bytes += s.len
			continue
		}
		switch {
		case sv == v.seqFree(p) || claimFor(sv, p-v.nslots):
		case i == n && claimFor(sv, p): // a sender writing (it commits, or gives it back)
		default:
			return corrupt("free ring slot of position %d holds %#x", p, sv)
		}
	}
	if bytes != rbytes(t)-rbytes(h) {
		return corrupt("ring counts %d bytes, its messages hold %d", rbytes(t)-rbytes(h), bytes)
	}
	return nil
}
