package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The checks must be able to fail. These tests feed them what a broken
// queue or set would produce.

// TestMsgqVerifyCatches: verify reports a duplicate, messages lost beyond
// what consumer deaths allow, a message from a producer stopped cleanly
// that it never saw sent, too many unrecorded messages from a dying
// producer, and order inversions beyond what consumer deaths explain.
func TestMsgqVerifyCatches(t *testing.T) {
	l := newLedger(t, 1)
	m := &msgqLoad{t: t, l: l, cfg: msgqConfig{ntypes: 2}, prods: map[int]*prodInc{}}
	r := &msgqRole{cons: consSpec{"fifo", 0, 1}, batch: 1, lane: 0}
	r.incs = []*consInc{{pid: 1, from: 0, batch: 1}}
	m.roles = []*msgqRole{r}
	m.prods[1] = &prodInc{prod: 1, batch: 1, graceful: true}
	m.prods[2] = &prodInc{prod: 2, batch: 1, dead: true}
	l.sent(1).Store(5) // producer 1 saw 0..4 sent
	l.sent(2).Store(2) // producer 2 saw 0..1 sent
	for _, e := range [][2]int{{1, 0}, {1, 2}, {1, 1}, {1, 1}, {1, 5}, {2, 0}, {2, 1}, {2, 2}, {2, 3}} {
		require.True(t, l.record(0, e[0], uint64(e[1])))
	}
	// Producer 1: 1 twice (duplicate), 3 and 4 lost, 5 unrecorded though it
	// stopped cleanly, 1 after 2 (inversion). Producer 2: 2 and 3
	// unrecorded, one more than a single send in flight.
	probs := strings.Join(m.verify(nil), "\n")
	assert.Contains(t, probs, "producer 1 seq 1 received 2 times")
	assert.Contains(t, probs, "2 messages sent and never received, more than the 0")
	assert.Contains(t, probs, "producer 1 stopped cleanly, but 1 messages beyond")
	assert.Contains(t, probs, "producer 2: 2 messages beyond the 2 it saw sent")
	assert.Contains(t, probs, "order inversions")

	// With the deaths that explain them, the same losses and inversions pass.
	m2 := &msgqLoad{t: t, l: l, cfg: msgqConfig{ntypes: 2}, prods: map[int]*prodInc{}, roles: m.roles}
	m2.prods[1] = &prodInc{prod: 1, batch: 1, dead: true}
	m2.prods[2] = &prodInc{prod: 2, batch: 2, dead: true}
	m2.st.consumerAllowance, m2.st.consumerKills, m2.st.consumerSlotDeaths = 2, 2, 2
	probs = strings.Join(m2.verify([][2]uint64{{1, 1}}), "\n")
	assert.NotContains(t, probs, "never received")
	assert.NotContains(t, probs, "inversions")
	assert.Contains(t, probs, "received 3 times", "the drain counts too")
}

// TestSemChecks: the invariants a checker and the end check apply.
func TestSemChecks(t *testing.T) {
	lay := semLayout{K: 3}
	v := func(x ...uint16) []uint16 { return x }
	assert.Equal(t, "", lay.violation(v(10, 10, 10, 2, 0, 3, 7, 4)))
	assert.Equal(t, "", lay.violation(v(5, 15, 10, 1, 1, 0, 0, 0)))
	assert.Contains(t, lay.violation(v(10, 10, 11, 2, 0, 3, 0, 0)), "sum of T")
	assert.Contains(t, lay.violation(v(10, 10, 10, 2, 1, 3, 0, 0)), "L+Z")
	assert.Contains(t, lay.violation(v(10, 10, 10, 2, 0, 4, 0, 0)), "M is 4")
	assert.Contains(t, lay.violation(v(10, 10, 10, 2, 0, 3, 0, 5)), "P is 5")
	assert.Contains(t, lay.violation(v(10, 10, 10, 2, 0, 3, 0)), "7 values")
	want := lay.initial()
	assert.True(t, undoDone("vals 9,11,10,2,0,3,99,1", lay, want))
	assert.False(t, undoDone("vals 10,10,10,1,1,3,0,0", lay, want), "an undo not applied")
	assert.False(t, undoDone("vals 10,10,10,2,0,2,0,0", lay, want), "a solo undo not applied")
	assert.False(t, undoDone("vals 10,10,10,2,0,3,0", lay, want))

	// P stuck: at semPosts with nobody taking, or above 0 beside a blocked
	// taker, GETPID(P) unchanged.
	t0 := time.Unix(1000, 0)
	var w postWatch
	for _, c := range []struct {
		p, n, pid int
		at        time.Duration
		want      time.Duration
	}{
		{semPosts, 0, 7, 0, 0}, // a new GETPID: noted
		{semPosts, 0, 7, 0, 0}, // stuck from here
		{semPosts, 0, 7, 2 * time.Second, 2 * time.Second},
		{semPosts, 0, 8, 3 * time.Second, 0}, // a take (or post) changed GETPID
		{2, 0, 8, 4 * time.Second, 0},        // below semPosts, nobody waiting: fine
		{2, 1, 8, 5 * time.Second, 0},
		{2, 1, 8, 9 * time.Second, 4 * time.Second}, // a post beside a blocked taker
		{0, 2, 8, 10 * time.Second, 0},
		{2, 1, 8, 11 * time.Second, 0},
	} {
		assert.Equal(t, c.want, w.look(c.p, c.n, c.pid, t0.Add(c.at)), "%+v", c)
	}
}

// TestSemCheckerCatches: a checker process sees a broken invariant (an op
// that creates a token) and the load reports it.
func TestSemCheckerCatches(t *testing.T) {
	c := newCluster(t, "embedded")
	s := newSemLoad(t, c, 3, []string{"checker"}, semHooks{})
	c.ctl.call(t, lineWait, "op %d 0:1", s.id)
	deadline := time.Now().Add(lineWait)
	for s.roles[0].cur.alive() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	c.ctl.call(t, lineWait, "op %d 0:-1", s.id)
	probs := strings.Join(s.finish(), "\n")
	assert.Contains(t, probs, "invariant broken while running: checker")
	assert.Contains(t, probs, "sum_of_T_is_31")
}

// TestSemCheckerCatchesStuckPost: a checker reports P held at semPosts
// with nobody taking (no taker runs here) for postStuck.
func TestSemCheckerCatchesStuckPost(t *testing.T) {
	c := newCluster(t, "embedded")
	s := newSemLoad(t, c, 2, []string{"checker"}, semHooks{})
	c.ctl.call(t, lineWait, "op %d %d:%d", s.id, s.lay.P(), semPosts)
	deadline := time.Now().Add(postStuck + lineWait)
	for s.roles[0].cur.alive() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	probs := strings.Join(s.finish(), "\n")
	assert.Contains(t, probs, "invariant broken while running: checker")
	assert.Contains(t, probs, "BAD P_stuck_at_4_with_0_blocked_takers")
}
