package kernel_test

import (
	"bytes"
	"math"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
)

func newSem(t *testing.T, nsems, mode int) int {
	t.Helper()
	id, err := kernel.Semget(testutil.Key(t), nsems, kernel.IPC_CREAT|kernel.IPC_EXCL|mode)
	require.NoError(t, err)
	testutil.Track(t, "sem", id)
	return id
}

func newMsg(t *testing.T, mode int) int {
	t.Helper()
	id, err := kernel.Msgget(testutil.Key(t), kernel.IPC_CREAT|kernel.IPC_EXCL|mode)
	require.NoError(t, err)
	testutil.Track(t, "msg", id)
	return id
}

// badIDs are ids that name no object: negative, unused, and (on 64-bit)
// a live object's id plus 2^32, which a truncation to C int would turn into
// the live id. live makes such an object.
func badIDs(t *testing.T, live func() int) []int {
	bad := []int{-1, math.MaxInt32, math.MinInt, math.MaxInt}
	if strconv.IntSize == 64 {
		id := live()
		bad = append(bad, int(uint64(id)+1<<32), int(uint64(id)|0xffffffff00000000))
	}
	return bad
}

func TestSemRoundTrip(t *testing.T) {
	key := testutil.Key(t)
	before := time.Now().Unix()
	id, err := kernel.Semget(key, 3, kernel.IPC_CREAT|kernel.IPC_EXCL|0o640)
	require.NoError(t, err)
	testutil.Track(t, "sem", id)

	ds, err := kernel.SemctlStat(id)
	require.NoError(t, err)
	assert.Equal(t, 3, ds.Nsems)
	assert.Equal(t, int32(key), ds.Perm.Key)
	assert.Equal(t, uint32(0o640), ds.Perm.Mode)
	assert.Equal(t, uint32(kernel.Geteuid()), ds.Perm.CUID)
	assert.Zero(t, ds.Otime)
	assert.GreaterOrEqual(t, ds.Ctime, before-1)

	vals, err := kernel.SemctlGetAll(id)
	require.NoError(t, err)
	assert.Equal(t, []uint16{0, 0, 0}, vals, "Linux starts semaphores at 0")

	require.NoError(t, kernel.SemctlSetAll(id, []uint16{1, 2, kernel.SEMVMX}))
	vals, err = kernel.SemctlGetAll(id)
	require.NoError(t, err)
	assert.Equal(t, []uint16{1, 2, kernel.SEMVMX}, vals)
	require.NoError(t, kernel.SemctlSetVal(id, 1, 5))
	v, err := kernel.SemctlGetVal(id, 1)
	require.NoError(t, err)
	assert.Equal(t, 5, v)
	pid, err := kernel.SemctlGetPid(id, 1)
	require.NoError(t, err)
	assert.Equal(t, kernel.Getpid(), pid, "Linux sets sempid on SETVAL")

	require.NoError(t, kernel.Semop(id, []kernel.Sembuf{{Num: 0, Op: -1}, {Num: 1, Op: 3}}))
	vals, err = kernel.SemctlGetAll(id)
	require.NoError(t, err)
	assert.Equal(t, []uint16{0, 8, kernel.SEMVMX}, vals)
	ds, err = kernel.SemctlStat(id)
	require.NoError(t, err)
	assert.NotZero(t, ds.Otime)

	again, err := kernel.Semget(key, 2, 0)
	require.NoError(t, err)
	assert.Equal(t, id, again)
	_, err = kernel.Semget(key, 4, 0)
	require.ErrorIs(t, err, kernel.EINVAL, "more semaphores than the set has")
	_, err = kernel.Semget(key, 3, kernel.IPC_CREAT|kernel.IPC_EXCL)
	require.ErrorIs(t, err, kernel.EEXIST)

	require.NoError(t, kernel.SemctlSet(id, kernel.SemidDS{Perm: kernel.IpcPerm{UID: 1, GID: 2, Mode: 0o7666}}))
	ds, err = kernel.SemctlStat(id)
	require.NoError(t, err)
	assert.Equal(t, uint32(1), ds.Perm.UID)
	assert.Equal(t, uint32(2), ds.Perm.GID)
	assert.Equal(t, uint32(0o666), ds.Perm.Mode)

	require.NoError(t, kernel.SemctlRemove(id))
	_, err = kernel.SemctlGetVal(id, 0)
	require.ErrorIs(t, err, kernel.EINVAL)
	require.ErrorIs(t, kernel.Semop(id, []kernel.Sembuf{{Op: 1}}), kernel.EINVAL, "semop after IPC_RMID")
}

