package sem

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/registry"
	"github.com/usysv/usysv/shm"
)

// Buf is struct sembuf: Num is the semaphore index, Op the operation
// (> 0 add, < 0 take, 0 wait for zero), Flg IPC_NOWAIT and/or SEM_UNDO.
type Buf = kernel.Sembuf

// DS is struct semid_ds.
type DS = kernel.SemidDS

// Flags, commands and limits, with their Linux values.
const (
	IPC_PRIVATE = kernel.IPC_PRIVATE
	IPC_CREAT   = kernel.IPC_CREAT
	IPC_EXCL    = kernel.IPC_EXCL
	IPC_NOWAIT  = kernel.IPC_NOWAIT
	SEM_UNDO    = kernel.SEM_UNDO

	IPC_RMID = kernel.IPC_RMID
	IPC_SET  = kernel.IPC_SET
	IPC_STAT = kernel.IPC_STAT
	GETPID   = kernel.GETPID
	GETVAL   = kernel.GETVAL
	GETALL   = kernel.GETALL
	GETNCNT  = kernel.GETNCNT
	GETZCNT  = kernel.GETZCNT
	SETVAL   = kernel.SETVAL
	SETALL   = kernel.SETALL

	SEMMSL = kernel.SEMMSL // semaphores per set
	SEMOPM = kernel.SEMOPM // operations per Op
	SEMVMX = kernel.SEMVMX // largest semaphore value
	SEMAEM = kernel.SEMAEM // largest SEM_UNDO adjustment
)

// Array is an open semaphore set (a "semaphore array"): the set's segment mapped into this
// process. Its methods are safe for concurrent use by goroutines, except
// Close, which must not run concurrently with other calls on the same
// handle (the memory they use is unmapped).
type Array struct {
	// Read by every fast-path op (fast.go: quick, lean; op.go: fastUndo).
	words   []atomic.Uint64 // v.words
	gate    atomic.Uint64   // see fast.go; 0 once closed
	state   *atomic.Uint32  // the segment's header words (shm.HotWords)
	permSeq *atomic.Uint32
	deadGen *atomic.Uint32 // seg.DeadGen()
	otime   *atomic.Int64  // v.hdr.otime
	undoers *atomic.Uint64 // v.hdr.undoers (undoerDied)
	ownUndo atomic.Uint64  // 1<<r for this process's undo record r
	pid     uint64         // this process's pid in sempid position
	spin    spinPolicy     // whether would-block ops spin (spin.go)
	coloc   shm.CoLocation // whether the peer spins on this CPU (spin.go)
	me      uint64         // shm.LockWord(): this process in the segment lock

	id    int
	seg   *shm.Segment
	v     *view
	mu    *shm.Mutex
	nsems int

	closed  atomic.Bool
	perm    atomic.Uint64 // permSeq<<32 | permValid | permRead | permAlter
	seenGen atomic.Uint32 // seg.DeadGen() when this handle last repaired

	// tryRepair's cache: the task that held the lock (HolderTask), found alive at
	// liveSeen (Unix ns).
	liveHolder atomic.Int32
	liveSeen   atomic.Int64
	// settle's: the lock holder it found stopped and the lock's section
	// counter then (shm.Mutex.Sections: that holding of the lock), and
	// when it found each marked undo record's process alive (undoerDied).
	stoppedHolder  atomic.Int32
	stoppedSection atomic.Uint64
	aliveAt        [UndoRecords]aliveStamp
	undo           atomic.Pointer[undoRec] // this process's undo record; nil if none yet

	// local is a mutex (a token in a one-place channel, so that a wait
	// for it can end with the call's context) that this handle's
	// goroutines queue on for a held segment lock (lock).
	local     chan struct{}
	localHeld bool    // the segment lock holder holds local too (only it reads this)
	sc        scratch // used only while holding the segment lock
}

const (
	permAlter = 1
	permRead  = 2
	permValid = 4
)

// Open is semget followed by OpenID: the set for key, created with
// IPC_CREAT (see Get).
func Open(key, nsems, flags int) (*Array, error) {
	id, err := Get(key, nsems, flags)
	if err != nil {
		return nil, err
	}
	return OpenID(id)
}

// OpenID maps the set with the given id. A negative id, or one that names
// no live semaphore set of this registry, gives EINVAL; a set this process
// may not map at all gives EACCES.
func OpenID(id int) (*Array, error) {
	if id < 0 {
		return nil, kernel.EINVAL
	}
	c, err := registry.Default()
	if err != nil {
		return nil, err
	}
	seg, err := c.Map(shm.KindSem, id)
	if err != nil {
		return nil, err
	}
	return openMapped(id, seg)
}

