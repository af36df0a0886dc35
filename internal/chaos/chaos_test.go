package chaos

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// report collects the numbers of a run; TestChaos prints it at the end.
type report struct {
	mu    sync.Mutex
	lines []string
	tot   totals
}

// totals are the run's sums over the scenarios that kill.
type totals struct {
	kills, hookDeaths, hostKills, recoveries int
	messages, operations                     uint64
	maxStall                                 time.Duration
	stallWhere                               string
}

func (r *report) addMsgq(where string, m *msgqLoad) {
	d, _ := m.stall()
	m.mu.Lock()
	st := m.st
	m.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tot.kills += st.kills
	r.tot.hookDeaths += st.hookDeaths
	r.tot.recoveries += st.killsLock + st.killsSlot + st.hookDeaths
	r.tot.messages += uint64(st.sent)
	if d > r.tot.maxStall {
		r.tot.maxStall, r.tot.stallWhere = d, where+" msgq"
	}
}

func (r *report) addSem(where string, s *semLoad) {
	d, _ := s.stall()
	ops := s.total()
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tot.kills += st.kills
	r.tot.hookDeaths += st.hookDeaths
	r.tot.recoveries += st.killsLock + st.killsSlot + st.killsHolding + st.hookDeaths
	r.tot.operations += ops
	if d > r.tot.maxStall {
		r.tot.maxStall, r.tot.stallWhere = d, where+" sem"
	}
}

func (r *report) add(format string, a ...any) {
	r.mu.Lock()
	r.lines = append(r.lines, fmt.Sprintf(format, a...))
	r.mu.Unlock()
}

func (r *report) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

// TestChaos is the fault-injection suite across real processes: the short
// run in `go test ./...`, the long one with -chaos.duration (make chaos).
// Each scenario is described at its function.
func TestChaos(t *testing.T) {
	rep := &report{}
	start := time.Now()
	mode := "short run"
	if long() {
		mode = fmt.Sprintf("long run, -chaos.duration=%v", *duration)
	}
	t.Run("msgq", func(t *testing.T) { chaosMsgq(t, rep) })
	t.Run("sem", func(t *testing.T) { chaosSem(t, rep) })
	t.Run("registry", func(t *testing.T) { chaosRegistry(t, rep) })
	t.Run("stop", func(t *testing.T) { chaosStop(t, rep) })
	if long() {
		// The short run has TestDeathToUnblock; the long one repeats it for
		// the worst case.
		t.Run("unblock", func(t *testing.T) {
			reps := max(8, int(share(0.1, 0)/(time.Duration(2*len(unblockCases))*300*time.Millisecond)))
			rep.add("death to unblock (%d runs each; registry stopped for 200ms):\n  %s", reps, strings.Join(measureUnblock(t, reps, 200*time.Millisecond), "\n  "))
		})
	}
	t.Cleanup(func() {
		tt := rep.tot
		fmt.Fprintf(os.Stdout, "\n==== usysv chaos report (%s, %v) ====\n%s\n"+
			"TOTAL: kills %d (SIGKILL at random %d, at a crash-hook step %d, registry hosts %d), recoveries %d, messages %d, semaphore operations %d, max stall %v (%s)\n====\n",
			mode, time.Since(start).Round(time.Millisecond), rep,
			tt.kills+tt.hookDeaths+tt.hostKills, tt.kills, tt.hookDeaths, tt.hostKills, tt.recoveries+tt.hostKills,
			tt.messages, tt.operations, tt.maxStall, tt.stallWhere)
	})
}

