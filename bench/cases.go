package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/usysv/usysv/kernel"
)

// Kind says how a case is measured.
type Kind string

// Case kinds.
const (
	// Latency cases time each operation (or group of operations) and
	// report p50 and p99 in nanoseconds; lower is better.
	Latency Kind = "latency"
	// Throughput cases stream messages between processes and report
	// messages per second; higher is better.
	Throughput Kind = "throughput"
	// Idle cases block a helper process in a call that waits (a P on a
	// semaphore at 0, a receive on an empty queue) until the driver lets
	// it go, and report the CPU time that process used per second it was
	// blocked, in µs/s; lower is better. A run's operations are the
	// milliseconds it blocks.
	Idle Kind = "idle"
)

// Case is one benchmark, run the same way on every implementation it names.
type Case struct {
	Name  string   // "group/case": JSON id, benchmark name, -case filter
	Title string   // one line for the table
	Kind  Kind     // Latency, Throughput or Idle
	Impls []string // implementations it runs on, usysv and kernel first

	batch  bool // a latency sample may average several operations
	pilot  int  // operations in the calibration run
	minOps int  // bounds on the operations of one timed run
	maxOps int
	run    func(e *env, impl string, n, k int) (measurement, error)
}

// env is what a run needs from its driver.
type env struct {
	ctx     context.Context
	spawn   Spawner
	timer   timer
	timeout time.Duration // for each cross-process run
}

// measurement is what one timed run of a case on one implementation gives.
type measurement struct {
	ops       int           // operations, round trips or messages timed
	elapsed   time.Duration // time they took (latency: sum of samples)
	wall      time.Duration // wall time the run's timed part occupied
	samples   []float64     // latency: per-operation samples, ns
	sampleOps int           // latency: operations averaged in one sample
	cpu       time.Duration // idle: CPU time the blocked process used
}

// Sizes and shapes the cases use.
const (
	smallMsg   = 64
	bigMsg     = 8192
	typedTypes = 8
	typedDepth = 4 // messages of each type waiting in the typed case
	// streamBatch is the messages per call in the batch case, for
	// implementations with batch calls (usysv); the others go one by one.
	streamBatch = 32
	// asleepGap is how long a side of the "asleep" ping-pong pauses before
	// it posts, so that its partner has stopped spinning and sleeps in the
	// kernel. It is far above any bounded spin.
	asleepGap = 200 * time.Microsecond
)

// QueueBytes is the byte capacity both SysV implementations are meant to
// get for a stream of msgSize-byte messages: the kernel's default msgmnb
// (16 KiB, 256 messages of 64 bytes), and room for 8 messages of 8 KiB.
// What they get is queueBytes.
func QueueBytes(msgSize int) int { return max(16384, 8*msgSize) }

// queueBytes is the byte capacity both SysV implementations get: QueueBytes,
// or as much of it as this process may give a kernel queue (above msgmnb
// needs CAP_SYS_RESOURCE, which even root may lack), so that both sides
// of a stream case buffer the same number of messages. It asks the kernel
// once per size, with a queue of its own.
func queueBytes(msgSize int) int {
	want := QueueBytes(msgSize)
	if v, ok := kernelQbytes.Load(want); ok {
		return v.(int)
	}
	got := want
	if id, err := kernel.Msgget(kernel.IPC_PRIVATE, kernel.IPC_CREAT|0o600); err == nil {
		if err := sizeKernelQueue(id, want); err == nil {
			if ds, err := kernel.MsgctlStat(id); err == nil {
				got = min(want, int(ds.Qbytes))
			}
		}
		_ = kernel.MsgctlRemove(id)
	}
	kernelQbytes.Store(want, got)
	return got
}

var kernelQbytes sync.Map // QueueBytes → what a kernel queue got

var allImpls = []string{Usysv, Kernel, Unix, Pipe}
var sysvImpls = []string{Usysv, Kernel}

