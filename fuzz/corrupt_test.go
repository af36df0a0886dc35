package fuzz

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/msgq"
	"github.com/usysv/usysv/registry"
	"github.com/usysv/usysv/sem"
	"github.com/usysv/usysv/shm"
)

// FuzzCorruptSem and FuzzCorruptMsg attack a live object's shared state the
// way a buggy or hostile process that can map it would: the target maps the
// object's segment itself (shm.Map with the registry's namespace) and writes
// fuzz bytes at fuzz-chosen offsets of the waiter table, the body and the
// header's mutable words (state, permissions, dead generation, ctime,
// qbytes: everything but the robust lock, whose forged live owner makes
// everyone wait by design), while up to three goroutines run operations on
// it through a handle: every one non-blocking or with a timeout of at most
// a few hundred microseconds.
//
// Every call must return within callTimeout, with nil, an errno or
// ErrCorrupt; nothing may panic (memory faults are turned into panics, so
// an access outside the mapping is caught too); returned lengths and
// counts must fit the caller's buffers. Afterwards IPC_RMID through the
// registry must still work.
//
// The program: a setup byte (set size / messages to send), the number of
// concurrent goroutines and their op lists, then steps until the input
// ends: an even step byte is a write (see corruptWrite), an odd one an
// operation in the main goroutine.
func FuzzCorruptSem(f *testing.F) {
	keepCrashReports(f)
	f.Fuzz(func(t *testing.T, data []byte) { runCorrupt(t, data, shm.KindSem) })
}

// FuzzCorruptMsg: see FuzzCorruptSem.
func FuzzCorruptMsg(f *testing.F) {
	keepCrashReports(f)
	f.Fuzz(func(t *testing.T, data []byte) { runCorrupt(t, data, shm.KindMsg) })
}

// A corruptOp runs one operation and checks what it returned: a badResult
// error means the library broke a rule even a corrupt object must keep.
type corruptOp struct {
	name string
	run  func() error
}

type badResult struct{ msg string }

func (b *badResult) Error() string { return b.msg }

func bad(format string, a ...any) error { return &badResult{fmt.Sprintf(format, a...)} }

// corruptObj is the object under attack.
type corruptObj interface {
	decodeOp(p *prog) corruptOp
	// anchor is an offset in the segment near live data (a message's text,
	// the semaphore words), for writes that should hit something in use.
	anchor(seg *shm.Segment, p *prog) uint64
	// constrain undoes, after a write at [off, off+n), what would hit an
	// open finding (FINDINGS.md) instead of something new.
	constrain(seg *shm.Segment, off, n uint64)
	close()
}

var corruptSem = [5]int{1, 2, 3, 5, 8}

