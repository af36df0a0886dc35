package chaos

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usysv/usysv/sem"
	"github.com/usysv/usysv/shm"
)

// semLoad is semaphore workers (semMain) on one set laid out as semLayout,
// each a helper process; scenarios kill, stop and restart them.
type semLoad struct {
	t     testing.TB
	c     *cluster
	l     *ledger
	id    int
	seg   *shm.Segment
	lay   semLayout
	rand  *rand.Rand
	hooks semHooks

	mu     sync.Mutex
	roles  []*semRole
	errs   []string
	bad    []string
	events []event
	held   [][2]time.Time
	st     semStats
	start  time.Time
	end    time.Time

	lastSum  uint64
	lastMove time.Time
	w        *watcher
}

type semRole struct {
	name   string
	slot   int
	cur    *proc
	hook   string
	killed bool
}

type semStats struct {
	kills, killsLock, killsSlot, killsHolding int
	hookDeaths                                int
	restarts                                  int
	byStep                                    map[string]int
}

// semSteps are the crash hook steps of package sem (the lean-* ones do
// nothing in builds without its lean path).
var semSteps = []string{"undo-read", "undo-cas", "locked", "freeze-look", "evaluated", "committed", "applying",
	"enqueued", "waiting", "undo-committed", "lean-locked", "lean-frozen", "lean-evaluated", "lean-committed",
	"lean-releasing", "post-frozen", "post-applied", "claimed", "post-committed", "post-completed", "unlocked"}

// postHooks are the hooks of the post load: sem's steps of a post for the
// poster, which only a set without complex or SEM_UNDO waiters reaches
// (sem's post falls back to the general path when any waiter of the set
// holds an array or SEM_UNDO), those of a blocking single op for the
// takers, none for the checker. A poster makes about a thousand posts a
// second and lives about 0.1 s: its hooks fire at an early hit.
var postHooks = semHooks{maxN: 10, byRole: map[string][]string{
	"poster": {"locked", "post-frozen", "post-applied", "claimed", "post-committed", "post-completed", "unlocked"},
	"taker":  {"locked", "enqueued", "waiting"},
}}

// semHooks are the crash hooks a load arms: a quarter of the incarnations
// arm one of steps, at random, to fire at its 1st to maxN-th hit.
// (byRole, if set, replaces steps for the roles it names, and arms none
// for the others).
type semHooks struct {
	steps  []string
	maxN   int
	byRole map[string][]string
}

// stepsFor are the steps role's incarnations arm.
func (h semHooks) stepsFor(role string) []string {
	if h.byRole != nil {
		return h.byRole[role]
	}
	return h.steps
}

// newSemLoad starts roles on a new set.
func newSemLoad(t testing.TB, c *cluster, k int, roles []string, hooks semHooks) *semLoad {
	s := &semLoad{t: t, c: c, lay: semLayout{K: k}, hooks: hooks,
		rand: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))}
	s.st.byStep = map[string]int{}
	s.l = newLedger(t, 0)
	init := s.lay.initial()
	vals := make([]string, len(init))
	for i, v := range init {
		vals[i] = strconv.Itoa(v)
	}
	s.id = c.create("sem", strings.Join(vals, ","))
	s.seg = c.seg("sem", s.id)
	for i, r := range roles {
		s.roles = append(s.roles, &semRole{name: r, slot: i})
	}
	s.start = time.Now()
	for _, r := range s.roles {
		s.launch(r)
	}
	s.w = watch(t, s.total, s.diag)
	return s
}

func (s *semLoad) launch(r *semRole) {
	r.killed, r.hook = false, ""
	var env []string
	if steps := s.hooks.stepsFor(r.name); len(steps) > 0 && s.rand.IntN(4) == 0 {
		r.hook = steps[s.rand.IntN(len(steps))]
		env = append(env, fmt.Sprintf("%s=%s:%d", sem.CrashEnv, r.hook, 1+s.rand.IntN(s.hooks.maxN)))
	}
	s.l.holding(r.slot).Store(0)
	args := append(s.l.args(), strconv.Itoa(s.id), r.name, strconv.Itoa(s.lay.K), strconv.Itoa(r.slot))
	p := s.c.start("chaos-sem", args, s.onLine, env...)
	s.mu.Lock() // the watcher reads the roles
	r.cur = p
	s.events = append(s.events, event{time.Now(), fmt.Sprintf("started %s pid %d %v", r.name, p.pid, env)})
	s.mu.Unlock()
}

