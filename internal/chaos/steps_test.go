package chaos

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/msgq"
	"github.com/usysv/usysv/sem"
)

// Deterministic kill-at-step tests: a process is killed by the crash hooks
// (msgq.KillAtEnv, sem.CrashEnv) at each labelled step of send, receive
// and semop, while other processes wait — in a waiter slot, for the lock,
// or for a wake-up that the dying call owed them — and the registry (an
// embedded host, another process) watches. Each test checks the outcome
// (the call applied whole or not at all), that the waiters are released
// (by the recovery, when their wake-up depended on the dead call) and the
// object's invariants. msgq/crash_test.go and sem/crash_test.go kill at
// the same steps with nobody waiting (and, for sem, with no registry);
// doc.go maps every step to its tests.

const lineWait = 20 * time.Second

// ctlWith starts a ctl client with extra environment (a crash hook).
func (c *cluster) ctlWith(t testing.TB, env ...string) *proc {
	t.Helper()
	p := c.start("chaos-ctl", nil, nil, env...)
	l, err := p.next(lineWait)
	require.NoError(t, err)
	require.Equal(t, "ready", l)
	return p
}

// lines reads p's lines until it exits, until one equals stop, or (stop
// "") until it has answered n lines.
func lines(t testing.TB, p *proc, stop string, n ...int) []string {
	t.Helper()
	var out []string
	for {
		if stop == "" && len(n) > 0 && len(out) >= n[0] {
			return out
		}
		l, err := p.next(lineWait)
		if err != nil {
			if p.wait(time.Second) { // its stdout closed: it is being reaped
				return out
			}
			t.Fatalf("chaos: %v (so far %q)", err, out)
		}
		if stop != "" && l == stop {
			return out
		}
		out = append(out, l)
	}
}

// died waits for a crasher that should have killed itself at step, and
// fails the test if it lives on: its call never passed that step, so the
// test would prove nothing (before, it skipped, and a crash hook that
// never fired left the suite passing on skips).
func died(t testing.TB, p *proc, step string, out []string) {
	t.Helper()
	if !p.wait(200 * time.Millisecond) {
		p.kill()
		t.Fatalf("the call never reached step %s (it answered %q)", step, out)
	}
	if p.exitCode() != -1 {
		t.Fatalf("the call never reached step %s (exit %s, said %q)", step, p.exitStatus(), out)
	}
}

// spinner is a process contending for the object's lock all along
// (chaos-spin): it must keep going after the death; its longest call
// around it is a lock waiter's death-to-unblock time.
type spinner struct {
	p *proc
}

func (c *cluster) spinner(t testing.TB, kind string, id, arg int) *spinner {
	t.Helper()
	p := c.start("chaos-spin", []string{kind, fmt.Sprint(id), fmt.Sprint(arg)}, nil)
	l, err := p.next(lineWait)
	require.NoError(t, err)
	require.Equal(t, "ready", l)
	return &spinner{p}
}

// after checks that the spinner still completes calls after `at` and
// returns its longest call that ended after `at`.
func (s *spinner) after(t testing.TB, at time.Time) time.Duration {
	t.Helper()
	var worst time.Duration
	deadline := time.Now().Add(hangAfter)
	for {
		l, err := s.p.next(time.Until(deadline))
		require.NoError(t, err, "the process contending for the lock hung")
		f := strings.Fields(l)
		switch {
		case f[0] == "G" && len(f) == 3:
			t0, t1 := time.Unix(0, atoi64(f[1])), time.Unix(0, atoi64(f[2]))
			if t1.After(at) {
				worst = max(worst, t1.Sub(t0))
			}
		case f[0] == "tick":
			if time.Now().After(at.Add(50 * time.Millisecond)) {
				s.p.closeIn() // it stops after its current P/V
				for l := range s.p.lines {
					if f := strings.Fields(l.s); len(f) == 3 && f[0] == "G" && time.Unix(0, atoi64(f[2])).After(at) {
						worst = max(worst, time.Unix(0, atoi64(f[2])).Sub(time.Unix(0, atoi64(f[1]))))
					}
				}
				return worst
			}
		case f[0] == "X":
		default:
			t.Fatalf("chaos: spinner: %s", l)
		}
	}
}

