package kernel_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// lineTimeout bounds how long a test waits for a helper's answer. It is a
// hang guard, not a speed assertion.
const lineTimeout = 20 * time.Second

func init() {
	testutil.RegisterHelper("sysv", sysvHelper)
}

// sysvHelper runs kernel calls on command from the test, one per stdin line,
// and answers each with "ok [values...]" or "err N" (the errno). It is how
// the tests make calls as another process, or as another user.
func sysvHelper([]string) int {
	in := bufio.NewScanner(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	say := func(format string, a ...any) {
		fmt.Fprintf(out, format+"\n", a...)
		_ = out.Flush()
	}
	attached := map[int][]byte{}
	var conns []net.Conn // kept open (and referenced) until the helper exits
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		n := func(i int) int {
			v, err := strconv.Atoi(f[i])
			if err != nil {
				panic(err)
			}
			return v
		}
		var err error
		var res string
		switch f[0] {
		case "exit":
			return n(1)
		case "spin": // spin ms: use ms milliseconds of CPU (getrusage's count, however long that takes)
			var ru unix.Rusage
			cpu := func() time.Duration {
				_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
				return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			}
			for end := cpu() + time.Duration(n(1))*time.Millisecond; cpu() < end; {
			}
		case "self":
			pid, start := kernel.Self()
			res = fmt.Sprintf("%d %d", pid, start)
		case "alive-nofd": // alive-nofd pid start: ProcessAlive with every file descriptor in use
			res, err = aliveWithoutFDs(n(1), uint64(n(2)))
		case "shmget":
			var id int
			id, err = kernel.Shmget(n(1), n(2), n(3))
			res = strconv.Itoa(id)
		case "shmat":
			var b []byte
			if b, err = kernel.Shmat(n(1), n(2)); err == nil {
				attached[n(1)] = b
				res = strconv.Itoa(len(b))
			}
		case "shmdt":
			err = kernel.Shmdt(attached[n(1)])
			delete(attached, n(1))
		case "shmstat":
			var ds kernel.ShmidDS
			if ds, err = kernel.ShmctlStat(n(1)); err == nil {
				res = fmt.Sprintf("%d %d %o", ds.Nattch, ds.Perm.UID, ds.Perm.Mode)
			}
		case "shmset":
			err = kernel.ShmctlSet(n(1), uint32(n(2)), uint32(n(3)), uint32(n(4)))
		case "shmrm":
			err = kernel.ShmctlRemove(n(1))
		case "futexwait": // futexwait id: sleep on the segment's first word while it is 0
			b, e := kernel.Shmat(n(1), 0)
			if e != nil {
				err = e
				break
			}
			say("waiting")
			err = kernel.FutexWait((*atomic.Uint32)(unsafe.Pointer(&b[0])), 0, time.Time{})
			_ = kernel.Shmdt(b)
		case "semget":
			var id int
			id, err = kernel.Semget(n(1), n(2), n(3))
			res = strconv.Itoa(id)
		case "semop": // semop id num op flg
			err = kernel.Semop(n(1), []kernel.Sembuf{{Num: uint16(n(2)), Op: int16(n(3)), Flg: int16(n(4))}})
		case "semgetval":
			var v int
			v, err = kernel.SemctlGetVal(n(1), n(2))
			res = strconv.Itoa(v)
		case "semsetval":
			err = kernel.SemctlSetVal(n(1), n(2), n(3))
		case "semsetall": // semsetall id v,v,...
			var vals []uint16
			for _, v := range strings.Split(f[2], ",") {
				x, e := strconv.Atoi(v)
				if e != nil {
					panic(e)
				}
				vals = append(vals, uint16(x))
			}
			err = kernel.SemctlSetAll(n(1), vals)
		case "semstat":
			var ds kernel.SemidDS
			if ds, err = kernel.SemctlStat(n(1)); err == nil {
				res = strconv.Itoa(ds.Nsems)
			}
		case "semset":
			err = kernel.SemctlSet(n(1), kernel.SemidDS{Perm: kernel.IpcPerm{UID: uint32(n(2)), GID: uint32(n(3)), Mode: uint32(n(4))}})
		case "semrm":
			err = kernel.SemctlRemove(n(1))
		case "msgget":
			var id int
			id, err = kernel.Msgget(n(1), n(2))
			res = strconv.Itoa(id)
		case "msgsnd": // msgsnd id type text flags
			err = kernel.Msgsnd(n(1), int64(n(2)), []byte(f[3]), n(4))
		case "msgrcv": // msgrcv id size type flags
			buf := make([]byte, n(2))
			var m int
			var typ int64
			if m, typ, err = kernel.Msgrcv(n(1), buf, int64(n(3)), n(4)); err == nil {
				res = fmt.Sprintf("%d %s", typ, buf[:m])
			}
		case "msgstat":
			var ds kernel.MsqidDS
			if ds, err = kernel.MsgctlStat(n(1)); err == nil {
				res = strconv.FormatUint(ds.Qnum, 10)
			}
		case "msgset":
			err = kernel.MsgctlSet(n(1), kernel.MsqidDS{Perm: kernel.IpcPerm{UID: uint32(n(2)), GID: uint32(n(3)), Mode: uint32(n(4))}, Qbytes: kernel.MSGMNB})
		case "msgrm":
			err = kernel.MsgctlRemove(n(1))
		case "dial": // dial unix-address: connect and keep the connection open
			var c net.Conn
			if c, err = net.Dial("unix", f[1]); err == nil {
				conns = append(conns, c)
			}
		default:
			say("unknown command %q", f[0])
			return 2
		}
		var errno kernel.Errno
		switch {
		case err == nil:
			say("ok %s", res)
		case errors.As(err, &errno):
			say("err %d", int(errno))
		default:
			say("error %v", err)
		}
	}
	return 0
}