// chaosMsgq: producers (single sends and batches) and consumers (FIFO,
// by type, by lowest type, MSG_EXCEPT, batches) on one small queue (it is
// full most of the time, so senders sleep, and it has fewer waiter slots
// than sleepers, so some sleep on the overflow word); random ones are
// SIGKILLed — stopped first, to record whether they held the lock or a
// waiter slot — and restarted, and a quarter of the incarnations carry a
// crash hook that kills them at a labelled step of send or receive. At the
// end: no message received twice or torn, every message reported sent was
// received or is still queued or (at most one per consumer death) went
// with a killed consumer, per-producer order held (up to one requeued
// message per consumer death), and the queue's invariants hold.
func chaosMsgq(t *testing.T, rep *report) {
	c := newCluster(t, "embedded")
	m := newMsgqLoad(t, c, msgqConfig{
		capacity: 8192, maxMsg: 2048, waiters: 4, ntypes: 3, lo: payloadMin, hi: 1500,
		producers: []int{1, 1, 4},
		consumers: []consSpec{{"fifo", 0, 1}, {"type", 2, 1}, {"neg", 2, 1}, {"except", 1, 1}, {"fifo", 0, 4}},
		hooks:     true,
	})
	d := share(0.35, 2500*time.Millisecond)
	m.run(d, 5*time.Millisecond, 60*time.Millisecond)
	probs := m.finish()
	sum := m.summary()
	rep.add("msgq (%v): %s\n  longest stall caught live: %s", d, sum, m.w.snapshot())
	rep.addMsgq("msgq scenario", m)
	t.Log(sum)
	for _, p := range probs {
		t.Error(p)
	}
	// A run in which nothing died proves nothing (a crash hook that never
	// fires; the short run has about 15 hook deaths and 60 kills).
	m.mu.Lock()
	st := m.st
	m.mu.Unlock()
	if st.kills == 0 || st.hookDeaths == 0 {
		t.Errorf("no death to recover from: %d kills, %d at a crash hook", st.kills, st.hookDeaths)
	}
}

// chaosSem: processes doing SEM_UNDO P/V (single ops, on the lock-free
// path, and arrays mixing SEM_UNDO with plain moves), atomic arrays moving
// tokens between semaphores, waits for zero and GETALL checkers, on one
// set (semLayout); random ones are stopped, looked at (lock, waiter slot,
// SEM_UNDO token held) and SIGKILLed, and restarted, a quarter of the
// incarnations with a crash hook at a labelled step of semop. While it
// runs the checkers verify, under GETALL's consistent view, that the
// tokens' sum and L+Z never change; at the end, once every process has
// exited, every undo must have been applied exactly once (L, Z and M back
// to their initial values) and no waiter left.
func chaosSem(t *testing.T, rep *report) {
	c := newCluster(t, "embedded")
	s := newSemLoad(t, c, 4, []string{"mover", "mover", "holder", "holder", "holder", "solo", "solo", "zero", "checker"}, semHooks{steps: semSteps, maxN: 100})
	// Meanwhile, on a set of its own, posts: sem's post path runs only
	// where every waiter is a single op without SEM_UNDO (postHooks).
	p := newSemLoad(t, c, 2, []string{"poster", "taker", "taker", "checker"}, postHooks)
	d := share(0.35, 2500*time.Millisecond)
	var wg sync.WaitGroup
	wg.Go(func() { p.run(d, 5*time.Millisecond, 60*time.Millisecond) })
	s.run(d, 5*time.Millisecond, 60*time.Millisecond)
	wg.Wait()
	for _, l := range []struct {
		name string
		s    *semLoad
	}{{"sem", s}, {"sem posts", p}} {
		probs := l.s.finish()
		sum := l.s.summary()
		rep.add("%s (%v): %s\n  longest stall caught live: %s", l.name, d, sum, l.s.w.snapshot())
		rep.addSem(l.name+" scenario", l.s)
		t.Log(l.name+": ", sum)
		for _, p := range probs {
			t.Errorf("%s: %s", l.name, p)
		}
		// As for msgq; the short run has only a few hook deaths, so those
		// are required in the long run only.
		l.s.mu.Lock()
		st := l.s.st
		l.s.mu.Unlock()
		if st.kills == 0 || long() && st.hookDeaths == 0 {
			t.Errorf("%s: no death to recover from: %d kills, %d at a crash hook", l.name, st.kills, st.hookDeaths)
		}
	}
}
