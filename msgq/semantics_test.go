package msgq

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/kernel"
)

// Differential tests: the same calls on the kernel and on usysv, with the
// results compared (SEMANTICS A3–A6).

// A3.1, A4.1: a new queue's msqid_ds.
func TestStatNewQueue(t *testing.T) {
	var got [2]DS
	for i, im := range impls {
		before := time.Now().Unix()
		id := im.create(t, 0o640)
		ds, err := im.stat(id)
		require.NoError(t, err, im.name)
		assert.Zero(t, ds.Qnum, im.name)
		assert.Zero(t, ds.Cbytes, im.name)
		assert.Zero(t, ds.Lspid, im.name)
		assert.Zero(t, ds.Lrpid, im.name)
		assert.Zero(t, ds.Stime, im.name)
		assert.Zero(t, ds.Rtime, im.name)
		assert.Equal(t, uint64(MSGMNB), ds.Qbytes, im.name)
		assert.InDelta(t, before, ds.Ctime, 2, im.name)
		assert.Equal(t, uint32(0o640), ds.Perm.Mode&0o777, im.name)
		assert.Equal(t, uint32(kernel.Geteuid()), ds.Perm.UID, im.name)
		assert.Equal(t, ds.Perm.UID, ds.Perm.CUID, im.name)
		assert.Equal(t, ds.Perm.GID, ds.Perm.CGID, im.name)
		assert.NotZero(t, ds.Perm.Key, im.name)
		got[i] = ds
	}
	assert.Equal(t, got[0].Perm.Mode, got[1].Perm.Mode)
}

// A5.1, A6.1: counters, pids and times after send and receive.
func TestCountersAndTimes(t *testing.T) {
	forEach(t, func(t *testing.T, im impl) {
		id := im.create(t, 0o600)
		before := time.Now().Unix()
		require.NoError(t, im.send(id, 1, make([]byte, 1024), 0))
		require.NoError(t, im.send(id, 2, make([]byte, 10), 0))
		after := time.Now().Unix()
		ds, err := im.stat(id)
		require.NoError(t, err)
		assert.Equal(t, uint64(2), ds.Qnum)
		assert.Equal(t, uint64(1034), ds.Cbytes)
		assert.Equal(t, kernel.Getpid(), ds.Lspid)
		assert.Zero(t, ds.Lrpid)
		assert.GreaterOrEqual(t, ds.Stime, before-1) // coarse clock may lag by its tick
		assert.LessOrEqual(t, ds.Stime, after)
		assert.Zero(t, ds.Rtime)

		buf := make([]byte, 2048)
		n, typ, err := im.recv(id, buf, 0, 0)
		require.NoError(t, err)
		assert.Equal(t, 1024, n)
		assert.Equal(t, int64(1), typ)
		ds, err = im.stat(id)
		require.NoError(t, err)
		assert.Equal(t, uint64(1), ds.Qnum)
		assert.Equal(t, uint64(10), ds.Cbytes)
		assert.Equal(t, kernel.Getpid(), ds.Lrpid)
		assert.GreaterOrEqual(t, ds.Rtime, before-1)
		assert.NotZero(t, ds.Stime)
	})
}

