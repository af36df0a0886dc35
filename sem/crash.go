package sem

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/usysv/usysv/internal/killat"
	"github.com/usysv/usysv/kernel"
)

// Crash points: a test-only hook that makes the process SIGKILL itself at
// a labelled step inside Op, to test that a death at any point leaves the
// set consistent. It is armed by the environment variable USYSV_SEM_CRASH,
// read once at start-up, as "step" (the first time the step is reached) or
// "step:N" (the N-th time); with the prefix "stop:" ("stop:step:N") the
// process SIGSTOPs itself there instead, and goes on once continued; with
// "exec:" it execs itself there (killat.ExecSelf), the goroutine
// inside the call gone with the old image as in a death, the process not.
// Unarmed, a crash point costs one load of a package variable.
const CrashEnv = "USYSV_SEM_CRASH"

// The steps.
const (
	StepUndoRead      = "undo-read"      // lock-free SEM_UNDO op: word and semadj read, nothing written
	StepUndoCAS       = "undo-cas"       // lock-free SEM_UNDO op: value set, semadj not yet
	StepLocked        = "locked"         // slow path: segment lock just taken
	StepEvaluated     = "evaluated"      // words frozen, array evaluated, nothing committed
	StepCommitted     = "committed"      // journal committed, nothing applied
	StepApplying      = "applying"       // semadj and waiter outcome stored, words not yet
	StepEnqueued      = "enqueued"       // queued as a waiter, lock still held
	StepWaiting       = "waiting"        // queued, lock released, about to sleep
	StepUndoCommitted = "undo-committed" // repair: a dead process's undo committed, not applied
	StepFreezeLook    = "freeze-look"    // lock holder: a word's SEM_UNDO intent looked complete, the word not yet frozen
	StepUnlocked      = "unlocked"       // lock released, the waiters completed under it not yet woken
	StepClaimed       = "claimed"        // a queued waiter claimed by the lock holder, its completion not committed

	// A post on a semaphore waiters name (op.go: post).
	StepPostFrozen    = "post-frozen"    // word frozen, nothing applied
	StepPostApplied   = "post-applied"   // the post's value stored in the frozen word, no waiter completed
	StepPostCommitted = "post-committed" // a waiter's completion journaled, not applied (":N": the N-th)
	StepPostCompleted = "post-completed" // a waiter completed (":N": N of them), the word still frozen

	// The lean path of short arrays (fast.go).
	StepLeanLocked    = "lean-locked"    // segment lock taken, nothing frozen
	StepLeanFrozen    = "lean-frozen"    // one more word frozen (":N": N words), nothing committed
	StepLeanEvaluated = "lean-evaluated" // words frozen, array evaluated, nothing committed
	StepLeanCommitted = "lean-committed" // journal committed, no word released
	StepLeanReleasing = "lean-releasing" // one more word released (":N": N words), journal still set
)

var crash struct {
	on    bool
	stop  bool // SIGSTOP instead of SIGKILL
	exec  bool // exec instead of SIGKILL
	step  string
	n     int64
	count atomic.Int64
}

func init() {
	v := os.Getenv(CrashEnv)
	if v == "" {
		return
	}
	if rest, ok := strings.CutPrefix(v, "stop:"); ok {
		crash.stop, v = true, rest
	} else if rest, ok := strings.CutPrefix(v, "exec:"); ok {
		crash.exec, v = true, rest
	}
	crash.step, crash.n = v, 1
	if i := strings.LastIndexByte(v, ':'); i >= 0 {
		if n, err := strconv.ParseInt(v[i+1:], 10, 64); err == nil && n > 0 {
			crash.step, crash.n = v[:i], n
		}
	}
	crash.on = true
}

func crashpoint(step string) {
	if crash.on {
		crashHit(step)
	}
}

// stepHook, if set (by tests, with crash.on), runs at every crash point:
// tests use it to widen races.
var stepHook func(step string)

func crashHit(step string) {
	if stepHook != nil {
		stepHook(step)
	}
	if step != crash.step || crash.count.Add(1) != crash.n {
		return
	}
	pid, _ := kernel.Self()
	if crash.stop {
		stopHere()
		return
	}
	if crash.exec {
		killat.ExecSelf(CrashEnv)
	}
	_ = kernel.Kill(pid, kernel.SIGKILL)
	select {}
}

// stopHere stops the process (SIGSTOP) from the calling goroutine's
// thread; it returns once the process is continued. To this thread:
// kill(2) lets the kernel pick the thread that starts the group stop, and
// this one could run on (and unlock) before it is stopped too.
func stopHere() {
	runtime.LockOSThread()
	_ = kernel.StopThread()
	runtime.UnlockOSThread()
}
