package sem

import (
	"context"
	"errors"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

func newSet(t *testing.T, nsems int) *Array {
	t.Helper()
	s, err := Open(testutil.Key(t), nsems, IPC_CREAT|IPC_EXCL|0o600)
	require.NoError(t, err)
	t.Cleanup(func() {
		if !s.seg.Removed() {
			assert.NoError(t, s.check())
		}
		_ = s.Remove()
		_ = s.Close()
	})
	return s
}

func TestHandleBasics(t *testing.T) {
	s := newSet(t, 2)
	ctx := context.Background()
	assert.Equal(t, 2, s.Nsems())
	assert.ErrorIs(t, s.TryOp(b(0, -1, 0)), kernel.EAGAIN)
	assert.ErrorIs(t, s.TryOp(b(0, 1, 0), b(1, -1, 0)), kernel.EAGAIN)
	require.NoError(t, s.Op(ctx, b(0, 2, 0)))
	require.NoError(t, s.TryOp(b(0, -1, 0), b(1, 1, 0)))
	assert.ErrorIs(t, s.TimedOp(-time.Second, b(0, 1, 0)), kernel.EINVAL)
	assert.ErrorIs(t, s.TimedOp(0, b(0, -5, 0)), kernel.EAGAIN)
	assert.ErrorIs(t, s.Op(ctx), kernel.EINVAL)
	assert.ErrorIs(t, s.Op(ctx, make([]Buf, SEMOPM+1)...), kernel.E2BIG)
	all, err := s.GetAll()
	require.NoError(t, err)
	assert.Equal(t, []uint16{1, 1}, all)

	other, err := OpenID(s.ID())
	require.NoError(t, err)
	require.NoError(t, other.Close())
	require.NoError(t, other.Close(), "Close is idempotent")
	assert.ErrorIs(t, other.Op(ctx, b(0, 1, 0)), kernel.EINVAL)
	assert.ErrorIs(t, other.Op(ctx, b(0, 1, 0)), ErrClosed)
	_, err = other.GetVal(0)
	assert.ErrorIs(t, err, kernel.EINVAL)

	_, err = OpenID(-1)
	assert.ErrorIs(t, err, kernel.EINVAL)
	shmid, err := kernel.Shmget(kernel.IPC_PRIVATE, 4096, 0o600)
	require.NoError(t, err)
	testutil.Track(t, "shm", shmid)
	_, err = OpenID(shmid)
	assert.ErrorIs(t, err, kernel.EINVAL, "a segment that is not a usysv set")
}

// Cancelling the context of a blocked Op: nothing applied, the error is
// both the context's and EINTR, the waiter is gone.
func TestCancel(t *testing.T) {
	s := newSet(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Op(ctx, b(1, 1, SEM_UNDO), b(0, -1, 0)) }()
	testutil.Eventually(t, lineWait, "the op to block", func() bool {
		n, _ := s.GetNcnt(0)
		return n == 1
	})
	cancel()
	err := <-done
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, kernel.EINTR)
	n, _ := s.GetNcnt(0)
	assert.Zero(t, n)
	v, _ := s.GetVal(1)
	assert.Zero(t, v)
	// An ended context does not matter to an op that need not block.
	require.NoError(t, s.Op(ctx, b(0, 1, 0)))
	require.NoError(t, s.Op(ctx, b(0, -1, 0), b(1, 0, 0)))
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	assert.ErrorIs(t, s.Op(ctx2, b(0, -1, 0)), context.Canceled, "an ended context fails an op that must block")
}

// The waiter table is bounded: one more blocked op than it holds gets
// ENOSPC; removal wakes every waiter with EIDRM, in this process too.
func TestWaiterLimitAndRemove(t *testing.T) {
	s := newSet(t, 1)
	slots := len(s.v.slots)
	var wg sync.WaitGroup
	errs := make(chan error, slots)
	for i := 0; i < slots; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Op(context.Background(), b(0, -1, 0))
		}()
	}
	testutil.Eventually(t, lineWait, "all slots taken", func() bool {
		n, _ := s.GetNcnt(0)
		return n == slots
	})
	err := s.Op(context.Background(), b(0, -1, 0))
	assert.ErrorIs(t, err, kernel.ENOSPC)
	assert.ErrorIs(t, err, ErrNoWaiterSlot)
	require.NoError(t, s.check())
	require.NoError(t, s.Remove())
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.ErrorIs(t, err, kernel.EIDRM)
	}
	assert.ErrorIs(t, s.Op(context.Background(), b(0, 1, 0)), kernel.EINVAL)
}

