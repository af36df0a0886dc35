package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/registry"
	"github.com/usysv/usysv/shm"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func init() {
	testutil.RegisterHelper("usysvd", func(args []string) int { return run(args) })
}

// The daemon serves its socket, stops cleanly on SIGTERM, and a restarted
// daemon finds the objects again.
func TestDaemonRestart(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "reg.sock")
	start := func() *testutil.Proc {
		p := testutil.Start(t, "usysvd", []string{"-socket", sock, "-semmni", "7"})
		testutil.Eventually(t, 10*time.Second, "daemon listening", func() bool {
			c, err := registry.Dial(sock)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
		return p
	}
	p := start()
	c, err := registry.Dial(sock)
	require.NoError(t, err)
	assert.Equal(t, p.Pid(), c.ServerPid())
	assert.Equal(t, 7, c.Limits().SEMMNI)
	key := testutil.Key(t)
	id, err := c.Get(registry.GetRequest{Kind: shm.KindSem, Key: int32(key), Count: 2,
		Flags: kernel.IPC_CREAT | kernel.IPC_EXCL | 0o640, Layout: shm.Params{Count: 2, Waiters: 2, BodySize: 64}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = kernel.ShmctlRemove(id) })
	c.Close()
	p.Signal(kernel.SIGTERM)
	require.Equal(t, 0, p.Wait(10*time.Second))
	_, err = os.Stat(sock)
	assert.ErrorIs(t, err, os.ErrNotExist, "socket removed on a clean stop")
	// The whole clean stop ran before the exit (before, Serve's return
	// ended the process while Close was still at work: its journal was
	// left behind on every stop).
	journals, err := filepath.Glob(sock + ".journal.*")
	require.NoError(t, err)
	assert.Empty(t, journals, "the journal removed on a clean stop")

	p2 := start()
	c2, err := registry.Dial(sock)
	require.NoError(t, err)
	defer c2.Close()
	assert.Equal(t, p2.Pid(), c2.ServerPid())
	got, err := c2.Get(registry.GetRequest{Kind: shm.KindSem, Key: int32(key)})
	require.NoError(t, err)
	assert.Equal(t, id, got)
	o, err := c2.Stat(shm.KindSem, id)
	require.NoError(t, err)
	assert.Equal(t, uint32(0o640), o.Perm.Mode)
	require.NoError(t, c2.Remove(shm.KindSem, id))
}

// A daemon whose socket directory is removed steps down and exits with
// status 1 (registry.ErrDisplaced); a daemon started once the directory is
// back finds the objects.
func TestDaemonDirectoryRemoved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	sock := filepath.Join(dir, "reg.sock")
	p := testutil.Start(t, "usysvd", []string{"-socket", sock})
	testutil.Eventually(t, 10*time.Second, "daemon listening", func() bool {
		c, err := registry.Dial(sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	c, err := registry.Dial(sock)
	require.NoError(t, err)
	id, err := c.Get(registry.GetRequest{Kind: shm.KindSem, Key: kernel.IPC_PRIVATE, Count: 1,
		Flags: 0o600, Layout: shm.Params{Count: 1, Waiters: 2, BodySize: 64}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = kernel.ShmctlRemove(id) })
	c.Close()
	require.NoError(t, os.Rename(dir, dir+".old"))
	require.Equal(t, 1, p.Wait(10*time.Second), "stepped down")
	_, err = os.Stat(dir)
	assert.ErrorIs(t, err, os.ErrNotExist, "not made again")

	p2 := testutil.Start(t, "usysvd", []string{"-socket", sock})
	testutil.Eventually(t, 10*time.Second, "a new daemon listening", func() bool {
		c, err = registry.Dial(sock)
		return err == nil
	})
	defer c.Close()
	assert.Equal(t, p2.Pid(), c.ServerPid())
	_, err = c.Stat(shm.KindSem, id)
	assert.NoError(t, err, "the new daemon has the object")
	require.NoError(t, c.Remove(shm.KindSem, id))
	p2.Signal(kernel.SIGTERM)
	require.Equal(t, 0, p2.Wait(10*time.Second))
}

func TestBadArgs(t *testing.T) {
	assert.Equal(t, 2, run([]string{"extra"}))
	assert.Equal(t, 2, run([]string{"-nosuchflag"}))
	// A limit of 0 or less is refused, not taken as the default.
	for _, a := range [][]string{{"-semmni", "0"}, {"-msgmni", "-1"}, {"-semmsl", "0"}, {"-msgmnb", "-5"}, {"-semmns", "-1"}} {
		assert.Equal(t, 2, run(a), "%v", a)
	}
}
