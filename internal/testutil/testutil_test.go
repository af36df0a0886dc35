package testutil_test

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

func TestMain(m *testing.M) { testutil.Main(m) }

const lineTimeout = 20 * time.Second

func init() {
	// echo: answers each line upper-cased; "exit N" exits with N; "ids"
	// prints the effective uid and gid; "args" prints its arguments.
	testutil.RegisterHelper("echo", func(args []string) int {
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			line := in.Text()
			switch {
			case strings.HasPrefix(line, "exit "):
				n, _ := strconv.Atoi(strings.TrimPrefix(line, "exit "))
				return n
			case line == "ids":
				fmt.Printf("%d %d %d\n", os.Geteuid(), os.Getegid(), len(mustGroups()))
			case line == "args":
				fmt.Println(strings.Join(args, ","))
			case line == "env":
				fmt.Println(os.Getenv("USYSV_TESTUTIL_X"))
			default:
				fmt.Println(strings.ToUpper(line))
			}
		}
		return 0
	})
}

func mustGroups() []int {
	g, err := os.Getgroups()
	if err != nil {
		panic(err)
	}
	return g
}

func TestKey(t *testing.T) {
	seen := map[int]bool{}
	for i := 0; i < 10000; i++ {
		k := testutil.Key(t)
		require.NotZero(t, k, "0 is IPC_PRIVATE")
		require.NotEqual(t, -1, k)
		require.True(t, int64(k) >= math.MinInt32 && int64(k) <= math.MaxInt32, "a key is a key_t (int32): %d", k)
		require.False(t, seen[k], "key %#x handed out twice", k)
		seen[k] = true
	}
	t.Run("other test", func(t *testing.T) {
		for i := 0; i < 100; i++ {
			assert.False(t, seen[testutil.Key(t)])
		}
	})
}

// TestKeyUsable: a key creates with IPC_CREAT|IPC_EXCL.
func TestKeyUsable(t *testing.T) {
	id, err := kernel.Semget(testutil.Key(t), 1, kernel.IPC_CREAT|kernel.IPC_EXCL|0o600)
	require.NoError(t, err)
	testutil.Track(t, "sem", id)
}

func TestHelperRoundTrip(t *testing.T) {
	p := testutil.Start(t, "echo", []string{"a", "b c"}, testutil.Env("USYSV_TESTUTIL_X=hello"))
	assert.NotEqual(t, os.Getpid(), p.Pid())
	p.Send("ping %d", 42)
	p.Expect("PING 42", lineTimeout)
	p.Send("args")
	p.Expect("a,b c", lineTimeout)
	p.Send("env")
	p.Expect("hello", lineTimeout)
	p.Send("ids")
	assert.Equal(t, fmt.Sprintf("%d %d %d", os.Geteuid(), os.Getegid(), len(mustGroups())), p.Line(lineTimeout))
	assert.True(t, p.Quiet(10*time.Millisecond), "nothing more to say")
	p.Send("exit 7")
	assert.Equal(t, 7, p.Wait(lineTimeout))
	assert.Equal(t, "", testutil.ProcState(p.Pid()), "exited and reaped")
}

func TestHelperKillAndStop(t *testing.T) {
	p := testutil.Start(t, "echo", nil)
	p.Signal(kernel.SIGSTOP)
	testutil.Eventually(t, lineTimeout, "the helper to stop", func() bool { return testutil.ProcState(p.Pid()) == "T" })
	p.Send("queued while stopped")
	assert.True(t, p.Quiet(50*time.Millisecond), "a stopped helper says nothing")
	p.Signal(kernel.SIGCONT)
	p.Expect("QUEUED WHILE STOPPED", lineTimeout)
	p.Kill()
	assert.Equal(t, -1, p.Wait(lineTimeout), "killed by a signal")
}

func TestAsNobody(t *testing.T) {
	testutil.RequireRoot(t)
	p := testutil.Start(t, "echo", nil, testutil.AsNobody())
	p.Send("ids")
	p.Expect(fmt.Sprintf("%d %d 0", testutil.Nobody, testutil.Nobody), lineTimeout)
	c, err := kernel.ProcessCreds(p.Pid())
	require.NoError(t, err)
	assert.Equal(t, uint32(testutil.Nobody), c.UID)

	q := testutil.Start(t, "echo", nil, testutil.AsUser(12345, 23456))
	q.Send("ids")
	q.Expect("12345 23456 0", lineTimeout)
}

func TestProcState(t *testing.T) {
	st := testutil.ProcState(os.Getpid())
	assert.NotEmpty(t, st)
	assert.NotContains(t, []string{"T", "Z", "X"}, st, "we are running")
	assert.Equal(t, "", testutil.ProcState(-1))
}

