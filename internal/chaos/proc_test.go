package chaos

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
)

// The helpers are registered with testutil (testutil.Main runs them), but
// started here rather than with testutil.Start: a chaos run kills and
// restarts helpers all the time and reads their lines from goroutines,
// where testutil.Proc's Line (which fails the test when the helper is gone)
// cannot be used. helperEnv is testutil's variable naming the helper to run.
const helperEnv = "USYSV_TEST_HELPER"

// line is one line of a helper's stdout and when the test read it.
type line struct {
	s  string
	at time.Time
}

// proc is a running helper process.
type proc struct {
	name  string
	cmd   *exec.Cmd
	pid   int
	start time.Time // just before it was started
	in    io.WriteCloser
	lines chan line // nil when a handler consumes the lines
	done  chan struct{}

	mu       sync.Mutex
	exitedAt time.Time
	status   string // "exit N" or "signal S" once reaped
	sig      int    // the signal that ended it, 0 if it exited
	code     int
}

// starter starts helpers with a common environment (the cluster's socket).
type starter struct {
	t   testing.TB
	env []string

	mu    sync.Mutex
	procs []*proc // every process started
}

// start runs helper name with args. With onLine non-nil every stdout line
// goes to it (from the reader goroutine), else to p.lines.
func (st *starter) start(name string, args []string, onLine func(p *proc, l line), env ...string) *proc {
	st.t.Helper()
	p, err := st.try(name, args, onLine, env...)
	if err != nil {
		st.t.Fatalf("chaos: start helper %s: %v", name, err)
	}
	return p
}

func (st *starter) try(name string, args []string, onLine func(p *proc, l line), env ...string) (*proc, error) {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(append(os.Environ(), helperEnv+"="+name), st.env...), env...)
	cmd.SysProcAttr = kernel.ChildAttr(false, 0, 0, nil)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{name: name, cmd: cmd, pid: cmd.Process.Pid, start: start, in: in, done: make(chan struct{})}
	st.mu.Lock()
	st.procs = append(st.procs, p)
	st.mu.Unlock()
	if onLine == nil {
		p.lines = make(chan line, 1<<14)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			l := line{sc.Text(), time.Now()}
			if onLine != nil {
				onLine(p, l)
			} else {
				p.lines <- l
			}
		}
		err := cmd.Wait()
		p.mu.Lock()
		p.exitedAt = time.Now()
		if ps := cmd.ProcessState; ps != nil {
			p.code = ps.ExitCode()
			p.status = ps.String()
			if p.code == -1 {
				p.sig = signalOf(ps.String())
			}
		} else {
			p.status = fmt.Sprint(err)
		}
		p.mu.Unlock()
		if p.lines != nil {
			close(p.lines)
		}
		close(p.done)
	}()
	st.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = kernel.Kill(p.pid, kernel.SIGCONT)
			_ = kernel.Kill(p.pid, kernel.SIGKILL)
			<-p.done
		}
	})
	return p, nil
}

// signalOf reads the signal number out of a ProcessState's text
// ("signal: killed" and so on): os/exec's WaitStatus lives in syscall,
// which only package kernel may import.
func signalOf(s string) int {
	switch {
	case strings.Contains(s, "killed"):
		return kernel.SIGKILL
	case strings.Contains(s, "terminated"):
		return 15
	case strings.Contains(s, "abort"):
		return 6
	case strings.Contains(s, "segmentation"):
		return 11
	}
	return -1
}

// send writes a command line; it reports false if the helper is gone.
func (p *proc) send(format string, a ...any) bool {
	_, err := fmt.Fprintf(p.in, format+"\n", a...)
	return err == nil
}

// closeIn closes the helper's stdin: the chaos workers take it as "stop".
func (p *proc) closeIn() { _ = p.in.Close() }

// next returns the helper's next line within timeout.
func (p *proc) next(timeout time.Duration) (string, error) {
	select {
	case l, ok := <-p.lines:
		if !ok {
			return "", fmt.Errorf("helper %s (pid %d) exited (%s) while a line was expected", p.name, p.pid, p.exitStatus())
		}
		return l.s, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("no line from helper %s (pid %d) within %v", p.name, p.pid, timeout)
	}
}

// call sends a command and returns the answer line; it fails the test if
// there is none within timeout.
func (p *proc) call(t testing.TB, timeout time.Duration, format string, a ...any) string {
	t.Helper()
	if !p.send(format, a...) {
		t.Fatalf("chaos: helper %s (pid %d) is gone (%s)", p.name, p.pid, p.exitStatus())
	}
	l, err := p.next(timeout)
	if err != nil {
		t.Fatalf("chaos: %s: %v", fmt.Sprintf(format, a...), err)
	}
	return l
}

// alive reports whether the helper has not been reaped yet.
func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// wait waits up to timeout for the helper to end; false if it did not.
func (p *proc) wait(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

func (p *proc) exitStatus() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status == "" {
		return "running"
	}
	return p.status
}

// exitCode is the exit code once reaped (-1: killed by a signal).
func (p *proc) exitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.code
}

const sigKill = kernel.SIGKILL

// signal sends sig; an error only if the process is gone.
func (p *proc) signal(sig int) error { return kernel.Kill(p.pid, sig) }

// kill SIGKILLs the helper and waits for it to be reaped.
func (p *proc) kill() {
	_ = kernel.Kill(p.pid, kernel.SIGKILL)
	<-p.done
}

// stop sends SIGSTOP and waits until the process is stopped (state T):
// from then on it executes nothing until SIGCONT or SIGKILL, so what the
// test reads in shared memory is what it left. It reports false if the
// process died first.
func (p *proc) stop() bool {
	if kernel.Kill(p.pid, kernel.SIGSTOP) != nil {
		return false
	}
	for i := 0; ; i++ {
		switch testutil.ProcState(p.pid) {
		case "T", "t":
			return true
		case "", "Z", "X":
			return false
		}
		if i > 100 {
			time.Sleep(100 * time.Microsecond)
		}
	}
}

func (p *proc) cont() { _ = kernel.Kill(p.pid, kernel.SIGCONT) }
