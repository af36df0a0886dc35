package msgq

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
)

// impl is the SysV message-queue API of one implementation: the kernel's
// or usysv's package-level functions. Differential tests run the same calls
// on both and compare.
type impl struct {
	name   string
	get    func(key, flags int) (int, error)
	send   func(id int, mtype int64, text []byte, flags int) error
	recv   func(id int, text []byte, mtype int64, flags int) (int, int64, error)
	stat   func(id int) (DS, error)
	set    func(id int, ds DS) error
	remove func(id int) error
}

var (
	kernelImpl = impl{"kernel", kernel.Msgget, kernel.Msgsnd, kernel.Msgrcv, kernel.MsgctlStat, kernel.MsgctlSet, kernel.MsgctlRemove}
	usysvImpl  = impl{"usysv", Get, Send, Recv, Stat, Set, Remove}
	impls      = []impl{kernelImpl, usysvImpl}
)

func implByName(name string) impl {
	if name == "kernel" {
		return kernelImpl
	}
	return usysvImpl
}

// create makes a queue with mode, removed when the test ends.
func (im impl) create(t testing.TB, mode int) int {
	t.Helper()
	id, err := im.get(testutil.Key(t), IPC_CREAT|IPC_EXCL|mode)
	require.NoError(t, err, im.name)
	if im.name == "kernel" {
		testutil.Track(t, "msg", id)
	} else {
		t.Cleanup(func() {
			if q, err := handle(id); err == nil && !q.seg.Removed() {
				if err := q.Check(); err != nil {
					t.Errorf("queue %d invariants: %v", id, err)
				}
			}
			_ = im.remove(id)
		})
	}
	return id
}

// forEach runs f as a subtest for the kernel and for usysv.
func forEach(t *testing.T, f func(t *testing.T, im impl)) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) { f(t, im) })
	}
}

var errNames = map[kernel.Errno]string{
	kernel.EINVAL: "EINVAL", kernel.EACCES: "EACCES", kernel.EIDRM: "EIDRM", kernel.ENOMSG: "ENOMSG",
	kernel.E2BIG: "E2BIG", kernel.EAGAIN: "EAGAIN", kernel.EPERM: "EPERM", kernel.ENOENT: "ENOENT",
	kernel.EEXIST: "EEXIST", kernel.EINTR: "EINTR", kernel.ENOSPC: "ENOSPC", kernel.ENOSYS: "ENOSYS",
}

// errName is "ok" for nil, else the errno's name.
func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var e kernel.Errno
	if errors.As(err, &e) {
		if n, ok := errNames[e]; ok {
			return n
		}
		return fmt.Sprintf("errno%d", int(e))
	}
	return "error(" + err.Error() + ")"
}

func init() { testutil.RegisterHelper("ipc", ipcHelper) }

// ipcHelper runs SysV calls read from stdin, one per line, and prints
// each result on a line:
//
//	snd IMPL ID TYPE TEXT FLAGS      → ok | err NAME          (TEXT "-" is empty)
//	rcv IMPL ID BUFSIZE TYPE FLAGS   → ok N TYPE TEXT | err NAME
//	stat IMPL ID                     → ok QNUM CBYTES LSPID LRPID MODE | err NAME
//	get IMPL KEY FLAGS               → ok ID | err NAME
//	set IMPL ID UID GID MODE QBYTES  → ok | err NAME
//	rm IMPL ID                       → ok | err NAME
func ipcHelper([]string) int {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			fmt.Println("err usage")
			continue
		}
		im := implByName(f[1])
		n := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 0, 64); return v }
		switch f[0] {
		case "snd":
			text := f[4]
			if text == "-" {
				text = ""
			}
			reply(im.send(int(n(2)), n(3), []byte(text), int(n(5))))
		case "rcv":
			buf := make([]byte, n(3))
			k, typ, err := im.recv(int(n(2)), buf, n(4), int(n(5)))
			if err != nil {
				reply(err)
			} else {
				fmt.Printf("ok %d %d %s\n", k, typ, orDash(string(buf[:k])))
			}
		case "stat":
			ds, err := im.stat(int(n(2)))
			if err != nil {
				reply(err)
			} else {
				fmt.Printf("ok %d %d %d %d %o\n", ds.Qnum, ds.Cbytes, ds.Lspid, ds.Lrpid, ds.Perm.Mode)
			}
		case "get":
			id, err := im.get(int(n(2)), int(n(3)))
			if err != nil {
				reply(err)
			} else {
				fmt.Printf("ok %d\n", id)
			}
		case "set":
			var ds DS
			ds.Perm.UID, ds.Perm.GID, ds.Perm.Mode, ds.Qbytes = uint32(n(3)), uint32(n(4)), uint32(n(5)), uint64(n(6))
			reply(im.set(int(n(2)), ds))
		case "rm":
			reply(im.remove(int(n(2))))
		default:
			fmt.Println("err usage")
		}
	}
	return 0
}

func reply(err error) {
	if err != nil {
		fmt.Println("err " + errName(err))
	} else {
		fmt.Println("ok")
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// blocked reports whether process pid is blocked in a msgsnd/msgrcv on
// queue id: for the kernel, one of its threads sits in the syscall; for
// usysv, it holds a waiter slot of the queue.
func blocked(t testing.TB, im impl, id, pid int) bool {
	t.Helper()
	if im.name == "kernel" {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/syscall", pid))
		for _, p := range tasks {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			if f := strings.Fields(string(b)); len(f) > 0 && msgSyscalls[f[0]] {
				return true
			}
		}
		return false
	}
	q, err := handle(id)
	require.NoError(t, err)
	for i := range q.v.slots {
		s := &q.v.slots[i]
		st := s.State.Load()
		if (st == slotRecv || st == slotSend) && int(s.PID.Load()) == pid {
			return true
		}
	}
	return false
}

func waitBlocked(t testing.TB, im impl, id int, p *testutil.Proc) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("helper %d to block on %s queue %d", p.Pid(), im.name, id),
		func() bool { return blocked(t, im, id, p.Pid()) })
}

const lineWait = 10 * time.Second

// msgSyscalls are msgsnd and msgrcv's numbers on x86-64 (69, 70) and i386
// (400, 401, or the ipc multiplexer 117), as /proc/PID/task/TID/syscall
// shows them.
var msgSyscalls = map[string]bool{"69": true, "70": true, "400": true, "401": true, "117": true}