func TestSemErrors(t *testing.T) {
	_, err := kernel.Semget(testutil.Key(t), 1, 0o600)
	require.ErrorIs(t, err, kernel.ENOENT)
	_, err = kernel.Semget(kernel.IPC_PRIVATE, 0, 0o600)
	require.ErrorIs(t, err, kernel.EINVAL, "a new set needs nsems ≥ 1")
	_, err = kernel.Semget(kernel.IPC_PRIVATE, kernel.SEMMSL+1, 0o600)
	require.ErrorIs(t, err, kernel.EINVAL)

	id := newSem(t, 2, 0o600)
	require.ErrorIs(t, kernel.SemctlSetVal(id, 0, -1), kernel.ERANGE)
	require.ErrorIs(t, kernel.SemctlSetVal(id, 0, kernel.SEMVMX+1), kernel.ERANGE)
	require.ErrorIs(t, kernel.SemctlSetVal(0x7fffffff, 0, kernel.SEMVMX+1), kernel.ERANGE, "ERANGE is checked before the id lookup")
	require.ErrorIs(t, kernel.SemctlSetVal(id, 2, 1), kernel.EINVAL, "semnum out of range")
	require.ErrorIs(t, kernel.SemctlSetVal(id, -1, 1), kernel.EINVAL, "negative semnum")
	_, err = kernel.SemctlGetVal(id, math.MaxInt)
	require.ErrorIs(t, err, kernel.EINVAL, "semnum beyond a C int")
	_, err = kernel.Semget(kernel.IPC_PRIVATE, math.MaxInt, 0o600)
	require.ErrorIs(t, err, kernel.EINVAL, "nsems beyond a C int")
	require.ErrorIs(t, kernel.SemctlSetAll(id, []uint16{0, kernel.SEMVMX + 1}), kernel.ERANGE)
	require.NoError(t, kernel.SemctlSetAll(id, []uint16{4, 5}))
	for _, vals := range [][]uint16{nil, {1}, {1, 2, 3}, {kernel.SEMVMX + 1}} {
		require.ErrorIs(t, kernel.SemctlSetAll(id, vals), kernel.EINVAL, "%d values for 2 semaphores", len(vals))
	}
	got, err := kernel.SemctlGetAll(id)
	require.NoError(t, err)
	require.Equal(t, []uint16{4, 5}, got, "nothing changed")
	require.NoError(t, kernel.SemctlSetAll(id, []uint16{0, 0}))
	require.ErrorIs(t, kernel.Semop(id, nil), kernel.EINVAL, "nsops 0")
	require.ErrorIs(t, kernel.Semop(id, make([]kernel.Sembuf, kernel.SEMOPM+1)), kernel.E2BIG)
	require.ErrorIs(t, kernel.Semop(id, []kernel.Sembuf{{Num: 2, Op: 1}}), kernel.EFBIG)
	require.ErrorIs(t, kernel.Semop(id, []kernel.Sembuf{{Op: -1, Flg: kernel.IPC_NOWAIT}}), kernel.EAGAIN)
	require.NoError(t, kernel.SemctlSetVal(id, 0, kernel.SEMVMX))
	require.ErrorIs(t, kernel.Semop(id, []kernel.Sembuf{{Op: 1}}), kernel.ERANGE)
	require.ErrorIs(t, kernel.Semop(id, []kernel.Sembuf{{Op: 0, Flg: kernel.IPC_NOWAIT}}), kernel.EAGAIN, "wait-for-zero")
	_, err = kernel.SemctlCmd(id, 0, 9999, 0)
	require.ErrorIs(t, err, kernel.EINVAL, "unknown command")
	var local int
	_, err = kernel.SemctlCmd(id, 0, kernel.IPC_STAT, int(uintptr(unsafe.Pointer(&local))))
	require.ErrorIs(t, err, kernel.EINVAL, "a buffer command with an integer for its buffer")
	_, err = kernel.SemctlCmd(id, 0, kernel.IPC_STAT, 0)
	require.ErrorIs(t, err, kernel.EFAULT, "a null buffer: the kernel's own answer")
	_, _, err = kernel.SemctlInfo(kernel.SEM_STAT_ANY)
	require.ErrorIs(t, err, kernel.EINVAL, "a command whose buffer is no SemInfo")
	_, _, err = kernel.MsgctlInfo(kernel.MSG_STAT)
	require.ErrorIs(t, err, kernel.EINVAL, "a command whose buffer is no MsgInfo")

	for _, bad := range badIDs(t, func() int { return newSem(t, 1, 0o600) }) {
		_, err = kernel.SemctlStat(bad)
		require.ErrorIs(t, err, kernel.EINVAL)
		_, err = kernel.SemctlGetAll(bad)
		require.ErrorIs(t, err, kernel.EINVAL)
		require.ErrorIs(t, kernel.Semop(bad, []kernel.Sembuf{{Op: 1}}), kernel.EINVAL)
		require.ErrorIs(t, kernel.SemctlRemove(bad), kernel.EINVAL)
		require.ErrorIs(t, kernel.SemctlSet(bad, kernel.SemidDS{}), kernel.EINVAL)
	}
}

