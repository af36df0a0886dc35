package msgq

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/usysv/usysv/shm"
)

// The body of a queue segment. All offsets, and every view into mapped
// memory, live in this file; the rest of the package works on the views.
//
// The body follows the common header and the waiter table (see
// shm/layout.go) and is Params.BodySize bytes:
//
//	body offset          size            what
//	-----------          ----            ----
//	0                    128             control (two cache lines, below)
//	128                  192             ring control: the producers' line, the consumers' line,
//	                                     the receivers' hint line (pub)
//	320                  128 × nslots    ring: the lock-free FIFO lane (below)
//	ringEnd              4 × nblocks     links: per block, the next block of the same
//	                                     chain (a message, or the free list), index+1
//	                                     (0: end of chain); padded to 64 bytes
//	linksEnd             128 × nblocks   blocks: the byte stream of every message in the store
//
// nslots = ringSlots(Capacity) and nblocks = blocksFor(Capacity, MaxMsg,
// Waiters), see below.
//
// # The store
//
// A message in the store is a chain of blocks holding one byte stream: a
// 24-byte message header (type, text length, next message, sequence
// number) followed by the text. When a chain's blocks are consecutive (the
// usual case: the free list is a LIFO of whole chains, so a freed chain is
// reused in the same order) the stream is contiguous and is copied with one
// memmove. The store is changed only under the segment lock.
//
// control, line 0 (written only under the segment lock):
//
//	offset  size  field       role
//	     0     4  head        first queued message (block index+1, 0: empty)   COMMITTED
//	     4     4  tail        last queued message                              derived
//	     8     4  free        free list head (block index+1)                   derived
//	    12     4  bump        blocks [bump, nblocks) were never used            derived
//	    16     8  qnum        messages in the store                             derived
//	    24     8  cbytes      text bytes in the store                           derived
//	    32     8  seq         sequence number of the next message stored
//	    40     4  flushFirst  a flush's batch: its first message (block+1)     intent record
//	    44     4  flushTo     a flush's batch: the ring position it ends at     intent record
//	    48     4  flushOn     1 from a flush's intent record to its end         intent record
//	    52     4  openHead    the ring's head position when it was last opened  hint
//	    56     4  openSkip    locked sections to let pass before opening again  hint
//	    60     4  useless     opens in a row during which no receive used it    hint
//
// control, line 1 (words read without the lock):
//
//	 64     4  recvWait  waiter slots held by blocked receivers           derived, under lock
//	 68     4  sendWait  waiter slots held by blocked senders             derived, under lock
//	 72     8  ticket    next waiter ticket (FIFO order of waiters)       under lock
//	 80     4  sendGen   bumped by a locked send when recvSpin > 0        atomic
//	 84     4  recvGen   bumped by a locked receive when sendSpin > 0     atomic
//	 88     4  recvSpin  receivers spinning before they sleep             atomic
//	 92     4  sendSpin  senders spinning before they sleep               atomic
//	 96     4  ovfFutex  callers that found no free waiter slot sleep here atomic
//	100     4  ovfWait   how many sleep on ovfFutex                        atomic
//	104     8  spinCPU   pid<<32 | cpu+1 of the latest call to begin a     atomic
//	                     spin (a hint, see ops.go coLocated)
//	112     4  bigLast   the last message sent through the lock was too    under lock
//	                     big for the ring: unlock leaves the ring closed
//	                     (a hint)
//
// "Derived" words can be rebuilt from the committed state (the list from
// head, the waiter slots) and are, by repair, after a lock holder died.
//
// # The ring
//
// ring control (atomics). The first line is the senders', the second the
// receivers', the third the senders' hint to receivers: each is written by
// its side, and otherwise only by a lock
// holder (closing and opening the ring, a flush moving the head, repair)
// and, for sendWake, by senders going to sleep or being woken, under the
// lock:
//
//	offset  size  field     role
//	   128     8  tail      senders: closed<<63 | position<<32 | bytes (ringWord)
//	   136     4  lspid     pid of the last msgsnd (stored only when it changes)
//	   144     8  stime     time of the last msgsnd (stored only when it changes)
//	   192     8  head      receivers: closed<<63 | position<<32 | bytes (ringWord)
//	   200     4  lrpid     pid of the last msgrcv
//	   204     4  sendWake  senders asleep in a waiter slot and not yet woken:
//	                        a receive through the ring that sees it non-zero
//	                        takes the lock to wake them
//	   208     8  rtime     time of the last msgrcv
//	   256     8  pub       a hint for receivers: a position the tail had
//	                        passed (stored, not CASed, by each sender after
//	                        its commit; its bit 63 flips when the ring closes)
//
// Positions are 31-bit counters (wrapping); bytes are 32-bit counters
// (wrapping) of the text that went past that end. So the ring holds
// tail.pos-head.pos messages of tail.bytes-head.bytes bytes. The closed bit
// is set on both words while the store is in use (see doc.go: the ring is
// open only while the store is empty and no receiver sleeps).
//
// slot (128 bytes; the slot of position p is p mod nslots):
//
//	offset  size  field  role
//	     0     8  seq    state word (below)
//	     8     8  mtype  message type (0: a skip record a repair left, dropped)
//	    16     4  len    text length (≤ slotText)
//	    20     4  warm1  written, never read (see ringWarm)
//	    24    96  text
//	   120     8  warm2  written, never read
//
// seq is lap(p) (p with its low log2(nslots) bits cleared: free, never
// used or given back) or a claim word (see ring.go): 1<<63, the sender's
// process image (shm.Identity: its sentinel task's id, 22 bits, and the
// low 8 bits of that task's start time), the text length, and
// the low 24 bits of the position, so that a claim by a process that died
// is recognised exactly. The sender writes the message after its claim and
// commits by moving the tail past the position; the claim word stays in
// the slot, which holds a message while its position is in [head, tail),
// and is free again once the head has passed it. An all-zero ring is
// empty, open, every slot free for its first lap.
const (
	blockSize = 128
	hdrSize   = 24 // message header at the start of a chain's stream
	ctlSize   = 128

	ringCtlSize = 192
	slotSize    = 128
	slotText    = 96 // the largest message the ring carries

	offCtl     = 0
	offRingCtl = ctlSize
	offSlots   = ctlSize + ringCtlSize

	// Hard limits on the immutable parameters, so that a hostile header
	// cannot make the layout arithmetic overflow.
	maxCapacity = 1 << 32
	maxMsgLimit = 1 << 24

	// Ring sizes: a power of two between these, from the capacity.
	minRing = 16
	maxRing = 1 << 16
)

