package msgq

import (
	"context"
	"errors"
	"sync"

	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/registry"
	"github.com/usysv/usysv/shm"
)

// DS is struct msqid_ds (contract: DESIGN.md §4).
type DS = kernel.MsqidDS

// Flags and limits, with Linux's values.
const (
	IPC_PRIVATE = kernel.IPC_PRIVATE
	IPC_CREAT   = kernel.IPC_CREAT
	IPC_EXCL    = kernel.IPC_EXCL
	IPC_NOWAIT  = kernel.IPC_NOWAIT

	IPC_RMID = kernel.IPC_RMID
	IPC_SET  = kernel.IPC_SET
	IPC_STAT = kernel.IPC_STAT

	MSG_NOERROR = kernel.MSG_NOERROR
	MSG_EXCEPT  = kernel.MSG_EXCEPT
	MSG_COPY    = kernel.MSG_COPY

	// MSGMAX is the default largest message text; MSGMNB the default (and,
	// without CAP_SYS_RESOURCE, the largest) qbytes; MSGMNI the most
	// queues a registry holds by default.
	MSGMAX = kernel.MSGMAX
	MSGMNB = kernel.MSGMNB
	MSGMNI = kernel.MSGMNI
)

func init() { registry.RegisterRepair(shm.KindMsg, repairSegment) }

// repairSegment is the eager repair the registry runs after a client
// died. It never waits for a live lock holder (that one, or the next
// operation, repairs lazily).
func repairSegment(seg *shm.Segment) {
	v, err := newView(seg)
	if err != nil {
		return
	}
	mu := seg.Lock()
	var full bool
	switch {
	case mu.TryLock():
	case mu.RecoverIfDead():
		full = true
	default:
		return
	}
	wl := wakeList{section: mu.Enter()}
	defer v.guard(mu, &wl, nil) // (the registry's host recovers a panic of its hooks and goes on)
	v.repair(full)
	v.maybeOpen()
	mu.Unlock()
}

// Stat is IPC_STAT: the queue's permissions and counters. It needs read
// permission (EACCES).
func (q *Queue) Stat() (DS, error) {
	if err := q.enter(); err != nil {
		return DS{}, err
	}
	defer q.leave()
	c, err := registry.Default()
	if err != nil {
		return DS{}, err
	}
	o, err := c.Stat(shm.KindMsg, q.id)
	if err != nil {
		return DS{}, err
	}
	var wl wakeList
	defer q.v.guard(q.mu, &wl, nil)
	q.lock(&wl)
	rc := q.v.rc
	qnum, cbytes := q.v.counts()
	ds := DS{Perm: o.Perm, Stime: rc.stime.Load(), Rtime: rc.rtime.Load(), Ctime: o.Ctime,
		Cbytes: cbytes, Qnum: qnum, Qbytes: o.Param, Lspid: int(rc.lspid.Load()), Lrpid: int(rc.lrpid.Load())}
	q.unlock(&wl)
	return ds, nil
}

// Set is IPC_SET: it copies ds.Perm.UID, ds.Perm.GID, ds.Perm.Mode&0777 and
// ds.Qbytes (above MSGMNB needs CAP_SYS_RESOURCE: EPERM; above the queue's
// Capacity: EINVAL). Only the owner or creator may (EPERM). Blocked
// receivers that lose read permission fail with EACCES; blocked senders
// re-check for space, and sleep on while their message does not fit,
// whatever the new permissions (they look at them once it fits, as
// Linux's do).
func (q *Queue) Set(ds DS) error {
	if err := q.enter(); err != nil {
		return err
	}
	defer q.leave()
	c, err := registry.Default()
	if err != nil {
		return err
	}
	return c.Set(shm.KindMsg, q.id, ds.Perm.UID, ds.Perm.GID, ds.Perm.Mode, ds.Qbytes)
}

// Remove is IPC_RMID: the queue and its messages are destroyed; blocked
// callers (in every process) fail with EIDRM, later calls with EINVAL. Only
// the owner or creator may (EPERM). The handle stays open until Close.
func (q *Queue) Remove() error {
	if err := q.enter(); err != nil {
		return err
	}
	defer q.leave()
	c, err := registry.Default()
	if err != nil {
		return err
	}
	return c.Remove(shm.KindMsg, q.id)
}

// Check walks every invariant of the queue's shared state (see doc.go)
// under its lock and reports the first one broken, as ErrCorrupt. It
// closes the ring for the walk and opens it again after. Tests and tools
// call it; operations never need it.
func (q *Queue) Check() error {
	if err := q.enter(); err != nil {
		return err
	}
	defer q.leave()
	var wl wakeList
	defer q.v.guard(q.mu, &wl, nil)
	q.lock(&wl)
	// Closed, the ring holds still: senders that claimed the tail's slot
	// can only give it back.
	q.v.setClosed()
	q.v.settleTail()
	err := q.v.check()
	q.unlock(&wl)
	return err
}

// The package-level functions are the SysV calls over a cache of handles,
// one per id, opened on first use and dropped when the queue is found
// removed.
var handles sync.Map // int → *Queue

