package sem

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
)

// step is one call, rendered as a string of its results.
type step func(im impl, id int) string

// differential runs the same steps on a fresh kernel set and a fresh usysv
// set of nsems semaphores (mode 0600) and requires identical transcripts.
func differential(t *testing.T, nsems int, steps ...step) {
	t.Helper()
	var out [2][]string
	for k, im := range impls {
		id := im.create(t, nsems, 0o600)
		for _, st := range steps {
			out[k] = append(out[k], st(im, id))
		}
		out[k] = append(out[k], vals(im, id))
	}
	require.Equal(t, strings.Join(out[0], "\n"), strings.Join(out[1], "\n"), "kernel vs usysv")
}

// op is a semop that must not block: one that does (a bug on one side)
// is reported as "hung" after opBound, and the comparison fails, instead
// of hanging the test until go test's -timeout.
func op(ops ...Buf) step {
	return func(im impl, id int) string {
		done := make(chan error, 1)
		go func() { done <- im.op(id, ops) }()
		select {
		case err := <-done:
			return fmt.Sprintf("op%v=%s", ops, errName(err))
		case <-time.After(opBound):
			return fmt.Sprintf("op%v=hung", ops) // (the set's removal at cleanup ends the call)
		}
	}
}

const opBound = 10 * time.Second

func timed(d time.Duration, ops ...Buf) step {
	return func(im impl, id int) string {
		return fmt.Sprintf("timed%v=%s", ops, errName(im.timedOp(id, ops, d)))
	}
}

func setval(num, val int) step {
	return func(im impl, id int) string {
		return fmt.Sprintf("setval(%d,%d)=%s", num, val, errName(im.setVal(id, num, val)))
	}
}

func setall(v ...uint16) step {
	return func(im impl, id int) string { return fmt.Sprintf("setall%v=%s", v, errName(im.setAll(id, v))) }
}

func getval(num int) step {
	return func(im impl, id int) string {
		v, err := im.getVal(id, num)
		return fmt.Sprintf("getval(%d)=%d,%s", num, v, errName(err))
	}
}

// pids renders every sempid as "self", "0" or "other".
func pids(im impl, id int) string {
	ds, err := im.stat(id)
	if err != nil {
		return "pids:" + errName(err)
	}
	var s []string
	for i := 0; i < ds.Nsems; i++ {
		p, err := im.getPid(id, i)
		switch {
		case err != nil:
			s = append(s, errName(err))
		case p == kernel.Getpid():
			s = append(s, "self")
		case p == 0:
			s = append(s, "0")
		default:
			s = append(s, "other")
		}
	}
	return "pids" + fmt.Sprint(s)
}

func vals(im impl, id int) string {
	v, err := im.getAll(id)
	return fmt.Sprintf("vals%v,%s", v, errName(err))
}

