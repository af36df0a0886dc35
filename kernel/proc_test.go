package kernel_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"golang.org/x/sys/unix"
)

func TestSelf(t *testing.T) {
	pid, start := kernel.Self()
	assert.Equal(t, os.Getpid(), pid)
	assert.Equal(t, os.Getpid(), kernel.Getpid())
	st, err := kernel.ProcessStartTime(pid)
	require.NoError(t, err)
	assert.Equal(t, st, start)
	assert.NotZero(t, start)
	assert.Equal(t, os.Geteuid(), kernel.Geteuid())
}

func TestProcessStartTimeOfHelper(t *testing.T) {
	p := testutil.Start(t, "sysv", nil)
	v := mustCall(t, p, "self")
	require.Len(t, v, 2)
	assert.Equal(t, p.Pid(), atoi(t, v[0]), "the helper's own pid")
	st, err := kernel.ProcessStartTime(p.Pid())
	require.NoError(t, err)
	assert.Equal(t, v[1], fmt.Sprint(st), "we read the start time the helper reads of itself")

	_, err = kernel.ProcessStartTime(0)
	require.ErrorIs(t, err, kernel.ESRCH)
	_, err = kernel.ProcessStartTime(-5)
	require.ErrorIs(t, err, kernel.ESRCH)
}

// ProcessCPUTime reads another process's CPU time from outside it, and
// its own: each grows by what the process runs. A pid that names no
// process is an error.
func TestProcessCPUTime(t *testing.T) {
	p := testutil.Start(t, "sysv", nil)
	mustCall(t, p, "self") // the helper is up and waits for its next line
	c0, err := kernel.ProcessCPUTime(p.Pid())
	require.NoError(t, err)
	mustCall(t, p, "spin 100")
	c1, err := kernel.ProcessCPUTime(p.Pid())
	require.NoError(t, err)
	assert.GreaterOrEqual(t, c1-c0, 90*time.Millisecond, "100 ms of CPU, by the helper's getrusage, shows (with a tick of slack)")

	own0, err := kernel.ProcessCPUTime(os.Getpid())
	require.NoError(t, err)
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	own1, err := kernel.ProcessCPUTime(os.Getpid())
	require.NoError(t, err)
	assert.Greater(t, own1, own0, "this process's own clock moves")

	p.Send("exit 0")
	require.Equal(t, 0, p.Wait(lineTimeout))
	_, err = kernel.ProcessCPUTime(p.Pid())
	require.ErrorIs(t, err, kernel.EINVAL, "a reaped process has no clock")
}

func TestProcessAlive(t *testing.T) {
	pid, start := kernel.Self()
	assert.True(t, kernel.ProcessAlive(pid, start))
	assert.True(t, kernel.ProcessAlive(pid, 0), "start 0 means any process with that pid")
	assert.False(t, kernel.ProcessAlive(pid, start+1), "same pid, another start time: a reused pid")
	assert.False(t, kernel.ProcessAlive(0, 0))
	assert.False(t, kernel.ProcessAlive(-1, 0))

	p := testutil.Start(t, "sysv", nil)
	hpid := p.Pid()
	hstart, err := kernel.ProcessStartTime(hpid)
	require.NoError(t, err)
	assert.True(t, kernel.ProcessAlive(hpid, hstart))
	p.Send("exit 0")
	require.Equal(t, 0, p.Wait(lineTimeout))
	assert.False(t, kernel.ProcessAlive(hpid, hstart), "an exited process")
	assert.False(t, kernel.ProcessAlive(hpid, 0))
}

// ProcessExiting: false for a live process, true from its kill on (a
// pending SIGKILL, exiting, a zombie not yet reaped) and once it is gone.
func TestProcessExiting(t *testing.T) {
	pid, _ := kernel.Self()
	assert.False(t, kernel.ProcessExiting(pid))
	p := testutil.Start(t, "sysv", nil)
	mustCall(t, p, "self")
	assert.False(t, kernel.ProcessExiting(p.Pid()))
	require.NoError(t, kernel.Kill(p.Pid(), kernel.SIGKILL))
	testutil.Eventually(t, lineTimeout, "exiting once killed", func() bool { return kernel.ProcessExiting(p.Pid()) })
	testutil.Eventually(t, lineTimeout, "a zombie", func() bool {
		_, err := kernel.ProcessStartTime(p.Pid())
		return errors.Is(err, kernel.ESRCH)
	})
	assert.True(t, kernel.ProcessExiting(p.Pid()), "a zombie, not reaped")
	p.Wait(lineTimeout)
	assert.True(t, kernel.ProcessExiting(p.Pid()), "gone")
}

