// Package killat is the test-only crash hook that sem, msgq, shm and
// registry share: an environment variable holding "step" or "step:n" makes
// the process SIGKILL itself the n-th time (default 1) it reaches that
// labelled step; "exec:step[:n]" makes it exec itself there instead (the
// goroutine inside the call is gone with the old image, as in a death,
// while the process lives on), with the variable unset and ExecedEnv set;
// "stop:step[:n]" makes it stop itself there (SIGSTOP), to go on where it
// was once continued (SIGCONT), as after a Ctrl-Z. Each package names its
// own variable and steps and keeps a Points, whose check inlines (one load
// and compare per step when the variable is unset); this package parses
// the variable and does the killing.
package killat

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/usysv/usysv/kernel"
)

// Parse reads env once: the step it names (zero if unset or invalid,
// with a warning on stderr naming pkg) and the count n.
func Parse[S comparable](pkg, env string, steps map[string]S) (S, int64) {
	return parse(pkg, env, os.Getenv(env), steps)
}

func parse[S comparable](pkg, env, v string, steps map[string]S) (S, int64) {
	var none S
	if v == "" {
		return none, 0
	}
	name, count, _ := strings.Cut(v, ":")
	s, ok := steps[name]
	n := int64(1)
	if count != "" {
		var err error
		if n, err = strconv.ParseInt(count, 10, 64); err != nil || n < 1 {
			ok = false
		}
	}
	if !ok {
		names := make([]string, 0, len(steps))
		for k := range steps {
			names = append(names, k)
		}
		slices.Sort(names)
		fmt.Fprintf(os.Stderr, "%s: ignoring %s=%q: want step[:n], step one of %v\n", pkg, env, v, names)
		return none, 0
	}
	return s, n
}

// Points is a package's labelled steps: Arm it once from init, then call
// At at each step (an inlined load and compare when nothing is armed).
type Points[S comparable] struct {
	at     S      // written by Arm (or a test's PanicAt), read-only while steps run
	panics any    // PanicAt's value, or nil: the n-th arrival kills the process
	exec   string // Arm's variable, if it asked for an exec instead of a kill
	stop   bool   // Arm asked for a stop instead of a kill
	left   atomic.Int64
}

// Arm reads env (Parse) and arms the step it names.
func (p *Points[S]) Arm(pkg, env string, steps map[string]S) {
	var n int64
	v := os.Getenv(env)
	if rest, ok := strings.CutPrefix(v, "exec:"); ok {
		p.exec, v = env, rest
	} else if rest, ok := strings.CutPrefix(v, "stop:"); ok {
		p.stop, v = true, rest
	}
	p.at, n = parse(pkg, env, v, steps)
	p.left.Store(n)
}

// PanicAt arms step s for a test in this process: its n-th arrival panics
// with v (a panic inside an operation, which the caller recovers) instead
// of killing the process. Call it, and Disarm, while no step runs.
func (p *Points[S]) PanicAt(s S, n int64, v any) {
	p.at, p.panics = s, v
	p.left.Store(n)
}

// Disarm undoes PanicAt.
func (p *Points[S]) Disarm() {
	var none S
	p.at, p.panics = none, nil
	p.left.Store(0)
}

// At is the labelled step s: the n-th arrival at the armed one kills the
// process (or panics: PanicAt).
func (p *Points[S]) At(s S) {
	if p.at == s {
		p.hit()
	}
}

// hit counts one arrival at the armed step and acts at the n-th.
func (p *Points[S]) hit() {
	if p.left.Add(-1) != 0 {
		return
	}
	if p.panics != nil {
		panic(p.panics)
	}
	if p.exec != "" {
		ExecSelf(p.exec)
	}
	if p.stop {
		// To the calling thread (the kernel stops the whole group from
		// there, and no other thread goes on past this step first).
		runtime.LockOSThread()
		_ = kernel.StopThread()
		runtime.UnlockOSThread()
		return
	}
	pid, _ := kernel.Self()
	_ = kernel.Kill(pid, kernel.SIGKILL)
	select {} // the signal is on its way
}

// ExecedEnv is set (to "1") in the environment of a process that an
// "exec:" step exec'd, so that a test helper can tell that it is the new
// image and wait instead of doing its work again.
const ExecedEnv = "USYSV_KILLAT_EXECED"

// Execed reports whether this process is the new image of an "exec:" step.
func Execed() bool { return os.Getenv(ExecedEnv) != "" }

// ExecSelf execs this program with the same arguments, env unset and
// ExecedEnv set. It returns only if the exec failed.
func ExecSelf(env string) {
	vars := slices.DeleteFunc(os.Environ(), func(e string) bool {
		return strings.HasPrefix(e, env+"=") || strings.HasPrefix(e, ExecedEnv+"=")
	})
	if exe, err := os.Executable(); err == nil {
		_ = kernel.Exec(exe, os.Args, append(vars, ExecedEnv+"=1"))
	}
}
