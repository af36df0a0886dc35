package sem

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/usysv/usysv/shm"
)

// The body of a semaphore set's segment. All offsets and every cast into
// mapped memory are in this file; everything goes through shm.At/Slice.
//
// The common header and the waiter table come first (shm/layout.go); the
// body, at Params.BodyOffset(), is:
//
//	offset             size            field
//	------------------ --------------- ----------------------------------------
//	0                  8               otime    set-wide last semop time (max)
//	8                  8               ticket   last ticket given to a waiter (queue.go)
//	16                 8               nwait    waiters queued (hint; repair recounts)
//	24                 8               jcommit  journal: 0 idle, else a committed txn
//	32                 8               jarg     journal argument (kind-specific)
//	40                 8               slotsHi  waiter slots in use are all below this (hint)
//	48                 8               undoers  bit r: record r's Life can tell of its holder's death
//	56                 8               reserved
//	64                 8               spinCPU  pid<<32 | cpu+1 of the latest spin to ask (shm.CoLocation)
//	72                 56              reserved (the header is one 128-byte block)
//	128                8 × nsems       words    one state word per semaphore
//	+                  8 × nsems       shadow   new word values of the open txn
//	+                  8 × J           jadj     journal: new semadj values, J = min(SEMOPM, nsems)
//	+                  8 × A           arena    op arrays of queued waiters, A = SEMOPM + 4 × waiters
//	+                  R × recSize     undo     R = UndoRecords records:
//	                                              pid (8), start time (8), Life (16), 32 spare
//	                                              (a cache line: undoerDied reads it while
//	                                              fastUndo writes semadj words),
//	                                              semadj word × nsems (4 each); the record
//	                                              padded to a multiple of 64 bytes
//
// An all-zero body is a valid set: every semval 0, sempid 0, otime 0, no
// journal, no waiter, no undo record.
//
// Bytes per semaphore: 8 (word) + 8 (shadow) + 4 × UndoRecords (semadj) +
// at most 8 (journal) = 152 with 32 undo records; plus a fixed part of
// 128 + 32 × 64 (record heads, and up to 63 bytes of padding each) bytes,
// 128 bytes per waiter slot (shm.WaiterSize) and 8 bytes per arena entry.

// State word of one semaphore (64 bits):
//
//	bits  0..15  semval (0..SEMVMX)
//	bits 16..37  sempid (22 bits: Linux pids are < 2^22)
//	bit  38      FROZEN   the lock holder owns the word for a transaction
//	bit  39      WAITED   a queued waiter's op array names this semaphore
//	bit  40      PENDING  a lock-free SEM_UNDO op set the value and may not
//	                      have updated its semadj yet (see fastUndo)
//	bit  41      parity   the semadj parity the PENDING op leaves behind
//	bits 42..46  rec      undo record of the PENDING op
//	bits 47..62  delta    semadj change of the PENDING op (int16)
//
// The fast path runs only on a word with FROZEN and WAITED clear; any
// change of the value is one CAS that also writes sempid, so sempid is
// always the pid of the last change. A PENDING op is complete when the
// parity bit of its record's semadj word equals the word's parity bit;
// completed PENDING fields are stale and ignored. Plain ops keep them;
// they go when a lock holder freezes the word or a SEM_UNDO op replaces
// them with its own, each deciding that they are complete on a word that
// cannot change under the decision (parity is one bit: a look and then a
// CAS could take off a later, identical intent in flight; fastUndo).
const (
	valueMask   = 0xFFFF
	pidShift    = 16
	pidMask     = (1<<22 - 1) << pidShift
	flagFrozen  = 1 << 38
	flagWaited  = 1 << 39
	flagPending = 1 << 40
	parityShift = 41
	parityBit   = 1 << parityShift
	recShift    = 42
	recMask     = 0x1F << recShift
	deltaShift  = 47
	deltaMask   = 0xFFFF << deltaShift
	intentMask  = flagPending | parityBit | recMask | deltaMask
	dataMask    = valueMask | pidMask
	slowMask    = flagFrozen | flagWaited
)

// A semadj word: bits 0..15 the adjustment (int16), bit 16 a parity bit
// that flips each time a lock-free SEM_UNDO op updates it, bit 17 set while
// a goroutine of the record's process runs a lock-free SEM_UNDO op on the
// semaphore (claimed before the word's CAS, released by the store that
// completes the op: fastUndo). The lock holder, which writes semadj words
// of frozen semaphores only, keeps bit 17 as it is (setAdj).
const (
	adjParity = 1 << 16
	adjBusy   = 1 << 17
)

// An arena entry holds one sembuf: num | op<<16 | flg<<32.
func packOp(b Buf) uint64 {
	return uint64(b.Num) | uint64(uint16(b.Op))<<16 | uint64(uint16(b.Flg))<<32
}

func unpackOp(v uint64) Buf {
	return Buf{Num: uint16(v), Op: int16(uint16(v >> 16)), Flg: int16(uint16(v >> 32))}
}

