package sem

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
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

// Uncontended P then V while another process that made a SEM_UNDO op on
// the set has exec'd and lives on without using it (its record's Life is
// marked: undoerDied looks at it on every op; TestUndoKeptAcrossExecUntouched).
// Compare with BenchmarkPV/usysv.
func BenchmarkPVAfterExec(b *testing.B) {
	for _, im := range impls {
		b.Run(im.name, func(b *testing.B) {
			id, hi := benchSet(b, im, 2)
			p := testutil.Start(b, "sem-client", []string{im.name, strconv.Itoa(id)})
			p.Send("op 1:1:u")
			p.Expect("ok", lineWait)
			p.Send("exec")
			p.Expect("ok", lineWait)
			require.NoError(b, hi.setVal(id, 0, 1))
			pv := [2][]Buf{{{Num: 0, Op: -1}}, {{Num: 0, Op: 1}}}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, ops := range pv {
					if err := hi.op(id, ops); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			p.Kill()
		})
	}
}

// Three-op atomic arrays: take three semaphores, give them back.
func BenchmarkThreeOps(b *testing.B) {
	benchPair(b, 3,
		[]Buf{{Num: 0, Op: -1}, {Num: 1, Op: -1}, {Num: 2, Op: -1}},
		[]Buf{{Num: 0, Op: 1}, {Num: 1, Op: 1}, {Num: 2, Op: 1}})
}

// Cross-process ping-pong on two semaphores: a round trip is V(0) here,
// P(0) V(1) in the helper, P(1) here.
//   - "active": both processes run, waiting the default way (usysv: spin
//     for a while, adaptively, then sleep; the kernel's semop always sleeps);
//   - "sleep": the same with usysv's spinning off, so that every wait
//     sleeps in the kernel although the partner is running;
//   - "asleep": each side pauses asleepGap before it posts, so that the
//     other is asleep when the post arrives. ns/op is the round trip less
//     the helper's pauses: the two posts (each waking a sleeper) and the
//     two sleepers' return paths. post-ns is the post alone: the waker's
//     side of a wake-up (usysv: its locked path and FUTEX_WAKE; the
//     kernel: semop).
//
// PINGPONG_CPUS="a,b" pins this process to CPU a and the helper to CPU b.
func BenchmarkPingPong(b *testing.B) {
	for _, mode := range []string{"active", "sleep", "asleep"} {
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
				cpus := strings.Split(os.Getenv("PINGPONG_CPUS"), ",")
				if len(cpus) == 2 {
					c, _ := strconv.Atoi(cpus[0])
					require.NoError(b, kernel.PinCPU(c))
				}
				id, hi := benchSet(b, im, 2)
				warm := 50
				if mode == "asleep" {
					warm = 3
				}
				args := []string{im.name, strconv.Itoa(id), mode, strconv.Itoa(warm + b.N)}
				if len(cpus) == 2 {
					args = append(args, cpus[1])
				}
				p := testutil.Start(b, "sem-pong", args)
				p.Expect("ready", lineWait)
				v0, p1 := []Buf{{Num: 0, Op: 1}}, []Buf{{Num: 1, Op: -1}}
				var total, posts time.Duration
				rts := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for i := 0; i < warm+b.N; i++ {
					if mode == "asleep" {
						time.Sleep(asleepGap) // let the helper fall asleep
					}
					t0 := time.Now()
					if err := hi.op(id, v0); err != nil {
						b.Fatal(err)
					}
					if i >= warm {
						posts += time.Since(t0)
					}
					if err := hi.op(id, p1); err != nil {
						b.Fatal(err)
					}
					if i >= warm {
						d := time.Since(t0)
						total += d
						rts = append(rts, d)
					}
				}
				b.StopTimer()
				gaps, err := strconv.ParseInt(p.Line(lineWait), 10, 64)
				require.NoError(b, err)
				p.Kill()
				b.ReportMetric(float64(total-time.Duration(gaps))/float64(b.N), "ns/op")
				b.ReportMetric(float64(posts)/float64(b.N), "post-ns") // asleep: the post that wakes a sleeper
				if mode != "asleep" {                                  // (there, round trips include the helper's pauses)
					slices.Sort(rts)
					b.ReportMetric(float64(rts[len(rts)/2]), "p50-ns")
					b.ReportMetric(float64(rts[len(rts)*99/100]), "p99-ns")
				}

			})
		}
	}
}

