package shm_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// lineTimeout bounds how long a test waits for a helper's answer: a hang
// guard, not a speed assertion.
const lineTimeout = 20 * time.Second

func init() { testutil.RegisterHelper("shm", shmHelper) }

// shmHelper runs shm calls on command from the test, one per stdin line, and
// answers "ok [values...]", "err N" (an errno) or "error TEXT".
func shmHelper([]string) int {
	in := bufio.NewScanner(os.Stdin)
	say := func(format string, a ...any) { fmt.Printf(format+"\n", a...) }
	var seg *shm.Segment
	attached := map[int][]byte{}
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		n := func(i int) int {
			v, err := strconv.ParseInt(f[i], 0, 64)
			if err != nil {
				panic(err)
			}
			return int(v)
		}
		var err error
		var res string
		switch f[0] {
		case "exit":
			return n(1)
		case "map": // map id kind: in this test binary's namespace
			seg, err = shm.Map(n(1), shm.Kind(n(2)), testNS())
		case "close":
			err = seg.Close()
		case "retire":
			err = seg.Retire()
		case "lock":
			res = strconv.FormatBool(seg.Lock().Lock())
		case "trylock":
			res = strconv.FormatBool(seg.Lock().TryLock())
		case "unlock":
			seg.Lock().Unlock()
		case "abandon":
			seg.Lock().Abandon()
		case "exec": // exec this binary again, a helper with nothing mapped
			exe, e := os.Executable()
			if e != nil {
				err = e
				break
			}
			say("ok")
			err = kernel.Exec(exe, os.Args, os.Environ())
		case "pid":
			res = strconv.Itoa(kernel.Getpid())
		case "count": // count n: n locked read-modify-writes of the body's first word
			c, e := shm.At[uint64](seg, seg.Params().BodyOffset())
			if e != nil {
				err = e
				break
			}
			mu := seg.Lock()
			for i := 0; i < n(1); i++ {
				mu.Lock()
				*c = *c + 1
				mu.Unlock()
			}
		case "wait": // wait slot: occupy a waiter slot and sleep until woken
			w := &seg.Waiters()[n(1)]
			w.State.Store(1)
			say("waiting")
			for w.Futex.Load() == 0 && err == nil {
				err = kernel.FutexWait(&w.Futex, 0, time.Time{})
			}
			w.State.Store(0)
		case "hold": // hold slot: this process holds the waiter slot's Life
			seg.Waiters()[n(1)].Life.Hold()
		case "release": // release slot
			seg.Waiters()[n(1)].Life.Release()
		case "get": // get key size flags
			var id int
			id, err = shm.Get(n(1), n(2), n(3))
			res = strconv.Itoa(id)
		case "attach": // attach id flags
			var b []byte
			if b, err = shm.Attach(n(1), n(2)); err == nil {
				attached[n(1)] = b
				res = strconv.Itoa(len(b))
			}
		case "detach":
			err = shm.Detach(attached[n(1)])
			delete(attached, n(1))
		case "read": // read id off
			res = strconv.Itoa(int(attached[n(1)][n(2)]))
		case "write": // write id off value: reports "fault ADDR-OFFSET" if the write faults
			b := attached[n(1)]
			off := n(2)
			if fault, ok := faultingWrite(b, off, byte(n(3))); !ok {
				say("fault %d", fault)
				continue
			}
		case "stat":
			var ds shm.DS
			if ds, err = shm.Stat(n(1)); err == nil {
				res = fmt.Sprintf("%d %d %o %d", ds.Nattch, ds.Perm.UID, ds.Perm.Mode, ds.Lpid)
			}
		case "set": // set id uid gid mode
			err = shm.Set(n(1), shm.DS{Perm: kernel.IpcPerm{UID: uint32(n(2)), GID: uint32(n(3)), Mode: uint32(n(4))}})
		case "rm":
			err = shm.Remove(n(1))
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

// faultingWrite writes b[off] = v. If the write faults it reports the
// faulting address's offset from &b[0] and false.
func faultingWrite(b []byte, off int, v byte) (faultOff int, ok bool) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			fe, isFault := r.(interface{ Addr() uintptr })
			if !isFault {
				panic(r)
			}
			faultOff, ok = int(fe.Addr()-uintptr(unsafe.Pointer(&b[0]))), false
		}
	}()
	b[off] = v
	return 0, true
}

// call sends one command to an shm helper and returns the values of an
// "ok" answer, or the errno of an "err" answer.
func call(t *testing.T, p *testutil.Proc, format string, a ...any) ([]string, error) {
	t.Helper()
	p.Send(format, a...)
	return answer(t, p)
}

func answer(t *testing.T, p *testutil.Proc) ([]string, error) {
	t.Helper()
	return p.Answer(lineTimeout)
}

func mustCall(t *testing.T, p *testutil.Proc, format string, a ...any) []string {
	t.Helper()
	v, err := call(t, p, format, a...)
	require.NoError(t, err, format, a)
	return v
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	v, err := strconv.Atoi(s)
	require.NoError(t, err)
	return v
}

// testNS is this test binary's registry namespace: segments made in it are
// reported by testutil's leak check if a test forgets them.
func testNS() uint64 { return shm.Namespace(os.Getenv("USYSV_SOCKET")) }

// testParams are small but complete segment parameters.
func testParams() shm.Params {
	return shm.Params{
		Kind: shm.KindSem, Namespace: testNS(), Key: 0x1234, Count: 3,
		CUID: 10, CGID: 20, Waiters: 4, BodySize: 64,
	}
}

// newSegment creates a kernel-backed usysv segment for p and maps it, both
// undone when the test ends.
func newSegment(t *testing.T, p shm.Params) *shm.Segment {
	t.Helper()
	id, err := shm.Create(p, 0, 0, 0o600, 1000)
	require.NoError(t, err)
	testutil.Track(t, "shm", id)
	s, err := shm.Map(id, p.Kind, p.Namespace)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// formatted returns in-memory bytes holding a fresh header for p.
func formatted(t *testing.T, p shm.Params) []byte {
	t.Helper()
	mem := make([]byte, p.Size())
	require.NoError(t, shm.Format(mem, p, 1, 2, 0o640, 1000))
	return mem
}

// requireNattch waits until usysv-format segment id has want attaches.
// Another test binary's registry may peek at any IPC_PRIVATE segment of a
// header's size (shm.Candidate) while it rebuilds: an attach of a moment,
// which a single IPC_STAT could count.
func requireNattch(t *testing.T, id int, want uint64, msg string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		ds, err := kernel.ShmctlStat(id)
		require.NoError(t, err)
		if ds.Nattch == want {
			return
		}
		require.True(t, time.Now().Before(deadline), "%s: segment %d has %d attaches, want %d", msg, id, ds.Nattch, want)
	}
}