// Arrays of different sizes share the arena without overlapping.
func TestArena(t *testing.T) {
	s := newSet(t, 3)
	var wg sync.WaitGroup
	sizes := []int{1, 300, 2, 150, 5}
	for _, n := range sizes {
		ops := make([]Buf, n)
		for i := range ops {
			ops[i] = b(uint16(i%2), 0, 0)
		}
		ops[n-1] = b(2, -1, 0)
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, s.Op(context.Background(), ops...))
		}()
	}
	testutil.Eventually(t, lineWait, "all waiting", func() bool {
		n, _ := s.GetNcnt(2)
		return n == len(sizes)
	})
	require.NoError(t, s.check())
	big := make([]Buf, SEMOPM)
	for i := range big {
		big[i] = b(2, -1, 0)
	}
	assert.ErrorIs(t, s.Op(context.Background(), big...), ErrNoWaiterSlot, "arena full")
	require.NoError(t, s.SetVal(2, len(sizes)))
	wg.Wait()
	v, _ := s.GetVal(2)
	assert.Zero(t, v)
}

// An array of SEMOPM ops can block while other waiters are queued, as on
// Linux (fuzz FINDINGS F17: it got ENOSPC when the arena was SEMOPM).
func TestFullArrayQueues(t *testing.T) {
	s := newSet(t, 1)
	done := make(chan error, 1)
	go func() { done <- s.Op(context.Background(), b(0, -1, 0)) }()
	testutil.Eventually(t, lineWait, "queued", func() bool {
		n, _ := s.GetNcnt(0)
		return n == 1
	})
	big := make([]Buf, SEMOPM)
	for i := range big {
		big[i] = b(0, -4, 0)
	}
	assert.ErrorIs(t, s.TimedOp(20*time.Millisecond, big...), kernel.EAGAIN)
	require.NoError(t, s.check())
	require.NoError(t, s.SetVal(0, 1))
	require.NoError(t, <-done)
}

// More processes with SEM_UNDO than records: ENOSPC, until one dies.
func TestUndoRecordLimit(t *testing.T) {
	s := newSet(t, 1)
	start1, err := kernel.ProcessStartTime(1)
	require.NoError(t, err)
	for r := range s.v.recs {
		s.v.recs[r].hdr.start.Store(start1)
		s.v.recs[r].hdr.pid.Store(1) // init: alive for ever
	}
	err = s.Op(context.Background(), b(0, 1, SEM_UNDO))
	assert.ErrorIs(t, err, ErrNoUndoRecord)
	assert.ErrorIs(t, err, kernel.ENOSPC)
	s.v.recs[7].hdr.start.Store(start1 + 1) // now names a dead process
	require.NoError(t, s.Op(context.Background(), b(0, 1, SEM_UNDO)))
	assert.Equal(t, 7, s.recIndex())
	for r := range s.v.recs {
		if r != 7 {
			s.v.recs[r].hdr.pid.Store(0)
		}
	}
}

// forgeWaiter makes waiter slot idx of s a waiting one of this process,
// with the array packed in ops (packSlotOps).
func forgeWaiter(s *Array, idx int, ops uint64) *waiterSlot {
	slot := &s.v.slots[idx]
	slot.PID.Store(uint32(kernel.Getpid()))
	_, start := kernel.Self()
	slot.Start.Store(start)
	slot.Arg[argOps].Store(ops)
	slot.State.Store(stWaiting)
	return slot
}

