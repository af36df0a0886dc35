package registry

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/killat"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

func init() {
	// serve SOCKET: host a registry on SOCKET, say "serving", report each
	// request dropped because its client was gone, and serve until stdin
	// closes. The new image of an "exec:" crash step does not serve: it
	// says "execed" and waits for stdin to close (a host that exec'd
	// another program).
	testutil.RegisterHelper("serve", func(args []string) int {
		if killat.Execed() {
			fmt.Println("execed")
			_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
			return 0
		}
		droppedHook = func() { fmt.Println("dropped") }
		s, err := NewServer(args[0], Limits{})
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		go func() { _ = s.Serve() }()
		fmt.Println("serving")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		_ = s.Close()
		return 0
	})
}

// Chaos finding F5: a registry whose host process is stopped (SIGSTOP,
// Ctrl-Z) cannot be taken over. Calls fail with ErrHostStopped after
// stoppedGrace instead of waiting out responseTimeout, and a creating Get
// that gave up is not applied when the host is continued.
func TestHostStopped(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "reg.sock")
	p := testutil.Start(t, "serve", []string{sock})
	p.Expect("serving", 10*time.Second)
	c, err := Dial(sock)
	require.NoError(t, err)
	defer c.Close()
	id, err := c.Get(semReq(kernel.IPC_PRIVATE, 1, 0o600))
	require.NoError(t, err)
	defer func() { assert.NoError(t, c.Remove(shm.KindSem, id)) }()

	p.Signal(kernel.SIGSTOP)
	stopped := true
	defer func() {
		if stopped {
			p.Signal(kernel.SIGCONT)
		}
	}()
	testutil.Eventually(t, 10*time.Second, "host stopped", func() bool { return kernel.ProcessStopped(p.Pid()) })
	_, err = c.Get(semReq(kernel.IPC_PRIVATE, 1, 0o600))
	require.ErrorIs(t, err, ErrHostStopped)
	require.ErrorIs(t, err, kernel.ETIMEDOUT)
	_, err = c.Stat(shm.KindSem, id)
	require.ErrorIs(t, err, ErrHostStopped, "after the connection was given up, a reconnection fails the same way")
	_, err = Dial(sock)
	require.ErrorIs(t, err, ErrHostStopped, "a new client")

	p.Signal(kernel.SIGCONT)
	stopped = false
	p.Expect("dropped", 10*time.Second)
	objs, err := c.List(shm.KindSem)
	require.NoError(t, err)
	require.Len(t, objs, 1, "the creation given up on was not applied")
	assert.Equal(t, id, objs[0].ID)
}

// A host stopped in the middle of a creation, after it checked that its
// client was still there: the client gives up (ErrHostStopped, "not
// applied"), and once continued the host finds the client gone and undoes
// the creation, kernel segment and all, instead of keeping an object that
// nobody knows of.
func TestHostStoppedInCreate(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "reg.sock")
	since := time.Now()
	p := testutil.Start(t, "serve", []string{sock}, testutil.Env(KillAtEnv+"=stop:create-added"))
	p.Expect("serving", 10*time.Second)
	stopped := false
	defer func() {
		if stopped || kernel.ProcessStopped(p.Pid()) {
			p.Signal(kernel.SIGCONT)
		}
	}()
	defer removeCreatedBy(t, p.Pid(), since)
	c, err := Dial(sock)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Get(semReq(kernel.IPC_PRIVATE, 1, 0o600))
	require.ErrorIs(t, err, ErrHostStopped)
	require.True(t, kernel.ProcessStopped(p.Pid()), "stopped at create-added")
	require.Len(t, createdBy(t, p.Pid(), since), 1, "the segment was made before the stop")

	p.Signal(kernel.SIGCONT)
	testutil.Eventually(t, 10*time.Second, "the creation undone", func() bool {
		return len(createdBy(t, p.Pid(), since)) == 0
	})
	objs, err := c.List(shm.KindSem)
	require.NoError(t, err)
	assert.Empty(t, objs, "no object that nobody knows of")
}