// Cases lists every case, in table order.
func Cases() []Case {
	return []Case{
		{Name: "sem/uncontended", Title: "sem P+V, uncontended", Kind: Latency, Impls: sysvImpls,
			batch: true, pilot: 2000, minOps: 1000, maxOps: 50_000_000, run: semLocal(1, 0)},
		{Name: "sem/undo", Title: "sem P+V, SEM_UNDO", Kind: Latency, Impls: sysvImpls,
			batch: true, pilot: 2000, minOps: 1000, maxOps: 50_000_000, run: semLocal(1, semUndo)},
		{Name: "sem/multi3", Title: "sem P+V, 3-op atomic array", Kind: Latency, Impls: sysvImpls,
			batch: true, pilot: 2000, minOps: 1000, maxOps: 50_000_000, run: semLocal(3, 0)},
		{Name: "sem/pingpong", Title: "sem ping-pong, 2 procs, waiter active", Kind: Latency, Impls: sysvImpls,
			pilot: 300, minOps: 200, maxOps: 300_000, run: semPingPong(0, false)},
		{Name: "sem/pingpong-pinned", Title: "sem ping-pong, 2 procs on own CPUs", Kind: Latency, Impls: sysvImpls,
			pilot: 300, minOps: 200, maxOps: 300_000, run: semPingPong(0, true)},
		{Name: "sem/pingpong-asleep", Title: "sem ping-pong, 2 procs, waiter asleep", Kind: Latency, Impls: sysvImpls,
			pilot: 10, minOps: 20, maxOps: 20_000, run: semPingPong(asleepGap, false)},
		{Name: "sem/idle-waiter", Title: "sem waiter blocked: CPU it uses", Kind: Idle, Impls: sysvImpls,
			pilot: 20, minOps: 100, maxOps: 2000, run: semIdle},
		{Name: "msg/sendrecv", Title: "msg send+recv 64 B, 1 proc", Kind: Latency, Impls: allImpls,
			batch: true, pilot: 2000, minOps: 1000, maxOps: 50_000_000, run: msgSendRecv},
		{Name: "msg/stream", Title: "msg stream 64 B, 1P→1C procs", Kind: Throughput, Impls: allImpls,
			pilot: 20000, minOps: 5000, maxOps: 100_000_000, run: msgStream(smallMsg, 1, 1, 0)},
		{Name: "msg/stream-batch", Title: "msg stream 64 B, 1P→1C, batches of 32", Kind: Throughput, Impls: sysvImpls,
			pilot: 20000, minOps: 5000, maxOps: 100_000_000, run: msgStream(smallMsg, 1, 1, streamBatch)},
		{Name: "msg/stream-2p2c", Title: "msg stream 64 B, 2P→2C procs", Kind: Throughput, Impls: allImpls,
			pilot: 20000, minOps: 5000, maxOps: 100_000_000, run: msgStream(smallMsg, 2, 2, 0)},
		{Name: "msg/typed", Title: "msg typed recv, 8 types queued", Kind: Latency, Impls: sysvImpls,
			batch: true, pilot: 2000, minOps: 1000, maxOps: 50_000_000, run: msgTyped},
		{Name: "msg/stream-8k", Title: "msg stream 8 KiB, 1P→1C procs", Kind: Throughput, Impls: allImpls,
			pilot: 2000, minOps: 500, maxOps: 10_000_000, run: msgStream(bigMsg, 1, 1, 0)},
		{Name: "msg/pingpong", Title: "msg ping-pong 64 B, 2 procs", Kind: Latency, Impls: allImpls,
			pilot: 300, minOps: 200, maxOps: 300_000, run: msgPingPong(false)},
		{Name: "msg/pingpong-pinned", Title: "msg ping-pong 64 B, 2 procs on own CPUs", Kind: Latency, Impls: sysvImpls,
			pilot: 300, minOps: 200, maxOps: 300_000, run: msgPingPong(true)},
		{Name: "msg/idle-receiver", Title: "msg receiver blocked: CPU it uses", Kind: Idle, Impls: sysvImpls,
			pilot: 20, minOps: 100, maxOps: 2000, run: msgIdle},
		{Name: "registry/get", Title: "get existing key (msgget)", Kind: Latency, Impls: sysvImpls,
			pilot: 200, minOps: 100, maxOps: 1_000_000, run: registryGet},
	}
}

const semUndo = 0x1000 // SEM_UNDO

