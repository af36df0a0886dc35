package sem

import (
	"context"
	"os"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
)

// The panic the tests inject at a crash point, as a segment corrupted
// beyond what the code handles would raise one (FINDINGS F14).
const injected = "injected: corrupt beyond repair"

// panicAt makes the n-th arrival at step, in this process, panic with
// injected (stepHook), until the returned function is called.
func panicAt(step string, n int64) (disarm func()) {
	var count atomic.Int64
	crash.on, stepHook = true, func(s string) {
		if s == step && count.Add(1) == n {
			panic(injected)
		}
	}
	return func() { crash.on, stepHook = false, nil }
}

// A panic inside Op that its caller recovers is as a death at that point
// (TestCrashInsideOp): the section's guard abandons the lock, and the next
// call, through another handle or the same one, takes the lock over and
// repairs. The array stands whole or not at all, a waiter the section
// queued is dequeued as a dead process's would be, and nobody waits for
// ever on a lock that this live process holds.
func TestPanicInsideOp(t *testing.T) {
	warm := []string{"2:0"} // (opens the gate: the next short array takes the lean path)
	cases := []struct {
		step    string
		n       int64
		pre     []string // arrays before the one that panics
		ops     string
		want    string // values after recovery
		applied bool   // sempid of semaphore 1 is this process
	}{
		{StepLocked, 1, nil, "0:1,1:1", "vals[0 0 1],ok", false},
		{StepEvaluated, 1, nil, "0:1,1:1", "vals[0 0 1],ok", false},
		{StepCommitted, 1, nil, "0:1,1:1", "vals[1 1 1],ok", true},
		{StepApplying, 1, nil, "0:1,1:1", "vals[1 1 1],ok", true},
		// This process lives on: its semadj stays, and no undo is applied.
		{StepCommitted, 1, nil, "0:2:u,1:1", "vals[2 1 1],ok", true},
		// A completed intent on semaphore 0 (the second op's; the first
		// takes the record on the locked path).
		{StepFreezeLook, 1, []string{"0:1:u", "0:1:u"}, "0:2:u,1:1", "vals[2 0 1],ok", false},
		// Queued, lock still held: the waiter is dequeued, not completed
		// by the post below.
		{StepEnqueued, 1, nil, "2:-1", "vals[0 0 1],ok", false},
		{StepLeanLocked, 1, warm, "0:1,1:1", "vals[0 0 1],ok", false},
		{StepLeanFrozen, 2, warm, "0:1,1:1", "vals[0 0 1],ok", false},
		{StepLeanEvaluated, 1, warm, "0:1,1:1", "vals[0 0 1],ok", false},
		{StepLeanCommitted, 1, warm, "0:1,1:1", "vals[1 1 1],ok", true},
		{StepLeanReleasing, 1, warm, "0:1,1:1", "vals[1 1 1],ok", true},
	}
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.step+" "+c.ops, func(t *testing.T) {
			id := usysvImpl.create(t, 3, 0o600)
			h, err := OpenID(id)
			require.NoError(t, err)
			defer h.Close()
			for _, pre := range c.pre {
				require.NoError(t, h.TryOp(mustOps(t, pre)...))
			}
			ops := mustOps(t, c.ops)
			disarm := panicAt(c.step, c.n)
			assert.PanicsWithValue(t, injected, func() { _ = h.Op(ctx, ops...) }, "the panic goes on to the caller")
			disarm()

			other, err := OpenID(id)
			require.NoError(t, err)
			defer other.Close()
			var n int
			testutil.Returns(t, 2*lineWait, "GETNCNT through another handle (it takes the lock)", func() (err error) {
				n, err = other.GetNcnt(2)
				return err
			})
			assert.Zero(t, n, "the panicked waiter is gone")
			require.NoError(t, other.TimedOp(lineWait, b(2, 1, 0)))
			assert.Equal(t, c.want, vals(handleImpl(other), id))
			pid, err := other.GetPid(1)
			require.NoError(t, err)
			if c.applied {
				assert.Equal(t, os.Getpid(), pid)
			} else {
				assert.Zero(t, pid)
			}
			// The handle whose section panicked works on, locked paths too.
			testutil.Returns(t, 2*lineWait, "an array through the same handle", func() error {
				return h.TimedOp(lineWait, b(2, -1, SEM_UNDO), b(2, 1, SEM_UNDO))
			})
			require.NoError(t, h.check())
			require.NoError(t, other.check())
		})
	}
}

