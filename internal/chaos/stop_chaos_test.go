package chaos

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/usysv/usysv/shm"
)

// catch stops p repeatedly, at random moments, until it is stopped in a
// state where cond holds (looked at while it is stopped); it leaves p
// stopped and reports true, or false after tries attempts or a second
// (p running).
func catch(p *proc, tries int, cond func() bool) bool {
	end := time.Now().Add(time.Second)
	for i := 0; i < tries && time.Now().Before(end); i++ {
		if !p.stop() {
			return false
		}
		if cond() {
			return true
		}
		p.cont()
		time.Sleep(time.Duration(50+i%7*30) * time.Microsecond)
	}
	return false
}

// progressIn counts the ledger's millisecond slots that [from, to) covers
// and, of those, the ones in which some worker completed an operation.
func (l *ledger) progressIn(from, to time.Time) (moved, slots int) {
	a := (from.UnixNano() - l.t0) / int64(time.Millisecond)
	b := (to.UnixNano() - l.t0) / int64(time.Millisecond)
	for i := a; i < b; i++ {
		if l.progressed(i) {
			moved++
		}
	}
	return moved, int(b - a)
}

// stopCase is the outcome of one SIGSTOP case, for the report.
type stopCase struct {
	name     string
	caught   bool
	progress string
}

// orMissed returns cases with a "not caught" case called name added if
// the search that began when it had n cases added none: no worker was
// caught in that state (catch gave up on each), and the report says so
// rather than leave the case out.
func orMissed(cases []stopCase, n int, name string) []stopCase {
	if len(cases) > n {
		return cases
	}
	return append(cases, stopCase{name, false, "not caught: no worker was stopped in that state within its tries"})
}