func runCorrupt(t *testing.T, data []byte, kind shm.Kind) {
	requireRoot(t)
	defer guard(t, corpusEntry(data))()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	p := &prog{b: data}
	setup := p.u8()

	c, err := registry.Default()
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	var id int
	var obj corruptObj
	switch kind {
	case shm.KindSem:
		id, obj = newCorruptSem(t, corruptSem[int(setup)%len(corruptSem)], p)
	default:
		id, obj = newCorruptMsg(t, int(setup%8), p)
	}
	seg, err := shm.Map(id, kind, c.Namespace())
	if err != nil {
		t.Fatalf("shm.Map: %v", err)
	}
	defer func() {
		tampered := headerTampered(seg)
		_ = seg.Close()
		obj.close()
		// The registry must still remove the object; the kernel segment is
		// removed directly as well, in case a forged state word made the
		// registry think it gone already.
		bounded(t, "IPC_RMID of the corrupted object", func() error {
			err := c.Remove(kind, id)
			if err != nil && !tampered {
				return err
			}
			return nil
		})
		_ = kernel.ShmctlRemove(id)
	}()

	var tr trace
	nworkers := int(p.u8() % 4)
	lists := make([][]corruptOp, nworkers)
	for w := range lists {
		n := 1 + int(p.u8()%6)
		for i := 0; i < n; i++ {
			lists[w] = append(lists[w], obj.decodeOp(p))
		}
		tr.add("worker %d loops over %s", w, opNames(lists[w]))
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	failures := make(chan string, nworkers+1)
	for w, ops := range lists {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
			for i := 0; !stop.Load(); i++ {
				op := ops[i%len(ops)]
				if msg, _ := runChecked(op); msg != "" {
					failures <- fmt.Sprintf("worker %d: %s", w, msg)
					return
				}
				if i%len(ops) == len(ops)-1 {
					runtime.Gosched()
				}
			}
		}()
	}

	fail := func(format string, a ...any) {
		stop.Store(true)
		waitWorkers(t, &wg, data)
		t.Fatalf(format+"\nprogram:\n%s", append(a, &tr)...)
	}
	for n := 0; n < maxSteps && p.more(); n++ {
		select {
		case msg := <-failures:
			fail("%s", msg)
		default:
		}
		if s := p.u8(); s%2 == 0 {
			tr.add("%s", corruptWrite(seg, obj, p))
		} else {
			op := obj.decodeOp(p)
			msg, res := runChecked(op)
			tr.add("%s -> %s", op.name, res)
			if msg != "" {
				fail("%s", msg)
			}
		}
		if nworkers > 0 {
			runtime.Gosched()
		}
	}
	stop.Store(true)
	if testing.Verbose() && os.Getenv("USYSV_FUZZ_TRACE") == "1" {
		t.Logf("program:\n%s", &tr)
	}
	if !waitWorkers(t, &wg, data) {
		t.Fatalf("a worker did not finish its operation within %v\nprogram:\n%s", 2*callTimeout, &tr)
	}
	select {
	case msg := <-failures:
		t.Fatalf("%s\nprogram:\n%s", msg, &tr)
	default:
	}
}

// runChecked runs op, turning a panic, a call slower than callTimeout, an
// error that is neither an errno nor ErrCorrupt, and a badResult into a
// failure message.
func runChecked(op corruptOp) (msg, res string) {
	defer func() {
		if r := recover(); r != nil {
			msg = fmt.Sprintf("%s panicked: %v\n%s", op.name, r, debug.Stack())
			keepPanic(msg)
		}
	}()
	start := time.Now()
	err := op.run()
	if d := time.Since(start); d > callTimeout {
		return fmt.Sprintf("%s took %v", op.name, d), ""
	}
	var b *badResult
	var e kernel.Errno
	switch {
	case errors.As(err, &b):
		return fmt.Sprintf("%s: %v", op.name, err), ""
	case errors.Is(err, shm.ErrCorrupt):
		return "", "ErrCorrupt"
	case err == nil, errors.As(err, &e):
		return "", errno(err)
	}
	return fmt.Sprintf("%s: an error that is neither an errno nor ErrCorrupt: %v", op.name, err), ""
}

// waitWorkers waits for the workers; if they do not finish in time it
// writes every goroutine's stack, and the input, under /tmp/fuzz-findings/
// and reports false. The input is kept because the fuzzing engine drops a
// failure that happens while it minimizes an input for coverage, and that
// is where stuck workers were seen (FINDINGS.md F14, formerly U3).
func waitWorkers(t *testing.T, wg *sync.WaitGroup, data []byte) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(2 * callTimeout):
		buf := make([]byte, 1<<22)
		buf = buf[:runtime.Stack(buf, true)]
		path := filepath.Join("/tmp/fuzz-findings", fmt.Sprintf("stuck-%s-%d-%d.stacks", strings.ReplaceAll(t.Name(), "/", "_"), os.Getpid(), time.Now().Unix()))
		_ = os.MkdirAll(filepath.Dir(path), 0o755)
		_ = os.WriteFile(path, buf, 0o644)
		_ = os.WriteFile(strings.TrimSuffix(path, ".stacks")+".input", []byte(corpusEntry(data)), 0o644)
		t.Logf("stacks of the stuck workers: %s", path)
		return false
	}
}

