package testutil

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// sweepStale removes the directory of a test binary that is gone, and the
// usysv objects of its namespaces (its own and those of registries below
// its directory), and nothing else: not a live binary's,
// not one without an owner file or with a garbled one, not another
// namespace's objects.
func TestSweepStale(t *testing.T) {
	tmp := t.TempDir()
	pid, start := kernel.Self()
	mk := func(name, owner string) string {
		d := filepath.Join(tmp, dirPrefix+name)
		require.NoError(t, os.Mkdir(d, 0o700))
		if owner != "" {
			require.NoError(t, os.WriteFile(filepath.Join(d, ownerFile), []byte(owner), 0o644))
		}
		return d
	}
	object := func(dir string) int {
		p := shm.Params{Kind: shm.KindSem, Namespace: shm.Namespace(filepath.Join(dir, "registry.sock")),
			Key: 0x5eed, Count: 1, Waiters: 1, BodySize: 64}
		id, err := shm.Create(p, 0, 0, 0o600, 1)
		require.NoError(t, err)
		Track(t, "shm", id)
		return id
	}
	// Our own pid with another start time: a process of that pid that is
	// gone (the pid reused since).
	gone := mk("gone", fmt.Sprintf("%d %d\n", pid, start+1))
	live := mk("live", fmt.Sprintf("%d %d\n", pid, start))
	bare := mk("bare", "")
	garbled := mk("garbled", "pid?")
	goneID, liveID := object(gone), object(live)
	// Registries below the binary's directory (a chaos cluster's): one
	// known by its lock file, one by its socket.
	nested := func(dir, name string, socket bool) int {
		sock := filepath.Join(dir, name, "reg.sock")
		require.NoError(t, os.Mkdir(filepath.Dir(sock), 0o700))
		if socket {
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
			require.NoError(t, err)
			ln.SetUnlinkOnClose(false)
			require.NoError(t, ln.Close())
		} else {
			require.NoError(t, os.WriteFile(sock+".lock", nil, 0o666))
		}
		p := shm.Params{Kind: shm.KindMsg, Namespace: shm.Namespace(sock), Key: 0x5eed, Count: 1, Waiters: 1, BodySize: 64}
		id, err := shm.Create(p, 0, 0, 0o600, 1)
		require.NoError(t, err)
		Track(t, "shm", id)
		return id
	}
	goneNested := []int{nested(gone, "c1", false), nested(gone, "c2", true)}
	liveNested := nested(live, "c1", true)

	sweepStale(tmp)
	assert.NoDirExists(t, gone)
	for _, d := range []string{live, bare, garbled} {
		assert.DirExists(t, d)
	}
	RequireShmGone(t, goneID, "the gone binary's object is removed")
	for _, id := range goneNested {
		RequireShmGone(t, id, "the object of a registry below the gone binary's directory is removed")
	}
	for _, id := range []int{liveID, liveNested} {
		_, err := kernel.ShmctlStat(id)
		assert.NoError(t, err, "the live binary's objects are kept")
	}
}