func TestDiffArrays(t *testing.T) {
	t.Run("sequential effects 9.2", func(t *testing.T) {
		differential(t, 2,
			op(b(0, 1, 0), b(0, -1, 0)),
			op(b(0, -1, IPC_NOWAIT), b(0, 1, 0)),
			op(b(0, 2, 0), b(0, -1, 0), b(0, 0, IPC_NOWAIT)),
			pids, vals)
	})
	t.Run("semop01 squares with SEM_UNDO", func(t *testing.T) {
		differential(t, 4, op(b(0, 0, SEM_UNDO), b(1, 1, SEM_UNDO), b(2, 4, SEM_UNDO), b(3, 9, SEM_UNDO)), pids)
	})
	t.Run("nowait per op 9.4", func(t *testing.T) {
		differential(t, 2,
			op(b(0, -1, IPC_NOWAIT), b(1, 1, 0)),
			timed(20*time.Millisecond, b(1, 1, IPC_NOWAIT), b(0, -1, 0)),
			vals)
	})
	t.Run("eagain 9.5", func(t *testing.T) {
		differential(t, 1, setval(0, 1), op(b(0, 0, IPC_NOWAIT)), op(b(0, -2, IPC_NOWAIT)), pids)
	})
	t.Run("erange 9.6", func(t *testing.T) {
		differential(t, 2,
			setval(1, 1),
			op(b(1, SEMVMX, 0)),
			op(b(0, -1, IPC_NOWAIT), b(1, SEMVMX, 0)),
			op(b(1, SEMVMX, 0), b(0, -1, IPC_NOWAIT)),
			op(b(0, SEMVMX, 0)),
			op(b(0, 1, 0)),
			op(b(0, 1, SEM_UNDO)),
			pids,
			setall(SEMVMX, 0), vals, // SEMVMX itself is a value
			setall(SEMVMX+1, 0), vals)
	})
	t.Run("semadj range 9.7", func(t *testing.T) {
		differential(t, 1,
			setval(0, SEMVMX),
			op(b(0, -SEMVMX, SEM_UNDO)), // semadj +32767
			op(b(0, 1, 0)),
			op(b(0, -1, SEM_UNDO)), // semadj would be 32768
			op(b(0, 1, 0), b(0, -1, SEM_UNDO)),
			op(b(0, 1, SEM_UNDO)), // semadj 32766
			op(b(0, -1, SEM_UNDO)),
			getval(0))
	})
	t.Run("semadj low end", func(t *testing.T) {
		differential(t, 1,
			op(b(0, SEMVMX, SEM_UNDO)), // semadj -32767
			setval(0, 0),               // clears it
			op(b(0, SEMVMX, SEM_UNDO)),
			op(b(0, -SEMVMX, 0)),
			op(b(0, 1, SEM_UNDO)), // semadj -32768: allowed
			op(b(0, -1, 0)),
			op(b(0, 1, SEM_UNDO)), // -32769: ERANGE
			getval(0))
	})
	t.Run("duplicates and undo in one array", func(t *testing.T) {
		differential(t, 3,
			op(b(2, 5, SEM_UNDO), b(2, -3, SEM_UNDO), b(1, 1, 0), b(2, -2, SEM_UNDO|IPC_NOWAIT)),
			op(b(2, 5, SEM_UNDO), b(2, -6, SEM_UNDO|IPC_NOWAIT)),
			op(b(0, 0, 0), b(1, 0, IPC_NOWAIT)),
			op(b(0, 0, 0), b(1, -1, 0), b(1, 0, 0)),
			pids)
	})
}

func TestDiffErrors(t *testing.T) {
	big := make([]Buf, SEMOPM+1)
	max := make([]Buf, SEMOPM)
	for i := range max {
		max[i] = b(0, 1, 0)
	}
	t.Run("check order 9.8 9.9", func(t *testing.T) {
		differential(t, 3,
			op(big...),
			op(),
			op(b(3, 1, 0)),
			op(b(65535, -1, SEM_UNDO)),
			op(b(0, 1, 0), b(3, 1, 0)),
			op(b(1, 0, 0), b(2, -1, IPC_NOWAIT), b(9, 1, 0)), // EFBIG before EAGAIN
			op(max...),
			timed(0, b(0, -SEMOPM-1, 0)),
			timed(10*time.Microsecond, b(1, -1, 0)),
			timed(10*time.Microsecond, b(0, 0, 0)),
			pids)
	})
	t.Run("bad ids", func(t *testing.T) {
		for _, im := range impls {
			err := im.op(-1, []Buf{b(0, 1, 0)})
			assert.ErrorIs(t, err, kernel.EINVAL, im.name)
			assert.ErrorIs(t, im.op(-1, big), kernel.E2BIG, im.name)
			assert.ErrorIs(t, im.op(-1, nil), kernel.EINVAL, im.name)
			_, err = im.getVal(-1, 0)
			assert.ErrorIs(t, err, kernel.EINVAL, im.name)
			assert.ErrorIs(t, im.setVal(-1, 0, -1), kernel.EINVAL, im.name, "semid < 0 beats ERANGE")
			_, err = im.stat(-1)
			assert.ErrorIs(t, err, kernel.EINVAL, im.name)
			assert.ErrorIs(t, im.remove(-1), kernel.EINVAL, im.name)
		}
	})
	t.Run("semctl ranges 8.4 8.5 semctl05", func(t *testing.T) {
		differential(t, 3,
			setval(0, -1), setval(0, 65535), setval(0, SEMVMX+1), setval(3, 1), setval(-1, 1),
			setval(3, -1), // ERANGE before the semnum check
			setall(65535, 65535, 65535),
			setall(1, 2, SEMVMX+1),
			getval(3), getval(-1),
			func(im impl, id int) string {
				_, e1 := im.getPid(id, 3)
				_, e2 := im.getNcnt(id, -1)
				_, e3 := im.getZcnt(id, 3)
				return errName(e1) + errName(e2) + errName(e3)
			},
			setval(1, 2), getval(1), setall(3, 3, 3), getval(2), pids)
	})
}

