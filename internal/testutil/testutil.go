// Package testutil is the test infrastructure shared by every package:
// helper processes (the test binary re-executed), running them as another
// uid, IPC keys that never collide between parallel test binaries, a
// private registry socket per test binary, and a leak check that fails the
// run when IPC objects it created remain. What a test binary that was
// killed could not clean up (its directory, its namespace's objects), the
// next one removes (sweepStale).
//
// A package uses it from TestMain:
//
//	func TestMain(m *testing.M) { testutil.Main(m) }
package testutil

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

const (
	envHelper = "USYSV_TEST_HELPER"
	envSocket = "USYSV_SOCKET"
	envDir    = "USYSV_TEST_DIR"
)

// Nobody is the uid and gid tests drop to for permission checks.
const Nobody = 65534

var (
	helpers = map[string]func(args []string) int{}
	tracked struct {
		sync.Mutex
		objs map[trackedObj]string // → test name
	}
)

type trackedObj struct {
	kind string // "sem", "msg", "shm"
	id   int
}

// RegisterHelper makes f runnable as a helper process called name. Call it
// from an init function in a _test.go file. f's return value is the exit
// status; it talks to the test through stdin and stdout (see Proc).
func RegisterHelper(name string, f func(args []string) int) {
	if _, dup := helpers[name]; dup {
		panic("testutil: helper " + name + " registered twice")
	}
	helpers[name] = f
}

// Main runs a package's tests. In a helper process it runs the helper
// instead. It gives the test binary a private registry socket (so parallel
// test binaries never share a registry or a namespace), and after the tests
// fails the run if any usysv object in that namespace, or any tracked
// kernel object, is left.
func Main(m *testing.M) {
	if name := os.Getenv(envHelper); name != "" {
		f, ok := helpers[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "testutil: no helper %q\n", name)
			os.Exit(2)
		}
		os.Exit(f(os.Args[1:]))
	}
	sweepStale(os.TempDir())
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testutil:", err)
		os.Exit(2)
	}
	if err := writeOwner(dir); err != nil {
		fmt.Fprintln(os.Stderr, "testutil:", err)
		os.Exit(2)
	}
	// Helpers running as nobody must reach the socket.
	_ = os.Chmod(dir, 0o777)
	sock := filepath.Join(dir, "registry.sock")
	os.Setenv(envSocket, sock)
	os.Setenv(envDir, dir)
	if kernel.Geteuid() == 0 {
		// Copy now, while nothing else forks: a child forked while the
		// copy is open for writing would make exec fail with ETXTBSY.
		_, _ = otherUserBinary()
	}
	code := m.Run()
	if leaks := Leaks(shm.Namespace(sock)); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "testutil: IPC objects left behind by this test binary (removed now):\n  %s\n", strings.Join(leaks, "\n  "))
		if code == 0 {
			code = 1
		}
	}
	// Renamed away first: this process's registry, which is still
	// serving, then finds its directory gone and steps down, instead of
	// putting back its socket while RemoveAll empties the directory
	// (registry guard.go).
	if os.Rename(dir, dir+".gone") == nil {
		dir += ".gone"
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// A test binary's directory (its registry socket, helper binaries) is
// dirPrefix + random in the temporary directory, with an owner file
// naming the binary's process (pid and start time). Main removes it at the
// end, but a binary that is killed (a -timeout, an interrupted run, a fuzz
// worker stopped hard) cannot: the next test binary's Main removes the
// directories, and the usysv objects of the namespaces, of processes that
// are gone (sweepStale).
const (
	dirPrefix = "usysv-test-"
	ownerFile = "owner"
)

func writeOwner(dir string) error {
	pid, start := kernel.Self()
	return os.WriteFile(filepath.Join(dir, ownerFile), []byte(fmt.Sprintf("%d %d\n", pid, start)), 0o644)
}

// sweepStale removes the directories under tmp of test binaries that are
// gone, with the usysv objects left in their namespaces (dirNamespaces),
// and says so on stderr. A directory without a readable owner file is
// left alone (it may be one being made right now).
func sweepStale(tmp string) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, dirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		var pid int
		var start uint64
		if n, _ := fmt.Sscan(string(b), &pid, &start); n != 2 || pid <= 0 || kernel.ProcessAlive(pid, start) {
			continue
		}
		left := removeNamespaces(dirNamespaces(dir))
		if err := os.RemoveAll(dir); err != nil {
			continue
		}
		msg := fmt.Sprintf("testutil: removed %s, left by test binary pid %d, which is gone", dir, pid)
		if len(left) > 0 {
			msg += fmt.Sprintf(", and its IPC objects:\n  %s", strings.Join(left, "\n  "))
		}
		fmt.Fprintln(os.Stderr, msg)
	}
}

