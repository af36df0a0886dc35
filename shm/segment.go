package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/usysv/usysv/internal/killat"
	"github.com/usysv/usysv/kernel"
)

// Kind says what a segment holds.
type Kind uint32

// The kinds of usysv object.
const (
	KindSem Kind = 1
	KindMsg Kind = 2
)

func (k Kind) String() string {
	switch k {
	case KindSem:
		return "sem"
	case KindMsg:
		return "msg"
	}
	return fmt.Sprintf("kind(%d)", uint32(k))
}

// State is the life-cycle state of an object, in the header.
type State uint32

// Object states. A segment that CreateWith made is StateCreating until its
// creator publishes it (Publish): nobody has its id before, and a creator
// killed in between leaves a segment that says so (registry's rebuild
// removes it). Create makes it StateLive at once.
const (
	StateLive     State = 1
	StateRemoved  State = 2
	StateCreating State = 3
)

// Params are the immutable creation parameters of a segment, fixed by the
// registry when it creates the object and protected by the header checksum.
type Params struct {
	Kind      Kind
	Namespace uint64
	Key       int32
	Count     uint32 // sem: nsems
	Capacity  uint64 // msg: bytes the body can hold
	CUID      uint32
	CGID      uint32
	Waiters   uint32 // slots in the waiter table
	MaxMsg    uint32 // msg: largest message
	BodySize  uint64 // bytes of the kind-specific body
}

// Limits on what a header may claim, so that a hostile header cannot make
// a reader compute absurd sizes.
const (
	MaxWaiters  = 1 << 16
	MaxBodySize = 1 << 36
)

// Size is the total number of bytes a segment with these parameters needs.
func (p Params) Size() uint64 {
	return HeaderSize + uint64(p.Waiters)*WaiterSize + p.BodySize
}

// BodyOffset is where the kind-specific body starts.
func (p Params) BodyOffset() uint64 {
	return HeaderSize + uint64(p.Waiters)*WaiterSize
}

// Segment is a mapped usysv segment whose header has been validated.
// Its methods are safe for concurrent use by goroutines; other processes
// map the same memory.
type Segment struct {
	id      int
	mem     []byte
	p       Params
	h       *header
	waiters []WaiterSlot
	// lockFutex is the low half of the lock word, the futex its waiters
	// sleep on.
	lockFutex *atomic.Uint32
	closed    atomic.Bool
	detach    bool // mem came from Shmat
	// Retirement and sleepers (BeginSleep): a segment is not replaced by
	// zeros while a goroutine of this process sleeps on its words or is
	// about to read what a waker left there.
	sleepers atomic.Int32
	retiring atomic.Bool // Retire was called
	retired  atomic.Bool // the attach is replaced (once)
}

// Format writes a fresh header for p into mem, which must be zeroed and at
// least p.Size() bytes. The object starts live, with the given owner, mode
// and ctime. Only the creator (the registry) calls it, before anyone else
// can find the object.
func Format(mem []byte, p Params, uid, gid, mode uint32, ctime int64) error {
	return format(mem, p, uid, gid, mode, ctime, StateLive)
}

// format is Format, the object starting in state st.
func format(mem []byte, p Params, uid, gid, mode uint32, ctime int64, st State) error {
	if err := p.validate(uint64(len(mem))); err != nil {
		return err
	}
	le := binary.LittleEndian
	le.PutUint32(mem[offMagic:], Magic)
	le.PutUint32(mem[offVersion:], LayoutVersion)
	le.PutUint32(mem[offKind:], uint32(p.Kind))
	le.PutUint32(mem[offHdrSize:], HeaderSize)
	le.PutUint64(mem[offSize:], p.Size())
	le.PutUint64(mem[offNamespace:], p.Namespace)
	le.PutUint32(mem[offKey:], uint32(p.Key))
	le.PutUint32(mem[offCount:], p.Count)
	le.PutUint64(mem[offCapacity:], p.Capacity)
	le.PutUint32(mem[offCUID:], p.CUID)
	le.PutUint32(mem[offCGID:], p.CGID)
	le.PutUint32(mem[offWaiters:], p.Waiters)
	le.PutUint32(mem[offMaxMsg:], p.MaxMsg)
	le.PutUint64(mem[offBodySize:], p.BodySize)
	le.PutUint64(mem[offChecksum:], xxhash.Sum64(mem[:immutableEnd]))
	s, err := FromBytes(mem)
	if err != nil {
		return err
	}
	s.h.uid.Store(uid)
	s.h.gid.Store(gid)
	s.h.mode.Store(mode & 0o777)
	s.h.ctime.Store(ctime)
	s.h.state.Store(uint32(st))
	return nil
}