// A5.2, A5.3, A6.9, A4.6: argument errors, compared errno for errno.
func TestArgumentErrors(t *testing.T) {
	ids := map[string]int{}
	for _, im := range impls {
		ids[im.name] = im.create(t, 0o600)
	}
	big := make([]byte, MSGMAX+1)
	cases := []struct {
		name string
		run  func(im impl, id int) error
	}{
		{"send type 0", func(im impl, id int) error { return im.send(id, 0, nil, 0) }},
		{"send type -1", func(im impl, id int) error { return im.send(id, -1, nil, 0) }},
		{"send size MSGMAX+1", func(im impl, id int) error { return im.send(id, 1, big, 0) }},
		{"send size MSGMAX+1 bad id", func(im impl, id int) error { return im.send(-1, 1, big, 0) }},
		{"send id -1", func(im impl, id int) error { return im.send(-1, 1, nil, 0) }},
		{"send bad type and id", func(im impl, id int) error { return im.send(-1, 0, nil, 0) }},
		{"recv id -1", func(im impl, id int) error { _, _, err := im.recv(-1, nil, 0, 0); return err }},
		{"stat id -1", func(im impl, id int) error { _, err := im.stat(-1); return err }},
		{"set id -1", func(im impl, id int) error { return im.set(-1, DS{}) }},
		{"rm id -1", func(im impl, id int) error { return im.remove(-1) }},
		{"copy without nowait", func(im impl, id int) error { _, _, err := im.recv(id, nil, 0, MSG_COPY); return err }},
		{"copy with except", func(im impl, id int) error {
			_, _, err := im.recv(id, nil, 0, MSG_COPY|MSG_EXCEPT|IPC_NOWAIT)
			return err
		}},
		{"copy flags bad id", func(im impl, id int) error { _, _, err := im.recv(-1, nil, 0, MSG_COPY); return err }},
		{"send size MSGMAX", func(im impl, id int) error { return im.send(id, 1, big[:MSGMAX], 0) }},
		{"send size 0", func(im impl, id int) error { return im.send(id, 1, nil, 0) }},
		{"recv empty nowait", func(im impl, id int) error {
			_, _, err := im.recv(id, make([]byte, 8), 99, IPC_NOWAIT)
			return err
		}},
	}
	for _, c := range cases {
		k := errName(c.run(kernelImpl, ids["kernel"]))
		u := errName(c.run(usysvImpl, ids["usysv"]))
		assert.Equal(t, k, u, c.name)
	}
	// The expectations themselves (the kernel could change; SEMANTICS says):
	assert.Equal(t, "EINVAL", errName(usysvImpl.send(ids["usysv"], 0, nil, 0)))
	assert.Equal(t, "EINVAL", errName(usysvImpl.send(ids["usysv"], 1, big, 0)))
}

// A6.2, A6.3: type selection, compared on a queue holding the same
// messages, receive by receive.
func TestTypeSelection(t *testing.T) {
	msgs := []struct {
		typ  int64
		text string
	}{{3, "3a"}, {1, "1a"}, {5, "5a"}, {1, "1b"}, {2, "2a"}, {5, "5b"}, {121, "121a"}, {4, "4a"}}
	recvs := []struct {
		typ   int64
		flags int
	}{
		{-3, 0}, {-3, 0}, {5, MSG_EXCEPT}, {-2, MSG_EXCEPT}, {7, 0}, {0, MSG_EXCEPT}, {5, 0},
		{-121, MSG_NOERROR}, {math.MinInt, 0}, {-1, 0}, {-1, MSG_EXCEPT}, {0, 0}, {0, 0}, {0, 0}, {0, 0},
	}
	var logs [2][]string
	for i, im := range impls {
		id := im.create(t, 0o600)
		for _, m := range msgs {
			require.NoError(t, im.send(id, m.typ, []byte(m.text), 0))
		}
		for _, r := range recvs {
			buf := make([]byte, 64)
			n, typ, err := im.recv(id, buf, r.typ, r.flags|IPC_NOWAIT)
			logs[i] = append(logs[i], fmt.Sprintf("recv(%d,%#o) → %s %d %q", r.typ, r.flags, errName(err), typ, buf[:n]))
		}
	}
	assert.Equal(t, logs[0], logs[1])
	// SEMANTICS 6.2 PROBE: [3a,1a,1b,2a], msgtyp -3 → 1a then 1b.
	assert.Contains(t, logs[1][0], `"1a"`)
	assert.Contains(t, logs[1][1], `"1b"`)
}