// A panic inside a post that completes waiters (op.go: post): the post
// and each completion stand whole or not at all, as after a death there
// (TestCrashInsidePost), and the waiters, here in this process, are not
// left waiting for ever.
func TestPanicInsidePost(t *testing.T) {
	cases := []struct {
		step    string
		n       int64
		applied bool // the post stands, so both waiters complete
	}{
		{StepPostFrozen, 1, false},
		{StepPostApplied, 1, true},
		{StepClaimed, 1, true},
		{StepClaimed, 2, true},
		{StepPostCommitted, 1, true},
		{StepPostCompleted, 1, true},
		{StepPostCommitted, 2, true},
		{StepPostCompleted, 2, true},
	}
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.step+":"+formatInt(int(c.n)), func(t *testing.T) {
			id := usysvImpl.create(t, 3, 0o600)
			w, err := OpenID(id)
			require.NoError(t, err)
			defer w.Close()
			// Opened before the waiters queue: a handle's first repair
			// (openMapped, once any death was reported) runs the wake-up
			// scan, which claims them (claimed) too.
			h, err := OpenID(id)
			require.NoError(t, err)
			defer h.Close()
			require.NoError(t, h.TryOp(b(2, 0, 0))) // (opens the gate: the post takes the post path)
			// Armed before the waiters start, which pass crash points too
			// (only the post passes the post's).
			defer panicAt(c.step, c.n)()
			done := make(chan error, 2)
			for n := 1; n <= 2; n++ {
				go func() { done <- w.TimedOp(2*lineWait, b(0, -1, 0)) }()
				waitCount(t, usysvImpl, id, 0, n, false)
			}
			assert.PanicsWithValue(t, injected, func() { _ = h.Op(ctx, b(0, 2, 0)) }, "the panic goes on to the caller")

			var n int
			testutil.Returns(t, 2*lineWait, "GETNCNT through another handle (it takes the lock)", func() (err error) {
				n, err = w.GetNcnt(0)
				return err
			})
			require.NoError(t, w.TimedOp(lineWait, b(2, 1, 0)))
			if !c.applied {
				assert.Equal(t, 2, n, "nothing of the post applied")
				assert.Equal(t, "vals[0 0 1],ok", vals(usysvImpl, id))
				testutil.Returns(t, 2*lineWait, "the post again, through the same handle", func() error {
					return h.TimedOp(lineWait, b(0, 2, 0))
				})
			}
			for range 2 {
				require.NoError(t, <-done, "a waiter")
			}
			assert.Equal(t, "vals[0 0 1],ok", vals(usysvImpl, id))
			require.NoError(t, h.check())
		})
	}
}

func mustOps(t *testing.T, s string) []Buf {
	t.Helper()
	ops, err := parseOps(s)
	require.NoError(t, err)
	return ops
}

// A panic while an op waits queued, outside the lock ("waiting"), gives
// its waiter slot up as a dead process's and dequeues it: the next post is
// not consumed by a waiter nobody will report to.
func TestPanicWhileQueued(t *testing.T) {
	id := usysvImpl.create(t, 3, 0o600)
	h, err := OpenID(id)
	require.NoError(t, err)
	defer h.Close()
	disarm := panicAt(StepWaiting, 1)
	assert.PanicsWithValue(t, injected, func() { _ = h.Op(context.Background(), b(2, -1, 0)) }, "the panic goes on to the caller")
	disarm()
	n, err := h.GetNcnt(2)
	require.NoError(t, err)
	assert.Zero(t, n, "the panicked waiter is gone")
	require.NoError(t, h.TryOp(b(2, 1, 0)))
	assert.Equal(t, "vals[0 0 1],ok", vals(handleImpl(h), id))
	require.NoError(t, h.check())
}