func TestSemtimedop(t *testing.T) {
	id := newSem(t, 1, 0o600)
	deadline := time.Now().Add(20 * time.Millisecond)
	err := kernel.Semtimedop(id, []kernel.Sembuf{{Op: -1}}, 20*time.Millisecond)
	require.ErrorIs(t, err, kernel.EAGAIN, "the timeout expired")
	assert.False(t, time.Now().Before(deadline))
	require.ErrorIs(t, kernel.Semtimedop(id, []kernel.Sembuf{{Op: -1}}, 0), kernel.EAGAIN)
	require.ErrorIs(t, kernel.Semtimedop(id, []kernel.Sembuf{{Op: -1}}, -time.Second), kernel.EAGAIN)

	require.NoError(t, kernel.SemctlSetVal(id, 0, 1))
	require.NoError(t, kernel.Semtimedop(id, []kernel.Sembuf{{Op: -1}}, time.Second))
	v, err := kernel.SemctlGetVal(id, 0)
	require.NoError(t, err)
	assert.Zero(t, v)
}

// TestSemBlockedAcrossProcesses blocks a helper in semop and checks what
// the kernel reports while it waits, then wakes it, then blocks it again
// and removes the set under it.
func TestSemBlockedAcrossProcesses(t *testing.T) {
	id := newSem(t, 2, 0o600)
	p := testutil.Start(t, "sysv", nil)

	p.Send("semop %d 1 -1 0", id)
	testutil.Eventually(t, lineTimeout, "the helper to block in semop", func() bool {
		n, err := kernel.SemctlGetNcnt(id, 1)
		require.NoError(t, err)
		return n == 1
	})
	z, err := kernel.SemctlGetZcnt(id, 1)
	require.NoError(t, err)
	assert.Zero(t, z)
	require.NoError(t, kernel.Semop(id, []kernel.Sembuf{{Num: 1, Op: 1}}))
	_, err = answer(t, p)
	require.NoError(t, err)
	pid, err := kernel.SemctlGetPid(id, 1)
	require.NoError(t, err)
	assert.Equal(t, p.Pid(), pid, "sempid is the last process to operate")

	require.NoError(t, kernel.SemctlSetVal(id, 0, 1))
	p.Send("semop %d 0 0 0", id)
	testutil.Eventually(t, lineTimeout, "the helper to wait for zero", func() bool {
		n, err := kernel.SemctlGetZcnt(id, 0)
		require.NoError(t, err)
		return n == 1
	})
	require.NoError(t, kernel.SemctlRemove(id))
	_, err = answer(t, p)
	require.ErrorIs(t, err, kernel.EIDRM, "a waiter sees the set removed")
}

