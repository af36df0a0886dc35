package shm_test

import (
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// The contract SysV shm API (shm.Get, Attach, Detach, Stat, Set, Remove)
// against SEMANTICS.md A1, A2 and the shm items of A11–A13. Where it adds
// logic of its own over the kernel (Detach's attach table, id checks), the
// tests make the same call on the kernel and compare.

// get creates a segment by key for this test and removes it at the end.
func get(t *testing.T, key, size, mode int) int {
	t.Helper()
	id, err := shm.Get(key, size, shm.IPC_CREAT|shm.IPC_EXCL|mode)
	require.NoError(t, err)
	testutil.Track(t, "shm", id)
	return id
}

// attach attaches a segment until it is detached or the test ends.
func attach(t *testing.T, id, flags int) []byte {
	t.Helper()
	b, err := shm.Attach(id, flags)
	require.NoError(t, err)
	t.Cleanup(func() { _ = shm.Detach(b) })
	return b
}

func stat(t *testing.T, id int) shm.DS {
	t.Helper()
	ds, err := shm.Stat(id)
	require.NoError(t, err)
	kds, err := kernel.ShmctlStat(id)
	require.NoError(t, err)
	require.Equal(t, kds, ds, "shm.Stat and the kernel's IPC_STAT agree")
	return ds
}

func TestConstants(t *testing.T) {
	assert.Equal(t, 0, shm.IPC_PRIVATE)
	assert.Equal(t, 0o1000, shm.IPC_CREAT)
	assert.Equal(t, 0o2000, shm.IPC_EXCL)
	assert.Equal(t, 0o10000, shm.SHM_RDONLY)
	assert.Equal(t, 0o100000, shm.SHM_EXEC)
	assert.Equal(t, 0o1000, shm.SHM_DEST)
}

// TestGetCreates: A1.7 and the creation state of shmid_ds.
func TestGetCreates(t *testing.T) {
	key := testutil.Key(t)
	before := time.Now().Unix()
	id := get(t, key, 4, 0o751)
	after := time.Now().Unix()
	ds := stat(t, id)
	assert.Equal(t, int32(key), ds.Perm.Key)
	assert.Equal(t, uint32(0o751), ds.Perm.Mode, "mode = flags & 0777, execute bits kept")
	euid := uint32(kernel.Geteuid())
	assert.Equal(t, []uint32{euid, euid}, []uint32{ds.Perm.UID, ds.Perm.CUID})
	assert.Equal(t, ds.Perm.GID, ds.Perm.CGID)
	assert.Equal(t, uint64(4), ds.Segsz, "segsz keeps the requested size")
	assert.Equal(t, kernel.Getpid(), ds.Cpid)
	assert.Zero(t, ds.Lpid)
	assert.Zero(t, ds.Nattch)
	assert.Zero(t, ds.Atime)
	assert.Zero(t, ds.Dtime)
	assert.True(t, ds.Ctime >= before-2 && ds.Ctime <= after, "ctime %d in [%d, %d]", ds.Ctime, before-2, after)

	// The key finds it again: A1.4.
	again, err := shm.Get(key, 4, 0)
	require.NoError(t, err)
	assert.Equal(t, id, again)
	again, err = shm.Get(key, 1, shm.IPC_CREAT|0o666)
	require.NoError(t, err)
	assert.Equal(t, id, again)
	assert.Equal(t, uint32(0o751), stat(t, id).Perm.Mode, "IPC_CREAT on an existing key changes nothing")
}

func TestGetErrors(t *testing.T) {
	key := testutil.Key(t)
	_, err := shm.Get(key, 4096, 0o600)
	require.ErrorIs(t, err, kernel.ENOENT, "A1.2")
	_, err = shm.Get(key, 4096, shm.IPC_EXCL|0o600)
	require.ErrorIs(t, err, kernel.ENOENT, "A1.2: IPC_EXCL alone")

	id := get(t, key, 4096, 0o600)
	_, err = shm.Get(key, 4096, shm.IPC_CREAT|shm.IPC_EXCL|0o600)
	require.ErrorIs(t, err, kernel.EEXIST, "A1.3")
	_, err = shm.Get(key, 8192, 0o600)
	require.ErrorIs(t, err, kernel.EINVAL, "bigger than the existing segment")
	_, err = shm.Get(key, 8192, shm.IPC_CREAT|shm.IPC_EXCL|0o600)
	require.ErrorIs(t, err, kernel.EEXIST, "EEXIST before the size check (A1.6)")
	_, err = shm.Get(shm.IPC_PRIVATE, 0, 0o600)
	require.ErrorIs(t, err, kernel.EINVAL, "size 0")
	_, err = shm.Get(testutil.Key(t), -1, shm.IPC_CREAT|0o600)
	require.ErrorIs(t, err, kernel.EINVAL, "size above SHMMAX")
	_ = id
}

// TestGetPrivate: A1.1.
func TestGetPrivate(t *testing.T) {
	a, err := shm.Get(shm.IPC_PRIVATE, 128, 0o600) // < shm.HeaderSize: never peeked
	require.NoError(t, err)
	testutil.Track(t, "shm", a)
	b, err := shm.Get(shm.IPC_PRIVATE, 4096, shm.IPC_CREAT|shm.IPC_EXCL|0o600)
	require.NoError(t, err)
	testutil.Track(t, "shm", b)
	assert.NotEqual(t, a, b, "every IPC_PRIVATE get makes a new segment")
	assert.Zero(t, stat(t, a).Perm.Key)
}

// TestBadID: A1.10 for every call that takes an id.
func TestBadID(t *testing.T) {
	removed, err := shm.Get(shm.IPC_PRIVATE, 128, 0o600) // < shm.HeaderSize: never peeked
	require.NoError(t, err)
	require.NoError(t, shm.Remove(removed))
	bad := []int{-1, math.MinInt, math.MaxInt, removed, math.MaxInt32}
	if strconv.IntSize == 64 {
		// A live id plus 2^32: were it truncated to a C int, it would name
		// the live segment.
		live, err := shm.Get(shm.IPC_PRIVATE, 4096, 0o600)
		require.NoError(t, err)
		testutil.Track(t, "shm", live)
		bad = append(bad, int(uint64(live)+1<<32), int(uint64(live)|0xffffffff00000000))
	}
	for _, id := range bad {
		_, err := shm.Attach(id, 0)
		require.ErrorIs(t, err, kernel.EINVAL, "Attach(%d)", id)
		_, err = shm.Stat(id)
		require.ErrorIs(t, err, kernel.EINVAL, "Stat(%d)", id)
		require.ErrorIs(t, shm.Set(id, shm.DS{Perm: kernel.IpcPerm{Mode: 0o600}}), kernel.EINVAL, "Set(%d)", id)
		require.ErrorIs(t, shm.Remove(id), kernel.EINVAL, "Remove(%d)", id)
	}
}

// TestNattch counts attaches from this process and a helper; a process
// that exits detaches. A13 (shmctl01).
func TestNattch(t *testing.T) {
	id := get(t, testutil.Key(t), 4096, 0o600)
	a := attach(t, id, 0)
	b := attach(t, id, shm.SHM_RDONLY)
	ds := stat(t, id)
	assert.Equal(t, uint64(2), ds.Nattch)
	assert.Equal(t, kernel.Getpid(), ds.Lpid)
	assert.NotZero(t, ds.Atime)
	assert.Zero(t, ds.Dtime)

	a[100] = 42
	assert.Equal(t, byte(42), b[100], "two attaches, one memory")

	p := testutil.Start(t, "shm", nil)
	v := mustCall(t, p, "attach %d 0", id)
	assert.Equal(t, "4096", v[0])
	v = mustCall(t, p, "read %d 100", id)
	assert.Equal(t, "42", v[0], "the helper sees our write")
	mustCall(t, p, "write %d 101 7", id)
	assert.Equal(t, byte(7), a[101], "we see the helper's")
	ds = stat(t, id)
	assert.Equal(t, uint64(3), ds.Nattch)
	assert.Equal(t, p.Pid(), ds.Lpid, "lpid: the last to attach")
	v = mustCall(t, p, "stat %d", id)
	assert.Equal(t, "3", v[0])

	p.Send("exit 0")
	require.Equal(t, 0, p.Wait(lineTimeout))
	ds = stat(t, id)
	assert.Equal(t, uint64(2), ds.Nattch, "exit detaches")
	assert.Equal(t, p.Pid(), ds.Lpid)
	assert.NotZero(t, ds.Dtime)

	require.NoError(t, shm.Detach(a))
	require.NoError(t, shm.Detach(b))
	ds = stat(t, id)
	assert.Zero(t, ds.Nattch)
	assert.Equal(t, kernel.Getpid(), ds.Lpid)
}

// TestAttachSize: the slice covers shm_segsz, not the rounded-up pages.
func TestAttachSize(t *testing.T) {
	for _, size := range []int{1, 4, 4095, 4096, 4097, 3 * 4096} {
		id, err := shm.Get(shm.IPC_PRIVATE, size, 0o600)
		require.NoError(t, err)
		testutil.Track(t, "shm", id)
		b := attach(t, id, 0)
		assert.Len(t, b, size)
		b[size-1] = 1
	}
}

// TestReadOnlyAttachFaults: a write through a SHM_RDONLY attach is a
// SIGSEGV (shmat01); a write after Detach too (shmdt01). Run in a helper,
// which turns the fault into a recoverable panic and reports its address.
func TestReadOnlyAttachFaults(t *testing.T) {
	id := get(t, testutil.Key(t), 4096, 0o600)
	a := attach(t, id, 0)
	a[10] = 99
	p := testutil.Start(t, "shm", nil)
	mustCall(t, p, "attach %d %d", id, shm.SHM_RDONLY)
	v := mustCall(t, p, "read %d 10", id)
	assert.Equal(t, "99", v[0], "reading a read-only attach works")
	p.Send("write %d 10 1", id)
	assert.Equal(t, "fault 10", p.Line(lineTimeout), "the write faults at its own address")
	assert.Equal(t, byte(99), a[10], "and changed nothing")

	mustCall(t, p, "attach %d 0", id)
	mustCall(t, p, "write %d 11 5", id)
	assert.Equal(t, byte(5), a[11])
}

// TestDetach: Detach takes exactly what Attach returned, once. Whatever else
// it is given gives EINVAL, as the kernel's shmdt does for an address where
// no attach starts (shmdt02), and detaches nothing.
func TestDetach(t *testing.T) {
	id := get(t, testutil.Key(t), 2*4096, 0o600)
	b, err := shm.Attach(id, 0)
	require.NoError(t, err)
	for name, bad := range map[string][]byte{
		"nil":                    nil,
		"empty":                  b[:0],
		"unaligned sub-slice":    b[1:],
		"page-aligned sub-slice": b[4096:],
		"Go memory":              make([]byte, 8192),
	} {
		require.ErrorIs(t, shm.Detach(bad), kernel.EINVAL, name)
		if len(bad) > 0 {
			require.ErrorIs(t, kernel.Shmdt(bad), kernel.EINVAL, "%s: the kernel agrees", name)
		}
	}
	assert.Equal(t, uint64(1), stat(t, id).Nattch, "nothing was detached")

	// A slice that starts where the attach starts is the attach.
	require.NoError(t, shm.Detach(b[:10]))
	assert.Zero(t, stat(t, id).Nattch)
	require.ErrorIs(t, shm.Detach(b), kernel.EINVAL, "detached twice")

	// A kernel attach that did not come from Attach is not Detach's to undo.
	k, err := kernel.Shmat(id, 0)
	require.NoError(t, err)
	require.ErrorIs(t, shm.Detach(k), kernel.EINVAL)
	require.NoError(t, kernel.Shmdt(k))
}

// TestRemoveWhileAttached: A13 / C.12. IPC_RMID of an attached segment
// marks it SHM_DEST and makes its key private; Linux still lets it be
// attached by id; it goes away with the last detach.
func TestRemoveWhileAttached(t *testing.T) {
	key := testutil.Key(t)
	id := get(t, key, 128, 0o640) // < shm.HeaderSize: never peeked once keyless
	a := attach(t, id, 0)
	a[0] = 1
	require.NoError(t, shm.Remove(id))

	ds := stat(t, id)
	assert.Equal(t, uint32(shm.SHM_DEST|0o640), ds.Perm.Mode)
	assert.Zero(t, ds.Perm.Key)
	_, err := shm.Get(key, 4096, 0o600)
	require.ErrorIs(t, err, kernel.ENOENT, "the key is free again")
	other := get(t, key, 4096, 0o600)
	assert.NotEqual(t, id, other, "a new segment under the old key")

	b, err := shm.Attach(id, 0)
	require.NoError(t, err, "Linux attaches a SHM_DEST segment")
	assert.Equal(t, byte(1), b[0])
	assert.Equal(t, uint64(2), stat(t, id).Nattch)

	// IPC_SET keeps SHM_DEST; a second IPC_RMID is allowed.
	require.NoError(t, shm.Set(id, shm.DS{Perm: kernel.IpcPerm{Mode: 0o600}}))
	assert.Equal(t, uint32(shm.SHM_DEST|0o600), stat(t, id).Perm.Mode)
	require.NoError(t, shm.Remove(id))

	require.NoError(t, shm.Detach(b))
	require.NoError(t, shm.Detach(a))
	_, err = shm.Stat(id)
	require.ErrorIs(t, err, kernel.EINVAL, "gone with the last detach")
	_, err = shm.Attach(id, 0)
	require.ErrorIs(t, err, kernel.EINVAL)
}

// TestSet: A2.5.
func TestSet(t *testing.T) {
	id := get(t, testutil.Key(t), 4096, 0o600)
	before := stat(t, id)
	require.NoError(t, shm.Set(id, shm.DS{Perm: kernel.IpcPerm{UID: 1, GID: 2, Mode: 0o7777, CUID: 3, CGID: 4, Key: 5}}))
	ds := stat(t, id)
	assert.Equal(t, uint32(1), ds.Perm.UID)
	assert.Equal(t, uint32(2), ds.Perm.GID)
	assert.Equal(t, uint32(0o777), ds.Perm.Mode, "07777 reads back 0777")
	assert.Equal(t, before.Perm.CUID, ds.Perm.CUID, "cuid is not settable")
	assert.Equal(t, before.Perm.CGID, ds.Perm.CGID, "cgid is not settable")
	assert.Equal(t, before.Perm.Key, ds.Perm.Key, "the key is not settable")
	assert.Equal(t, before.Segsz, ds.Segsz)
	assert.GreaterOrEqual(t, ds.Ctime, before.Ctime)

	require.NoError(t, shm.Set(id, shm.DS{Perm: kernel.IpcPerm{UID: 1, GID: 2, Mode: 0o600 &^ 0o066}}))
	assert.Equal(t, uint32(0o600), stat(t, id).Perm.Mode)

	require.ErrorIs(t, shm.Set(id, shm.DS{Perm: kernel.IpcPerm{UID: 0xffffffff}}), kernel.EINVAL, "uid -1")
	require.ErrorIs(t, shm.Set(id, shm.DS{Perm: kernel.IpcPerm{GID: 0xffffffff}}), kernel.EINVAL, "gid -1")
	assert.Equal(t, uint32(1), stat(t, id).Perm.UID, "a failed Set changes nothing")
}

// TestPermissionsAsNobody: A1.5, A1.6, A2.1–A2.4 and shmat02/shmctl02 with
// a helper running as nobody on root's segments.
func TestPermissionsAsNobody(t *testing.T) {
	testutil.RequireRoot(t)
	key := testutil.Key(t)
	id := get(t, key, 4096, 0o600)
	p := testutil.Start(t, "shm", nil, testutil.AsNobody())

	_, err := call(t, p, "get %d 4096 %d", key, 0o400)
	require.ErrorIs(t, err, kernel.EACCES, "asking for read on a 0600 root segment")
	_, err = call(t, p, "get %d 4096 %d", key, 0o004)
	require.ErrorIs(t, err, kernel.EACCES, "every class's bits are one request")
	_, err = call(t, p, "get %d 8192 %d", key, 0o400)
	require.ErrorIs(t, err, kernel.EINVAL, "size before permission")
	v := mustCall(t, p, "get %d 4096 0", key)
	assert.Equal(t, id, atoi(t, v[0]), "asking for nothing always succeeds")
	v = mustCall(t, p, "get %d 4096 %d", key, shm.IPC_CREAT)
	assert.Equal(t, id, atoi(t, v[0]))
	_, err = call(t, p, "attach %d 0", id)
	require.ErrorIs(t, err, kernel.EACCES)
	_, err = call(t, p, "attach %d %d", id, shm.SHM_RDONLY)
	require.ErrorIs(t, err, kernel.EACCES)
	_, err = call(t, p, "stat %d", id)
	require.ErrorIs(t, err, kernel.EACCES)
	_, err = call(t, p, "set %d %d %d %d", id, testutil.Nobody, testutil.Nobody, 0o666)
	require.ErrorIs(t, err, kernel.EPERM, "IPC_SET needs ownership, not mode bits")
	_, err = call(t, p, "rm %d", id)
	require.ErrorIs(t, err, kernel.EPERM)

	// Read for others: read-only attaches, no read-write ones.
	require.NoError(t, shm.Set(id, shm.DS{Perm: kernel.IpcPerm{Mode: 0o644}}))
	mustCall(t, p, "attach %d %d", id, shm.SHM_RDONLY)
	_, err = call(t, p, "attach %d 0", id)
	require.ErrorIs(t, err, kernel.EACCES)
	v = mustCall(t, p, "stat %d", id)
	assert.Equal(t, "1", v[0])
	_, err = call(t, p, "rm %d", id)
	require.ErrorIs(t, err, kernel.EPERM, "mode 0666 would not help either")

	// Given to nobody with mode 0066: the owner class alone counts.
	require.NoError(t, shm.Set(id, shm.DS{Perm: kernel.IpcPerm{UID: testutil.Nobody, GID: testutil.Nobody, Mode: 0o066}}))
	_, err = call(t, p, "stat %d", id)
	require.ErrorIs(t, err, kernel.EACCES, "owner with mode 0066")
	mustCall(t, p, "set %d %d %d %d", id, testutil.Nobody, testutil.Nobody, 0o600)
	v = mustCall(t, p, "stat %d", id)
	assert.Equal(t, "600", v[2])
	// The creator (root, cuid) keeps its rights after giving it away.
	require.NoError(t, shm.Set(id, shm.DS{Perm: kernel.IpcPerm{Mode: 0o600}}))
	mustCall(t, p, "detach %d", id)
	_, err = call(t, p, "rm %d", id)
	require.ErrorIs(t, err, kernel.EPERM, "no longer the owner")
}

// TestOwnSegmentAsNobody: shmget04 — nobody's own mode-0 segment gives it
// no access; as owner it may still change and remove it.
func TestOwnSegmentAsNobody(t *testing.T) {
	testutil.RequireRoot(t)
	key := testutil.Key(t)
	p := testutil.Start(t, "shm", nil, testutil.AsNobody())
	v := mustCall(t, p, "get %d 4096 %d", key, shm.IPC_CREAT|shm.IPC_EXCL)
	id := atoi(t, v[0])
	testutil.Track(t, "shm", id)

	ds := stat(t, id)
	assert.Equal(t, uint32(testutil.Nobody), ds.Perm.UID)
	assert.Equal(t, uint32(testutil.Nobody), ds.Perm.CUID)
	assert.Zero(t, ds.Perm.Mode)
	assert.Equal(t, p.Pid(), ds.Cpid)

	for _, mode := range []int{0o400, 0o200, 0o600} {
		_, err := call(t, p, "get %d 4096 %d", key, mode)
		require.ErrorIs(t, err, kernel.EACCES, "mode %o", mode)
	}
	_, err := call(t, p, "attach %d %d", id, shm.SHM_RDONLY)
	require.ErrorIs(t, err, kernel.EACCES)

	// Root bypasses the mode (CAP_IPC_OWNER) and may IPC_SET (CAP_SYS_ADMIN).
	b := attach(t, id, 0)
	b[0] = 1
	require.NoError(t, shm.Set(id, shm.DS{Perm: kernel.IpcPerm{UID: testutil.Nobody, GID: testutil.Nobody, Mode: 0o400}}))
	mustCall(t, p, "attach %d %d", id, shm.SHM_RDONLY)
	mustCall(t, p, "rm %d", id)
	assert.Equal(t, uint32(shm.SHM_DEST|0o400), stat(t, id).Perm.Mode)
}
