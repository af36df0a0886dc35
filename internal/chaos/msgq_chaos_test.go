package chaos

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/msgq"
	"github.com/usysv/usysv/shm"
)

// msgqLoad is producers and consumers on one queue, each a helper
// process recording what it did in a ledger, with everything checked at
// the end against what the queue must guarantee. Scenarios kill, stop and
// restart its processes.
type msgqLoad struct {
	t    testing.TB
	c    *cluster
	l    *ledger
	id   int
	seg  *shm.Segment
	cfg  msgqConfig
	rand *rand.Rand

	mu       sync.Mutex
	roles    []*msgqRole
	prods    map[int]*prodInc
	nextProd int
	torn     []string
	errs     []string
	events   []event // deaths and starts, for explaining the longest stall
	st       msgqStats
	start    time.Time
	end      time.Time
	held     [][2]time.Time // when the test held a victim stopped

	lastSum  uint64 // progress seen by the hang check
	lastMove time.Time

	w *watcher
}

type msgqConfig struct {
	capacity, maxMsg, waiters int
	ntypes, lo, hi            int
	producers                 []int      // batch size of each producer
	consumers                 []consSpec // one per consumer
	hooks                     bool       // arm crash hooks in some incarnations
}

type consSpec struct {
	mode  string
	typ   int
	batch int
}

type msgqStats struct {
	kills, killsLock, killsSlot int // SIGKILLed by the test, of which holding the lock / a waiter slot
	hookDeaths                  int // died at a crash hook step
	restarts                    int
	sent, received, drained     int
	lost, unreported            int
	inversions                  int
	consumerKills               int // deaths of consumers (either way)
	consumerSlotDeaths          int // of which while holding a waiter slot (a message may have been handed to it)
	consumerAllowance           int // messages the dead consumers may have taken with them
	byStep                      map[string]int
}

// msgqRole is one producer or consumer position: when its process dies
// another incarnation takes its place (a producer under a new producer
// id, a consumer on the same ledger lane, after the entries of the ones
// before it).
type msgqRole struct {
	producer bool
	batch    int
	cons     consSpec
	lane     int
	incs     []*consInc // consumer incarnations, in order
	cur      *proc
	prod     *prodInc // current producer incarnation
	hook     string   // crash hook of the current incarnation
	killed   bool     // the current incarnation was killed by the test
}

type prodInc struct {
	prod     int
	batch    int
	graceful bool // stopped by the test (stdin closed), not killed
	dead     bool // killed, either way
}

type consInc struct {
	pid   int
	from  int // its first entry in the lane
	batch int
}

type event struct {
	at   time.Time
	what string
}

// eventsAround lists the deaths and starts during a stall of d that ended
// at end, and in the 50 ms before it: a death stalls others only once they
// reach what the dead process left (its waiter slot, a message handed to
// it), which can be a while after it.
func eventsAround(events []event, d time.Duration, end time.Time) string {
	var out []string
	from, to := end.Add(-d-50*time.Millisecond), end.Add(5*time.Millisecond)
	for _, e := range events {
		if !e.at.Before(from) && !e.at.After(to) {
			out = append(out, fmt.Sprintf("%s %v before its end", e.what, end.Sub(e.at).Round(time.Microsecond)))
		}
	}
	if len(out) == 0 {
		return "no death or start in that window"
	}
	return strings.Join(out, ", ")
}

func newMsgqLoad(t testing.TB, c *cluster, cfg msgqConfig) *msgqLoad {
	m := &msgqLoad{t: t, c: c, cfg: cfg, prods: map[int]*prodInc{}, nextProd: 1,
		rand: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))}
	m.st.byStep = map[string]int{}
	m.l = newLedger(t, len(cfg.consumers))
	m.id = c.create("q", cfg.capacity, cfg.maxMsg, cfg.waiters)
	m.seg = c.seg("q", m.id)
	for _, b := range cfg.producers {
		m.roles = append(m.roles, &msgqRole{producer: true, batch: b})
	}
	for i, cs := range cfg.consumers {
		m.roles = append(m.roles, &msgqRole{cons: cs, batch: cs.batch, lane: i})
	}
	m.start = time.Now()
	for _, r := range m.roles {
		m.launch(r)
	}
	m.w = watch(t, m.total, m.diag)
	return m
}

