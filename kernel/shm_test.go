package kernel_test

import (
	"math"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
)

func TestShmRoundTrip(t *testing.T) {
	key := testutil.Key(t)
	before := time.Now().Unix()
	id, err := kernel.Shmget(key, 5000, kernel.IPC_CREAT|kernel.IPC_EXCL|0o640)
	require.NoError(t, err)
	testutil.Track(t, "shm", id)

	ds, err := kernel.ShmctlStat(id)
	require.NoError(t, err)
	assert.Equal(t, int32(key), ds.Perm.Key)
	assert.Equal(t, uint32(0o640), ds.Perm.Mode)
	assert.Equal(t, uint32(kernel.Geteuid()), ds.Perm.UID)
	assert.Equal(t, uint32(kernel.Geteuid()), ds.Perm.CUID)
	assert.Equal(t, uint64(5000), ds.Segsz)
	assert.Equal(t, kernel.Getpid(), ds.Cpid)
	assert.Zero(t, ds.Lpid)
	assert.Zero(t, ds.Nattch)
	assert.Zero(t, ds.Atime)
	assert.Zero(t, ds.Dtime)
	assert.GreaterOrEqual(t, ds.Ctime, before-1)

	// Looking the key up again finds the same segment; asking for more
	// than it holds is EINVAL; IPC_EXCL is EEXIST.
	again, err := kernel.Shmget(key, 100, 0)
	require.NoError(t, err)
	assert.Equal(t, id, again)
	_, err = kernel.Shmget(key, 5001, 0)
	require.ErrorIs(t, err, kernel.EINVAL)
	_, err = kernel.Shmget(key, 100, kernel.IPC_CREAT|kernel.IPC_EXCL|0o600)
	require.ErrorIs(t, err, kernel.EEXIST)

	b := attach(t, id, 0)
	require.Len(t, b, 5000, "Shmat's slice covers shm_segsz")
	copy(b, "hello")
	ro := attach(t, id, kernel.SHM_RDONLY)
	assert.Equal(t, "hello", string(ro[:5]), "two attaches see the same memory")
	ds, err = kernel.ShmctlStat(id)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), ds.Nattch)
	assert.Equal(t, kernel.Getpid(), ds.Lpid)
	assert.NotZero(t, ds.Atime)

	require.NoError(t, kernel.Shmdt(ro))
	require.ErrorIs(t, kernel.Shmdt(ro), kernel.EINVAL, "second detach of one attach")
	ds, err = kernel.ShmctlStat(id)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), ds.Nattch)
	assert.NotZero(t, ds.Dtime)
}

func TestShmBadInput(t *testing.T) {
	_, err := kernel.Shmget(kernel.IPC_PRIVATE, 0, 0o600)
	require.ErrorIs(t, err, kernel.EINVAL, "size 0")
	_, err = kernel.Shmget(kernel.IPC_PRIVATE, -1, 0o600)
	require.ErrorIs(t, err, kernel.EINVAL, "size above SHMMAX")
	_, err = kernel.Shmget(testutil.Key(t), 4096, 0o600)
	require.ErrorIs(t, err, kernel.ENOENT, "no such key, no IPC_CREAT")
	_, err = kernel.Shmget(testutil.Key(t), 4096, kernel.IPC_EXCL|0o600)
	require.ErrorIs(t, err, kernel.ENOENT, "IPC_EXCL alone does not create")

	bad := []int{-1, math.MaxInt32, math.MinInt, math.MaxInt}
	if strconv.IntSize == 64 {
		// A live id plus 2^32 must not be truncated into the live id.
		live := newShm(t, 4096, 0o600)
		bad = append(bad, int(uint64(live)+1<<32), int(uint64(live)|0xffffffff00000000))
	}
	for _, bad := range bad {
		_, err = kernel.Shmat(bad, 0)
		require.ErrorIs(t, err, kernel.EINVAL, "shmat %d", bad)
		_, err = kernel.ShmctlStat(bad)
		require.ErrorIs(t, err, kernel.EINVAL, "IPC_STAT %d", bad)
		require.ErrorIs(t, kernel.ShmctlSet(bad, 0, 0, 0o600), kernel.EINVAL, "IPC_SET %d", bad)
		require.ErrorIs(t, kernel.ShmctlRemove(bad), kernel.EINVAL, "IPC_RMID %d", bad)
		_, err = kernel.ShmatAt(bad, 0, 0)
		require.ErrorIs(t, err, kernel.EINVAL, "shmat at %d", bad)
		require.ErrorIs(t, kernel.ShmctlLock(bad, true), kernel.EINVAL)
	}

	// A removed id stays invalid for every call. (Smaller than a usysv
	// header: no other binary's registry ever peeks at it, shm.Candidate.)
	id, err := kernel.Shmget(kernel.IPC_PRIVATE, 128, 0o600)
	require.NoError(t, err)
	require.NoError(t, kernel.ShmctlRemove(id))
	_, err = kernel.Shmat(id, 0)
	require.ErrorIs(t, err, kernel.EINVAL)
	_, err = kernel.ShmctlStat(id)
	require.ErrorIs(t, err, kernel.EINVAL)
	require.ErrorIs(t, kernel.ShmctlRemove(id), kernel.EINVAL)

	// shmdt of memory that is no attach, or not an attach's start.
	require.ErrorIs(t, kernel.Shmdt(nil), kernel.EINVAL)
	require.ErrorIs(t, kernel.Shmdt(make([]byte, 8192)), kernel.EINVAL)
	id = newShm(t, 2*4096, 0o600)
	b := attach(t, id, 0)
	require.ErrorIs(t, kernel.Shmdt(b[1:]), kernel.EINVAL, "unaligned address")
	require.ErrorIs(t, kernel.Shmdt(b[4096:]), kernel.EINVAL, "page inside an attach")
	ds, err := kernel.ShmctlStat(id)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), ds.Nattch, "failed detaches detached nothing")
}

