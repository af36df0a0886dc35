package msgq

import (
	"context"
	"math"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/usysv/usysv/internal/clock"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/registry"
	"github.com/usysv/usysv/shm"
)

// DefaultWaiters is the number of waiter slots of a queue created without
// a Config: how many callers can sleep in it at once with FIFO hand-over.
const DefaultWaiters = 64

// Config sets the layout of a queue created by OpenConfig. It matters only
// when the call creates the queue; an existing queue keeps its own. Zero
// fields take the defaults.
//
// MaxMsg and Capacity beyond Linux's MSGMAX and MSGMNB are for the
// library's own use (say, bulk transfer between cooperating processes):
// such a queue still follows every SysV rule, with its own limits in place
// of MSGMAX and MSGMNB.
type Config struct {
	// MaxMsg is the largest message text, in bytes. Default MSGMAX (8192).
	MaxMsg int
	// Capacity is the largest qbytes the queue can ever have: the store is
	// sized for it. IPC_SET of a larger qbytes fails with EINVAL (Linux
	// would accept it from a process with CAP_SYS_RESOURCE). Default
	// MSGMNB (16384).
	Capacity int
	// Qbytes is the initial qbytes. Default Capacity.
	Qbytes int
	// Waiters is the number of waiter slots. Default DefaultWaiters.
	Waiters int
}

func (c Config) withDefaults() (Config, error) {
	if c.MaxMsg == 0 {
		c.MaxMsg = MSGMAX
	}
	if c.Capacity == 0 {
		c.Capacity = MSGMNB
	}
	if c.Qbytes == 0 {
		c.Qbytes = c.Capacity
	}
	if c.Waiters == 0 {
		c.Waiters = DefaultWaiters
	}
	if c.MaxMsg < 0 || c.MaxMsg > maxMsgLimit || c.Capacity < 0 || uint64(c.Capacity) > maxCapacity ||
		c.Qbytes < 0 || c.Qbytes > c.Capacity || c.Waiters < 0 || c.Waiters > shm.MaxWaiters {
		return c, kernel.EINVAL
	}
	return c, nil
}

// Msg is one message of a batch. For SendBatch, Type and Data are the
// message. For RecvBatch, Data is the buffer (its length is the most that
// is received) and Type and N are set to the type and the number of bytes
// received.
type Msg struct {
	Type int64
	Data []byte
	N    int
}

// Queue is a handle on a message queue mapped into this process. Its
// methods are safe for concurrent use by goroutines; any number of
// processes may have handles on the same queue.
type Queue struct {
	id       int
	seg      *shm.Segment
	v        *view
	mu       *shm.Mutex
	lockWord uint64 // shm.LockWord, for mu.LockAs
	pid      uint32
	start    uint64
	maxMsg   int
	cap      uint64
	cuid     uint32
	cgid     uint32

	deadGen atomic.Uint32
	perm    atomic.Uint64 // permSeq<<32 | permValid | permWrite | permRead
	closed  atomic.Bool
	slow    atomic.Int32 // calls in their slow path (spinning or sleeping)

	coloc      shm.CoLocation // whether the peer spins on this one's CPU (see politeFor)
	spinFails  atomic.Int32   // spins in a row that saw nothing (see spin)
	spinProbe  atomic.Int32
	wokePeer   atomic.Bool  // the last locked call woke a sleeper (see spinBudget)
	wakeProbe  atomic.Int32 // one call in wakeProbe spins after waking a sleeper
	shortProbe atomic.Int32 // one call in shortProbe spins once spins stopped paying
	shortCount atomic.Int32
	streamy    atomic.Int32 // quick receive spins in a row (see streamGap); streamQuick: stream mode
	sent       atomic.Bool  // this handle sent since its last receive spin: it answers (see streamGap)

	ring bool // lock-free calls may use the ring (it exists and our pid fits a claim)

	// The ring's head word as this handle's senders last read it, and the
	// tail position they read it at (see room); the tail position as its
	// receivers last read it, and the head position they read it at (see
	// committed). Written now and then; each pair on its own cache line.
	_        [64]byte
	headSeen atomic.Uint64
	headAt   atomic.Uint32
	_        [52]byte
	tailSeen atomic.Uint64 // tail position<<32 | head position
	_        [56]byte
}

const (
	permRead  = 1
	permWrite = 2
	permValid = 4
)

// Open is msgget: it returns a handle on the queue for key, creating it
// with IPC_CREAT (IPC_PRIVATE always creates). flags are IPC_CREAT,
// IPC_EXCL and the mode bits; errors are msgget's (ENOENT, EEXIST, EACCES,
// ENOSPC).
func Open(key, flags int) (*Queue, error) { return OpenConfig(key, flags, Config{}) }