// msgtyp < 0 takes the first message of the lowest type ≤ |msgtyp| also
// when that type is not 1 (where a search may stop at its first find), and
// MSG_EXCEPT is ignored for msgtyp < 0 also when the head is not of the
// lowest type. (From a mutation review: TestTypeSelection's lowest type
// is 1 and its head for EXCEPT is already the lowest, so a search that
// kept the last of the lowest type, or honoured EXCEPT there, passed.)
func TestLowestTypeFirst(t *testing.T) {
	var logs [2][]string
	for i, im := range impls {
		id := im.create(t, 0o600)
		for _, m := range []struct {
			typ  int64
			text string
		}{{3, "3a"}, {2, "2a"}, {2, "2b"}, {3, "3b"}, {math.MaxInt, "max"}} { // (MaxInt: a C long)
			require.NoError(t, im.send(id, m.typ, []byte(m.text), 0))
		}
		for _, r := range []struct {
			typ   int64
			flags int
		}{{-3, 0}, {-2, MSG_EXCEPT}, {-7, MSG_EXCEPT}, {0, 0}, {math.MinInt, 0}} {
			buf := make([]byte, 64)
			n, typ, err := im.recv(id, buf, r.typ, r.flags|IPC_NOWAIT)
			logs[i] = append(logs[i], fmt.Sprintf("recv(%d,%#o) → %s %d %q", r.typ, r.flags, errName(err), typ, buf[:n]))
		}
	}
	assert.Equal(t, logs[0], logs[1])
	assert.Equal(t, []string{`recv(-3,0) → ok 2 "2a"`, `recv(-2,020000) → ok 2 "2b"`,
		`recv(-7,020000) → ok 3 "3a"`, `recv(0,0) → ok 3 "3b"`,
		fmt.Sprintf(`recv(%d,0) → ok %d "max"`, math.MinInt, math.MaxInt)}, logs[1])
}

// A6.4, A6.5, A6.10: E2BIG leaves the message queued, MSG_NOERROR
// truncates and removes, MSG_COPY copies by index.
func TestSizesAndCopy(t *testing.T) {
	var logs [2][]string
	for i, im := range impls {
		id := im.create(t, 0o600)
		log := func(what string, n int, typ int64, buf []byte, err error) {
			ds, serr := im.stat(id)
			require.NoError(t, serr)
			logs[i] = append(logs[i], fmt.Sprintf("%s → %s n=%d type=%d %q qnum=%d cbytes=%d",
				what, errName(err), n, typ, buf[:n], ds.Qnum, ds.Cbytes))
		}
		require.NoError(t, im.send(id, 1, []byte("0123456789"), 0))
		require.NoError(t, im.send(id, 2, []byte("abcdefghijklmnopqrstuvwxyz"), 0))
		buf := make([]byte, 100)
		n, typ, err := im.recv(id, buf[:9], 0, IPC_NOWAIT)
		log("recv 9 of 10", n, typ, buf, err)
		n, typ, err = im.recv(id, buf[:10], 0, MSG_COPY|IPC_NOWAIT)
		log("copy 0", n, typ, buf, err)
		n, typ, err = im.recv(id, buf[:30], 1, MSG_COPY|IPC_NOWAIT)
		log("copy 1", n, typ, buf, err)
		n, typ, err = im.recv(id, buf[:30], 2, MSG_COPY|IPC_NOWAIT)
		log("copy 2 of 2", n, typ, buf, err)
		n, typ, err = im.recv(id, buf[:30], -1, MSG_COPY|IPC_NOWAIT)
		log("copy -1", n, typ, buf, err)
		n, typ, err = im.recv(id, buf[:5], 1, MSG_COPY|IPC_NOWAIT)
		log("copy 1 small", n, typ, buf, err)
		n, typ, err = im.recv(id, buf[:5], 1, MSG_COPY|MSG_NOERROR|IPC_NOWAIT)
		log("copy 1 small noerror", n, typ, buf, err)
		n, typ, err = im.recv(id, buf[:4], 0, MSG_NOERROR|IPC_NOWAIT)
		log("recv 4 noerror", n, typ, buf, err)
		n, typ, err = im.recv(id, buf[:0], 0, MSG_NOERROR|IPC_NOWAIT)
		log("recv 0 noerror", n, typ, buf, err)
		n, typ, err = im.recv(id, buf, 0, IPC_NOWAIT)
		log("recv empty", n, typ, buf, err)
	}
	assert.Equal(t, logs[0], logs[1])
	t.Log(strings.Join(logs[1], "\n"))
	assert.True(t, strings.HasPrefix(logs[1][0], "recv 9 of 10 → E2BIG"), logs[1][0])
}

