package fuzz

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/msgq"
	"github.com/usysv/usysv/registry"
	"github.com/usysv/usysv/shm"
)

// FuzzMsgModel runs a random program of queue calls (see decodeMsgStep) on
// a usysv queue through its handle (*msgq.Queue: Send/Recv with a context,
// TrySend, TryRecv, Stat, Set, Remove) and on msgModel, and compares every
// result, errno, received text and counter; after every step that can
// change the queue it compares the counters (IPC_STAT) and the messages
// themselves (read with MSG_COPY), and runs Queue.Check. A call that would
// sleep is issued with a context that expires after 200µs: usysv must
// queue it in a waiter slot, give up with EINTR and change nothing.
func FuzzMsgModel(f *testing.F) {
	f.Cleanup(drainPools)
	f.Cleanup(removeEmptyCrashFile)
	f.Fuzz(func(t *testing.T, data []byte) { runMsg(t, data, false) })
}

// FuzzMsgDiff runs the same programs through the contract functions
// (msgq.Send, msgq.Recv, msgq.Stat, msgq.Set, msgq.Get, msgq.Remove) and
// through the kernel's own SysV message queues, and checks every result,
// errno, received text and counter against the kernel, and the model
// against the kernel. A call that would sleep is given IPC_NOWAIT.
func FuzzMsgDiff(f *testing.F) {
	f.Cleanup(drainPools)
	f.Cleanup(removeEmptyCrashFile)
	f.Fuzz(func(t *testing.T, data []byte) { runMsg(t, data, true) })
}

type msgImpl interface {
	name() string
	step(st *msgStep) string
}

func runMsg(t *testing.T, data []byte, diff bool) {
	requireRoot(t)
	defer guard(t, corpusEntry(data))()
	p := &prog{b: data}
	h := p.u8()
	fresh := h&1 != 0
	mode := semModes[h>>1&7]
	self := os.Getpid()

	var u *msgUsysv
	key := 0
	if fresh {
		key = testutil.Key(t)
		u = newFreshQueue(t, key, mode, !diff)
	} else {
		mode = 0o600
		u = pooledMsg(t, !diff)
	}
	model := newMsgModel(key, mode, self, fresh)
	impls := []msgImpl{model, u}
	if diff {
		impls = []msgImpl{newKernelQueue(t, key, mode, fresh), u, model}
	}
	other := testutil.Key(t)
	sysResource := registry.Self().SysResource

	var tr trace
	for n := 0; n < maxSteps && p.more(); n++ {
		st := decodeMsgStep(p)
		st.other = other
		st.times = fresh
		if st.kind == mRemove && !fresh {
			continue // the pooled queue outlives the program
		}
		if st.qbytes >= 1<<32 {
			// Linux keeps the low 32 bits of msg_qbytes; usysv says EPERM.
			// FINDINGS.md F2.
			st.qbytes = uint64(uint32(st.qbytes))
		}
		if st.kind == mSet && sysResource && st.qbytes > msgq.MSGMNB {
			st.qbytes = msgq.MSGMNB // Linux would allow it, usysv's capacity would not (doc.go)
		}
		if st.flags&msgq.IPC_NOWAIT == 0 && model.sleeps(st) {
			if diff {
				st.flags |= msgq.IPC_NOWAIT
			} else {
				st.ctx = true
			}
		}
		tr.add("%s", st)
		res := make([]string, len(impls))
		for i, im := range impls {
			res[i] = im.step(st)
		}
		tr.add("    -> %s", res[0])
		for i := 1; i < len(res); i++ {
			if res[i] != res[0] {
				t.Fatalf("%s: %s says %q, %s says %q\nprogram (fresh %t):\n%s",
					st, impls[0].name(), res[0], impls[i].name(), res[i], fresh, &tr)
			}
		}
		if !diff && st.kind != mStat && st.kind != mGet {
			checkMsgState(t, &tr, model, u, len(model.msgs))
		}
	}
	if testing.Verbose() && os.Getenv("USYSV_FUZZ_TRACE") == "1" {
		t.Logf("program:\n%s", &tr)
	}
	var qnum int
	if m, ok := impls[len(impls)-1].(*msgModel); ok {
		qnum = len(m.msgs)
	}
	checkMsgState(t, &tr, impls[0], impls[1], qnum)
	if diff {
		checkMsgState(t, &tr, impls[0], impls[2], qnum)
	}
}