// dirNamespaces lists the namespaces a test binary's directory dir may
// hold objects of: its own registry's (registry.sock), and that of every
// registry socket below it, or lock file left beside one: a chaos
// cluster's, say (two chaos binaries killed mid-run left four segments,
// a 3 GiB one among them, that no sweep removed).
func dirNamespaces(dir string) map[uint64]bool {
	nss := map[uint64]bool{shm.Namespace(filepath.Join(dir, "registry.sock")): true}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
		case d.Type()&fs.ModeSocket != 0:
			nss[shm.Namespace(path)] = true
		case strings.HasSuffix(path, ".lock"):
			nss[shm.Namespace(strings.TrimSuffix(path, ".lock"))] = true
		}
		return nil
	})
	return nss
}

// removeNamespace lists, and removes, the live usysv objects of
// namespace ns, and those made but never published (shm.StateCreating:
// their creator was killed, and no registry has rebuilt since).
func removeNamespace(ns uint64) []string {
	return removeNamespaces(map[uint64]bool{ns: true})
}

// removeNamespaces is removeNamespace for several.
func removeNamespaces(nss map[uint64]bool) []string {
	var out []string
	segs, _ := kernel.ShmList()
	for _, s := range segs {
		// A SHM_DEST segment is removed already (it lingers while anyone,
		// such as another binary's registry peeking, has it attached).
		if !shm.Candidate(s.DS) || s.DS.Perm.Mode&kernel.SHM_DEST != 0 {
			continue
		}
		p, st, err := shm.Peek(s.ID)
		if err != nil || !nss[p.Namespace] || (st != shm.StateLive && st != shm.StateCreating) {
			continue
		}
		what := ""
		if st == shm.StateCreating {
			what = " (never published)"
		}
		out = append(out, fmt.Sprintf("usysv %s id %d key %#x%s", p.Kind, s.ID, uint32(p.Key), what))
		_ = kernel.ShmctlRemove(s.ID)
	}
	return out
}

// Leaks lists, and removes, the live usysv objects of namespace ns and the
// tracked kernel objects that still exist.
func Leaks(ns uint64) []string {
	out := removeNamespace(ns)
	tracked.Lock()
	defer tracked.Unlock()
	for o, test := range tracked.objs {
		var err error
		switch o.kind {
		case "sem":
			if _, err = kernel.SemctlStat(o.id); err == nil {
				_ = kernel.SemctlRemove(o.id)
			}
		case "msg":
			if _, err = kernel.MsgctlStat(o.id); err == nil {
				_ = kernel.MsgctlRemove(o.id)
			}
		case "shm":
			var ds kernel.ShmidDS
			if ds, err = kernel.ShmctlStat(o.id); err == nil && ds.Perm.Mode&kernel.SHM_DEST == 0 {
				_ = kernel.ShmctlRemove(o.id)
			} else {
				err = kernel.EINVAL // marked for removal: not a leak
			}
		}
		if err == nil {
			out = append(out, fmt.Sprintf("kernel %s id %d (from %s)", o.kind, o.id, test))
		}
	}
	sort.Strings(out)
	return out
}