func handle(id int) (*Queue, error) {
	if id < 0 {
		return nil, kernel.EINVAL
	}
	if v, ok := handles.Load(id); ok {
		return v.(*Queue), nil
	}
	sweep()
	q, err := OpenID(id)
	if err != nil {
		return nil, err
	}
	if v, loaded := handles.LoadOrStore(id, q); loaded {
		_ = q.Close()
		return v.(*Queue), nil
	}
	return q, nil
}

// forget drops a cached handle whose queue is gone, and retires its
// segment (detached, so that the kernel frees it; its addresses left
// readable as zeros, so that a goroutine still inside a call on the shared
// handle sees a removed queue instead of faulting; shm.Segment.Retire
// waits for the goroutines asleep on it). Holding it would let a process
// that creates and removes many queues exhaust the host's SHMMNI
// (fuzz/FINDINGS.md F3; F8 for a delay).
func forget(q *Queue) {
	if handles.CompareAndDelete(q.id, q) {
		_ = q.seg.Retire()
	}
}

// sweep forgets the cached handles of every queue removed since, by
// anyone: one removed by another process is otherwise found only by a call
// with its id. It runs whenever a queue is opened for the cache, so a
// process keeps mapped at most the removed queues it touched since it last
// opened another.
func sweep() {
	handles.Range(func(_, v any) bool {
		if q := v.(*Queue); q.seg.Removed() {
			forget(q)
		}
		return true
	})
}

// settle drops a cached handle whose queue is gone, so that the next call
// with its id gets the kernel's answer.
func settle(q *Queue, err error) error {
	if err != nil && (errors.Is(err, kernel.EINVAL) || errors.Is(err, kernel.EIDRM)) && q.seg.Removed() {
		forget(q)
	}
	return err
}

// Package-level Send, Recv and Stat pin the cached handle's segment (shm
// Segment.Pin) while they run: it is not retired (its words turned to
// zeros) under them, so that a Remove or a sweep by another goroutine of
// this process does not make one read a message torn, a waiter slot
// changed, a ring emptied or a queue size of 0; it is retired once the
// call ends. A handle retired before the call began is the id of a
// removed queue: EINVAL.

// Get is msgget(2): the id of the queue for key, created with IPC_CREAT
// (IPC_PRIVATE always creates) with mode flags&0777, qbytes MSGMNB.
func Get(key, flags int) (int, error) { return getConfig(key, flags, Config{}) }

// Send is msgsnd(2). flags: IPC_NOWAIT.
func Send(id int, mtype int64, text []byte, flags int) error {
	if mtype < 1 || len(text) > maxMsgLimit {
		return kernel.EINVAL
	}
	q, err := handle(id)
	if err != nil {
		if len(text) > MSGMAX {
			return kernel.EINVAL // Linux checks the size before the id
		}
		return err
	}
	if !q.seg.Pin() {
		return kernel.EINVAL
	}
	defer q.seg.Unpin()
	if flags&IPC_NOWAIT != 0 {
		err = q.TrySend(mtype, text)
	} else {
		err = q.Send(context.Background(), mtype, text)
	}
	return settle(q, err)
}

// Recv is msgrcv(2): it receives into text and returns the text's length
// and the message's type. flags: IPC_NOWAIT, MSG_NOERROR, MSG_EXCEPT,
// MSG_COPY.
func Recv(id int, text []byte, mtype int64, flags int) (int, int64, error) {
	if err := checkRecvFlags(flags); err != nil {
		return 0, 0, err
	}
	q, err := handle(id)
	if err != nil {
		return 0, 0, err
	}
	if !q.seg.Pin() {
		return 0, 0, kernel.EINVAL
	}
	defer q.seg.Unpin()
	n, t, err := q.Recv(context.Background(), text, mtype, flags)
	return n, t, settle(q, err)
}

// Stat is msgctl(IPC_STAT). The registry decides (EINVAL, EACCES) before
// the queue is mapped for its counters.
func Stat(id int) (DS, error) {
	c, err := registry.Default()
	if err != nil {
		return DS{}, err
	}
	if _, err := c.Stat(shm.KindMsg, id); err != nil {
		return DS{}, err
	}
	q, err := handle(id)
	if err != nil {
		return DS{}, err
	}
	if !q.seg.Pin() {
		return DS{}, kernel.EINVAL
	}
	defer q.seg.Unpin()
	ds, err := q.Stat()
	return ds, settle(q, err)
}

// Set is msgctl(IPC_SET): UID, GID, Mode&0777 and Qbytes. It needs no
// mapping: only the owner or creator may (EPERM), whatever the mode.
func Set(id int, ds DS) error {
	c, err := registry.Default()
	if err != nil {
		return err
	}
	return c.Set(shm.KindMsg, id, ds.Perm.UID, ds.Perm.GID, ds.Perm.Mode, ds.Qbytes)
}

// Remove is msgctl(IPC_RMID). It needs no mapping (see Set).
func Remove(id int) error {
	c, err := registry.Default()
	if err != nil {
		return err
	}
	err = c.Remove(shm.KindMsg, id)
	if err == nil {
		if v, ok := handles.Load(id); ok {
			forget(v.(*Queue))
		}
	}
	return err
}