// checkMsgState compares IPC_STAT and the queued messages (the first 16
// and the last, read with MSG_COPY), and runs Queue.Check on usysv.
func checkMsgState(t *testing.T, tr *trace, a, b msgImpl, qnum int) {
	t.Helper()
	steps := []*msgStep{{kind: mStat}}
	for i := 0; i < qnum && i < 16; i++ {
		steps = append(steps, &msgStep{kind: mRecv, bufsize: msgq.MSGMAX, msgtyp: int64(i), flags: msgq.MSG_COPY | msgq.IPC_NOWAIT})
	}
	steps = append(steps, &msgStep{kind: mRecv, bufsize: msgq.MSGMAX, msgtyp: int64(qnum - 1), flags: msgq.MSG_COPY | msgq.IPC_NOWAIT},
		&msgStep{kind: mRecv, bufsize: msgq.MSGMAX, msgtyp: int64(qnum), flags: msgq.MSG_COPY | msgq.IPC_NOWAIT})
	for _, st := range steps {
		ra, rb := a.step(st), b.step(st)
		if ra != rb {
			t.Fatalf("state check %s: %s says %q, %s says %q\nprogram:\n%s", st, a.name(), ra, b.name(), rb, tr)
		}
	}
	for _, im := range []msgImpl{a, b} {
		if u, ok := im.(*msgUsysv); ok && u.h != nil && !u.removed {
			if err := u.h.Check(); err != nil {
				t.Fatalf("Queue.Check: %v\nprogram:\n%s", err, tr)
			}
		}
	}
}

// msgKernel runs steps on a kernel SysV message queue.
type msgKernel struct {
	id      int
	key     int
	removed bool
}

func newKernelQueue(t *testing.T, key int, mode uint32, fresh bool) *msgKernel {
	flags := int(mode)
	if fresh {
		flags |= kernel.IPC_CREAT | kernel.IPC_EXCL
	}
	id, err := kernel.Msgget(key, flags)
	if err != nil {
		t.Fatalf("kernel msgget: %v", err)
	}
	testutil.Track(t, "msg", id)
	if !fresh { // the state pooled usysv queues are reset to
		if err := kernel.Msgsnd(id, 1, nil, kernel.IPC_NOWAIT); err != nil {
			t.Fatalf("kernel msgsnd: %v", err)
		}
		if _, _, err := kernel.Msgrcv(id, nil, 0, kernel.IPC_NOWAIT); err != nil {
			t.Fatalf("kernel msgrcv: %v", err)
		}
	}
	return &msgKernel{id: id, key: key}
}

func (k *msgKernel) name() string { return "kernel" }

func (k *msgKernel) step(st *msgStep) string {
	id := k.id
	if st.badID {
		id = -1
	}
	w := watch(callTimeout, func() { _ = kernel.MsgctlRemove(k.id) })
	res := k.do(st, id)
	if w.stop() {
		return "HUNG (watchdog removed the queue): " + res
	}
	return res
}

func (k *msgKernel) do(st *msgStep, id int) string {
	switch st.kind {
	case mSend:
		return errno(kernel.Msgsnd(id, st.mtype, st.text(), st.flags))
	case mRecv:
		buf := recvBuf(st.bufsize)
		n, t, err := kernel.Msgrcv(id, buf, st.msgtyp, st.flags)
		if err != nil {
			return errno(err)
		}
		return recvString(n, t, buf[:n], tailOK(buf, n))
	case mStat:
		ds, err := kernel.MsgctlStat(id)
		if err != nil {
			return errno(err)
		}
		return msgStatString(ds, ds.Stime != 0, ds.Rtime != 0, st.times)
	case mSet:
		return errno(kernel.MsgctlSet(id, msgDS(st)))
	case mGet:
		nid, err := kernel.Msgget(st.getKey(k.key), st.flags)
		if err != nil {
			return errno(err)
		}
		if nid == k.id && !k.removed {
			return "ok same"
		}
		if err := kernel.MsgctlRemove(nid); err != nil {
			return "kernel: removing the queue msgget made: " + errno(err)
		}
		return "ok new"
	case mRemove:
		err := kernel.MsgctlRemove(id)
		if err == nil {
			k.removed = true
		}
		return errno(err)
	}
	return "kernel: unknown step"
}