// ProcessExiting's reading of /proc/pid/stat, on lines as the kernel
// writes them (the main thread's: state, flags, pending signals).
func TestStatExiting(t *testing.T) {
	line := func(state string, flags, sigs uint64) []string {
		// Fields 3 on of "1234 (a b) S 1 ...": state, then 5 fields up
		// to flags (field 9), then 21 up to the signal field (31).
		f := []string{state, "1", "1", "1", "0", "-1", fmt.Sprint(flags)}
		for len(f) < 28 {
			f = append(f, "0")
		}
		return append(f, fmt.Sprint(sigs), "0", "0", "0")
	}
	const running = 0x00400040 // PF_FORKNOEXEC | PF_RANDOMIZE, say
	assert.False(t, kernel.StatExiting(line("S", running, 0)), "alive")
	assert.False(t, kernel.StatExiting(line("R", running, 1<<9 /* SIGUSR1 */)), "alive, a signal pending")
	assert.True(t, kernel.StatExiting(line("R", running|0x4, 0)), "PF_EXITING")
	assert.True(t, kernel.StatExiting(line("D", running|0x200, 0)), "PF_DUMPCORE")
	assert.True(t, kernel.StatExiting(line("S", running, 1<<(kernel.SIGKILL-1))), "SIGKILL pending")
	assert.True(t, kernel.StatExiting(line("Z", 0, 0)), "a zombie")
	assert.False(t, kernel.StatExiting([]string{"S", "1"}), "a short line")
}

// A process whose /proc entry cannot be read for want of a file
// descriptor is not taken for dead: callers free what a dead one held.
func TestProcessAliveWithoutFDs(t *testing.T) {
	pid, start := kernel.Self()
	p := testutil.Start(t, "sysv", nil)
	v, err := call(t, p, "alive-nofd %d %d", pid, start)
	require.NoError(t, err)
	assert.Equal(t, []string{"true"}, v)
}

func TestPidfd(t *testing.T) {
	p := testutil.Start(t, "sysv", nil)
	fd, err := kernel.PidfdOpen(p.Pid())
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = kernel.Close(fd)
		}
	})

	exited, err := kernel.PidfdExited(fd)
	require.NoError(t, err)
	assert.False(t, exited, "the helper is running")
	mustCall(t, p, "self") // still alive after a round trip
	exited, err = kernel.PidfdExited(fd)
	require.NoError(t, err)
	assert.False(t, exited)

	p.Send("exit 3")
	require.Equal(t, 3, p.Wait(lineTimeout))
	exited, err = kernel.PidfdExited(fd)
	require.NoError(t, err)
	assert.True(t, exited, "the helper exited and was reaped")

	_, err = kernel.PidfdOpen(-1)
	require.ErrorIs(t, err, kernel.EINVAL)
	_, err = kernel.PidfdExited(-1)
	require.ErrorIs(t, err, kernel.EBADF)
	closed = true
	require.NoError(t, kernel.Close(fd))
	_, err = kernel.PidfdExited(fd)
	require.ErrorIs(t, err, kernel.EBADF, "a closed descriptor is no exited process")
	require.ErrorIs(t, kernel.Close(-1), kernel.EBADF)
}

func TestPidfdOfKilledProcess(t *testing.T) {
	p := testutil.Start(t, "sysv", nil)
	fd, err := kernel.PidfdOpen(p.Pid())
	require.NoError(t, err)
	t.Cleanup(func() { _ = kernel.Close(fd) })
	p.Kill()
	exited, err := kernel.PidfdExited(fd)
	require.NoError(t, err)
	assert.True(t, exited)
	// The pid is gone: opening a new pidfd for it fails.
	_, err = kernel.PidfdOpen(p.Pid())
	require.ErrorIs(t, err, kernel.ESRCH)
}