func (p Params) validate(have uint64) error {
	if p.Waiters > MaxWaiters || p.BodySize > MaxBodySize {
		return fmt.Errorf("%w: %d waiters, %d body bytes", ErrCorrupt, p.Waiters, p.BodySize)
	}
	if p.BodySize%8 != 0 {
		return fmt.Errorf("%w: body size %d not a multiple of 8", ErrCorrupt, p.BodySize)
	}
	if p.Size() > have {
		return fmt.Errorf("%w: layout needs %d bytes, segment has %d", ErrCorrupt, p.Size(), have)
	}
	return nil
}

// FromBytes validates the header at the start of mem and returns a Segment
// over it, without attaching anything. Arbitrary bytes give ErrForeign,
// ErrVersionMismatch or ErrCorrupt, never a panic.
func FromBytes(mem []byte) (*Segment, error) {
	if len(mem) < HeaderSize {
		return nil, fmt.Errorf("%w: %d bytes, smaller than a header", ErrForeign, len(mem))
	}
	le := binary.LittleEndian
	if le.Uint32(mem[offMagic:]) != Magic {
		return nil, ErrForeign
	}
	if v := le.Uint32(mem[offVersion:]); v != LayoutVersion {
		return nil, fmt.Errorf("%w: segment has layout %d, this is %d", ErrVersionMismatch, v, LayoutVersion)
	}
	if le.Uint64(mem[offChecksum:]) != xxhash.Sum64(mem[:immutableEnd]) {
		return nil, fmt.Errorf("%w: header checksum", ErrCorrupt)
	}
	if hs := le.Uint32(mem[offHdrSize:]); hs != HeaderSize {
		return nil, fmt.Errorf("%w: header size %d", ErrCorrupt, hs)
	}
	p := Params{
		Kind:      Kind(le.Uint32(mem[offKind:])),
		Namespace: le.Uint64(mem[offNamespace:]),
		Key:       int32(le.Uint32(mem[offKey:])),
		Count:     le.Uint32(mem[offCount:]),
		Capacity:  le.Uint64(mem[offCapacity:]),
		CUID:      le.Uint32(mem[offCUID:]),
		CGID:      le.Uint32(mem[offCGID:]),
		Waiters:   le.Uint32(mem[offWaiters:]),
		MaxMsg:    le.Uint32(mem[offMaxMsg:]),
		BodySize:  le.Uint64(mem[offBodySize:]),
	}
	if err := p.validate(uint64(len(mem))); err != nil {
		return nil, err
	}
	if sz := le.Uint64(mem[offSize:]); sz != p.Size() {
		return nil, fmt.Errorf("%w: size %d, layout says %d", ErrCorrupt, sz, p.Size())
	}
	s := &Segment{id: -1, mem: mem[:p.Size():p.Size()], p: p}
	var err error
	if s.h, err = At[header](s, offState); err != nil {
		return nil, err
	}
	if s.lockFutex, err = At[atomic.Uint32](s, offLock); err != nil {
		return nil, err
	}
	if s.waiters, err = Slice[WaiterSlot](s, HeaderSize, int(p.Waiters)); err != nil {
		return nil, err
	}
	return s, nil
}