func TestSemPermissions(t *testing.T) {
	testutil.RequireRoot(t)
	id := newSem(t, 1, 0o644)
	p := testutil.Start(t, "sysv", nil, testutil.AsNobody())
	mustCall(t, p, "semop %d 0 0 %d", id, kernel.IPC_NOWAIT) // read suffices for wait-for-zero
	_, err := call(t, p, "semop %d 0 1 0", id)
	require.ErrorIs(t, err, kernel.EACCES, "altering needs write")
	mustCall(t, p, "semgetval %d 0", id)
	_, err = call(t, p, "semsetval %d 0 1", id)
	require.ErrorIs(t, err, kernel.EACCES)
	_, err = call(t, p, "semset %d 0 0 %d", id, 0o666)
	require.ErrorIs(t, err, kernel.EPERM)
	_, err = call(t, p, "semrm %d", id)
	require.ErrorIs(t, err, kernel.EPERM)
	require.NoError(t, kernel.SemctlSet(id, kernel.SemidDS{Perm: kernel.IpcPerm{Mode: 0o600}}))
	_, err = call(t, p, "semgetval %d 0", id)
	require.ErrorIs(t, err, kernel.EACCES)
	_, err = call(t, p, "semstat %d", id)
	require.ErrorIs(t, err, kernel.EACCES)
}

// SETALL's length check (EINVAL) comes after the permission check, as in
// sem.SetAll, and a writer that may not read the set (no IPC_STAT) still
// has its slice checked and used whole.
func TestSemSetAllLength(t *testing.T) {
	testutil.RequireRoot(t)
	id := newSem(t, 2, 0o600)
	p := testutil.Start(t, "sysv", nil, testutil.AsNobody())
	_, err := call(t, p, "semsetall %d 1", id)
	require.ErrorIs(t, err, kernel.EACCES, "wrong length, not permitted")
	require.NoError(t, kernel.SemctlSet(id, kernel.SemidDS{Perm: kernel.IpcPerm{Mode: 0o602}}))
	_, err = call(t, p, "semstat %d", id)
	require.ErrorIs(t, err, kernel.EACCES, "the helper may not read the set")
	_, err = call(t, p, "semsetall %d 1", id)
	require.ErrorIs(t, err, kernel.EINVAL, "too few values")
	_, err = call(t, p, "semsetall %d 1,2,3", id)
	require.ErrorIs(t, err, kernel.EINVAL, "too many values")
	mustCall(t, p, "semsetall %d 6,7", id)
	got, err := kernel.SemctlGetAll(id)
	require.NoError(t, err)
	require.Equal(t, []uint16{6, 7}, got)
}

func TestSemInfo(t *testing.T) {
	_, info, err := kernel.SemctlInfo(kernel.IPC_INFO)
	require.NoError(t, err)
	assert.Positive(t, info.Semmsl)
	assert.Positive(t, info.Semopm)
	assert.Equal(t, int32(kernel.SEMVMX), info.Semvmx)

	id := newSem(t, 4, 0o600)
	maxIdx, info, err := kernel.SemctlInfo(kernel.SEM_INFO)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, maxIdx, id&0x7fff, "the highest index in use covers ours")
	assert.GreaterOrEqual(t, info.Semusz, int32(1), "SEM_INFO: sets in use")
	assert.GreaterOrEqual(t, info.Semaem, int32(4), "SEM_INFO: semaphores in use")
}