// OpenConfig is Open with the layout a created queue gets.
func OpenConfig(key, flags int, cfg Config) (*Queue, error) {
	id, err := getConfig(key, flags, cfg)
	if err != nil {
		return nil, err
	}
	return OpenID(id)
}

func getConfig(key, flags int, cfg Config) (int, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return -1, err
	}
	c, err := registry.Default()
	if err != nil {
		return -1, err
	}
	return c.Get(registry.GetRequest{
		Kind: shm.KindMsg, Key: int32(key), Flags: flags,
		Layout: shm.Params{
			Capacity: uint64(cfg.Capacity), MaxMsg: uint32(cfg.MaxMsg), Waiters: uint32(cfg.Waiters),
			BodySize: bodySize(uint64(cfg.Capacity), uint32(cfg.MaxMsg), uint32(cfg.Waiters)),
		},
		Param: uint64(cfg.Qbytes),
	})
}

// OpenID returns a handle on the queue with this id (from Get, Open, or
// another process), without asking the registry anything but its
// namespace. An id that names no live queue gives EINVAL; a queue whose
// segment this process may not map, EACCES.
func OpenID(id int) (*Queue, error) {
	if id < 0 {
		return nil, kernel.EINVAL
	}
	c, err := registry.Default()
	if err != nil {
		return nil, err
	}
	seg, err := c.Map(shm.KindMsg, id)
	if err != nil {
		return nil, err
	}
	v, err := newView(seg)
	if err == nil && seg.Removed() {
		err = kernel.EINVAL
	}
	if err != nil {
		_ = seg.Close()
		return nil, err
	}
	p := seg.Params()
	pid, start := kernel.Self()
	q := &Queue{id: id, seg: seg, v: v, mu: seg.Lock(), lockWord: shm.LockWord(), pid: uint32(pid), start: start,
		maxMsg: int(p.MaxMsg), cap: p.Capacity, cuid: p.CUID, cgid: p.CGID,
		ring: v.nslots != 0 && v.me != 0}
	q.deadGen.Store(seg.DeadGen())
	return q, nil
}

// ID is the queue's id (msqid).
func (q *Queue) ID() int { return q.id }

// MaxMsg is the largest message text the queue takes (MSGMAX unless it
// was created with a Config).
func (q *Queue) MaxMsg() int { return q.maxMsg }

// Capacity is the largest qbytes the queue can have.
func (q *Queue) Capacity() uint64 { return q.cap }

// enter and leave bracket the slow path of a call (where it may spin or
// sleep), so that Close can wake those calls and wait for them to leave
// before it unmaps the queue.
func (q *Queue) enter() error {
	q.slow.Add(1)
	if q.closed.Load() {
		q.slow.Add(-1)
		return ErrClosed
	}
	// Nor is the segment retired under a call that may wait (forget
	// retires a dropped cached handle's segment, whose words then read
	// zeros): a receiver woken with a message handed to it, or with E2BIG,
	// must still read its slot after the queue is removed (fuzz F10).
	q.seg.BeginSleep()
	return nil
}

func (q *Queue) leave() {
	q.seg.EndSleep()
	q.slow.Add(-1)
}

// Close detaches the queue from this process; the queue itself lives on
// (Remove destroys it). Calls blocked on this handle are woken and return
// ErrClosed before Close returns; later calls return ErrClosed. Close must
// not race with calls on the handle that are not blocked (as with any
// unmapping, such a call could touch memory that is gone). It is
// idempotent.
func (q *Queue) Close() error {
	if !q.closed.CompareAndSwap(false, true) {
		return nil
	}
	forget(q)
	for q.slow.Load() != 0 {
		// Wake this process's sleepers: those of this handle see it closed.
		for i := range q.v.slots {
			s := &q.v.slots[i]
			if s.State.Load() != slotFree && s.PID.Load() == q.pid {
				shm.Wake(s)
			}
		}
		if q.v.ctl.ovfWait.Load() != 0 {
			q.v.ctl.ovfFutex.Add(1)
			_, _ = kernel.FutexWake(&q.v.ctl.ovfFutex, math.MaxInt32)
		}
		time.Sleep(50 * time.Microsecond)
	}
	return q.seg.Close()
}

// lock takes the segment lock, opens the call's critical section in w
// (for guard), and repairs first if a process died: the lock's previous
// holder (full rebuild), or any client since this handle last looked
// (waiter slots).
func (q *Queue) lock(w *wakeList) {
	q.locked(q.acquire(w))
}

