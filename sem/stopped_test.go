package sem

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
)

// Chaos finding F3: process A holds the set's lock and is stopped; process
// B, a client of the registry, dies (its death is reported to every set).
// Process C's calls that need no lock still go on: the repair of B's death
// waits, and is done once A, continued, unlocks. A later holding of the
// lock by A, running, is waited for as any running holder's.
func TestStoppedHolderAndDeath(t *testing.T) {
	id := usysvImpl.create(t, 3, 0o600)
	h, err := handle(id) // C: this process
	require.NoError(t, err)
	// B takes a SEM_UNDO unit of semaphore 2 (its undo gives it back).
	pb := client(t, usysvImpl, id)
	pb.Send("op 2:1:u")
	pb.Expect("ok", lineWait)
	// C has an undo record too (taking one needs the lock).
	require.NoError(t, h.TryOp(Buf{Num: 0, Op: 1, Flg: SEM_UNDO}))
	require.NoError(t, h.TryOp(Buf{Num: 0, Op: -1, Flg: SEM_UNDO}))
	// A stops itself holding the lock, inside an array.
	pa := testutil.Start(t, "sem-client", []string{"usysv", itoa(id)}, testutil.Env(CrashEnv+"=stop:"+StepLocked))
	pa.Send("op 0:1,1:1")
	testutil.Eventually(t, lineWait, "A stopped holding the lock", func() bool {
		return h.mu.Holder() == pa.Pid() && kernel.ProcessStopped(pa.Pid())
	})
	cont := func() { pa.Signal(kernel.SIGCONT) }
	defer cont()
	gen := h.seg.DeadGen()
	pb.Kill()
	testutil.Eventually(t, lineWait, "B's death reported", func() bool { return h.seg.DeadGen() != gen })

	require.NoError(t, within(t, "C's TryOp", func() error { return h.TryOp(b(2, 1, 0)) }, cont))
	// Nor do SEM_UNDO ops, though B's record says it died (shm.Life).
	require.NoError(t, within(t, "C's SEM_UNDO TryOp", func() error { return h.TryOp(Buf{Num: 2, Op: 1, Flg: SEM_UNDO}) }, cont))
	require.NoError(t, within(t, "C's SEM_UNDO TryOp", func() error { return h.TryOp(Buf{Num: 2, Op: -1, Flg: SEM_UNDO}) }, cont))
	v, err := h.GetVal(2)
	require.NoError(t, err)
	assert.Equal(t, 2, v, "B's undo is not applied while A holds the lock")
	// A new handle (in the package-level functions: another process's
	// first call) does not wait for A either.
	h2, err := OpenID(id)
	require.NoError(t, err)
	defer h2.Close()
	require.NoError(t, within(t, "a new handle's TryOp", func() error { return h2.TryOp(b(2, -1, 0)) }, cont))
	assert.Equal(t, h.mu.Holder(), pa.Pid(), "A's lock was taken over")

	cont()
	pa.Expect("ok", lineWait)
	// A repaired before it unlocked: B's undo is applied.
	testutil.Eventually(t, lineWait, "B's undo applied", func() bool {
		v, err := h.GetVal(2)
		return err == nil && v == 0
	})
	vals, err := h.GetAll()
	require.NoError(t, err)
	assert.Equal(t, []uint16{1, 1, 0}, vals)
	require.NoError(t, h.check())

	// A, continued, holds the lock again, running, when D, another SEM_UNDO
	// holder, dies: C waits for that holding like any other (settle does
	// not take A for stopped still), and reads D's undo after the reap.
	pd := client(t, usysvImpl, id)
	pd.Send("op 2:1:u")
	pd.Expect("ok", lineWait)
	pa.Send("hold 300")
	pa.Expect("locked", lineWait)
	pd.Kill()
	v, err = h.GetVal(2)
	require.NoError(t, err)
	assert.Equal(t, 0, v, "D's undo, once A unlocked")
	pa.Expect("ok", lineWait)
}