// recvBuf is a receive buffer of n bytes, filled with a marker so that a
// write past the text shows.
func recvBuf(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 0xA5
	}
	return b
}

func tailOK(b []byte, n int) bool {
	if n < 0 || n > len(b) {
		return false
	}
	for _, c := range b[n:] {
		if c != 0xA5 {
			return false
		}
	}
	return true
}

func msgDS(st *msgStep) msgq.DS {
	return msgq.DS{Perm: registry.Perm{UID: st.uid, GID: st.gid, Mode: st.mode}, Qbytes: st.qbytes}
}

// msgUsysv runs steps on a usysv queue: through the handle h when there is
// one, else (and for id -1, and for "alt" steps after IPC_RMID) through
// the contract functions.
type msgUsysv struct {
	id      int
	h       *msgq.Queue
	key     int
	removed bool
	pooled  *pooledQueue
}

func (u *msgUsysv) name() string { return "usysv" }

func (u *msgUsysv) step(st *msgStep) string {
	w := watch(callTimeout, func() { _ = msgqRemove(u.id) })
	res := u.do(st)
	if w.stop() {
		if u.pooled != nil {
			u.pooled.dead = true
		}
		return "HUNG (watchdog removed the queue): " + res
	}
	return res
}

func (u *msgUsysv) do(st *msgStep) string {
	if st.kind == mGet {
		return u.get(st)
	}
	if st.kind == mSet && u.pooled != nil && !st.badID {
		u.pooled.dirty = true
	}
	if u.h == nil || st.badID || (u.removed && st.alt) {
		return u.pkg(st)
	}
	q := u.h
	ctx, cancel := context.Background(), func() {}
	if st.ctx {
		ctx, cancel = context.WithTimeout(ctx, 200*time.Microsecond)
	}
	defer cancel()
	switch st.kind {
	case mSend:
		var err error
		if st.flags&msgq.IPC_NOWAIT != 0 {
			err = q.TrySend(st.mtype, st.text())
		} else {
			err = q.Send(ctx, st.mtype, st.text())
		}
		return ctxErrno(err)
	case mRecv:
		buf := recvBuf(st.bufsize)
		var n int
		var t int64
		var err error
		if st.flags&msgq.IPC_NOWAIT != 0 {
			n, t, err = q.TryRecv(buf, st.msgtyp, st.flags)
		} else {
			n, t, err = q.Recv(ctx, buf, st.msgtyp, st.flags)
		}
		if err != nil {
			return ctxErrno(err)
		}
		return recvString(n, t, buf[:n], tailOK(buf, n))
	case mStat:
		ds, err := q.Stat()
		if err != nil {
			return errno(err)
		}
		return msgStatString(ds, ds.Stime != 0, ds.Rtime != 0, st.times)
	case mSet:
		return errno(q.Set(msgDS(st)))
	case mRemove:
		err := q.Remove()
		if err == nil {
			u.removed = true
		}
		return errno(err)
	}
	return "usysv: unknown step"
}

// ctxErrno is errno, checking that an EINTR from an expired context also
// matches the context's error, as documented.
func ctxErrno(err error) string {
	if errors.Is(err, kernel.EINTR) && !errors.Is(err, context.DeadlineExceeded) {
		return "EINTR not matching ctx.Err(): " + err.Error()
	}
	return errno(err)
}

func (u *msgUsysv) pkg(st *msgStep) string {
	id := u.id
	if st.badID {
		id = -1
	}
	switch st.kind {
	case mSend:
		return errno(msgq.Send(id, st.mtype, st.text(), st.flags))
	case mRecv:
		buf := recvBuf(st.bufsize)
		n, t, err := msgq.Recv(id, buf, st.msgtyp, st.flags)
		if err != nil {
			return errno(err)
		}
		return recvString(n, t, buf[:n], tailOK(buf, n))
	case mStat:
		ds, err := msgq.Stat(id)
		if err != nil {
			return errno(err)
		}
		return msgStatString(ds, ds.Stime != 0, ds.Rtime != 0, st.times)
	case mSet:
		return errno(msgq.Set(id, msgDS(st)))
	case mRemove:
		err := msgq.Remove(id)
		if err == nil && !st.badID {
			u.removed = true
		}
		return errno(err)
	}
	return "usysv: unknown step"
}