// lockWithin is lock for a call that holds no waiter slot, which stops
// waiting for the lock when ctx ends (ctxError), having done nothing. The
// lock is held by another for microseconds at most, unless its holder is
// stopped (SIGSTOP): then until it is continued.
func (q *Queue) lockWithin(ctx context.Context, w *wakeList) error {
	died, err := q.acquireWithin(ctx, w)
	if err != nil {
		return err
	}
	q.locked(died)
	return nil
}

// lockFor is lock for a blocking call with waiter w: lockWithin while w
// holds no slot, else lock (a slot, which a message may have been handed
// to, is given up under the lock).
func (q *Queue) lockFor(ctx context.Context, w *waiter, wl *wakeList) error {
	if w.slot == nil {
		return q.lockWithin(ctx, wl)
	}
	q.lock(wl)
	return nil
}

// locked is lock's repair, once the lock is taken: ownerDied is what
// acquire returned.
func (q *Queue) locked(ownerDied bool) {
	if ownerDied {
		q.v.repair(true)
	}
	if g := q.seg.DeadGen(); g != q.deadGen.Load() {
		q.v.repair(false)
		q.deadGen.Store(g)
	}
}

// acquire takes the segment lock and opens the call's section in w. While
// another holds the lock, it first watches the lock word for a few
// microseconds (critical sections are short, a batch is a few
// microseconds) rather than going to sleep on it at once, which would
// cost both sides a syscall.
func (q *Queue) acquire(w *wakeList) (ownerDied bool) {
	for i := 0; i < lockSpin && q.mu.Held(); i++ {
	}
	died := q.mu.LockAs(q.lockWord)
	w.section = q.mu.Enter()
	return died
}

// acquireWithin is acquire for lockWithin: it stops waiting when ctx ends.
func (q *Queue) acquireWithin(ctx context.Context, w *wakeList) (ownerDied bool, err error) {
	for i := 0; i < lockSpin && q.mu.Held(); i++ {
	}
	died, err := q.mu.LockAsWithin(ctx, time.Time{}, q.lockWord)
	if err != nil {
		return false, ctxError(ctx)
	}
	w.section = q.mu.Enter()
	return died, nil
}

// guard, deferred by every call that takes the segment lock mu, with the
// wakeList its sections use and its waiter (or nil), is what keeps a
// panic inside a section (a segment corrupted beyond what the code
// handles; FINDINGS F15) from stopping every process: if the panic unwinds
// through the call while its section is open, the queue is handled as if
// this process had died at that instruction, and then the panic goes on,
// for the caller to recover or not. The waiter slots the call holds are
// given up as a dead process's (the repair frees them, with the chain one
// holds, or requeues the message handed to one), and salvage repairs. A
// section that the call has ended is left alone: another goroutine may
// hold the lock by then. Outside its sections a call may hold its waiter
// slot still (asleep): a panic there gives the slot up as well, and the
// repair runs at once if the lock is free (else the next repair frees the
// slot; until then a send may hand it a message, which that repair puts
// back).
func (v *view) guard(mu *shm.Mutex, wl *wakeList, w *waiter) {
	open := wl.section != 0 && mu.Open(wl.section)
	if !open && (w == nil || w.slot == nil) {
		return
	}
	r := recover()
	if r == nil {
		return
	}
	if w != nil && w.slot != nil {
		w.slot.Abandon()
	}
	if wl.held != nil { // (only while a section is open: unlock clears it)
		wl.held.Abandon()
	}
	switch {
	case open:
		v.salvage(mu, wl.section)
	case mu.TryLock():
		v.salvage(mu, mu.Enter())
	}
	panic(r)
}

// salvage repairs what section t, cut short by a panic, left half done, at
// once and in place (the lock is still held), and unlocks; then it wakes
// every sleeper: what the registry does after a death (its eager repair,
// then shm.Segment.WakeAll), for a sleeper the section should have woken.
// If the repair panics too (the same corruption), the lock is given up as
// if this process had died holding it (shm.Mutex.Abandon), so that the
// next taker, here or in another process, repairs again instead of
// waiting for ever on a live process; that second panic is dropped, and
// the first goes on.
func (v *view) salvage(mu *shm.Mutex, t uint64) {
	defer func() {
		if recover() != nil && mu.Open(t) {
			mu.Abandon()
		}
	}()
	v.repair(true)
	v.maybeOpen()
	mu.Unlock()
	v.seg.WakeAll()
}

// lockSpin bounds acquire's watch: about 5 µs of loads.
const lockSpin = 5000

