package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/msgq"
	"github.com/usysv/usysv/registry"
	"github.com/usysv/usysv/sem"
	"github.com/usysv/usysv/shm"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func create(t *testing.T, kind shm.Kind, key, mode int) int {
	t.Helper()
	c, err := registry.Default()
	require.NoError(t, err)
	flags := kernel.IPC_CREAT | kernel.IPC_EXCL | mode
	var id int
	if kind == shm.KindSem {
		id, err = sem.Get(key, 3, flags)
	} else {
		id, err = msgq.Get(key, flags)
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Remove(kind, id) })
	return id
}

func runIpcs(t *testing.T, args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := ipcs(args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestIpcs(t *testing.T) {
	sk, mk := testutil.Key(t), testutil.Key(t)
	sid := create(t, shm.KindSem, sk, 0o640)
	mid := create(t, shm.KindMsg, mk, 0o600)
	require.NoError(t, sem.SetVal(sid, 1, 7))
	require.NoError(t, msgq.Send(mid, 5, []byte("hello"), 0))
	out, _, code := runIpcs(t)
	require.Equal(t, 0, code)
	assert.Contains(t, out, "------ Message Queues --------\nkey        msqid      owner      perms      used-bytes   messages    \n")
	assert.Contains(t, out, "------ Semaphore Arrays --------\nkey        semid      owner      perms      nsems     \n")
	assert.Contains(t, out, fmt.Sprintf("0x%08x %-10d %-10s %-10s %-10s\n", uint32(sk), sid, "root", "640", "3"))
	assert.Contains(t, out, fmt.Sprintf("0x%08x %-10d %-10s %-10s %-12s %-12s\n", uint32(mk), mid, "root", "600", "5", "1"))

	out, _, code = runIpcs(t, "-s")
	require.Equal(t, 0, code)
	assert.NotContains(t, out, "Message Queues")
	assert.Contains(t, out, strconv.Itoa(sid))

	out, _, code = runIpcs(t, "-s", "-i", strconv.Itoa(sid))
	require.Equal(t, 0, code)
	assert.Contains(t, out, fmt.Sprintf("Semaphore Array semid=%d\n", sid))
	assert.Contains(t, out, "mode=0640, access_perms=0640\nnsems = 3\n")
	assert.Contains(t, out, "otime = Not set")
	assert.Contains(t, out, fmt.Sprintf("%-10d %-10d %-10d %-10d %-10d\n", 1, 7, 0, 0, kernel.Getpid()))
	out, _, code = runIpcs(t, "-q", "-i", strconv.Itoa(mid))
	require.Equal(t, 0, code)
	assert.Contains(t, out, fmt.Sprintf("cbytes=5\tqbytes=%d\tqnum=1\tlspid=%d\tlrpid=0\n", kernel.MSGMNB, kernel.Getpid()))
	assert.Contains(t, out, "rcv_time=Not set\n")

	_, errs, code := runIpcs(t, "-q", "-i", strconv.Itoa(sid))
	assert.Equal(t, 1, code, "a semaphore id is no queue")
	assert.Contains(t, errs, "invalid argument")
	_, _, code = runIpcs(t, "-i", "3")
	assert.Equal(t, 2, code)
	_, _, code = runIpcs(t, "bogus")
	assert.Equal(t, 2, code)
}

func TestIpcrm(t *testing.T) {
	c, err := registry.Default()
	require.NoError(t, err)
	sk, mk := testutil.Key(t), testutil.Key(t)
	s1 := create(t, shm.KindSem, sk, 0o600)
	s2 := create(t, shm.KindSem, testutil.Key(t), 0o600)
	m1 := create(t, shm.KindMsg, mk, 0o600)
	m2 := create(t, shm.KindMsg, testutil.Key(t), 0o600)
	var errb bytes.Buffer
	require.Equal(t, 0, ipcrm([]string{"-s", strconv.Itoa(s2), "-S", fmt.Sprintf("%#x", uint32(sk)),
		"-q", strconv.Itoa(m2), "-Q", strconv.Itoa(mk)}, &errb), errb.String())
	for _, o := range []struct {
		k  shm.Kind
		id int
	}{{shm.KindSem, s1}, {shm.KindSem, s2}, {shm.KindMsg, m1}, {shm.KindMsg, m2}} {
		_, err := c.Stat(o.k, o.id)
		assert.ErrorIs(t, err, kernel.EINVAL)
	}
	// Errors are reported and the rest still done.
	s3 := create(t, shm.KindSem, testutil.Key(t), 0o600)
	errb.Reset()
	assert.Equal(t, 1, ipcrm([]string{"-s", strconv.Itoa(s1), "-S", strconv.Itoa(sk), "-s", strconv.Itoa(s3)}, &errb))
	assert.Contains(t, errb.String(), fmt.Sprintf("invalid semid (%d)", s1))
	assert.Contains(t, errb.String(), "no such file or directory")
	_, err = c.Stat(shm.KindSem, s3)
	assert.ErrorIs(t, err, kernel.EINVAL)
	assert.Equal(t, 2, ipcrm(nil, &errb))
	assert.Equal(t, 2, ipcrm([]string{"-s", "x"}, &errb))
	assert.Equal(t, 2, ipcrm([]string{"-q", "-5"}, &errb))
}

func TestIpcmkArgs(t *testing.T) {
	var out, errb bytes.Buffer
	assert.Equal(t, 2, ipcmk(nil, &out, &errb))
	assert.Equal(t, 2, ipcmk([]string{"-Q", "-S", "2"}, &out, &errb))
	assert.Equal(t, 2, ipcmk([]string{"-Q", "-p", "999"}, &out, &errb))
}

func TestIpcmk(t *testing.T) {
	c, err := registry.Default()
	require.NoError(t, err)
	var out, errb bytes.Buffer
	require.Equal(t, 0, ipcmk([]string{"-Q", "-p", "0640"}, &out, &errb), errb.String())
	var mid int
	_, err = fmt.Sscanf(out.String(), "Message queue id: %d\n", &mid)
	require.NoError(t, err, out.String())
	t.Cleanup(func() { _ = c.Remove(shm.KindMsg, mid) })
	ds, err := msgq.Stat(mid)
	require.NoError(t, err)
	assert.Equal(t, uint32(0o640), ds.Perm.Mode)
	assert.NotZero(t, ds.Perm.Key)

	out.Reset()
	require.Equal(t, 0, ipcmk([]string{"-S", "4"}, &out, &errb), errb.String())
	var sid int
	_, err = fmt.Sscanf(out.String(), "Semaphore id: %d\n", &sid)
	require.NoError(t, err, out.String())
	t.Cleanup(func() { _ = c.Remove(shm.KindSem, sid) })
	sds, err := sem.Stat(sid)
	require.NoError(t, err)
	assert.Equal(t, 4, sds.Nsems)
	assert.Equal(t, uint32(0o644), sds.Perm.Mode)

	errb.Reset()
	assert.Equal(t, 1, ipcmk([]string{"-S", "-3"}, &out, &errb))
	assert.True(t, strings.Contains(errb.String(), "invalid argument"), errb.String())
	errb.Reset()
	assert.Equal(t, 1, ipcmk([]string{"-S", "0"}, &out, &errb), "a set of none: semget's EINVAL, not a usage error")
	assert.True(t, strings.Contains(errb.String(), "invalid argument"), errb.String())
}

// Ids are decimal, as for util-linux's ipcrm and ipcs (keys take any
// base): an id written with a leading 0 names the id of those decimal
// digits, never the octal one (before, ipcrm -s 0<octal of an id> removed
// that object), and a hex one is refused.
func TestIdsAreDecimal(t *testing.T) {
	id := create(t, shm.KindSem, testutil.Key(t), 0o600)
	octal := fmt.Sprintf("0%o", id)
	var errb bytes.Buffer
	// (Read as decimal, the octal digits name no object, or are out of
	// range: 1 or 2, the set untouched either way.)
	assert.NotZero(t, ipcrm([]string{"-s", octal}, &errb), "no object has id %s read as decimal", octal)
	assert.Equal(t, 2, ipcrm([]string{"-s", fmt.Sprintf("%#x", id)}, &errb))
	_, _, code := runIpcs(t, "-s", "-i", octal)
	assert.NotZero(t, code, "ipcs -i %s", octal)
	_, _, code = runIpcs(t, "-s", "-i", fmt.Sprintf("%#x", id))
	assert.Equal(t, 2, code)
	out, _, code := runIpcs(t, "-s", "-i", "0"+strconv.Itoa(id))
	assert.Equal(t, 0, code, "the set is still there, and a leading 0 is decimal")
	assert.Contains(t, out, strconv.Itoa(id))
	// A negative id names no object (before, -i -5 was taken as no -i
	// and listed everything).
	_, _, code = runIpcs(t, "-s", "-i", "-5")
	assert.Equal(t, 1, code)
	_, _, code = runIpcs(t, "-i", "-5")
	assert.Equal(t, 2, code, "-i needs -q or -s")
}

// The output options -t, -p, -c, -l and -u, each with util-linux ipcs's
// headers (as its 2.38 prints them for the kernel's objects) and columns.
func TestIpcsFormats(t *testing.T) {
	sk, mk := testutil.Key(t), testutil.Key(t)
	sid := create(t, shm.KindSem, sk, 0o640)
	mid := create(t, shm.KindMsg, mk, 0o600)
	require.NoError(t, sem.Op(sid, []sem.Buf{{Num: 2, Op: 1}}))
	require.NoError(t, msgq.Send(mid, 5, []byte("hello"), 0))
	sds, err := sem.Stat(sid)
	require.NoError(t, err)
	mds, err := msgq.Stat(mid)
	require.NoError(t, err)
	require.NotZero(t, sds.Otime)
	long := func(t int64) string { return time.Unix(t, 0).Format("Mon Jan _2 15:04:05 2006") }
	short := func(t int64) string { return long(t)[4:20] } // "Jan _2 15:04:05 "
	pid := kernel.Getpid()
	ipcs := func(args ...string) string {
		t.Helper()
		out, errs, code := runIpcs(t, args...)
		require.Equal(t, 0, code, errs)
		return out
	}

	out := ipcs("-q", "-t")
	assert.Contains(t, out, "------ Message Queues Send/Recv/Change Times --------\n"+
		"msqid    owner      send                 recv                 change              \n")
	assert.Contains(t, out, fmt.Sprintf("%-8d root       %-20s Not set              %-20s\n", mid, short(mds.Stime), short(mds.Ctime)))
	assert.NotContains(t, out, "Semaphore")
	out = ipcs("-s", "-t")
	assert.Contains(t, out, "------ Semaphore Operation/Change Times --------\n"+
		"semid    owner      last-op                    last-changed              \n")
	assert.Contains(t, out, fmt.Sprintf("%-8d root        %-26s %-26s\n", sid, long(sds.Otime), long(sds.Ctime)))

	out = ipcs("-p")
	assert.Contains(t, out, "------ Message Queues PIDs --------\nmsqid      owner      lspid      lrpid     \n")
	assert.Contains(t, out, fmt.Sprintf("%-8d root        %5d         0\n", mid, pid))
	assert.NotContains(t, out, "Semaphore", "sets have no pids to show (nor does util-linux show any)")

	out = ipcs("-c")
	assert.Contains(t, out, "------ Message Queues Creators/Owners --------\n"+
		"msqid      perms      cuid       cgid       uid        gid       \n")
	assert.Contains(t, out, fmt.Sprintf("%-10d 600        root       root       root       root      \n", mid))
	assert.Contains(t, out, "------ Semaphore Arrays Creators/Owners --------\n"+
		"semid      perms      cuid       cgid       uid        gid       \n")
	assert.Contains(t, out, fmt.Sprintf("%-10d 640        root       root       root       root      \n", sid))

	// -l: the registry's limits (this binary's embedded registry: Linux's defaults).
	out = ipcs("-l")
	assert.Contains(t, out, fmt.Sprintf("------ Messages Limits --------\nmax queues system wide = %d\n"+
		"max size of message (bytes) = %d\ndefault max size of queue (bytes) = %d\n", kernel.MSGMNI, kernel.MSGMAX, kernel.MSGMNB))
	assert.Contains(t, out, fmt.Sprintf("------ Semaphore Limits --------\nmax number of arrays = %d\n"+
		"max semaphores per array = %d\nmax semaphores system wide = %d\nmax ops per semop call = %d\nsemaphore max value = %d\n",
		kernel.SEMMNI, kernel.SEMMSL, kernel.SEMMSL*kernel.SEMMNI, kernel.SEMOPM, kernel.SEMVMX))

	// -u: this package's tests make their objects one test at a time, so
	// the two objects above are all there is; a second queue with two
	// messages adds up.
	m2 := create(t, shm.KindMsg, testutil.Key(t), 0o600)
	require.NoError(t, msgq.Send(m2, 1, []byte("ab"), 0))
	require.NoError(t, msgq.Send(m2, 1, []byte("cde"), 0))
	out = ipcs("-u")
	assert.Contains(t, out, "------ Messages Status --------\nallocated queues = 2\nused headers = 3\nused space = 10 bytes\n\n")
	assert.Contains(t, out, "------ Semaphore Status --------\nused arrays = 1\nallocated semaphores = 3\n")

	// The last output option wins, as for util-linux; -t=false sets none.
	assert.Contains(t, ipcs("-t", "-c", "-q"), "Creators/Owners")
	assert.Contains(t, ipcs("-c", "-t", "-q"), "Send/Recv/Change Times")
	assert.Contains(t, ipcs("-t=false", "-q"), "------ Message Queues --------\n")
	_, _, code := runIpcs(t, "-t=maybe")
	assert.Equal(t, 2, code)

	// A queue or set this process may not read shows "-" where its own
	// words would be, and is left out of -u's sums (and counted).
	deny := func(int) (msgDetail, error) { return msgDetail{}, kernel.EACCES }
	denySem := func(int, bool) (semDetail, error) { return semDetail{}, kernel.EACCES }
	ms, ss := msgStat, semStat
	msgStat, semStat = deny, denySem
	t.Cleanup(func() { msgStat, semStat = ms, ss })
	assert.Contains(t, ipcs("-q", "-t"), fmt.Sprintf("%-8d root       -                    -                    -                   \n", mid))
	assert.Contains(t, ipcs("-q", "-p"), fmt.Sprintf("%-8d root            -         -\n", mid))
	assert.Contains(t, ipcs("-s", "-t"), fmt.Sprintf("%-8d root        -                          -                         \n", sid))
	assert.Contains(t, ipcs("-q"), fmt.Sprintf("0x%08x %-10d root       600        -            -           \n", uint32(mk), mid))
	assert.Contains(t, ipcs("-u", "-q"), "allocated queues = 2\nused headers = 0\nused space = 0 bytes\n"+
		"(not counted: 2 queues this user may not read)\n")
}

func init() {
	// ipcrm in a process of its own: its output (stderr) on stdout, then
	// its exit status.
	testutil.RegisterHelper("ipcrm", func(args []string) int { return ipcrm(args, os.Stdout) })
}

// ipcrm -a removes every object of the kinds given that the user may read,
// as util-linux's: one it may not read is left alone silently, one it may
// read but not remove is reported (EPERM) and the rest still removed.
func TestIpcrmAll(t *testing.T) {
	testutil.RequireRoot(t)
	hidden := create(t, shm.KindSem, testutil.Key(t), 0o600) // nobody may not read it
	shown := create(t, shm.KindMsg, testutil.Key(t), 0o644)  // may read, not remove
	given := create(t, shm.KindMsg, testutil.Key(t), 0o600)  // nobody's, after IPC_SET
	ds, err := msgq.Stat(given)
	require.NoError(t, err)
	ds.Perm.UID = testutil.Nobody
	require.NoError(t, msgq.Set(given, ds))
	gone := func(kind shm.Kind, id int) bool {
		c, err := registry.Default()
		require.NoError(t, err)
		_, err = c.Stat(kind, id)
		return errors.Is(err, kernel.EINVAL)
	}

	p := testutil.Start(t, "ipcrm", []string{"-a"}, testutil.AsNobody())
	lines := p.Rest(30 * time.Second)
	assert.Equal(t, 1, p.Wait(30*time.Second))
	assert.Equal(t, []string{fmt.Sprintf("ipcrm: msqid %d: operation not permitted", shown)}, lines)
	assert.True(t, gone(shm.KindMsg, given), "nobody's own queue is removed")
	assert.False(t, gone(shm.KindMsg, shown))
	assert.False(t, gone(shm.KindSem, hidden))

	var errb bytes.Buffer
	require.Equal(t, 0, ipcrm([]string{"-a=sem"}, &errb), errb.String())
	assert.True(t, gone(shm.KindSem, hidden))
	assert.False(t, gone(shm.KindMsg, shown), "-a=sem leaves the queues")
	require.Equal(t, 0, ipcrm([]string{"--all=msg"}, &errb), errb.String())
	assert.True(t, gone(shm.KindMsg, shown))
	require.Equal(t, 0, ipcrm([]string{"-a"}, &errb), "nothing left to remove is no error: %s", errb.String())

	assert.Equal(t, 2, ipcrm([]string{"-a=shm"}, &errb), "shm is not usysv's")
	assert.Equal(t, 2, ipcrm([]string{"-a", "x"}, &errb))
}