// UndoRecords is the number of processes that can hold SEM_UNDO
// adjustments on one set at the same time. A record is taken by a
// process's first SEM_UNDO op and freed (its adjustments applied) when the
// process dies; more concurrent SEM_UNDO users get ENOSPC.
const UndoRecords = 32

// Waiter-table and arena sizing: the number of concurrently blocked
// operations (goroutines, across all processes) a set accepts, and the
// sembufs their arrays may hold in total: SEMOPM + arenaPer per slot, so
// that an array of any length can queue while the others hold arenaPer
// sembufs each on average. Beyond either, a blocking Op returns ENOSPC.
const (
	minWaiters = 64
	maxWaiters = 1024
	arenaPer   = 4
)

func waitersFor(nsems int) int {
	w := 2 * nsems
	if w < minWaiters {
		w = minWaiters
	}
	if w > maxWaiters {
		w = maxWaiters
	}
	return w
}

func arenaLen(waiters int) int { return SEMOPM + arenaPer*waiters }

func journalLen(nsems int) int {
	if nsems < SEMOPM {
		return nsems
	}
	return SEMOPM
}

// recSize keeps every record's head on a cache line of its own.
func recSize(nsems int) uint64 {
	return (uint64(recHdrSize) + 4*uint64(nsems) + 63) &^ 63
}

// Body offsets.
const (
	hdrSize  = 128
	offWords = hdrSize
)

func bodySize(nsems, waiters int) uint64 {
	n := uint64(nsems)
	return hdrSize + 16*n + 8*uint64(journalLen(nsems)) + 8*uint64(arenaLen(waiters)) +
		UndoRecords*recSize(nsems)
}

// layoutFor is the segment layout the registry creates for a new set.
func layoutFor(nsems int) shm.Params {
	if nsems < 1 || nsems > SEMMSL {
		return shm.Params{Count: uint32(max(nsems, 0))}
	}
	w := waitersFor(nsems)
	return shm.Params{Count: uint32(nsems), Waiters: uint32(w), BodySize: bodySize(nsems, w)}
}

// bodyHdr is the mapped fixed part of the body.
type bodyHdr struct {
	otime   atomic.Int64
	ticket  atomic.Uint64
	nwait   atomic.Uint64
	jcommit atomic.Uint64
	jarg    atomic.Uint64
	slotsHi atomic.Uint64
	undoers atomic.Uint64 // (on otime's line, which the fast paths read)
	_       [8]byte
	spinCPU atomic.Uint64 // (on the line the fast paths do not read)
	_       [56]byte
}

// recHdr heads an undo record. Life is held by the process that took the
// record, through the mapping it took it with (shm.Life: one mapping per
// Life), so that its death is known at once (undoerDied).
type recHdr struct {
	pid   atomic.Uint64
	start atomic.Uint64
	life  shm.Life
	_     [32]byte
}

const recHdrSize = int(unsafe.Sizeof(recHdr{}))

type record struct {
	hdr *recHdr
	adj []atomic.Uint32
}

// view is a set's body mapped into typed slices.
type view struct {
	hdr    *bodyHdr
	words  []atomic.Uint64
	shadow []atomic.Uint64
	jadj   []atomic.Uint64
	arena  []atomic.Uint64
	recs   []record
	slots  []shm.WaiterSlot
	nsems  int
}

var (
	_ [hdrSize - int(unsafe.Sizeof(bodyHdr{}))]struct{}
	_ [int(unsafe.Sizeof(bodyHdr{})) - hdrSize]struct{}
	_ [64 - recHdrSize]struct{}
	_ [recHdrSize - 64]struct{}
	_ [int(unsafe.Offsetof(bodyHdr{}.jcommit)) - 24]struct{}
	_ [24 - int(unsafe.Offsetof(bodyHdr{}.jcommit))]struct{}
	_ [int(unsafe.Offsetof(bodyHdr{}.slotsHi)) - 40]struct{}
	_ [40 - int(unsafe.Offsetof(bodyHdr{}.slotsHi))]struct{}
)