// msgqStep is a step of msgq's crash hook: whether a send or a receive
// passes it, and whether the call has committed there.
type msgqStep struct {
	step      string
	send      bool
	committed bool
}

// msgqSteps are the steps of a send or receive that a count-based test
// reaches. Not the ring-* ones: with a receiver asleep and a lock contender
// the calls take the locked store, never the ring (msgq's TestCrashRing*
// kill there).
var msgqSteps = []msgqStep{
	{"send-locked", true, false}, {"send-alloc", true, false},
	{"send-written", true, false}, {"send-linked", true, true},
	{"recv-locked", false, false}, {"recv-copied", false, false},
	{"recv-unlinked", false, true}, {"recv-freed", false, true},
}

// TestKillAtStepMsgq: a sender (receiver) is killed at each step of its
// third send (receive), while an unrelated receiver sleeps in a waiter
// slot and another process contends for the queue's lock. The third
// message is in the queue exactly when the call had committed; the
// sleeping receiver still gets what is sent to it; the contender goes on;
// the queue's invariants hold.
func TestKillAtStepMsgq(t *testing.T) {
	c := newCluster(t, "embedded")
	for _, sc := range msgqSteps {
		t.Run(sc.step, func(t *testing.T) {
			id := c.create("q", 4096, 256, 16)
			if !sc.send {
				c.ctl.send("sendn %d 1 5", id)
				require.Equal(t, []string{"sent 0", "sent 1", "sent 2", "sent 3", "sent 4"}, lines(t, c.ctl, "done"))
			}
			spin := c.spinner(t, "q", id, 9)
			r := c.newCtl()
			r.send("recv %d 2", id)
			waitSlot(t, c, "q", id, r.pid)
			k := c.ctlWith(t, msgq.KillAtEnv+"="+sc.step+":3")
			cmd := "recvn"
			if sc.send {
				cmd = "sendn"
			}
			k.send("%s %d 1 5", cmd, id)
			out := lines(t, k, "done")
			died(t, k, sc.step, out)
			at := time.Now()
			var want string
			switch {
			case sc.send:
				require.Equal(t, []string{"sent 0", "sent 1"}, out)
				want = "texts m0,m1"
				if sc.committed {
					want += ",m2"
				}
			default:
				require.Equal(t, []string{"m0", "m1"}, out)
				want = "texts m2,m3,m4"
				if sc.committed {
					want = "texts m3,m4"
				}
			}
			assert.Equal(t, want, c.ctl.call(t, lineWait, "drain %d 1", id), "the dying call applied whole or not at all")
			assert.Equal(t, "ok", c.ctl.call(t, lineWait, "checkq %d", id))
			require.Equal(t, "ok", strings.Fields(c.ctl.call(t, lineWait, "send %d 2 r", id))[0])
			l, err := r.next(lineWait)
			require.NoError(t, err)
			assert.Equal(t, "r", strings.Fields(l)[0], "the sleeping receiver gets its message")
			d := spin.after(t, at)
			t.Logf("lock contender's longest call after the death: %v", d)
			assert.Equal(t, "ok", c.ctl.call(t, lineWait, "checkq %d", id))
		})
	}
}