func TestMsgRoundTrip(t *testing.T) {
	key := testutil.Key(t)
	before := time.Now().Unix()
	id, err := kernel.Msgget(key, kernel.IPC_CREAT|kernel.IPC_EXCL|0o660)
	require.NoError(t, err)
	testutil.Track(t, "msg", id)

	ds, err := kernel.MsgctlStat(id)
	require.NoError(t, err)
	assert.Equal(t, int32(key), ds.Perm.Key)
	assert.Equal(t, uint32(0o660), ds.Perm.Mode)
	assert.Zero(t, ds.Qnum)
	assert.Zero(t, ds.Cbytes)
	assert.Zero(t, ds.Lspid)
	assert.Zero(t, ds.Lrpid)
	assert.Zero(t, ds.Stime)
	assert.Zero(t, ds.Rtime)
	assert.Equal(t, uint64(kernel.MSGMNB), ds.Qbytes)
	assert.GreaterOrEqual(t, ds.Ctime, before-1)

	require.NoError(t, kernel.Msgsnd(id, 5, []byte("five"), 0))
	require.NoError(t, kernel.Msgsnd(id, 2, []byte("two!!"), 0))
	require.NoError(t, kernel.Msgsnd(id, 9, nil, 0))
	big := bytes.Repeat([]byte{'x'}, kernel.MSGMAX)
	require.NoError(t, kernel.Msgsnd(id, 1, big, 0))
	ds, err = kernel.MsgctlStat(id)
	require.NoError(t, err)
	assert.Equal(t, uint64(4), ds.Qnum)
	assert.Equal(t, uint64(4+5+kernel.MSGMAX), ds.Cbytes)
	assert.Equal(t, kernel.Getpid(), ds.Lspid)
	assert.NotZero(t, ds.Stime)
	assert.Zero(t, ds.Rtime)

	buf := make([]byte, 16)
	// By type; by "lowest type ≤ |t|"; by "any type but".
	n, typ, err := kernel.Msgrcv(id, buf, 2, 0)
	require.NoError(t, err)
	assert.Equal(t, "two!!", string(buf[:n]))
	assert.Equal(t, int64(2), typ)
	_, _, err = kernel.Msgrcv(id, buf[:2], 5, 0)
	require.ErrorIs(t, err, kernel.E2BIG, "too long without MSG_NOERROR")
	n, typ, err = kernel.Msgrcv(id, buf, 5, kernel.MSG_EXCEPT)
	require.NoError(t, err)
	assert.Equal(t, int64(9), typ, "MSG_EXCEPT: the first message not of type 5")
	assert.Zero(t, n)
	n, typ, err = kernel.Msgrcv(id, buf, -6, kernel.MSG_NOERROR)
	require.NoError(t, err)
	assert.Equal(t, int64(1), typ, "negative type: the lowest type ≤ 6")
	assert.Equal(t, len(buf), n, "MSG_NOERROR truncates")
	n, typ, err = kernel.Msgrcv(id, buf[:2], 0, kernel.MSG_NOERROR)
	require.NoError(t, err)
	assert.Equal(t, int64(5), typ)
	assert.Equal(t, "fi", string(buf[:n]))
	_, _, err = kernel.Msgrcv(id, buf, 0, kernel.IPC_NOWAIT)
	require.ErrorIs(t, err, kernel.ENOMSG, "empty queue")

	ds, err = kernel.MsgctlStat(id)
	require.NoError(t, err)
	assert.Zero(t, ds.Qnum)
	assert.Zero(t, ds.Cbytes)
	assert.Equal(t, kernel.Getpid(), ds.Lrpid)
	assert.NotZero(t, ds.Rtime)

	require.NoError(t, kernel.MsgctlSet(id, kernel.MsqidDS{Perm: kernel.IpcPerm{UID: 7, GID: 8, Mode: 0o7600}, Qbytes: 100}))
	ds, err = kernel.MsgctlStat(id)
	require.NoError(t, err)
	assert.Equal(t, uint32(7), ds.Perm.UID)
	assert.Equal(t, uint32(8), ds.Perm.GID)
	assert.Equal(t, uint32(0o600), ds.Perm.Mode)
	assert.Equal(t, uint64(100), ds.Qbytes)

	require.NoError(t, kernel.MsgctlRemove(id))
	require.ErrorIs(t, kernel.Msgsnd(id, 1, nil, 0), kernel.EINVAL)
	_, _, err = kernel.Msgrcv(id, buf, 0, kernel.IPC_NOWAIT)
	require.ErrorIs(t, err, kernel.EINVAL)
}