func TestShmRemoveWhileAttached(t *testing.T) {
	key := testutil.Key(t)
	// Smaller than a usysv header: once removed (keyless), no other
	// binary's registry peeks at it (shm.Candidate).
	id, err := kernel.Shmget(key, 128, kernel.IPC_CREAT|kernel.IPC_EXCL|0o600)
	require.NoError(t, err)
	testutil.Track(t, "shm", id)
	b, err := kernel.Shmat(id, 0)
	require.NoError(t, err)
	b[0] = 42

	require.NoError(t, kernel.ShmctlRemove(id))
	ds, err := kernel.ShmctlStat(id)
	require.NoError(t, err, "a removed segment lives on while attached")
	assert.Equal(t, uint32(kernel.SHM_DEST|0o600), ds.Perm.Mode)
	assert.Zero(t, ds.Perm.Key, "the key is made private")
	_, err = kernel.Shmget(key, 4096, 0)
	require.ErrorIs(t, err, kernel.ENOENT)

	// Linux lets a SHM_DEST segment be attached by id.
	b2, err := kernel.Shmat(id, 0)
	require.NoError(t, err)
	assert.Equal(t, byte(42), b2[0])
	require.NoError(t, kernel.Shmdt(b2))
	require.NoError(t, kernel.Shmdt(b))
	_, err = kernel.ShmctlStat(id)
	require.ErrorIs(t, err, kernel.EINVAL, "gone after the last detach")
}

func TestShmctlSet(t *testing.T) {
	id := newShm(t, 4096, 0o600)
	ds, err := kernel.ShmctlStat(id)
	require.NoError(t, err)
	require.NoError(t, kernel.ShmctlSet(id, 1234, 5678, 0o7777))
	ds2, err := kernel.ShmctlStat(id)
	require.NoError(t, err)
	assert.Equal(t, uint32(1234), ds2.Perm.UID)
	assert.Equal(t, uint32(5678), ds2.Perm.GID)
	assert.Equal(t, uint32(0o777), ds2.Perm.Mode, "only the low 9 mode bits are set")
	assert.Equal(t, ds.Perm.CUID, ds2.Perm.CUID, "cuid unchanged")
	assert.Equal(t, ds.Perm.CGID, ds2.Perm.CGID, "cgid unchanged")
	assert.GreaterOrEqual(t, ds2.Ctime, ds.Ctime)

	require.ErrorIs(t, kernel.ShmctlSet(id, 0xffffffff, 0, 0o600), kernel.EINVAL, "uid -1")
	require.ErrorIs(t, kernel.ShmctlSet(id, 0, 0xffffffff, 0o600), kernel.EINVAL, "gid -1")
}

