package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/usysv/usysv/kernel"
)

// Cross-process cases run every participant in a helper process: the
// benchmark's own binary re-executed (see Spawner), given a job as its one
// argument and the channel's descriptors as 3, 4, ... It talks to the
// driver with JSON values on stdout (replies) and lines on stdin ("go").
// The driver itself only creates and removes the objects and times the
// streams, so both implementations see exactly the same processes.

// Spawner returns a command that runs HelperMain(args) in a new process.
// For a test binary that is the binary itself with the testutil helper
// variable set; for the usysv command, its hidden helper verb.
type Spawner func(args []string) *exec.Cmd

// job is what a helper process is asked to do.
type job struct {
	Role  string        `json:"role"`
	Impl  string        `json:"impl"`
	Ref   string        `json:"ref"`
	Side  int           `json:"side"`
	Files int           `json:"files"`
	N     int           `json:"n"`              // timed iterations or messages
	Warm  int           `json:"warm"`           // untimed ones first
	Size  int           `json:"size,omitempty"` // message bytes
	Types int           `json:"types,omitempty"`
	Batch int           `json:"batch,omitempty"` // messages per call, if the endpoint batches
	Gap   time.Duration `json:"gap,omitempty"`   // pause before each post (waiter asleep)
	// CPU, when not zero, pins every thread of the helper to CPU-1 before
	// it opens anything (the ping-pong cases "on CPUs of their own").
	CPU int `json:"cpu,omitempty"`
}

// reply is one JSON value a helper writes.
type reply struct {
	Ready   bool    `json:"ready,omitempty"`
	Samples []int64 `json:"samples,omitempty"` // ns, one per timed iteration
	Gaps    []int64 `json:"gaps,omitempty"`    // ns spent pausing, per timed iteration
	Elapsed int64   `json:"elapsed,omitempty"` // ns of the timed part
	Err     string  `json:"err,omitempty"`
}

// Helper roles.
const (
	roleSemPing  = "sem-ping"
	roleSemPong  = "sem-pong"
	roleMsgPing  = "msg-ping"
	roleMsgPong  = "msg-pong"
	roleProduce  = "msg-produce"
	roleConsume  = "msg-consume"
	roleSemIdle  = "sem-idle"
	roleMsgIdle  = "msg-idle"
	helperMarker = "usysv-bench-helper"
)

// HelperMain runs the helper side of a cross-process case in this process
// and returns its exit status. args are what the driver passed (the job).
func HelperMain(args []string) int {
	out := json.NewEncoder(os.Stdout)
	if err := helper(args, out, bufio.NewReader(os.Stdin)); err != nil {
		_ = out.Encode(reply{Err: err.Error()})
		fmt.Fprintln(os.Stderr, "bench helper:", err)
		return 1
	}
	return 0
}

func helper(args []string, out *json.Encoder, in *bufio.Reader) error {
	if len(args) != 2 || args[0] != helperMarker {
		return fmt.Errorf("want arguments %q JOB, got %q", helperMarker, args)
	}
	var j job
	if err := json.Unmarshal([]byte(args[1]), &j); err != nil {
		return fmt.Errorf("job: %w", err)
	}
	if j.CPU > 0 {
		if err := kernel.PinCPU(j.CPU - 1); err != nil {
			return fmt.Errorf("pin to CPU %d: %w", j.CPU-1, err)
		}
	}
	waitGo := func() error {
		if err := out.Encode(reply{Ready: true}); err != nil {
			return err
		}
		return readGo(in)
	}
	switch j.Role {
	case roleSemPing, roleSemPong, roleSemIdle:
		si, err := semImpl(j.Impl)
		if err != nil {
			return err
		}
		s, err := si.Open(j.Ref)
		if err != nil {
			return fmt.Errorf("open set %s: %w", j.Ref, err)
		}
		defer s.Close()
		var r reply
		if j.Role == roleSemIdle {
			return blockIdle(out, in, func() error { return s.Op([]Buf{{Num: 0, Op: -1}}) })
		}
		if j.Role == roleSemPing {
			r.Samples, err = semPing(s, j)
		} else {
			r.Gaps, err = semPong(s, j)
		}
		if err != nil {
			return err
		}
		return out.Encode(r)
	}
	mi, err := msgImpl(j.Impl)
	if err != nil {
		return err
	}
	files := make([]*os.File, j.Files)
	for i := range files {
		files[i] = os.NewFile(uintptr(3+i), fmt.Sprintf("fd%d", 3+i))
	}
	ep, err := mi.Open(j.Ref, j.Side, files)
	if err != nil {
		return fmt.Errorf("open channel %s side %d: %w", j.Ref, j.Side, err)
	}
	defer ep.Close()
	buf := make([]byte, max(j.Size, 1))
	msg := bytes.Repeat([]byte{0xa5}, j.Size)
	var r reply
	switch j.Role {
	case roleMsgPing:
		r.Samples, err = msgPing(ep, j, msg, buf)
	case roleMsgPong:
		err = msgPong(ep, j, msg, buf)
	case roleMsgIdle:
		return blockIdle(out, in, func() error {
			n, err := ep.Recv(buf, 1)
			if err == nil && n != j.Size {
				err = fmt.Errorf("recv: %d bytes, want %d", n, j.Size)
			}
			return err
		})
	case roleProduce:
		send := sender(ep, j, msg)
		if err := send(j.Warm); err != nil {
			return err
		}
		if err := waitGo(); err != nil {
			return err
		}
		t0 := time.Now()
		if err := send(j.N); err != nil {
			return err
		}
		r.Elapsed = int64(time.Since(t0))
	case roleConsume:
		recv := receiver(ep, j)
		if err := recv(j.Warm); err != nil {
			return err
		}
		if err := waitGo(); err != nil {
			return err
		}
		t0 := time.Now()
		if err := recv(j.N); err != nil {
			return err
		}
		r.Elapsed = int64(time.Since(t0))
	default:
		return fmt.Errorf("unknown role %q", j.Role)
	}
	if err != nil {
		return err
	}
	return out.Encode(r)
}