// warmUp runs op a few times (page faults, undo structures, caches, the
// CPU's clock) before anything is timed.
func warmUp(n int, op func() error) error {
	for range min(max(n/10, 100), 10000) {
		if err := op(); err != nil {
			return err
		}
	}
	return nil
}

// semLocal is P then V on nsems semaphores in one semop each, in one
// process, with flags flg (0 or SEM_UNDO).
func semLocal(nsems int, flg int16) func(e *env, impl string, n, k int) (measurement, error) {
	return func(e *env, impl string, n, k int) (measurement, error) {
		si, err := semImpl(impl)
		if err != nil {
			return measurement{}, err
		}
		s, err := si.Create(nsems)
		if err != nil {
			return measurement{}, err
		}
		defer s.Remove()
		init, down, up := make([]Buf, nsems), make([]Buf, nsems), make([]Buf, nsems)
		for i := range nsems {
			init[i] = Buf{Num: uint16(i), Op: 1}
			down[i] = Buf{Num: uint16(i), Op: -1, Flg: flg}
			up[i] = Buf{Num: uint16(i), Op: 1, Flg: flg}
		}
		if err := s.Op(init); err != nil {
			return measurement{}, fmt.Errorf("semop init: %w", err)
		}
		op := func() error {
			if err := s.Op(down); err != nil {
				return fmt.Errorf("semop P: %w", err)
			}
			if err := s.Op(up); err != nil {
				return fmt.Errorf("semop V: %w", err)
			}
			return nil
		}
		if err := warmUp(n, op); err != nil {
			return measurement{}, err
		}
		return latencyLoop(e.timer, n, k, op)
	}
}

func msgSendRecv(e *env, impl string, n, k int) (measurement, error) {
	mi, err := msgImpl(impl)
	if err != nil {
		return measurement{}, err
	}
	ch, err := mi.Create(ChanOpts{MsgSize: smallMsg})
	if err != nil {
		return measurement{}, err
	}
	defer ch.Remove()
	a, err := ch.End(0)
	if err != nil {
		return measurement{}, err
	}
	defer a.Close()
	b, err := ch.End(1)
	if err != nil {
		return measurement{}, err
	}
	defer b.Close()
	msg, buf := bytes.Repeat([]byte{0xa5}, smallMsg), make([]byte, smallMsg)
	op := func() error {
		if err := a.Send(1, msg); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		got, err := b.Recv(buf, 0)
		if err != nil {
			return fmt.Errorf("recv: %w", err)
		}
		if got != smallMsg {
			return fmt.Errorf("recv: %d bytes, want %d", got, smallMsg)
		}
		return nil
	}
	if err := warmUp(n, op); err != nil {
		return measurement{}, err
	}
	return latencyLoop(e.timer, n, k, op)
}

// msgTyped keeps typedDepth messages of each of typedTypes types queued,
// interleaved 1, 2, ..., 8, 1, 2, ...; each operation sends one message
// and receives one of the type sent four operations ago, which sits in the
// middle of the queue.
func msgTyped(e *env, impl string, n, k int) (measurement, error) {
	mi, err := msgImpl(impl)
	if err != nil {
		return measurement{}, err
	}
	if !mi.Typed() {
		return measurement{}, errors.New("transport has no message types")
	}
	ch, err := mi.Create(ChanOpts{MsgSize: smallMsg})
	if err != nil {
		return measurement{}, err
	}
	defer ch.Remove()
	q, err := ch.End(0)
	if err != nil {
		return measurement{}, err
	}
	defer q.Close()
	msg, buf := bytes.Repeat([]byte{0xa5}, smallMsg), make([]byte, smallMsg)
	for range typedDepth {
		for t := range typedTypes {
			if err := q.Send(int64(1+t), msg); err != nil {
				return measurement{}, fmt.Errorf("send: %w", err)
			}
		}
	}
	i := 0
	op := func() error {
		send, want := int64(1+i%typedTypes), int64(1+(i+typedTypes/2)%typedTypes)
		i++
		if err := q.Send(send, msg); err != nil {
			return fmt.Errorf("send type %d: %w", send, err)
		}
		if _, err := q.Recv(buf, want); err != nil {
			return fmt.Errorf("recv type %d: %w", want, err)
		}
		return nil
	}
	if err := warmUp(n, op); err != nil {
		return measurement{}, err
	}
	return latencyLoop(e.timer, n, k, op)
}