// Track registers a kernel SysV object (kind "sem", "msg" or "shm") that a
// test created: it is removed when the test ends, and reported as a leak if
// it still exists when the binary finishes.
func Track(t testing.TB, kind string, id int) {
	t.Helper()
	tracked.Lock()
	if tracked.objs == nil {
		tracked.objs = make(map[trackedObj]string)
	}
	tracked.objs[trackedObj{kind, id}] = t.Name()
	tracked.Unlock()
	t.Cleanup(func() {
		switch kind {
		case "sem":
			_ = kernel.SemctlRemove(id)
		case "msg":
			_ = kernel.MsgctlRemove(id)
		case "shm":
			_ = kernel.ShmctlRemove(id)
		}
		tracked.Lock()
		delete(tracked.objs, trackedObj{kind, id})
		tracked.Unlock()
	})
}

var (
	keySeq  atomic.Uint32
	keyBase = uint32(xxhash.Sum64String(fmt.Sprintf("%d/%d", os.Getpid(), time.Now().UnixNano())))
)

// Key returns a SysV key for this test that no other test of this binary
// will use, and that another test binary running at the same time is
// unlikely to: the binary's random base (of its pid and start time) plus
// a counter times an odd constant, a bijection of the counter modulo 2^32,
// so that no key repeats within 2^32 calls (hashing each key apart, as
// before, repeated one in about 10^4 calls' worth of 32-bit values often
// enough to fail TestKey in one CI run in a hundred). Never 0
// (IPC_PRIVATE) or -1. Create with IPC_EXCL anyway. (t is for callers'
// readability; every test draws from the same sequence.)
func Key(t testing.TB) int {
	for {
		k := int(int32(keyBase + keySeq.Add(1)*0x9e3779b1))
		if k != 0 && k != -1 {
			return k
		}
	}
}

// RequireShmGone waits until kernel segment id, removed, is gone. An
// IPC_PRIVATE segment of a usysv size (shm.Candidate), and any removed
// one still attached, may be attached for a moment by another test
// binary's registry or leak check (shm.Peek): the kernel then keeps it,
// SHM_DEST, until that peek detaches.
func RequireShmGone(t testing.TB, id int, msg string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		ds, err := kernel.ShmctlStat(id)
		if errors.Is(err, kernel.EINVAL) || errors.Is(err, kernel.EIDRM) {
			return
		}
		if err != nil {
			t.Fatalf("%s: IPC_STAT of segment %d: %v", msg, id, err)
		}
		if ds.Perm.Mode&kernel.SHM_DEST == 0 {
			t.Fatalf("%s: segment %d is not removed", msg, id)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: removed segment %d still has %d attaches", msg, id, ds.Nattch)
		}
	}
}

// RequireRoot skips the test unless it runs as root (permission tests drop
// to Nobody, which needs root).
func RequireRoot(t testing.TB) {
	t.Helper()
	if kernel.Geteuid() != 0 {
		t.Skip("needs root to run helpers as another uid")
	}
}

// Proc is a running helper process. It reads commands on stdin and writes
// results on stdout, one line each.
type Proc struct {
	t     testing.TB
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	done  chan struct{}
	err   error
}

// Opt changes how a helper starts.
type Opt func(*exec.Cmd)

// AsUser runs the helper as uid/gid with no supplementary groups.
func AsUser(uid, gid uint32) Opt {
	return func(c *exec.Cmd) { c.SysProcAttr = kernel.ChildAttr(true, uid, gid, nil) }
}

// AsNobody runs the helper as nobody (needs root).
func AsNobody() Opt { return AsUser(Nobody, Nobody) }

// NewIPCNamespace starts the helper in an IPC namespace of its own (root
// only): it has its own SysV objects and its own kernel limits on them,
// and its objects go when it exits. Give it after AsUser, which replaces
// the attributes.
func NewIPCNamespace() Opt {
	return func(c *exec.Cmd) { kernel.NewIPCNamespace(c.SysProcAttr) }
}