// blockIdle calls block (which waits until the driver releases it) in a
// goroutine, tells the driver that it is about to block, and then only
// waits for the driver's "go". The driver measures this process's CPU time
// from outside while the call sleeps (idleResult), so that nothing here
// wakes inside the window: a timer of this process's own, or a system
// call to read its clock, made the Go runtime spin up (sysmon's fast
// polls, at times a new thread) at the window's start, which cost more
// than the sleeping call (2-4 ms in one window in three). After "go" it
// replies that the call still blocks; the second reply says it returned.
func blockIdle(out *json.Encoder, in *bufio.Reader, block func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- block() }()
	if err := out.Encode(reply{Ready: true}); err != nil {
		return err
	}
	if err := readGo(in); err != nil {
		return err
	}
	select {
	case err := <-errc:
		return fmt.Errorf("the blocked call returned before its release: %v", err)
	default:
	}
	if err := out.Encode(reply{}); err != nil {
		return err
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("blocked call: %w", err)
	}
	return out.Encode(reply{})
}

// readGo waits for the driver's "go" line.
func readGo(in *bufio.Reader) error {
	line, err := in.ReadString('\n')
	if err != nil {
		return fmt.Errorf("waiting for go: %w", err)
	}
	if strings.TrimSpace(line) != "go" {
		return fmt.Errorf("driver said %q, want go", line)
	}
	return nil
}

// idleSettle is how long the driver waits after an idle helper said it
// would block before it starts measuring: the call has long finished any
// spinning and gone to sleep, and the helper's runtime has settled.
const idleSettle = 200 * time.Millisecond

// sender returns a function that sends n messages: in batches of j.Batch
// through a Batcher, else one by one, with types cycling 1..j.Types.
func sender(ep Endpoint, j job, msg []byte) func(n int) error {
	types := max(j.Types, 1)
	if b, ok := ep.(Batcher); ok && j.Batch > 1 {
		msgs := make([][]byte, j.Batch)
		for i := range msgs {
			msgs[i] = msg
		}
		return func(n int) error {
			for sent := 0; sent < n; {
				k := min(j.Batch, n-sent)
				if err := b.SendBatch(1, msgs[:k]); err != nil {
					return fmt.Errorf("send batch: %w", err)
				}
				sent += k
			}
			return nil
		}
	}
	i := 0
	return func(n int) error {
		for range n {
			if err := ep.Send(int64(1+i%types), msg); err != nil {
				return fmt.Errorf("send: %w", err)
			}
			i++
		}
		return nil
	}
}

// receiver returns a function that receives n messages of any type,
// checking each one's size: in batches through a Batcher, else one by one.
func receiver(ep Endpoint, j job) func(n int) error {
	if b, ok := ep.(Batcher); ok && j.Batch > 1 {
		bufs, sizes := make([][]byte, j.Batch), make([]int, j.Batch)
		for i := range bufs {
			bufs[i] = make([]byte, j.Size)
		}
		return func(n int) error {
			for got := 0; got < n; {
				k, err := b.RecvBatch(bufs[:min(j.Batch, n-got)], sizes, 0)
				if err != nil {
					return fmt.Errorf("recv batch: %w", err)
				}
				for _, sz := range sizes[:k] {
					if sz != j.Size {
						return fmt.Errorf("recv: %d bytes, want %d", sz, j.Size)
					}
				}
				got += k
			}
			return nil
		}
	}
	buf := make([]byte, max(j.Size, 1))
	return func(n int) error {
		for range n {
			got, err := ep.Recv(buf, 0)
			if err != nil {
				return fmt.Errorf("recv: %w", err)
			}
			if got != j.Size {
				return fmt.Errorf("recv: %d bytes, want %d", got, j.Size)
			}
		}
		return nil
	}
}