func registryGet(e *env, impl string, n, k int) (measurement, error) {
	mi, err := msgImpl(impl)
	if err != nil {
		return measurement{}, err
	}
	lk, ok := mi.(Looker)
	if !ok {
		return measurement{}, errors.New("implementation has no lookup by key")
	}
	l, err := lk.NewLookup()
	if err != nil {
		return measurement{}, err
	}
	defer l.Remove()
	if err := warmUp(n, l.Get); err != nil {
		return measurement{}, err
	}
	return latencyLoop(e.timer, n, k, l.Get)
}

// pingWarm is the number of untimed round trips before a ping-pong.
func pingWarm(n int, gap time.Duration) int {
	if gap > 0 {
		return 5
	}
	return min(max(n/10, 50), 2000)
}

// semPingPong is a round trip between two helper processes on a set of two
// semaphores: the pinger posts 0 and waits on 1, the ponger waits on 0 and
// posts 1. With gap > 0 each side pauses for gap before it posts, so the
// other is asleep when the post arrives; the ponger's pauses are taken off
// the pinger's round trips (the pinger's own pause is outside them). With
// pinned, the pinger runs on CPU 0 and the ponger on CPU 1 only, so both
// are active at once (neither can take the other's CPU).
func semPingPong(gap time.Duration, pinned bool) func(e *env, impl string, n, k int) (measurement, error) {
	return func(e *env, impl string, n, k int) (measurement, error) {
		s, g, done, err := semRun(e, impl, 2)
		if err != nil {
			return measurement{}, err
		}
		defer done()
		j := job{Impl: impl, Ref: s.Ref(), N: n, Warm: pingWarm(n, gap), Gap: gap}
		j.Role, j.CPU = roleSemPong, pinCPU(pinned, 1)
		pong, err := g.start(e, j, nil)
		if err != nil {
			return measurement{}, err
		}
		j.Role, j.CPU = roleSemPing, pinCPU(pinned, 0)
		ping, err := g.start(e, j, nil)
		if err != nil {
			return measurement{}, err
		}
		return pingResult(e, g, ping, pong, n, gap > 0)
	}
}

// msgPingPong is a 64-byte round trip between two helper processes: the
// pinger (side 0) sends type 1 and receives type 2, the ponger (side 1)
// receives type 1 and answers with type 2; pinned as in semPingPong.
func msgPingPong(pinned bool) func(e *env, impl string, n, k int) (measurement, error) {
	return func(e *env, impl string, n, k int) (measurement, error) {
		return msgPingPongRun(e, impl, n, pinned)
	}
}

// pinCPU is the job's CPU field for a ping-pong side: 1 + the CPU when
// pinned (on a one-CPU machine both sides share CPU 0).
func pinCPU(pinned bool, cpu int) int {
	if !pinned {
		return 0
	}
	return cpu%runtime.NumCPU() + 1
}

func msgPingPongRun(e *env, impl string, n int, pinned bool) (measurement, error) {
	_, ch, g, done, err := chanRun(e, impl, smallMsg)
	if err != nil {
		return measurement{}, err
	}
	defer done()
	j := job{Impl: impl, Ref: ch.Ref(), N: n, Warm: pingWarm(n, 0), Size: smallMsg}
	j.Role, j.Side, j.CPU = roleMsgPong, 1, pinCPU(pinned, 1)
	pong, err := g.start(e, j, ch.Files(1))
	if err != nil {
		return measurement{}, err
	}
	j.Role, j.Side, j.CPU = roleMsgPing, 0, pinCPU(pinned, 0)
	ping, err := g.start(e, j, ch.Files(0))
	if err != nil {
		return measurement{}, err
	}
	return pingResult(e, g, ping, pong, n, false)
}

