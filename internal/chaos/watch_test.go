package chaos

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// A watcher samples a load's progress (a count that grows while anything
// completes) every 2 ms and, once nothing has moved for 20 ms, takes a
// snapshot of the object and of where every process sleeps; it keeps the
// snapshot of the longest stall it saw: the evidence for explaining it.
type watcher struct {
	total func() uint64
	diag  func() string

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
		if n != last {
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
			s := w.diag()
			w.mu.Lock()
			w.pending = s
			w.mu.Unlock()
		}
	}
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