// access returns the permRead/permWrite bits this process has, cached
// until the registry changes the queue's permissions.
func (q *Queue) access() uint64 {
	if p := q.perm.Load(); p&permValid != 0 && uint32(p>>32) == q.seg.PermSeq() {
		return p
	}
	return q.accessSlow()
}

func (q *Queue) accessSlow() uint64 {
	uid, gid, mode, seq := q.seg.Perm()
	c := registry.Self()
	p := uint64(seq)<<32 | permValid
	if registry.Permitted(c, uid, gid, q.cuid, q.cgid, mode, registry.Read) {
		p |= permRead
	}
	if registry.Permitted(c, uid, gid, q.cuid, q.cgid, mode, registry.Write) {
		p |= permWrite
	}
	q.perm.Store(p)
	return p
}

// qbytes is the queue's current qbytes (never above the store's capacity).
func (q *Queue) qbytes() uint64 { return min(q.seg.Param(), q.cap) }

// wakeList collects the sleepers a locked section wakes, so that the
// FUTEX_WAKE calls happen after the lock is released. The futex words
// themselves are bumped under the lock.
type wakeList struct {
	section uint64          // the call's latest critical section (shm.Mutex.Enter; 0: none yet)
	held    *shm.WaiterSlot // a slot holding a chain for the call in this section (guard), or nil

	n     int
	s     [8]*shm.WaiterSlot
	all   bool
	ovf   bool
	sent  bool // a message was queued: tell spinning receivers
	recvd bool // a message left: tell spinning senders
	big   bool // a message too big for the ring went through the store
}

func (w *wakeList) add(s *shm.WaiterSlot) {
	s.Futex.Add(1)
	if w.n < len(w.s) {
		w.s[w.n] = s
		w.n++
	} else {
		w.all = true
	}
}

func (q *Queue) unlock(w *wakeList) {
	// Spinners are told once per locked section, however many messages
	// it moved, just before the lock is free for them to take.
	c := q.v.ctl
	// Open the ring again if the store is empty and nobody waits, unless
	// the section moved a message too big for the ring, or the last one
	// sent was (bigLast: a receiver that finds the store empty would
	// otherwise open it between every two such messages): the next one
	// is likely too, and closing and opening for every one costs four
	// CAS. (Those who spin watch the ring's words too, which opening
	// changes.)
	if !w.big && c.head == 0 && c.bigLast == 0 { // (the store is not empty: no need to look)
		q.v.maybeOpen()
	}
	// The spinner counts are hints like ovfWait: added to under the lock
	// before each spin, zeroed by the bump that ends the spins, so a
	// spinner that dies leaves no cost behind.
	if w.sent && c.recvSpin.Load() != 0 {
		c.recvSpin.Store(0)
		c.sendGen.Add(1)
	}
	if w.recvd {
		if c.sendSpin.Load() != 0 {
			c.sendSpin.Store(0)
			c.recvGen.Add(1)
		}
		if c.sendWait > 0 {
			q.wakeSenders(w)
		}
	}
	w.held = nil
	q.mu.Unlock()
	w.sent, w.recvd, w.big = false, false, false
	if w.n == 0 && !w.all && !w.ovf {
		return
	}
	crashPoint(stepUnlocked)
	for i := 0; i < w.n; i++ {
		_, _ = kernel.FutexWake(&w.s[i].Futex, 1)
	}
	if w.all {
		for i := range q.v.slots {
			if q.v.slots[i].State.Load() != slotFree {
				_, _ = kernel.FutexWake(&q.v.slots[i].Futex, 1)
			}
		}
	}
	if w.ovf {
		_, _ = kernel.FutexWake(&q.v.ctl.ovfFutex, math.MaxInt32)
	}
	if (w.n != 0 || w.all) && !q.wokePeer.Load() {
		q.wokePeer.Store(true)
	}
	*w = wakeList{}
}

// changed tells the callers that spin or sleep without a slot that the
// queue changed.
func (q *Queue) changed(w *wakeList) {
	if c := q.v.ctl; c.ovfWait.Load() > 0 {
		c.ovfWait.Store(0)
		c.ovfFutex.Add(1)
		w.ovf = true
	}
}