// roundTimer times the rounds of a ping-pong with one read of the
// monotonic clock a round: time.Now reads two clocks (about 58 ns here)
// and time.Since one (about 30 ns), so timing each round with
// t0 := time.Now() and time.Since(t0) added about 90 ns to every round
// trip, which was an eighth of usysv's message round trip. Back-to-back
// rounds share their marks: a round ends where the next begins.
type roundTimer struct {
	base time.Time
	last time.Duration
}

func newRoundTimer() roundTimer {
	return roundTimer{base: time.Now()}
}

// start starts a round (after a pause that is not part of it).
func (r *roundTimer) start() { r.last = time.Since(r.base) }

// lap ends the round, returns how long it took, and starts the next.
func (r *roundTimer) lap() int64 {
	now := time.Since(r.base)
	d := now - r.last
	r.last = now
	return int64(d)
}

// semPing posts semaphore 0 and waits on semaphore 1, timing each round.
func semPing(s SemSet, j job) ([]int64, error) {
	post, wait := []Buf{{Num: 0, Op: 1}}, []Buf{{Num: 1, Op: -1}}
	samples := make([]int64, 0, j.N)
	rt := newRoundTimer()
	rt.start()
	for i := range j.Warm + j.N {
		if j.Gap > 0 {
			time.Sleep(j.Gap) // let the partner fall asleep
			rt.start()
		}
		if err := s.Op(post); err != nil {
			return nil, fmt.Errorf("semop post: %w", err)
		}
		if err := s.Op(wait); err != nil {
			return nil, fmt.Errorf("semop wait: %w", err)
		}
		if d := rt.lap(); i >= j.Warm {
			samples = append(samples, d)
		}
	}
	return samples, nil
}

// semPong waits on semaphore 0 and posts semaphore 1; with a gap it
// pauses in between (so the pinger is asleep) and reports each pause.
func semPong(s SemSet, j job) ([]int64, error) {
	post, wait := []Buf{{Num: 1, Op: 1}}, []Buf{{Num: 0, Op: -1}}
	var gaps []int64
	if j.Gap > 0 {
		gaps = make([]int64, 0, j.N)
	}
	for i := range j.Warm + j.N {
		if err := s.Op(wait); err != nil {
			return nil, fmt.Errorf("semop wait: %w", err)
		}
		if j.Gap > 0 {
			t1 := time.Now()
			time.Sleep(j.Gap)
			if i >= j.Warm {
				gaps = append(gaps, int64(time.Since(t1)))
			}
		}
		if err := s.Op(post); err != nil {
			return nil, fmt.Errorf("semop post: %w", err)
		}
	}
	return gaps, nil
}

func msgPing(ep Endpoint, j job, msg, buf []byte) ([]int64, error) {
	samples := make([]int64, 0, j.N)
	rt := newRoundTimer()
	rt.start()
	for i := range j.Warm + j.N {
		if err := ep.Send(1, msg); err != nil {
			return nil, fmt.Errorf("send: %w", err)
		}
		if _, err := ep.Recv(buf, 2); err != nil {
			return nil, fmt.Errorf("recv: %w", err)
		}
		if d := rt.lap(); i >= j.Warm {
			samples = append(samples, d)
		}
	}
	return samples, nil
}

func msgPong(ep Endpoint, j job, msg, buf []byte) error {
	for range j.Warm + j.N {
		if _, err := ep.Recv(buf, 1); err != nil {
			return fmt.Errorf("recv: %w", err)
		}
		if err := ep.Send(2, msg); err != nil {
			return fmt.Errorf("send: %w", err)
		}
	}
	return nil
}

// proc is a running helper process, from the driver's side.
type proc struct {
	role    string
	cmd     *exec.Cmd
	in      io.WriteCloser
	replies chan reply
	stderr  *tailBuffer
	exited  chan struct{}
	waitErr error
	reap    sync.Mutex // held to reap the process, and to use its pid (helperCPU)
	reaped  bool       // under reap: the pid may name another process now
}