func TestEpollPidfd(t *testing.T) {
	ep, err := kernel.EpollCreate()
	require.NoError(t, err)
	t.Cleanup(func() { _ = ep.Close() })

	ready, err := ep.Wait(0)
	require.NoError(t, err)
	assert.Empty(t, ready)

	a := testutil.Start(t, "sysv", nil)
	b := testutil.Start(t, "sysv", nil)
	fda, err := kernel.PidfdOpen(a.Pid())
	require.NoError(t, err)
	t.Cleanup(func() { _ = kernel.Close(fda) })
	fdb, err := kernel.PidfdOpen(b.Pid())
	require.NoError(t, err)
	t.Cleanup(func() { _ = kernel.Close(fdb) })

	// Data round-trips all 64 bits.
	const dataA, dataB = uint64(0xdead_beef_0000_0001), uint64(2)
	require.NoError(t, ep.Add(fda, dataA))
	require.NoError(t, ep.Add(fdb, dataB))
	require.Error(t, ep.Add(fda, dataA), "added twice")
	ready, err = ep.Wait(0)
	require.NoError(t, err)
	assert.Empty(t, ready, "both helpers alive")

	a.Send("exit 0")
	ready, err = ep.Wait(int(lineTimeout / time.Millisecond))
	require.NoError(t, err)
	assert.Equal(t, []uint64{dataA}, ready, "the exit of a fires its pidfd only")

	require.NoError(t, ep.Remove(fda))
	require.Error(t, ep.Remove(fda), "not watched any more")
	ready, err = ep.Wait(0)
	require.NoError(t, err)
	assert.Empty(t, ready)

	b.Kill()
	ready, err = ep.Wait(int(lineTimeout / time.Millisecond))
	require.NoError(t, err)
	assert.Equal(t, []uint64{dataB}, ready)

	require.ErrorIs(t, ep.Add(-1, 0), kernel.EBADF)
}

func TestEventfd(t *testing.T) {
	ep, err := kernel.EpollCreate()
	require.NoError(t, err)
	t.Cleanup(func() { _ = ep.Close() })
	fd, err := kernel.Eventfd()
	require.NoError(t, err)
	t.Cleanup(func() { _ = kernel.Close(fd) })
	require.NoError(t, ep.Add(fd, 7))

	ready, err := ep.Wait(0)
	require.NoError(t, err)
	assert.Empty(t, ready)
	require.NoError(t, kernel.EventfdSignal(fd))
	require.NoError(t, kernel.EventfdSignal(fd))
	ready, err = ep.Wait(-1)
	require.NoError(t, err)
	assert.Equal(t, []uint64{7}, ready)
	kernel.EventfdDrain(fd)
	ready, err = ep.Wait(0)
	require.NoError(t, err)
	assert.Empty(t, ready, "drained")

	require.Error(t, kernel.EventfdSignal(-1))
}

func TestCreds(t *testing.T) {
	c, err := kernel.SelfCreds()
	require.NoError(t, err)
	assert.Equal(t, os.Getpid(), c.PID)
	assert.Equal(t, uint32(os.Geteuid()), c.UID)
	assert.Equal(t, uint32(os.Getegid()), c.GID)

	// CAP_IPC_OWNER as read from /proc is what the kernel applies: a
	// mode-0 segment given to another uid can be attached iff we have it.
	other := uint32(testutil.Nobody)
	if c.UID == other {
		other = 12345
	}
	id := newShm(t, 4096, 0)
	require.NoError(t, kernel.ShmctlSet(id, other, other, 0))
	b, err := kernel.Shmat(id, kernel.SHM_RDONLY)
	if c.IPCOwner {
		require.NoError(t, err)
		require.NoError(t, kernel.Shmdt(b))
	} else {
		require.ErrorIs(t, err, kernel.EACCES)
	}

	_, err = kernel.ProcessCreds(-1)
	require.ErrorIs(t, err, kernel.ESRCH)
}