// enqueue sends one message that fits; the lock is held.
func (q *Queue) enqueue(mtype int64, data []byte, now int64, w *wakeList) error {
	v := q.v
	c := v.ctl
	crashPoint(stepSendLocked)
	q.stampSend()
	seq := c.seq
	c.seq++
	if c.recvWait > 0 {
		if done, err := q.pipeline(mtype, data, 0, seq, now, w); done || err != nil {
			return err
		}
	}
	b, err := v.put(mtype, seq, data)
	if err != nil {
		return err
	}
	if len(data) > slotText {
		w.big = true
		if c.bigLast == 0 {
			c.bigLast = 1
		}
	} else if c.bigLast != 0 {
		c.bigLast = 0
	}
	crashPoint(stepSendWritten)
	if err := v.link(b); err != nil {
		v.freeChain(b, b) // only reachable on a corrupt tail; b's chain is lost to the next repair
		return err
	}
	crashPoint(stepSendLinked)
	c.qnum++
	c.cbytes += uint64(len(data))
	w.sent = true
	q.changed(w)
	return nil
}

// pipeline offers a message to the sleeping receivers in the order they
// went to sleep (Linux pipelined_send): the first whose type criteria match
// gets it, unless the message is larger than its buffer, in which case it
// fails with E2BIG and the next is tried. It reports whether a receiver
// took the message. pre is the message's chain (block+1) if it is written
// already (enqueueBig), else 0.
func (q *Queue) pipeline(mtype int64, data []byte, pre uint32, seq uint64, now int64, w *wakeList) (bool, error) {
	v := q.v
	c := v.ctl
	for c.recvWait > 0 {
		var best *shm.WaiterSlot
		var bestTicket uint64
		for i := range v.slots {
			s := &v.slots[i]
			if s.State.Load() != slotRecv || s.Life.Dead() {
				continue // (a dead receiver: Linux drops it as it exits)
			}
			if !matches(mtype, int(s.Arg[argMode].Load()&0xff), int64(s.Arg[argType].Load())) {
				continue
			}
			if t := s.Arg[argTicket].Load(); best == nil || t < bestTicket {
				best, bestTicket = s, t
			}
		}
		if best == nil {
			return false, nil
		}
		c.recvWait--
		if uint64(len(data)) > best.Arg[argMode].Load()>>32 {
			best.State.Store(slotE2BIG)
			w.add(best)
			continue
		}
		b := pre - 1
		if pre == 0 {
			var err error
			if b, err = v.put(mtype, seq, data); err != nil {
				c.recvWait++
				return false, err
			}
		}
		if len(data) > slotText {
			w.big = true // as enqueue: keep the ring closed for the next one
			c.bigLast = 1
		} else {
			c.bigLast = 0
		}
		best.Arg[argBlock].Store(uint64(b) + 1)
		best.Arg[argSeq].Store(seq)
		best.State.Store(slotDelivered)
		v.rc.lrpid.Store(best.PID.Load())
		v.rc.rtime.Store(now)
		w.add(best)
		return true, nil
	}
	return false, nil
}

// outside is a message taken under the lock whose text is copied out
// after the lock is released (take with a message of bigCopy bytes or
// more): s is the slotTaken slot that holds its chain.
type outside struct {
	s   *shm.WaiterSlot
	ref uint32
}

// take receives one message matching (mode, typ) into m; the lock is held.
// It reports false if there is none. With out (not nil, and out.s nil), a
// message of bigCopy bytes or more is taken without copying its text: out
// says what finishTake, called once the lock is released, copies.
func (q *Queue) take(m *Msg, mode int, typ int64, flags int, now int64, w *wakeList, out *outside) (bool, error) {
	v := q.v
	crashPoint(stepRecvLocked)
	ref, prev, err := v.find(mode, typ)
	if err != nil || ref == 0 {
		return false, err
	}
	h, err := v.first(ref)
	if err != nil {
		return false, err
	}
	l, err := v.msgLen(h)
	if err != nil {
		return false, err
	}
	if int(l) > len(m.Data) && flags&MSG_NOERROR == 0 {
		return false, kernel.E2BIG
	}
	if flags&MSG_COPY != 0 {
		// Linux copies into a buffer of min(bufsz, MSGMAX) bytes and
		// refuses (EINVAL) a message that does not fit, MSG_NOERROR or not.
		if int(l) > min(len(m.Data), q.maxMsg) {
			return false, kernel.EINVAL
		}
		m.N, _, err = v.read(ref, m.Data)
		m.Type = h.mtype
		return err == nil, err
	}
	if out != nil && out.s == nil && l >= bigCopy {
		if s := q.freeSlot(); s != nil {
			return true, q.takeOutside(s, m, ref, prev, h.mtype, l, w, out)
		}
	}
	n, last, err := v.read(ref, m.Data)
	if err != nil {
		return false, err
	}
	m.N, m.Type = n, h.mtype
	if l > slotText {
		w.big = true
	}
	crashPoint(stepRecvCopied)
	if err := v.unlink(ref, prev); err != nil {
		return false, err
	}
	crashPoint(stepRecvUnlinked)
	v.freeChain(ref-1, last)
	crashPoint(stepRecvFreed)
	q.received(l, w)
	return true, nil
}