// The crash hook steps armed at random (see doc.go; the ring-* ones do
// nothing in builds without msgq's ring).
var (
	sendSteps = []string{"send-locked", "send-alloc", "send-written", "send-linked", "sleep",
		"ring-claimed", "ring-written", "ring-flushed", "unlocked"}
	recvSteps = []string{"recv-locked", "recv-copied", "recv-unlinked", "recv-freed", "recv-handed", "sleep",
		"ring-taken", "ring-flushed", "unlocked"}
)

// launch starts a new incarnation of role r.
func (m *msgqLoad) launch(r *msgqRole) {
	r.killed, r.hook = false, ""
	var env []string
	if m.cfg.hooks && m.rand.IntN(4) == 0 {
		steps := recvSteps
		if r.producer {
			steps = sendSteps
		}
		r.hook = steps[m.rand.IntN(len(steps))]
		env = append(env, fmt.Sprintf("%s=%s:%d", msgq.KillAtEnv, r.hook, 1+m.rand.IntN(200)))
	}
	args := m.l.args()
	var name string
	if r.producer {
		m.mu.Lock()
		inc := &prodInc{prod: m.nextProd, batch: r.batch}
		m.nextProd++
		m.prods[inc.prod] = inc
		r.prod = inc
		m.mu.Unlock()
		name = "chaos-producer"
		args = append(args, strconv.Itoa(m.id), strconv.Itoa(inc.prod), strconv.Itoa(m.cfg.lo), strconv.Itoa(m.cfg.hi),
			strconv.Itoa(m.cfg.ntypes), strconv.Itoa(r.batch))
	} else {
		name = "chaos-consumer"
		args = append(args, strconv.Itoa(m.id), strconv.Itoa(r.lane), r.cons.mode, strconv.Itoa(r.cons.typ), strconv.Itoa(r.batch))
	}
	from := int(m.l.laneCount(r.lane).Load()) // the previous incarnation is reaped: final
	p := m.c.start(name, args, m.onLine, env...)
	m.mu.Lock() // the line handlers and the watcher read the roles
	if !r.producer {
		r.incs = append(r.incs, &consInc{pid: p.pid, from: from, batch: r.batch})
	}
	r.cur = p
	m.events = append(m.events, event{time.Now(), fmt.Sprintf("started %s pid %d %v", name, p.pid, env)})
	m.mu.Unlock()
}

// onLine takes the workers' lines: only trouble is reported there.
func (m *msgqLoad) onLine(p *proc, l line) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case l.s == "X":
		for _, r := range m.roles {
			if r.producer && r.cur == p {
				r.prod.graceful = true
			}
		}
	case strings.HasPrefix(l.s, "T "):
		m.torn = append(m.torn, fmt.Sprintf("%s pid %d: %s", p.name, p.pid, l.s))
	case l.s == "F":
		m.errs = append(m.errs, fmt.Sprintf("%s pid %d: ledger lane full (raise defaultLaneCap)", p.name, p.pid))
	default:
		m.errs = append(m.errs, fmt.Sprintf("%s pid %d: %s", p.name, p.pid, l.s))
	}
}

// died books the death of role r's current incarnation (killed by the
// test, or by its crash hook).
func (m *msgqLoad) died(r *msgqRole) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.producer {
		r.prod.dead = true
	} else {
		m.st.consumerKills++
		m.st.consumerAllowance += r.batch
	}
}

// killOne stops a random worker, looks at what it holds, SIGKILLs it and
// starts another incarnation in its place.
func (m *msgqLoad) killOne() {
	m.killRole(m.roles[m.rand.IntN(len(m.roles))])
}

// note records an event of the test's own at at (a registry host killed),
// for explaining a stall.
func (m *msgqLoad) note(at time.Time, what string) {
	m.mu.Lock()
	m.events = append(m.events, event{at, what})
	m.mu.Unlock()
}

// killRole stops r's process, notes what it holds, SIGKILLs it and starts
// another in its place. It returns when it sent the SIGKILL.
func (m *msgqLoad) killRole(r *msgqRole) time.Time {
	p := r.cur
	release := m.w.hold()
	t0 := time.Now()
	if !p.stop() {
		release()
		return t0 // died on its own: reap() restarts it
	}
	lock, slots := holds(m.seg, p.pid)
	r.killed = true
	_ = p.signal(sigKill)
	t1 := time.Now()
	release()
	<-p.done
	m.mu.Lock()
	m.held = append(m.held, [2]time.Time{t0, t1})
	m.st.kills++
	if lock {
		m.st.killsLock++
	}
	if slots > 0 {
		m.st.killsSlot++
		if !r.producer {
			m.st.consumerSlotDeaths++
		}
	}
	m.events = append(m.events, event{t1, fmt.Sprintf("killed %s pid %d (lock %v, slots %d)", p.name, p.pid, lock, slots)})
	m.mu.Unlock()
	m.died(r)
	m.restart(r)
	return t1
}