// TestKillAtStepMsgqWakeups: a call dies at a step where another process's
// wake-up depends on it.
//
//   - A receiver dies at each receive step while a sender sleeps on the
//     full queue: past the commit point the space is free and the repair
//     must wake the sender (the dead receiver never did); before it, the
//     queue is still full and the sender keeps waiting.
//   - A receiver dies about to sleep (sleep) or with a message handed to
//     it (recv-handed) while a second receiver waits: the message goes to
//     the second one.
//   - A sender dies on the hand-over path (a receiver of its type asleep)
//     before handing over: the receiver keeps waiting and gets the next one.
func TestKillAtStepMsgqWakeups(t *testing.T) {
	c := newCluster(t, "embedded")
	for _, sc := range msgqSteps {
		if sc.send {
			continue
		}
		t.Run("sender-waits/"+sc.step, func(t *testing.T) {
			id := c.create("q", 1024, 256, 16)
			n := c.ctl.call(t, lineWait, "fill %d 1 1", id)
			s := c.newCtl()
			s.send("send %d 1 s", id)
			waitSlot(t, c, "q", id, s.pid)
			k := c.ctlWith(t, msgq.KillAtEnv+"="+sc.step)
			gen := c.seg("q", id).DeadGen()
			k.send("then recv %d 1", id)
			out := lines(t, k, "", 2)
			died(t, k, sc.step, out)
			at := lastNs(t, out[0])
			if !sc.committed {
				// Nothing was received: the sender must still wait, after the
				// registry has seen the death.
				waitRepaired(t, c, "q", id, gen)
				_, slots := holds(c.seg("q", id), s.pid)
				require.Equal(t, 1, slots, "the sender must still wait: %s", segDiag(c.seg("q", id)))
				l := c.ctl.call(t, lineWait, "tryrecv %d 1", id)
				require.False(t, strings.HasPrefix(l, "E"), "the queue is still full: %s", l)
			}
			l, err := s.next(lineWait)
			require.NoError(t, err, "the sleeping sender was never woken")
			require.Equal(t, "ok", strings.Fields(l)[0])
			if sc.committed {
				t.Logf("sender woken %v after the receiver died", lastNs(t, l).Sub(at))
			}
			// n 1-byte messages filled it, one was taken (by the dead
			// receiver or by us), one was added.
			texts := c.ctl.call(t, lineWait, "drain %d 1", id)
			assert.Equal(t, atoi(strings.TrimPrefix(n, "n ")), len(strings.Split(strings.TrimPrefix(texts, "texts "), ",")))
			assert.Equal(t, "ok", c.ctl.call(t, lineWait, "checkq %d", id))
		})
	}
	for _, step := range []string{"sleep", "recv-handed"} {
		t.Run("second-receiver/"+step, func(t *testing.T) {
			id := c.create("q", 4096, 256, 16)
			k := c.ctlWith(t, msgq.KillAtEnv+"="+step)
			k.send("recv %d 1", id)
			if step == "recv-handed" {
				waitSlot(t, c, "q", id, k.pid)
			} else {
				died(t, k, step, lines(t, k, "", 1))
			}
			r2 := c.newCtl()
			r2.send("recv %d 1", id)
			waitSlot(t, c, "q", id, r2.pid)
			l := c.ctl.call(t, lineWait, "send %d 1 x", id)
			at := lastNs(t, l)
			if step == "recv-handed" {
				died(t, k, step, lines(t, k, "", 1))
			}
			l, err := r2.next(lineWait)
			require.NoError(t, err, "the message handed to the dead receiver never reached the second one")
			assert.Equal(t, "x", strings.Fields(l)[0])
			t.Logf("second receiver got it %v after the send", lastNs(t, l).Sub(at))
			assert.Equal(t, "texts ", c.ctl.call(t, lineWait, "drain %d 1", id))
			assert.Equal(t, "ok", c.ctl.call(t, lineWait, "checkq %d", id))
		})
	}
	for _, step := range []string{"send-locked", "send-alloc"} {
		t.Run("hand-over/"+step, func(t *testing.T) {
			id := c.create("q", 4096, 256, 16)
			r := c.newCtl()
			r.send("recv %d 1", id)
			waitSlot(t, c, "q", id, r.pid)
			k := c.ctlWith(t, msgq.KillAtEnv+"="+step)
			gen := c.seg("q", id).DeadGen()
			k.send("send %d 1 lost", id)
			died(t, k, step, lines(t, k, "", 1))
			waitRepaired(t, c, "q", id, gen)
			_, slots := holds(c.seg("q", id), r.pid)
			require.Equal(t, 1, slots, "the receiver must still wait: %s", segDiag(c.seg("q", id)))
			c.ctl.call(t, lineWait, "send %d 1 next", id)
			l, err := r.next(lineWait)
			require.NoError(t, err)
			assert.Equal(t, "next", strings.Fields(l)[0])
			assert.Equal(t, "texts ", c.ctl.call(t, lineWait, "drain %d 1", id))
			assert.Equal(t, "ok", c.ctl.call(t, lineWait, "checkq %d", id))
		})
	}
}

