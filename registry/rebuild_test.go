package registry

import (
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// What a process that can map a segment writes into its header does not
// survive a take-over: the rebuild (each take-over's, here a restart's)
// takes the owner from the kernel segment, which such a process cannot
// change, and the mode only as far as the kernel segment's grants each
// class: a class the object gave nothing gets nothing. (Before, the
// tampered owner and mode were adopted: the mapper owned the object after
// the next take-over. Within a class that has access, read can still
// become read-write: the kernel segment's mode cannot tell them apart.)
func TestRebuildDistrustsHeaderPerms(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "reg.sock")
	s, c := startServer2(t, sock)
	id, err := c.Get(msgReq(testutil.Key(t), creat|excl|0o640))
	require.NoError(t, err)
	defer func() { _ = c.Remove(shm.KindMsg, id) }()
	seg, err := shm.Map(id, shm.KindMsg, c.Namespace())
	require.NoError(t, err)
	defer seg.Close()
	seg.SetPerm(65534, 65534, 0o646, seg.Ctime()) // the tampering: others get read-write
	c.Close()
	require.NoError(t, s.Close())

	_, c = startServer2(t, sock)
	o, err := c.Stat(shm.KindMsg, id)
	require.NoError(t, err)
	want := [3]uint32{uint32(os.Geteuid()), uint32(os.Getegid()), 0o640}
	assert.Equal(t, want, [3]uint32{o.Perm.UID, o.Perm.GID, o.Perm.Mode}, "the object's permissions")
	uid, gid, mode, _ := seg.Perm()
	assert.Equal(t, want, [3]uint32{uid, gid, mode}, "the header's copy, put back")
	ds, err := kernel.ShmctlStat(id)
	require.NoError(t, err)
	assert.Equal(t, KernelMode(0o640), ds.Perm.Mode&0o777, "the kernel segment's mode")
}

// A host killed inside IPC_SET after the header but before the kernel
// segment: the rebuild makes the two agree again (here the kernel
// segment's mode, left as before the IPC_SET, decides).
func TestRebuildKernelModeAgrees(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "reg.sock")
	s, c := startServer2(t, sock)
	id, err := c.Get(msgReq(testutil.Key(t), creat|excl|0o600))
	require.NoError(t, err)
	defer func() { _ = c.Remove(shm.KindMsg, id) }()
	ds, err := kernel.ShmctlStat(id)
	require.NoError(t, err)
	require.NoError(t, kernel.ShmctlSet(id, ds.Perm.UID, ds.Perm.GID, KernelMode(0o666))) // the kernel's half of an IPC_SET to 0666 only
	c.Close()
	require.NoError(t, s.Close())

	_, c = startServer2(t, sock)
	o, err := c.Stat(shm.KindMsg, id)
	require.NoError(t, err)
	ds, err = kernel.ShmctlStat(id)
	require.NoError(t, err)
	assert.Equal(t, KernelMode(o.Perm.Mode), ds.Perm.Mode&0o777, "the kernel segment's mode is the object's (%#o)", o.Perm.Mode)
}