// A process stopped (SIGSTOP) while it holds the set's lock keeps the lock
// until it is continued. An Op that needs the lock meanwhile waits for it
// no longer than its context, or TimedOp's timeout, allows: it then ends
// as a blocked Op ends (EAGAIN; an error matching ctx.Err() and EINTR),
// with nothing applied, also while it is queued behind another goroutine
// of its handle. Ops that need no lock go on.
func TestOpGivesUpOnStoppedHolder(t *testing.T) {
	id := usysvImpl.create(t, 2, 0o600)
	h, err := handle(id)
	require.NoError(t, err)
	pa, cont := stoppedLockHolder(t, id)
	defer cont()

	const limit = 20 * time.Millisecond
	pair := []Buf{b(0, 1, 0), b(1, 1, 0)} // an array: the lock
	// Alone, each waits for the segment lock itself.
	err = within(t, "TimedOp of an array", func() error { return h.TimedOp(limit, pair...) }, cont)
	assert.ErrorIs(t, err, kernel.EAGAIN)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	err = within(t, "Op with a deadline", func() error { return h.Op(ctx, pair...) }, cont)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, kernel.EINTR)

	// A goroutine whose Op has no end waits for the lock (and holds the
	// handle's local mutex): the calls below queue behind it.
	first := make(chan error, 1)
	go func() { first <- h.Op(context.Background(), pair...) }()
	time.Sleep(limit) // (to let it queue first; the test holds if not)
	err = within(t, "TimedOp that would block", func() error { return h.TimedOp(limit, b(0, -1, 0)) }, cont)
	assert.ErrorIs(t, err, kernel.EAGAIN)
	// A cancel ends every wait.
	ctx, cancel = context.WithCancel(context.Background())
	errs := make(chan error, 3)
	for range cap(errs) {
		go func() { errs <- h.Op(ctx, pair...) }()
	}
	time.Sleep(limit) // (to let them queue; they end the same way if not)
	cancel()
	for range cap(errs) {
		err = within(t, "a cancelled Op", func() error { return <-errs }, cont)
		assert.ErrorIs(t, err, context.Canceled)
		assert.ErrorIs(t, err, kernel.EINTR)
	}
	// A plain V needs no lock.
	require.NoError(t, within(t, "a V", func() error { return h.Op(context.Background(), b(1, 1, 0)) }, cont))

	cont()
	pa.Expect("ok", lineWait)
	require.NoError(t, within(t, "the Op without end", func() error { return <-first }, cont))
	vals, err := h.GetAll()
	require.NoError(t, err)
	assert.Equal(t, []uint16{1, 2}, vals, "the V and the Op without end applied")
	n, err := h.GetNcnt(0)
	require.NoError(t, err)
	assert.Zero(t, n, "no waiter left queued")
	// The lock is usable: an array applies.
	require.NoError(t, h.TimedOp(limit, pair...))
	require.NoError(t, h.check())
}

// stoppedLockHolder starts a process A that takes set id's lock and stops
// (SIGSTOP) holding it; cont continues it (also at the test's end).
func stoppedLockHolder(t *testing.T, id int) (pa *testutil.Proc, cont func()) {
	t.Helper()
	pa = client(t, usysvImpl, id)
	pa.Send("hold 0 stop")
	pa.Expect("locked", lineWait)
	cont = func() { pa.Signal(kernel.SIGCONT) }
	testutil.Eventually(t, lineWait, "A stopped holding the lock", func() bool { return kernel.ProcessStopped(pa.Pid()) })
	return pa, cont
}

