package fuzz

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
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
	keepCrashReports(f)
	f.Fuzz(func(t *testing.T, data []byte) { runMsg(t, data, false) })
}

// FuzzMsgDiff runs the same programs through the contract functions
// (msgq.Send, msgq.Recv, msgq.Stat, msgq.Set, msgq.Get, msgq.Remove) and
// through the kernel's own SysV message queues, and checks every result,
// errno, received text and counter against the kernel, and the model
// against the kernel. A call that would sleep is given IPC_NOWAIT.
func FuzzMsgDiff(f *testing.F) {
	f.Cleanup(drainPools)
	useNobody(f)
	keepCrashReports(f)
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
	var waiters []*msgWaiter
	var nobody nobodyProc
	var wseg *shm.Segment // usysv's segment, to see its receivers queue
	defer func() {
		if wseg != nil {
			_ = wseg.Close()
		}
	}()
	for n := 0; n < maxSteps && p.more(); n++ {
		st := decodeMsgStep(p)
		st.other = other
		st.times = fresh
		if strconv.IntSize == 32 {
			// A C long is 32 bits here: the kernel cannot take a wider
			// type, usysv can. Keep to what both can express.
			st.mtype, st.msgtyp = clampLong(st.mtype), clampLong(st.msgtyp)
		}
		if st.kind == mRemove && !fresh {
			continue // the pooled queue outlives the program
		}
		if st.wait && !(diff && fresh && !impls[0].(*msgKernel).removed && !st.badID && len(waiters) < maxWaiters) {
			st.wait = false // an ordinary receive
		}
		if st.nobody && (!diff || st.wait) {
			st.nobody = false // the model target has no kernel to run it on; receivers are this process's
		}
		if st.wait {
			st.flags &^= msgq.IPC_NOWAIT | msgq.MSG_COPY
			tr.add("%s", st)
			if wseg == nil {
				wseg = mapQueue(t, u.id)
			}
			w := spawnMsgWaiter(t, st, impls[0].(*msgKernel), u, wseg)
			var mres string
			w.model, mres = model.spawnRecv(st)
			tr.add("    -> %s", w.started[0])
			if w.started[0] != w.started[1] || w.started[0] != mres {
				t.Fatalf("%s: kernel says %q, usysv says %q, model says %q\nprogram (fresh %t):\n%s",
					st, w.started[0], w.started[1], mres, fresh, &tr)
			}
			waiters = append(waiters, w)
			continue
		}
		if st.kind == mSet && len(model.recvs) > 0 {
			// IPC_SET makes Linux's blocked receivers search again
			// (expunge_all), which reorders them: not deterministic.
			continue
		}
		if st.kind == mSet && sysResource && !st.nobody && st.qbytes > msgq.MSGMNB {
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
		if st.nobody {
			res[0], res[1] = nobody.msg(t, st, impls[0].(*msgKernel), u, model)
			res[2] = model.step(st)
		} else {
			for i, im := range impls {
				res[i] = im.step(st)
			}
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
	if len(waiters) > 0 {
		finishMsgWaiters(t, &tr, waiters, impls[0].(*msgKernel), u, model)
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
		ds.Lrpid = threadToProcess(ds.Lrpid)
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
	id       int
	h        *msgq.Queue
	key      int
	removed  bool
	pooled   *pooledQueue
	keepOpen bool // a receiver may still be blocked: never close h
}

func (u *msgUsysv) name() string { return "usysv" }

func (u *msgUsysv) step(st *msgStep) string {
	w := watch(callTimeout, func() {
		if c, err := registry.Default(); err == nil {
			_ = c.Remove(shm.KindMsg, u.id)
		}
	})
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

// msgqRemove removes a queue through the contract function, which also
// drops the handle the contract functions cached for it.
func msgqRemove(id int) error { return msgq.Remove(id) }

// newFreshQueue creates a queue with key for one program, used through a
// handle (handle) or the contract functions; it is removed when the
// program ends.
func newFreshQueue(t *testing.T, key int, mode uint32, handle bool) *msgUsysv {
	id, err := msgq.Get(key, msgq.IPC_CREAT|msgq.IPC_EXCL|int(mode))
	if err != nil {
		setupFailed(t, "msgq.Get", err)
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
			if err := msgqRemove(id); err != nil {
				t.Errorf("removing queue %d: %v", id, err)
			}
		}
		if u.h != nil && !u.keepOpen {
			_ = u.h.Close()
		}
	})
	return u
}

// A pooled queue (see pooledSem): reset before each program by draining
// it, IPC_SET back to 0/0/0600 and qbytes MSGMNB, and one message sent and
// received (so that lspid and lrpid are this process).
type pooledQueue struct {
	id    int
	h     *msgq.Queue
	dirty bool
	dead  bool
}

func (pq *pooledQueue) close() {
	_ = pq.h.Close()
}

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
			setupFailed(t, "msgq.Get", err)
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

// Blocked receivers (FuzzMsgDiff, fresh queues only): a msgrcv without
// IPC_NOWAIT in a goroutine of its own, on the kernel and on usysv, left
// blocked. The next step starts only once it is queued: on the kernel, its
// thread sleeps inside msgrcv (/proc/self/task/<tid>/syscall and stat); on
// usysv, one more waiter slot holds a receiver. A message sent later is
// handed to the first matching receiver inside the send (Linux's
// pipelined_send; usysv's FIFO hand-over), so the state after each step is
// deterministic; the receivers' results are compared with each other and
// with the model's at the end, after the queue is removed (EIDRM for those
// still waiting).
type msgWaiter struct {
	st      *msgStep
	started [2]string
	done    [2]chan string
	model   *modelRecv
}

// sysMsgrcv is msgrcv's system call number, as /proc/<tid>/syscall shows
// it ("" where unknown: then any sleeping system call will do).
var sysMsgrcv = map[string]string{"amd64": "70", "386": "401", "arm64": "188"}[runtime.GOARCH]

func spawnMsgWaiter(t *testing.T, st *msgStep, k *msgKernel, u *msgUsysv, seg *shm.Segment) *msgWaiter {
	w := &msgWaiter{st: st, done: [2]chan string{make(chan string, 1), make(chan string, 1)}}
	u.keepOpen = true
	recv := func(rcv func(buf []byte) (int, int64, error)) string {
		buf := recvBuf(st.bufsize)
		n, typ, err := rcv(buf)
		if err != nil {
			return errno(err)
		}
		return recvString(n, typ, buf[:n], tailOK(buf, n))
	}

	// The kernel: find the receiving thread, then watch it fall asleep in
	// msgrcv.
	tids := make(chan string, 1)
	go func() {
		runtime.LockOSThread() // the thread exits with the goroutine
		tids <- threadSelf()
		w.done[0] <- recv(func(buf []byte) (int, int64, error) { return kernel.Msgrcv(k.id, buf, st.msgtyp, st.flags) })
	}()
	task := <-tids
	receiverThreads.Store(task, true)
	w.started[0] = waitQueued(w.done[0], func() bool { return sleepsIn(task, sysMsgrcv) })

	before := receivers(seg)
	go func() {
		w.done[1] <- recv(func(buf []byte) (int, int64, error) { return msgq.Recv(u.id, buf, st.msgtyp, st.flags) })
	}()
	w.started[1] = waitQueued(w.done[1], func() bool { return receivers(seg) == before+1 })
	return w
}

// waitQueued polls queued until it holds ("queued") or the call returns
// (its result), for at most callTimeout.
func waitQueued(done chan string, queued func() bool) string {
	deadline := time.Now().Add(callTimeout)
	for {
		select {
		case r := <-done:
			done <- r
			return r
		default:
		}
		if queued() {
			return "queued"
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("neither returned nor queued after %v", callTimeout)
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// threadSelf is "/proc/self/task/<tid>" of the calling thread.
func threadSelf() string {
	l, err := os.Readlink("/proc/thread-self")
	if err != nil {
		return ""
	}
	return "/proc/self/task/" + filepath.Base(l)
}

// sleepsIn reports whether the thread at task sleeps inside system call nr.
func sleepsIn(task, nr string) bool {
	sc, err := os.ReadFile(task + "/syscall")
	if err != nil || !strings.HasPrefix(string(sc), nr) || nr != "" && !strings.HasPrefix(string(sc), nr+" ") {
		return false
	}
	st, err := os.ReadFile(task + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	i := strings.LastIndexByte(string(st), ')')
	return i >= 0 && strings.HasPrefix(string(st[i+1:]), " S")
}

// receivers counts usysv's waiter slots that hold a blocked receiver
// (slotRecv in msgq/layout.go).
func receivers(seg *shm.Segment) int {
	n := 0
	for i := range seg.Waiters() {
		if seg.Waiters()[i].State.Load() == 1 {
			n++
		}
	}
	return n
}

func mapQueue(t *testing.T, id int) *shm.Segment {
	c, err := registry.Default()
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	seg, err := shm.Map(id, shm.KindMsg, c.Namespace())
	if err != nil {
		t.Fatalf("shm.Map: %v", err)
	}
	return seg
}

// finishMsgWaiters removes the queue (if the program did not) and compares
// every receiver's result with the kernel's and the model's.
func finishMsgWaiters(t *testing.T, tr *trace, ws []*msgWaiter, k *msgKernel, u *msgUsysv, m *msgModel) {
	if !k.removed {
		st := &msgStep{kind: mRemove}
		tr.add("IPC_RMID (end of program)")
		rk, ru, rm := k.step(st), u.step(st), m.step(st)
		tr.add("    -> %s", rk)
		if rk != ru || rk != rm {
			t.Fatalf("IPC_RMID: kernel says %q, usysv says %q, model says %q\nprogram:\n%s", rk, ru, rm, tr)
		}
	}
	for i, w := range ws {
		var res [2]string
		for j := range res {
			select {
			case res[j] = <-w.done[j]:
			case <-time.After(callTimeout):
				res[j] = "still blocked after IPC_RMID (stacks: " + dumpStacks(t, "blocked-receiver") + ")"
			}
		}
		tr.add("receiver %d %s -> %s", i, w.st, res[0])
		if res[0] != res[1] || res[0] != w.model.result {
			t.Fatalf("receiver %d %s: kernel says %q, usysv says %q, model says %q\nprogram:\n%s",
				i, w.st, res[0], res[1], w.model.result, tr)
		}
	}
	u.keepOpen = false
}

// threadToProcess maps a thread id of this process to its pid. Linux
// records, as msg_lrpid, the receiving *thread's* id when msgsnd hands a
// message to a blocked receiver (pipelined_send uses task_pid of the
// receiver, where a plain msgrcv uses task_tgid), so the kernel's lrpid can
// be any thread of this process; usysv records the process id.
func threadToProcess(pid int) int {
	if pid == os.Getpid() || pid <= 0 {
		return pid
	}
	if _, ok := receiverThreads.Load(fmt.Sprintf("/proc/self/task/%d", pid)); ok {
		return os.Getpid()
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", pid)); err == nil {
		return os.Getpid()
	}
	return pid
}

// receiverThreads holds the threads (as /proc/self/task/<tid>) that ran a
// blocked kernel msgrcv: they exit with their goroutine.
var receiverThreads sync.Map

func clampLong(v int64) int64 { return max(min(v, math.MaxInt32), math.MinInt32) }
