package fuzz

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usysv/usysv/kernel"
)

// prog reads a fuzz input as a program. Every read takes the next byte; an
// exhausted input reads as zeros, so that every input is a valid program
// and a short one is a prefix of a longer one.
type prog struct {
	b []byte
	i int
}

func (p *prog) more() bool { return p.i < len(p.b) }

func (p *prog) u8() byte {
	if p.i >= len(p.b) {
		p.i++
		return 0
	}
	c := p.b[p.i]
	p.i++
	return c
}

func (p *prog) u16() uint16 { return uint16(p.u8()) | uint16(p.u8())<<8 }

// pick returns xs[next byte mod len(xs)].
func pick[T any](p *prog, xs ...T) T { return xs[int(p.u8())%len(xs)] }

// enc builds programs for the seed corpora, byte by byte, in the order
// the decoders read them.
type enc []byte

func (e *enc) b(v ...byte) *enc  { *e = append(*e, v...); return e }
func (e *enc) u16(v uint16) *enc { *e = append(*e, byte(v), byte(v>>8)); return e }

// errno reduces an error to what the differential and model targets
// compare: "ok", the name of the errno it matches, or, for anything that
// is not an errno (a usysv sentinel without one, a registry failure), a
// string that matches nothing the kernel or a model says.
func errno(err error) string {
	if err == nil {
		return "ok"
	}
	var e kernel.Errno
	if errors.As(err, &e) {
		return errnoName(e)
	}
	return "non-errno(" + err.Error() + ")"
}

func errnoName(e kernel.Errno) string {
	if n := kernel.ErrnoName(e); n != "" {
		return n
	}
	return "errno(" + strconv.Itoa(int(e)) + ")"
}

// watchdog bounds one call: if the call has not returned after d, fire
// runs (it removes the object the call is blocked on, which wakes it with
// EIDRM), and the caller then fails the target. Stop reports whether the
// watchdog fired.
type watchdog struct {
	t     *time.Timer
	fired chan struct{}
}

func watch(d time.Duration, fire func()) *watchdog {
	w := &watchdog{fired: make(chan struct{})}
	w.t = time.AfterFunc(d, func() {
		close(w.fired)
		fire()
	})
	return w
}

func (w *watchdog) stop() bool {
	if w.t.Stop() {
		return false
	}
	<-w.fired
	return true
}

// callTimeout bounds every single call of the model and differential
// targets; none of them may block (a blocking call is given IPC_NOWAIT or
// a short timeout), so a call that takes this long has hung.
const callTimeout = 2 * time.Second

// trace records the steps of one program, to print when it fails.
type trace struct {
	lines []string
}

func (tr *trace) add(format string, a ...any) {
	tr.lines = append(tr.lines, fmt.Sprintf(format, a...))
	if traceStream {
		fmt.Fprintln(os.Stderr, tr.lines[len(tr.lines)-1])
	}
}

// traceStream: USYSV_FUZZ_TRACE=stream prints every step as it runs, for
// an input that hangs or crashes before its trace can be printed.
var traceStream = os.Getenv("USYSV_FUZZ_TRACE") == "stream"

func (tr *trace) String() string {
	var b strings.Builder
	for i, l := range tr.lines {
		fmt.Fprintf(&b, "  %3d  %s\n", i, l)
	}
	return b.String()
}

// corpusEntry is a go test fuzz v1 file holding one []byte argument, or a
// []byte and a bool.
func corpusEntry(data []byte, flag ...bool) string {
	s := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
	for _, f := range flag {
		s += fmt.Sprintf("bool(%t)\n", f)
	}
	return s
}

// syncCorpus writes seeds into testdata/fuzz/<target>/ when
// USYSV_WRITE_SEEDS=1, and otherwise checks that the committed files are
// exactly the seeds, so that the code that names them and the corpus
// cannot drift apart. Files in the directory that are not seeds (inputs
// the fuzzer found and someone committed) are left alone.
func syncCorpus(t *testing.T, target string, seeds map[string][]byte, flags ...map[string]bool) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	write := os.Getenv("USYSV_WRITE_SEEDS") == "1"
	if write {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range seeds {
		path := filepath.Join(dir, name)
		var want string
		if len(flags) > 0 {
			want = corpusEntry(data, flags[0][name])
		} else {
			want = corpusEntry(data)
		}
		if write {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("seed %s/%s missing (USYSV_WRITE_SEEDS=1 go test -run TestSeeds ./fuzz): %v", target, name, err)
		}
		if string(got) != want {
			t.Fatalf("seed %s/%s differs from the code that makes it: regenerate (USYSV_WRITE_SEEDS=1 go test -run TestSeeds ./fuzz)", target, name)
		}
	}
}