// control is the mapped view of the control lines.
type control struct {
	head, tail uint32
	free, bump uint32
	qnum       uint64
	cbytes     uint64
	seq        uint64
	flushFirst uint32
	flushTo    uint32
	flushOn    uint32
	openHead   uint32
	openSkip   uint32
	useless    uint32

	recvWait uint32
	sendWait uint32
	ticket   uint64
	sendGen  atomic.Uint32
	recvGen  atomic.Uint32
	recvSpin atomic.Uint32
	sendSpin atomic.Uint32
	ovfFutex atomic.Uint32
	ovfWait  atomic.Uint32
	spinCPU  atomic.Uint64 // pid<<32 | cpu+1 of the latest call to begin a spin
	bigLast  uint32
	_        [12]byte
}

// opensWhenEmpty reports whether the locked call that empties the store
// will open the ring: the conditions of unlock and maybeOpen other than
// the store's being empty. No receiver sleeps in a waiter slot or as an
// overflow sleeper, no flush is under way, no opening is to be skipped,
// and the last message sent through the lock fitted the ring. Read
// without the lock (they change under it): a hint.
func (c *control) opensWhenEmpty() bool {
	load := func(p *uint32) uint32 { return (*atomic.Uint32)(unsafe.Pointer(p)).Load() }
	return load(&c.recvWait) == 0 && c.ovfWait.Load() == 0 && load(&c.flushOn) == 0 &&
		load(&c.openSkip) == 0 && load(&c.bigLast) == 0
}

// ringCtl is the mapped view of the ring's three control lines: the
// producers', the consumers' and the receivers' hint (pub).
type ringCtl struct {
	tail  atomic.Uint64
	lspid atomic.Uint32
	_     uint32
	stime atomic.Int64
	_     [40]byte

	head     atomic.Uint64
	lrpid    atomic.Uint32
	sendWake atomic.Uint32
	rtime    atomic.Int64
	_        [40]byte

	pub atomic.Uint64
	_   [56]byte
}

// slot is one slot of the ring. mtype, len and text are plain memory: the
// claimer of a slot writes them, and others read them only after seeing the
// seq word that the claimer stored after writing (or, for the consumers'
// speculative copy, read and then validate with a CAS on seq).
type slot struct {
	seq   atomic.Uint64
	mtype int64
	len   uint32
	warm1 uint32
	text  [slotText]byte
	warm2 uint64
}

// msgHdr is the header at the start of a message's first block.
type msgHdr struct {
	mtype int64
	len   uint32
	next  uint32 // next message in the queue (block index+1)
	seq   uint64
}