func pingResult(e *env, g *group, ping, pong *proc, n int, gaps bool) (measurement, error) {
	e.timer.StartTimer() // includes the helpers' start-up: only for b.N's growth
	rp, err := g.next(ping)
	e.timer.StopTimer()
	if err != nil {
		return measurement{}, err
	}
	ro, err := g.next(pong)
	if err != nil {
		return measurement{}, err
	}
	if err := g.finish(); err != nil {
		return measurement{}, err
	}
	if len(rp.Samples) != n || (gaps && len(ro.Gaps) != n) {
		return measurement{}, fmt.Errorf("helpers timed %d round trips and %d pauses, want %d", len(rp.Samples), len(ro.Gaps), n)
	}
	m := measurement{ops: n, sampleOps: 1, samples: make([]float64, n)}
	var busy time.Duration
	for i, s := range rp.Samples {
		d := time.Duration(s)
		busy += d
		if gaps {
			d -= time.Duration(ro.Gaps[i])
			busy += time.Duration(ro.Gaps[i]) // the pinger's own pause, about the same
		}
		m.samples[i] = float64(max(d, 0))
		m.elapsed += max(d, 0)
	}
	m.wall = busy
	return m, nil
}

// msgStream streams messages of size bytes from producers to consumers,
// each in its own helper process, after an untimed warm-up, batch messages
// per call where the implementation has batch calls. The driver times from
// telling them to go until the last consumer has its share.
func msgStream(size, producers, consumers, batch int) func(e *env, impl string, n, k int) (measurement, error) {
	return func(e *env, impl string, n, k int) (measurement, error) {
		_, ch, g, done, err := chanRun(e, impl, size)
		if err != nil {
			return measurement{}, err
		}
		defer done()
		unit := producers * consumers
		n = (n + unit - 1) / unit * unit
		warm := (min(max(n/10, 1000), 20000) + unit - 1) / unit * unit
		var cons, prods []*proc
		for range consumers {
			p, err := g.start(e, job{Role: roleConsume, Impl: impl, Ref: ch.Ref(), Side: 1,
				N: n / consumers, Warm: warm / consumers, Size: size, Batch: batch}, ch.Files(1))
			if err != nil {
				return measurement{}, err
			}
			cons = append(cons, p)
		}
		for range producers {
			p, err := g.start(e, job{Role: roleProduce, Impl: impl, Ref: ch.Ref(), Side: 0,
				N: n / producers, Warm: warm / producers, Size: size, Batch: batch}, ch.Files(0))
			if err != nil {
				return measurement{}, err
			}
			prods = append(prods, p)
		}
		if err := g.ready(append(cons, prods...)...); err != nil {
			return measurement{}, err
		}
		e.timer.StartTimer()
		start := time.Now()
		if err := g.goAll(append(cons, prods...)...); err != nil {
			return measurement{}, err
		}
		for _, p := range cons {
			if _, err := g.next(p); err != nil {
				return measurement{}, err
			}
		}
		elapsed := time.Since(start)
		e.timer.StopTimer()
		for _, p := range prods {
			if _, err := g.next(p); err != nil {
				return measurement{}, err
			}
		}
		if err := g.finish(); err != nil {
			return measurement{}, err
		}
		return measurement{ops: n, elapsed: elapsed, wall: elapsed}, nil
	}
}

// semRun makes what a cross-process semaphore case needs: a set of nsems
// semaphores on impl and a group for its helpers. done stops the helpers,
// then removes the set.
func semRun(e *env, impl string, nsems int) (SemSet, *group, func(), error) {
	si, err := semImpl(impl)
	if err != nil {
		return nil, nil, nil, err
	}
	s, err := si.Create(nsems)
	if err != nil {
		return nil, nil, nil, err
	}
	g := e.newGroup(e.timeout)
	return s, g, func() { g.stop(); _ = s.Remove() }, nil
}

// chanRun is semRun for a message case: a channel on impl for messages of
// up to size bytes.
func chanRun(e *env, impl string, size int) (MsgImpl, Chan, *group, func(), error) {
	mi, err := msgImpl(impl)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	ch, err := mi.Create(ChanOpts{MsgSize: size})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	g := e.newGroup(e.timeout)
	return mi, ch, g, func() { g.stop(); _ = ch.Remove() }, nil
}

