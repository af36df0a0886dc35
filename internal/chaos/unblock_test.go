package chaos

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/msgq"
	"github.com/usysv/usysv/sem"
	"github.com/usysv/usysv/shm"
)

// lastNs parses the last field of a line ("at NS", "ok NS", "TEXT NS") as
// a wall-clock time.
func lastNs(t testing.TB, l string) time.Time {
	t.Helper()
	f := strings.Fields(l)
	require.NotEmpty(t, f, "empty line")
	n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
	require.NoError(t, err, "line %q", l)
	return time.Unix(0, n)
}

// waitSlot waits until process pid sleeps in a waiter slot of the object.
func waitSlot(t testing.TB, c *cluster, kind string, id, pid int) {
	t.Helper()
	s := c.seg(kind, id)
	deadline := time.Now().Add(lineWait)
	for {
		if _, n := holds(s, pid); n > 0 && procState(pid) == "S" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d never slept in a waiter slot: %s", pid, segDiag(s))
		}
		time.Sleep(time.Millisecond)
	}
}

// An unblockCase measures the time from a death to another process being
// unblocked. run sets the scene in cluster c, kills (or lets die) the
// process, with the registry stopped from before the death if down, and
// returns the time from the death to the unblock; with the registry down
// it continues the registry after outage.
type unblockCase struct {
	name string
	what string // what the waiter waited for
	run  func(t *testing.T, c *cluster, down bool, outage time.Duration) time.Duration
}

// stopRegistry stops the registry's host (down) and returns a func that
// continues it.
func stopRegistry(t *testing.T, c *cluster, down bool) func() {
	if !down {
		return func() {}
	}
	require.True(t, c.host.stop(), "stop the registry host")
	return c.host.cont
}

var unblockCases = []unblockCase{
	{"msgq-lock", "the queue's lock, held by a typed receive killed at recv-locked", func(t *testing.T, c *cluster, down bool, _ time.Duration) time.Duration {
		id := c.create("q", 4096, 256, 16)
		c.ctl.call(t, lineWait, "send %d 5 x", id)
		spin := c.spinner(t, "q", id, 9)
		// A typed receive takes the lock (FIFO sends and receives may take
		// a lock-free path).
		k := c.ctlWith(t, msgq.KillAtEnv+"=recv-locked")
		defer stopRegistry(t, c, down)()
		k.send("then recv %d 5", id)
		out := lines(t, k, "", 2)
		died(t, k, "recv-locked", out)
		return spin.after(t, lastNs(t, out[0]))
	}},
	{"sem-lock", "the set's lock, held by a semop killed at evaluated", func(t *testing.T, c *cluster, down bool, _ time.Duration) time.Duration {
		id := c.create("sem", "0,0,1")
		spin := c.spinner(t, "sem", id, 2)
		k := c.ctlWith(t, sem.CrashEnv+"=evaluated")
		defer stopRegistry(t, c, down)()
		k.send("then op %d 0:1,1:1", id)
		out := lines(t, k, "", 2)
		died(t, k, "evaluated", out)
		return spin.after(t, lastNs(t, out[0]))
	}},
	{"sem-undo", "a token held with SEM_UNDO by a process SIGKILLed while not in a call", func(t *testing.T, c *cluster, down bool, outage time.Duration) time.Duration {
		id := c.create("sem", "1")
		h := c.newCtl()
		require.Equal(t, "ok", strings.Fields(h.call(t, lineWait, "op %d 0:-1:u", id))[0])
		w := c.newCtl()
		w.send("op %d 0:-1", id)
		waitSlot(t, c, "sem", id, w.pid)
		cont := stopRegistry(t, c, down)
		at := time.Now()
		h.kill()
		return waitUnblock(t, w, at, down, outage, cont)
	}},
	{"sem-committed", "an op array killed after its commit (committed), which owed the waiter its wake-up", func(t *testing.T, c *cluster, down bool, outage time.Duration) time.Duration {
		id := c.create("sem", "0,0,1")
		w := c.newCtl()
		w.send("op %d 1:-1", id)
		waitSlot(t, c, "sem", id, w.pid)
		k := c.ctlWith(t, sem.CrashEnv+"=committed")
		cont := stopRegistry(t, c, down)
		k.send("then op %d 0:1,1:1", id)
		out := lines(t, k, "", 2)
		died(t, k, "committed", out)
		return waitUnblock(t, w, lastNs(t, out[0]), down, outage, cont)
	}},
	{"sem-committed+contender", "the same, with a third process using the set (it takes the lock over)", func(t *testing.T, c *cluster, down bool, outage time.Duration) time.Duration {
		id := c.create("sem", "0,0,1")
		spin := c.spinner(t, "sem", id, 2)
		defer spin.p.kill()
		w := c.newCtl()
		w.send("op %d 1:-1", id)
		waitSlot(t, c, "sem", id, w.pid)
		k := c.ctlWith(t, sem.CrashEnv+"=committed")
		cont := stopRegistry(t, c, down)
		k.send("then op %d 0:1,1:1", id)
		out := lines(t, k, "", 2)
		died(t, k, "committed", out)
		l, err := w.next(lineWait)
		cont()
		require.NoError(t, err, "the waiter was not woken")
		return lastNs(t, l).Sub(lastNs(t, out[0]))
	}},
	{"msgq-space", "queue space freed by a receiver killed at recv-freed (it never woke the sender)", func(t *testing.T, c *cluster, down bool, outage time.Duration) time.Duration {
		id := c.create("q", 1024, 256, 16)
		c.ctl.call(t, lineWait, "fill %d 1 1", id)
		s := c.newCtl()
		s.send("send %d 1 s", id)
		waitSlot(t, c, "q", id, s.pid)
		k := c.ctlWith(t, msgq.KillAtEnv+"=recv-freed")
		cont := stopRegistry(t, c, down)
		k.send("then recv %d 1", id)
		out := lines(t, k, "", 2)
		died(t, k, "recv-freed", out)
		return waitUnblock(t, s, lastNs(t, out[0]), down, outage, cont)
	}},
}