func TestDiffCtl(t *testing.T) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			before := time.Now().Unix()
			id := im.create(t, 10, 0o640)
			ds, err := im.stat(id)
			require.NoError(t, err)
			assert.Equal(t, 10, ds.Nsems)
			assert.Equal(t, uint32(0o640), ds.Perm.Mode)
			assert.Equal(t, uint32(kernel.Geteuid()), ds.Perm.CUID)
			assert.Equal(t, ds.Perm.UID, ds.Perm.CUID)
			assert.Zero(t, ds.Otime)
			assert.GreaterOrEqual(t, ds.Ctime, before-1)
			all, err := im.getAll(id)
			require.NoError(t, err)
			assert.Equal(t, make([]uint16, 10), all)
			pid, err := im.getPid(id, 4)
			require.NoError(t, err)
			assert.Zero(t, pid)
			for _, f := range []func(int, int) (int, error){im.getNcnt, im.getZcnt} {
				n, err := f(id, 4)
				require.NoError(t, err)
				assert.Zero(t, n)
			}
			// otime moves on a successful op, even one of zeros; not on SETVAL or failure.
			require.NoError(t, im.setVal(id, 0, 1))
			ds, _ = im.stat(id)
			assert.Zero(t, ds.Otime, "SETVAL does not set otime")
			assert.Error(t, im.op(id, []Buf{b(0, 0, IPC_NOWAIT)}))
			ds, _ = im.stat(id)
			assert.Zero(t, ds.Otime, "failed op does not set otime")
			require.NoError(t, im.op(id, []Buf{b(1, 0, 0)}))
			ds, _ = im.stat(id)
			assert.GreaterOrEqual(t, ds.Otime, before-1)
			pid, _ = im.getPid(id, 1)
			assert.Equal(t, kernel.Getpid(), pid, "a zero op sets sempid")
			// IPC_SET: uid, gid, mode&0777; ctime updated.
			ds.Perm.Mode = 0o7666
			require.NoError(t, im.set(id, ds))
			ds2, err := im.stat(id)
			require.NoError(t, err)
			assert.Equal(t, uint32(0o666), ds2.Perm.Mode)
			// IPC_RMID, then the id is stale: EINVAL everywhere.
			require.NoError(t, im.remove(id))
			assert.ErrorIs(t, im.op(id, []Buf{b(0, 1, 0)}), kernel.EINVAL)
			_, err = im.getVal(id, 0)
			assert.ErrorIs(t, err, kernel.EINVAL)
			_, err = im.stat(id)
			assert.ErrorIs(t, err, kernel.EINVAL)
			assert.ErrorIs(t, im.setVal(id, 0, 1), kernel.EINVAL)
			assert.ErrorIs(t, im.remove(id), kernel.EINVAL)
		})
	}
}

