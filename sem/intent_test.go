package sem

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/usysv/usysv/internal/testutil"
)

// within runs f and fails the test if it has not returned within lineWait
// (it would hang for ever otherwise); then it runs unstick, so that the
// stuck call and the test's clean-up can finish, and waits for f.
func within(t *testing.T, what string, f func() error, unstick func()) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lineWait)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		unstick()
		<-done
		t.Fatalf("%s did not return within %v", what, lineWait)
		return nil
	}
}

// clearIntents is within's unstick for a forged SEM_UNDO intent: it
// clears every intent of h's set.
func clearIntents(h *Array) func() {
	return func() {
		for i := range h.v.words {
			w := &h.v.words[i]
			for o := w.Load(); o&flagPending != 0 && !w.CompareAndSwap(o, o&^intentMask); o = w.Load() {
			}
		}
	}
}

// Fuzz finding F5: a forged in-flight SEM_UNDO intent naming this (live)
// process's record made the lock holder wait for ever, holding the lock.
// It is dropped: no op of ours is in flight on it.
func TestForgedIntentOwnRecord(t *testing.T) {
	id := usysvImpl.create(t, 3, 0o600)
	h, err := OpenID(id)
	require.NoError(t, err)
	defer h.Close()
	require.NoError(t, h.TryOp(b(0, 1, SEM_UNDO))) // this process takes undo record 0
	require.Equal(t, 0, h.recIndex())
	// PENDING, parity 1 (record 0's is 0), record 0, delta 512, value 257.
	h.v.words[0].Store(0x0100030100030101)
	require.NoError(t, within(t, "SetVal over a forged intent", func() error { return h.SetVal(0, 5) }, clearIntents(h)))
	v, err := h.GetVal(0)
	require.NoError(t, err)
	assert.Equal(t, 5, v)
	require.NoError(t, within(t, "TryOp on another semaphore", func() error { return h.TryOp(b(1, 1, 0)) }, clearIntents(h)))
	require.NoError(t, within(t, "SEM_UNDO op on the semaphore", func() error { return h.TryOp(b(0, -1, SEM_UNDO)) }, clearIntents(h)))
	require.NoError(t, h.check())
}

// The same with the intent naming another live process's record, which
// is not inside a SEM_UNDO op either.
func TestForgedIntentOtherRecord(t *testing.T) {
	h, p, r := otherUndoer(t, 3, "op 1:1:u")
	par := uint64(h.v.recs[r].adj[0].Load()&adjParity>>16) ^ 1
	h.v.words[0].Store(7 | flagPending | par<<parityShift | uint64(r)<<recShift | uint64(0xFFFD)<<deltaShift)
	require.NoError(t, within(t, "SetVal over a forged intent", func() error { return h.SetVal(0, 5) }, clearIntents(h)))
	v, err := h.GetVal(0)
	require.NoError(t, err)
	assert.Equal(t, 5, v)
	require.NoError(t, h.check())
	p.Send("exit")
	p.Wait(lineWait)
}

// otherUndoer makes a set of nsems semaphores, has a helper process run
// op on it (a SEM_UNDO op, so that it takes an undo record), and returns a
// handle of this process's, the helper, and the helper's record.
func otherUndoer(t *testing.T, nsems int, op string) (*Array, *testutil.Proc, int) {
	t.Helper()
	id := usysvImpl.create(t, nsems, 0o600)
	p := client(t, usysvImpl, id)
	p.Send(op)
	p.Expect("ok", lineWait)
	h, err := OpenID(id)
	require.NoError(t, err)
	t.Cleanup(func() { h.Close() })
	r := -1
	for i := range h.v.recs {
		if h.v.recs[i].hdr.pid.Load() != 0 {
			r = i
		}
	}
	require.GreaterOrEqual(t, r, 0, "the helper's undo record")
	return h, p, r
}