// Map maps the kernel segment id read-write and validates it as a usysv
// segment of kind k in namespace ns. An id that is not such a segment gives
// an error matching kernel.EINVAL, also one whose kernel segment is being
// destroyed; a segment the caller may not map gives the kernel's EACCES.
func Map(id int, k Kind, ns uint64) (*Segment, error) {
	if id < 0 {
		return nil, kernel.EINVAL
	}
	mem, err := kernel.Shmat(id, 0)
	if errors.Is(err, kernel.EIDRM) {
		// shmat found the removed segment while its last detach was
		// destroying it (Linux's do_shmat: !ipc_valid_object). A moment
		// later the id names nothing: EINVAL, as it is then. Passing
		// EIDRM on would make a call on a removed object's id say EIDRM,
		// which the kernel gives only to callers blocked at the removal
		// (fuzz/FINDINGS.md F12).
		return nil, kernel.EINVAL
	}
	if err != nil {
		return nil, err
	}
	s, err := FromBytes(mem)
	if err == nil && (s.p.Kind != k || s.p.Namespace != ns) {
		err = ErrForeign
	}
	if err != nil {
		_ = kernel.Shmdt(mem)
		return nil, err
	}
	s.id, s.mem, s.detach = id, mem, true
	return s, nil
}

// Close unmaps the segment. It is idempotent. Slices and pointers obtained
// from the segment must not be used afterwards.
func (s *Segment) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	return unlinkAround(s.mem, false, func() error {
		if !s.detach {
			return nil
		}
		return kernel.Shmdt(s.mem)
	})
}

// ID is the kernel shmid of the segment (-1 for one made by FromBytes).
func (s *Segment) ID() int { return s.id }

// Params returns the immutable creation parameters.
func (s *Segment) Params() Params { return s.p }

// Len is the number of bytes of the layout.
func (s *Segment) Len() int { return len(s.mem) }

// State returns the object's life-cycle state.
func (s *Segment) State() State { return State(s.h.state.Load()) }

// MarkRemoved flags the object as removed (IPC_RMID) and reports whether
// this call changed it. Every later operation returns EINVAL; waiters must
// be woken with WakeAll and return EIDRM.
func (s *Segment) MarkRemoved() bool {
	return s.h.state.CompareAndSwap(uint32(StateLive), uint32(StateRemoved))
}

// Publish makes an object that CreateWith made live (StateCreating to
// StateLive) and reports whether this call changed it. Its creator calls
// it once the object is complete, before it gives anyone its id.
func (s *Segment) Publish() bool {
	return s.h.state.CompareAndSwap(uint32(StateCreating), uint32(StateLive))
}

// Removed reports whether the object has been removed (or, StateCreating,
// was never published: nobody should have its id).
func (s *Segment) Removed() bool { return s.h.state.Load() != uint32(StateLive) }

// Perm returns the object's current uid, gid and mode (the registry may
// change them at any time; this reads a consistent triple) and the value of
// the permission sequence, which changes whenever they do.
//
// A write in progress makes Perm wait, but not for ever: a registry that
// died between its stores (or a hostile mapper) leaves the sequence odd, and
// after permWait Perm returns what it reads, with that odd sequence, so that
// callers caching by sequence look again once the registry repairs it.
func (s *Segment) Perm() (uid, gid, mode, seq uint32) {
	for i := 0; ; i++ {
		seq = s.h.permSeq.Load()
		uid, gid, mode = s.h.uid.Load(), s.h.gid.Load(), s.h.mode.Load()
		if seq&1 == 0 && s.h.permSeq.Load() == seq {
			return uid, gid, mode & 0o777, seq
		}
		switch {
		case i < permSpins:
			runtime.Gosched()
		case i < permSpins+int(permWait/time.Millisecond):
			time.Sleep(time.Millisecond)
		default:
			return uid, gid, mode & 0o777, seq
		}
	}
}

// A write of the permissions is three stores: Perm spins briefly, then
// sleeps, for up to about permWait, waiting for one to finish.
const (
	permSpins = 64
	permWait  = 100 * time.Millisecond
)