// received counts a message of l bytes taken out of the store (qnum,
// cbytes, lrpid, rtime) and tells those waiting for room. Lock held.
func (q *Queue) received(l uint32, w *wakeList) {
	c := q.v.ctl
	c.qnum--
	c.cbytes -= uint64(l)
	q.stampRecv()
	q.afterRecv(w)
}

// takeOutside is take's commit of a message whose text is copied out
// after the lock is released: the message is unlinked (received) and its
// chain held by slot s (slotTaken) until finishTake frees it.
func (q *Queue) takeOutside(s *shm.WaiterSlot, m *Msg, ref, prev uint32, mtype int64, l uint32, w *wakeList, out *outside) error {
	v := q.v
	s.Arg[argBlock].Store(uint64(ref))
	// A death between the unlink (the commit) and the slot's state (the
	// lock held) is a full rebuild, which frees the chain, now in neither.
	if err := v.unlink(ref, prev); err != nil {
		return err
	}
	s.Life.Hold()
	s.State.Store(slotTaken)
	w.held = s
	crashPoint(stepRecvUnlinked)
	q.received(l, w)
	if l > slotText {
		w.big = true
	}
	m.Type = mtype
	*out = outside{s: s, ref: ref}
	return nil
}

// finishTake copies out into m the text of the message take left in out,
// with the lock released, then frees its chain under the lock.
func (q *Queue) finishTake(out *outside, m *Msg) error {
	v := q.v
	n, last, err := v.read(out.ref, m.Data)
	m.N = n
	crashPoint(stepRecvCopied)
	var wl wakeList
	defer q.v.guard(q.mu, &wl, nil)
	q.lock(&wl)
	s := out.s
	if s.State.Load() != slotTaken || s.PID.Load() != q.pid || s.Arg[argBlock].Load() != uint64(out.ref) {
		s.Life.Release() // (someone else's now, or nobody's)
		q.unlock(&wl)
		return corrupt("waiter slot of a message being received changed")
	}
	wl.held = s
	if err == nil {
		v.freeChain(out.ref-1, last)
	} else {
		v.freeHeld(s)
	}
	freeOwn(s)
	crashPoint(stepRecvFreed)
	q.unlock(&wl)
	return err
}

// freeSlot returns a free waiter slot, made this process's, or nil. Its
// state is still free: the caller Holds its Life right before it sets the
// state (nothing before can fail), and frees it with freeOwn. The lock is
// held.
func (q *Queue) freeSlot() *shm.WaiterSlot {
	for i := range q.v.slots {
		s := &q.v.slots[i]
		if s.State.Load() == slotFree {
			s.PID.Store(q.pid)
			s.Start.Store(q.start)
			return s
		}
	}
	return nil
}

// freeOwn frees a waiter slot this process holds (lock held). Every slot
// a live process frees goes through here: its Life is released first, as
// shm.Life requires (the repair frees dead processes' slots directly).
func freeOwn(s *shm.WaiterSlot) {
	s.Life.Release()
	s.State.Store(slotFree)
}

// enqueueBig is enqueue for a message of bigCopy bytes or more: its text
// is copied into the store with the lock released, as Linux's msgsnd
// copies it before it takes its lock, so that a receiver's copy out of
// the store and this one overlap. The lock is held, and the message fits,
// when it is called; the lock is held when it returns. In between, the
// chain is held by a waiter slot (slotWriting): not sent, and freed by
// repair if this process dies. It reports false, having sent nothing, if
// the message no longer fits when the lock is taken again (the caller
// looks again); with no free waiter slot it is enqueue.
func (q *Queue) enqueueBig(mtype int64, data []byte, w *wakeList) (bool, error) {
	v := q.v
	s := q.freeSlot()
	if s == nil {
		return true, q.enqueue(mtype, data, clock.Now(), w)
	}
	crashPoint(stepSendLocked)
	k := uint32(chainBlocks(uint64(len(data))))
	b, err := v.alloc(k)
	if err != nil {
		return false, err
	}
	h := v.hdr(b)
	h.mtype, h.len, h.next, h.seq = mtype, uint32(len(data)), 0, 0
	s.Arg[argBlock].Store(uint64(b) + 1)
	s.Life.Hold()
	s.State.Store(slotWriting)
	q.unlock(w)
	crashPoint(stepSendAlloc)
	err = v.copyIn(b, data)
	crashPoint(stepSendWritten)
	q.lock(w)
	if s.State.Load() != slotWriting || s.PID.Load() != q.pid || s.Arg[argBlock].Load() != uint64(b)+1 {
		s.Life.Release() // (someone else's now, or nobody's)
		return false, corrupt("waiter slot of a message being written changed")
	}
	w.held = s
	if err == nil && q.seg.Removed() {
		err = kernel.EIDRM
	}
	if err == nil {
		// The ring may have opened meanwhile: its messages were sent
		// before this one, which is sent now.
		err = q.closeRing()
	}
	if err != nil || !v.fits(len(data), q.qbytes()) {
		v.freeHeld(s)
		freeOwn(s)
		return false, err
	}
	c := v.ctl
	q.stampSend()
	seq := c.seq
	c.seq++
	h.seq = seq
	w.big = true
	c.bigLast = 1
	if c.recvWait > 0 {
		done, err := q.pipeline(mtype, data, b+1, seq, clock.Now(), w)
		if err != nil || done {
			if err != nil {
				v.freeHeld(s)
			}
			freeOwn(s)
			return done, err
		}
	}
	if err := v.link(b); err != nil {
		v.freeHeld(s)
		freeOwn(s)
		return false, err
	}
	crashPoint(stepSendLinked)
	freeOwn(s)
	c.qnum++
	c.cbytes += uint64(len(data))
	w.sent = true
	q.changed(w)
	return true, nil
}

