package msgq

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/kernel"
)

// Sends and receives, one by one and in batches, against a model of the
// queue (a FIFO under Linux's queue-full test), over random steps on a
// small queue: phases of tiny messages, which fill the ring's slots
// before the queue is full, and phases of small messages (the ring), ones
// around the ring's limit and big ones (the store, which closes the
// ring); typed receives (which close it too); and
// blocking calls with a short deadline when they must wait. Every call
// returns (a watchdog fails one that loops past its deadline), sends and
// receives exactly what the model says, and every message arrives once,
// whole and in order.
func TestBatchModel(t *testing.T) {
	q := newQueueConfig(t, Config{Capacity: 512}) // a ring of minRing slots
	qb := int(q.qbytes())
	rng := rand.New(rand.NewSource(1))
	var model []Msg
	cbytes := 0
	fits := func(n int) bool { return cbytes+n <= qb && len(model)+1 <= qb }
	seq := 0
	tiny := false // in tiny phases the ring's slots fill before the queue does
	newMsg := func() Msg {
		var n int
		switch r := rng.Intn(10); {
		case tiny:
			n = rng.Intn(8)
		case r < 6:
			n = rng.Intn(24)
		case r < 9:
			n = slotText - 2 + rng.Intn(4) // around the ring's limit
		default:
			n = 150 + rng.Intn(100) // the store
		}
		data := bytes.Repeat([]byte{byte(seq)}, n)
		copy(data, fmt.Sprint(seq))
		seq++
		return Msg{Type: int64(1 + rng.Intn(3)), Data: data}
	}
	// call runs f with a deadline's context; a call that outlives it by
	// far has looped past it.
	call := func(name string, f func(ctx context.Context)) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Millisecond)
		defer cancel()
		done := make(chan struct{})
		go func() { defer close(done); f(ctx) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not return", name)
		}
	}
	take := func(i int, got Msg, what string) {
		require.Equal(t, model[i].Type, got.Type, what)
		require.Equal(t, model[i].Data, got.Data[:got.N], what)
		cbytes -= len(model[i].Data)
		model = append(model[:i], model[i+1:]...)
	}
	bufs := func(k int) []Msg {
		ms := make([]Msg, k)
		for i := range ms {
			ms[i].Data = make([]byte, 256)
		}
		return ms
	}
	for step := 0; step < 2000; step++ {
		what := fmt.Sprintf("step %d", step)
		tiny = step/100%2 == 1
		switch rng.Intn(6) {
		case 0, 1: // SendBatch: as many as fit, in order; then it waits
			msgs := make([]Msg, 1+rng.Intn(24))
			want := 0
			for i := range msgs {
				msgs[i] = newMsg()
				if want == i && fits(len(msgs[i].Data)) {
					model = append(model, msgs[i])
					cbytes += len(msgs[i].Data)
					want++
				}
			}
			var n int
			var err error
			call("SendBatch", func(ctx context.Context) { n, err = q.SendBatch(ctx, msgs) })
			require.Equal(t, want, n, what)
			if want < len(msgs) {
				require.ErrorIs(t, err, kernel.EINTR, what)
			} else {
				require.NoError(t, err, what)
			}
		case 2: // TrySend
			m := newMsg()
			err := q.TrySend(m.Type, m.Data)
			if fits(len(m.Data)) {
				require.NoError(t, err, what)
				model = append(model, m)
				cbytes += len(m.Data)
			} else {
				require.ErrorIs(t, err, ErrFull, what)
			}
		case 3: // RecvBatch, FIFO: what is there, up to k; else it waits
			ms := bufs(1 + rng.Intn(24))
			var n int
			var err error
			call("RecvBatch", func(ctx context.Context) { n, err = q.RecvBatch(ctx, ms, 0, 0) })
			want := min(len(ms), len(model))
			if want == 0 {
				require.ErrorIs(t, err, kernel.EINTR, what)
				break
			}
			require.NoError(t, err, what)
			require.Equal(t, want, n, what)
			for _, m := range ms[:n] {
				take(0, m, what)
			}
		case 4: // a typed receive (of a message behind the first, often)
			ms := bufs(1)
			typ := int64(1 + rng.Intn(3))
			i := 0
			for i < len(model) && model[i].Type != typ {
				i++
			}
			n, mt, err := q.TryRecv(ms[0].Data, typ, 0)
			if i == len(model) {
				require.ErrorIs(t, err, ErrEmpty, what)
				break
			}
			require.NoError(t, err, what)
			ms[0].N, ms[0].Type = n, mt
			take(i, ms[0], what)
		case 5: // Recv, FIFO, blocking
			ms := bufs(1)
			var err error
			call("Recv", func(ctx context.Context) { ms[0].N, ms[0].Type, err = q.Recv(ctx, ms[0].Data, 0, 0) })
			if len(model) == 0 {
				require.ErrorIs(t, err, kernel.EINTR, what)
				break
			}
			require.NoError(t, err, what)
			take(0, ms[0], what)
		}
		if step%50 == 0 {
			ds, err := q.Stat()
			require.NoError(t, err)
			require.EqualValues(t, len(model), ds.Qnum, what)
			require.EqualValues(t, cbytes, ds.Cbytes, what)
			require.NoError(t, q.Check(), what)
		}
	}
}