// PermSeq returns the permission sequence alone: cheap, for fast paths
// that cached a permission decision.
func (s *Segment) PermSeq() uint32 { return s.h.permSeq.Load() }

// SetPerm changes uid, gid and mode (low 9 bits) and ctime. Only the
// registry calls it, and never concurrently for one segment.
//
// The sequence is made odd while writing and even, and different, after:
// even when a previous writer died mid-write and left it odd.
func (s *Segment) SetPerm(uid, gid, mode uint32, ctime int64) {
	writing := s.h.permSeq.Load() | 1
	s.h.permSeq.Store(writing)
	s.h.uid.Store(uid)
	s.h.gid.Store(gid)
	s.h.mode.Store(mode & 0o777)
	s.h.permSeq.Store(writing + 1)
	s.h.ctime.Store(ctime)
}

// Ctime is the last-change time (Unix seconds).
func (s *Segment) Ctime() int64 { return s.h.ctime.Load() }

// SetCtime sets the last-change time.
func (s *Segment) SetCtime(t int64) { s.h.ctime.Store(t) }

// Param is the kind's mutable parameter (msg: qbytes).
func (s *Segment) Param() uint64 { return s.h.param.Load() }

// SetParam sets the kind's mutable parameter.
func (s *Segment) SetParam(v uint64) { s.h.param.Store(v) }

// DeadGen is bumped by the registry whenever a client process dies; an
// operation that sees it change first repairs what dead processes left.
func (s *Segment) DeadGen() uint32 { return s.h.deadGen.Load() }

// BumpDeadGen records that some client process died.
func (s *Segment) BumpDeadGen() { s.h.deadGen.Add(1) }

// Waiters returns the waiter table.
func (s *Segment) Waiters() []WaiterSlot { return s.waiters }

// Wake wakes the waiter in slot w.
func Wake(w *WaiterSlot) {
	w.Futex.Add(1)
	_, _ = kernel.FutexWake(&w.Futex, 1)
}

// WakeAll wakes every occupied waiter slot and every process waiting for
// the lock; they re-check the object's state (removed, a dead peer) when
// they wake.
func (s *Segment) WakeAll() {
	for i := range s.waiters {
		if s.waiters[i].State.Load() != 0 {
			Wake(&s.waiters[i])
		}
	}
	s.Lock().wakeAll()
}

// Namespace is the registry namespace of a registry socket path: segments
// carry it so that two registries (two test runs) never adopt each other's
// objects. It is that of the path made absolute, with the symbolic links
// of its directory resolved: two spellings of one socket (/var/run and
// /run, say) are one registry, whose hosts take over each other's objects.
func Namespace(socketPath string) uint64 {
	p, err := filepath.Abs(socketPath)
	if err != nil {
		return xxhash.Sum64String(socketPath)
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
		p = filepath.Join(dir, filepath.Base(p))
	}
	return xxhash.Sum64String(p)
}

// Candidate reports whether a kernel segment can be a usysv segment,
// without attaching it: usysv makes its segments IPC_PRIVATE, a header
// long at least, and of a size that ends SizeMark bytes into a 4 KiB
// block (Create). (A removed segment's key reads as IPC_PRIVATE too.)
// Whoever walks the kernel's list peeks at candidates only, so that other
// programs' segments are attached only if they have all that: an attach,
// however short, sets their shm_atime and shm_lpid and counts in
// shm_nattch.
func Candidate(ds kernel.ShmidDS) bool {
	return ds.Perm.Key == kernel.IPC_PRIVATE && ds.Segsz >= HeaderSize && ds.Segsz%4096 == SizeMark
}

// SizeMark marks the segments Create makes in the kernel's own record of
// them: it asks for SegmentSize(p), p.Size() rounded up to the next size
// that is SizeMark bytes past a multiple of 4096. The kernel keeps that
// size (shm_segsz), so the kernel's list tells a segment of usysv's from
// most others' before its header is written, and after its creator was
// killed, whatever was lost with it (see registry's journal). It costs
// less than 4 KiB, and no page unless p.Size() is a multiple of 4096 (then
// one): p.Size() is a multiple of 8, so it ends at most 4088 bytes into
// its last page, before the mark.
const SizeMark = 4093