// group is the helper processes of one run; stop kills what is left.
type group struct {
	ctx      context.Context
	deadline time.Time
	procs    []*proc

	// failed is closed when the first helper exits with an error (a
	// crash, a kill), naming it in first: whatever the driver waits for,
	// from that helper or from its partners, will not come.
	failed   chan struct{}
	failOnce sync.Once
	first    *proc
}

func (e *env) newGroup(timeout time.Duration) *group {
	return &group{ctx: e.ctx, deadline: time.Now().Add(timeout), failed: make(chan struct{})}
}

// failure is the error of the helper that failed first.
func (g *group) failure() error { return g.first.exitedEarly() }

// exitedEarly is the error of a helper that exited before the driver was
// done with it; p.exited is closed.
func (p *proc) exitedEarly() error {
	return fmt.Errorf("helper %s exited (%v) early: %s", p.role, p.waitErr, p.stderr)
}

func (g *group) start(e *env, j job, files []*os.File) (*proc, error) {
	if e.spawn == nil {
		return nil, errors.New("no way to start helper processes (Options.Spawn is nil)")
	}
	j.Files = len(files)
	b, err := json.Marshal(j)
	if err != nil {
		return nil, err
	}
	cmd := e.spawn([]string{helperMarker, string(b)})
	cmd.ExtraFiles = files
	// Killed with the driver; in its own process group, so a terminal's
	// ^C reaches only the driver, which then stops its helpers itself.
	cmd.SysProcAttr = kernel.ChildAttr(false, 0, 0, nil)
	p := &proc{role: j.Role, cmd: cmd, replies: make(chan reply, 4), stderr: &tailBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if p.in, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start helper %s: %w", j.Role, err)
	}
	g.procs = append(g.procs, p)
	go func() {
		dec := json.NewDecoder(out)
		for {
			var r reply
			if err := dec.Decode(&r); err != nil {
				break
			}
			p.replies <- r
		}
		close(p.replies)
		p.reap.Lock()
		p.waitErr = cmd.Wait()
		p.reaped = true
		p.reap.Unlock()
		close(p.exited)
		if p.waitErr != nil {
			g.failOnce.Do(func() { g.first = p; close(g.failed) })
		}
	}()
	return p, nil
}

// next waits for p's next reply. A helper's error, its exit or the
// failure of any helper of the group, the run's deadline or the context's
// end is an error.
func (g *group) next(p *proc) (reply, error) {
	t := time.NewTimer(time.Until(g.deadline))
	defer t.Stop()
	select {
	case <-g.failed:
		return reply{}, g.failure()
	case r, ok := <-p.replies:
		if !ok {
			<-p.exited
			return r, p.exitedEarly()
		}
		if r.Err != "" {
			return r, fmt.Errorf("helper %s: %s", p.role, r.Err)
		}
		return r, nil
	case <-t.C:
		return reply{}, fmt.Errorf("helper %s: no reply before the run's deadline (hung?)", p.role)
	case <-g.ctx.Done():
		return reply{}, g.ctx.Err()
	}
}

// ready waits for each of ps to report that it is ready.
func (g *group) ready(ps ...*proc) error {
	for _, p := range ps {
		r, err := g.next(p)
		if err != nil {
			return err
		}
		if !r.Ready {
			return fmt.Errorf("helper %s: unexpected reply, want ready", p.role)
		}
	}
	return nil
}

// goAll tells each of ps to start.
func (g *group) goAll(ps ...*proc) error {
	for _, p := range ps {
		if _, err := io.WriteString(p.in, "go\n"); err != nil {
			return fmt.Errorf("helper %s: %w", p.role, err)
		}
	}
	return nil
}

// finish waits for every helper to exit successfully, up to the deadline.
func (g *group) finish() error {
	t := time.NewTimer(time.Until(g.deadline))
	defer t.Stop()
	for _, p := range g.procs {
		select {
		case <-p.exited:
			if p.waitErr != nil {
				return fmt.Errorf("helper %s: %v: %s", p.role, p.waitErr, p.stderr)
			}
		case <-t.C:
			return fmt.Errorf("helper %s did not exit", p.role)
		case <-g.ctx.Done():
			return g.ctx.Err()
		}
	}
	return nil
}

// sleep waits for d, or until a helper of the group fails or the context
// ends.
func (g *group) sleep(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-g.failed:
		return g.failure()
	case <-g.ctx.Done():
		return g.ctx.Err()
	}
}

// stop kills every helper still running and reaps them all.
func (g *group) stop() {
	for _, p := range g.procs {
		select {
		case <-p.exited:
			continue
		default:
		}
		_ = p.cmd.Process.Kill()
	}
	for _, p := range g.procs {
		_ = p.in.Close()
		<-p.exited
	}
}

// tailBuffer keeps the last few KiB written to it (a helper's stderr).
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