// keepPanic writes the report of a panic that runChecked recovered under
// /tmp/fuzz-findings/, at once: a panic inside a critical section leaves
// the segment lock held by this process, so the other workers then hang,
// and the fuzzing engine drops the whole execution without a report while
// it minimizes an input (FINDINGS.md F14, F15: formerly U3, U2).
func keepPanic(msg string) {
	path := filepath.Join("/tmp/fuzz-findings", fmt.Sprintf("panic-%d-%d.txt", os.Getpid(), time.Now().UnixNano()))
	_ = os.MkdirAll(filepath.Dir(path), 0o755)
	_ = os.WriteFile(path, []byte(msg), 0o644)
}

func opNames(ops []corruptOp) string {
	names := make([]string, len(ops))
	for i, o := range ops {
		names[i] = o.name
	}
	return "[" + strings.Join(names, ", ") + "]"
}

// headerTampered reports whether the header's state word no longer says
// live, which may make the registry refuse IPC_RMID.
func headerTampered(seg *shm.Segment) bool { return seg.State() != shm.StateLive }

// The mutable header words a write may hit (shm/layout.go), not the lock.
var corruptHeaderWords = [...]struct {
	off   uint64
	width int
}{{128, 4}, {132, 4}, {136, 4}, {140, 4}, {144, 4}, {148, 4}, {152, 8}, {160, 8}}

var corruptValues = [16]uint64{0, 1, 2, 3, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32, 1<<63 - 1, 1 << 63,
	^uint64(0), 0xFFFF, 0x10000, 127, 128, 24}

// corruptWrite decodes and performs one write: a region byte (0 waiter
// table, 1-2 body, 3 near live data, 4 a mutable header word; from a u16
// or u24 offset), a width/value byte (width 1, 2, 4 or 8; the value from
// the input, a small number, all ones or a table of edge values; aligned
// to its width unless bit 4 says otherwise).
func corruptWrite(seg *shm.Segment, obj corruptObj, p *prog) string {
	prm := seg.Params()
	wt, body := uint64(shm.HeaderSize), prm.BodyOffset()
	size := prm.Size()
	r := p.u8()
	var off uint64
	var region string
	switch r % 5 {
	case 0:
		region = "waiters"
		off = wt + pickOffset(p, body-wt)
	case 1, 2:
		region = "body"
		off = body + pickOffset(p, size-body)
	case 3:
		region = "live"
		off = obj.anchor(seg, p)
	case 4:
		w := corruptHeaderWords[p.u8()%uint8(len(corruptHeaderWords))]
		v := corruptValues[p.u8()%16]
		if p.u8()&1 == 0 {
			v = uint64(p.u8())
		}
		if w.off == 132 {
			// An odd permSeq means "being written": every call then waits
			// up to shm's permWait (~100 ms, bounded by design) for it to
			// turn even, often holding the lock, which slows this target a
			// thousandfold for nothing new. Keep it even.
			v &^= 1
		}
		b, err := seg.Bytes(w.off, uint64(w.width))
		if err != nil {
			return fmt.Sprintf("write header+%d: %v", w.off, err)
		}
		putWidth(b, v)
		return fmt.Sprintf("write header word %d = %#x", w.off, v)
	}
	wv := p.u8()
	width := []uint64{1, 2, 4, 8}[wv%4]
	if wv&16 == 0 {
		off &^= width - 1
	}
	var v uint64
	switch wv >> 2 & 3 {
	case 0:
		v = binary.LittleEndian.Uint64([]byte{p.u8(), p.u8(), p.u8(), p.u8(), p.u8(), p.u8(), p.u8(), p.u8()})
	case 1:
		v = uint64(p.u8())
	case 2:
		v = ^uint64(0)
	case 3:
		v = corruptValues[p.u8()%16]
	}
	if off < wt || off+width > size {
		return fmt.Sprintf("write %s: offset %d out of range, skipped", region, off)
	}
	b, err := seg.Bytes(off, width)
	if err != nil {
		return fmt.Sprintf("write %s+%d: %v", region, off, err)
	}
	putWidth(b, v)
	obj.constrain(seg, off, width)
	return fmt.Sprintf("write %s: [%d] (%d bytes) = %#x", region, off, width, v)
}

