package kernel_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/kernel"
)

func TestFlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	a, err := os.Create(path)
	require.NoError(t, err)
	defer a.Close()
	b, err := os.Open(path) // a second open file description: flock conflicts
	require.NoError(t, err)
	defer b.Close()

	require.NoError(t, kernel.Flock(int(a.Fd()), kernel.LOCK_EX))
	require.ErrorIs(t, kernel.Flock(int(b.Fd()), kernel.LOCK_EX|kernel.LOCK_NB), kernel.EWOULDBLOCK)
	require.ErrorIs(t, kernel.Flock(int(b.Fd()), kernel.LOCK_SH|kernel.LOCK_NB), kernel.EWOULDBLOCK)
	require.NoError(t, kernel.Flock(int(a.Fd()), kernel.LOCK_UN))
	require.NoError(t, kernel.Flock(int(b.Fd()), kernel.LOCK_SH|kernel.LOCK_NB))
	require.NoError(t, kernel.Flock(int(a.Fd()), kernel.LOCK_SH|kernel.LOCK_NB), "shared locks share")
	require.ErrorIs(t, kernel.Flock(-1, kernel.LOCK_EX), kernel.EBADF)
}

func TestStatDevIno(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	require.NoError(t, os.WriteFile(a, nil, 0o644))
	require.NoError(t, os.WriteFile(b, nil, 0o644))
	require.NoError(t, os.Link(a, filepath.Join(dir, "hard")))
	require.NoError(t, os.Symlink(a, filepath.Join(dir, "sym")))

	devA, inoA, err := kernel.StatDevIno(a)
	require.NoError(t, err)
	devB, inoB, err := kernel.StatDevIno(b)
	require.NoError(t, err)
	assert.Equal(t, devA, devB, "same directory, same device")
	assert.NotEqual(t, inoA, inoB)
	for _, other := range []string{"hard", "sym"} {
		dev, ino, err := kernel.StatDevIno(filepath.Join(dir, other))
		require.NoError(t, err)
		assert.Equal(t, []uint64{devA, inoA}, []uint64{dev, ino}, "%s names the same file", other)
	}
	_, _, err = kernel.StatDevIno(filepath.Join(dir, "missing"))
	require.ErrorIs(t, err, kernel.ENOENT)
}

func TestStatOwner(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	require.NoError(t, os.WriteFile(f, nil, 0o600))
	require.NoError(t, os.Chmod(f, 0o4751|os.ModeSetuid))
	uid, mode, err := kernel.StatOwner(f)
	require.NoError(t, err)
	assert.Equal(t, uint32(os.Geteuid()), uid)
	assert.Equal(t, uint32(0o4751), mode, "permission and setuid bits, no file type")

	require.NoError(t, os.Symlink(f, filepath.Join(dir, "sym")))
	_, mode, err = kernel.StatOwner(filepath.Join(dir, "sym"))
	require.NoError(t, err)
	assert.Equal(t, uint32(0o777), mode, "the link itself, not its target")
	_, _, err = kernel.StatOwner(filepath.Join(dir, "missing"))
	require.ErrorIs(t, err, kernel.ENOENT)
}

func TestStopSignals(t *testing.T) {
	var names []string
	for _, s := range kernel.StopSignals() {
		names = append(names, s.String())
	}
	assert.ElementsMatch(t, []string{"terminated", "interrupt", "hangup"}, names)
}

func TestDupAbove(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	require.NoError(t, err)
	defer f.Close()
	fd := int(f.Fd())

	dup, err := kernel.DupAbove(f, fd+10)
	require.NoError(t, err)
	require.Greater(t, dup, fd+10)
	g := os.NewFile(uintptr(dup), "dup")
	defer g.Close()
	a, err := f.Stat()
	require.NoError(t, err)
	b, err := g.Stat()
	require.NoError(t, err)
	assert.True(t, os.SameFile(a, b), "the same file")

	dup, err = kernel.DupAbove(f, fd-1)
	require.NoError(t, err)
	assert.Equal(t, -1, dup, "already above: no duplicate")

	require.NoError(t, g.Close())
	_, err = kernel.DupAbove(g, 0)
	assert.Error(t, err, "a closed file")
}