func (s *semLoad) onLine(p *proc, l line) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case l.s == "X":
	case strings.HasPrefix(l.s, "BAD "):
		s.bad = append(s.bad, fmt.Sprintf("checker pid %d: %s", p.pid, l.s))
	default:
		s.errs = append(s.errs, fmt.Sprintf("pid %d: %s", p.pid, l.s))
	}
}

// note records an event of the test's own at at (a registry host killed),
// for explaining a stall.
func (s *semLoad) note(at time.Time, what string) {
	s.mu.Lock()
	s.events = append(s.events, event{at, what})
	s.mu.Unlock()
}

// killRole is msgqLoad.killRole's twin.
func (s *semLoad) killRole(r *semRole) time.Time {
	p := r.cur
	release := s.w.hold()
	t0 := time.Now()
	if !p.stop() {
		release()
		return t0
	}
	lock, slots := holds(s.seg, p.pid)
	holding := s.l.holding(r.slot).Load() != 0
	r.killed = true
	_ = p.signal(sigKill)
	t1 := time.Now()
	release()
	<-p.done
	s.mu.Lock()
	s.held = append(s.held, [2]time.Time{t0, t1})
	s.st.kills++
	if lock {
		s.st.killsLock++
	}
	if slots > 0 {
		s.st.killsSlot++
	}
	if holding {
		s.st.killsHolding++
	}
	s.events = append(s.events, event{t1, fmt.Sprintf("killed %s pid %d (lock %v, slots %d, holding %v)", r.name, p.pid, lock, slots, holding)})
	s.st.restarts++
	s.mu.Unlock()
	s.launch(r)
	return t1
}

func (s *semLoad) reap() {
	for _, r := range s.roles {
		p := r.cur
		if p.alive() || r.killed {
			continue
		}
		s.mu.Lock()
		if p.exitCode() == -1 && r.hook != "" {
			s.st.hookDeaths++
			s.st.byStep[r.hook]++
			p.mu.Lock()
			at := p.exitedAt
			p.mu.Unlock()
			s.events = append(s.events, event{at, fmt.Sprintf("%s pid %d died at %s", r.name, p.pid, r.hook)})
		} else if p.exitCode() != 4 { // 4: a violation, reported by its line
			s.errs = append(s.errs, fmt.Sprintf("%s pid %d ended: %s", r.name, p.pid, p.exitStatus()))
		}
		s.st.restarts++
		s.mu.Unlock()
		s.launch(r)
	}
}

func (s *semLoad) total() uint64 {
	var n uint64
	for _, r := range s.roles {
		n += s.l.ops(r.slot).Load()
	}
	return n
}

func (s *semLoad) hung() bool {
	n := s.total()
	if n != s.lastSum || s.lastMove.IsZero() {
		s.lastSum, s.lastMove = n, time.Now()
		return false
	}
	if time.Since(s.lastMove) > hangAfter {
		s.t.Errorf("chaos: sem: nothing progressed for %v: %s", time.Since(s.lastMove).Round(time.Millisecond), s.diag())
		return true
	}
	return false
}

func (s *semLoad) diag() string {
	var out []string
	s.mu.Lock()
	for _, r := range s.roles {
		out = append(out, fmt.Sprintf("%s pid %d %s", r.name, r.cur.pid, threads(r.cur.pid)))
	}
	s.mu.Unlock()
	return segDiag(s.seg) + "; registry host " + threads(s.c.host.pid) + "; " + strings.Join(out, "; ")
}

// run kills workers at random for d, restarting them; false if it hung.
func (s *semLoad) run(d, minGap, maxGap time.Duration) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		time.Sleep(minGap + time.Duration(s.rand.Int64N(int64(maxGap-minGap)+1)))
		s.reap()
		if s.hung() {
			return false
		}
		s.killRole(s.roles[s.rand.IntN(len(s.roles))])
	}
	s.reap()
	return true
}