// The segment is hostile input: garbage in a waiter slot or the journal
// gives errors, never a panic or a hang.
func TestCorruptSlot(t *testing.T) {
	s := newSet(t, 2)
	slot := forgeWaiter(s, 3, packSlotOps(len(s.v.arena)-1, 400, 5))
	s.v.hdr.nwait.Add(1)
	assert.Error(t, s.check(), "a slot in use above slotsHi")
	s.v.hdr.slotsHi.Store(4)
	require.NoError(t, s.Op(context.Background(), b(0, 1, 0), b(1, 1, 0)))
	assert.Equal(t, uint32(stDone), slot.State.Load(), "the malformed waiter is failed")
	assert.Equal(t, uint64(kernel.EINVAL), slot.Arg[argResult].Load())
	slot.State.Store(0)
	require.NoError(t, s.check())

	seg := s.seg
	p := seg.Params()
	p.BodySize += 8
	mem := make([]byte, p.Size())
	require.NoError(t, shm.Format(mem, p, 0, 0, 0o600, 0))
	bad, err := shm.FromBytes(mem)
	require.NoError(t, err)
	_, err = newView(bad)
	assert.ErrorIs(t, err, shm.ErrCorrupt)
}

// Garbage in a waiter slot's blocking index or in the journal's argument,
// above 2^63 (a negative int), is ignored: GETNCNT and a repair that
// applies the journal used them as indexes and panicked (found by
// FuzzCorruptSem), inside the critical section, which left the lock held
// by the (live) process whose panic was recovered.
func TestCorruptIndexes(t *testing.T) {
	s := newSet(t, 2)
	s.v.arena[0].Store(packOp(b(0, -1, 0)))
	slot := forgeWaiter(s, 0, packSlotOps(0, 1, 0))
	slot.Arg[argBlock].Store(1 << 63)
	s.v.hdr.slotsHi.Store(1)
	for _, zero := range []bool{false, true} {
		n, err := s.count(0, zero)
		require.NoError(t, err)
		assert.Zero(t, n, "a waiter whose blocking index is garbage is not counted")
	}
	slot.Arg[argBlock].Store(0)
	n, err := s.GetNcnt(0)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "and is, once it is not")
	slot.State.Store(0)

	for _, kind := range []int{jkOps, jkSetVal, jkUndo} {
		s.lock()
		s.v.hdr.jarg.Store(1 << 63)
		s.v.hdr.jcommit.Store(packCommit(kind, -1, 0, 1))
		s.v.jadj[0].Store(1 << 63)
		s.repairLocked(true)
		assert.Zero(t, s.v.hdr.jcommit.Load(), "kind %d: applied", kind)
		s.unlock()
	}
	require.NoError(t, s.TryOp(b(0, 1, 0)), "the lock is free")
	require.NoError(t, s.check())
}

func TestCheckFindsBreakage(t *testing.T) {
	s := newSet(t, 2)
	require.NoError(t, s.check())
	s.v.words[1].Store(s.v.words[1].Load() | flagFrozen)
	err := s.check()
	require.Error(t, err)
	assert.True(t, errors.Is(err, shm.ErrCorrupt))
	s.v.words[1].Store(0)
	s.v.recs[0].adj[1].Store(5)
	assert.Error(t, s.check(), "a free record with a semadj")
	s.v.recs[0].adj[1].Store(0)
	require.NoError(t, s.check())

	done := make(chan error)
	go func() { done <- s.Op(context.Background(), b(0, -1, 0)) }()
	testutil.Eventually(t, lineWait, "the op to block", func() bool {
		n, _ := s.GetNcnt(0)
		return n == 1
	})
	require.NoError(t, s.check())
	hi := s.v.hdr.slotsHi.Load()
	s.v.hdr.slotsHi.Store(0)
	assert.Error(t, s.check(), "a waiter above slotsHi")
	s.v.hdr.slotsHi.Store(hi)
	require.NoError(t, s.SetVal(0, 1))
	require.NoError(t, <-done)
	require.NoError(t, s.check())
}

func TestLayoutGolden(t *testing.T) {
	for _, c := range []struct {
		nsems   int
		waiters uint32
		body    uint64
	}{
		{1, 64, 128 + 16 + 8 + 8*(500+4*64) + 32*128},
		{3, 64, 128 + 48 + 24 + 8*(500+4*64) + 32*128},
		{1000, 1024, 128 + 16000 + 4000 + 8*(500+4*1024) + 32*4096},
	} {
		p := layoutFor(c.nsems)
		assert.Equal(t, c.waiters, p.Waiters, c.nsems)
		assert.Equal(t, c.body, p.BodySize, c.nsems)
		assert.Zero(t, p.BodySize%8)
	}
	assert.Equal(t, Buf{Num: 65535, Op: -32768, Flg: SEM_UNDO | IPC_NOWAIT}, unpackOp(packOp(Buf{Num: 65535, Op: -32768, Flg: SEM_UNDO | IPC_NOWAIT})))
	k, slot, e, n := unpackCommit(packCommit(jkOps, 1023, int(kernel.ERANGE), 500))
	assert.Equal(t, []int{jkOps, 1023, int(kernel.ERANGE), 500}, []int{k, slot, e, n})
	off, n2, rec := unpackSlotOps(packSlotOps(4095, 500, -1))
	assert.Equal(t, []int{4095, 500, -1}, []int{off, n2, rec})
}

