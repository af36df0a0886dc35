package sem

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
)

// crashClient starts a helper that SIGKILLs itself the n-th time it
// reaches step inside an operation.
func crashClient(t *testing.T, impl string, id int, step string) *testutil.Proc {
	return testutil.Start(t, "sem-client", []string{impl, itoa(id)}, testutil.Env(CrashEnv+"="+step))
}

// warmCrashClient is crashClient ("noreg") once it has opened the set and
// made an op (one that changes nothing: wait for zero on semaphore 2, so
// its gate is open and its post takes the post path). A test whose step a
// wake-up scan passes (claimed) starts it before anyone queues: a
// handle's first repair (openMapped, once any death was reported, as
// other tests' deaths are) runs that scan, and would die there instead.
func warmCrashClient(t *testing.T, id int, step string) *testutil.Proc {
	p := crashClient(t, "noreg", id, step)
	p.Send("op 2:0")
	p.Expect("ok", lineWait)
	return p
}

func itoa(i int) string { return formatInt(i) }

// checkAfter checks a 3-semaphore set after a crash test's helper pid
// left an op (TestCrashInsideOp, TestExecInsideOp): the values want, the
// op applied (sempid of semaphore 1 is pid) or not, no waiter left on
// semaphore 2, every invariant holding.
func checkAfter(t *testing.T, h *Array, pid int, want string, applied bool) {
	t.Helper()
	assert.Equal(t, want, vals(usysvImpl, h.ID()))
	got, err := h.GetPid(1)
	require.NoError(t, err)
	if applied {
		assert.Equal(t, pid, got)
	} else {
		assert.NotEqual(t, pid, got)
	}
	n, _ := h.GetNcnt(2)
	assert.Zero(t, n, "the waiter that left is gone")
	require.NoError(t, h.check())
}

// A process killed at any step inside Op leaves the set consistent: all of
// its operations applied or none, nobody blocked, every invariant holding.
func TestCrashInsideOp(t *testing.T) {
	warm := []string{"op 2:0"}
	cases := []struct {
		step    string
		pre     []string // commands before the fatal one
		cmd     string
		want    string // values after recovery
		applied bool   // sempid of semaphore 1 is the dead process
	}{
		// Lock-free SEM_UNDO op killed between its value CAS and its semadj
		// CAS: the op stands, its semadj is completed, and its undo applied.
		{StepUndoCAS, []string{"op 0:1:u"}, "op 0:2:u", "vals[0 0 1],ok", false},
		// Killed holding the semadj claim, before the value CAS: nothing
		// of the op is applied; the earlier op's undo is.
		{StepUndoRead, []string{"op 0:1:u"}, "op 0:2:u", "vals[0 0 1],ok", false},
		// A locked SEM_UNDO array killed as it is about to freeze a word
		// with a completed intent (left by the second op: the first takes
		// the record, on the locked path): nothing of it is applied.
		{StepFreezeLook, []string{"op 0:1:u", "op 0:1:u"}, "op 0:2:u,1:1", "vals[0 0 1],ok", false},
		{StepLocked, nil, "op 0:1,1:1", "vals[0 0 1],ok", false},
		{StepEvaluated, nil, "op 0:1,1:1", "vals[0 0 1],ok", false},
		{StepCommitted, nil, "op 0:1,1:1", "vals[1 1 1],ok", true},
		{StepApplying, nil, "op 0:1,1:1", "vals[1 1 1],ok", true},
		// With SEM_UNDO: applied means semadj recorded too, so the undo at
		// death takes semaphore 0 back and leaves 1.
		{StepCommitted, nil, "op 0:2:u,1:1", "vals[0 1 1],ok", true},
		{StepApplying, nil, "op 0:2:u,1:1", "vals[0 1 1],ok", true},
		{StepEnqueued, nil, "op 2:-1:u", "vals[0 0 1],ok", false},
		// The lean path of short arrays: the first op of a handle takes
		// the general path, so "op 2:0" (which leaves every value as it
		// is) opens the handle's gate first. Killed before the commit,
		// nothing is applied; after it, all of it.
		{StepLeanLocked, warm, "op 0:1,1:1", "vals[0 0 1],ok", false},
		{StepLeanFrozen, warm, "op 0:1,1:1", "vals[0 0 1],ok", false},
		{StepLeanFrozen + ":2", warm, "op 0:1,1:1", "vals[0 0 1],ok", false},
		{StepLeanEvaluated, warm, "op 0:1,1:1", "vals[0 0 1],ok", false},
		{StepLeanEvaluated, warm, "op 0:1,1:-1:n", "vals[0 0 1],ok", false}, // failing: unfreezes
		{StepLeanCommitted, warm, "op 0:1,1:1", "vals[1 1 1],ok", true},
		{StepLeanCommitted, warm, "op 1:2,0:1,1:-1", "vals[1 1 1],ok", true}, // a semaphore named twice
		{StepLeanReleasing, warm, "op 0:1,1:1", "vals[1 1 1],ok", true},
		{StepLeanReleasing + ":2", warm, "op 0:1,1:1", "vals[1 1 1],ok", true},
		// Killed while queued, not holding the lock: until its death is
		// known (here: the repair the registry's hook would run), a waker
		// may still complete it, which is as if it died just after.
		{StepWaiting, nil, "op 2:-1", "vals[0 0 1],ok", false},
	}
	for _, c := range cases {
		t.Run(c.step+" "+c.cmd, func(t *testing.T) {
			id := usysvImpl.create(t, 3, 0o600)
			// "noreg": the registry does not see this death, so recovery is
			// by lock take-over or the next repair, not by the registry.
			p := crashClient(t, "noreg", id, c.step)
			for _, pre := range c.pre {
				p.Send(pre)
				p.Expect("ok", lineWait)
			}
			p.Send(c.cmd)
			assert.Equal(t, -1, p.Wait(lineWait), "the helper must die at the crash point")
			h, err := handle(id)
			require.NoError(t, err)
			// Someone must be able to use the set: the next op takes the lock
			// over from the dead holder (if it held it) and repairs.
			if c.step == StepWaiting {
				h.repair() // the registry does not know the helper: repair as its hook would
			}
			require.NoError(t, h.TimedOp(lineWait, b(2, 1, 0)))
			h.repair()
			checkAfter(t, h, p.Pid(), c.want, c.applied)
		})
	}
}