// Goroutines of one process mixing SEM_UNDO and plain ops on one semaphore
// (through two handles, which share the process's undo record) must keep
// the record's semadj exact: here every goroutine's SEM_UNDO ops net to
// zero, so must the semadj, and no op may be left looking in flight.
func TestUndoMixedGoroutines(t *testing.T) {
	id := usysvImpl.create(t, 2, 0o600)
	var hs [2]*Array
	for i := range hs {
		h, err := OpenID(id)
		require.NoError(t, err)
		defer h.Close()
		hs[i] = h
	}
	require.NoError(t, hs[0].SetVal(0, 10000))
	// Take the record, and leave a known semadj on semaphore 1.
	require.NoError(t, hs[0].TryOp(b(1, 1, SEM_UNDO)))
	rounds := envInt("USYSV_SEM_ABA_ROUNDS", 100000)
	// Widen the windows: yield between a SEM_UNDO op's reads and its CAS,
	// between its CAS and its semadj store, and between a lock holder's look
	// at a word's intent and its CAS freezing the word (TestFreezeIntentABA).
	crash.on, stepHook = true, func(step string) {
		if step == StepUndoRead || step == StepUndoCAS || step == StepFreezeLook {
			runtime.Gosched()
		}
	}
	defer func() { crash.on, stepHook = false, nil }()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			h := hs[g%2]
			flg := int16(0)
			if g%4 < 2 {
				flg = SEM_UNDO
			}
			for k := 0; k < rounds; k++ {
				op := int16(1 + k%3)
				if g%2 == 1 {
					op = -op
				}
				if err := h.TryOp(b(0, op, flg)); err != nil {
					errs <- err
					return
				}
				if err := h.TryOp(b(0, -op, flg)); err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	h := hs[0]
	r := h.recIndex()
	require.GreaterOrEqual(t, r, 0)
	v, err := h.GetVal(0)
	require.NoError(t, err)
	assert.Equal(t, 10000, v)
	assert.Equal(t, int16(0), int16(uint16(h.v.recs[r].adj[0].Load())), "semadj of semaphore 0")
	assert.Equal(t, int16(-1), int16(uint16(h.v.recs[r].adj[1].Load())), "semadj of semaphore 1")
	require.NoError(t, h.check())
	// A SETVAL must not wait for an op that looks in flight.
	require.NoError(t, within(t, "SetVal", func() error { return h.SetVal(0, 1) }, clearIntents(h)))
}

// pauser pauses the goroutine that next reaches a crash point (stepHook)
// until released.
type pauser struct {
	armed    atomic.Bool
	at, cont chan struct{}
}

func newPauser() *pauser { return &pauser{at: make(chan struct{}), cont: make(chan struct{})} }

func (p *pauser) hit() {
	if p.armed.CompareAndSwap(true, false) {
		p.at <- struct{}{}
		<-p.cont
	}
}

func (p *pauser) reached(t *testing.T, what string) {
	t.Helper()
	select {
	case <-p.at:
	case <-time.After(lineWait):
		t.Fatalf("%s: not reached", what)
	}
}

// The interleaving behind TestUndoMixedGoroutines' lost semadj changes,
// step by step. Parity is one bit, so two SEM_UNDO ops of one record can
// leave a word exactly as it was, the second in flight:
//
//  1. +1 SEM_UNDO completes: semaphore 0 is 11 with its intent (delta -1,
//     parity p), the record's semadj -1 with parity p;
//  2. a SEM_UNDO array on semaphore 0 takes the lock; freeze reads the word
//     and the semadj's parity: the intent is complete (paused there);
//  3. -1 SEM_UNDO completes (10, semadj 0, parity p^1), then +1 SEM_UNDO
//     again: its CAS leaves the word exactly as in 1 (11, delta -1, parity
//     p), and it pauses before its semadj store (StepUndoCAS);
//  4. freeze's CAS succeeded (the word is as it read it) and took the
//     in-flight intent off: the array read semadj 0, and its store (-2)
//     and that of the op in flight (-1) overwrote one another, instead of
//     -3 in all.
//
// Now freeze judges the intent again on the frozen word, finds it in
// flight, gives the word back and waits for it.
func TestFreezeIntentABA(t *testing.T) {
	id := usysvImpl.create(t, 2, 0o600)
	h, err := OpenID(id)
	require.NoError(t, err)
	defer h.Close()
	require.NoError(t, h.SetVal(0, 10))
	require.NoError(t, h.TryOp(b(1, 1, SEM_UNDO))) // takes the record
	r := h.recIndex()
	require.GreaterOrEqual(t, r, 0)
	require.NoError(t, h.TryOp(b(0, 1, SEM_UNDO))) // 1
	first := h.v.words[0].Load()
	require.NotZero(t, first&flagPending)

	look, inFlight := newPauser(), newPauser()
	evaluated := make(chan struct{})
	var evalArmed atomic.Bool
	crash.on, stepHook = true, func(step string) {
		switch step {
		case StepFreezeLook:
			look.hit()
		case StepUndoCAS:
			inFlight.hit()
		case StepEvaluated:
			if evalArmed.CompareAndSwap(true, false) {
				close(evaluated)
			}
		}
	}
	defer func() { crash.on, stepHook = false, nil }()

	look.armed.Store(true)
	evalArmed.Store(true)
	array := make(chan error, 1)
	go func() { array <- h.Op(context.Background(), b(0, 1, SEM_UNDO), b(0, 1, SEM_UNDO)) }() // 2
	look.reached(t, "the array's freeze")
	require.NoError(t, h.TryOp(b(0, -1, SEM_UNDO))) // 3
	inFlight.armed.Store(true)
	op := make(chan error, 1)
	go func() { op <- h.TryOp(b(0, 1, SEM_UNDO)) }()
	inFlight.reached(t, "the second +1's semadj store")
	require.Equal(t, first, h.v.words[0].Load(), "the word as in 1, its intent in flight")
	close(look.cont) // 4
	select {
	case <-evaluated: // (without the fix)
	case <-time.After(100 * time.Millisecond): // the array waits for the op in flight
	}
	close(inFlight.cont)
	require.NoError(t, <-op)
	require.NoError(t, <-array)
	v, err := h.GetVal(0)
	require.NoError(t, err)
	assert.Equal(t, 13, v)
	assert.Equal(t, int16(-3), int16(uint16(h.v.recs[r].adj[0].Load())), "semadj of semaphore 0")
	require.NoError(t, h.check())
}

// The same ABA for a SEM_UNDO op replacing another record's completed
// intent: between its look at that record's parity and its CAS, the other
// record's process can complete an op and start an identical one. Here
// the other record is faked in this process's set: a second record of
// this process (alive), whose ops the test plays by writing its semadj.
// The op finds the other record's parity moved once its CAS is done, puts
// the intent back and takes the lock, which waits for the op in flight.
func TestForeignIntentABA(t *testing.T) {
	id := usysvImpl.create(t, 2, 0o600)
	h, err := OpenID(id)
	require.NoError(t, err)
	defer h.Close()
	require.NoError(t, h.SetVal(0, 10))
	require.NoError(t, h.TryOp(b(1, 1, SEM_UNDO))) // takes the record
	r := h.recIndex()
	require.GreaterOrEqual(t, r, 0)
	o := r + 1 // the other record: same process (so alive), never used by it
	oh, mine := h.v.recs[o].hdr, h.v.recs[r].hdr
	oh.start.Store(mine.start.Load())
	oh.pid.Store(mine.pid.Load())
	defer func() { oh.pid.Store(0); oh.start.Store(0) }()
	oaw := &h.v.recs[o].adj[0]
	// The other record's completed op: +1 (delta -1, parity 1), semadj -1.
	x := uint64(11) | h.pid | flagPending | parityBit | uint64(o)<<recShift | uint64(0xFFFF)<<deltaShift
	h.v.words[0].Store(x)
	oaw.Store(0xFFFF | adjParity)

	read := newPauser()
	crash.on, stepHook = true, func(step string) {
		if step == StepUndoRead {
			read.hit()
		}
	}
	defer func() { crash.on, stepHook = false, nil }()
	read.armed.Store(true)
	op := make(chan error, 1)
	go func() { op <- h.TryOp(b(0, -2, SEM_UNDO)) }()
	read.reached(t, "the op's CAS")
	// The other process: -1 completes (10, semadj 0, parity 0), +1 again
	// leaves the word as it was, in flight (semadj 0, parity 0, claimed).
	oaw.Store(adjBusy)
	close(read.cont)
	select {
	case err := <-op:
		t.Fatalf("the op returned (%v) with the other record's op in flight; word %#x", err, h.v.words[0].Load())
	case <-time.After(100 * time.Millisecond):
	}
	require.Equal(t, x, h.v.words[0].Load(), "the other record's intent, in flight, back on the word")
	oaw.Store(0xFFFF | adjParity) // its semadj store
	require.NoError(t, <-op)
	v, err := h.GetVal(0)
	require.NoError(t, err)
	assert.Equal(t, 9, v)
	assert.Equal(t, int16(2), int16(uint16(h.v.recs[r].adj[0].Load())), "semadj of semaphore 0")
	assert.Equal(t, int16(-1), int16(uint16(oaw.Load())), "the other record's semadj")
	oaw.Store(0)
	require.NoError(t, h.check())
}

// A plain op leaves a completed intent's fields on the word (fastSingle):
// its CAS could not tell them from an identical intent in flight.
func TestPlainOpKeepsIntent(t *testing.T) {
	id := usysvImpl.create(t, 1, 0o600)
	h, err := OpenID(id)
	require.NoError(t, err)
	defer h.Close()
	require.NoError(t, h.SetVal(0, 10))
	require.NoError(t, h.TryOp(b(0, 1, SEM_UNDO)))
	require.NoError(t, h.TryOp(b(0, 1, SEM_UNDO)))
	w := h.v.words[0].Load()
	require.NotZero(t, w&flagPending)
	require.NoError(t, h.TryOp(b(0, 1, 0)))
	require.NoError(t, h.TryOp(b(0, -3, 0)))
	assert.Equal(t, w&intentMask, h.v.words[0].Load()&intentMask)
	v, err := h.GetVal(0)
	require.NoError(t, err)
	assert.Equal(t, 10, v)
	require.NoError(t, h.SetVal(0, 1)) // a lock holder clears them
	assert.Zero(t, h.v.words[0].Load()&intentMask)
	require.NoError(t, h.check())
}

// A record's process found alive and not exiting once is not taken for
// one that exec'd yet: sawAlive stamps the record (seenAlive) only at a
// second such look execConfirm after the first. (Here the process is a
// live helper whose Life is not even marked: the test is of the stamping
// alone; TestUndoAfterSlowDeath is the death it is for.) A single look
// stamped a dying process in the moment ProcessExiting misses.
func TestStampNeedsTwoLooks(t *testing.T) {
	h, p, r := otherUndoer(t, 1, "op 0:1:u")
	hd := h.v.recs[r].hdr
	look := func() bool {
		h.sawAlive(r, hd)
		return h.seenAlive(r, hd)
	}
	// Two looks at once. A test thread kept off its CPU for execConfirm
	// between them (a loaded machine) would make them two looks apart:
	// then they are made again, from the start (up to three times).
	for try := 0; ; try++ {
		h.aliveAt[r].first.Store(0) // (no earlier look, no stamp)
		h.aliveAt[r].who.Store(0)
		t0 := time.Now()
		assert.False(t, look(), "stamped at the first look")
		second := look()
		if time.Since(t0) < execConfirm/2 || try == 2 {
			assert.False(t, second, "stamped at a second look at once")
			break
		}
	}
	h.aliveAt[r].firstAt.Add(-int64(execConfirm))
	stamped := false
	for range 3 { // (a stamp lasts within one second: a tick may spoil one try)
		if stamped = look(); stamped {
			break
		}
	}
	assert.True(t, stamped, "not stamped at a look execConfirm after the first")
	p.Send("exit")
	p.Wait(lineWait)
}
