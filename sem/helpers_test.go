package sem

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// b builds a sembuf.
func b(num uint16, op int16, flg int16) Buf { return Buf{Num: num, Op: op, Flg: flg} }

// impl is one of the two implementations under comparison: the kernel's
// SysV semaphores or usysv's, through the same id-based calls.
type impl struct {
	name     string
	get      func(key, nsems, flags int) (int, error)
	op       func(id int, ops []Buf) error
	timedOp  func(id int, ops []Buf, d time.Duration) error
	getVal   func(id, num int) (int, error)
	setVal   func(id, num, val int) error
	getAll   func(id int) ([]uint16, error)
	setAll   func(id int, vals []uint16) error
	getPid   func(id, num int) (int, error)
	getNcnt  func(id, num int) (int, error)
	getZcnt  func(id, num int) (int, error)
	stat     func(id int) (DS, error)
	set      func(id int, ds DS) error
	remove   func(id int) error
	kindName string // for testutil.Track
}

var kernelImpl = impl{
	name: "kernel", get: kernel.Semget, op: kernel.Semop, timedOp: kernel.Semtimedop,
	getVal: kernel.SemctlGetVal, setVal: kernel.SemctlSetVal, getAll: kernel.SemctlGetAll,
	setAll: kernel.SemctlSetAll, getPid: kernel.SemctlGetPid, getNcnt: kernel.SemctlGetNcnt,
	getZcnt: kernel.SemctlGetZcnt, stat: kernel.SemctlStat, set: kernel.SemctlSet,
	remove: kernel.SemctlRemove, kindName: "sem",
}

var usysvImpl = impl{
	name: "usysv", get: Get, op: Op, timedOp: TimedOp,
	getVal: GetVal, setVal: SetVal, getAll: GetAll, setAll: SetAll, getPid: GetPid,
	getNcnt: GetNcnt, getZcnt: GetZcnt, stat: Stat, set: Set, remove: Remove,
}

var impls = []impl{kernelImpl, usysvImpl}

// handleImpl runs the calls on one handle (the id arguments are ignored).
func handleImpl(h *Array) impl {
	return impl{
		name: "handle",
		op:   func(_ int, ops []Buf) error { return h.Op(context.Background(), ops...) },
		timedOp: func(_ int, ops []Buf, d time.Duration) error {
			return h.TimedOp(d, ops...)
		},
		getVal:  func(_, n int) (int, error) { return h.GetVal(n) },
		setVal:  func(_, n, v int) error { return h.SetVal(n, v) },
		getAll:  func(int) ([]uint16, error) { return h.GetAll() },
		setAll:  func(_ int, v []uint16) error { return h.SetAll(v) },
		getPid:  func(_, n int) (int, error) { return h.GetPid(n) },
		getNcnt: func(_, n int) (int, error) { return h.GetNcnt(n) },
		getZcnt: func(_, n int) (int, error) { return h.GetZcnt(n) },
		stat:    func(int) (DS, error) { return h.Stat() },
		set:     func(_ int, ds DS) error { return h.Set(ds) },
		remove:  func(int) error { return h.Remove() },
	}
}

func implByName(n string) impl {
	if n == "kernel" {
		return kernelImpl
	}
	return usysvImpl
}

// create makes a set with im and removes it when the test ends.
func (im impl) create(t testing.TB, nsems int, mode int) int {
	t.Helper()
	id, err := im.get(testutil.Key(t), nsems, IPC_CREAT|IPC_EXCL|mode)
	require.NoError(t, err, im.name)
	im.track(t, id)
	return id
}

func (im impl) track(t testing.TB, id int) {
	if im.kindName != "" {
		testutil.Track(t, im.kindName, id)
		return
	}
	t.Cleanup(func() {
		if h, err := handle(id); err == nil && !h.seg.Removed() {
			if err := h.check(); err != nil {
				t.Errorf("check after test: %v", err)
			}
		}
		_ = Remove(id)
	})
}