func TestShmctlLock(t *testing.T) {
	id := newShm(t, 4096, 0o600)
	if err := kernel.ShmctlLock(id, true); err != nil {
		require.ErrorIs(t, err, kernel.EPERM)
		t.Skip("no CAP_IPC_LOCK and no RLIMIT_MEMLOCK room")
	}
	ds, err := kernel.ShmctlStat(id)
	require.NoError(t, err)
	assert.NotZero(t, ds.Perm.Mode&kernel.SHM_LOCKED)
	require.NoError(t, kernel.ShmctlLock(id, false))
	ds, err = kernel.ShmctlStat(id)
	require.NoError(t, err)
	assert.Zero(t, ds.Perm.Mode&kernel.SHM_LOCKED)
	require.ErrorIs(t, kernel.ShmctlLock(-1, true), kernel.EINVAL)
}

func TestShmatAt(t *testing.T) {
	id := newShm(t, 4096, 0o600)
	b := attach(t, id, 0)
	addr := uintptr(unsafe.Pointer(&b[0]))

	// Attaching over an existing mapping needs SHM_REMAP; an unaligned
	// address needs SHM_RND.
	_, err := kernel.ShmatAt(id, addr, 0)
	require.ErrorIs(t, err, kernel.EINVAL)
	_, err = kernel.ShmatAt(id, addr+1, 0)
	require.ErrorIs(t, err, kernel.EINVAL)

	got, err := kernel.ShmatAt(id, addr+1, kernel.SHM_RND|kernel.SHM_REMAP)
	require.NoError(t, err)
	assert.Equal(t, addr, got, "SHM_RND rounds down to SHMLBA")
	b[0] = 7 // still the same segment at the same address
	require.NoError(t, kernel.ShmdtAddr(addr))
	require.ErrorIs(t, kernel.ShmdtAddr(addr), kernel.EINVAL)
	ds, err := kernel.ShmctlStat(id)
	require.NoError(t, err)
	assert.Zero(t, ds.Nattch, "the remap replaced the first attach")
}

func TestShmList(t *testing.T) {
	key := testutil.Key(t)
	id, err := kernel.Shmget(key, 12345, kernel.IPC_CREAT|kernel.IPC_EXCL|0o600)
	require.NoError(t, err)
	testutil.Track(t, "shm", id)
	// An unreadable segment is listed too (SHM_STAT_ANY).
	require.NoError(t, kernel.ShmctlSet(id, testutil.Nobody, testutil.Nobody, 0))

	segs, err := kernel.ShmList()
	require.NoError(t, err)
	found := false
	for _, s := range segs {
		if s.ID == id {
			found = true
			assert.Equal(t, int32(key), s.DS.Perm.Key)
			assert.Equal(t, uint64(12345), s.DS.Segsz)
			assert.Equal(t, uint32(testutil.Nobody), s.DS.Perm.UID)
		}
	}
	require.True(t, found, "segment %d not in ShmList", id)

	// A removed segment stays listed, SHM_DEST and keyless, while anyone
	// has it attached (another test binary's registry may be peeking at
	// it: shm.Peek); once gone it is not listed.
	require.NoError(t, kernel.ShmctlRemove(id))
	testutil.RequireShmGone(t, id, "removed")
	segs, err = kernel.ShmList()
	require.NoError(t, err)
	assert.False(t, slices.ContainsFunc(segs, func(s kernel.ShmSegment) bool { return s.ID == id }), "a removed segment is not listed")

	_, _, err = kernel.ShmctlStatIndex(-1)
	require.Error(t, err)
}

