package fuzz

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/msgq"
	"github.com/usysv/usysv/sem"
)

// Steps as nobody (FuzzSemDiff, FuzzMsgDiff): a helper process running as
// testutil.Nobody, started at a program's first such step, runs the step
// on the kernel object and through the contract functions on the usysv
// one, so that permission checks (EACCES by mode class, EPERM for IPC_SET
// and IPC_RMID by a non-owner, EPERM for qbytes above MSGMNB without
// CAP_SYS_RESOURCE) and another process's pids are compared too. The
// helper reads one step a line (semStepLine, msgStepLine) and answers the
// kernel's and usysv's results, tab-separated.
const nobodyHelper = "fuzz-nobody"

func init() { testutil.RegisterHelper(nobodyHelper, runNobodyHelper) }

func runNobodyHelper([]string) int {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var kr, ur string
		var err error
		switch {
		case strings.HasPrefix(line, "sem "):
			kr, ur, err = nobodySem(line[4:])
		case strings.HasPrefix(line, "msg "):
			kr, ur, err = nobodyMsg(line[4:])
		default:
			err = fmt.Errorf("unknown step")
		}
		if err != nil {
			fmt.Printf("bad step %q: %v\n", line, err)
			return 1
		}
		fmt.Printf("%s\t%s\n", kr, ur)
	}
	return 0
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// msgStepLine is a queue step and the ids it runs on, as one line.
func msgStepLine(st *msgStep, k *msgKernel, u *msgUsysv) string {
	return fmt.Sprintf("msg %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d",
		st.kind, b2i(st.badID), st.mtype, st.size, st.fill, st.flags, st.bufsize, st.msgtyp,
		st.uid, st.gid, st.mode, st.qbytes, st.keySel, st.other, b2i(st.times), k.id, u.id, k.key)
}

func nobodyMsg(line string) (string, string, error) {
	var st msgStep
	var badID, times int
	k, u := &msgKernel{}, &msgUsysv{}
	if _, err := fmt.Sscan(line, &st.kind, &badID, &st.mtype, &st.size, &st.fill, &st.flags, &st.bufsize,
		&st.msgtyp, &st.uid, &st.gid, &st.mode, &st.qbytes, &st.keySel, &st.other, &times, &k.id, &u.id, &k.key); err != nil {
		return "", "", err
	}
	st.badID, st.times, st.nobody = badID != 0, times != 0, true
	u.key = k.key
	return k.step(&st), u.step(&st), nil
}

// semStepLine is a semaphore step and the ids it runs on, as one line:
// the scalars, then the ops (count, then num op flg each) and the values
// (count, then each).
func semStepLine(st *semStep, k *semKernel, u *semUsysv) string {
	var b strings.Builder
	fmt.Fprintf(&b, "sem %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d",
		st.kind, b2i(st.badID), st.call, st.timeout, st.num, st.val, st.uid, st.gid, st.mode,
		b2i(st.otime), st.keySel, st.other, st.nsems, st.flags, k.id, u.id)
	fmt.Fprintf(&b, " %d %d", k.key, len(st.ops))
	for _, o := range st.ops {
		fmt.Fprintf(&b, " %d %d %d", o.Num, o.Op, o.Flg)
	}
	fmt.Fprintf(&b, " %d", len(st.vals))
	for _, v := range st.vals {
		fmt.Fprintf(&b, " %d", v)
	}
	return b.String()
}

func nobodySem(line string) (string, string, error) {
	var st semStep
	var badID, otime, nops, nvals int
	k, u := &semKernel{}, &semUsysv{}
	r := strings.NewReader(line)
	if _, err := fmt.Fscan(r, &st.kind, &badID, &st.call, &st.timeout, &st.num, &st.val, &st.uid, &st.gid, &st.mode,
		&otime, &st.keySel, &st.other, &st.nsems, &st.flags, &k.id, &u.id, &k.key, &nops); err != nil {
		return "", "", err
	}
	st.ops = make([]sem.Buf, nops)
	for i := range st.ops {
		if _, err := fmt.Fscan(r, &st.ops[i].Num, &st.ops[i].Op, &st.ops[i].Flg); err != nil {
			return "", "", err
		}
	}
	if _, err := fmt.Fscan(r, &nvals); err != nil {
		return "", "", err
	}
	st.vals = make([]uint16, nvals)
	for i := range st.vals {
		if _, err := fmt.Fscan(r, &st.vals[i]); err != nil {
			return "", "", err
		}
	}
	st.badID, st.otime, st.nobody = badID != 0, otime != 0, true
	u.key = k.key
	return k.step(&st), u.step(&st), nil
}

// The helper is started once per fuzz target and process (a process start
// costs milliseconds, and most programs have a step as nobody), before the
// executions, and ends with the target (useNobody).
var shared struct {
	sync.Mutex
	tb *nobodyTB // nil outside FuzzSemDiff and FuzzMsgDiff
	p  *testutil.Proc
}