func openSeg(id int, ns uint64) (*Array, error) {
	seg, err := shm.Map(id, shm.KindSem, ns)
	if err != nil {
		return nil, err
	}
	return openMapped(id, seg)
}

// openMapped makes the handle of a set whose segment is mapped; the
// segment is closed if that fails.
func openMapped(id int, seg *shm.Segment) (*Array, error) {
	v, err := newView(seg)
	if err != nil {
		_ = seg.Close()
		return nil, err
	}
	if seg.Removed() {
		_ = seg.Close()
		return nil, kernel.EINVAL
	}
	s := makeSet(id, seg, v)
	// Repair what dead processes may have left before we rely on the
	// state, unless a live process holds the lock: then the repair stays
	// pending (seenGen 0), as for any call (tryRepair).
	if gen := seg.DeadGen(); gen != 0 || v.hdr.jcommit.Load() != 0 || s.mu.Held() {
		s.tryRepair(true)
	}
	return s, nil
}

func makeSet(id int, seg *shm.Segment, v *view) *Array {
	pid, _ := kernel.Self()
	s := &Array{id: id, seg: seg, v: v, mu: seg.Lock(), nsems: v.nsems, pid: uint64(pid) << pidShift & pidMask,
		local: make(chan struct{}, 1)}
	s.words, s.otime, s.undoers, s.me = v.words, &v.hdr.otime, &v.hdr.undoers, shm.LockWord()
	s.state, s.permSeq, s.deadGen = seg.HotWords()
	s.spin.credit.Store(spinCredit / 2)
	s.sc.init(v.nsems, len(v.slots))
	return s
}

// undoRec is this process's undo record, as fastUndo needs it (a live
// process keeps its record, so it is set once in practice).
type undoRec struct {
	r    int
	bits uint64 // r in an intent's record position
	adj  []atomic.Uint32
}

// setRec records that r is this process's undo record.
func (s *Array) setRec(r int) {
	if u := s.undo.Load(); u == nil || u.r != r {
		s.undo.Store(&undoRec{r: r, bits: uint64(r) << recShift, adj: s.v.recs[r].adj})
		s.ownUndo.Store(1 << r)
	}
}

// recIndex is this process's undo record, -1 if it has none yet.
func (s *Array) recIndex() int {
	if u := s.undo.Load(); u != nil {
		return u.r
	}
	return -1
}

// ID is the set's id (semid).
func (s *Array) ID() int { return s.id }

// Nsems is the number of semaphores in the set.
func (s *Array) Nsems() int { return s.nsems }

// Close unmaps the set from this process. It does not remove the set, and
// does not undo this process's SEM_UNDO adjustments (they are applied when
// the process exits). It is idempotent. Calls on the handle afterwards
// return ErrClosed.
func (s *Array) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.gate.Store(0)
	return s.seg.Close()
}

// Remove is IPC_RMID: the set is removed, blocked operations return EIDRM,
// and later calls with its id return EINVAL. Only the owner, the creator or
// a process with CAP_SYS_ADMIN may remove it (else EPERM).
func (s *Array) Remove() error {
	if s.closed.Load() {
		return ErrClosed
	}
	c, err := registry.Default()
	if err != nil {
		return err
	}
	return c.Remove(shm.KindSem, s.id)
}

// Stat is IPC_STAT (needs read permission).
func (s *Array) Stat() (DS, error) {
	if s.closed.Load() {
		return DS{}, ErrClosed
	}
	c, err := registry.Default()
	if err != nil {
		return DS{}, err
	}
	o, err := c.Stat(shm.KindSem, s.id)
	if err != nil {
		return DS{}, err
	}
	s.settle() // (an exit-time undo sets otime)
	return DS{Perm: o.Perm, Otime: s.v.hdr.otime.Load(), Ctime: o.Ctime, Nsems: s.nsems}, nil
}

// Set is IPC_SET: it copies ds.Perm.UID, ds.Perm.GID and ds.Perm.Mode&0777
// and updates ctime. Only the owner, the creator or CAP_SYS_ADMIN (EPERM).
func (s *Array) Set(ds DS) error {
	if s.closed.Load() {
		return ErrClosed
	}
	c, err := registry.Default()
	if err != nil {
		return err
	}
	return c.Set(shm.KindSem, s.id, ds.Perm.UID, ds.Perm.GID, ds.Perm.Mode, 0)
}