// iterationLimit bounds one execution of a target. The per-call watchdogs
// catch a call that blocks; this catches everything else (a hang in set-up,
// in a watchdog's own clean-up, in a helper goroutine). It must stay under
// the 10 s after which the fuzzing engine's worker panics with a bare
// "deadlocked!" and no stacks.
const iterationLimit = 8 * time.Second

// guard arms the iteration limit for one execution: when it expires, the
// stacks of every goroutine and the input are written under
// /tmp/fuzz-findings/ and the process panics, so that the fuzzer records
// the input as a crasher instead of stalling. Call the returned func when
// the execution ends.
func guard(t *testing.T, entry string) func() {
	name := t.Name()
	tm := time.AfterFunc(iterationLimit, func() {
		buf := make([]byte, 1<<22)
		buf = buf[:runtime.Stack(buf, true)]
		dir := "/tmp/fuzz-findings"
		_ = os.MkdirAll(dir, 0o755)
		base := filepath.Join(dir, fmt.Sprintf("hang-%s-%d-%d", strings.ReplaceAll(name, "/", "_"), os.Getpid(), time.Now().Unix()))
		_ = os.WriteFile(base+".stacks", buf, 0o644)
		_ = os.WriteFile(base+".input", []byte(entry), 0o644)
		panic(fmt.Sprintf("fuzz: %s did not finish within %v; stacks in %s.stacks", name, iterationLimit, base))
	})
	return func() { tm.Stop() }
}

// A fuzz worker's output goes nowhere: when one dies (a fatal error in a
// goroutine of the library, a fault outside the fuzz function), the
// fuzzer says only "terminated unexpectedly". The targets therefore have
// their workers copy any crash report to
// /tmp/fuzz-findings/workers/<pid>.crash (keepCrashReports), and remove
// the file again when the worker ends without one.
func keepCrashReports(f *testing.F) {
	worker := false
	for _, a := range os.Args {
		worker = worker || a == "-test.fuzzworker"
	}
	if !worker {
		return
	}
	crashOnce.Do(func() {
		dir := "/tmp/fuzz-findings/workers"
		if os.MkdirAll(dir, 0o755) != nil {
			return
		}
		file, err := os.Create(filepath.Join(dir, fmt.Sprintf("%d.crash", os.Getpid())))
		if err != nil {
			return
		}
		if debug.SetCrashOutput(file, debug.CrashOptions{}) != nil {
			_ = file.Close()
			_ = os.Remove(file.Name())
			return
		}
		crashFile = file
	})
	f.Cleanup(func() {
		if crashFile == nil {
			return
		}
		if st, err := crashFile.Stat(); err == nil && st.Size() == 0 {
			_ = os.Remove(crashFile.Name())
		}
	})
}

var (
	crashOnce sync.Once
	crashFile *os.File
)

// setupFailed ends an execution whose object could not be made. ENOSPC
// there means the host ran out of SysV shm ids (SHMMNI is shared by every
// process; other test binaries may hold thousands): not a finding of this
// input, so the execution is skipped. testutil.Main's leak check, not this,
// is what catches a target that leaks.
func setupFailed(t *testing.T, what string, err error) {
	t.Helper()
	if errors.Is(err, kernel.ENOSPC) {
		t.Skipf("%s: %v (the host is out of SysV ids)", what, err)
	}
	t.Fatalf("%s: %v", what, err)
}

// dumpStacks writes every goroutine's stack under /tmp/fuzz-findings/ and
// returns the file's path.
func dumpStacks(t *testing.T, what string) string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	path := filepath.Join("/tmp/fuzz-findings", fmt.Sprintf("%s-%s-%d-%d.stacks", what, strings.ReplaceAll(t.Name(), "/", "_"), os.Getpid(), time.Now().UnixNano()))
	_ = os.MkdirAll(filepath.Dir(path), 0o755)
	_ = os.WriteFile(path, buf, 0o644)
	return path
}