// afterRecv notes that a message left; unlock then wakes who may proceed.
func (q *Queue) afterRecv(w *wakeList) {
	w.recvd = true
	q.changed(w)
}

// wakeSenders wakes every sleeping sender whose message now fits (Linux
// ss_wakeup), once: a sender already woken and not yet back is skipped
// (argWoken), so a stream of receives costs one FUTEX_WAKE per sleep, not
// one per message. The lock is held.
func (q *Queue) wakeSenders(w *wakeList) { q.wakeFitting(w, false) }

// rewakeSenders is called by a call about to sleep (lock held): it wakes
// every sleeping sender whose message fits, those marked woken included.
// A sender that sleeps while its message fits is owed a wake-up by a call
// that died after deciding on it (marked woken, or took room through the
// ring, then died before its FUTEX_WAKE); the registry's repair wakes it
// when it sees that death, but when the registry's host was the one that
// died, that waits for the next registry (tens of ms). With this, the
// next call that would sleep on the queue wakes it first. In a queue
// whose callers live, a sender that fits and sleeps is one woken a moment
// ago and not yet back (or about to be woken by a receive through the
// ring): waking it again costs one FUTEX_WAKE and no harm.
func (q *Queue) rewakeSenders(w *wakeList) {
	if q.v.ctl.sendWait > 0 {
		q.wakeFitting(w, true)
	}
}

// wakeFitting wakes the sleeping senders whose message fits: those not
// marked woken, and with again those marked woken too (lock held).
func (q *Queue) wakeFitting(w *wakeList, again bool) {
	qb := q.qbytes()
	for i := range q.v.slots {
		s := &q.v.slots[i]
		if s.State.Load() != slotSend || !again && s.Arg[argWoken].Load() != 0 ||
			!q.v.fits(int(min(s.Arg[argType].Load(), math.MaxInt32)), qb) {
			continue
		}
		if s.Arg[argWoken].Swap(1) == 0 {
			q.v.rc.sendWake.Add(^uint32(0))
		}
		w.add(s)
	}
}

// takeHanded receives the message a sender handed to our slot.
func (q *Queue) takeHanded(s *shm.WaiterSlot, m *Msg) error {
	v := q.v
	b := s.Arg[argBlock].Load()
	if b > uint64(v.nblocks) {
		return corrupt("handed-over block %d", b)
	}
	h, err := v.first(uint32(b))
	if err != nil {
		return err
	}
	n, last, err := v.read(uint32(b), m.Data)
	if err != nil {
		return err
	}
	m.N, m.Type = n, h.mtype
	crashPoint(stepRecvHanded)
	v.freeChain(uint32(b)-1, last)
	return nil
}

// waiter is the sleeping state of one blocking call.
type waiter struct {
	slot     *shm.WaiterSlot // nil: none held
	ovf      bool            // sleeping on the overflow word (no free slot)
	stop     func() bool     // cancels the context's wake-up
	stopAddr *atomic.Uint32
	woke     *atomic.Bool // set when the context's wake-up has run
}

