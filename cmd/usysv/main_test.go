package main

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/registry"
	"github.com/usysv/usysv/shm"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func create(t *testing.T, kind shm.Kind, key, mode int) int {
	t.Helper()
	c, err := registry.Default()
	require.NoError(t, err)
	req := registry.GetRequest{Kind: kind, Key: int32(key), Flags: kernel.IPC_CREAT | kernel.IPC_EXCL | mode}
	if kind == shm.KindSem {
		req.Count = 3
		req.Layout = shm.Params{Count: 3, Waiters: 2, BodySize: 64}
	} else {
		req.Layout = shm.Params{Capacity: 1024, Waiters: 2, BodySize: 1024}
		req.Param = 1024
	}
	id, err := c.Get(req)
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
	out, _, code := runIpcs(t)
	require.Equal(t, 0, code)
	assert.Contains(t, out, "------ Message Queues --------\nkey        msqid      owner      perms      used-bytes   messages    \n")
	assert.Contains(t, out, "------ Semaphore Arrays --------\nkey        semid      owner      perms      nsems     \n")
	assert.Contains(t, out, fmt.Sprintf("0x%08x %-10d %-10s %-10s %-10s\n", uint32(sk), sid, "root", "640", "3"))
	assert.Contains(t, out, fmt.Sprintf("0x%08x %-10d %-10s %-10s ", uint32(mk), mid, "root", "600"))

	out, _, code = runIpcs(t, "-s")
	require.Equal(t, 0, code)
	assert.NotContains(t, out, "Message Queues")
	assert.Contains(t, out, strconv.Itoa(sid))

	out, _, code = runIpcs(t, "-s", "-i", strconv.Itoa(sid))
	require.Equal(t, 0, code)
	assert.Contains(t, out, fmt.Sprintf("Semaphore Array semid=%d\n", sid))
	assert.Contains(t, out, "mode=0640, access_perms=0640\nnsems = 3\n")
	out, _, code = runIpcs(t, "-q", "-i", strconv.Itoa(mid))
	require.Equal(t, 0, code)
	assert.Contains(t, out, "qbytes=1024")

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
	if msgCreate == nil {
		assert.Equal(t, 1, ipcmk([]string{"-Q"}, &out, &errb))
		assert.True(t, strings.Contains(errb.String(), "not linked"), errb.String())
	}
}