// A5.4, A5.5, A4.3: Linux's queue-full test, counted in messages and
// bytes; qbytes above MSGMNB needs CAP_SYS_RESOURCE; qbytes 0 is allowed.
func TestQueueFull(t *testing.T) {
	var logs [2][]string
	for i, im := range impls {
		id := im.create(t, 0o600)
		ds, err := im.stat(id)
		require.NoError(t, err)
		set := func(qbytes uint64) string {
			d := ds
			d.Qbytes = qbytes
			return errName(im.set(id, d))
		}
		logs[i] = append(logs[i], "set 3: "+set(3))
		for k := 0; k < 4; k++ {
			logs[i] = append(logs[i], "send 0 bytes: "+errName(im.send(id, 1, nil, IPC_NOWAIT)))
		}
		for k := 0; k < 3; k++ {
			_, _, err := im.recv(id, nil, 0, IPC_NOWAIT)
			require.NoError(t, err)
		}
		logs[i] = append(logs[i], "send 4 > qbytes: "+errName(im.send(id, 1, []byte("1234"), IPC_NOWAIT)))
		logs[i] = append(logs[i], "send 3 bytes: "+errName(im.send(id, 1, []byte("123"), IPC_NOWAIT)))
		logs[i] = append(logs[i], "send 1 more: "+errName(im.send(id, 1, nil, IPC_NOWAIT)))
		logs[i] = append(logs[i], "set MSGMNB+1: "+set(MSGMNB+1))
		logs[i] = append(logs[i], "set MSGMNB: "+set(MSGMNB))
		logs[i] = append(logs[i], "set 0: "+set(0))
		logs[i] = append(logs[i], "send at 0: "+errName(im.send(id, 1, nil, IPC_NOWAIT)))
		logs[i] = append(logs[i], "set 1000: "+set(1000))
		// Fill with incrementing types until EAGAIN: the count is qnum.
		_, _, err = im.recv(id, make([]byte, 8), 0, IPC_NOWAIT)
		require.NoError(t, err)
		count := 0
		for ; count < 5000; count++ {
			if err := im.send(id, int64(count+1), make([]byte, 10), IPC_NOWAIT); err != nil {
				logs[i] = append(logs[i], "fill: "+errName(err))
				break
			}
		}
		ds2, err := im.stat(id)
		require.NoError(t, err)
		logs[i] = append(logs[i], fmt.Sprintf("accepted %d, qnum %d, cbytes %d, qbytes %d", count, ds2.Qnum, ds2.Cbytes, ds2.Qbytes))
	}
	assert.Equal(t, logs[0], logs[1])
	assert.Contains(t, logs[1], "set MSGMNB+1: EPERM")
	assert.Contains(t, logs[1], "accepted 100, qnum 101, cbytes 1000, qbytes 1000") // a 0-byte message was left
}

// A4.2: IPC_SET of mode, qbytes; ctime moves; cuid stays.
func TestSetFields(t *testing.T) {
	forEach(t, func(t *testing.T, im impl) {
		id := im.create(t, 0o640)
		ds, err := im.stat(id)
		require.NoError(t, err)
		ds.Perm.Mode = 0o7777
		ds.Qbytes--
		require.NoError(t, im.set(id, ds))
		got, err := im.stat(id)
		require.NoError(t, err)
		assert.Equal(t, uint32(0o777), got.Perm.Mode&0o7777)
		assert.Equal(t, ds.Qbytes, got.Qbytes)
		assert.Equal(t, ds.Perm.CUID, got.Perm.CUID)
		assert.GreaterOrEqual(t, got.Ctime, ds.Ctime)
		bad := got
		bad.Perm.UID = math.MaxUint32
		assert.Equal(t, "EINVAL", errName(im.set(id, bad)))
	})
}

// A4.5, A1.10: after IPC_RMID every call with the id gives EINVAL.
func TestRemovedID(t *testing.T) {
	forEach(t, func(t *testing.T, im impl) {
		id := im.create(t, 0o600)
		require.NoError(t, im.send(id, 1, []byte("x"), 0))
		require.NoError(t, im.remove(id))
		assert.Equal(t, "EINVAL", errName(im.send(id, 1, []byte("x"), IPC_NOWAIT)))
		_, _, err := im.recv(id, make([]byte, 8), 0, IPC_NOWAIT)
		assert.Equal(t, "EINVAL", errName(err))
		_, err = im.stat(id)
		assert.Equal(t, "EINVAL", errName(err))
		assert.Equal(t, "EINVAL", errName(im.set(id, DS{})))
		assert.Equal(t, "EINVAL", errName(im.remove(id)))
	})
}