// Once apply has released a word early, it is anyone's: a lock-free op may
// change it at once, and nothing in the transaction may write it again (an
// array naming the semaphore twice used to store it twice).
func TestReleasedWordIsLeftAlone(t *testing.T) {
	s := newSet(t, 2)
	ctx := context.Background()
	bumped := map[int]bool{}
	afterRelease = func(s *Array, i int) {
		if bumped[i] {
			return
		}
		bumped[i] = true
		w := &s.v.words[i]
		for {
			o := w.Load()
			if w.CompareAndSwap(o, o+1) { // another process's V, between the stores
				return
			}
		}
	}
	t.Cleanup(func() { afterRelease = nil })
	require.NoError(t, s.Op(ctx, b(0, 1, SEM_UNDO), b(0, 1, 0), b(1, 2, 0), b(1, -1, 0)))
	afterRelease = nil
	all, err := s.GetAll()
	require.NoError(t, err)
	assert.Equal(t, []uint16{3, 2}, all, "each word released once, the other process's V kept")
}

// Short arrays without SEM_UNDO take the lean path (fast.go), not the
// general one (slowHook says which). Results are the kernel's, a
// semaphore named twice is released once, and whatever the lean path
// cannot do goes to the general path.
func TestLeanPath(t *testing.T) {
	s := newSet(t, 3)
	ctx := context.Background()
	require.NoError(t, s.Op(ctx, b(2, 0, 0))) // the general path opens the gate
	var slow atomic.Bool
	slowHook = func() { slow.Store(true) }
	t.Cleanup(func() { slowHook = nil })
	path := func(want string, ops ...Buf) error {
		t.Helper()
		slow.Store(false)
		err := s.Op(ctx, ops...)
		assert.Equal(t, want == "general", slow.Load(), "%v: the %s path", ops, want)
		return err
	}
	lean := func(ops ...Buf) error {
		t.Helper()
		return path("lean", ops...)
	}
	require.NoError(t, lean(b(0, 2, 0), b(1, 1, 0), b(0, -1, 0)))
	assert.ErrorIs(t, lean(b(0, -1, 0), b(1, -2, IPC_NOWAIT)), kernel.EAGAIN)
	assert.ErrorIs(t, lean(b(2, 0, 0), b(0, SEMVMX, 0)), kernel.ERANGE)
	assert.ErrorIs(t, lean(b(1, -2, IPC_NOWAIT), b(0, SEMVMX, 0)), kernel.EAGAIN, "the first op that fails decides")
	require.NoError(t, lean(b(1, -1, 0), b(1, 0, IPC_NOWAIT), b(0, 1, 0)), "wait-for-zero after the op that makes it zero")
	all, err := s.GetAll()
	require.NoError(t, err)
	assert.Equal(t, []uint16{2, 0, 0}, all)
	for i := 0; i < 3; i++ {
		pid, _ := s.GetPid(i)
		assert.Equal(t, kernel.Getpid(), pid)
	}

	// Once released, a word is anyone's; nothing stores it again.
	bumped := map[int]bool{}
	afterRelease = func(s *Array, i int) {
		if !bumped[i] {
			bumped[i] = true
			s.words[i].Add(1) // another process's V, between the stores
		}
	}
	require.NoError(t, lean(b(0, 1, 0), b(1, 2, 0), b(0, 1, 0), b(1, -1, 0)))
	afterRelease = nil
	all, _ = s.GetAll()
	assert.Equal(t, []uint16{5, 2, 0}, all)

	// A blocking array, SEM_UNDO, a WAITED semaphore: the general path.
	done := make(chan error)
	go func() { done <- s.Op(ctx, b(2, -1, 0), b(0, -1, 0)) }() // (not path: the waker below sets the same flag, so its check here could not fail)
	testutil.Eventually(t, lineWait, "the array to block", func() bool {
		n, _ := s.GetNcnt(2)
		return n == 1
	})
	require.NoError(t, path("general", b(1, 1, 0), b(2, 1, 0))) // WAITED: served by the waker
	require.NoError(t, <-done)
	require.NoError(t, path("general", b(0, -1, SEM_UNDO), b(1, 1, 0)))
	all, _ = s.GetAll()
	assert.Equal(t, []uint16{3, 4, 0}, all)
	require.NoError(t, s.check())
}