// errName is a stable name for an error: "ok", an errno's name, or the text.
func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var e kernel.Errno
	if errors.As(err, &e) {
		for name, v := range errnoNames {
			if v == e {
				return name
			}
		}
		return fmt.Sprintf("errno %d", int(e))
	}
	return err.Error()
}

var errnoNames = map[string]kernel.Errno{
	"EPERM": kernel.EPERM, "ENOENT": kernel.ENOENT, "EINTR": kernel.EINTR, "E2BIG": kernel.E2BIG,
	"EAGAIN": kernel.EAGAIN, "ENOMEM": kernel.ENOMEM, "EACCES": kernel.EACCES, "EEXIST": kernel.EEXIST,
	"EINVAL": kernel.EINVAL, "EFBIG": kernel.EFBIG, "ENOSPC": kernel.ENOSPC, "ERANGE": kernel.ERANGE,
	"EIDRM": kernel.EIDRM, "ENOSYS": kernel.ENOSYS,
}

// parseOps reads "num:op:flg,num:op:flg" (flg may be omitted; "u" and "n"
// stand for SEM_UNDO and IPC_NOWAIT).
func parseOps(s string) ([]Buf, error) {
	var ops []Buf
	for _, f := range strings.Split(s, ",") {
		p := strings.Split(f, ":")
		if len(p) < 2 {
			return nil, fmt.Errorf("bad op %q", f)
		}
		n, err1 := strconv.Atoi(p[0])
		o, err2 := strconv.Atoi(p[1])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("bad op %q", f)
		}
		var flg int16
		if len(p) > 2 {
			for _, c := range p[2] {
				switch c {
				case 'u':
					flg |= SEM_UNDO
				case 'n':
					flg |= IPC_NOWAIT
				}
			}
		}
		ops = append(ops, Buf{Num: uint16(n), Op: int16(o), Flg: flg})
	}
	return ops, nil
}