// TestKillAtStepMsgqFlush: messages sent while the queue is quiet go
// through msgq's lock-free ring; the first call that needs the lock (a
// typed receive) moves them into the store, and dies there (ring-flushed:
// linked into the store, the ring's head not moved past them). A receiver
// that comes next, and a process contending for the lock, go on; every
// message is received exactly once, in order.
func TestKillAtStepMsgqFlush(t *testing.T) {
	c := newCluster(t, "embedded")
	id := c.create("q", 4096, 256, 16)
	c.ctl.send("sendn %d 1 5", id)
	require.Equal(t, []string{"sent 0", "sent 1", "sent 2", "sent 3", "sent 4"}, lines(t, c.ctl, "done"))
	k := c.ctlWith(t, msgq.KillAtEnv+"=ring-flushed")
	gen := c.seg("q", id).DeadGen()
	k.send("then recv %d 3", id)
	out := lines(t, k, "", 2)
	died(t, k, "ring-flushed", out)
	at := lastNs(t, out[0])
	spin := c.spinner(t, "q", id, 9)
	r := c.newCtl()
	r.send("recvn %d 0 5", id)
	assert.Equal(t, []string{"m0", "m1", "m2", "m3", "m4"}, lines(t, r, "done"), "each message once, in order")
	t.Logf("lock contender's longest call after the death: %v", spin.after(t, at))
	waitRepaired(t, c, "q", id, gen)
	assert.Equal(t, "texts ", c.ctl.call(t, lineWait, "drain %d 0", id))
	assert.Equal(t, "ok", c.ctl.call(t, lineWait, "checkq %d", id))
}