func TestProcessCredsOfNobody(t *testing.T) {
	testutil.RequireRoot(t)
	p := testutil.Start(t, "sysv", nil, testutil.AsNobody())
	c, err := kernel.ProcessCreds(p.Pid())
	require.NoError(t, err)
	assert.Equal(t, p.Pid(), c.PID)
	assert.Equal(t, uint32(testutil.Nobody), c.UID)
	assert.Equal(t, uint32(testutil.Nobody), c.GID)
	assert.Empty(t, c.Groups)
	assert.False(t, c.IPCOwner)
	assert.False(t, c.SysAdmin)
	assert.False(t, c.SysResource)
}

// abstractAddr is a unix socket address in the abstract namespace: no file,
// no permission bits, reachable by every uid.
func abstractAddr(t *testing.T) string {
	return fmt.Sprintf("@usysv-kernel-test-%d-%x", os.Getpid(), uint32(testutil.Key(t)))
}

func listen(t *testing.T) *net.UnixListener {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: abstractAddr(t), Net: "unix"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func TestPeerCredSameProcess(t *testing.T) {
	l := listen(t)
	c, err := net.Dial("unix", l.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	s, err := l.AcceptUnix()
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })

	pid, uid, gid, err := kernel.PeerCred(s)
	require.NoError(t, err)
	assert.Equal(t, os.Getpid(), pid)
	assert.Equal(t, uint32(os.Geteuid()), uid)
	assert.Equal(t, uint32(os.Getegid()), gid)
	// Both ends see the same process.
	pid, _, _, err = kernel.PeerCred(c.(*net.UnixConn))
	require.NoError(t, err)
	assert.Equal(t, os.Getpid(), pid)

	require.NoError(t, s.Close())
	_, _, _, err = kernel.PeerCred(s)
	require.Error(t, err, "a closed connection")
}

func TestPeerCredOfNobody(t *testing.T) {
	testutil.RequireRoot(t)
	l := listen(t)
	p := testutil.Start(t, "sysv", nil, testutil.AsNobody())
	mustCall(t, p, "dial %s", l.Addr().String())
	s, err := l.AcceptUnix()
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	pid, uid, gid, err := kernel.PeerCred(s)
	require.NoError(t, err)
	assert.Equal(t, p.Pid(), pid, "the kernel's word for who connected")
	assert.Equal(t, uint32(testutil.Nobody), uid)
	assert.Equal(t, uint32(testutil.Nobody), gid)
}

func TestKill(t *testing.T) {
	p := testutil.Start(t, "sysv", nil)
	require.NoError(t, kernel.Kill(p.Pid(), kernel.SIGSTOP))
	testutil.Eventually(t, lineTimeout, "the helper to stop", func() bool { return testutil.ProcState(p.Pid()) == "T" })
	require.NoError(t, kernel.Kill(p.Pid(), kernel.SIGCONT))
	mustCall(t, p, "self")
	require.NoError(t, kernel.Kill(p.Pid(), kernel.SIGTERM))
	assert.Equal(t, -1, p.Wait(lineTimeout), "killed by a signal")
	require.ErrorIs(t, kernel.Kill(p.Pid(), 0), kernel.ESRCH)
}

func TestChildAttr(t *testing.T) {
	a := kernel.ChildAttr(false, 1, 2, nil)
	assert.Nil(t, a.Credential)
	assert.True(t, a.Setpgid)
	assert.Equal(t, kernel.SIGKILL, int(a.Pdeathsig))
	a = kernel.ChildAttr(true, 1, 2, []uint32{3})
	require.NotNil(t, a.Credential)
	assert.Equal(t, uint32(1), a.Credential.Uid)
	assert.Equal(t, uint32(2), a.Credential.Gid)
	assert.Equal(t, []uint32{3}, a.Credential.Groups)
}

func TestUnread(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = kernel.Close(fds[0]); _ = kernel.Close(fds[1]) })
	n, err := kernel.Unread(fds[1])
	require.NoError(t, err)
	assert.Zero(t, n)
	_, err = unix.Write(fds[0], []byte("hello"))
	require.NoError(t, err)
	n, err = kernel.Unread(fds[1])
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	_, err = unix.Read(fds[1], make([]byte, 2))
	require.NoError(t, err)
	n, err = kernel.Unread(fds[1])
	require.NoError(t, err)
	assert.Equal(t, 3, n, "what is left")

	_, err = kernel.Unread(-1)
	assert.ErrorIs(t, err, kernel.EBADF)
}