// The spin policy: spins that pay keep spinning on, spins that do not turn
// it off within a few calls, and a handle with no credit still probes.
func TestSpinPolicy(t *testing.T) {
	var p spinPolicy
	p.credit.Store(spinCredit / 2)
	tight, total, kind := p.start(time.Second)
	require.Equal(t, []any{spinTight, spinTight, kindCredit}, []any{tight, total, kind}, "with credit, a tight spin")
	for i := 0; i < 10; i++ {
		p.ended(kindCredit, true, true)
	}
	assert.Equal(t, int32(spinCredit), p.credit.Load(), "credit is bounded")
	p.ended(kindCredit, true, false)
	assert.Equal(t, int32(spinCredit-spinLoss), p.credit.Load(), "a spin that needed yields did not pay")
	for p.credit.Load() > 0 {
		p.ended(kindCredit, false, false)
	}
	// No credit: probes, in streaks, whole budget; a period without a hit
	// doubles the next.
	probes := func(calls int) int {
		spins, run := 0, 0
		for i := 0; i < calls; i++ {
			switch tight, total, kind := p.start(time.Second); {
			case total == 0:
				assert.Zero(t, run%spinStreak, "probes come in streaks")
				run = 0
			case kind == kindProbe && tight == spinTight && total == time.Second:
				spins++
				run++
				p.ended(kindProbe, false, false) // a probe that failed changes nothing
			default:
				t.Fatal("with no credit, only probes spin")
			}
		}
		return spins
	}
	assert.Equal(t, spinStreak, probes(spinProbe))
	assert.Equal(t, spinStreak, probes(2*spinProbe), "after a period with no hit, one twice as long")
	assert.Equal(t, spinStreak, probes(4*spinProbe))
	assert.Zero(t, p.credit.Load())
	p.ended(kindProbe, true, false)
	tight, total, kind = p.start(time.Second)
	assert.Equal(t, []any{spinTight, spinTight, kindCredit}, []any{tight, total, kind},
		"a probe that succeeded, yields or not, turns spinning back on")
	p.credit.Store(0)
	assert.Equal(t, spinStreak, probes(spinProbe), "after a hit, periods are short again")
	assert.Equal(t, spinStreak, probes(2*spinProbe))

	// After a sleep or a wake-up, the next call spins with the whole
	// budget, credit or not, and a late success earns credit.
	p.credit.Store(0)
	p.sleptOrWoke()
	tight, total, kind = p.start(time.Second)
	assert.Equal(t, []any{spinTight, time.Second, kindWake}, []any{tight, total, kind})
	p.ended(kind, true, false)
	assert.Equal(t, int32(spinWin), p.credit.Load())
	p.sleptOrWoke()
	_, total, kind = p.start(time.Second)
	assert.Equal(t, []any{time.Second, kindWake}, []any{total, kind}, "with credit too")
	_, _, kind = p.start(time.Second)
	assert.Equal(t, kindCredit, kind, "only the first call after it")

	// After-wake spins that fail back off: one in 2, 4, ... up to wakeMax
	// is made; one that pays ends that.
	afterWake := func(n int, done bool) (made int) {
		for range n {
			p.credit.Store(1)
			p.sleptOrWoke()
			if _, _, kind := p.start(time.Second); kind == kindWake {
				made++
				p.ended(kind, done, false)
			}
		}
		return made
	}
	assert.Equal(t, 1, afterWake(1, false))
	assert.Equal(t, 1, afterWake(2, false), "then one in 2")
	assert.Equal(t, 1, afterWake(4, false), "then one in 4")
	assert.Equal(t, 3, afterWake(8+16+32, false))
	p.wakeEvery.Store(wakeMax)
	p.wakeSkip.Store(0)
	assert.Equal(t, 1, afterWake(wakeMax, false), "no more than one in wakeMax")
	assert.Equal(t, uint32(wakeMax), p.wakeEvery.Load())
	assert.Equal(t, 1, afterWake(1, true))
	assert.Equal(t, 5, afterWake(5, true), "one that paid: every one again")

	// A spin pays only if it succeeds within its tight phase.
	s, err := handle(usysvImpl.create(t, 1, 0o600))
	require.NoError(t, err)
	sp := s.newSpinner(spinTight, time.Hour)
	assert.True(t, sp.paid())
	time.Sleep(2 * spinTight)
	for i := 0; i < spinEvery; i++ {
		sp.next()
	}
	assert.False(t, sp.paid(), "past the tight phase")
	sp = s.newSpinner(0, 0)
	for i := 0; i < spinEvery-1; i++ {
		require.True(t, sp.next())
	}
	assert.False(t, sp.next(), "the budget ends the spin")
}