// Env adds environment variables ("K=V") to the helper's.
func Env(kv ...string) Opt {
	return func(c *exec.Cmd) { c.Env = append(c.Env, kv...) }
}

// Start runs helper name in a new process with args. The process is killed
// when the test ends if it is still running.
func Start(t testing.TB, name string, args []string, opts ...Opt) *Proc {
	t.Helper()
	if _, ok := helpers[name]; !ok {
		t.Fatalf("testutil: no helper %q registered", name)
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envHelper+"="+name)
	cmd.SysProcAttr = kernel.ChildAttr(false, 0, 0, nil)
	cmd.Stderr = os.Stderr
	for _, o := range opts {
		o(cmd)
	}
	if cmd.SysProcAttr != nil && cmd.SysProcAttr.Credential != nil {
		// The go tool builds the test binary in a directory only we can
		// enter; another user runs a copy that it can reach.
		path, err := otherUserBinary()
		if err != nil {
			t.Fatalf("testutil: helper %s as another user: %v", name, err)
		}
		cmd.Path = path
		cmd.Dir = filepath.Dir(path)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testutil: start helper %s: %v", name, err)
	}
	p := &Proc{t: t, cmd: cmd, in: in, lines: make(chan string, 1024), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

var otherUser struct {
	once sync.Once
	path string
	err  error
}

// otherUserBinary copies the test binary, once, into the per-binary test
// directory (mode 0777, made by Main) and returns the copy's path.
func otherUserBinary() (string, error) {
	otherUser.once.Do(func() {
		dir := os.Getenv(envDir)
		if dir == "" {
			otherUser.err = fmt.Errorf("no test directory: is TestMain calling testutil.Main?")
			return
		}
		self, err := os.Executable()
		if err != nil {
			otherUser.err = err
			return
		}
		src, err := os.Open(self)
		if err != nil {
			otherUser.err = err
			return
		}
		defer src.Close()
		path := filepath.Join(dir, "helper-"+filepath.Base(self))
		dst, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
		if err != nil {
			otherUser.err = err
			return
		}
		if _, err = io.Copy(dst, src); err == nil {
			err = dst.Close()
		} else {
			_ = dst.Close()
		}
		otherUser.path, otherUser.err = path, err
	})
	return otherUser.path, otherUser.err
}

// Pid is the helper's pid.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Send writes one command line to the helper's stdin.
func (p *Proc) Send(format string, a ...any) {
	p.t.Helper()
	if _, err := fmt.Fprintf(p.in, format+"\n", a...); err != nil {
		p.t.Fatalf("testutil: send to helper %d: %v", p.Pid(), err)
	}
}

// Line waits up to timeout for the helper's next output line. It fails the
// test on timeout or if the helper exits first.
func (p *Proc) Line(timeout time.Duration) string {
	p.t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			p.t.Fatalf("testutil: helper %d exited (%v) while a line was expected", p.Pid(), p.wait())
		}
		return l
	case <-time.After(timeout):
		p.t.Fatalf("testutil: no line from helper %d within %v", p.Pid(), timeout)
	}
	return ""
}

// Next is Line for a helper that may exit instead of answering: ok is
// false if it exited first. It fails the test on timeout.
func (p *Proc) Next(timeout time.Duration) (line string, ok bool) {
	p.t.Helper()
	select {
	case l, ok := <-p.lines:
		return l, ok
	case <-time.After(timeout):
		p.t.Fatalf("testutil: neither a line nor an exit from helper %d within %v", p.Pid(), timeout)
	}
	return "", false
}

// Rest returns the helper's output lines up to its exit. It fails the
// test if a line, or the exit, takes longer than timeout.
func (p *Proc) Rest(timeout time.Duration) []string {
	p.t.Helper()
	var lines []string
	for {
		l, ok := p.Next(timeout)
		if !ok {
			return lines
		}
		lines = append(lines, l)
	}
}