// hookDeath books a death at a crash hook step.
func (m *msgqLoad) hookDeath(r *msgqRole) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st.hookDeaths++
	m.st.byStep[r.hook]++
	if !r.producer && (r.hook == "sleep" || r.hook == "recv-handed") {
		m.st.consumerSlotDeaths++
	}
	r.cur.mu.Lock()
	at := r.cur.exitedAt
	r.cur.mu.Unlock()
	m.events = append(m.events, event{at, fmt.Sprintf("%s pid %d died at %s", r.cur.name, r.cur.pid, r.hook)})
}

func (m *msgqLoad) restart(r *msgqRole) {
	m.mu.Lock()
	m.st.restarts++
	m.mu.Unlock()
	m.launch(r)
}

// reap restarts workers that died by themselves: at their crash hook (a
// SIGKILL they sent themselves) or, a failure, with an error.
func (m *msgqLoad) reap() {
	for _, r := range m.roles {
		p := r.cur
		if p.alive() || r.killed {
			continue
		}
		if p.exitCode() == -1 && r.hook != "" {
			m.hookDeath(r)
		} else {
			m.mu.Lock()
			m.errs = append(m.errs, fmt.Sprintf("%s (pid %d) ended: %s", p.name, p.pid, p.exitStatus()))
			m.mu.Unlock()
		}
		m.died(r)
		m.restart(r)
	}
}

// total is everything the workers recorded: it grows while anything moves.
func (m *msgqLoad) total() uint64 {
	var n uint64
	m.mu.Lock()
	for p := range m.prods {
		n += m.l.sent(p).Load()
	}
	m.mu.Unlock()
	for i := range m.cfg.consumers {
		n += m.l.laneCount(i).Load()
	}
	return n
}

// hung reports (and fails the test) if nothing progressed for hangAfter.
func (m *msgqLoad) hung() bool {
	n := m.total()
	if n != m.lastSum || m.lastMove.IsZero() {
		m.lastSum, m.lastMove = n, time.Now()
		return false
	}
	if time.Since(m.lastMove) > hangAfter {
		m.t.Errorf("chaos: msgq: nothing progressed for %v: %s", time.Since(m.lastMove).Round(time.Millisecond), m.diag())
		return true
	}
	return false
}

// diag describes the queue's lock and waiter table and the workers.
func (m *msgqLoad) diag() string {
	m.mu.Lock()
	roles := rolesDiag(m.roles)
	m.mu.Unlock()
	return segDiag(m.seg) + "; registry host " + threads(m.c.host.pid) + "; " + roles
}

func segDiag(s *shm.Segment) string {
	var b strings.Builder
	fmt.Fprintf(&b, "lock holder %d, dead gen %d; waiters:", s.Lock().Holder(), s.DeadGen())
	for i := range s.Waiters() {
		w := &s.Waiters()[i]
		if st := w.State.Load(); st != 0 {
			fmt.Fprintf(&b, " [slot %d state %d pid %d]", i, st, w.PID.Load())
		}
	}
	return b.String()
}

func rolesDiag(roles []*msgqRole) string {
	var out []string
	for _, r := range roles {
		p := r.cur
		out = append(out, fmt.Sprintf("%s pid %d %s", p.name, p.pid, threads(p.pid)))
	}
	return strings.Join(out, "; ")
}

// threads summarises where the threads of pid are: state and kernel wait
// channel, with counts ("S:futex_do_wait×3"), or "gone".
func threads(pid int) string {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return "gone"
	}
	cnt := map[string]int{}
	for _, e := range ents {
		wc, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/wchan", pid, e.Name()))
		st := "?"
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, e.Name())); err == nil {
			if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
				st = string(b[i+2])
			}
		}
		k := st
		if len(wc) > 0 && string(wc) != "0" {
			k += ":" + string(wc)
		}
		cnt[k]++
	}
	keys := make([]string, 0, len(cnt))
	for k := range cnt {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%s×%d", k, cnt[k])
	}
	return "[" + strings.Join(out, " ") + "]"
}

// run kills workers at random for d, one every minGap..maxGap, restarting
// them. It reports false if the run hung.
func (m *msgqLoad) run(d time.Duration, minGap, maxGap time.Duration) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		time.Sleep(minGap + time.Duration(m.rand.Int64N(int64(maxGap-minGap)+1)))
		m.reap()
		if m.hung() {
			return false
		}
		m.killOne()
	}
	m.reap()
	return true
}