// Messages of bigCopy bytes and more, which usysv copies outside its lock:
// the same E2BIG, truncation, MSG_COPY, type selection and counters as
// the kernel's.
func TestBigMessages(t *testing.T) {
	var logs [2][]string
	big := func(c byte, n int) []byte { return []byte(strings.Repeat(string(c), n)) }
	for i, im := range impls {
		id := im.create(t, 0o600)
		log := func(what string, n int, typ int64, buf []byte, err error) {
			ds, serr := im.stat(id)
			require.NoError(t, serr)
			sum := 0
			for _, b := range buf[:n] {
				sum += int(b)
			}
			logs[i] = append(logs[i], fmt.Sprintf("%s → %s n=%d type=%d sum=%d qnum=%d cbytes=%d",
				what, errName(err), n, typ, sum, ds.Qnum, ds.Cbytes))
		}
		require.NoError(t, im.send(id, 1, big('a', 3000), 0))
		require.NoError(t, im.send(id, 2, big('b', bigCopy), 0))
		require.NoError(t, im.send(id, 3, big('c', MSGMAX), 0))
		require.NoError(t, im.send(id, 1, big('d', 10), 0))
		buf := make([]byte, MSGMAX)
		n, typ, err := im.recv(id, buf[:2999], 0, IPC_NOWAIT)
		log("recv 2999 of 3000", n, typ, buf, err)
		n, typ, err = im.recv(id, buf[:5000], 2, MSG_COPY|IPC_NOWAIT)
		log("copy 2", n, typ, buf, err)
		n, typ, err = im.recv(id, buf, 3, IPC_NOWAIT)
		log("recv type 3", n, typ, buf, err)
		n, typ, err = im.recv(id, buf[:100], 1, MSG_EXCEPT|MSG_NOERROR|IPC_NOWAIT)
		log("recv except 1, 100 noerror", n, typ, buf, err)
		n, typ, err = im.recv(id, buf[:100], -1, MSG_NOERROR|IPC_NOWAIT)
		log("recv -1, 100 noerror", n, typ, buf, err)
		n, typ, err = im.recv(id, buf, 0, IPC_NOWAIT)
		log("recv 0", n, typ, buf, err)
		n, typ, err = im.recv(id, buf, 0, IPC_NOWAIT)
		log("recv empty", n, typ, buf, err)
		ds, err := im.stat(id)
		require.NoError(t, err)
		ds.Qbytes = 5000
		require.NoError(t, im.set(id, ds))
		logs[i] = append(logs[i], "send 3000: "+errName(im.send(id, 4, big('e', 3000), IPC_NOWAIT)))
		logs[i] = append(logs[i], "send 3000 more: "+errName(im.send(id, 4, big('f', 3000), IPC_NOWAIT)))
		logs[i] = append(logs[i], "send 2000: "+errName(im.send(id, 4, big('g', 2000), IPC_NOWAIT)))
		n, typ, err = im.recv(id, buf, 4, IPC_NOWAIT)
		log("recv 4", n, typ, buf, err)
		n, typ, err = im.recv(id, buf, 4, IPC_NOWAIT)
		log("recv 4", n, typ, buf, err)
	}
	assert.Equal(t, logs[0], logs[1])
	t.Log(strings.Join(logs[1], "\n"))
}

// ctime moves with IPC_SET and not with a send or a receive.
func TestCtimeOnSet(t *testing.T) {
	forEach(t, func(t *testing.T, im impl) {
		id := im.create(t, 0o600)
		ctime := func() int64 {
			ds, err := im.stat(id)
			require.NoError(t, err)
			return ds.Ctime
		}
		before := ctime()
		nextSecond(before)
		require.NoError(t, im.send(id, 1, []byte("x"), 0))
		_, _, err := im.recv(id, make([]byte, 8), 0, 0)
		require.NoError(t, err)
		assert.Equal(t, before, ctime(), "send and receive leave ctime")
		ds, err := im.stat(id)
		require.NoError(t, err)
		ds.Perm.Mode = 0o640
		require.NoError(t, im.set(id, ds))
		assert.Greater(t, ctime(), before, "IPC_SET moves ctime")
	})
}

// nextSecond sleeps until the wall clock's second is past sec, and then
// 20 ms more: the kernel's seconds (ktime_get_real_seconds) move at its
// next tick, up to 4 ms after the second begins here.
func nextSecond(sec int64) {
	if d := time.Until(time.Unix(sec+1, 0).Add(20 * time.Millisecond)); d > 0 {
		time.Sleep(d)
	}
}