// waitUnblock waits for waiter w's answer and returns the time from at to
// it. With the registry down it waits up to outage (then nobody may tell
// the death; a waiter that goes on meanwhile is measured, not failed),
// then continues the registry. It fails only if w is never woken.
func waitUnblock(t *testing.T, w *proc, at time.Time, down bool, outage time.Duration, cont func()) time.Duration {
	t.Helper()
	if down {
		l, err := w.next(outage)
		if err == nil {
			cont()
			return lastNs(t, l).Sub(at)
		}
		cont()
	}
	l, err := w.next(lineWait)
	require.NoError(t, err, "the waiter was not woken")
	require.Equal(t, "ok", strings.Fields(l)[0], l)
	return lastNs(t, l).Sub(at)
}

// measureUnblock runs every case reps times with the registry up and with
// it stopped, and returns a table of min / median / max.
func measureUnblock(t *testing.T, reps int, outage time.Duration) []string {
	var out []string
	for _, uc := range unblockCases {
		for _, down := range []bool{false, true} {
			name := uc.name + "/registry-up"
			if down {
				name = uc.name + "/registry-stopped"
			}
			var ds []time.Duration
			t.Run(name, func(t *testing.T) {
				c := newCluster(t, "embedded")
				c.ctl = c.newCtl() // the host is stopped in the "down" runs
				for i := 0; i < reps; i++ {
					ds = append(ds, uc.run(t, c, down, outage))
				}
			})
			if len(ds) == 0 {
				continue
			}
			sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
			out = append(out, fmt.Sprintf("%-40s min %8v  median %8v  max %8v  (%d runs) — waiting for %s", name,
				ds[0].Round(10*time.Microsecond), ds[len(ds)/2].Round(10*time.Microsecond), ds[len(ds)-1].Round(10*time.Microsecond), len(ds), uc.what))
		}
	}
	return out
}

// TestDeathToUnblock measures, for each way a process can wait on one that
// dies, the time from the death to the waiter being unblocked, with the
// registry up (its pidfd sees the death at once) and stopped (nobody is
// told: a lock waiter finds the dead holder itself within
// shm.LivenessInterval; a waiter whose wake-up the dead process owed waits
// until a registry runs again, here for the outage, or until a third
// process takes the lock over). The numbers are reported, not asserted
// (they are timing); a waiter never unblocked fails. TestChaos/unblock
// repeats them for the worst case.
func TestDeathToUnblock(t *testing.T) {
	for _, l := range measureUnblock(t, 1, 300*time.Millisecond) {
		t.Log(l)
	}
}

var _ = shm.LivenessInterval