// call sends one command to a sysv helper and returns the values of an "ok"
// answer, or the errno of an "err" answer.
func call(t *testing.T, p *testutil.Proc, format string, a ...any) ([]string, error) {
	t.Helper()
	p.Send(format, a...)
	return answer(t, p)
}

// answer reads one answer of a sysv helper.
func answer(t *testing.T, p *testutil.Proc) ([]string, error) {
	t.Helper()
	return p.Answer(lineTimeout)
}

// mustCall is call for commands that must succeed.
func mustCall(t *testing.T, p *testutil.Proc, format string, a ...any) []string {
	t.Helper()
	v, err := call(t, p, format, a...)
	require.NoError(t, err, format, a)
	return v
}

// atoi parses a helper's numeric answer.
func atoi(t *testing.T, s string) int {
	t.Helper()
	v, err := strconv.Atoi(s)
	require.NoError(t, err)
	return v
}

// newShm makes a kernel segment removed when the test ends.
func newShm(t *testing.T, size, mode int) int {
	t.Helper()
	id, err := kernel.Shmget(testutil.Key(t), size, kernel.IPC_CREAT|kernel.IPC_EXCL|mode)
	require.NoError(t, err)
	testutil.Track(t, "shm", id)
	return id
}

// attach attaches a segment for the rest of the test.
func attach(t *testing.T, id, flags int) []byte {
	t.Helper()
	b, err := kernel.Shmat(id, flags)
	require.NoError(t, err)
	t.Cleanup(func() { _ = kernel.Shmdt(b) })
	return b
}

// aliveWithoutFDs runs ProcessAlive(pid, start) while this process can
// open no file (EMFILE).
func aliveWithoutFDs(pid int, start uint64) (string, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return "", err
	}
	low := lim
	low.Cur = 64
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		return "", err
	}
	defer func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim) }()
	var fds []int
	defer func() {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
	}()
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == unix.EMFILE {
			break
		}
		if err != nil {
			return "", err
		}
		fds = append(fds, fd)
	}
	return strconv.FormatBool(kernel.ProcessAlive(pid, start)), nil
}