// Two objects that claim one key after a take-over (a mapper wrote the
// key of another into its own object's header, checksum and all): a get
// of the key finds neither, so the forger does not get the other's
// callers; both stay usable by id. (Before, the older kept the key, the
// other was dropped from the table and leaked.)
func TestRebuildDuplicateKey(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "reg.sock")
	s, c := startServer2(t, sock)
	key := testutil.Key(t)
	forger, err := c.Get(msgReq(kernel.IPC_PRIVATE, creat|0o600))
	require.NoError(t, err)
	victim, err := c.Get(msgReq(key, creat|excl|0o600))
	require.NoError(t, err)
	defer func() { _ = c.Remove(shm.KindMsg, forger); _ = c.Remove(shm.KindMsg, victim) }()
	mem, err := kernel.Shmat(forger, 0)
	require.NoError(t, err)
	binary.LittleEndian.PutUint32(mem[32:], uint32(key))
	binary.LittleEndian.PutUint64(mem[72:], xxhash.Sum64(mem[:72]))
	require.NoError(t, kernel.Shmdt(mem))
	c.Close()
	require.NoError(t, s.Close())

	s2, c := startServer2(t, sock)
	_, err = c.Get(msgReq(key, 0))
	require.ErrorIs(t, err, kernel.ENOENT, "neither keeps the key")
	for _, id := range []int{forger, victim} {
		_, err := c.Stat(shm.KindMsg, id)
		require.NoError(t, err, "segment %d is still in the table", id)
	}
	id, err := c.Get(msgReq(key, creat|0o600))
	require.NoError(t, err)
	defer func() { _ = c.Remove(shm.KindMsg, id) }()
	assert.NotContains(t, []int{forger, victim}, id, "a get that creates makes a new one")

	// The two headers were made keyless: at the next take-over the new
	// object keeps the key.
	c.Close()
	require.NoError(t, s2.Close())
	_, c = startServer2(t, sock)
	got, err := c.Get(msgReq(key, 0))
	require.NoError(t, err)
	assert.Equal(t, id, got, "the object made for the key keeps it")
}

// Two spellings of one socket (a directory reached through a symbolic
// link) are one registry: a host on one takes over the other's objects.
// (Before, each had its own namespace: the second created a new object
// for the same key, and the first leaked.)
func TestSocketSpellings(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	require.NoError(t, os.Mkdir(real, 0o700))
	require.NoError(t, os.Symlink(real, filepath.Join(dir, "alias")))
	key := testutil.Key(t)
	s, c := startServer2(t, filepath.Join(dir, "alias", "reg.sock"))
	id, err := c.Get(msgReq(key, creat|excl|0o600))
	require.NoError(t, err)
	c.Close()
	require.NoError(t, s.Close())

	_, c = startServer2(t, filepath.Join(real, "reg.sock"))
	got, err := c.Get(msgReq(key, 0))
	require.NoError(t, err)
	assert.Equal(t, id, got)
	require.NoError(t, c.Remove(shm.KindMsg, id))
}

// Only a stale socket is replaced at the socket's path: a regular file or
// a directory there (a mistyped -socket, USYSV_SOCKET) is an error and
// stays. (Before, either was removed and a socket put in its place.)
func TestSocketPathNotASocket(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "notes.txt")
	require.NoError(t, os.WriteFile(file, []byte("precious"), 0o600))
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.Mkdir(empty, 0o700))
	for _, path := range []string{file, empty} {
		s, err := NewServer(path, Limits{})
		if s != nil {
			_ = s.Close()
		}
		require.ErrorIs(t, err, kernel.EEXIST, path)
		fi, err := os.Lstat(path)
		require.NoError(t, err, "%s is still there", path)
		assert.NotEqual(t, os.ModeSocket, fi.Mode().Type())
	}
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, "precious", string(b))

	// A stale socket (its server gone without removing it) is replaced.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	require.NoError(t, err)
	ln.SetUnlinkOnClose(false)
	require.NoError(t, ln.Close())
	s, err := NewServer(stale, Limits{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
}

// A take-over keeps the execute bits of an object's mode, which the
// kernel segment's mode cannot tell (it gives a class read-write or
// nothing): Linux keeps them, and reports them in IPC_STAT. (Before, a
// class with neither r nor w lost its x: 0751 became 0750.)
func TestRebuildKeepsExecBits(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "reg.sock")
	s, c := startServer2(t, sock)
	id, err := c.Get(msgReq(testutil.Key(t), creat|excl|0o751))
	require.NoError(t, err)
	c.Close()
	require.NoError(t, s.Close())
	_, c = startServer2(t, sock)
	o, err := c.Stat(shm.KindMsg, id)
	require.NoError(t, err)
	assert.Equal(t, uint32(0o751), o.Perm.Mode, "mode after the take-over")
	require.NoError(t, c.Remove(shm.KindMsg, id))
}