func TestMsgErrors(t *testing.T) {
	_, err := kernel.Msgget(testutil.Key(t), 0o600)
	require.ErrorIs(t, err, kernel.ENOENT)

	id := newMsg(t, 0o600)
	require.ErrorIs(t, kernel.Msgsnd(id, 0, nil, 0), kernel.EINVAL, "mtype 0")
	require.ErrorIs(t, kernel.Msgsnd(id, -1, nil, 0), kernel.EINVAL, "mtype < 0")
	require.ErrorIs(t, kernel.Msgsnd(id, 1, make([]byte, kernel.MSGMAX+1), 0), kernel.EINVAL, "longer than MSGMAX")

	// The queue is full when bytes or messages would exceed qbytes.
	require.NoError(t, kernel.MsgctlSet(id, kernel.MsqidDS{Perm: kernel.IpcPerm{Mode: 0o600}, Qbytes: 3}))
	for i := 0; i < 3; i++ {
		require.NoError(t, kernel.Msgsnd(id, 1, nil, kernel.IPC_NOWAIT))
	}
	require.ErrorIs(t, kernel.Msgsnd(id, 1, nil, kernel.IPC_NOWAIT), kernel.EAGAIN)
	err = kernel.MsgctlSet(id, kernel.MsqidDS{Perm: kernel.IpcPerm{Mode: 0o600}, Qbytes: kernel.MSGMNB + 1})
	c, cerr := kernel.SelfCreds()
	require.NoError(t, cerr)
	if c.SysResource {
		require.NoError(t, err)
	} else {
		require.ErrorIs(t, err, kernel.EPERM, "qbytes above MSGMNB needs CAP_SYS_RESOURCE")
	}

	_, err = kernel.MsgctlCmd(id, 9999)
	require.ErrorIs(t, err, kernel.EINVAL)
	for _, bad := range badIDs(t, func() int { return newMsg(t, 0o600) }) {
		_, err = kernel.MsgctlStat(bad)
		require.ErrorIs(t, err, kernel.EINVAL)
		require.ErrorIs(t, kernel.Msgsnd(bad, 1, nil, kernel.IPC_NOWAIT), kernel.EINVAL)
		_, _, err = kernel.Msgrcv(bad, nil, 0, kernel.IPC_NOWAIT)
		require.ErrorIs(t, err, kernel.EINVAL)
		require.ErrorIs(t, kernel.MsgctlRemove(bad), kernel.EINVAL)
	}
}