// A process killed inside a post that completes waiters (op.go: post):
// the post, and each waiter's completion, stand whole or not at all; a
// waiter whose completion was committed is completed by the repair, and
// the others by the wake-up scan that follows it.
func TestCrashInsidePost(t *testing.T) {
	cases := []struct {
		step    string
		applied bool // the post stands, so both waiters complete
	}{
		{StepLocked, false},
		{StepPostFrozen, false},
		{StepPostApplied, true},
		{StepClaimed, true},
		{StepClaimed + ":2", true},
		{StepPostCommitted, true},
		{StepPostCompleted, true},
		{StepPostCommitted + ":2", true},
		{StepPostCompleted + ":2", true},
	}
	for _, c := range cases {
		t.Run(c.step, func(t *testing.T) {
			var id int
			var ws []*testutil.Proc
			for attempt := 1; ; attempt++ {
				id = usysvImpl.create(t, 3, 0o600)
				// The helper opens the set before the waiters queue (warmUp).
				p := warmCrashClient(t, id, c.step)
				ws = ws[:0]
				for n := 1; n <= 2; n++ {
					w := client(t, usysvImpl, id)
					w.Send("op 0:-1")
					waitCount(t, usysvImpl, id, 0, n, false)
					ws = append(ws, w)
				}
				p.Send("op 0:2")
				line, alive := p.Next(lineWait)
				if !alive {
					assert.Equal(t, -1, p.Wait(lineWait), "the helper must die at the crash point")
					break
				}
				// The post went the general way, which has no post-*
				// steps: a death reported meanwhile (an earlier subtest's
				// helpers, on a loaded machine) shut the helper's gate.
				// Again, on a fresh set.
				require.Equal(t, "ok", line)
				require.Less(t, attempt, 5, "the post never took the post path")
				t.Logf("attempt %d: the post took the general path; again", attempt)
			}
			h, err := handle(id)
			require.NoError(t, err)
			require.NoError(t, h.TimedOp(lineWait, b(2, 1, 0))) // takes the lock over
			h.repair()
			if !c.applied {
				n, _ := h.GetNcnt(0)
				assert.Equal(t, 2, n, "nothing of the post applied")
				assert.Equal(t, "vals[0 0 1],ok", vals(usysvImpl, id))
				require.NoError(t, h.TimedOp(lineWait, b(0, 2, 0)))
			}
			for _, w := range ws {
				w.Expect("ok", lineWait)
			}
			assert.Equal(t, "vals[0 0 1],ok", vals(usysvImpl, id))
			n, _ := h.GetNcnt(0)
			assert.Zero(t, n)
			require.NoError(t, h.check())
		})
	}
}