// The floor of an active ping-pong round trip on this machine: the same
// two words, raw atomics, both sides spinning (no semaphore logic, no
// yields). PINGPONG_CPUS applies as above.
func BenchmarkFloorPingPong(b *testing.B) {
	cpus := strings.Split(os.Getenv("PINGPONG_CPUS"), ",")
	if len(cpus) == 2 {
		c, _ := strconv.Atoi(cpus[0])
		require.NoError(b, kernel.PinCPU(c))
	}
	id := usysvImpl.create(b, 2, 0o600)
	s, err := handle(id)
	require.NoError(b, err)
	args := []string{strconv.Itoa(id)}
	if len(cpus) == 2 {
		args = append(args, cpus[1])
	}
	p := testutil.Start(b, "sem-floor-pong", args)
	p.Expect("ready", lineWait)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.words[0].Add(1)
		for s.words[1].Load() == 0 {
		}
		s.words[1].Add(^uint64(0))
	}
	b.StopTimer()
	p.Kill()
}

func init() {
	testutil.RegisterHelper("sem-floor-pong", func(args []string) int {
		id, _ := strconv.Atoi(args[0])
		if len(args) > 1 {
			c, _ := strconv.Atoi(args[1])
			if kernel.PinCPU(c) != nil {
				return 1
			}
		}
		s, err := OpenID(id)
		if err != nil {
			return 1
		}
		os.Stdout.WriteString("ready\n")
		for {
			for s.words[0].Load() == 0 {
			}
			s.words[0].Add(^uint64(0))
			s.words[1].Add(1)
		}
	})
}

// asleepGap is how long a side of the "asleep" ping-pong pauses before
// it posts (as bench's sem/pingpong-asleep).
const asleepGap = 200 * time.Microsecond

func init() {
	// sem-pong IMPL ID MODE ROUNDS [CPU]: P(0) V(1), ROUNDS times (pausing
	// before each V in "asleep" mode), then prints the total pause in ns.
	testutil.RegisterHelper("sem-pong", func(args []string) int {
		id, _ := strconv.Atoi(args[1])
		rounds, _ := strconv.Atoi(args[3])
		if len(args) > 4 {
			c, _ := strconv.Atoi(args[4])
			if kernel.PinCPU(c) != nil {
				return 1
			}
		}
		im := implByName(args[0])
		if args[0] == "usysv" {
			h, err := OpenID(id)
			if err != nil {
				return 1
			}
			im = handleImpl(h)
		}
		mode := args[2]
		if mode == "sleep" {
			preQueueSpin, waiterSpin = 0, 0
		}
		os.Stdout.WriteString("ready\n")
		p0, v1 := []Buf{{Num: 0, Op: -1}}, []Buf{{Num: 1, Op: 1}}
		var gaps time.Duration
		for i := 0; i < rounds; i++ {
			if im.op(id, p0) != nil {
				return 1
			}
			if mode == "asleep" {
				t := time.Now()
				time.Sleep(asleepGap)
				if i >= 3 {
					gaps += time.Since(t)
				}
			}
			if im.op(id, v1) != nil {
				return 1
			}
		}
		fmt.Println(int64(gaps))
		_, _ = readLine() // until killed
		return 0
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
//   - "undo-pair": a SEM_UNDO P and V as four CASes, each op claiming its
//     semadj word then changing the semaphore's (BenchmarkPVUndo's
//     minimum: the claim keeps one process's goroutines from an ABA);
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
	b.Run("undo-pair", func(b *testing.B) {
		a := &s.v.recs[0].adj[0]
		for i := 0; i < b.N; i++ {
			for _, d := range []uint64{1, ^uint64(0)} {
				c := a.Load()
				a.CompareAndSwap(c, c|adjBusy)
				o := w.Load()
				w.CompareAndSwap(o, o+d)
				putWord32(a, c)
			}
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

func putWord32(a *atomic.Uint32, v uint32) { put32(a, v) }

// The package-level functions (an id → handle cache in front): P then V.
func BenchmarkPackagePV(b *testing.B) {
	id := usysvImpl.create(b, 1, 0o600)
	p, v := []Buf{{Num: 0, Op: -1}}, []Buf{{Num: 0, Op: 1}}
	require.NoError(b, Op(id, v))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = Op(id, p)
		_ = Op(id, v)
	}
}