// finish stops every worker (producers first), drains the queue and checks
// everything. It returns the problems found.
func (m *msgqLoad) finish() []string {
	m.end = time.Now()
	m.w.halt()
	var probs []string
	for _, producers := range []bool{true, false} {
		for _, r := range m.roles {
			if r.producer == producers {
				r.cur.closeIn()
			}
		}
		for _, r := range m.roles {
			if r.producer != producers {
				continue
			}
			switch {
			case !r.cur.wait(hangAfter):
				probs = append(probs, fmt.Sprintf("%s pid %d did not stop within %v (hung): %s", r.cur.name, r.cur.pid, hangAfter, m.diag()))
				r.cur.kill()
				m.died(r)
			case r.cur.exitCode() == 0:
			case r.cur.exitCode() == -1 && r.hook != "":
				m.hookDeath(r) // its crash hook fired as it stopped
				m.died(r)
			default:
				probs = append(probs, fmt.Sprintf("%s pid %d: %s", r.cur.name, r.cur.pid, r.cur.exitStatus()))
			}
		}
	}
	drained := m.drain(&probs)
	if l := m.c.ctl.call(m.t, hangAfter, "checkq %d", m.id); l != "ok" {
		probs = append(probs, "queue invariants: "+l)
	}
	return append(probs, m.verify(drained)...)
}

// drain receives what is left in the queue, through the ctl client.
func (m *msgqLoad) drain(probs *[]string) [][2]uint64 {
	ctl := m.c.ctl
	var out [][2]uint64
	if !ctl.send("drainq %d", m.id) {
		*probs = append(*probs, "ctl client gone")
		return nil
	}
	for {
		l, err := ctl.next(hangAfter)
		if err != nil {
			*probs = append(*probs, "drain: "+err.Error())
			return out
		}
		f := strings.Fields(l)
		switch {
		case f[0] == "end":
			return out
		case f[0] == "M" && len(f) == 4:
			prod, _ := strconv.ParseUint(f[1], 10, 64)
			seq, _ := strconv.ParseUint(f[2], 10, 64)
			out = append(out, [2]uint64{prod, seq})
		default:
			m.mu.Lock()
			m.torn = append(m.torn, "drain: "+l)
			m.mu.Unlock()
		}
	}
}

