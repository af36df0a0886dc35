package sem

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
)

// qstep is one step of a queue script: queue a waiter (it must block, or
// its immediate result is recorded), or make a change.
type qstep struct {
	wait   []Buf
	op     []Buf
	setval []int // num, val
	setall []uint16
}

func qwait(ops ...Buf) qstep     { return qstep{wait: ops} }
func qop(ops ...Buf) qstep       { return qstep{op: ops} }
func qsetval(num, val int) qstep { return qstep{setval: []int{num, val}} }
func qsetall(v ...uint16) qstep  { return qstep{setall: v} }
func (st qstep) String() string {
	switch {
	case st.wait != nil:
		return fmt.Sprintf("wait%v", st.wait)
	case st.op != nil:
		return fmt.Sprintf("op%v", st.op)
	case st.setval != nil:
		return fmt.Sprintf("setval%v", st.setval)
	}
	return fmt.Sprintf("setall%v", st.setall)
}

// runQueue runs a script on a fresh set of im's and returns its
// transcript: after every step, each waiter's state (queued, or the result
// it returned), every GETNCNT and GETZCNT, and the values. Waiters are
// goroutines of this process, so sempid tells nothing here; which waiters
// a change completes or fails, and where the others are counted, does.
func runQueue(t *testing.T, im impl, nsems int, steps []qstep) []string {
	t.Helper()
	id := im.create(t, nsems, 0o600)
	type done struct {
		k   int
		err error
	}
	results := make(chan done, 64)
	state := []string{}
	returned := 0
	queued := func() int {
		n := 0
		for i := 0; i < nsems; i++ {
			a, err := im.getNcnt(id, i)
			require.NoError(t, err)
			b, err := im.getZcnt(id, i)
			require.NoError(t, err)
			n += a + b
		}
		return n
	}
	// settle waits until every waiter that is no longer counted as queued
	// has returned, and records their results.
	settle := func() {
		deadline := time.Now().Add(10 * time.Second)
		for returned < len(state)-queued() {
			select {
			case d := <-results:
				state[d.k] = errName(d.err)
				returned++
			case <-time.After(time.Millisecond):
			}
			require.True(t, time.Now().Before(deadline), "%s: a waiter did not return", im.name)
		}
	}
	var out []string
	for _, st := range steps {
		line := st.String() + ": "
		switch {
		case st.wait != nil:
			k := len(state)
			state = append(state, "queued")
			before := queued()
			go func(ops []Buf) {
				err := im.timedOp(id, ops, 30*time.Second)
				results <- done{k, err}
			}(st.wait)
			for deadline := time.Now().Add(10 * time.Second); ; {
				// (Twice: the sum is read a call at a time, and the new
				// call may move a waiter from GETNCNT to GETZCNT meanwhile.)
				if n1, n2 := queued(), queued(); n1 == before+1 && n2 == before+1 {
					break
				}
				select {
				case d := <-results:
					state[d.k] = errName(d.err)
					returned++
				case <-time.After(time.Millisecond):
				}
				if state[k] != "queued" {
					break
				}
				require.True(t, time.Now().Before(deadline), "%s: waiter %d neither queued nor returned", im.name, k)
			}
		case st.op != nil:
			line += errName(im.op(id, st.op))
		case st.setval != nil:
			line += errName(im.setVal(id, st.setval[0], st.setval[1]))
		default:
			line += errName(im.setAll(id, st.setall))
		}
		settle()
		if im.name == usysvImpl.name {
			h, err := handle(id)
			require.NoError(t, err)
			require.NoError(t, h.check(), "after %s", st)
		}
		var n, z []int
		for i := 0; i < nsems; i++ {
			a, _ := im.getNcnt(id, i)
			b, _ := im.getZcnt(id, i)
			n, z = append(n, a), append(z, b)
		}
		out = append(out, fmt.Sprintf("%s waiters%v ncnt%v zcnt%v %s", line, state, n, z, vals(im, id)))
	}
	require.NoError(t, im.remove(id))
	for returned < len(state) {
		d := <-results
		require.Equal(t, "queued", state[d.k], "%s: waiter %d returned twice", im.name, d.k)
		require.Equal(t, "EIDRM", errName(d.err), "%s: waiter %d after IPC_RMID", im.name, d.k)
		returned++
	}
	return out
}

