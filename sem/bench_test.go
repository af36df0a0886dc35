package sem

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
)

// Benchmarks run usysv and the kernel side by side in the same run:
// compare the ns/op of the two sub-benchmarks of each.

func benchSet(b *testing.B, im impl, nsems int) (int, impl) {
	id := im.create(b, nsems, 0o600)
	if im.name == "usysv" {
		h, err := handle(id)
		require.NoError(b, err)
		return id, handleImpl(h)
	}
	return id, im
}

func benchPair(b *testing.B, nsems int, p, v []Buf) {
	for _, im := range impls {
		b.Run(im.name, func(b *testing.B) {
			id, im := benchSet(b, im, nsems)
			for i := 0; i < nsems; i++ {
				require.NoError(b, im.setVal(id, i, 1))
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := im.op(id, p); err != nil {
					b.Fatal(err)
				}
				if err := im.op(id, v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Uncontended P then V, one op each.
func BenchmarkPV(b *testing.B) {
	benchPair(b, 1, []Buf{{Num: 0, Op: -1}}, []Buf{{Num: 0, Op: 1}})
}

// The same with SEM_UNDO.
func BenchmarkPVUndo(b *testing.B) {
	benchPair(b, 1, []Buf{{Num: 0, Op: -1, Flg: SEM_UNDO}}, []Buf{{Num: 0, Op: 1, Flg: SEM_UNDO}})
}

// Three-op atomic arrays: take three semaphores, give them back.
func BenchmarkThreeOps(b *testing.B) {
	benchPair(b, 3,
		[]Buf{{Num: 0, Op: -1}, {Num: 1, Op: -1}, {Num: 2, Op: -1}},
		[]Buf{{Num: 0, Op: 1}, {Num: 1, Op: 1}, {Num: 2, Op: 1}})
}

// Cross-process ping-pong on two semaphores: a round trip is V(0) here,
// P(0) V(1) in the helper, P(1) here. "spin": both processes active (the
// default spin-then-sleep); "sleep": usysv with spinning off, so every
// wait sleeps in the kernel (the kernel's semop always sleeps).
func BenchmarkPingPong(b *testing.B) {
	for _, mode := range []string{"spin", "sleep"} {
		for _, im := range impls {
			if im.name == "kernel" && mode == "sleep" {
				continue
			}
			b.Run(im.name+"-"+mode, func(b *testing.B) {
				if mode == "sleep" {
					pq, ws := preQueueSpin, waiterSpin
					preQueueSpin, waiterSpin = 0, 0
					b.Cleanup(func() { preQueueSpin, waiterSpin = pq, ws })
				}
				id, hi := benchSet(b, im, 2)
				p := testutil.Start(b, "sem-pong", []string{im.name, strconv.Itoa(id), mode})
				p.Expect("ready", lineWait)
				v0, p1 := []Buf{{Num: 0, Op: 1}}, []Buf{{Num: 1, Op: -1}}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := hi.op(id, v0); err != nil {
						b.Fatal(err)
					}
					if err := hi.op(id, p1); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				p.Kill()
			})
		}
	}
}

func init() {
	testutil.RegisterHelper("sem-pong", func(args []string) int {
		id, _ := strconv.Atoi(args[1])
		im := implByName(args[0])
		if args[0] == "usysv" {
			h, err := OpenID(id)
			if err != nil {
				return 1
			}
			im = handleImpl(h)
		}
		if len(args) > 2 && args[2] == "sleep" {
			preQueueSpin, waiterSpin = 0, 0
		}
		os.Stdout.WriteString("ready\n")
		p0, v1 := []Buf{{Num: 0, Op: -1}}, []Buf{{Num: 1, Op: 1}}
		for {
			if im.op(id, p0) != nil || im.op(id, v1) != nil {
				return 1
			}
		}
	})
}

// The fast paths allocate nothing.
func TestNoAllocs(t *testing.T) {
	id := usysvImpl.create(t, 3, 0o600)
	s, err := handle(id)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, s.Op(ctx, b(0, 1, SEM_UNDO))) // takes the undo record
	cases := map[string]func(){
		"P/V": func() {
			_ = s.Op(ctx, b(0, 1, 0))
			_ = s.Op(ctx, b(0, -1, 0))
		},
		"P/V SEM_UNDO": func() {
			_ = s.Op(ctx, b(1, 1, SEM_UNDO))
			_ = s.Op(ctx, b(1, -1, SEM_UNDO))
		},
		"zero, EAGAIN": func() {
			_ = s.Op(ctx, b(2, 0, 0))
			_ = s.Op(ctx, b(2, -1, IPC_NOWAIT))
		},
		"package Op": func() {
			_ = Op(id, []Buf{b(0, 1, 0)})
			_ = Op(id, []Buf{b(0, -1, 0)})
		},
		"array": func() {
			_ = s.Op(ctx, b(0, 1, 0), b(1, 1, SEM_UNDO), b(2, 0, 0))
			_ = s.Op(ctx, b(0, -1, 0), b(1, -1, SEM_UNDO))
		},
		"GetVal": func() { _, _ = s.GetVal(1) },
	}
	for name, f := range cases {
		assert.Zero(t, testing.AllocsPerRun(1000, f), name)
	}
	require.NoError(t, s.check())
}

// The handle API directly (what bench/ uses): P then V.
func BenchmarkHandlePV(b *testing.B) {
	id := usysvImpl.create(b, 1, 0o600)
	s, err := handle(id)
	require.NoError(b, err)
	ctx := context.Background()
	p, v := Buf{Num: 0, Op: -1}, Buf{Num: 0, Op: 1}
	require.NoError(b, s.Op(ctx, v))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = s.Op(ctx, p)
		_ = s.Op(ctx, v)
	}
}

// The floor under the fast paths, on the set's own mapped words in the same
// run: what their locked instructions alone cost on this machine.
//   - "cas-pair": a P and a V as two CASes (BenchmarkPV's minimum);
//   - "txn3-pair": two three-op transactions as the lean path locks them —
//     the lock's CAS, three freezing CASes, the unlock's XCHG, each
//     (BenchmarkThreeOps' minimum while arrays are serialised by the lock
//     and each semaphore must be claimed against lock-free single ops).
func BenchmarkFloor(b *testing.B) {
	id := usysvImpl.create(b, 3, 0o600)
	s, err := handle(id)
	require.NoError(b, err)
	w := &s.words[0]
	b.Run("cas-pair", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			o := w.Load()
			w.CompareAndSwap(o, o+1)
			o = w.Load()
			w.CompareAndSwap(o, o-1)
		}
	})
	b.Run("txn3-pair", func(b *testing.B) {
		for i := 0; i < 2*b.N; i++ {
			if !s.mu.TryLock() {
				b.Fatal("lock held")
			}
			for k := range 3 {
				o := s.words[k].Load()
				s.words[k].CompareAndSwap(o, o|flagFrozen)
			}
			for k := range 3 {
				putWord(&s.words[k], s.words[k].Load()&^flagFrozen)
			}
			s.mu.Unlock()
		}
	})
}