// nobodyTB is the target's *testing.F as the helper's testing.TB, with
// failures reported on the execution using the helper at the time (a
// fuzz function may not fail its F).
type nobodyTB struct {
	testing.TB
	cur *testing.T
}

func (w *nobodyTB) Helper() {}

func (w *nobodyTB) Fatalf(format string, args ...any) {
	if w.cur == nil {
		w.TB.Fatalf(format, args...)
	}
	w.cur.Fatalf(format, args...)
}

func (w *nobodyTB) Fatal(args ...any) { w.Fatalf("%s", fmt.Sprint(args...)) }

// useNobody starts the helper that f's executions run steps as nobody in.
func useNobody(f *testing.F) {
	w := &nobodyTB{TB: f}
	p := startNobody(w)
	shared.Lock()
	shared.tb, shared.p = w, p
	shared.Unlock()
	f.Cleanup(func() {
		shared.Lock()
		shared.tb, shared.p = nil, nil // Start's clean-up, registered on f, kills the helper
		shared.Unlock()
	})
}

// startNobody starts the helper from a thread of its own, kept until the
// helper is gone. The helper dies with the thread that forked it
// (testutil's children have PR_SET_PDEATHSIG, which follows the forking
// thread, not the process), and threads do exit here: the kernel
// receivers of FuzzMsgDiff lock theirs and end with them, and a thread the
// test goroutine forked from may be the one such a receiver locks next.
func startNobody(tb testing.TB) *testutil.Proc {
	ready := make(chan *testutil.Proc, 1)
	release := make(chan struct{})
	tb.Cleanup(func() { close(release) }) // after Start's clean-up has killed the helper
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		var p *testutil.Proc
		defer func() { ready <- p }() // also when Start fails the test (Goexit)
		p = testutil.Start(tb, nobodyHelper, nil, testutil.AsNobody())
		ready <- p
		p = nil
		<-release
	}()
	p := <-ready
	if p == nil {
		tb.FailNow() // Start has reported why
	}
	return p
}

var lrpidRE = regexp.MustCompile(`lrpid=\d+`)

// nobodyProc runs one program's steps as nobody.
type nobodyProc struct{}

// call sends a step line to the helper and returns the kernel's and
// usysv's results; started gets the helper's pid.
func (nobodyProc) call(t *testing.T, line string, started func(pid int)) (string, string) {
	shared.Lock()
	defer shared.Unlock()
	if shared.p == nil {
		t.Fatalf("a step as nobody outside FuzzSemDiff and FuzzMsgDiff")
	}
	shared.tb.cur = t
	defer func() { shared.tb.cur = nil }()
	p := shared.p
	started(p.Pid())
	p.Send("%s", line)
	kr, ur, ok := strings.Cut(p.Line(2*callTimeout+time.Second), "\t")
	if !ok {
		t.Fatalf("nobody helper answered %q", kr)
	}
	return kr, ur
}

// msg runs a queue step as nobody.
func (n nobodyProc) msg(t *testing.T, st *msgStep, k *msgKernel, u *msgUsysv, m *msgModel) (string, string) {
	kr, ur := n.call(t, msgStepLine(st, k, u), func(pid int) { m.nobodyPid = pid })
	if st.kind == mStat {
		// The kernel's lrpid may be the thread id of one of this process's
		// receivers (see threadToProcess), which only this process knows.
		kr = lrpidRE.ReplaceAllStringFunc(kr, func(f string) string {
			n, _ := strconv.Atoi(f[len("lrpid="):])
			return fmt.Sprintf("lrpid=%d", threadToProcess(n))
		})
	}
	if st.kind == mRemove && kr == "ok" {
		k.removed = true
	}
	if st.kind == mRemove && ur == "ok" {
		u.removed = true
		// Let this process's contract functions find the queue gone, so
		// they drop the handle they may have cached (a queue removed
		// elsewhere stays mapped until then: FINDINGS.md F3).
		_, _ = msgq.Stat(u.id)
	}
	if st.kind == mSet && u.pooled != nil && !st.badID {
		u.pooled.dirty = true
	}
	return kr, ur
}

// sem runs a semaphore step as nobody.
func (n nobodyProc) sem(t *testing.T, st *semStep, k *semKernel, u *semUsysv, m *semModel) (string, string) {
	kr, ur := n.call(t, semStepLine(st, k, u), func(pid int) { m.nobody = pid })
	if st.kind == sRemove && kr == "ok" {
		k.removed = true
	}
	if st.kind == sRemove && ur == "ok" {
		u.removed = true
		_, _ = sem.Stat(u.id) // as for queues
	}
	if st.kind == sSet && u.pooled != nil && !st.badID {
		u.pooled.permDirty = true
	}
	return kr, ur
}