// claimerKilled has a helper post semaphore 0 of set id and die at
// StepClaimed, holding the claim of the waiter that queue starts (its
// array blocks on semaphore 0 first). The helper opens the set before the
// waiter queues (warmUp).
func claimerKilled(t *testing.T, id int, queue func()) {
	t.Helper()
	p := warmCrashClient(t, id, StepClaimed)
	queue()
	waitCount(t, usysvImpl, id, 0, 1, false)
	p.Send("op 0:1")
	assert.Equal(t, -1, p.Wait(lineWait), "the helper must die at the crash point")
}

// A process killed as the lock holder that has claimed a queued waiter
// (crash step claimed: queue.go, leaving the queue), before it completed
// it: the repair puts the claim back, and its wake-up scan completes the
// waiter, which a claim left in place would keep from every waker.
func TestCrashWhileClaiming(t *testing.T) {
	id := usysvImpl.create(t, 3, 0o600)
	w := client(t, usysvImpl, id)
	claimerKilled(t, id, func() {
		w.Send("op 0:-1,2:0") // (an array: the general path completes it)
	})
	h, err := handle(id)
	require.NoError(t, err)
	require.NoError(t, h.TimedOp(lineWait, b(1, 1, 0), b(1, -1, 0))) // (an array: the lock, taken over)
	w.Expect("ok", lineWait)
	assert.Equal(t, "vals[0 0 0],ok", vals(usysvImpl, id))
	n, _ := h.GetNcnt(0)
	assert.Zero(t, n)
	require.NoError(t, h.check())
}

// The same death, with the claimed waiter's call ending meanwhile (its
// context): the waiter does not wait for a dead claimer, it takes the lock
// over, and the repair puts the claim back and completes it with the
// dead process's post, which stands (post: the value in the frozen word
// is the commit point). Nobody else touches the set, and the registry
// does not know the helper.
func TestDeadClaimerTakenOver(t *testing.T) {
	id := usysvImpl.create(t, 3, 0o600)
	h, err := handle(id)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	claimerKilled(t, id, func() {
		go func() { done <- h.Op(ctx, b(0, -1, 0)) }()
	})
	require.Equal(t, uint32(stClaimed), slotState(h), "the dead helper claimed the waiter")
	cancel()
	require.NoError(t, within(t, "the waiter its dead claimer left", func() error { return <-done }, func() { h.repair() }))
	assert.Equal(t, "vals[0 0 0],ok", vals(usysvImpl, id))
	require.NoError(t, h.check())
}

// undoOwedByDead makes a set of two whose semaphores a process raised
// with SEM_UNDO (0 by 3, 1 by 1) and then died, unknown to the registry:
// the repair that applies its undo is still to be done.
func undoOwedByDead(t *testing.T) (int, *testutil.Proc) {
	id := usysvImpl.create(t, 2, 0o600)
	a := testutil.Start(t, "sem-client", []string{"noreg", itoa(id)})
	a.Send("op 0:3:u,1:1:u")
	a.Expect("ok", lineWait)
	a.Kill()
	return id, a
}

// The repairer itself is killed after committing a dead process's undo:
// the next lock holder finishes it, once.
func TestCrashInsideRepair(t *testing.T) {
	id, a := undoOwedByDead(t)
	r := crashClient(t, "noreg", id, StepUndoCommitted)
	r.Send("repair")
	assert.Equal(t, -1, r.Wait(lineWait), "the repairer must die at the crash point")
	h, err := handle(id)
	require.NoError(t, err)
	require.NoError(t, h.TimedOp(lineWait, b(1, 5, 0)))
	assert.Equal(t, "vals[0 5],ok", vals(usysvImpl, id))
	pid, _ := h.GetPid(0)
	assert.Equal(t, a.Pid(), pid, "undo sets sempid to the dead process")
	require.NoError(t, h.check())
}

// The registry's eager repair recovers a panic of its hook and goes on
// (registry runHook): a repair that panics on a corrupted set abandons
// the lock, and the next op repairs from the start, as after a repairer
// that died (TestCrashInsideRepair), instead of waiting for ever on a lock
// held by a live process (before, the op below waited for ever).
func TestPanicInsideEagerRepair(t *testing.T) {
	id, a := undoOwedByDead(t)
	h, err := handle(id)
	require.NoError(t, err)
	crash.on, stepHook = true, func(step string) {
		if step == StepUndoCommitted {
			panic("corrupt beyond repair")
		}
	}
	func() {
		defer func() { assert.Equal(t, "corrupt beyond repair", recover(), "the panic goes on") }()
		eagerRepair(h.seg)
	}()
	crash.on, stepHook = false, nil
	done := make(chan error, 1)
	go func() { done <- h.TimedOp(lineWait, b(1, 5, 0)) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(2 * lineWait):
		t.Fatal("the op waits for ever for the lock the panicked repair held") // (and leaks its goroutine)
	}
	assert.Equal(t, "vals[0 5],ok", vals(usysvImpl, id))
	pid, _ := h.GetPid(0)
	assert.Equal(t, a.Pid(), pid, "undo sets sempid to the dead process")
	require.NoError(t, h.check())
}

