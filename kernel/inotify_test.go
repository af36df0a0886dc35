package kernel_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/kernel"
)

// An inotify instance in an Epoll fires when a watched directory loses an
// entry, has one renamed over, or goes itself, and not for a new entry.
func TestInotifyWatchEntries(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	require.NoError(t, os.Mkdir(dir, 0o755))
	for _, name := range []string{"a", "b", "c"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), nil, 0o600))
	}
	in, err := kernel.InotifyInit()
	require.NoError(t, err)
	t.Cleanup(func() { _ = in.Close() })
	ep, err := kernel.EpollCreate()
	require.NoError(t, err)
	t.Cleanup(func() { _ = ep.Close() })
	require.NoError(t, ep.Add(in.Fd(), 7))
	require.NoError(t, in.WatchEntries(dir))
	require.NoError(t, in.WatchEntries(dir), "watching again")

	quiet := func(what string) {
		t.Helper()
		ready, err := ep.Wait(0)
		require.NoError(t, err)
		assert.Empty(t, ready, what)
	}
	fires := func(what string) {
		t.Helper()
		ready, err := ep.Wait(int(lineTimeout / time.Millisecond))
		require.NoError(t, err)
		assert.Equal(t, []uint64{7}, ready, what)
		in.Drain()
		quiet(what + ", drained")
	}

	quiet("nothing happened")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "new"), nil, 0o600))
	quiet("an entry made")
	require.NoError(t, os.Remove(filepath.Join(dir, "a")))
	fires("an entry removed")
	require.NoError(t, os.Rename(filepath.Join(dir, "new"), filepath.Join(dir, "b")))
	fires("an entry renamed over another")
	require.NoError(t, os.RemoveAll(dir))
	fires("the directory removed")

	// Bad input: not a directory, and no such path.
	f := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(f, nil, 0o600))
	assert.ErrorIs(t, in.WatchEntries(f), kernel.ENOTDIR)
	assert.ErrorIs(t, in.WatchEntries(dir), kernel.ENOENT)
}
