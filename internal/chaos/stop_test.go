package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// killAClient starts a client and SIGKILLs it: a death for the registry
// to handle (its death pass bumps every segment and the kinds repair).
func killAClient(t *testing.T, c *cluster) {
	t.Helper()
	p := c.newCtl()
	p.kill()
}

// TestStopped: a process SIGSTOPped inside an operation is not "recovered"
// while a death makes the registry and the kinds repair: a message handed
// to a stopped receiver stays its own (not put back, not given to another
// receiver) and it gets it after SIGCONT; the SEM_UNDO token of a stopped
// holder is not given back, and the waiter for it is served when the
// holder, continued, gives it back itself.
func TestStopped(t *testing.T) {
	hold := 300 * time.Millisecond
	c := newCluster(t, "embedded")
	t.Run("msgq-receiver", func(t *testing.T) {
		id := c.create("q", 4096, 256, 16)
		r := c.newCtl()
		r.send("recv %d 1", id)
		waitSlot(t, c, "q", id, r.pid)
		require.True(t, r.stop())
		defer r.cont()
		gen := c.seg("q", id).DeadGen()
		killAClient(t, c)
		c.ctl.call(t, lineWait, "send %d 1 x", id) // handed to the stopped receiver
		waitRepaired(t, c, "q", id, gen)
		time.Sleep(hold)
		_, slots := holds(c.seg("q", id), r.pid)
		assert.Equal(t, 1, slots, "the stopped receiver's slot was freed: %s", segDiag(c.seg("q", id)))
		assert.Equal(t, "ENOMSG", c.ctl.call(t, lineWait, "tryrecv %d 1", id), "the message handed to the stopped receiver was taken back")
		r.cont()
		l, err := r.next(lineWait)
		require.NoError(t, err)
		assert.Equal(t, "x", strings.Fields(l)[0], "continued, it gets its message")
		assert.Equal(t, "ok", c.ctl.call(t, lineWait, "checkq %d", id))
	})
	t.Run("sem-undo-holder", func(t *testing.T) {
		id := c.create("sem", "1")
		h := c.newCtl()
		require.Equal(t, "ok", strings.Fields(h.call(t, lineWait, "op %d 0:-1:u", id))[0])
		w := c.newCtl()
		w.send("op %d 0:-1", id)
		waitSlot(t, c, "sem", id, w.pid)
		require.True(t, h.stop())
		defer h.cont()
		gen := c.seg("sem", id).DeadGen()
		killAClient(t, c)
		waitRepaired(t, c, "sem", id, gen)
		time.Sleep(hold)
		assert.Equal(t, "vals 0", c.ctl.call(t, lineWait, "getall %d", id), "the stopped holder's undo was applied")
		_, slots := holds(c.seg("sem", id), w.pid)
		assert.Equal(t, 1, slots, "the waiter must still wait")
		h.cont()
		require.Equal(t, "ok", strings.Fields(h.call(t, lineWait, "op %d 0:1:u", id))[0])
		l, err := w.next(lineWait)
		require.NoError(t, err)
		assert.Equal(t, "ok", strings.Fields(l)[0])
		assert.Equal(t, "vals 0", c.ctl.call(t, lineWait, "getall %d", id))
		h.kill() // its undo record is empty: nothing changes
		assert.Equal(t, "vals 0", c.ctl.call(t, lineWait, "getall %d", id))
	})
}
