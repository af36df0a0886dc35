package msgq

import (
	"context"
	"errors"
	"math/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

func TestNoAllocsOnFastPath(t *testing.T) {
	q := newQueue(t)
	ctx := context.Background()
	msg := make([]byte, 64)
	buf := make([]byte, 64)
	batch := []Msg{{Type: 1, Data: msg}, {Type: 2, Data: msg}}
	rbatch := []Msg{{Data: make([]byte, 64)}, {Data: make([]byte, 64)}}
	allocs := testing.AllocsPerRun(1000, func() {
		if err := q.Send(ctx, 1, msg); err != nil {
			t.Fatal(err)
		}
		if _, _, err := q.Recv(ctx, buf, 0, 0); err != nil {
			t.Fatal(err)
		}
		if err := q.TrySend(3, msg); err != nil {
			t.Fatal(err)
		}
		if _, _, err := q.TryRecv(buf, 3, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := q.SendBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if n, err := q.RecvBatch(ctx, rbatch, 0, 0); err != nil || n != 2 {
			t.Fatal(n, err)
		}
		if _, _, err := q.TryRecv(buf, 0, 0); err != ErrEmpty {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}

func TestContextCancel(t *testing.T) {
	q := newQueue(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, _, err := q.Recv(ctx, make([]byte, 8), 0, 0)
		done <- err
	}()
	waitSlots(t, q, 1)
	cancel()
	err := <-done
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, kernel.EINTR)

	// A full queue: a sender times out.
	require.NoError(t, q.Set(DS{Perm: statPerm(t, q), Qbytes: 1}))
	require.NoError(t, q.Send(context.Background(), 1, []byte("x")))
	tctx, tcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer tcancel()
	err = q.Send(tctx, 1, []byte("y"))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, kernel.EINTR)
	assert.ErrorIs(t, q.TrySend(1, []byte("y")), ErrFull)
	assert.ErrorIs(t, q.TrySend(1, []byte("y")), kernel.EAGAIN)
}

func statPerm(t *testing.T, q *Queue) kernel.IpcPerm {
	ds, err := q.Stat()
	require.NoError(t, err)
	return ds.Perm
}

// waitSlots waits until n waiter slots of q are taken.
func waitSlots(t *testing.T, q *Queue, n int) {
	t.Helper()
	deadline := time.Now().Add(lineWait)
	for {
		k := 0
		for i := range q.v.slots {
			if q.v.slots[i].State.Load() != slotFree {
				k++
			}
		}
		if k >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters, want %d", k, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestClose(t *testing.T) {
	q := newQueue(t)
	h, err := OpenID(q.ID())
	require.NoError(t, err)
	done := make(chan error)
	go func() {
		_, _, err := h.Recv(context.Background(), make([]byte, 8), 0, 0)
		done <- err
	}()
	waitSlots(t, q, 1)
	require.NoError(t, h.Close())
	assert.ErrorIs(t, <-done, ErrClosed)
	require.NoError(t, h.Close())
	assert.ErrorIs(t, h.TrySend(1, nil), ErrClosed)
	_, _, err = h.TryRecv(nil, 0, 0)
	assert.ErrorIs(t, err, kernel.EINVAL)
	// The queue itself is fine, its slot given back.
	require.NoError(t, q.Check())
	require.NoError(t, q.TrySend(1, []byte("still here")))
}

func TestBatches(t *testing.T) {
	q := newQueue(t)
	ctx := context.Background()
	require.NoError(t, q.Set(DS{Perm: statPerm(t, q), Qbytes: 100}))
	var msgs []Msg
	for i := 0; i < 12; i++ {
		msgs = append(msgs, Msg{Type: int64(1 + i%3), Data: []byte("0123456789")})
	}
	n, err := q.TrySendBatch(msgs)
	assert.Equal(t, 10, n)
	assert.ErrorIs(t, err, ErrFull)
	_, err = q.SendBatch(ctx, []Msg{{Type: 1}, {Type: 0}})
	assert.ErrorIs(t, err, kernel.EINVAL, "a batch with a bad message sends nothing")

	// A blocked SendBatch finishes as room is made.
	sent := make(chan int)
	go func() {
		n, err := q.SendBatch(ctx, msgs[10:])
		assert.NoError(t, err)
		sent <- n
	}()
	rb := make([]Msg, 4)
	for i := range rb {
		rb[i].Data = make([]byte, 10)
	}
	got, err := q.RecvBatch(ctx, rb, 2, 0)
	require.NoError(t, err)
	assert.Equal(t, 3, got) // types 1,2,3 repeat: 10 queued hold three of type 2
	for _, m := range rb[:got] {
		assert.Equal(t, int64(2), m.Type)
		assert.Equal(t, "0123456789", string(m.Data[:m.N]))
	}
	assert.Equal(t, 2, <-sent)
	// A message too big ends a batch before it; first in the batch: E2BIG.
	got, err = q.TryRecvBatch(rb, 0, 0)
	require.NoError(t, err)
	assert.Equal(t, 4, got)
	require.NoError(t, q.TrySend(9, []byte("a much longer message")))
	got, err = q.TryRecvBatch(rb, 0, 0)
	require.NoError(t, err)
	assert.Equal(t, 4, got)
	got, err = q.TryRecvBatch(rb, 0, 0)
	require.NoError(t, err)
	assert.Equal(t, 1, got, "stops before the long one")
	_, err = q.TryRecvBatch(rb, 0, 0)
	assert.ErrorIs(t, err, kernel.E2BIG)
	got, err = q.TryRecvBatch(rb, 0, MSG_NOERROR)
	require.NoError(t, err)
	assert.Equal(t, 1, got)
	assert.Equal(t, "a much lon", string(rb[0].Data[:rb[0].N]))
	_, err = q.TryRecvBatch(rb, 0, 0)
	assert.ErrorIs(t, err, ErrEmpty)
	_, err = q.RecvBatch(ctx, rb, 0, MSG_COPY|IPC_NOWAIT)
	assert.ErrorIs(t, err, kernel.EINVAL)
}

// Queues larger than Linux's limits, for the library's own use.
func TestConfig(t *testing.T) {
	q := newQueueConfig(t, Config{MaxMsg: 64 << 10, Capacity: 256 << 10, Waiters: 2})
	assert.Equal(t, 64<<10, q.MaxMsg())
	assert.Equal(t, uint64(256<<10), q.Capacity())
	big := make([]byte, 64<<10)
	rand.New(rand.NewSource(1)).Read(big)
	for i := 0; i < 4; i++ {
		require.NoError(t, q.TrySend(1, big))
	}
	assert.ErrorIs(t, q.TrySend(1, []byte{1}), ErrFull)
	assert.ErrorIs(t, q.TrySend(1, make([]byte, 64<<10+1)), kernel.EINVAL)
	buf := make([]byte, 64<<10)
	n, _, err := q.TryRecv(buf, 0, 0)
	require.NoError(t, err)
	assert.Equal(t, big, buf[:n])
	ds, err := q.Stat()
	require.NoError(t, err)
	assert.Equal(t, uint64(256<<10), ds.Qbytes)
	ds.Qbytes = 512 << 10
	assert.Error(t, q.Set(ds), "above the capacity (and MSGMNB)")

	for _, bad := range []Config{{MaxMsg: -1}, {Capacity: -1}, {Capacity: 10, Qbytes: 11}, {Waiters: shm.MaxWaiters + 1}, {MaxMsg: maxMsgLimit + 1}} {
		_, err := OpenConfig(IPC_PRIVATE, 0o600, bad)
		assert.ErrorIs(t, err, kernel.EINVAL, "%+v", bad)
	}
}

// More blocked callers than waiter slots: the rest sleep on the overflow
// word and are still served, and still see removal.
func TestWaiterOverflow(t *testing.T) {
	q := newQueueConfig(t, Config{Waiters: 1})
	ctx := context.Background()
	const n = 3
	got := make(chan string, n)
	for i := 0; i < n; i++ {
		go func() {
			buf := make([]byte, 8)
			k, _, err := q.Recv(ctx, buf, 0, 0)
			if err != nil {
				got <- errName(err)
				return
			}
			got <- string(buf[:k])
		}()
	}
	waitSlots(t, q, 1)
	testutilEventually(t, func() bool { return q.v.ctl.ovfWait.Load() == n-1 })
	for _, s := range []string{"a", "b"} {
		require.NoError(t, q.Send(ctx, 1, []byte(s)))
	}
	assert.ElementsMatch(t, []string{"a", "b"}, []string{<-got, <-got})
	require.NoError(t, q.Remove())
	assert.Equal(t, "EIDRM", <-got)
}

func testutilEventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(lineWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		time.Sleep(time.Millisecond)
	}
}

// The segment is hostile input: whatever its body holds, operations
// return errors (ErrCorrupt) and never panic or reach outside it; a
// rebuild after a dead holder salvages what is sound.
func TestCorruptBody(t *testing.T) {
	q := newQueue(t)
	ctx := context.Background()
	v := q.v
	reset := func() {
		*v.ctl = control{}
		clear(v.links)
		for i := range v.slots {
			v.slots[i].State.Store(slotFree)
		}
	}
	fill := func() {
		reset()
		for i := 0; i < 10; i++ {
			require.NoError(t, q.TrySend(int64(1+i%3), make([]byte, 50*i)))
		}
	}
	cases := map[string]func(){
		"head out of range":       func() { v.ctl.head = v.nblocks + 1 },
		"cycle":                   func() { v.hdr(v.ctl.tail - 1).next = v.ctl.head },
		"length above max":        func() { v.hdr(v.ctl.head - 1).len = MSGMAX + 1 },
		"chain cut":               func() { v.links[v.ctl.tail-1] = 0; v.hdr(v.ctl.tail - 1).len = 400 },
		"free list out of range":  func() { v.ctl.free = v.nblocks + 7 },
		"bump out of range":       func() { v.ctl.bump = v.nblocks + 5 },
		"counters":                func() { v.ctl.qnum = 3 },
		"type zero":               func() { v.hdr(v.ctl.head - 1).mtype = 0 },
		"chain into another":      func() { v.links[v.ctl.head-1] = v.ctl.tail },
		"slot holds a wild block": func() { v.slots[0].State.Store(slotDelivered); v.slots[0].Arg[argBlock].Store(1 << 40) },
	}
	for name, corrupt := range cases {
		fill()
		corrupt()
		assert.ErrorIs(t, q.Check(), ErrCorrupt, name)
		for _, typ := range []int64{0, 2, -3, 99} {
			_, _, err := q.TryRecv(make([]byte, MSGMAX), typ, 0)
			_ = err // anything but a panic
		}
		_ = q.TrySend(1, make([]byte, 300))
		// A lock holder that died hands its successor a rebuild: the result
		// is sound again.
		v.repair(true)
		assert.NoError(t, v.check(), name)
	}
	// Random scribbles over the whole body.
	rng := rand.New(rand.NewSource(7))
	raw := make([]byte, 4*len(v.links))
	for i := 0; i < 300; i++ {
		fill()
		switch rng.Intn(3) {
		case 0:
			rng.Read(raw)
			for j := range v.links {
				v.links[j] = uint32(raw[4*j]) % (v.nblocks + 3)
			}
		case 1:
			v.ctl.head, v.ctl.tail, v.ctl.free = rng.Uint32()%(v.nblocks+2), rng.Uint32()%(v.nblocks+2), rng.Uint32()%(v.nblocks+2)
		case 2:
			rng.Read(v.raw[:blockSize*20])
		}
		for k := 0; k < 5; k++ {
			_, _, _ = q.TryRecv(make([]byte, MSGMAX), int64(rng.Intn(7)-3), rng.Intn(2)*MSG_NOERROR)
			_ = q.TrySend(int64(1+rng.Intn(3)), make([]byte, rng.Intn(500)))
		}
		_ = q.Check()
		v.repair(true)
		require.NoError(t, v.check(), "after rebuild, round %d", i)
	}
	reset()
	require.NoError(t, q.Send(ctx, 1, []byte("sound again")))
}

var _ = errors.Is