// claim takes a free waiter slot for a blocking call (lock held). With no
// free slot the call sleeps on the overflow word instead.
func (q *Queue) claim(w *waiter, state uint32, typ, mode uint64) {
	c := q.v.ctl
	// A sleeping receiver keeps the ring closed, so that every send goes
	// through the lock and is offered to it (the locked paths have closed
	// and flushed it already; this is for callers that come here
	// directly). A sleeping sender does not: receivers through the ring
	// wake it (sendWake).
	if state == slotRecv && q.v.isOpen() {
		_ = q.closeRing()
	}
	for i := range q.v.slots {
		s := &q.v.slots[i]
		if s.State.Load() != slotFree {
			continue
		}
		s.PID.Store(q.pid)
		s.Start.Store(q.start)
		s.Arg[argTicket].Store(c.ticket)
		c.ticket++
		s.Arg[argType].Store(typ)
		s.Arg[argMode].Store(mode)
		s.Arg[argBlock].Store(0)
		s.Life.Hold() // (released by release)
		s.State.Store(state)
		if state == slotRecv {
			c.recvWait++
		} else {
			c.sendWait++
			q.v.rc.sendWake.Add(1)
		}
		w.slot = s
		return
	}
	// No free slot: sleep on the overflow word. The count is a hint for
	// wakers, added to before every such sleep and zeroed by the waker
	// that wakes them all, so a sleeper that dies leaves nothing behind.
	w.ovf = true
	c.ovfWait.Add(1)
}

// release gives the call's slot back (lock held). A slot holding a handed
// message is never released without taking it.
func (q *Queue) release(w *waiter) {
	c := q.v.ctl
	if s := w.slot; s != nil {
		switch s.State.Load() {
		case slotRecv:
			c.recvWait--
		case slotSend:
			c.sendWait--
			if s.Arg[argWoken].Load() == 0 {
				q.v.rc.sendWake.Add(^uint32(0))
			}
		}
		freeOwn(s)
		w.slot = nil
	}
	w.ovf = false
}

// futex is the word the call sleeps on.
func (q *Queue) futex(w *waiter) *atomic.Uint32 {
	if w.slot != nil {
		return &w.slot.Futex
	}
	return &q.v.ctl.ovfFutex
}

// sleep waits until the call's futex word moves from seen (the lock is
// not held). Overflow sleepers also wake every shm.LivenessInterval,
// since the registry's WakeAll does not reach them.
func (q *Queue) sleep(ctx context.Context, w *waiter, seen uint32) {
	addr := q.futex(w)
	if ctx.Done() != nil && w.stopAddr != addr {
		w.done()
		woke := new(atomic.Bool)
		w.stopAddr, w.woke = addr, woke
		w.stop = context.AfterFunc(ctx, func() {
			addr.Add(1)
			_, _ = kernel.FutexWake(addr, math.MaxInt32)
			woke.Store(true)
		})
	}
	crashPoint(stepSleep)
	var deadline time.Time
	if w.slot == nil {
		deadline = time.Now().Add(shm.LivenessInterval)
	}
	// Bounded by the context's deadline too, not only by the wake-up its
	// expiry sends: a process that can write the segment could otherwise
	// swallow that wake-up (fuzz FINDINGS F14, formerly U3, seen in sem).
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	// A dropped cached handle's segment is retired (forget) as soon as
	// nobody sleeps on it; once it is, its words may read zeros, and the
	// caller's next look finds the queue removed.
	if !q.seg.BeginSleep() {
		q.seg.EndSleep()
		return
	}
	clock.Park()
	_ = kernel.FutexWait(addr, seen, deadline)
	q.seg.EndSleep()
}

// done cancels the context's wake-up; if it has started already, it
// waits for it to finish: the call must not leave (and let Close unmap the
// word the wake-up touches) while it runs.
func (w *waiter) done() {
	if w.stop != nil && !w.stop() {
		for !w.woke.Load() {
			runtime.Gosched()
		}
	}
	w.stop = nil
}

// stopped is checked before a call sleeps, after it read its futex word:
// anything that ends the wait (removal, a permission change for a
// receiver, a death, the context, Close) changes the state before it bumps
// the word, so either the check sees it or the sleep does not start. need
// is the permission the wait needs: permRead for a receiver, 0 for a
// sender, whose wait a permission change does not end (Linux's IPC_SET
// wakes only the senders whose message fits, ss_wakeup, and a sender looks
// at its permission only when it goes round its loop).
func (q *Queue) stopped(ctx context.Context, need uint64) error {
	if q.seg.Removed() {
		return kernel.EIDRM
	}
	if need != 0 && q.access()&need == 0 {
		return kernel.EACCES
	}
	if err := ctxError(ctx); err != nil {
		return err
	}
	if q.closed.Load() {
		return ErrClosed
	}
	return nil
}