// newView validates a semaphore segment's parameters and maps its body.
func newView(seg *shm.Segment) (*view, error) {
	p := seg.Params()
	n := int(p.Count)
	if p.Kind != shm.KindSem || n < 1 || n > SEMMSL || p.Waiters < 1 || p.Waiters > shm.MaxWaiters {
		return nil, fmt.Errorf("%w: sem set with %d semaphores, %d waiters", shm.ErrCorrupt, n, p.Waiters)
	}
	if want := bodySize(n, int(p.Waiters)); p.BodySize != want {
		return nil, fmt.Errorf("%w: sem body %d bytes, want %d", shm.ErrCorrupt, p.BodySize, want)
	}
	base := p.BodyOffset()
	v := &view{nsems: n, slots: seg.Waiters()}
	var err error
	if v.hdr, err = shm.At[bodyHdr](seg, base); err != nil {
		return nil, err
	}
	off := base + offWords
	if v.words, err = shm.Slice[atomic.Uint64](seg, off, n); err != nil {
		return nil, err
	}
	off += 8 * uint64(n)
	if v.shadow, err = shm.Slice[atomic.Uint64](seg, off, n); err != nil {
		return nil, err
	}
	off += 8 * uint64(n)
	j := journalLen(n)
	if v.jadj, err = shm.Slice[atomic.Uint64](seg, off, j); err != nil {
		return nil, err
	}
	off += 8 * uint64(j)
	a := arenaLen(int(p.Waiters))
	if v.arena, err = shm.Slice[atomic.Uint64](seg, off, a); err != nil {
		return nil, err
	}
	off += 8 * uint64(a)
	v.recs = make([]record, UndoRecords)
	for r := range v.recs {
		if v.recs[r].hdr, err = shm.At[recHdr](seg, off); err != nil {
			return nil, err
		}
		if v.recs[r].adj, err = shm.Slice[atomic.Uint32](seg, off+uint64(recHdrSize), n); err != nil {
			return nil, err
		}
		off += recSize(n)
	}
	if off != base+p.BodySize {
		return nil, fmt.Errorf("%w: sem body layout ends at %d, not %d", shm.ErrCorrupt, off, base+p.BodySize)
	}
	return v, nil
}

// Exclusive stores (shm.StoreOwned): to the journal under the segment
// lock, a word the lock holder froze, the semadj word of a SEM_UNDO op
// whose intent is in flight.
func putWord(p *atomic.Uint64, v uint64) { shm.StoreOwned(p, v) }
func put32(p *atomic.Uint32, v uint32)   { shm.StoreOwned32(p, v) }

// Waiter slots in use. Every slot that is not free has an index below
// slotsHi, so that the lock holder's scans of the table (the wake-up
// scan, WAITED marks, the arena, GETNCNT) stop there instead of at the
// table's end. Under the lock, enqueue raises it before it marks a slot
// waiting, and the wake-up scan lowers it to just past the last slot it
// saw in use (slots are freed by their owners without the lock, never
// taken without it). Zero — a new set — is "none in use"; repair scans
// the whole table and sets it afresh; it is clamped to the table.
func (v *view) slotsInUse() []shm.WaiterSlot {
	return v.slots[:min(v.hdr.slotsHi.Load(), uint64(len(v.slots)))]
}

// Waiter slot use (shm.WaiterSlot, 128 bytes each):
//
//	State   0 free, stWaiting queued, stDone completed by a waker;
//	        stClaimed: a lock holder is completing it (claim, below);
//	        stLeft: its call ended without it (timeout, context), to be
//	        dequeued by a lock holder
//	PID     owner pid, Start its start time
//	Arg[0]  ticket: its place in its wait list (queue.go)
//	Arg[1]  op array: arena offset (bits 0..31) | count (32..47) | undo record+1 (48..63)
//	Arg[2]  outcome: errno, 0 for success (written before State = stDone)
//	Arg[3]  index in the array of the op it blocks on (GETNCNT/GETZCNT)
//	Arg[4]  1 once the owner may sleep in FUTEX_WAIT (wakers skip the syscall otherwise)
const (
	stWaiting = 1
	stDone    = 2
	stClaimed = 3
	stLeft    = 4

	argTicket = 0
	argOps    = 1
	argResult = 2
	argBlock  = 3
	argSleep  = 4
)

func packSlotOps(off, n, rec int) uint64 {
	return uint64(uint32(off)) | uint64(uint16(n))<<32 | uint64(uint16(rec+1))<<48
}

func unpackSlotOps(v uint64) (off, n, rec int) {
	return int(uint32(v)), int(uint16(v >> 32)), int(uint16(v>>48)) - 1
}

// Journal (bodyHdr.jcommit), written last before a transaction is applied:
//
//	bits  0..7   kind (0: nothing committed)
//	bits  8..31  waiter slot completed by the txn, +1 (0: none)
//	bits 32..47  errno the slot completes with
//	bits 48..63  number of jadj entries (new semadj values of record jarg-1)
//
// jadj entries: sem (bits 32..63) | semadj word (bits 0..31).
const (
	jkOps    = 1 // an op array (the caller's or a waiter's) or a waiter's error
	jkSetVal = 2 // jarg: semaphore whose semadj is cleared in every record
	jkSetAll = 3 // every semadj cleared
	jkUndo   = 4 // jarg: dead process's record, applied and freed
)

func packCommit(kind, slot, errno, nadj int) uint64 {
	return uint64(uint8(kind)) | uint64(uint32(slot+1)&0xFFFFFF)<<8 | uint64(uint16(errno))<<32 | uint64(uint16(nadj))<<48
}

func unpackCommit(c uint64) (kind, slot, errno, nadj int) {
	return int(uint8(c)), int((c>>8)&0xFFFFFF) - 1, int(uint16(c >> 32)), int(uint16(c >> 48))
}