// block is one block viewed through its header (meaningful only for the
// first block of a message).
type block struct {
	h msgHdr
	_ [blockSize - hdrSize]byte
}

// Waiter slot fields (shm.WaiterSlot). State is one of:
const (
	slotFree      = 0
	slotRecv      = 1 // receiver waiting; Arg: ticket, msgtyp, mode|maxsize<<32
	slotSend      = 2 // sender waiting; Arg: ticket, size, -, woken
	slotDelivered = 3 // receiver was handed a message: Arg[3] block+1, Arg[4] seq
	slotE2BIG     = 4 // receiver must fail with E2BIG (a matching message was too big)
	slotWriting   = 5 // sender writing a message outside the lock: Arg[3] block+1 (not yet sent)
	slotTaken     = 6 // receiver copying out a message it received: Arg[3] block+1
)

// bigCopy is the size from which a message's text is copied into and out
// of the store outside the lock, as Linux's msgsnd and msgrcv copy it
// outside theirs: the lock is held only to allocate and link, or to unlink
// and free, so that a sender's copy and a receiver's overlap. The chain
// meanwhile belongs to a waiter slot of the copying process (slotWriting,
// slotTaken), so that repair frees it if the process dies. Below it, the
// second lock section costs more than the copy.
const bigCopy = 2048

const (
	argTicket = 0
	argType   = 1 // recv: msgtyp after convertMode; send: size
	argMode   = 2 // recv: mode | maxsize<<32
	argBlock  = 3 // delivered: first block+1
	argWoken  = 3 // send: 1 once woken for room, until the sender looks again
	argSeq    = 4 // delivered: message sequence number
)

// Compile-time checks that the structs match the tables above.
var (
	_ [ctlSize - int(unsafe.Sizeof(control{}))]struct{}
	_ [int(unsafe.Sizeof(control{})) - ctlSize]struct{}
	_ [64 - int(unsafe.Offsetof(control{}.recvWait))]struct{}
	_ [int(unsafe.Offsetof(control{}.recvWait)) - 64]struct{}
	_ [80 - int(unsafe.Offsetof(control{}.sendGen))]struct{}
	_ [int(unsafe.Offsetof(control{}.sendGen)) - 80]struct{}
	_ [100 - int(unsafe.Offsetof(control{}.ovfWait))]struct{}
	_ [40 - int(unsafe.Offsetof(control{}.flushFirst))]struct{}
	_ [int(unsafe.Offsetof(control{}.flushFirst)) - 40]struct{}
	_ [48 - int(unsafe.Offsetof(control{}.flushOn))]struct{}
	_ [60 - int(unsafe.Offsetof(control{}.useless))]struct{}
	_ [int(unsafe.Offsetof(control{}.useless)) - 60]struct{}
	_ [ringCtlSize - int(unsafe.Sizeof(ringCtl{}))]struct{}
	_ [int(unsafe.Sizeof(ringCtl{})) - ringCtlSize]struct{}
	_ [64 - int(unsafe.Offsetof(ringCtl{}.head))]struct{}
	_ [int(unsafe.Offsetof(ringCtl{}.head)) - 64]struct{}
	_ [16 - int(unsafe.Offsetof(ringCtl{}.stime))]struct{}
	_ [int(unsafe.Offsetof(ringCtl{}.stime)) - 16]struct{}
	_ [80 - int(unsafe.Offsetof(ringCtl{}.rtime))]struct{}
	_ [int(unsafe.Offsetof(ringCtl{}.rtime)) - 80]struct{}
	_ [76 - int(unsafe.Offsetof(ringCtl{}.sendWake))]struct{}
	_ [int(unsafe.Offsetof(ringCtl{}.sendWake)) - 76]struct{}
	_ [slotSize - int(unsafe.Sizeof(slot{}))]struct{}
	_ [int(unsafe.Sizeof(slot{})) - slotSize]struct{}
	_ [24 - int(unsafe.Offsetof(slot{}.text))]struct{}
	_ [int(unsafe.Offsetof(slot{}.text)) - 24]struct{}
	_ [hdrSize - int(unsafe.Sizeof(msgHdr{}))]struct{}
	_ [int(unsafe.Sizeof(msgHdr{})) - hdrSize]struct{}
	_ [blockSize - int(unsafe.Sizeof(block{}))]struct{}
	_ [int(unsafe.Sizeof(block{})) - blockSize]struct{}
)

// chainBlocks is how many blocks a message of n text bytes needs.
func chainBlocks(n uint64) uint64 { return (hdrSize + n + blockSize - 1) / blockSize }