// A registry's rebuild attaches no keyed segment, nor one of a size
// without shm.SizeMark: usysv makes only IPC_PRIVATE ones, of such sizes,
// and an attach would change another program's segment (its shm_atime,
// shm_lpid and, meanwhile, shm_nattch). (Before, every segment of a
// header's size was attached to read its header, and a parallel test
// binary's registry made kernel TestShmList fail.)
func TestRebuildLeavesKeyedSegments(t *testing.T) {
	id, err := kernel.Shmget(testutil.Key(t), 1<<16+shm.SizeMark, kernel.IPC_CREAT|kernel.IPC_EXCL|0o600)
	require.NoError(t, err)
	testutil.Track(t, "shm", id)
	plain, err := kernel.Shmget(kernel.IPC_PRIVATE, 1<<16, 0o600)
	require.NoError(t, err)
	testutil.Track(t, "shm", plain)
	private, err := kernel.Shmget(kernel.IPC_PRIVATE, 1<<16+shm.SizeMark, 0o600)
	require.NoError(t, err)
	testutil.Track(t, "shm", private)

	startServer(t, Limits{}) // rebuilds from the kernel's list

	for what, id := range map[string]int{"keyed": id, "without the mark": plain} {
		ds, err := kernel.ShmctlStat(id)
		require.NoError(t, err)
		assert.Zero(t, ds.Atime, "the %s segment was never attached", what)
		assert.Zero(t, ds.Lpid, what)
	}
	ds, err := kernel.ShmctlStat(private)
	require.NoError(t, err)
	assert.NotZero(t, ds.Atime, "an IPC_PRIVATE segment with the mark is peeked at")
}

// An object of the namespace that another registry made while both served
// the socket (guard.go), which this one has not adopted yet, is served by
// id at once: the first stat, set or remove of it takes it in, key and
// all. Segments of another namespace stay unknown. (Before, such calls
// said EINVAL until the other registry asked for the adoption, and a
// Remove retried after its connection broke took that for "already
// removed", so the object lived on.)
func TestServesObjectMadeElsewhere(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "reg.sock")
	_, c := startServer2(t, sock)
	elsewhere := func(key int, ns uint64) int {
		p := msgReq(key, 0).Layout
		p.Kind, p.Namespace, p.Key = shm.KindMsg, ns, int32(key)
		p.CUID, p.CGID = uint32(os.Geteuid()), uint32(os.Getegid())
		id, err := shm.Create(p, p.CUID, p.CGID, 0o600, time.Now().Unix())
		require.NoError(t, err)
		t.Cleanup(func() { _ = kernel.ShmctlRemove(id) })
		return id
	}
	key := testutil.Key(t)
	keyed, private := elsewhere(key, c.Namespace()), elsewhere(kernel.IPC_PRIVATE, c.Namespace())
	foreign := elsewhere(kernel.IPC_PRIVATE, c.Namespace()+1)

	_, err := c.Stat(shm.KindSem, keyed)
	require.ErrorIs(t, err, kernel.EINVAL, "the wrong kind")
	o, err := c.Stat(shm.KindMsg, keyed)
	require.NoError(t, err)
	assert.Equal(t, keyed, o.ID)
	got, err := c.Get(msgReq(key, 0))
	require.NoError(t, err, "the adoption took the key in")
	assert.Equal(t, keyed, got)

	require.NoError(t, c.Remove(shm.KindMsg, private), "a remove adopts too")
	ds, err := kernel.ShmctlStat(private)
	if err == nil {
		assert.NotZero(t, ds.Perm.Mode&kernel.SHM_DEST, "the kernel segment is removed")
	}
	require.NoError(t, c.Remove(shm.KindMsg, keyed))

	_, err = c.Stat(shm.KindMsg, foreign)
	require.ErrorIs(t, err, kernel.EINVAL, "another namespace's object")
	require.ErrorIs(t, c.Remove(shm.KindMsg, foreign), kernel.EINVAL)
}
