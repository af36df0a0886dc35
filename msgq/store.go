package msgq

import (
	"math"

	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// The block store. Everything here runs with the segment lock held. Every
// index read from the segment is checked before use: a bad one gives
// ErrCorrupt, never a panic.

// Search modes (Linux ipc/msg.c convert_mode).
const (
	searchAny = iota + 1
	searchEqual
	searchNotEqual
	searchLessEqual
	searchNumber
)

// convertMode turns msgrcv's msgtyp and flags into a search mode and the
// type it compares with.
func convertMode(msgtyp int64, flags int) (int, int64) {
	switch {
	case flags&MSG_COPY != 0:
		return searchNumber, msgtyp
	case msgtyp == 0:
		return searchAny, 0
	case msgtyp < 0:
		if msgtyp == math.MinInt64 { // -LONG_MIN is undefined; Linux uses LONG_MAX
			return searchLessEqual, math.MaxInt64
		}
		return searchLessEqual, -msgtyp
	case flags&MSG_EXCEPT != 0:
		return searchNotEqual, msgtyp
	}
	return searchEqual, msgtyp
}

// matches is Linux's testmsg for every mode but searchNumber (which
// matches every message and counts).
func matches(mtype int64, mode int, typ int64) bool {
	switch mode {
	case searchEqual:
		return mtype == typ
	case searchNotEqual:
		return mtype != typ
	case searchLessEqual:
		return mtype <= typ
	}
	return true
}

// first checks a message reference (block index+1) read from the segment.
func (v *view) first(m uint32) (*msgHdr, error) {
	if i := uint(m) - 1; i < uint(len(v.blocks)) { // (len(blocks) = nblocks; m == 0 wraps)
		return &v.blocks[i].h, nil
	}
	return nil, errBadRef
}

// errBadRef is first's error: a constant, so that first inlines.
var errBadRef = corrupt("a message reference outside the blocks")

// find returns the message msgrcv would take (block index+1, 0 if none)
// and the one before it in the queue (0 if it is the head). Cost: it walks
// the queue up to the match; for searchLessEqual the whole queue unless a
// type-1 message comes first. So FIFO receive is O(1), typed receive
// O(messages ahead of the match) ≤ O(qnum).
func (v *view) find(mode int, typ int64) (m, prev uint32, err error) {
	cur := v.ctl.head
	if cur == 0 {
		return 0, 0, nil
	}
	if mode == searchAny {
		if cur > v.nblocks {
			return 0, 0, corrupt("message reference %d outside %d blocks", cur, v.nblocks)
		}
		return cur, 0, nil
	}
	var before, found, foundPrev uint32
	var count int64
	for steps := uint32(0); cur != 0; steps++ {
		if steps >= v.nblocks {
			return 0, 0, corrupt("cycle in the message list")
		}
		h, err := v.first(cur)
		if err != nil {
			return 0, 0, err
		}
		mt := h.mtype
		if mt < 1 {
			return 0, 0, corrupt("message type %d", mt)
		}
		switch mode {
		case searchNumber:
			if count == typ {
				return cur, before, nil
			}
			count++
		case searchLessEqual:
			if mt <= typ {
				found, foundPrev = cur, before
				if mt == 1 {
					return found, foundPrev, nil
				}
				typ = mt - 1 // only strictly lower types from now on
			}
		default:
			if matches(mt, mode, typ) {
				return cur, before, nil
			}
		}
		before, cur = cur, h.next
	}
	return found, foundPrev, nil
}

// alloc takes k blocks (k ≥ 1) from the free list, then from the never-used
// tail of the block array, and links them into a chain ending in 0. It
// returns the chain's first block index. Running out means the accounting
// that bounds the store was broken: ErrCorrupt, with the blocks given back.
func (v *view) alloc(k uint32) (uint32, error) {
	c := v.ctl
	var first, prev uint32
	for i := uint32(0); i < k; i++ {
		var b uint32
		if f := c.free; f != 0 {
			if f > v.nblocks {
				return 0, v.allocFail(i, first, prev, corrupt("free list reference %d", f))
			}
			b = f - 1
			c.free = v.links[b]
		} else if bump := c.bump; bump < v.nblocks { // (read once: another process may write it)
			b = bump
			c.bump = bump + 1
		} else {
			return 0, v.allocFail(i, first, prev, corrupt("out of blocks"))
		}
		if i == 0 {
			first = b
		} else {
			v.links[prev] = b + 1
		}
		prev = b
	}
	v.links[prev] = 0
	return first, nil
}

func (v *view) allocFail(got, first, last uint32, err error) error {
	if got > 0 {
		v.freeChain(first, last)
	}
	return err
}

// freeChain puts the chain first..last back on the free list, whole and in
// order, so that the next allocation gets the same (often consecutive)
// blocks back.
func (v *view) freeChain(first, last uint32) {
	v.links[last] = v.ctl.free
	v.ctl.free = first + 1
}

// put writes a message into a new chain and returns its first block.
func (v *view) put(mtype int64, seq uint64, text []byte) (uint32, error) {
	return v.store(mtype, seq, text, true)
}

// write is put for a flush: the same without the sender's crash point.
func (v *view) write(mtype int64, seq uint64, text []byte) (uint32, error) {
	return v.store(mtype, seq, text, false)
}

func (v *view) store(mtype int64, seq uint64, text []byte, sender bool) (uint32, error) {
	b, err := v.alloc(uint32(chainBlocks(uint64(len(text)))))
	if err != nil {
		return 0, err
	}
	h := v.hdr(b)
	h.mtype, h.len, h.next, h.seq = mtype, uint32(len(text)), 0, seq
	if sender {
		crashPoint(stepSendAlloc)
	}
	if err := v.copyIn(b, text); err != nil {
		// (A chain broken since alloc linked it is left to the repair:
		// freeing up to a wrong last block would free others' blocks.)
		if last, lerr := v.chainLast(b, uint32(chainBlocks(uint64(len(text))))); lerr == nil {
			v.freeChain(b, last)
		}
		return 0, err
	}
	return b, nil
}

// copyIn copies src into the text of the chain starting at block b. Runs
// of consecutive blocks are copied with one copy.
func (v *view) copyIn(b uint32, src []byte) error {
	off := uint64(hdrSize)
	for len(src) > 0 {
		start := b
		need := off + uint64(len(src))
		span := uint64(blockSize)
		for span < need {
			nx := v.links[b]
			if nx != b+2 || nx > v.nblocks {
				break
			}
			b++
			span += blockSize
		}
		base := uint64(start) * blockSize
		n := copy(v.raw[base+off:base+min(span, need)], src)
		src = src[n:]
		if len(src) == 0 {
			break
		}
		nx := v.links[b]
		if nx == 0 || nx > v.nblocks {
			return corrupt("message chain ends early")
		}
		b, off = nx-1, 0
	}
	return nil
}

// copyOut copies the first len(dst) bytes of the text of the message whose
// chain starts at b and has k blocks, and returns the chain's last block.
func (v *view) copyOut(b uint32, k uint32, dst []byte) (uint32, error) {
	off := uint64(hdrSize)
	walked := uint32(1)
	for len(dst) > 0 {
		start := b
		need := off + uint64(len(dst))
		span := uint64(blockSize)
		for span < need && walked < k {
			nx := v.links[b]
			if nx != b+2 || nx > v.nblocks {
				break
			}
			b++
			walked++
			span += blockSize
		}
		base := uint64(start) * blockSize
		n := copy(dst, v.raw[base+off:base+min(span, need)])
		dst = dst[n:]
		if len(dst) == 0 {
			break
		}
		nx := v.links[b]
		if nx == 0 || nx > v.nblocks || walked >= k {
			return 0, corrupt("message chain ends early")
		}
		b, off = nx-1, 0
		walked++
	}
	for ; walked < k; walked++ { // the rest of a truncated message
		nx := v.links[b]
		if nx == 0 || nx > v.nblocks {
			return 0, corrupt("message chain ends early")
		}
		b = nx - 1
	}
	return b, nil
}

// msgLen reads and checks the length of a message.
func (v *view) msgLen(h *msgHdr) (uint32, error) {
	l := h.len
	if l > v.maxMsg {
		return 0, badLen(l, v.maxMsg)
	}
	return l, nil
}

// badLen is msgLen's error, out of line so that msgLen inlines.
//
//go:noinline
func badLen(l, max uint32) error {
	return corrupt("message length %d above the queue's maximum %d", l, max)
}

// read copies the text of message m (block index+1) into dst (truncating)
// and returns the number of bytes copied and the chain's last block.
func (v *view) read(m uint32, dst []byte) (n int, last uint32, err error) {
	h, err := v.first(m)
	if err != nil {
		return 0, 0, err
	}
	l, err := v.msgLen(h)
	if err != nil {
		return 0, 0, err
	}
	n = min(int(l), len(dst))
	last, err = v.copyOut(m-1, uint32(chainBlocks(uint64(l))), dst[:n])
	return n, last, err
}

// link appends the chain at block b to the queue. The store into head (or
// into the last message's next) is the commit point of a send.
func (v *view) link(b uint32) error {
	c := v.ctl
	if c.tail == 0 {
		c.head = b + 1
	} else {
		t, err := v.first(c.tail)
		if err != nil {
			return err
		}
		t.next = b + 1
	}
	c.tail = b + 1
	return nil
}

// unlink removes message m, whose predecessor is prev (0: m is the head).
// The store into head (or into prev's next) is the commit point of a
// receive.
func (v *view) unlink(m, prev uint32) error {
	h, err := v.first(m)
	if err != nil {
		return err
	}
	c := v.ctl
	if prev == 0 {
		c.head = h.next
	} else {
		p, err := v.first(prev)
		if err != nil {
			return err
		}
		p.next = h.next
	}
	if c.tail == m {
		c.tail = prev
	}
	return nil
}

// fits is Linux's msg_fits_inqueue, on the store and the ring.
func (v *view) fits(size int, qbytes uint64) bool {
	qnum, cbytes := v.counts()
	return uint64(size)+cbytes <= qbytes && qnum+1 <= qbytes
}

// walkChain follows the chain at b for k blocks, calling fn for each, and
// reports a chain that is shorter, longer or leaves the block array.
func (v *view) walkChain(b, k uint32, fn func(b uint32) error) error {
	for i := uint32(0); ; i++ {
		if err := fn(b); err != nil {
			return err
		}
		nx := v.links[b]
		if i == k-1 {
			if nx != 0 {
				return corrupt("message chain at block %d longer than %d blocks", b, k)
			}
			return nil
		}
		if nx == 0 || nx > v.nblocks {
			return corrupt("message chain at block %d shorter than %d blocks", b, k)
		}
		b = nx - 1
	}
}

// check walks every invariant of the store: the queue is a well-formed
// list whose counters, tail and sequence numbers agree with it, messages
// handed to waiters are well-formed, every block is in exactly one chain,
// on the free list or never used, and the waiter counts agree with the
// slots. The lock must be held (or the queue quiescent).
func (v *view) check() error {
	c := v.ctl
	bump := c.bump // (read once: another process may write it; it bounds the walk of used below)
	if bump > v.nblocks {
		return corrupt("bump %d above %d blocks", bump, v.nblocks)
	}
	used := make([]bool, v.nblocks)
	mark := func(b uint32) error {
		if b >= bump {
			return corrupt("block %d in use but never allocated (bump %d)", b, bump)
		}
		if used[b] {
			return corrupt("block %d in two chains", b)
		}
		used[b] = true
		return nil
	}
	msg := func(m uint32) (*msgHdr, error) {
		h, err := v.first(m)
		if err != nil {
			return nil, err
		}
		l, err := v.msgLen(h)
		if err != nil {
			return nil, err
		}
		if h.mtype < 1 {
			return nil, corrupt("message type %d", h.mtype)
		}
		return h, v.walkChain(m-1, uint32(chainBlocks(uint64(l))), mark)
	}
	var qnum, cbytes uint64
	var last uint32
	var lastSeq uint64
	for m := c.head; m != 0; {
		h, err := msg(m)
		if err != nil {
			return err
		}
		if qnum > 0 && h.seq <= lastSeq {
			return corrupt("sequence %d after %d", h.seq, lastSeq)
		}
		if h.seq >= c.seq {
			return corrupt("sequence %d not below the next %d", h.seq, c.seq)
		}
		lastSeq = h.seq
		qnum++
		cbytes += uint64(h.len)
		last, m = m, h.next
	}
	if qnum != c.qnum || cbytes != c.cbytes {
		return corrupt("counters say %d messages, %d bytes; the list has %d, %d", c.qnum, c.cbytes, qnum, cbytes)
	}
	if last != c.tail {
		return corrupt("tail %d, last message %d", c.tail, last)
	}
	var recv, send, wake uint32
	for i := range v.slots {
		s := &v.slots[i]
		switch s.State.Load() {
		case slotFree:
		case slotRecv:
			recv++
		case slotSend:
			send++
			if s.Arg[argWoken].Load() == 0 {
				wake++
			}
		case slotDelivered, slotWriting, slotTaken:
			b := s.Arg[argBlock].Load()
			if b > math.MaxUint32 {
				return corrupt("slot %d holds block %d", i, b)
			}
			if _, err := msg(uint32(b)); err != nil {
				return err
			}
		case slotE2BIG:
		default:
			return corrupt("slot %d in state %d", i, s.State.Load())
		}
	}
	if recv != c.recvWait || send != c.sendWait {
		return corrupt("waiter counts %d/%d, slots %d/%d", c.recvWait, c.sendWait, recv, send)
	}
	if v.nslots != 0 && wake != v.rc.sendWake.Load() {
		return corrupt("%d senders to wake, slots say %d", v.rc.sendWake.Load(), wake)
	}
	for f, n := c.free, uint32(0); f != 0; n++ {
		if f > v.nblocks || n >= v.nblocks {
			return corrupt("free list reference %d", f)
		}
		if err := mark(f - 1); err != nil {
			return err
		}
		f = v.links[f-1]
	}
	for b := uint32(0); b < bump; b++ {
		if !used[b] {
			return corrupt("block %d stranded: in no chain and not free", b)
		}
	}
	return v.checkRing()
}

// repair rebuilds what a process that died left behind.
//
// full (the lock was taken over from a dead holder): the committed state
// is the list from head and the messages held in waiter slots; the list is
// walked and cut at the first bad reference, and everything derived from
// it — tail, qnum, cbytes, the free list — is rebuilt, so no block stays
// stranded. A sender that died before its commit store leaves nothing; one
// that died after it leaves the whole message. A receiver that died after
// its commit store loses that one message.
//
// Always: waiter slots of dead processes are freed. A message already
// handed to a receiver that died before taking it goes back into the queue
// at its place in send order, so it is not lost. Live waiters are woken to
// re-check.
func (v *view) repair(full bool) {
	if repairHook != nil {
		repairHook()
	}
	c := v.ctl
	if c.bump > v.nblocks {
		c.bump = v.nblocks
	}
	if full {
		v.rebuild()
		v.rebuildRing()
	} else {
		v.settleTail()
	}
	var recv, send, wake uint32
	requeued := false
	for i := range v.slots {
		s := &v.slots[i]
		st := s.State.Load()
		if st == slotFree {
			continue
		}
		if s.Life.Dead() || !kernel.ProcessAlive(int(s.PID.Load()), s.Start.Load()) {
			if (st == slotWriting || st == slotTaken) && !full {
				// Not yet sent, or received already: its blocks are free.
				v.freeHeld(s)
			}
			if st == slotDelivered {
				if b := s.Arg[argBlock].Load(); b != 0 && b <= uint64(v.nblocks) {
					if !requeued {
						// The ring may have opened since the hand-over
						// (the store was empty): it is open only while
						// the store is empty, and its messages are
						// younger than any in the store, so they move
						// there first (a failure is reported by the next
						// locked call, which finds the ring closed).
						v.setClosed()
						_ = v.flush()
					}
					v.requeue(uint32(b))
					requeued = true
				}
			}
			s.State.Store(slotFree)
			continue
		}
		switch st {
		case slotRecv:
			recv++
		case slotSend:
			send++
			if s.Arg[argWoken].Load() == 0 {
				wake++
			}
		case slotWriting, slotTaken:
			continue // copying, not asleep
		}
		s.Futex.Add(1)
		_, _ = kernel.FutexWake(&s.Futex, 1)
	}
	c.recvWait, c.sendWait = recv, send
	if v.nslots != 0 {
		v.rc.sendWake.Store(wake)
	}
	if requeued || full {
		v.recount()
	}
	c.sendGen.Add(1)
	c.recvGen.Add(1)
	if c.ovfWait.Load() > 0 {
		c.ovfWait.Store(0)
		c.ovfFutex.Add(1)
		_, _ = kernel.FutexWake(&c.ovfFutex, math.MaxInt32)
	}
}

// freeHeld frees the chain a slotWriting or slotTaken slot holds (lock
// held). A bad reference leaves it to a full rebuild.
func (v *view) freeHeld(s *shm.WaiterSlot) {
	b := s.Arg[argBlock].Load()
	if b == 0 || b > uint64(v.nblocks) {
		return
	}
	l := v.hdr(uint32(b) - 1).len // (read once: another process may write it)
	if l > v.maxMsg {
		return
	}
	if last, err := v.chainLast(uint32(b)-1, uint32(chainBlocks(uint64(l)))); err == nil {
		v.freeChain(uint32(b)-1, last)
	}
}

// rebuild cuts the list at its first bad message and rebuilds the free
// list from every block that is neither queued nor held by a waiter slot.
// Sequence numbers that do not increase along the list, the next one to
// give if it is not above them, and any at seqMax or more (corrupt words:
// nothing else makes them so) are renumbered, so that the list's order
// stands and later sends come after it.
func (v *view) rebuild() {
	c := v.ctl
	// Read once, and clamped again: repair clamped it, but another process
	// may write it since, and it bounds the walk of used below.
	bump := min(c.bump, v.nblocks)
	used := make([]bool, v.nblocks)
	claim := func(m uint32) bool { // marks m's chain if it is whole and unclaimed
		if m == 0 || m > v.nblocks {
			return false
		}
		h := v.hdr(m - 1)
		l := h.len // (read once: another process may write it)
		if l > v.maxMsg || h.mtype < 1 {
			return false
		}
		var chain []uint32
		err := v.walkChain(m-1, uint32(chainBlocks(uint64(l))), func(b uint32) error {
			if b >= bump || used[b] {
				return corrupt("block %d reused", b)
			}
			used[b] = true
			chain = append(chain, b)
			return nil
		})
		if err != nil {
			for _, b := range chain {
				used[b] = false
			}
			return false
		}
		return true
	}
	var prev uint32
	var seq uint64 // the last message's sequence number
	for m := c.head; m != 0; {
		if !claim(m) {
			if prev == 0 {
				c.head = 0
			} else {
				v.hdr(prev - 1).next = 0
			}
			break
		}
		h := v.hdr(m - 1)
		if s := h.seq; (prev == 0 || s > seq) && s < seqMax { // (read once)
			seq = s
		} else {
			seq++
			h.seq = seq
		}
		prev, m = m, h.next
	}
	c.tail = prev
	if c.seq <= seq || c.seq >= seqMax {
		c.seq = seq + 1
	}
	// Messages handed to waiter slots, after the list: one that is in the
	// list as well was put back there by a repair that died before it freed
	// the slot (the list keeps it: it is queued, at its place); one whose
	// chain is bad is lost. Either way the slot's receiver waits again (or
	// the repair that follows frees the slot of a dead one).
	for i := range v.slots {
		s := &v.slots[i]
		if s.State.Load() == slotDelivered {
			if b := s.Arg[argBlock].Load(); b > uint64(v.nblocks) || !claim(uint32(b)) {
				s.State.Store(slotRecv)
			}
		}
	}
	// Chains being written or copied out outside the lock stay their
	// live process's; those of dead ones are freed with everything
	// unused (their slots are freed here, so the repair that follows does
	// not free them again).
	for i := range v.slots {
		s := &v.slots[i]
		if st := s.State.Load(); st == slotWriting || st == slotTaken {
			b := s.Arg[argBlock].Load()
			if s.Life.Dead() || !kernel.ProcessAlive(int(s.PID.Load()), s.Start.Load()) || b > uint64(v.nblocks) || !claim(uint32(b)) {
				s.State.Store(slotFree)
			}
		}
	}
	c.free = 0
	for b := bump; b > 0; b-- { // ascending order from the head
		if !used[b-1] {
			v.links[b-1] = c.free
			c.free = b
		}
	}
	v.recount()
}

// seqMax bounds sequence numbers: above any count of messages a queue can
// have been sent (2^62, at a billion a second, is 146 years).
const seqMax = 1 << 62

// recount recomputes tail, qnum and cbytes from a list known to be sound.
func (v *view) recount() {
	c := v.ctl
	var qnum, cbytes uint64
	var last uint32
	for m, n := c.head, uint32(0); m != 0 && m <= v.nblocks && n < v.nblocks; n++ {
		h := v.hdr(m - 1)
		qnum++
		cbytes += uint64(h.len)
		last, m = m, h.next
	}
	c.qnum, c.cbytes, c.tail = qnum, cbytes, last
}

// requeue puts message m (taken out of the queue for a receiver that died
// before it took it) back at its place in send order.
func (v *view) requeue(m uint32) {
	c := v.ctl
	h := v.hdr(m - 1)
	var prev uint32
	cur := c.head
	for n := uint32(0); cur != 0 && cur <= v.nblocks && n < v.nblocks; n++ {
		if v.hdr(cur-1).seq > h.seq {
			break
		}
		prev, cur = cur, v.hdr(cur-1).next
	}
	h.next = cur
	if prev == 0 {
		c.head = m
	} else {
		v.hdr(prev - 1).next = m
	}
	if cur == 0 {
		c.tail = m
	}
}