// waitRepaired waits until the registry has seen a death (the dead
// generation moved from gen) and the lock is free or held by the living,
// then runs a call on the object (which repairs lazily if need be).
func waitRepaired(t testing.TB, c *cluster, kind string, id int, gen uint32) {
	t.Helper()
	s := c.seg(kind, id)
	deadline := time.Now().Add(lineWait)
	for {
		if h := s.Lock().Holder(); s.DeadGen() != gen && (h == 0 || procState(h) != "gone") {
			if kind == "q" {
				c.ctl.call(t, lineWait, "checkq %d", id)
			} else {
				c.ctl.call(t, lineWait, "getall %d", id)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no repair after the death: %s", segDiag(s))
		}
		time.Sleep(time.Millisecond)
	}
}

// semStep is a step of sem's crash hook and what the dying call does.
type semStep struct {
	step    string
	applied bool // an op array dying there is applied whole
}

var semOpSteps = []semStep{{"locked", false}, {"evaluated", false}, {"committed", true}, {"applying", true}}

// semLeanSteps are the steps of sem's lean path for short arrays without
// SEM_UNDO on semaphores nobody waits for (":N": the N-th word).
var semLeanSteps = []semStep{
	{"lean-locked", false}, {"lean-frozen:1", false}, {"lean-frozen:2", false}, {"lean-evaluated", false},
	{"lean-committed", true}, {"lean-releasing:1", true}, {"lean-releasing:2", true},
}

// TestKillAtStepSem: a semop is killed at each step while another
// process waits for what the op would give (semaphore 1) and a third
// contends for the set's lock (P/V on semaphore 2). Before the commit the
// op is not applied and the waiter keeps waiting (until someone else
// posts); after it the op is applied whole and the recovery — not the dead
// process — wakes the waiter. The registry watches every process.
func TestKillAtStepSem(t *testing.T) {
	c := newCluster(t, "embedded")
	for _, sc := range semOpSteps {
		t.Run(sc.step, func(t *testing.T) {
			id := c.create("sem", "0,0,1")
			spin := c.spinner(t, "sem", id, 2)
			w := c.newCtl()
			w.send("op %d 1:-1", id)
			waitSlot(t, c, "sem", id, w.pid)
			k := c.ctlWith(t, sem.CrashEnv+"="+sc.step)
			gen := c.seg("sem", id).DeadGen()
			k.send("then op %d 0:1,1:1", id)
			out := lines(t, k, "", 2)
			died(t, k, sc.step, out)
			at := lastNs(t, out[0])
			t.Logf("lock contender's longest call after the death: %v", spin.after(t, at))
			if !sc.applied {
				waitRepaired(t, c, "sem", id, gen)
				assert.Equal(t, "vals 0,0,1", c.ctl.call(t, lineWait, "getall %d", id), "not applied")
				_, slots := holds(c.seg("sem", id), w.pid)
				require.Equal(t, 1, slots, "the waiter must still wait")
				c.ctl.call(t, lineWait, "op %d 1:1", id)
			}
			l, err := w.next(lineWait)
			require.NoError(t, err, "the waiter was never woken")
			require.Equal(t, "ok", strings.Fields(l)[0])
			if sc.applied {
				t.Logf("waiter woken %v after the op died", lastNs(t, l).Sub(at))
				assert.Equal(t, "vals 1,0,1", c.ctl.call(t, lineWait, "getall %d", id), "applied whole")
				assert.Equal(t, fmt.Sprint("pid ", k.pid), c.ctl.call(t, lineWait, "getpid %d 0", id), "sempid is the dead process")
			} else {
				assert.Equal(t, "vals 0,0,1", c.ctl.call(t, lineWait, "getall %d", id))
			}
			assert.Equal(t, "cnt 0,0,0;0,0,0", c.ctl.call(t, lineWait, "cnt %d", id))
		})
	}
}

// TestKillAtStepSemLean: an array on sem's lean path (two ops, no
// SEM_UNDO, nobody waiting on its semaphores) is killed at each of its
// steps while another process waits on another semaphore of the set. It
// is applied whole exactly when it had committed; the waiter is not
// disturbed; a process that then needs the lock takes it over.
func TestKillAtStepSemLean(t *testing.T) {
	c := newCluster(t, "embedded")
	for _, sc := range semLeanSteps {
		t.Run(strings.ReplaceAll(sc.step, ":", "#"), func(t *testing.T) {
			id := c.create("sem", "0,0,1,1")
			w := c.newCtl()
			w.send("op %d 2:-2", id)
			waitSlot(t, c, "sem", id, w.pid)
			k := c.ctlWith(t, sem.CrashEnv+"="+sc.step)
			// A first call through the general path opens the handle's
			// fast paths.
			require.Equal(t, "ok", strings.Fields(k.call(t, lineWait, "op %d 0:0,1:0", id))[0])
			gen := c.seg("sem", id).DeadGen()
			k.send("then op %d 0:1,1:1", id)
			out := lines(t, k, "", 2)
			died(t, k, sc.step, out)
			at := lastNs(t, out[0])
			spin := c.spinner(t, "sem", id, 3)
			t.Logf("lock contender's longest call after the death: %v", spin.after(t, at))
			waitRepaired(t, c, "sem", id, gen)
			want := "vals 0,0,1,1"
			if sc.applied {
				want = "vals 1,1,1,1"
			}
			assert.Equal(t, want, c.ctl.call(t, lineWait, "getall %d", id), "applied whole or not at all")
			_, slots := holds(c.seg("sem", id), w.pid)
			require.Equal(t, 1, slots, "the waiter must still wait")
			c.ctl.call(t, lineWait, "op %d 2:1", id)
			l, err := w.next(lineWait)
			require.NoError(t, err)
			require.Equal(t, "ok", strings.Fields(l)[0])
			assert.Equal(t, "cnt 0,0,0,0;0,0,0,0", c.ctl.call(t, lineWait, "cnt %d", id))
		})
	}
}

// TestKillAtStepSemUndo: steps that involve SEM_UNDO.
//
//   - undo-cas: a lock-free SEM_UNDO op dies between its value and its
//     semadj: the op stands and its undo is applied whole when the
//     process is found dead; a waiter for the undone value is woken.
//   - committed / applying of an array with SEM_UNDO: applied, and the
//     undo taken back at death.
//   - enqueued / waiting: a SEM_UNDO waiter dies queued, with another
//     waiter behind it: a post goes to the living one (or to the dead one,
//     whose undo then returns it), never lost.
func TestKillAtStepSemUndo(t *testing.T) {
	c := newCluster(t, "embedded")
	t.Run("undo-cas", func(t *testing.T) {
		id := c.create("sem", "0,0,1")
		spin := c.spinner(t, "sem", id, 2)
		k := c.ctlWith(t, sem.CrashEnv+"=undo-cas")
		require.Equal(t, "ok", strings.Fields(k.call(t, lineWait, "op %d 0:1:u", id))[0]) // claims its undo record
		w := c.newCtl()
		w.send("op %d 1:-1", id)
		waitSlot(t, c, "sem", id, w.pid)
		gen := c.seg("sem", id).DeadGen()
		k.send("then op %d 0:1:u", id)
		out := lines(t, k, "", 2)
		died(t, k, "undo-cas", out)
		at := lastNs(t, out[0])
		t.Logf("lock contender's longest call after the death: %v", spin.after(t, at))
		// Both ops stood; the undo takes both back: 0, exactly once.
		waitRepaired(t, c, "sem", id, gen)
		assert.Equal(t, "vals 0,0,1", c.ctl.call(t, lineWait, "getall %d", id))
		c.ctl.call(t, lineWait, "op %d 1:1", id)
		l, err := w.next(lineWait)
		require.NoError(t, err)
		require.Equal(t, "ok", strings.Fields(l)[0])
	})
	for _, step := range []string{"committed", "applying"} {
		t.Run("undo-array/"+step, func(t *testing.T) {
			id := c.create("sem", "0,0,1")
			w := c.newCtl()
			w.send("op %d 1:-1", id)
			waitSlot(t, c, "sem", id, w.pid)
			k := c.ctlWith(t, sem.CrashEnv+"="+step)
			gen := c.seg("sem", id).DeadGen()
			k.send("then op %d 0:2:u,1:1", id)
			out := lines(t, k, "", 2)
			died(t, k, step, out)
			at := lastNs(t, out[0])
			l, err := w.next(lineWait)
			require.NoError(t, err, "the waiter was never woken")
			require.Equal(t, "ok", strings.Fields(l)[0])
			t.Logf("waiter woken %v after the op died", lastNs(t, l).Sub(at))
			// Applied (1 went to the waiter), and the undo took the 2 back.
			waitRepaired(t, c, "sem", id, gen)
			assert.Equal(t, "vals 0,0,1", c.ctl.call(t, lineWait, "getall %d", id))
		})
	}
	for _, step := range []string{"enqueued", "waiting"} {
		t.Run("queued/"+step, func(t *testing.T) {
			id := c.create("sem", "0,0,1")
			spin := c.spinner(t, "sem", id, 2)
			k := c.ctlWith(t, sem.CrashEnv+"="+step)
			gen := c.seg("sem", id).DeadGen()
			k.send("then op %d 0:-1:u", id)
			out := lines(t, k, "", 2)
			died(t, k, step, out)
			at := lastNs(t, out[0])
			t.Logf("lock contender's longest call after the death: %v", spin.after(t, at))
			w := c.newCtl()
			w.send("op %d 0:-1", id)
			waitSlot(t, c, "sem", id, w.pid)
			c.ctl.call(t, lineWait, "op %d 0:1", id)
			l, err := w.next(lineWait)
			require.NoError(t, err, "the post went to the dead waiter and was not given back")
			require.Equal(t, "ok", strings.Fields(l)[0])
			waitRepaired(t, c, "sem", id, gen)
			assert.Equal(t, "vals 0,0,1", c.ctl.call(t, lineWait, "getall %d", id))
			assert.Equal(t, "cnt 0,0,0;0,0,0", c.ctl.call(t, lineWait, "cnt %d", id))
		})
	}
}

// TestKillAtStepSemRepair: the registry's host is killed inside its
// eager repair of a dead client's SEM_UNDO (undo-committed: the undo
// journaled under the set's lock, not applied). Another client takes the
// registry over; the next operation takes the lock over from the dead host
// and finishes the undo exactly once: a client waiting for the token gets
// it, and no second token appears.
func TestKillAtStepSemRepair(t *testing.T) {
	// The host carries the crash hook; the ctl client is another process,
	// which may host the next registry.
	c := newClusterEnv(t, "embedded", sem.CrashEnv+"=undo-committed")
	c.ctl = c.newCtl()
	id := c.create("sem", "1")
	h := c.newCtl()
	require.Equal(t, "ok", strings.Fields(h.call(t, lineWait, "op %d 0:-1:u", id))[0])
	at := time.Now()
	h.kill()
	require.True(t, c.host.wait(lineWait), "the registry host did not die in its repair")
	if c.host.exitCode() != -1 {
		t.Skipf("the host did not reach undo-committed: %s", c.host.exitStatus())
	}
	w := c.newCtl()
	l := w.call(t, lineWait, "op %d 0:-1", id)
	require.Equal(t, "ok", strings.Fields(l)[0], "the undo of the dead holder was lost with the registry host")
	t.Logf("token back %v after the holder was killed (the registry host died in between)", lastNs(t, l).Sub(at))
	// Once: the token went to the waiter, none is left over.
	assert.Equal(t, "vals 0", c.ctl.call(t, lineWait, "getall %d", id))
	assert.Equal(t, "cnt 0;0", c.ctl.call(t, lineWait, "cnt %d", id))
}

// TestOwedWakeNextSleeper: a receiver frees the room a sleeping sender
// waits for and dies before waking it (unlocked: the lock released, the
// wake-up decided on and marked in the sender's slot, the FUTEX_WAKE not
// made), while the registry, which would repair that death, is stopped —
// as when the receiver was the registry's host. Another receiver then
// empties the queue (the sender, marked woken, is not woken again by
// those receives) and would sleep beside the sleeping sender; before it
// sleeps, it wakes the sender (rewakeSenders), whose message it then
// receives: both answer with the registry still stopped. (Without that,
// both slept until a registry ran again: TestChaos/registry saw a 66 ms
// fast-path stall so.) Through the ring (a FIFO receive frees
// room lock-free, then takes the lock to wake) and the lock (typed).
func TestOwedWakeNextSleeper(t *testing.T) {
	for _, typ := range []int{0, 1} {
		t.Run(fmt.Sprintf("msgtyp-%d", typ), func(t *testing.T) {
			c := newCluster(t, "embedded")
			c.ctl = c.newCtl() // the host is stopped below
			id := c.create("q", 1024, 256, 16)
			require.Equal(t, "n 16", c.ctl.call(t, lineWait, "fill %d 1 64", id))
			s := c.newCtl()
			s.send("send %d 1 s", id)
			waitSlot(t, c, "q", id, s.pid)
			k := c.ctlWith(t, msgq.KillAtEnv+"=unlocked")
			r := c.newCtl()
			cont := stopRegistry(t, c, true)
			defer cont()
			k.send("then recv %d %d", id, typ)
			out := lines(t, k, "", 2)
			died(t, k, "unlocked", out)
			seg := c.seg("q", id)
			r.send("recvn %d 0 16", id)
			got := lines(t, r, "done")
			require.Len(t, got, 16, "%q", got)
			assert.Equal(t, "s", got[15], "the sender's message, last")
			l, err := s.next(lineWait)
			require.NoError(t, err, "the sender was not woken: %s", segDiag(seg))
			assert.Equal(t, "ok", strings.Fields(l)[0], l)
			assert.Equal(t, "T", procState(c.host.pid), "the registry was stopped throughout")
			cont()
			assert.Equal(t, "ok", c.ctl.call(t, lineWait, "checkq %d", id))
		})
	}
}

// TestOwedSemWakeNextSleeper is TestOwedWakeNextSleeper's twin for a
// semaphore set: a post completes a sleeping waiter's array and dies
// before waking it (unlocked: the lock released, the waiter's slot done,
// the FUTEX_WAKE not made), with the registry stopped. Another process
// that then comes to sleep on the set wakes the waiter first
// (rewakeDone), with the registry still stopped.
func TestOwedSemWakeNextSleeper(t *testing.T) {
	c := newCluster(t, "embedded")
	c.ctl = c.newCtl() // the host is stopped below
	id := c.create("sem", "0,0")
	w := c.newCtl()
	w.send("op %d 0:-1", id)
	waitSlot(t, c, "sem", id, w.pid)
	k := c.ctlWith(t, sem.CrashEnv+"=unlocked")
	r := c.newCtl()
	cont := stopRegistry(t, c, true)
	defer cont()
	k.send("then op %d 0:1", id)
	out := lines(t, k, "", 2)
	died(t, k, "unlocked", out)
	seg := c.seg("sem", id)
	r.send("op %d 1:-1", id) // sleeps: sem 1 is 0
	l, err := w.next(lineWait)
	require.NoError(t, err, "the waiter was not woken: %s", segDiag(seg))
	assert.Equal(t, "ok", strings.Fields(l)[0], l)
	assert.Equal(t, "ok", strings.Fields(c.ctl.call(t, lineWait, "op %d 1:1", id))[0])
	l, err = r.next(lineWait)
	require.NoError(t, err)
	assert.Equal(t, "ok", strings.Fields(l)[0], l)
	assert.Equal(t, "T", procState(c.host.pid), "the registry was stopped throughout")
	cont()
	assert.Equal(t, "vals 0,0", c.ctl.call(t, lineWait, "getall %d", id))
}