// finish stops the workers and checks that every undo was applied once:
// L, Z and M back to their initial values, the tokens all there, no
// waiter left.
func (s *semLoad) finish() []string {
	s.end = time.Now()
	s.w.halt()
	var probs []string
	for _, r := range s.roles {
		r.cur.closeIn()
	}
	for _, r := range s.roles {
		switch {
		case !r.cur.wait(hangAfter):
			probs = append(probs, fmt.Sprintf("%s pid %d did not stop within %v (hung): %s", r.name, r.cur.pid, hangAfter, s.diag()))
			r.cur.kill()
		case r.cur.exitCode() == 0, r.cur.exitCode() == 4:
		case r.cur.exitCode() == -1 && r.hook != "":
			s.mu.Lock()
			s.st.hookDeaths++
			s.st.byStep[r.hook]++
			s.mu.Unlock()
		default:
			probs = append(probs, fmt.Sprintf("%s pid %d: %s", r.name, r.cur.pid, r.cur.exitStatus()))
		}
	}
	// Every worker is gone; the registry applies their undo (at once, or
	// the first operation that sees their deaths does: getall is one).
	want := s.lay.initial()
	var vals string
	deadline := time.Now().Add(hangAfter)
	for {
		vals = s.c.ctl.call(s.t, hangAfter, "getall %d", s.id)
		if undoDone(vals, s.lay, want) {
			break
		}
		if time.Now().After(deadline) {
			probs = append(probs, fmt.Sprintf("undo not applied within %v after every worker exited: %s, want L=%d Z=0 M=%d and %d tokens",
				hangAfter, vals, semLocks, semSolo, s.lay.K*semTokens))
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if cnt := s.c.ctl.call(s.t, hangAfter, "cnt %d", s.id); strings.Trim(cnt, "cnt 0,;") != "" {
		probs = append(probs, "waiters left behind (GETNCNT;GETZCNT): "+cnt)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.bad) > 0 {
		probs = append(probs, "invariant broken while running: "+strings.Join(s.bad, "; "))
	}
	if len(s.errs) > 0 {
		probs = append(probs, "worker errors: "+strings.Join(s.errs, "; "))
	}
	return probs
}

// undoDone reports whether "vals V,V,..." is back to the initial undo
// state: L, Z, M as created and the T sum conserved.
func undoDone(line string, lay semLayout, want []int) bool {
	f := strings.Split(strings.TrimPrefix(line, "vals "), ",")
	if len(f) != lay.n() {
		return false
	}
	v := make([]uint16, len(f))
	for i, x := range f {
		v[i] = uint16(atoi(x))
	}
	return lay.violation(v) == "" && int(v[lay.L()]) == want[lay.L()] && v[lay.Z()] == 0 && int(v[lay.M()]) == want[lay.M()]
}

func (s *semLoad) stall() (time.Duration, string) {
	s.mu.Lock()
	held := s.held
	s.mu.Unlock()
	d, at := s.l.stall(s.start.Add(200*time.Millisecond), s.end, held)
	s.mu.Lock()
	defer s.mu.Unlock()
	return d, eventsAround(s.events, d, at)
}

func (s *semLoad) summary() string {
	d, why := s.stall()
	total := s.total()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	steps := make([]string, 0, len(st.byStep))
	for k, n := range st.byStep {
		steps = append(steps, fmt.Sprintf("%s:%d", k, n))
	}
	sort.Strings(steps)
	return fmt.Sprintf("kills %d (holding the lock %d, in a waiter slot %d, holding a SEM_UNDO token %d), crash-hook deaths %d [%s], "+
		"recoveries %d; operations %d; max stall %v (%s)",
		st.kills, st.killsLock, st.killsSlot, st.killsHolding, st.hookDeaths, strings.Join(steps, " "),
		st.killsLock+st.killsSlot+st.killsHolding+st.hookDeaths, total, d, why)
}