func putWidth(b []byte, v uint64) {
	var tmp [8]byte
	binary.LittleEndian.PutUint64(tmp[:], v)
	copy(b, tmp[:len(b)])
}

// pickOffset: a u8 (the first bytes are the busiest), a u16, or a u24,
// modulo n.
func pickOffset(p *prog, n uint64) uint64 {
	if n == 0 {
		return 0
	}
	var v uint64
	switch m := p.u8(); m % 4 {
	case 0, 1:
		v = uint64(p.u8())
	case 2:
		v = uint64(p.u16())
	case 3:
		v = uint64(p.u16()) | uint64(p.u8())<<16
	}
	return v % n
}

// Semaphore sets.

type corruptSemObj struct {
	h     *sem.Array
	nsems int
}

func newCorruptSem(t *testing.T, nsems int, p *prog) (int, corruptObj) {
	id, err := sem.Get(sem.IPC_PRIVATE, nsems, 0o600)
	if err != nil {
		setupFailed(t, "sem.Get", err)
	}
	h, err := sem.OpenID(id)
	if err != nil {
		_ = removeSemByID(id)
		t.Fatalf("sem.OpenID: %v", err)
	}
	o := &corruptSemObj{h: h, nsems: nsems}
	// Some state to corrupt: values, sempids, an undo record.
	vals := make([]uint16, nsems)
	for i := range vals {
		vals[i] = uint16(p.u8() % 8)
	}
	_ = h.SetAll(vals)
	_ = h.TryOp(sem.Buf{Num: 0, Op: 1, Flg: sem.SEM_UNDO})
	_ = h.TryOp(sem.Buf{Num: uint16(nsems - 1), Op: -1, Flg: sem.SEM_UNDO})
	return id, o
}

func (o *corruptSemObj) close() {
	_ = o.h.Close()
}

// constrain: nothing. (It cleared PENDING in the state words a write
// touched, while a forged in-flight SEM_UNDO intent hung every call on the
// semaphore: FINDINGS.md F5, fixed in 98df088.)
func (o *corruptSemObj) constrain(*shm.Segment, uint64, uint64) {}

func (o *corruptSemObj) anchor(seg *shm.Segment, p *prog) uint64 {
	// The state words start 128 bytes into the body (sem/layout.go);
	// shadows and the journal follow.
	return seg.Params().BodyOffset() + 128 + uint64(p.u8())%(uint64(o.nsems)*24+64)
}