// TestMsgTypeWidth: mtype is a C long. On 64-bit platforms all of int64
// round-trips; on 32-bit ones a type beyond int32 is EINVAL, not truncated.
func TestMsgTypeWidth(t *testing.T) {
	id := newMsg(t, 0o600)
	shift := 40
	big := int64(1)<<shift + 3
	buf := make([]byte, 8)
	if strconv.IntSize == 32 {
		require.ErrorIs(t, kernel.Msgsnd(id, big, nil, 0), kernel.EINVAL)
		_, _, err := kernel.Msgrcv(id, buf, big, kernel.IPC_NOWAIT)
		require.ErrorIs(t, err, kernel.EINVAL)
		big = math.MaxInt32
	}
	require.NoError(t, kernel.Msgsnd(id, 3, []byte("small"), 0))
	require.NoError(t, kernel.Msgsnd(id, big, []byte("big"), 0))
	n, typ, err := kernel.Msgrcv(id, buf, big, kernel.IPC_NOWAIT)
	require.NoError(t, err)
	assert.Equal(t, big, typ)
	assert.Equal(t, "big", string(buf[:n]))
	n, typ, err = kernel.Msgrcv(id, buf, -big, kernel.IPC_NOWAIT)
	require.NoError(t, err)
	assert.Equal(t, int64(3), typ)
	assert.Equal(t, "small", string(buf[:n]))
}

func TestMsgAcrossProcesses(t *testing.T) {
	id := newMsg(t, 0o600)
	p := testutil.Start(t, "sysv", nil)

	p.Send("msgrcv %d 64 3 0", id) // blocks: nothing of type 3 yet
	require.NoError(t, kernel.Msgsnd(id, 4, []byte("other"), 0))
	require.NoError(t, kernel.Msgsnd(id, 3, []byte("hello"), 0))
	v, err := answer(t, p)
	require.NoError(t, err)
	assert.Equal(t, []string{"3", "hello"}, v)
	ds, err := kernel.MsgctlStat(id)
	require.NoError(t, err)
	assert.Equal(t, p.Pid(), ds.Lrpid)
	assert.Equal(t, uint64(1), ds.Qnum)

	mustCall(t, p, "msgsnd %d 8 fromhelper 0", id)
	buf := make([]byte, 64)
	n, typ, err := kernel.Msgrcv(id, buf, 8, 0)
	require.NoError(t, err)
	assert.Equal(t, "fromhelper", string(buf[:n]))
	assert.Equal(t, int64(8), typ)
	ds, err = kernel.MsgctlStat(id)
	require.NoError(t, err)
	assert.Equal(t, p.Pid(), ds.Lspid)

	p.Send("msgrcv %d 64 99 0", id)
	require.True(t, p.Quiet(50*time.Millisecond), "nothing of type 99")
	require.NoError(t, kernel.MsgctlRemove(id))
	_, err = answer(t, p)
	require.ErrorIs(t, err, kernel.EIDRM)
}

func TestMsgPermissions(t *testing.T) {
	testutil.RequireRoot(t)
	key := testutil.Key(t)
	id, err := kernel.Msgget(key, kernel.IPC_CREAT|kernel.IPC_EXCL|0o644)
	require.NoError(t, err)
	testutil.Track(t, "msg", id)
	p := testutil.Start(t, "sysv", nil, testutil.AsNobody())
	require.NoError(t, kernel.Msgsnd(id, 1, []byte("x"), 0))
	mustCall(t, p, "msgstat %d", id)
	_, err = call(t, p, "msgsnd %d 1 y %d", id, kernel.IPC_NOWAIT)
	require.ErrorIs(t, err, kernel.EACCES, "sending needs write")
	v := mustCall(t, p, "msgrcv %d 8 0 %d", id, kernel.IPC_NOWAIT)
	assert.Equal(t, []string{"1", "x"}, v)
	_, err = call(t, p, "msgset %d 0 0 %d", id, 0o666)
	require.ErrorIs(t, err, kernel.EPERM)
	_, err = call(t, p, "msgrm %d", id)
	require.ErrorIs(t, err, kernel.EPERM)
	require.NoError(t, kernel.MsgctlSet(id, kernel.MsqidDS{Perm: kernel.IpcPerm{Mode: 0o600}, Qbytes: kernel.MSGMNB}))
	_, err = call(t, p, "msgstat %d", id)
	require.ErrorIs(t, err, kernel.EACCES)
	_, err = call(t, p, "msgrcv %d 8 0 %d", id, kernel.IPC_NOWAIT)
	require.ErrorIs(t, err, kernel.EACCES)
	_, err = call(t, p, "msgget %d %d", key, 0o400)
	require.ErrorIs(t, err, kernel.EACCES)
	v = mustCall(t, p, "msgget %d %d", key, kernel.IPC_CREAT)
	assert.Equal(t, id, atoi(t, v[0]), "asking for no permission always succeeds")
}