// TestQueueOrder runs scripts whose outcome depends on when Linux looks at
// each queued waiter (queue.go) on the kernel and on usysv, and requires
// the same transcript.
func TestQueueOrder(t *testing.T) {
	const nowait = IPC_NOWAIT
	cases := []struct {
		name  string
		nsems int
		steps []qstep
	}{
		{"zero-array-nowait", 3, []qstep{ // FINDINGS F11
			qsetval(0, 1),
			qwait(b(1, 0, nowait), b(0, 0, 0)), // sem 1 is 0; blocks on sem 0
			qop(b(1, 1, 0), b(0, 1, 0)),        // no semaphore reaches 0: not looked at
			qop(b(2, 1, 0)),
			qop(b(2, -1, 0)), // sem 2 reaches 0: looked at, EAGAIN
		}},
		{"zero-array-stale-block", 4, []qstep{ // GETZCNT where Linux counts it
			qsetval(0, 1),
			qwait(b(1, 0, 0), b(0, 0, 0)), // blocks on sem 0
			qop(b(1, 1, 0)),               // still counted on sem 0
			qop(b(3, 1, 0)),
			qop(b(3, -1, 0)),    // sem 3 reaches 0: now blocks on sem 1
			qsetval(1, 0),       // blocks on sem 0
			qsetall(0, 0, 0, 0), // completes
		}},
		{"zero-array-setval", 2, []qstep{
			qsetval(0, 1),
			qwait(b(1, 0, nowait), b(0, 0, 0)),
			qsetval(1, 1), // SETVAL looks at every semaphore: none is 0
			qsetval(1, 1),
			qsetval(0, 0), // sem 0 is 0: looked at, EAGAIN
		}},
		{"global-restart", 2, []qstep{
			qwait(b(0, -1, 0)),
			qwait(b(1, -1, 0), b(0, 1, 0)),
			qwait(b(0, -1, 0)),
			qop(b(1, 1, 0)), // the array proceeds; then the first waiter, not the last
		}},
		{"per-sem-no-restart", 2, []qstep{
			qwait(b(0, -2, 0)),
			qwait(b(0, -1, 0)),
			qwait(b(0, 0, 0)),
			qop(b(0, 1, 0)), // the second decrement, then the zero waiter
			qop(b(0, 2, 0)),
		}},
		{"array-nowait-fails", 2, []qstep{
			qwait(b(0, -1, 0), b(1, 0, nowait)),
			qop(b(1, 1, 0)), // blocks on sem 0 still
			qop(b(0, 1, 0)), // sem 0 ok, sem 1 not 0: EAGAIN
		}},
		{"array-erange", 2, []qstep{
			qsetval(1, SEMVMX),
			qwait(b(0, -1, 0), b(1, 1, 0)),
			qsetval(0, 1), // ERANGE on re-evaluation
		}},
		{"post-with-array-elsewhere", 3, []qstep{
			qwait(b(0, -1, 0)),
			qwait(b(1, -1, 0), b(2, -1, 0)),
			qwait(b(0, 0, 0)),
			qop(b(0, 1, 0)),
			qop(b(2, 1, 0)),
			qop(b(1, 1, 0)),
		}},
		{"merge-then-unmerge", 3, []qstep{
			qwait(b(0, -1, 0)),
			qwait(b(1, -1, 0)),
			qwait(b(0, -1, 0), b(1, -1, 0)),
			qwait(b(1, -1, 0)),
			qsetall(1, 1, 0), // the two singles; the array cannot
			qop(b(0, 1, 0), b(1, 1, 0)),
			qop(b(1, 1, 0)),
			qop(b(0, 1, 0)),
		}},
		{"zero-single-nowait-array", 3, []qstep{
			qsetval(0, 2),
			qwait(b(0, -1, 0), b(1, 0, nowait), b(0, -2, 0)),
			qop(b(1, 1, 0)), // any change looks at the array: EAGAIN
		}},
		{"undo-waiters", 2, []qstep{
			qwait(b(0, -1, SEM_UNDO)),
			qwait(b(0, 0, 0), b(1, 0, 0)),
			qop(b(0, 1, 0)), // the decrement; then sem 0 is 0 but sem 1 is too: both
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out [2][]string
			for k, im := range impls {
				out[k] = runQueue(t, im, c.nsems, c.steps)
			}
			require.Equal(t, strings.Join(out[0], "\n"), strings.Join(out[1], "\n"), "kernel vs usysv")
		})
	}
}

// TestQueueSempid checks, with real processes, the order in which a change
// completes waiters, through sempid (the last one's pid): Linux's zero
// list of a semaphore runs after the decrement that brings it to 0, and
// the per-semaphore zero list before the global one.
func TestQueueSempid(t *testing.T) {
	forImpls(t, func(t *testing.T, im impl) {
		id := im.create(t, 2, 0o600)
		start := func(cmd string, num, n int, zero bool) *testutil.Proc {
			p := client(t, im, id)
			p.Send(cmd)
			waitCount(t, im, id, num, n, zero)
			return p
		}
		sempid := func(num int) int {
			p, err := im.getPid(id, num)
			require.NoError(t, err)
			return p
		}
		// A post: the decrement, then the zero waiters in their order.
		require.NoError(t, im.setVal(id, 0, 1))
		z1 := start("op 0:0", 0, 1, true)
		d := start("op 0:-2", 0, 1, false)
		z2 := start("op 0:0", 0, 2, true)
		require.NoError(t, im.op(id, []Buf{b(0, 1, 0)}))
		for _, p := range []*testutil.Proc{z1, d, z2} {
			p.Expect("ok", lineWait)
		}
		assert.Equal(t, z2.Pid(), sempid(0), "the later zero waiter completes last")

		// A decrement to 0: the semaphore's zero list, then the arrays.
		require.NoError(t, im.setVal(id, 0, 1))
		za := start("op 0:0,1:0", 0, 1, true)
		z := start("op 0:0", 0, 2, true)
		require.NoError(t, im.op(id, []Buf{b(0, -1, 0)}))
		za.Expect("ok", lineWait)
		z.Expect("ok", lineWait)
		assert.Equal(t, za.Pid(), sempid(0), "the array completes after the single zero waiter")
		assert.Equal(t, za.Pid(), sempid(1))
	})
}
