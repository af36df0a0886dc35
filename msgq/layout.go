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
//	128                  4 × nblocks     links: per block, the next block of the same
//	                                     chain (a message, or the free list), index+1
//	                                     (0: end of chain); padded to 64 bytes
//	linksEnd             128 × nblocks   blocks: the byte stream of every message
//
// nblocks = blocksFor(Capacity, MaxMsg, Waiters), see below. A message is a
// chain of blocks holding one byte stream: a 24-byte message header (type,
// text length, next message, sequence number) followed by the text. When a
// chain's blocks are consecutive (the usual case: the free list is a LIFO of
// whole chains, so a freed chain is reused in the same order) the stream is
// contiguous and is copied with one memmove.
//
// control, line 0 (written only under the segment lock):
//
//	offset  size  field     role
//	     0     4  head      first queued message (block index+1, 0: empty)   COMMITTED
//	     4     4  tail      last queued message                              derived
//	     8     4  free      free list head (block index+1)                   derived
//	    12     4  bump      blocks [bump, nblocks) were never used            derived
//	    16     8  qnum      messages in the queue                             derived
//	    24     8  cbytes    text bytes in the queue                           derived
//	    32     8  seq       sequence number of the next message sent
//	    40     8  stime     last msgsnd (Unix seconds)
//	    48     8  rtime     last msgrcv
//	    56     4  lspid
//	    60     4  lrpid
//
// control, line 1 (words read without the lock):
//
//	 64     4  recvWait  waiter slots held by blocked receivers           derived, under lock
//	 68     4  sendWait  waiter slots held by blocked senders             derived, under lock
//	 72     8  ticket    next waiter ticket (FIFO order of waiters)       under lock
//	 80     4  sendGen   bumped by a send when recvSpin > 0               atomic
//	 84     4  recvGen   bumped by a receive when sendSpin > 0            atomic
//	 88     4  recvSpin  receivers spinning before they sleep             atomic
//	 92     4  sendSpin  senders spinning before they sleep               atomic
//	 96     4  ovfFutex  callers that found no free waiter slot sleep here atomic
//	100     4  ovfWait   how many sleep on ovfFutex                        atomic
//
// "Derived" words can be rebuilt from the committed state (the list from
// head, the waiter slots) and are, by repair, after a lock holder died.
// All-zero is a valid empty queue: no message, empty free list, no block
// used yet.
const (
	blockSize = 128
	hdrSize   = 24 // message header at the start of a chain's stream
	ctlSize   = 128

	offCtl   = 0
	offLinks = ctlSize

	// Hard limits on the immutable parameters, so that a hostile header
	// cannot make the layout arithmetic overflow.
	maxCapacity = 1 << 32
	maxMsgLimit = 1 << 24
)

// control is the mapped view of the control lines.
type control struct {
	head, tail uint32
	free, bump uint32
	qnum       uint64
	cbytes     uint64
	seq        uint64
	stime      int64
	rtime      int64
	lspid      uint32
	lrpid      uint32

	recvWait uint32
	sendWait uint32
	ticket   uint64
	sendGen  atomic.Uint32
	recvGen  atomic.Uint32
	recvSpin atomic.Uint32
	sendSpin atomic.Uint32
	ovfFutex atomic.Uint32
	ovfWait  atomic.Uint32
	_        [24]byte
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
)

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

// bodySize is the BodySize a queue with these parameters needs.
func bodySize(capacity uint64, maxMsg, waiters uint32) uint64 {
	n := blocksFor(capacity, maxMsg, waiters)
	return ctlSize + linksSize(n) + n*blockSize
}

// view is a queue's body mapped as Go values.
type view struct {
	seg     *shm.Segment
	ctl     *control
	links   []uint32
	blocks  []block
	raw     []byte // the blocks region as bytes
	slots   []shm.WaiterSlot
	nblocks uint32
	maxMsg  uint32
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
	v := &view{seg: seg, slots: seg.Waiters(), nblocks: uint32(n), maxMsg: p.MaxMsg}
	var err error
	if v.ctl, err = shm.At[control](seg, base+offCtl); err != nil {
		return nil, err
	}
	if v.links, err = shm.Slice[uint32](seg, base+offLinks, int(n)); err != nil {
		return nil, err
	}
	boff := base + offLinks + linksSize(n)
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
