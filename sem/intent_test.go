package sem

import (
	"context"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
	require.Equal(t, int32(0), h.rec.Load())
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
	id := usysvImpl.create(t, 3, 0o600)
	p := client(t, usysvImpl, id)
	p.Send("op 1:1:u")
	p.Expect("ok", lineWait)
	h, err := OpenID(id)
	require.NoError(t, err)
	defer h.Close()
	r := -1
	for i := range h.v.recs {
		if h.v.recs[i].hdr.pid.Load() != 0 {
			r = i
		}
	}
	require.GreaterOrEqual(t, r, 0)
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
	// and between its CAS and its semadj store.
	crash.on, stepHook = true, func(step string) {
		if step == StepUndoRead || step == StepUndoCAS {
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
	r := int(h.rec.Load())
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