func (o *corruptSemObj) decodeOp(p *prog) corruptOp {
	h, n := o.h, o.nsems
	ops := func() []sem.Buf {
		k := 1 + int(p.u8()%3)
		b := make([]sem.Buf, k)
		for i := range b {
			b[i] = decodeSemOp(p, n)
		}
		return b
	}
	num := func() int { return int(p.u8()) % (n + 1) }
	switch c := p.u8() % 12; c {
	case 0, 1:
		b := ops()
		return corruptOp{fmt.Sprintf("TryOp %v", b), func() error { return h.TryOp(b...) }}
	case 2:
		b := ops()
		d := []time.Duration{0, 10 * time.Microsecond, 200 * time.Microsecond}[p.u8()%3]
		return corruptOp{fmt.Sprintf("TimedOp(%v) %v", d, b), func() error { return h.TimedOp(d, b...) }}
	case 3:
		b := ops()
		return corruptOp{fmt.Sprintf("Op(ctx 300µs) %v", b), func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Microsecond)
			defer cancel()
			return h.Op(ctx, b...)
		}}
	case 4, 5, 6, 7:
		k := num()
		name := [...]string{"GetVal", "GetPid", "GetNcnt", "GetZcnt"}[c-4]
		f := [...]func(int) (int, error){h.GetVal, h.GetPid, h.GetNcnt, h.GetZcnt}[c-4]
		return corruptOp{fmt.Sprintf("%s(%d)", name, k), func() error {
			v, err := f(k)
			if err == nil && v < 0 {
				return bad("%s(%d) = %d", name, k, v)
			}
			return err
		}}
	case 8:
		return corruptOp{"GetAll", func() error {
			v, err := h.GetAll()
			if err == nil && len(v) != n {
				return bad("GetAll returned %d values for %d semaphores", len(v), n)
			}
			return err
		}}
	case 9:
		k, v := num(), int(p.u8()%8)
		return corruptOp{fmt.Sprintf("SetVal(%d, %d)", k, v), func() error { return h.SetVal(k, v) }}
	case 10:
		vals := make([]uint16, n)
		for i := range vals {
			vals[i] = uint16(p.u8() % 8)
		}
		return corruptOp{fmt.Sprintf("SetAll %v", vals), func() error { return h.SetAll(vals) }}
	}
	return corruptOp{"Stat", func() error {
		ds, err := h.Stat()
		if err == nil && ds.Nsems != n {
			return bad("Stat says %d semaphores, the set has %d", ds.Nsems, n)
		}
		return err
	}}
}

// Message queues.

type corruptMsgObj struct {
	q      *msgq.Queue
	marker []byte
}

func newCorruptMsg(t *testing.T, nmsgs int, p *prog) (int, corruptObj) {
	id, err := msgq.Get(msgq.IPC_PRIVATE, 0o600)
	if err != nil {
		setupFailed(t, "msgq.Get", err)
	}
	q, err := msgq.OpenID(id)
	if err != nil {
		_ = msgqRemove(id)
		t.Fatalf("msgq.OpenID: %v", err)
	}
	o := &corruptMsgObj{q: q, marker: []byte(fmt.Sprintf("\x00mark%03d", nmsgs))}
	for i := 0; i < nmsgs; i++ {
		text := append(append([]byte(nil), o.marker...), bytes.Repeat([]byte{byte(i)}, msgSize(p.u8()))...)
		_ = q.TrySend(1+int64(i%3), text)
	}
	return id, o
}

func (o *corruptMsgObj) close() {
	_ = o.q.Close()
}

func (o *corruptMsgObj) constrain(*shm.Segment, uint64, uint64) {}

// anchor finds the k-th copy of the marker the setup messages start with
// (their texts; the 24-byte message header is just before) and returns an
// offset around it; with no message left, the start of the body.
func (o *corruptMsgObj) anchor(seg *shm.Segment, p *prog) uint64 {
	prm := seg.Params()
	k, delta := int(p.u8()%8), int64(p.u8())-64
	all, err := seg.Bytes(0, prm.Size())
	if err != nil {
		return prm.BodyOffset()
	}
	// Look only where messages live: from the body on, not too far (the
	// store allocates from the front).
	from := int(prm.BodyOffset())
	limit := min(len(all), from+1<<20)
	pos := -1
	for i := 0; i <= k; i++ {
		j := bytes.Index(all[from:limit], o.marker)
		if j < 0 {
			break
		}
		pos = from + j
		from = pos + 1
	}
	if pos < 0 {
		return prm.BodyOffset() + uint64(p.u8())
	}
	return uint64(max(int64(pos)+delta, int64(shm.HeaderSize)))
}