// A lock holder that is merely stopped is not taken over; it finishes when
// continued.
func TestStoppedHolder(t *testing.T) {
	testutil.RequireRoot(t)
	id := usysvImpl.create(t, 1, 0o600)
	p := testutil.Start(t, "sem-client", []string{"usysv", itoa(id)})
	p.Send("op 0:1")
	p.Expect("ok", lineWait)
	p.Signal(19) // SIGSTOP
	time.Sleep(20 * time.Millisecond)
	p.Signal(18) // SIGCONT
	p.Send("op 0:1,0:1")
	p.Expect("ok", lineWait)
	v, _ := GetVal(id, 0)
	assert.Equal(t, 3, v)
}

// A process that execs at a step inside Op is gone from the call as if it
// had died there (its goroutine went with the old image), but lives on:
// the set is left consistent, all of the array applied or none, nobody
// blocked, the lock taken over at once by the next op (before, it stayed
// held until the new program exited); and its SEM_UNDO adjustments are
// kept (SEMANTICS 10.5), to be applied at its death.
func TestExecInsideOp(t *testing.T) {
	warm := []string{"op 2:0"}
	cases := []struct {
		step     string
		pre      []string
		cmd      string
		want     string // values after the exec and the next op
		applied  bool   // sempid of semaphore 1 is the exec'd process
		wantDead string // values once the new image has died too
	}{
		{StepLocked, nil, "op 0:1,1:1", "vals[0 0 1],ok", false, "vals[0 0 1],ok"},
		{StepEvaluated, nil, "op 0:1,1:1", "vals[0 0 1],ok", false, "vals[0 0 1],ok"},
		{StepCommitted, nil, "op 0:1,1:1", "vals[1 1 1],ok", true, "vals[1 1 1],ok"},
		{StepApplying, nil, "op 0:1,1:1", "vals[1 1 1],ok", true, "vals[1 1 1],ok"},
		{StepCommitted, nil, "op 0:2:u,1:1", "vals[2 1 1],ok", true, "vals[0 1 1],ok"},
		{StepApplying, nil, "op 0:2:u,1:1", "vals[2 1 1],ok", true, "vals[0 1 1],ok"},
		{StepEnqueued, []string{"op 0:3:u"}, "op 2:-1:u", "vals[3 0 1],ok", false, "vals[0 0 1],ok"},
		{StepLeanLocked, warm, "op 0:1,1:1", "vals[0 0 1],ok", false, "vals[0 0 1],ok"},
		{StepLeanFrozen + ":2", warm, "op 0:1,1:1", "vals[0 0 1],ok", false, "vals[0 0 1],ok"},
		{StepLeanCommitted, warm, "op 0:1,1:1", "vals[1 1 1],ok", true, "vals[1 1 1],ok"},
		{StepLeanReleasing, warm, "op 0:1,1:1", "vals[1 1 1],ok", true, "vals[1 1 1],ok"},
		{StepWaiting, nil, "op 2:-1", "vals[0 0 1],ok", false, "vals[0 0 1],ok"},
	}
	for _, c := range cases {
		t.Run(c.step+" "+c.cmd, func(t *testing.T) {
			id := usysvImpl.create(t, 3, 0o600)
			p := crashClient(t, "noreg", id, "exec:"+c.step)
			for _, pre := range c.pre {
				p.Send(pre)
				p.Expect("ok", lineWait)
			}
			p.Send(c.cmd)
			// Once the helper has read cmd, it reads no more until the op
			// returns, which it never does: the line is left to the new image.
			time.Sleep(200 * time.Millisecond)
			p.Send("pid")
			p.Expect(itoa(p.Pid()), lineWait)
			h, err := handle(id)
			require.NoError(t, err)
			require.NoError(t, h.TimedOp(lineWait, b(2, 1, 0)), "the next op goes through")
			checkAfter(t, h, p.Pid(), c.want, c.applied)
			p.Kill()
			testutil.Eventually(t, lineWait, "the undo at the death", func() bool {
				_ = h.TimedOp(lineWait, b(2, 0, IPC_NOWAIT|SEM_UNDO)) // (any op looks)
				return vals(usysvImpl, id) == c.wantDead
			})
			require.NoError(t, h.check())
		})
	}
}