// blocksFor is the number of blocks a queue needs so that it can always
// hold what Linux would accept, plus the messages handed to sleeping
// receivers:
//
//   - queued messages: at most capacity of them (qnum ≤ qbytes ≤ capacity)
//     with at most capacity text bytes in all. Message i needs
//     ceil((24+l_i)/128) ≤ (l_i+151)/128 blocks, so all of them need at
//     most (151·N + Σl)/128 ≤ 152·capacity/128 blocks;
//   - one message being handed over to, or held for, each waiter slot,
//     plus one in flight: (waiters+1) × chainBlocks(maxMsg).
func blocksFor(capacity uint64, maxMsg, waiters uint32) uint64 {
	return (152*capacity+127)/128 + uint64(waiters+1)*chainBlocks(uint64(maxMsg))
}

func linksSize(nblocks uint64) uint64 { return (4*nblocks + 63) &^ 63 }

// ringSlots is the number of ring slots of a queue: a power of two, one
// slot per 32 bytes of capacity (so that a full queue of messages of 32
// bytes or more fits in the ring), between minRing and maxRing. A queue
// whose capacity does not fit the ring's 32-bit byte counters has no ring.
func ringSlots(capacity uint64) uint64 {
	if capacity >= 1<<31 {
		return 0
	}
	n := uint64(minRing)
	for n < capacity/32 && n < maxRing {
		n <<= 1
	}
	return n
}

// bodySize is the BodySize a queue with these parameters needs.
func bodySize(capacity uint64, maxMsg, waiters uint32) uint64 {
	n := blocksFor(capacity, maxMsg, waiters)
	return offSlots + ringSlots(capacity)*slotSize + linksSize(n) + n*blockSize
}

// view is a queue's body mapped as Go values.
type view struct {
	seg     *shm.Segment
	ctl     *control
	rc      *ringCtl
	ring    []slot // nil: the queue has no ring
	links   []uint32
	blocks  []block
	raw     []byte // the blocks region as bytes
	slots   []shm.WaiterSlot
	nblocks uint32
	maxMsg  uint32
	nslots  uint32 // len(ring), a power of two (or 0)
	mask    uint32 // nslots-1
	me      uint64 // this process's claim words: claimBase(pid, start); 0 if it cannot claim
}

// newView validates a segment's parameters against the queue layout and
// maps the body. A segment whose parameters do not describe this layout
// gives ErrCorrupt.
func newView(seg *shm.Segment) (*view, error) {
	p := seg.Params()
	if p.Kind != shm.KindMsg {
		return nil, fmt.Errorf("%w: segment kind %v", ErrCorrupt, p.Kind)
	}
	if p.Capacity > maxCapacity || p.MaxMsg > maxMsgLimit || p.Waiters > shm.MaxWaiters {
		return nil, fmt.Errorf("%w: capacity %d, max message %d, %d waiters", ErrCorrupt, p.Capacity, p.MaxMsg, p.Waiters)
	}
	n := blocksFor(p.Capacity, p.MaxMsg, p.Waiters)
	if n >= 1<<31 || p.BodySize != bodySize(p.Capacity, p.MaxMsg, p.Waiters) {
		return nil, fmt.Errorf("%w: body of %d bytes for capacity %d, max message %d, %d waiters",
			ErrCorrupt, p.BodySize, p.Capacity, p.MaxMsg, p.Waiters)
	}
	base := p.BodyOffset()
	ns := ringSlots(p.Capacity)
	v := &view{seg: seg, slots: seg.Waiters(), nblocks: uint32(n), maxMsg: p.MaxMsg,
		nslots: uint32(ns), mask: uint32(ns) - 1, me: selfClaim()}
	if ns == 0 {
		v.mask = 0
	}
	var err error
	if v.ctl, err = shm.At[control](seg, base+offCtl); err != nil {
		return nil, err
	}
	if v.rc, err = shm.At[ringCtl](seg, base+offRingCtl); err != nil {
		return nil, err
	}
	if v.ring, err = shm.Slice[slot](seg, base+offSlots, int(ns)); err != nil {
		return nil, err
	}
	loff := base + offSlots + ns*slotSize
	if v.links, err = shm.Slice[uint32](seg, loff, int(n)); err != nil {
		return nil, err
	}
	boff := loff + linksSize(n)
	if v.blocks, err = shm.Slice[block](seg, boff, int(n)); err != nil {
		return nil, err
	}
	if v.raw, err = seg.Bytes(boff, n*blockSize); err != nil {
		return nil, err
	}
	return v, nil
}

// hdr returns the header of block b (b < nblocks, checked by the caller).
func (v *view) hdr(b uint32) *msgHdr { return &v.blocks[b].h }