// TestLeaks leaks one object of each sort on purpose and checks that Leaks
// lists it and removes it, and leaves others' objects alone.
func TestLeaks(t *testing.T) {
	ns := shm.Namespace(t.Name() + strconv.Itoa(os.Getpid()))
	other := ns + 1
	p := shm.Params{Kind: shm.KindMsg, Namespace: ns, Key: 0x77, Waiters: 1, BodySize: 8}
	leaked, err := shm.Create(p, 0, 0, 0o600, 0)
	require.NoError(t, err)
	testutil.Track(t, "shm", leaked) // safety net should Leaks fail to remove it
	// Not tracked (Leaks would report tracked objects as kernel leaks):
	// removed by hand.
	removed, err := shm.Create(p, 0, 0, 0o600, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = kernel.ShmctlRemove(removed) })
	s, err := shm.Map(removed, p.Kind, ns)
	require.NoError(t, err)
	s.MarkRemoved() // a removed usysv object still mapped somewhere is no leak
	p.Namespace = other
	foreign, err := shm.Create(p, 0, 0, 0o600, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = kernel.ShmctlRemove(foreign) })

	sem, err := kernel.Semget(kernel.IPC_PRIVATE, 1, 0o600)
	require.NoError(t, err)
	testutil.Track(t, "sem", sem)
	msg, err := kernel.Msgget(kernel.IPC_PRIVATE, 0o600)
	require.NoError(t, err)
	testutil.Track(t, "msg", msg)
	seg, err := kernel.Shmget(kernel.IPC_PRIVATE, 4096, 0o600)
	require.NoError(t, err)
	testutil.Track(t, "shm", seg)

	got := testutil.Leaks(ns)
	name := t.Name()
	assert.Contains(t, got, fmt.Sprintf("usysv msg id %d key 0x77", leaked))
	assert.Contains(t, got, fmt.Sprintf("kernel sem id %d (from %s)", sem, name))
	assert.Contains(t, got, fmt.Sprintf("kernel msg id %d (from %s)", msg, name))
	assert.Contains(t, got, fmt.Sprintf("kernel shm id %d (from %s)", seg, name))
	for _, l := range got {
		assert.NotContains(t, l, fmt.Sprintf("usysv msg id %d ", removed), "removed objects are not leaks")
		assert.NotContains(t, l, fmt.Sprintf("usysv msg id %d ", foreign), "another namespace's objects are not ours")
	}

	// Listed means removed.
	_, err = kernel.SemctlStat(sem)
	require.ErrorIs(t, err, kernel.EINVAL)
	_, err = kernel.MsgctlStat(msg)
	require.ErrorIs(t, err, kernel.EINVAL)
	testutil.RequireShmGone(t, seg, "listed means removed")
	testutil.RequireShmGone(t, leaked, "listed means removed")
	_, err = kernel.ShmctlStat(foreign)
	require.NoError(t, err, "not ours: left alone")
	require.NoError(t, s.Close())

	_, err = kernel.ShmctlStat(removed)
	require.NoError(t, err, "a removed usysv object is not touched")

	// A second look finds nothing left.
	assert.Empty(t, testutil.Leaks(ns))
}

// TestLeakCheckFailsTheRun runs this test binary again with a test that
// leaks a usysv object, and checks that testutil.Main reports it, removes
// it and fails the run although the test itself passed.
func TestLeakCheckFailsTheRun(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestLeakyChild$", "-test.v")
	cmd.Env = append(os.Environ(), "USYSV_TESTUTIL_LEAK=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "stdout:\n%s\nstderr:\n%s", &out, &errb)
	assert.Equal(t, 1, exit.ExitCode())
	assert.Contains(t, out.String(), "--- PASS: TestLeakyChild", "the leaky test itself passed")

	id, found := 0, false // (0 is a valid id: a fresh IPC namespace's first)
	for _, l := range strings.Split(out.String(), "\n") {
		if i := strings.Index(l, "leaked id "); i >= 0 {
			id, err = strconv.Atoi(strings.TrimSpace(l[i+len("leaked id "):]))
			require.NoError(t, err)
			found = true
		}
	}
	require.True(t, found, "the child said what it leaked:\n%s", &out)
	assert.Contains(t, errb.String(), "IPC objects left behind")
	assert.Contains(t, errb.String(), fmt.Sprintf("usysv sem id %d ", id))
	t.Cleanup(func() { _ = kernel.ShmctlRemove(id) }) // should the check below fail
	testutil.RequireShmGone(t, id, "the leak check removed it")
}

// TestLeakyChild is the leaking test run by TestLeakCheckFailsTheRun.
func TestLeakyChild(t *testing.T) {
	if os.Getenv("USYSV_TESTUTIL_LEAK") == "" {
		t.Skip("run by TestLeakCheckFailsTheRun")
	}
	ns := shm.Namespace(os.Getenv("USYSV_SOCKET"))
	id, err := shm.Create(shm.Params{Kind: shm.KindSem, Namespace: ns, Count: 1, Waiters: 1, BodySize: 8}, 0, 0, 0o600, 0)
	require.NoError(t, err)
	t.Logf("leaked id %d", id)
}

func TestEventually(t *testing.T) {
	n := 0
	testutil.Eventually(t, lineTimeout, "three polls", func() bool { n++; return n == 3 })
	assert.Equal(t, 3, n)
}
