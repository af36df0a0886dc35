package chaos

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A watcher samples a load's progress (a count that grows while anything
// completes) every 2 ms and, once nothing has moved for 20 ms, takes a
// snapshot of the object and of where every process sleeps; it keeps the
// snapshot of the longest stall it saw: the evidence for explaining it.
// While the test holds a victim stopped (hold), the clock does not run,
// as in the ledger's stall, which counts those moments as progress: a
// stall the test made is no stall of the system under test.
type watcher struct {
	total func() uint64
	diag  func() string
	held  atomic.Int32 // victims the test holds stopped now

	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu      sync.Mutex
	pending string
	snap    string
	snapLen time.Duration
}

// watch starts a watcher; it stops at halt, or when the test ends (before
// the memory it reads is unmapped: cleanups run last first).
func watch(t testing.TB, total func() uint64, diag func() string) *watcher {
	w := &watcher{total: total, diag: diag, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	t.Cleanup(w.halt)
	return w
}

func (w *watcher) run() {
	defer close(w.done)
	last, at, snapped := w.total(), time.Now(), false
	for {
		select {
		case <-w.stop:
			return
		case <-time.After(2 * time.Millisecond):
		}
		n := w.total()
		if n != last || w.held.Load() > 0 {
			if snapped {
				w.mu.Lock()
				if d := time.Since(at); d > w.snapLen {
					w.snapLen, w.snap = d, w.pending
				}
				w.mu.Unlock()
			}
			last, at, snapped = n, time.Now(), false
			continue
		}
		if !snapped && time.Since(at) > 20*time.Millisecond {
			snapped = true
			t0 := time.Now()
			s := w.diag()
			// Taking it takes a while on a busy machine, and the stall
			// is measured until the next look after it: say how long.
			s += fmt.Sprintf(" (snapshot taken in %v)", time.Since(t0).Round(time.Millisecond))
			w.mu.Lock()
			w.pending = s
			w.mu.Unlock()
		}
	}
}

// hold tells the watcher that the test holds a victim stopped, until the
// returned function is called.
func (w *watcher) hold() (release func()) {
	w.held.Add(1)
	return func() { w.held.Add(-1) }
}

func (w *watcher) halt() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}

// snapshot is the state seen during the longest stall caught live.
func (w *watcher) snapshot() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.snap == "" {
		return "none over 20ms"
	}
	return fmt.Sprintf("%v: %s", w.snapLen.Round(time.Millisecond), w.snap)
}