// Expect waits for the next line and fails the test unless it equals want.
func (p *Proc) Expect(want string, timeout time.Duration) {
	p.t.Helper()
	if got := p.Line(timeout); got != want {
		p.t.Fatalf("testutil: helper %d said %q, want %q", p.Pid(), got, want)
	}
}

// Quiet reports whether the helper stays silent (and alive) for d: used to
// check that a helper is blocked.
func (p *Proc) Quiet(d time.Duration) bool {
	select {
	case l, ok := <-p.lines:
		if ok {
			p.t.Logf("helper %d said %q", p.Pid(), l)
		}
		return false
	case <-time.After(d):
		return true
	}
}

// Signal sends sig (kernel.SIGKILL and so on) to the helper.
func (p *Proc) Signal(sig int) {
	p.t.Helper()
	if err := kernel.Kill(p.Pid(), sig); err != nil {
		p.t.Fatalf("testutil: signal %d to %d: %v", sig, p.Pid(), err)
	}
}

// Kill sends SIGKILL and waits for the helper to be gone.
func (p *Proc) Kill() {
	p.t.Helper()
	_ = kernel.Kill(p.Pid(), kernel.SIGKILL)
	<-p.done
}

// Wait waits up to timeout for the helper to exit and returns its exit code
// (-1 if killed by a signal).
func (p *Proc) Wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("testutil: helper %d still running after %v", p.Pid(), timeout)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *Proc) wait() error {
	<-p.done
	return p.err
}

// Eventually polls cond every few milliseconds until it holds or timeout
// passes, and fails the test then. It is for waiting on another process's
// progress (a helper reaching a blocked state), not for asserting speed.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Returns runs f and fails the test if f has not returned within timeout,
// or returned an error: for a call that would otherwise wait for ever (on
// a lock that a live process holds, say), so that the test fails with
// what instead of hanging. On a timeout f's goroutine is left behind.
func Returns(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(timeout):
		t.Fatalf("%s did not return within %v", what, timeout)
	}
}

// ProcState returns the one-letter state of process pid from /proc (R, S,
// D, T, Z...), or "" if it is gone. "S" is how a test knows a helper sleeps.
func ProcState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return ""
	}
	return string(b[i+2])
}

// Answer reads the helper's next line as the answer to a command: "ok" and
// any fields (returned), or "err N" with N an errno number (returned as a
// kernel.Errno). Anything else fails the test.
func (p *Proc) Answer(timeout time.Duration) ([]string, error) {
	p.t.Helper()
	line := p.Line(timeout)
	f := strings.Fields(line)
	if len(f) > 0 {
		switch {
		case f[0] == "ok":
			return f[1:], nil
		case f[0] == "err" && len(f) == 2:
			if n, err := strconv.Atoi(f[1]); err == nil {
				return nil, kernel.Errno(n)
			}
		}
	}
	p.t.Fatalf("testutil: helper %d answered %q, want \"ok ...\" or \"err ERRNO\"", p.Pid(), line)
	return nil, nil
}

// Call sends a command line and returns the helper's Answer.
func (p *Proc) Call(timeout time.Duration, format string, a ...any) ([]string, error) {
	p.t.Helper()
	p.Send(format, a...)
	return p.Answer(timeout)
}

// SysVMappings counts this process's SysV shm attaches (the "SYSV" lines of
// /proc/self/maps): how a test sees that segments were detached.
func SysVMappings(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	return strings.Count(string(b), "SYSV")
}

// GoroutineStates is the state of each goroutine of this process whose
// stack has a call of frame (say "registry.(*Client).readLoop("), as the
// runtime's stack dump shows it in the goroutine's header: syscall, IO
// wait, chan receive, ...
func GoroutineStates(frame string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var st []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		head, _, _ := strings.Cut(g, "\n")
		if !strings.HasPrefix(head, "goroutine ") || !strings.Contains(g, frame) {
			continue
		}
		_, s, _ := strings.Cut(head, "[")
		s, _, _ = strings.Cut(s, "]")
		s, _, _ = strings.Cut(s, ",")
		st = append(st, s)
	}
	return st
}