func init() {
	// sem-client IMPL ID: runs commands from stdin, one result line each.
	//   op SPEC            semop          → ok | ERRNO
	//   timedop MS SPEC    semtimedop
	//   ctxop MS SPEC      (usysv) Op with a context cancelled after MS
	//   getval N / getpid N / setval N V
	//   pid                → the helper's pid
	//   exec               → ok, then the helper execs itself afresh
	//   touch MB           → ok, with MB megabytes touched (a slow exit:
	//                        the kernel tears them down after it marks
	//                        the process's Lives)
	//   undoloop N         → ok once a goroutine has made 100000 pairs of
	//                        N:-1:u, N:1:u; it goes on until the process
	//                        ends or execs
	//   hold MS [stop]     → locked, once it holds the segment lock, which
	//                        it then holds for MS ms while running (a busy
	//                        loop), then ok once it has unlocked; with stop,
	//                        it stops itself (SIGSTOP) after the MS ms, and
	//                        unlocks once continued
	//   exit
	testutil.RegisterHelper("sem-client", func(args []string) int {
		id, _ := strconv.Atoi(args[1])
		im := implByName(args[0])
		var h *Array
		if args[0] == "noreg" {
			// A process the registry does not know: its death is noticed
			// only by whoever takes its lock over or repairs explicitly.
			var err error
			if h, err = openSeg(id, shm.Namespace(os.Getenv("USYSV_SOCKET"))); err != nil {
				fmt.Println(errName(err))
				return 1
			}
			im = handleImpl(h)
		}
		// arr is the handle the lock-taking commands use: noreg's, or
		// the package's cached one.
		arr := func() (*Array, error) {
			if h != nil {
				return h, nil
			}
			return handle(id)
		}
		return serve(func(cmd string, f []string) string {
			switch cmd {
			case "op":
				ops, err := parseOps(f[0])
				if err != nil {
					return err.Error()
				}
				return errName(im.op(id, ops))
			case "timedop":
				ms, _ := strconv.Atoi(f[0])
				ops, _ := parseOps(f[1])
				return errName(im.timedOp(id, ops, time.Duration(ms)*time.Millisecond))
			case "ctxop":
				ms, _ := strconv.Atoi(f[0])
				ops, _ := parseOps(f[1])
				h, err := OpenID(id)
				if err != nil {
					return errName(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(ms)*time.Millisecond)
				defer cancel()
				err = h.Op(ctx, ops...)
				if err != nil && errors.Is(err, context.DeadlineExceeded) && errors.Is(err, kernel.EINTR) {
					return "canceled"
				}
				return errName(err)
			case "getval", "getpid", "ncnt", "zcnt":
				n, _ := strconv.Atoi(f[0])
				get := map[string]func(int, int) (int, error){"getval": im.getVal, "getpid": im.getPid,
					"ncnt": im.getNcnt, "zcnt": im.getZcnt}[cmd]
				v, err := get(id, n)
				if err != nil {
					return errName(err)
				}
				return strconv.Itoa(v)
			case "setval":
				n, _ := strconv.Atoi(f[0])
				v, _ := strconv.Atoi(f[1])
				return errName(im.setVal(id, n, v))
			case "stat":
				_, err := im.stat(id)
				return errName(err)
			case "set":
				ds, err := im.stat(id)
				if err != nil {
					return errName(err)
				}
				ds.Perm.Mode = 0o666
				return errName(im.set(id, ds))
			case "setperm": // UID GID MODE, without a stat first
				var ds DS
				uid, _ := strconv.ParseUint(f[0], 0, 32)
				gid, _ := strconv.ParseUint(f[1], 0, 32)
				mode, _ := strconv.ParseUint(f[2], 0, 32)
				ds.Perm.UID, ds.Perm.GID, ds.Perm.Mode = uint32(uid), uint32(gid), uint32(mode)
				return errName(im.set(id, ds))
			case "remove":
				return errName(im.remove(id))
			case "pid":
				return strconv.Itoa(kernel.Getpid())
			case "exec":
				exe, err := os.Executable()
				if err != nil {
					return err.Error()
				}
				fmt.Println("ok")
				return kernel.Exec(exe, os.Args, os.Environ()).Error()
			case "touch":
				mb, _ := strconv.Atoi(f[0])
				ballast = make([]byte, mb<<20)
				for i := 0; i < len(ballast); i += 4096 {
					ballast[i] = 1
				}
				return "ok"
			case "undoloop":
				n, _ := strconv.Atoi(f[0])
				var pairs atomic.Int64
				go func() {
					p, v := []Buf{{Num: uint16(n), Op: -1, Flg: SEM_UNDO}}, []Buf{{Num: uint16(n), Op: 1, Flg: SEM_UNDO}}
					for im.op(id, p) == nil && im.op(id, v) == nil {
						pairs.Add(1)
					}
				}()
				for pairs.Load() < 100000 {
					time.Sleep(time.Millisecond)
				}
				return "ok"
			case "hold":
				ms, _ := strconv.Atoi(f[0])
				h, err := arr()
				if err != nil {
					return errName(err)
				}
				defer h.guard(h.lock())
				fmt.Println("locked")
				for end := time.Now().Add(time.Duration(ms) * time.Millisecond); time.Now().Before(end); {
				}
				if len(f) > 1 && f[1] == "stop" {
					stopHere()
				}
				h.unlock()
				return "ok"
			case "repair":
				h, err := arr()
				if err != nil {
					return errName(err)
				}
				h.lock()
				h.repairLocked(false)
				h.unlock()
				return "ok"
			}
			return "unknown command " + cmd
		})
	})
}

// ballast is sem-client's touched memory.
var ballast []byte

// serve runs a helper's command loop on stdin/stdout.
func serve(do func(cmd string, f []string) string) int {
	var line string
	for {
		var err error
		line, err = readLine()
		if err != nil {
			return 0
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if f[0] == "exit" {
			return 0
		}
		fmt.Println(do(f[0], f[1:]))
	}
}