func TestMsgInfo(t *testing.T) {
	_, info, err := kernel.MsgctlInfo(kernel.IPC_INFO)
	require.NoError(t, err)
	assert.Equal(t, int32(kernel.MSGMAX), info.Msgmax)
	assert.Equal(t, int32(kernel.MSGMNB), info.Msgmnb)

	id := newMsg(t, 0o600)
	require.NoError(t, kernel.Msgsnd(id, 1, []byte("abc"), 0))
	maxIdx, info, err := kernel.MsgctlInfo(kernel.MSG_INFO)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, maxIdx, id&0x7fff)
	assert.GreaterOrEqual(t, info.Msgpool, int32(1), "MSG_INFO: queues in use")
	assert.GreaterOrEqual(t, info.Msgmap, int32(1), "MSG_INFO: messages queued")
	assert.GreaterOrEqual(t, info.Msgtql, int32(3), "MSG_INFO: bytes queued")
}

// The control calls' buffers are often on the caller's stack. A call made
// just where the goroutine's stack must grow moves that buffer: the kernel
// must fill (or read) the moved one. Each call runs alone at each depth,
// from a fresh goroutine with a different amount of its first stack used,
// so that at one of them that very call grows the stack.
func TestCtlBuffersSurviveStackGrowth(t *testing.T) {
	sid := newSem(t, 3, 0o640)
	require.NoError(t, kernel.SemctlSetAll(sid, []uint16{7, 8, 9}))
	mid := newMsg(t, 0o604)
	calls := []struct {
		name string
		bad  func() bool
	}{
		{"semctl IPC_STAT", func() bool {
			ds, err := kernel.SemctlStat(sid)
			return err != nil || ds.Perm.Mode != 0o640 || ds.Nsems != 3
		}},
		{"semctl GETALL", func() bool {
			vals, err := kernel.SemctlGetAll(sid)
			return err != nil || len(vals) != 3 || vals[2] != 9
		}},
		{"semctl SETALL", func() bool {
			if kernel.SemctlSetAll(sid, []uint16{7, 8, 9}) != nil {
				return true
			}
			v, err := kernel.SemctlGetVal(sid, 2)
			return err != nil || v != 9
		}},
		{"semctl IPC_INFO", func() bool {
			_, info, err := kernel.SemctlInfo(kernel.IPC_INFO)
			return err != nil || info.Semmsl == 0
		}},
		{"msgctl IPC_STAT", func() bool {
			ds, err := kernel.MsgctlStat(mid)
			return err != nil || ds.Perm.Mode != 0o604
		}},
		{"msgctl IPC_INFO", func() bool {
			_, info, err := kernel.MsgctlInfo(kernel.IPC_INFO)
			return err != nil || info.Msgmax == 0
		}},
	}
	for _, c := range calls {
		for depth := 0; depth < 200; depth++ {
			done := make(chan bool, 1)
			go func() { done <- atDepth(depth, c.bad) }()
			if <-done {
				t.Fatalf("%s at depth %d: the kernel used a stale stack buffer", c.name, depth)
			}
		}
	}
}

// atDepth calls f from depth frames of 64 bytes down.
//
//go:noinline
func atDepth(depth int, f func() bool) bool {
	var pad [64]byte
	if depth > 0 {
		pad[depth%64] = byte(depth)
		r := atDepth(depth-1, f)
		padSink += pad[depth%64] // (the frame keeps its 64 bytes)
		return r
	}
	return f()
}

var padSink byte