func (u *msgUsysv) get(st *msgStep) string {
	nid, err := msgq.Get(st.getKey(u.key), st.flags)
	if err != nil {
		return errno(err)
	}
	if nid == u.id && !u.removed {
		return "ok same"
	}
	if err := msgqRemove(nid); err != nil {
		return "usysv: removing the queue msgget made: " + errno(err)
	}
	return "ok new"
}

func msgqRemove(id int) error {
	c, err := registry.Default()
	if err != nil {
		return err
	}
	return c.Remove(shm.KindMsg, id)
}

// newFreshQueue creates a queue with key for one program, used through a
// handle (handle) or the contract functions; it is removed when the
// program ends.
func newFreshQueue(t *testing.T, key int, mode uint32, handle bool) *msgUsysv {
	id, err := msgq.Get(key, msgq.IPC_CREAT|msgq.IPC_EXCL|int(mode))
	if err != nil {
		t.Fatalf("msgq.Get: %v", err)
	}
	u := &msgUsysv{id: id, key: key}
	if handle {
		if u.h, err = msgq.OpenID(id); err != nil {
			_ = msgqRemove(id)
			t.Fatalf("msgq.OpenID: %v", err)
		}
	}
	t.Cleanup(func() {
		if !u.removed {
			// msgq.Remove also drops the contract functions' cached handle;
			// the registry's Remove would leave it mapped (FINDINGS.md F3).
			if err := msgq.Remove(id); err != nil {
				t.Errorf("removing queue %d: %v", id, err)
			}
		}
		if u.h != nil {
			_ = u.h.Close()
		} else if freshPkgQueues.Add(1)%16 == 0 {
			// The contract functions keep a removed queue mapped until the
			// garbage collector runs their handle's cleanup, and a mapped
			// segment keeps its kernel id: without this, a few thousand
			// programs exhaust SHMMNI for the whole host (FINDINGS.md F3).
			runtime.GC()
		}
	})
	return u
}

var freshPkgQueues atomic.Uint64

// A pooled queue (see pooledSem): reset before each program by draining
// it, IPC_SET back to 0/0/0600 and qbytes MSGMNB, and one message sent and
// received (so that lspid and lrpid are this process).
type pooledQueue struct {
	id    int
	h     *msgq.Queue
	dirty bool
	dead  bool
}

func (pq *pooledQueue) close() { _ = pq.h.Close() }

func pooledMsg(t *testing.T, handle bool) *msgUsysv {
	pools.Lock()
	defer pools.Unlock()
	if pools.msgs == nil {
		pools.msgs = make(map[int]*pooledQueue)
	}
	pq := pools.msgs[0]
	if pq != nil && !pq.dead {
		if err := resetPooledQueue(pq); err != nil {
			t.Logf("pooled queue %d: reset: %v; making another", pq.id, err)
			pq.dead = true
		}
	}
	if pq == nil || pq.dead {
		if pq != nil {
			_ = msgqRemove(pq.id)
			pq.close()
		}
		id, err := msgq.Get(msgq.IPC_PRIVATE, 0o600)
		if err != nil {
			t.Fatalf("msgq.Get: %v", err)
		}
		h, err := msgq.OpenID(id)
		if err != nil {
			_ = msgqRemove(id)
			t.Fatalf("msgq.OpenID: %v", err)
		}
		pq = &pooledQueue{id: id, h: h}
		pools.msgs[0] = pq
		if err := resetPooledQueue(pq); err != nil {
			t.Fatalf("pooled queue: %v", err)
		}
	}
	u := &msgUsysv{id: pq.id, pooled: pq}
	if handle {
		u.h = pq.h
	}
	return u
}

func resetPooledQueue(pq *pooledQueue) error {
	if pq.dirty {
		if err := msgq.Set(pq.id, msgq.DS{Perm: registry.Perm{Mode: 0o600}, Qbytes: msgq.MSGMNB}); err != nil {
			return err
		}
		pq.dirty = false
	}
	for {
		_, _, err := msgq.Recv(pq.id, nil, 0, msgq.IPC_NOWAIT|msgq.MSG_NOERROR)
		if errors.Is(err, kernel.ENOMSG) {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := msgq.Send(pq.id, 1, nil, msgq.IPC_NOWAIT); err != nil {
		return err
	}
	_, _, err := msgq.Recv(pq.id, nil, 0, msgq.IPC_NOWAIT)
	return err
}