func (o *corruptMsgObj) decodeOp(p *prog) corruptOp {
	q := o.q
	mtype := func() int64 { return 1 + int64(p.u8()%4) }
	msgtyp := func() int64 { return int64(p.u8()%9) - 4 }
	flags := func() int {
		f, fl := p.u8(), 0
		if f&1 != 0 {
			fl |= msgq.MSG_NOERROR
		}
		if f&2 != 0 {
			fl |= msgq.MSG_EXCEPT
		}
		if f&4 != 0 {
			fl |= msgq.MSG_COPY | msgq.IPC_NOWAIT
		}
		return fl
	}
	recvCheck := func(name string, buf []byte, n int, err error) error {
		if err == nil && (n < 0 || n > len(buf)) {
			return bad("%s returned %d bytes into a %d-byte buffer", name, n, len(buf))
		}
		return err
	}
	switch c := p.u8() % 10; c {
	case 0, 1:
		t, size := mtype(), msgSize(p.u8())
		return corruptOp{fmt.Sprintf("TrySend type=%d size=%d", t, size), func() error {
			return q.TrySend(t, make([]byte, size))
		}}
	case 2, 3:
		size, typ, fl := msgSize(p.u8()), msgtyp(), flags()
		name := fmt.Sprintf("TryRecv bufsize=%d msgtyp=%d flags=%s", size, typ, msgFlagString(fl))
		return corruptOp{name, func() error {
			buf := make([]byte, size)
			n, _, err := q.TryRecv(buf, typ, fl)
			return recvCheck(name, buf, n, err)
		}}
	case 4:
		t, size := mtype(), msgSize(p.u8())
		return corruptOp{fmt.Sprintf("Send(ctx 300µs) type=%d size=%d", t, size), func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Microsecond)
			defer cancel()
			return q.Send(ctx, t, make([]byte, size))
		}}
	case 5:
		size, typ, fl := msgSize(p.u8()), msgtyp(), flags()&^(msgq.MSG_COPY|msgq.IPC_NOWAIT)
		name := fmt.Sprintf("Recv(ctx 300µs) bufsize=%d msgtyp=%d flags=%s", size, typ, msgFlagString(fl))
		return corruptOp{name, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Microsecond)
			defer cancel()
			buf := make([]byte, size)
			n, _, err := q.Recv(ctx, buf, typ, fl)
			return recvCheck(name, buf, n, err)
		}}
	case 6:
		return corruptOp{"Stat", func() error { _, err := q.Stat(); return err }}
	case 7:
		return corruptOp{"Check", func() error { return q.Check() }}
	case 8:
		k := 1 + int(p.u8()%3)
		msgs := make([]msgq.Msg, k)
		for i := range msgs {
			msgs[i] = msgq.Msg{Type: mtype(), Data: make([]byte, msgSize(p.u8()))}
		}
		return corruptOp{fmt.Sprintf("TrySendBatch %d", k), func() error {
			n, err := q.TrySendBatch(msgs)
			if n < 0 || n > k {
				return bad("TrySendBatch of %d sent %d", k, n)
			}
			return err
		}}
	}
	k, typ, fl := 1+int(p.u8()%3), msgtyp(), flags()&^(msgq.MSG_COPY|msgq.IPC_NOWAIT)
	sizes := make([]int, k)
	for i := range sizes {
		sizes[i] = msgSize(p.u8())
	}
	return corruptOp{fmt.Sprintf("TryRecvBatch %v msgtyp=%d flags=%s", sizes, typ, msgFlagString(fl)), func() error {
		msgs := make([]msgq.Msg, k)
		for i := range msgs {
			msgs[i].Data = make([]byte, sizes[i])
		}
		n, err := q.TryRecvBatch(msgs, typ, fl)
		if n < 0 || n > k {
			return bad("TryRecvBatch into %d received %d", k, n)
		}
		for i := 0; i < n; i++ {
			if msgs[i].N < 0 || msgs[i].N > len(msgs[i].Data) {
				return bad("TryRecvBatch: message %d has %d bytes in a %d-byte buffer", i, msgs[i].N, len(msgs[i].Data))
			}
		}
		return err
	}}
}