// SegmentSize is the size of the kernel segment Create makes for p: at
// least p.Size(), and SizeMark bytes past a multiple of 4096.
func SegmentSize(p Params) uint64 {
	n := p.Size()
	return n + (SizeMark-n%4096+4096)%4096
}

// Peek maps segment id read-only just long enough to read its header, and
// returns its parameters and state. Tools and leak checks use it to list
// usysv objects without taking part in them.
func Peek(id int) (Params, State, error) {
	mem, err := kernel.Shmat(id, kernel.SHM_RDONLY)
	if err != nil {
		return Params{}, 0, err
	}
	defer func() { _ = kernel.Shmdt(mem) }()
	s, err := FromBytes(mem)
	if err != nil {
		return Params{}, 0, err
	}
	return s.p, s.State(), nil
}

// CreateMode is the kernel mode Create gives a new segment; the registry
// changes it afterwards to the one derived from the object's (see
// registry).
const CreateMode = 0o600

// Create makes a new kernel segment for p (IPC_PRIVATE: usysv objects are
// found by the registry, not by kernel key), formats its header with the
// given owner, mode and ctime, and returns its id. The kernel segment's own
// permissions are left to the caller (the registry derives them from the
// object's; see registry). It is detached again before returning.
func Create(p Params, uid, gid, mode uint32, ctime int64) (int, error) {
	return create(p, uid, gid, mode, ctime, nil, StateLive)
}

// CreateWith is Create that calls made (if not nil) with the new segment's
// id as soon as shmget has returned it, before the segment is attached or
// formatted, and leaves the object StateCreating, for its creator to
// Publish once it is complete. Until Format has written the header,
// nothing in the segment says it is usysv's but its size (SizeMark), and
// a creator killed meanwhile leaves a segment that only that and a record
// kept by made can name (the registry's creation journal). If made fails,
// the segment is removed and its error returned.
func CreateWith(p Params, uid, gid, mode uint32, ctime int64, made func(id int) error) (int, error) {
	return create(p, uid, gid, mode, ctime, made, StateCreating)
}

// create is CreateWith, the object starting in state st.
func create(p Params, uid, gid, mode uint32, ctime int64, made func(id int) error, st State) (int, error) {
	if err := p.validate(p.Size()); err != nil {
		return -1, err
	}
	id, err := kernel.Shmget(kernel.IPC_PRIVATE, int(SegmentSize(p)), CreateMode)
	if err != nil {
		return -1, err
	}
	crashPoint(stepCreateGot)
	if made != nil {
		if err := made(id); err != nil {
			_ = kernel.ShmctlRemove(id)
			return -1, err
		}
	}
	crashPoint(stepCreateNoted)
	mem, err := kernel.Shmat(id, 0)
	if err != nil {
		_ = kernel.ShmctlRemove(id)
		return -1, err
	}
	crashPoint(stepCreateAttached)
	err = format(mem, p, uid, gid, mode, ctime, st)
	crashPoint(stepCreateFormatted)
	_ = kernel.Shmdt(mem)
	if err != nil {
		_ = kernel.ShmctlRemove(id)
		return -1, err
	}
	return id, nil
}

// KillAtEnv names the test-only crash hook of Create: when the environment
// variable holds "step" or "step:n", the process SIGKILLs itself the n-th
// time (default 1) it reaches that step. It is read once, at start-up;
// unset, each step costs one load and compare. The registry's crash tests
// use it to kill a registry host inside a creation. Steps, in order:
//
//	create-got        shmget returned the id; made not called yet
//	create-noted      made returned; the segment is not attached yet
//	create-attached   attached, nothing written (all zeros)
//	create-formatted  header written, not detached yet
const KillAtEnv = "USYSV_SHM_KILLAT"

type step uint8