func TestDiffGet(t *testing.T) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			key := testutil.Key(t)
			_, err := im.get(key, -1, IPC_CREAT|0o600)
			assert.ErrorIs(t, err, kernel.EINVAL)
			_, err = im.get(key, SEMMSL+1, IPC_CREAT|0o600)
			assert.ErrorIs(t, err, kernel.EINVAL)
			_, err = im.get(key, 0, IPC_CREAT|0o600)
			assert.ErrorIs(t, err, kernel.EINVAL, "creating with nsems 0")
			_, err = im.get(IPC_PRIVATE, 0, 0o600)
			assert.ErrorIs(t, err, kernel.EINVAL)
			_, err = im.get(key, 1, 0)
			assert.ErrorIs(t, err, kernel.ENOENT)
			_, err = im.get(key, 1, IPC_EXCL)
			assert.ErrorIs(t, err, kernel.ENOENT)
			id, err := im.get(key, 3, IPC_CREAT|IPC_EXCL|0o600)
			require.NoError(t, err)
			im.track(t, id)
			_, err = im.get(key, 3, IPC_CREAT|IPC_EXCL|0o600)
			assert.ErrorIs(t, err, kernel.EEXIST)
			_, err = im.get(key, 4, 0)
			assert.ErrorIs(t, err, kernel.EINVAL)
			for _, n := range []int{0, 2, 3} {
				got, err := im.get(key, n, IPC_CREAT|0o600)
				require.NoError(t, err)
				assert.Equal(t, id, got)
			}
			p1, err := im.get(IPC_PRIVATE, 1, 0o600)
			require.NoError(t, err)
			im.track(t, p1)
			p2, err := im.get(IPC_PRIVATE, 1, IPC_CREAT|IPC_EXCL|0o600)
			require.NoError(t, err)
			im.track(t, p2)
			assert.NotEqual(t, p1, p2)
		})
	}
}

func TestBigSet(t *testing.T) {
	id := usysvImpl.create(t, SEMMSL, 0o600)
	require.NoError(t, Op(id, []Buf{b(SEMMSL-1, 3, SEM_UNDO), b(0, 1, 0)}))
	v, err := GetVal(id, SEMMSL-1)
	require.NoError(t, err)
	assert.Equal(t, 3, v)
	assert.ErrorIs(t, Op(id, []Buf{b(SEMMSL, 1, 0)}), kernel.EFBIG)
	all, err := GetAll(id)
	require.NoError(t, err)
	assert.Len(t, all, SEMMSL)
	all[5] = 7
	require.NoError(t, SetAll(id, all))
	assert.ErrorIs(t, SetAll(id, all[1:]), kernel.EINVAL)
	v, _ = GetVal(id, 5)
	assert.Equal(t, 7, v)
	h, err := handle(id)
	require.NoError(t, err)
	t.Logf("segment of a %d-semaphore set: %d bytes (%.0f per semaphore)", SEMMSL, h.seg.Len(), float64(h.seg.Len())/SEMMSL)
}

// SETVAL with values and ids outside C's int: the value is out of range
// (ERANGE, never truncated into it), and an id outside int names no set
// (EINVAL, before the value is looked at), for both implementations.
func TestSetValOutOfInt(t *testing.T) {
	forImpls(t, func(t *testing.T, im impl) {
		id := im.create(t, 1, 0o600)
		require.NoError(t, im.setVal(id, 0, 7))
		assert.ErrorIs(t, im.setVal(id, 0, -1), kernel.ERANGE)
		if strconv.IntSize == 64 {
			one := 1 // (a variable: the constants would not compile where int has 32 bits)
			assert.ErrorIs(t, im.setVal(id, 0, one<<32+1), kernel.ERANGE)
			assert.ErrorIs(t, im.setVal(one<<33, 0, SEMVMX+1), kernel.EINVAL)
		}
		assert.Equal(t, "vals[7],ok", vals(im, id))
	})
}