// chaosStop: a process is SIGSTOPped inside an operation — holding the
// segment lock, asleep in a waiter slot, or holding a SEM_UNDO token —
// and kept stopped while the others run and while another client dies
// (so the registry runs its death pass and the kinds repair). A stopped
// process is alive: its lock must not be taken over, its waiter slot not
// freed, its undo not applied, a message handed to it not taken back;
// the others keep going where the semantics allow it (not behind its
// lock). After SIGCONT it completes, and the loads' end checks (chaosMsgq,
// chaosSem) hold.
func chaosStop(t *testing.T, rep *report) {
	hold := share(0.02, 300*time.Millisecond)
	rounds := 1
	if long() {
		rounds = max(1, int(share(0.1, 0)/(4*hold+time.Second)))
	}
	var cases []stopCase
	t.Run("msgq", func(t *testing.T) {
		c := newCluster(t, "embedded")
		m := newMsgqLoad(t, c, msgqConfig{capacity: 4096, maxMsg: 1024, waiters: 8, ntypes: 2, lo: payloadMin, hi: 900,
			producers: []int{1, 1}, consumers: []consSpec{{"fifo", 0, 1}, {"fifo", 0, 1}, {"type", 2, 1}}})
		time.Sleep(100 * time.Millisecond)
		for round := 0; round < rounds; round++ {
			// Holding the queue's lock: nobody can use the queue meanwhile,
			// and nobody may take the lock over, even after a death.
			n := len(cases)
			for _, r := range m.roles {
				p := r.cur
				if !catch(p, 3000, func() bool { l, _ := holds(m.seg, p.pid); return l }) {
					continue
				}
				killOther(m, r)
				time.Sleep(hold)
				if h := m.seg.Lock().Holder(); h != p.pid {
					t.Errorf("chaos: the lock of stopped %s pid %d was taken over by %d", p.name, p.pid, h)
				}
				p.cont()
				cases = append(cases, stopCase{"msgq lock holder " + p.name, true, "lock kept"})
				break
			}
			cases = orMissed(cases, n, "msgq lock holder")
			// Asleep in a waiter slot (a consumer waiting for a message):
			// the others keep going; a message handed to it stays its own.
			n = len(cases)
			for _, r := range m.roles {
				p := r.cur
				if r.producer || !catch(p, 3000, func() bool { l, n := holds(m.seg, p.pid); return n > 0 && !l }) {
					continue
				}
				from := time.Now()
				killOther(m, r)
				time.Sleep(hold)
				if _, n := holds(m.seg, p.pid); n == 0 {
					t.Errorf("chaos: the waiter slot of stopped consumer pid %d was freed: %s", p.pid, segDiag(m.seg))
				}
				to := time.Now()
				moved, slots := m.l.progressIn(from, to)
				if moved == 0 {
					t.Errorf("chaos: nothing moved while a sleeping consumer was stopped")
				}
				before := m.l.laneCount(r.lane).Load()
				p.cont()
				cases = append(cases, stopCase{"msgq sleeping consumer", true, fmt.Sprintf("slot kept; others progressed in %d of %d ms", moved, slots)})
				// It completes once continued: it receives again.
				deadline := time.Now().Add(hangAfter)
				for m.l.laneCount(r.lane).Load() == before && p.alive() {
					if time.Now().After(deadline) {
						t.Errorf("chaos: consumer pid %d received nothing after SIGCONT", p.pid)
						break
					}
					time.Sleep(time.Millisecond)
				}
				break
			}
			cases = orMissed(cases, n, "msgq sleeping consumer")
		}
		for _, p := range m.finish() {
			t.Error(p)
		}
		t.Log(m.summary())
	})
	t.Run("sem", func(t *testing.T) {
		c := newCluster(t, "embedded")
		s := newSemLoad(t, c, 3, []string{"bigmover", "mover", "holder", "holder", "holder", "solo", "solo", "checker"}, semHooks{})
		soloOps := func() uint64 { return s.l.ops(5).Load() + s.l.ops(6).Load() }
		time.Sleep(100 * time.Millisecond)
		// A solo worker's first op takes the lock (it claims the process's
		// undo record); its ops are lock-free only after that. Under load
		// (-race, a busy machine) a worker can still be starting after the
		// sleep above: catching the mover with the lock then blocks it
		// there, and the check below counts 0 for a reason that is not
		// the one it looks for. Wait until each has completed an op.
		for deadline := time.Now().Add(hangAfter); s.l.ops(5).Load() == 0 || s.l.ops(6).Load() == 0; {
			if time.Now().After(deadline) {
				t.Fatalf("chaos: a solo worker completed no op in %v (ops %d, %d)", hangAfter, s.l.ops(5).Load(), s.l.ops(6).Load())
			}
			time.Sleep(time.Millisecond)
		}
		for round := 0; round < rounds; round++ {
			// A mover holding the lock (its array's words frozen): the solo
			// workers' single SEM_UNDO ops on M, other words, go on
			// without the lock; the lock is not taken over.
			n := len(cases)
			for _, r := range s.roles[:1] {
				p := r.cur
				// First with no death: the lock-free ops go on. But an op that found
				// its word frozen (the checker's GETALL freezes every word under the
				// lock; solo ops found M frozen thousands of times in ten runs) has
				// gone to the lock path and waits for the lock; if the mover took
				// the lock before it and is caught there, neither solo worker
				// completes an op in that catch. That is most likely what was seen
				// once in some 30 runs of the package on an idle machine and once in
				// 5 beside a CPU hog, both solo workers in their V. So such a catch
				// is logged, with what the solo workers held, and tried again, up to
				// three catches in all.
				var n1 uint64
				held := false // p is stopped holding the lock
				for try := 0; try < 3; try++ {
					if !catch(p, 3000, func() bool { l, _ := holds(s.seg, p.pid); return l }) {
						break
					}
					held = true
					before := soloOps()
					time.Sleep(hold / 2)
					if n1 = soloOps() - before; n1 > 0 || try == 2 {
						break
					}
					var state []string
					for _, o := range s.roles[5:7] {
						l, slots := holds(s.seg, o.cur.pid)
						state = append(state, fmt.Sprintf("solo pid %d: lock %v, slots %d, holding %d", o.cur.pid, l, slots, s.l.holding(o.slot).Load()))
					}
					t.Logf("chaos: no solo op completed in %v with mover pid %d stopped holding the lock (%s); catching it again", hold/2, p.pid, strings.Join(state, "; "))
					p.cont()
					held = false
					time.Sleep(10 * time.Millisecond)
				}
				if !held {
					continue
				}
				if n1 == 0 {
					t.Errorf("chaos: no lock-free SEM_UNDO op completed while a mover was stopped holding the lock, in three catches")
				}
				// Then a client dies: every process's next op repairs first,
				// under the lock, so everything waits for the stopped holder.
				killOtherSem(s, r)
				before := soloOps()
				time.Sleep(hold / 2)
				n2 := soloOps() - before
				if h := s.seg.Lock().Holder(); h != p.pid {
					t.Errorf("chaos: the lock of stopped mover pid %d was taken over by %d", p.pid, h)
				}
				p.cont()
				cases = append(cases, stopCase{"sem lock holder", true,
					fmt.Sprintf("lock kept; lock-free ops by others in %v: %d, and in %v after another client died: %d", hold/2, n1, hold/2, n2)})
				break
			}
			cases = orMissed(cases, n, "sem lock holder")
			// A holder holding a SEM_UNDO token (not the lock): its undo is
			// not applied, however many repairs run; the others go on.
			n = len(cases)
			for _, r := range s.roles[2:5] {
				p := r.cur
				if !catch(p, 3000, func() bool {
					l, _ := holds(s.seg, p.pid)
					return !l && s.l.holding(r.slot).Load() == 1
				}) {
					continue
				}
				from := time.Now()
				killOtherSem(s, r)
				time.Sleep(hold)
				vals := c.ctl.call(t, hangAfter, "getall %d", s.id)
				if z := semVal(vals, s.lay.Z()); z < 1 {
					t.Errorf("chaos: the SEM_UNDO token of stopped holder pid %d was given back (Z=%d): %s", p.pid, z, vals)
				}
				to := time.Now()
				moved, slots := s.l.progressIn(from, to)
				p.cont()
				cases = append(cases, stopCase{"sem SEM_UNDO holder", true, fmt.Sprintf("token kept; others progressed in %d of %d ms", moved, slots)})
				break
			}
			cases = orMissed(cases, n, "sem SEM_UNDO holder")
			// A holder asleep in a waiter slot (L is 0): its slot is not
			// freed; a V by another may complete its P while it is stopped.
			n = len(cases)
			for _, r := range s.roles[2:5] {
				p := r.cur
				if !catch(p, 3000, func() bool { l, n := holds(s.seg, p.pid); return n > 0 && !l }) {
					continue
				}
				killOtherSem(s, r)
				time.Sleep(hold)
				if _, n := holds(s.seg, p.pid); n == 0 {
					// Completed by a waker: then its P was applied for it, with
					// its SEM_UNDO: it must hold a token (Z counts it).
					vals := c.ctl.call(t, hangAfter, "getall %d", s.id)
					if semVal(vals, s.lay.Z()) < 1 {
						t.Errorf("chaos: stopped waiter pid %d lost its slot and holds no token: %s", p.pid, vals)
					}
				}
				before := s.l.ops(r.slot).Load()
				p.cont()
				cases = append(cases, stopCase{"sem sleeping waiter", true, "slot kept or completed by a waker"})
				deadline := time.Now().Add(hangAfter)
				for s.l.ops(r.slot).Load() == before && p.alive() {
					if time.Now().After(deadline) {
						t.Errorf("chaos: holder pid %d did nothing after SIGCONT", p.pid)
						break
					}
					time.Sleep(time.Millisecond)
				}
				break
			}
			cases = orMissed(cases, n, "sem sleeping waiter")
		}
		for _, p := range s.finish() {
			t.Error(p)
		}
		t.Log(s.summary())
	})
	var lines []string
	caught := 0
	for _, c := range cases {
		lines = append(lines, c.name+": "+c.progress)
		if c.caught {
			caught++
		}
	}
	rep.add("stop (%v stopped each time, %d rounds, %d of %d cases caught): %s", hold, rounds, caught, len(cases), strings.Join(lines, "; "))
}

// killOther kills another worker of the load (not r): a client death,
// so that the registry runs its death pass while r is stopped.
func killOther(m *msgqLoad, r *msgqRole) {
	for _, o := range m.roles {
		if o != r && o.producer {
			m.killRole(o)
			return
		}
	}
}

func killOtherSem(s *semLoad, r *semRole) {
	for _, o := range s.roles {
		if o != r && o.name == "mover" && o.cur.alive() {
			if l, _ := holds(s.seg, o.cur.pid); !l {
				s.killRole(o)
				return
			}
		}
	}
}

// semVal reads value i of a "vals V,V,..." line (-1 if absent).
func semVal(line string, i int) int {
	f := strings.Split(strings.TrimPrefix(line, "vals "), ",")
	if i >= len(f) {
		return -1
	}
	return atoi(f[i])
}

var _ = shm.LivenessInterval