const (
	stepNone step = iota
	stepCreateGot
	stepCreateNoted
	stepCreateAttached
	stepCreateFormatted
)

var stepNames = map[string]step{
	"create-got": stepCreateGot, "create-noted": stepCreateNoted,
	"create-attached": stepCreateAttached, "create-formatted": stepCreateFormatted,
}

var crash killat.Points[step]

func init() { crash.Arm("shm", KillAtEnv, stepNames) }

// crashPoint is a labelled step of Create (see KillAtEnv).
func crashPoint(s step) { crash.At(s) }

// RetireGrace is how long Retire keeps a retired segment's addresses
// readable (as zeros) before unmapping them.
const RetireGrace = time.Minute

// Retire detaches the segment at once — the kernel frees a removed segment
// when its last attach goes — but, unlike Close, keeps its addresses valid
// for RetireGrace, filled with zeros: a goroutine that still holds the
// segment (a shared cached handle, say) reads a state that is not
// StateLive, so its calls fail with EINVAL instead of faulting. Use it for
// segments other goroutines may still touch; Close for ones nobody else
// uses. Retire and Close are idempotent, and each makes the other a no-op.
//
// A goroutine asleep on one of the segment's words would sleep for ever on
// a zero page that nobody wakes, and one just woken would read its outcome
// as zeros: while any is between BeginSleep and EndSleep, the detach waits
// for the last of them (the object is removed, so its removal has woken or
// will wake them).
func (s *Segment) Retire() error {
	if !s.closed.CompareAndSwap(false, true) || !s.detach {
		return nil
	}
	s.retiring.Store(true)
	if s.sleepers.Load() != 0 {
		return nil // the last EndSleep retires it
	}
	return s.retireNow()
}

func (s *Segment) retireNow() error {
	if !s.retired.CompareAndSwap(false, true) {
		return nil
	}
	// Lives held in the segment leave the kernel's list as its pages
	// change, and none joins it until they go (unlinkAround).
	mem := s.mem
	if err := unlinkAround(mem, true, func() error { return kernel.ShmReplaceWithZeros(mem) }); err != nil {
		return err
	}
	time.AfterFunc(RetireGrace, func() {
		_ = unlinkAround(mem, false, func() error { return kernel.MunmapBytes(mem) })
	})
	return nil
}

// DropKey marks the object keyless in its header (a mutable word: the
// immutable part and its checksum stay), the registry's answer, for good,
// to two objects that claim one key: a registry that rebuilds its table
// from the headers gives the object no key (Keyless).
func (s *Segment) DropKey() { s.h.keyless.Store(1) }

// Keyless reports whether DropKey was called on the object.
func (s *Segment) Keyless() bool { return s.h.keyless.Load() != 0 }

// Pin keeps the segment from being retired until Unpin: a BeginSleep
// section for the whole of a call, sleeping or not (the call's own
// BeginSleep sections nest inside). It reports false, with nothing to
// unpin, if Retire was called already.
func (s *Segment) Pin() bool {
	if s.BeginSleep() {
		return true
	}
	s.EndSleep()
	return false
}

// Unpin ends what Pin began.
func (s *Segment) Unpin() { s.EndSleep() }

// BeginSleep and EndSleep bracket a section in which a goroutine may sleep
// on the segment's words, or must read them after waking (its waiter
// slot's outcome): a futex wait at least, and better the whole of a call
// from queuing its waiter slot to reading its result. Retire leaves the
// attach in place until the last such section ends. BeginSleep reports
// false if the segment is being retired already: the caller must not
// sleep then (the object is removed; its words may read as zeros at any
// moment), only call EndSleep and give up.
func (s *Segment) BeginSleep() bool {
	s.sleepers.Add(1)
	return !s.retiring.Load()
}

// EndSleep ends what BeginSleep began, and carries out a Retire that
// waited for the sleepers.
func (s *Segment) EndSleep() {
	if s.sleepers.Add(-1) == 0 && s.retiring.Load() {
		_ = s.retireNow()
	}
}