// A spin that has looked spinYield times asks where its peer began its
// spin (shm.CoLocation) and records where it runs itself: after a
// ping-pong with another process, the set's word names one of the two,
// and a CPU.
func TestSpinnersRecordTheirCPU(t *testing.T) {
	s := newSet(t, 2)
	const rounds = 2000
	p := testutil.Start(t, "sem-pong", []string{"usysv", strconv.Itoa(s.ID()), "active", strconv.Itoa(rounds)})
	p.Expect("ready", lineWait)
	ctx := context.Background()
	for i := 0; i < rounds; i++ {
		require.NoError(t, s.Op(ctx, Buf{Num: 0, Op: 1}))
		require.NoError(t, s.Op(ctx, Buf{Num: 1, Op: -1}))
	}
	p.Line(lineWait) // the helper is done
	p.Kill()
	w := s.v.hdr.spinCPU.Load()
	assert.Contains(t, []uint64{uint64(os.Getpid()), uint64(p.Pid())}, w>>32, "a process of the ping-pong")
	assert.NotZero(t, uint32(w), "and its CPU (+1)")
}

// Goroutines of one process, on two handles of one set, mixing every path
// (single ops, SEM_UNDO, lean arrays, general arrays, blocking, GETALL):
// nothing is lost, nobody stays blocked, every invariant holds.
func TestGoroutineStress(t *testing.T) {
	s := newSet(t, 3)
	other, err := OpenID(s.ID())
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })
	require.NoError(t, s.SetAll([]uint16{3, 2, 3}))
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		h := s
		if g%2 == 1 {
			h = other
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := uint32(g*7919 + 1)
			for i := 0; i < stressIters; i++ {
				x = x*1664525 + 1013904223
				num := uint16(x>>8) % 3
				var p, v []Buf
				switch x >> 29 {
				case 0, 1:
					p, v = []Buf{b(num, -1, 0)}, []Buf{b(num, 1, 0)}
				case 2:
					p, v = []Buf{b(num, -1, SEM_UNDO)}, []Buf{b(num, 1, SEM_UNDO)}
				case 3, 4:
					p, v = []Buf{b(0, -1, 0), b(2, -1, 0)}, []Buf{b(2, 1, 0), b(0, 1, 0)}
				case 5:
					p, v = []Buf{b(1, -1, 0), b(1, 1, 0), b(1, -1, 0)}, []Buf{b(1, 1, 0)}
					if err := h.TryOp(b(2, 1, 0), b(num, -100, 0)); !errors.Is(err, kernel.EAGAIN) {
						t.Errorf("TryOp: %v, want EAGAIN", err)
						return
					}
				case 6:
					p, v = []Buf{b(2, -2, SEM_UNDO), b(0, -1, 0)}, []Buf{b(0, 1, 0), b(2, 2, SEM_UNDO)}
				default:
					if _, err := h.GetAll(); err != nil {
						t.Error(err)
						return
					}
					continue
				}
				if err := h.Op(ctx, p...); err != nil {
					t.Error(err)
					return
				}
				if err := h.Op(ctx, v...); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	all, err := s.GetAll()
	require.NoError(t, err)
	assert.Equal(t, []uint16{3, 2, 3}, all)
	require.NoError(t, s.check())
}