// A queued waiter's call ends when its context does, or its timeout
// passes, though a process stopped (SIGSTOP) holds the lock: it leaves the
// queue without the lock (queue.go: leaving the queue), nothing applied,
// and a later holder dequeues it. Before, it waited for the lock to take
// itself out, until the holder was continued.
func TestQueuedWaiterLeavesPastStoppedHolder(t *testing.T) {
	id := usysvImpl.create(t, 2, 0o600)
	h, err := handle(id)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	canceled := make(chan error, 1)
	go func() { canceled <- h.Op(ctx, b(0, -1, 0)) }()
	timedOut := make(chan error, 1)
	const timeout = time.Second
	timedOutAt := time.Now().Add(timeout)
	go func() { timedOut <- h.TimedOp(timeout, b(1, -1, 0)) }()
	waitCount(t, usysvImpl, id, 0, 1, false)
	waitCount(t, usysvImpl, id, 1, 1, false)

	pa, cont := stoppedLockHolder(t, id)
	defer cont()
	if time.Now().After(timedOutAt) {
		t.Log("A stopped after the TimedOp's timeout (a loaded machine): only the cancel was tested past it")
	}
	cancel()
	err = within(t, "the cancelled waiter", func() error { return <-canceled }, cont)
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, kernel.EINTR)
	err = within(t, "the waiter that timed out", func() error { return <-timedOut }, cont)
	assert.ErrorIs(t, err, kernel.EAGAIN)
	require.True(t, kernel.ProcessStopped(pa.Pid()), "A stopped throughout")

	cont()
	pa.Expect("ok", lineWait)
	for num := range 2 {
		n, err := h.GetNcnt(num)
		require.NoError(t, err)
		assert.Zero(t, n, "semaphore %d: the waiter that left is not counted", num)
	}
	require.NoError(t, h.check())
	// Posts find nobody to give their units to: the waiters' ops were not
	// applied, and their slots are dequeued (by the general path here).
	require.NoError(t, h.Op(context.Background(), b(0, 1, 0), b(1, 1, 0)))
	assert.Equal(t, "vals[1 1],ok", vals(usysvImpl, id))
	assert.Zero(t, h.v.hdr.nwait.Load(), "the left slots dequeued")
	require.NoError(t, h.check())
}

// A waiter whose context ends while the lock holder that claimed it is
// stopped (between the claim and the completion: crash step claimed, as
// "stop:") waits for that holder, which decides: continued, it completes
// the waiter, whose Op then succeeds with its op applied.
func TestClaimedWaiterWaitsForItsClaimer(t *testing.T) {
	id := usysvImpl.create(t, 3, 0o600)
	h, err := handle(id)
	require.NoError(t, err)
	// A opens the set before the waiter queues (warmCrashClient).
	pa := testutil.Start(t, "sem-client", []string{"usysv", itoa(id)}, testutil.Env(CrashEnv+"=stop:"+StepClaimed))
	pa.Send("op 2:0")
	pa.Expect("ok", lineWait)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.Op(ctx, b(0, -1, 0), b(2, 0, 0)) }() // (an array: the general path completes it)
	waitCount(t, usysvImpl, id, 0, 1, false)
	pa.Send("op 0:1")
	testutil.Eventually(t, lineWait, "A stopped with the waiter claimed", func() bool {
		return kernel.ProcessStopped(pa.Pid()) && slotState(h) == stClaimed
	})
	cont := func() { pa.Signal(kernel.SIGCONT) }
	defer cont()
	cancel()
	select {
	case err := <-done:
		t.Fatalf("the claimed waiter returned (%v) while its claimer was stopped", err)
	case <-time.After(20 * time.Millisecond):
	}
	cont()
	pa.Expect("ok", lineWait)
	require.NoError(t, within(t, "the claimed waiter", func() error { return <-done }, cont), "completed by its claimer")
	assert.Equal(t, "vals[0 0 0],ok", vals(usysvImpl, id))
	require.NoError(t, h.check())
}

// slotState is the state of the first waiter slot of h's set in use (0:
// none).
func slotState(h *Array) uint32 {
	for i := range h.v.slotsInUse() {
		if st := h.v.slots[i].State.Load(); st != 0 {
			return st
		}
	}
	return 0
}