// Get is semget(2): the id of the set for key, creating one of nsems
// semaphores (all 0) with IPC_CREAT, or always with IPC_PRIVATE. The low 9
// bits of flags are the new set's mode. Errors as Linux: EINVAL (nsems < 0
// or > SEMMSL, 0 when creating, or more than an existing set has), ENOENT,
// EEXIST, EACCES, ENOSPC.
func Get(key, nsems, flags int) (int, error) {
	if nsems < 0 || nsems > SEMMSL {
		return -1, kernel.EINVAL
	}
	c, err := registry.Default()
	if err != nil {
		return -1, err
	}
	return c.Get(registry.GetRequest{
		Kind: shm.KindSem, Key: int32(key), Flags: flags, Count: nsems, Layout: layoutFor(nsems),
	})
}

// The package-level functions use one handle per id, kept until
// the set is found removed (see forget).
var handles struct {
	last atomic.Pointer[Array]
	m    sync.Map // id → *Array
	mu   sync.Mutex
}

func handle(id int) (*Array, error) {
	if id < 0 {
		return nil, kernel.EINVAL
	}
	if h := handles.last.Load(); h != nil && h.id == id {
		return h, nil
	}
	if v, ok := handles.m.Load(id); ok {
		h := v.(*Array)
		if h.seg.Removed() {
			forget(h)
			return nil, kernel.EINVAL
		}
		handles.last.Store(h)
		return h, nil
	}
	handles.mu.Lock()
	defer handles.mu.Unlock()
	if v, ok := handles.m.Load(id); ok {
		return v.(*Array), nil
	}
	sweep()
	h, err := OpenID(id)
	if err != nil {
		return nil, err
	}
	handles.m.Store(id, h)
	handles.last.Store(h)
	return h, nil
}

// forget drops a cached handle whose set is gone, and retires its segment
// (detached, so that the kernel frees it; its addresses left readable as
// zeros, so that a goroutine still inside a call on the shared handle sees
// a removed set instead of faulting; shm.Segment.Retire waits for the
// goroutines asleep on it). Keeping it mapped would keep the removed
// kernel segment alive: a process that creates and removes many sets
// would exhaust the host's SHMMNI (fuzz/FINDINGS.md F1; F8 for a delay).
func forget(h *Array) {
	if handles.m.CompareAndDelete(h.id, h) {
		handles.last.CompareAndSwap(h, nil)
		_ = h.seg.Retire()
	}
}

// sweep forgets the cached handles of every set removed since, by anyone:
// one removed by another process is otherwise found only by a call with
// its id. It runs whenever a set is opened for the cache, so a process
// keeps mapped at most the removed sets it touched since it last opened
// another.
func sweep() {
	handles.m.Range(func(_, v any) bool {
		if h := v.(*Array); h.seg.Removed() {
			forget(h)
		}
		return true
	})
}

// settle drops the cached handle h after a call on it failed because its
// set is gone.
func settle(h *Array, err error) error {
	if err != nil && h.seg.Removed() {
		forget(h)
	}
	return err
}

// held runs f on the cached handle of set id, pinned: its segment is not
// retired (its words turned to zeros) while f runs, so that a Remove or a
// sweep by another goroutine of this process does not make the call read
// zeros for values; it is retired once the call ends. A handle retired
// before the call began is the id of a removed set: EINVAL. zero is the
// result with an error. Op pins the same way, written out. (On zero
// words, a call would see a removed set at best; at worst it would take
// the zero page's lock while another goroutine of this process held the
// real one, two goroutines in one handle's critical section.)
func held[T any](id int, zero T, f func(h *Array) (T, error)) (T, error) {
	h, err := handle(id)
	if err != nil {
		return zero, err
	}
	if !h.seg.Pin() {
		return zero, kernel.EINVAL
	}
	defer h.seg.Unpin()
	return f(h)
}

// heldErr is held for a call with no result but its error.
func heldErr(id int, f func(h *Array) error) error {
	_, err := held(id, struct{}{}, func(h *Array) (struct{}, error) { return struct{}{}, f(h) })
	return err
}

// Op is semop(2): the operations are applied atomically, in array order,
// blocking until they all can be (unless one that cannot has IPC_NOWAIT:
// EAGAIN).
func Op(id int, ops []Buf) error {
	if err := checkOps(ops); err != nil {
		return err
	}
	h := handles.last.Load() // (handle's first look, written out: one call less)
	if h == nil || h.id != id {
		var err error
		if h, err = handle(id); err != nil {
			return numBeforePerm(id, maxNum(ops), kernel.EFBIG, err)
		}
	}
	if !h.seg.Pin() {
		return kernel.EINVAL
	}
	defer h.seg.Unpin()
	if err := h.run(context.Background(), ops, nil); err != nil {
		return settle(h, err)
	}
	return nil
}