// semIdle blocks a helper process in a P on a semaphore at 0 for n
// milliseconds and reports the CPU time the helper used meanwhile, once
// the call was asleep (idleResult); then it posts the semaphore.
func semIdle(e *env, impl string, n, k int) (measurement, error) {
	s, g, done, err := semRun(e, impl, 1)
	if err != nil {
		return measurement{}, err
	}
	defer done()
	p, err := g.start(e, job{Role: roleSemIdle, Impl: impl, Ref: s.Ref()}, nil)
	if err != nil {
		return measurement{}, err
	}
	return idleResult(e, g, p, n, func() error { return s.Op([]Buf{{Num: 0, Op: 1}}) })
}

// msgIdle is semIdle for a receiver on an empty queue: the driver sends
// it one message after n milliseconds.
func msgIdle(e *env, impl string, n, k int) (measurement, error) {
	mi, ch, g, done, err := chanRun(e, impl, smallMsg)
	if err != nil {
		return measurement{}, err
	}
	defer done()
	ep, err := mi.Open(ch.Ref(), 0, ch.Files(0))
	if err != nil {
		return measurement{}, err
	}
	defer ep.Close()
	p, err := g.start(e, job{Role: roleMsgIdle, Impl: impl, Ref: ch.Ref(), Side: 1, Size: smallMsg}, ch.Files(1))
	if err != nil {
		return measurement{}, err
	}
	msg := make([]byte, smallMsg)
	return idleResult(e, g, p, n, func() error { return ep.Send(1, msg) })
}

// idleResult waits until helper p is about to block, then measures the CPU
// time the helper's process uses while it sleeps in the call: its process
// CPU clock, read from here idleSettle after the helper's word and again n
// milliseconds later, so that the helper itself does nothing in between
// (blockIdle). Then it asks the helper whether the call still blocks,
// releases it with release and returns the measurement.
func idleResult(e *env, g *group, p *proc, n int, release func() error) (measurement, error) {
	if err := g.ready(p); err != nil {
		return measurement{}, err
	}
	e.timer.StartTimer()
	if err := g.sleep(idleSettle); err != nil {
		return measurement{}, err
	}
	cpu0, err := helperCPU(g, p)
	if err != nil {
		return measurement{}, err
	}
	t0 := time.Now()
	if err := g.sleep(time.Duration(n) * time.Millisecond); err != nil {
		return measurement{}, err
	}
	cpu1, err := helperCPU(g, p)
	wall := time.Since(t0)
	if err != nil {
		return measurement{}, err
	}
	if err := g.goAll(p); err != nil {
		return measurement{}, err
	}
	_, err = g.next(p) // the call still blocks
	e.timer.StopTimer()
	if err != nil {
		return measurement{}, err
	}
	if err := release(); err != nil {
		return measurement{}, fmt.Errorf("release the blocked helper: %w", err)
	}
	if _, err := g.next(p); err != nil {
		return measurement{}, err
	}
	if err := g.finish(); err != nil {
		return measurement{}, err
	}
	return measurement{ops: n, elapsed: wall, wall: wall, cpu: cpu1 - cpu0}, nil
}

// helperCPU reads helper p's process CPU clock. A helper that has exited
// has no clock (and its pid may name another process once reaped, so the
// read holds off the reaping): that is its early exit, not the clock's
// error.
func helperCPU(g *group, p *proc) (time.Duration, error) {
	p.reap.Lock()
	if p.reaped {
		p.reap.Unlock()
		<-p.exited
		return 0, p.exitedEarly()
	}
	d, err := kernel.ProcessCPUTime(p.cmd.Process.Pid)
	p.reap.Unlock()
	if err != nil {
		select {
		case <-p.exited:
			return 0, p.exitedEarly()
		case <-time.After(time.Second):
		}
		return 0, fmt.Errorf("CPU time of helper %s: %w", p.role, err)
	}
	return d, nil
}

// supports reports whether c runs on impl.
func (c Case) supports(impl string) bool {
	for _, i := range c.Impls {
		if i == impl {
			return true
		}
	}
	return false
}

// Group is the part of the name before the slash: sem, msg or registry.
func (c Case) Group() string {
	g, _, _ := strings.Cut(c.Name, "/")
	return g
}