// TestShmPermissions runs the shm calls as nobody on root's 0600 segment.
func TestShmPermissions(t *testing.T) {
	testutil.RequireRoot(t)
	key := testutil.Key(t)
	id, err := kernel.Shmget(key, 4096, kernel.IPC_CREAT|kernel.IPC_EXCL|0o600)
	require.NoError(t, err)
	testutil.Track(t, "shm", id)

	p := testutil.Start(t, "sysv", nil, testutil.AsNobody())
	_, err = call(t, p, "shmat %d 0", id)
	require.ErrorIs(t, err, kernel.EACCES)
	_, err = call(t, p, "shmat %d %d", id, kernel.SHM_RDONLY)
	require.ErrorIs(t, err, kernel.EACCES)
	_, err = call(t, p, "shmstat %d", id)
	require.ErrorIs(t, err, kernel.EACCES)
	_, err = call(t, p, "shmget %d 4096 %d", key, 0o400)
	require.ErrorIs(t, err, kernel.EACCES)
	_, err = call(t, p, "shmget %d 8192 %d", key, 0o400)
	require.ErrorIs(t, err, kernel.EINVAL, "the size check comes before the permission check")
	v := mustCall(t, p, "shmget %d 4096 0", key)
	assert.Equal(t, id, atoi(t, v[0]), "asking for no permission always succeeds")
	_, err = call(t, p, "shmset %d %d %d %d", id, testutil.Nobody, testutil.Nobody, 0o666)
	require.ErrorIs(t, err, kernel.EPERM)
	_, err = call(t, p, "shmrm %d", id)
	require.ErrorIs(t, err, kernel.EPERM)

	// Read for others: a read-only attach works, a read-write one does not.
	require.NoError(t, kernel.ShmctlSet(id, 0, 0, 0o604))
	v = mustCall(t, p, "shmat %d %d", id, kernel.SHM_RDONLY)
	assert.Equal(t, "4096", v[0])
	_, err = call(t, p, "shmat %d 0", id)
	require.ErrorIs(t, err, kernel.EACCES)
	v = mustCall(t, p, "shmstat %d", id)
	assert.Equal(t, "1", v[0], "nattch counts the helper's attach")
	mustCall(t, p, "shmdt %d", id)

	// The owner class is exclusive: once nobody owns it with mode 0066,
	// nobody is denied although group and other may.
	require.NoError(t, kernel.ShmctlSet(id, testutil.Nobody, testutil.Nobody, 0o066))
	_, err = call(t, p, "shmstat %d", id)
	require.ErrorIs(t, err, kernel.EACCES)
	// ...but as owner it may change and remove it.
	mustCall(t, p, "shmset %d %d %d %d", id, testutil.Nobody, testutil.Nobody, 0o600)
	mustCall(t, p, "shmrm %d", id)
	_, err = kernel.ShmctlStat(id)
	require.ErrorIs(t, err, kernel.EINVAL)
}

var readSink byte // a read the compiler cannot drop

// ShmMemory counts the pages of a segment that exist: none until touched,
// a written page, a read one too (shmem allocates on any fault); Resident
// tells which of an attach's pages they are.
func TestShmMemory(t *testing.T) {
	pg := os.Getpagesize()
	id := newShm(t, 3*pg, 0o600) // (keyed: no registry peeks at it)
	rss, swap, err := kernel.ShmMemory(id)
	require.NoError(t, err)
	assert.Equal(t, [2]uint64{0, 0}, [2]uint64{rss, swap}, "untouched")

	b := attach(t, id, 0)
	res, err := kernel.Resident(b)
	require.NoError(t, err)
	assert.Equal(t, []bool{false, false, false}, res)
	b[pg+7] = 1
	readSink = b[2*pg]
	res, err = kernel.Resident(b)
	require.NoError(t, err)
	assert.Equal(t, []bool{false, true, true}, res)
	rss, _, err = kernel.ShmMemory(id)
	require.NoError(t, err)
	assert.Equal(t, uint64(2*pg), rss)

	require.NoError(t, kernel.Shmdt(b))
	require.NoError(t, kernel.ShmctlRemove(id))
	_, _, err = kernel.ShmMemory(id)
	assert.ErrorIs(t, err, kernel.ENOENT, "a segment gone is not listed")
	_, err = kernel.Resident(make([]byte, 10)) // Go memory, not page-aligned
	assert.Error(t, err)
}

// Shmat's slice covers the segment, unless a slice cannot be that long
// (2 GiB and more on 386: a 64-bit process's segment, a test binary's
// sweep once met one): then Shmat detaches again and says ENOMEM, where
// unsafe.Slice panicked.
func TestShmatSliceLen(t *testing.T) {
	for _, size := range []uint64{0, 4096, 1<<31 - 1} {
		n, ok := kernel.SliceLen(size)
		assert.True(t, ok, "%d", size)
		assert.Equal(t, size, uint64(n))
	}
	wide := strconv.IntSize == 64
	for _, size := range []uint64{1 << 31, 3 << 30, 1<<32 + 1} {
		n, ok := kernel.SliceLen(size)
		assert.Equal(t, wide, ok, "%d", size)
		if ok {
			assert.Equal(t, size, uint64(n))
		}
	}
	_, ok := kernel.SliceLen(1 << 63)
	assert.False(t, ok)
}