// TimedOp is semtimedop(2): Op, giving up with EAGAIN (nothing applied)
// once timeout has passed. A negative timeout is EINVAL, as an invalid
// timespec is.
func TimedOp(id int, ops []Buf, timeout time.Duration) error {
	if err := checkOps(ops); err != nil {
		return err
	}
	if id < 0 || timeout < 0 {
		return kernel.EINVAL
	}
	deadline := time.Now().Add(timeout)
	err := heldErr(id, func(h *Array) error { return settle(h, h.run(context.Background(), ops, &deadline)) })
	if errors.Is(err, kernel.EACCES) {
		return numBeforePerm(id, maxNum(ops), kernel.EFBIG, err)
	}
	return err
}

// GetVal is semctl(GETVAL).
func GetVal(id, num int) (int, error) {
	return held(id, -1, func(h *Array) (int, error) { return h.GetVal(num) })
}

// SetVal is semctl(SETVAL). val outside [0, SEMVMX] is ERANGE, checked
// before the id, as Linux does.
func SetVal(id, num, val int) error {
	if id < 0 || id > math.MaxInt32 { // (the kernel's: no such id, before the value is looked at)
		return kernel.EINVAL
	}
	if val < 0 || val > SEMVMX {
		return kernel.ERANGE
	}
	err := heldErr(id, func(h *Array) error { return h.SetVal(num, val) })
	return numBeforePerm(id, num, kernel.EINVAL, err)
}

// numBeforePerm is the error of a call on set id that failed with err,
// for the calls in which Linux checks a semaphore number against the set's
// size before the caller's permission: semop's largest sem_num (EFBIG)
// and SETVAL's semnum (EINVAL), tooBig. A caller that may not map the set
// (EACCES) does not know its size: it asks the registry, which tells it to
// anyone (Client.StatAny, as SEM_STAT_ANY). Any other err is returned as
// it is, and so is EACCES if the registry cannot tell.
func numBeforePerm(id, num int, tooBig kernel.Errno, err error) error {
	if !errors.Is(err, kernel.EACCES) {
		return err
	}
	c, cerr := registry.Default()
	if cerr != nil {
		return err
	}
	o, serr := c.StatAny(shm.KindSem, id)
	if serr != nil {
		return err
	}
	if num < 0 || num >= o.Count {
		return tooBig
	}
	return err
}

// maxNum is the largest semaphore number of ops.
func maxNum(ops []Buf) int {
	m := 0
	for _, b := range ops {
		m = max(m, int(b.Num))
	}
	return m
}

// GetAll is semctl(GETALL).
func GetAll(id int) ([]uint16, error) {
	return held(id, nil, func(h *Array) ([]uint16, error) { return h.GetAll() })
}

// SetAll is semctl(SETALL); vals must hold exactly one value per semaphore
// (EINVAL otherwise).
func SetAll(id int, vals []uint16) error {
	return heldErr(id, func(h *Array) error { return h.SetAll(vals) })
}

// GetPid is semctl(GETPID).
func GetPid(id, num int) (int, error) {
	return held(id, -1, func(h *Array) (int, error) { return h.GetPid(num) })
}

// GetNcnt is semctl(GETNCNT).
func GetNcnt(id, num int) (int, error) {
	return held(id, -1, func(h *Array) (int, error) { return h.GetNcnt(num) })
}

// GetZcnt is semctl(GETZCNT).
func GetZcnt(id, num int) (int, error) {
	return held(id, -1, func(h *Array) (int, error) { return h.GetZcnt(num) })
}

// Stat is semctl(IPC_STAT).
func Stat(id int) (DS, error) {
	return held(id, DS{}, func(h *Array) (DS, error) { return h.Stat() })
}

// Set is semctl(IPC_SET): it copies Perm.UID, Perm.GID and
// Perm.Mode&0777. The method (*Array).Set is the same call.
//
// Like Remove, it asks the registry without mapping the set: the kernel
// lets the owner or creator do it whatever the mode, even a mode that
// lets nobody map the set (fuzz FINDINGS F6).
func Set(id int, ds DS) error {
	c, err := registry.Default()
	if err != nil {
		return err
	}
	return c.Set(shm.KindSem, id, ds.Perm.UID, ds.Perm.GID, ds.Perm.Mode, 0)
}

// Remove is semctl(IPC_RMID). Only the owner, the creator or
// CAP_SYS_ADMIN may (EPERM), whatever the mode; see Set.
func Remove(id int) error {
	c, err := registry.Default()
	if err != nil {
		return err
	}
	if err := c.Remove(shm.KindSem, id); err != nil {
		return err
	}
	if v, ok := handles.m.Load(id); ok {
		forget(v.(*Array))
	}
	return nil
}

func checkOps(ops []Buf) error {
	if len(ops) > SEMOPM {
		return kernel.E2BIG
	}
	if len(ops) == 0 {
		return kernel.EINVAL
	}
	return nil
}