// verify checks what the producers recorded as sent against what the
// consumers recorded and the drain found.
func (m *msgqLoad) verify(drained [][2]uint64) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var probs []string
	limit := func(list []string) []string {
		if len(list) > 5 {
			return append(list[:5:5], fmt.Sprintf("... %d in all", len(list)))
		}
		return list
	}
	var unknown, inverted []string
	// st[prod][seq]: how many times received.
	st := map[int][]uint8{}
	recv := func(prod int, seq uint64, who string) {
		if m.prods[prod] == nil {
			unknown = append(unknown, fmt.Sprintf("%s: producer %d seq %d", who, prod, seq))
			return
		}
		s := st[prod]
		for uint64(len(s)) <= seq {
			s = append(s, 0)
		}
		if s[seq] < 255 {
			s[seq]++
		}
		st[prod] = s
	}
	for _, r := range m.roles {
		if r.producer {
			continue
		}
		n := int(m.l.laneCount(r.lane).Load())
		for k, inc := range r.incs {
			to := n
			if k+1 < len(r.incs) {
				to = r.incs[k+1].from
			}
			last := map[[2]int64]uint64{}
			for i := inc.from; i < to; i++ {
				prod, seq := m.l.entry(r.lane, i)
				recv(prod, seq, fmt.Sprintf("consumer pid %d", inc.pid))
				m.st.received++
				key := [2]int64{int64(prod), 0}
				if r.cons.mode == "neg" {
					key[1] = msgType(prod, seq, m.cfg.ntypes)
				}
				if l, ok := last[key]; ok && seq < l {
					inverted = append(inverted, fmt.Sprintf("consumer %s/%d pid %d: producer %d seq %d after %d",
						r.cons.mode, r.cons.typ, inc.pid, prod, seq, l))
				} else {
					last[key] = seq
				}
			}
		}
	}
	for _, d := range drained {
		recv(int(d[0]), d[1], "drain")
		m.st.drained++
	}
	var dup, lost, unrep []string
	prods := make([]int, 0, len(m.prods))
	for p := range m.prods {
		prods = append(prods, p)
	}
	sort.Ints(prods)
	m.st.sent, m.st.lost, m.st.unreported = 0, 0, 0
	for _, p := range prods {
		inc := m.prods[p]
		sent := m.l.sent(p).Load()
		m.st.sent += int(sent)
		s := st[p]
		extra := 0
		for seq := uint64(0); seq < max(sent, uint64(len(s))); seq++ {
			cnt := 0
			if seq < uint64(len(s)) {
				cnt = int(s[seq])
			}
			switch {
			case cnt > 1:
				dup = append(dup, fmt.Sprintf("producer %d seq %d received %d times", p, seq, cnt))
			case seq < sent && cnt == 0:
				lost = append(lost, fmt.Sprintf("producer %d seq %d", p, seq))
			case seq >= sent && cnt > 0:
				extra++
			}
		}
		m.st.unreported += extra
		// A producer killed after its send committed but before it
		// recorded success leaves that send (that batch) unrecorded.
		if extra > 0 && !inc.dead {
			unrep = append(unrep, fmt.Sprintf("producer %d stopped cleanly, but %d messages beyond the %d it saw sent were received", p, extra, sent))
		}
		if extra > inc.batch {
			unrep = append(unrep, fmt.Sprintf("producer %d: %d messages beyond the %d it saw sent were received; at most %d (one call in flight when it died)", p, extra, sent, inc.batch))
		}
	}
	m.st.lost = len(lost)
	m.st.inversions = len(inverted)
	if len(unknown) > 0 {
		probs = append(probs, "messages from no producer: "+strings.Join(limit(unknown), "; "))
	}
	if len(dup) > 0 {
		probs = append(probs, "duplicates: "+strings.Join(limit(dup), "; "))
	}
	// A consumer killed after its receive committed but before it
	// recorded the message takes it along: at most one call's worth.
	if len(lost) > m.st.consumerAllowance {
		probs = append(probs, fmt.Sprintf("%d messages sent and never received, more than the %d the %d consumer deaths may have taken: %s",
			len(lost), m.st.consumerAllowance, m.st.consumerKills, strings.Join(limit(lost), "; ")))
	}
	if len(unrep) > 0 {
		probs = append(probs, "unexpected messages: "+strings.Join(limit(unrep), "; "))
	}
	if len(m.torn) > 0 {
		probs = append(probs, "torn messages: "+strings.Join(limit(m.torn), "; "))
	}
	if len(m.errs) > 0 {
		probs = append(probs, "worker errors: "+strings.Join(limit(m.errs), "; "))
	}
	// A message handed to a receiver that died before taking it goes back
	// in the queue at its place in send order, possibly after a later one
	// was taken: at most one such per death of a consumer in a waiter slot.
	if len(inverted) > m.st.consumerSlotDeaths {
		probs = append(probs, fmt.Sprintf("%d per-producer order inversions, more than the %d deaths of consumers in a waiter slot explain: %s",
			len(inverted), m.st.consumerSlotDeaths, strings.Join(limit(inverted), "; ")))
	}
	return probs
}

// stall is the longest time in which no worker completed a call, and
// what happened around it.
func (m *msgqLoad) stall() (time.Duration, string) {
	m.mu.Lock()
	held := m.held
	m.mu.Unlock()
	d, at := m.l.stall(m.start.Add(200*time.Millisecond), m.end, held) // after the workers started
	m.mu.Lock()
	defer m.mu.Unlock()
	return d, eventsAround(m.events, d, at)
}

func (m *msgqLoad) summary() string {
	d, why := m.stall()
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.st
	steps := make([]string, 0, len(st.byStep))
	for s, n := range st.byStep {
		steps = append(steps, fmt.Sprintf("%s:%d", s, n))
	}
	sort.Strings(steps)
	return fmt.Sprintf("kills %d (holding the lock %d, in a waiter slot %d), crash-hook deaths %d [%s], recoveries %d; "+
		"messages sent %d, received %d, left in the queue %d, taken by a dying consumer %d (allowed %d), sent by a dying producer unrecorded %d, "+
		"requeued out of order %d (consumer deaths in a waiter slot %d); max stall %v (%s)",
		st.kills, st.killsLock, st.killsSlot, st.hookDeaths, strings.Join(steps, " "), st.killsLock+st.killsSlot+st.hookDeaths,
		st.sent, st.received, st.drained, st.lost, st.consumerAllowance, st.unreported,
		st.inversions, st.consumerSlotDeaths, d, why)
}

// procState is the /proc state letter of pid.
func procState(pid int) string {
	if s := testutil.ProcState(pid); s != "" {
		return s
	}
	return "gone"
}
