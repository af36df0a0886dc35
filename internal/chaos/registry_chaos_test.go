package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usysv/usysv/registry"
	"github.com/usysv/usysv/shm"
)

// regClients are chaos-regclient processes: Get/Stat/Remove in a loop.
type regClients struct {
	t testing.TB
	c *cluster

	mu    sync.Mutex
	procs []*regClient
	calls map[string][]regCall // by op: g, s, r
	errs  []string
}

type regClient struct {
	kind string
	p    *proc
	key  int // the key of its current object
}

type regCall struct {
	t0, t1 time.Time
	ok     bool
	res    string
}

func newRegClients(t testing.TB, c *cluster, kinds ...string) *regClients {
	r := &regClients{t: t, c: c, calls: map[string][]regCall{}}
	for _, k := range kinds {
		r.launch(&regClient{kind: k})
	}
	return r
}

func (r *regClients) launch(rc *regClient) {
	rc.p = r.c.start("chaos-regclient", []string{rc.kind}, func(p *proc, l line) {
		f := strings.Fields(l.s)
		r.mu.Lock()
		defer r.mu.Unlock()
		switch {
		case len(f) == 2 && f[0] == "k":
			rc.key = atoi(f[1])
		case len(f) == 4 && (f[0] == "g" || f[0] == "s" || f[0] == "r"):
			t0, _ := strconv.ParseInt(f[1], 10, 64)
			t1, _ := strconv.ParseInt(f[2], 10, 64)
			r.calls[f[0]] = append(r.calls[f[0]], regCall{time.Unix(0, t0), time.Unix(0, t1), f[3] == "ok", f[3]})
		case l.s == "X":
		default:
			r.errs = append(r.errs, fmt.Sprintf("regclient pid %d: %s", p.pid, l.s))
		}
	})
	r.mu.Lock()
	r.procs = append(r.procs, rc)
	r.mu.Unlock()
}

// byPid finds the client with pid.
func (r *regClients) byPid(pid int) *regClient {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rc := range r.procs {
		if rc.p.pid == pid && rc.p.alive() {
			return rc
		}
	}
	return nil
}

// kill kills a client (it hosts the registry) and removes the object it
// may have left, then starts another.
func (r *regClients) kill(rc *regClient) {
	rc.p.kill()
	r.mu.Lock()
	key := rc.key
	for i, o := range r.procs {
		if o == rc {
			r.procs = append(r.procs[:i], r.procs[i+1:]...)
			break
		}
	}
	r.mu.Unlock()
	if key != 0 {
		if l := r.c.ctl.call(r.t, hangAfter, "rmkey %s %d", rc.kind, key); l != "ok" && l != "ENOENT" {
			r.t.Errorf("chaos: remove the object of a killed regclient (key %d): %s", key, l)
		}
	}
	r.launch(&regClient{kind: rc.kind})
}

// recovered returns, for each op, how long after `at` the first call
// succeeded that ended after `at`; ok is false while one has not.
func (r *regClients) recovered(at time.Time) (map[string]time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]time.Duration{}
	for _, op := range []string{"g", "s", "r"} {
		for _, c := range r.calls[op] {
			if c.ok && c.t1.After(at) {
				if d, seen := out[op]; !seen || c.t1.Sub(at) < d {
					out[op] = c.t1.Sub(at)
				}
			}
		}
		if _, seen := out[op]; !seen {
			return out, false
		}
	}
	return out, true
}

// failures lists the calls that failed, by result.
func (r *regClients) failures() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := map[string]int{}
	total := 0
	for op, cs := range r.calls {
		for _, c := range cs {
			total++
			if !c.ok {
				n[op+":"+c.res]++
			}
		}
	}
	var out []string
	for k, v := range n {
		out = append(out, fmt.Sprintf("%s×%d", k, v))
	}
	sort.Strings(out)
	if len(out) == 0 {
		return fmt.Sprintf("%d calls, none failed", total)
	}
	return fmt.Sprintf("%d calls, failed: %s", total, strings.Join(out, " "))
}

func (r *regClients) stop() []string {
	var probs []string
	r.mu.Lock()
	procs := append([]*regClient(nil), r.procs...)
	r.mu.Unlock()
	for _, rc := range procs {
		rc.p.closeIn()
	}
	for _, rc := range procs {
		if !rc.p.wait(hangAfter) {
			probs = append(probs, fmt.Sprintf("regclient pid %d did not stop within %v", rc.p.pid, hangAfter))
			rc.p.kill()
		} else if rc.p.exitCode() != 0 {
			probs = append(probs, fmt.Sprintf("regclient pid %d: %s", rc.p.pid, rc.p.exitStatus()))
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append(probs, r.errs...)
}

// chaosRegistry: the registry host is SIGKILLed again and again while
// clients work — first a standalone registry process (what cmd/usysvd
// runs: registry.NewServer with the kinds' repair hooks linked in), then
// whichever client took over from it; and, in a second cluster, a client
// that hosts the registry embedded. The clients are a msgq load
// (producers, consumers), a sem load (movers, SEM_UNDO holders, a
// checker) and two processes calling Get/Stat/Remove in a loop. Measured:
// how long after each SIGKILL the first Get, Stat and Remove succeeded
// again, and the longest time in which no fast-path operation completed
// around the kills; checked: the loads' guarantees as in chaosMsgq and
// chaosSem, every registry call succeeding again, nothing leaked.
func chaosRegistry(t *testing.T, rep *report) {
	d := share(0.1, 0)
	for _, mode := range []string{"daemon", "embedded"} {
		t.Run(mode, func(t *testing.T) {
			c := newCluster(t, mode)
			if c.ctl == c.host {
				c.ctl = c.newCtl() // so that the first host is not also the ctl client
			}
			m := newMsgqLoad(t, c, msgqConfig{capacity: 8192, maxMsg: 1024, waiters: 16, ntypes: 2, lo: payloadMin, hi: 600,
				// Two FIFO consumers: with one, killing it (as a host) stopped
				// the queue until its successor process started, which is
				// the test's doing, not the library's.
				producers: []int{1, 1}, consumers: []consSpec{{"fifo", 0, 1}, {"fifo", 0, 4}, {"type", 2, 1}}})
			s := newSemLoad(t, c, 3, []string{"mover", "holder", "holder", "solo", "checker"}, semHooks{})
			r := newRegClients(t, c, "sem", "q")
			var worst map[string]time.Duration
			var gets, stalls []time.Duration
			host := c.host.pid
			cycles := 0
			var rm dirRemovals
			start := time.Now()
			for cycles < 2 || time.Since(start) < d {
				time.Sleep(300 * time.Millisecond)
				if cycles%2 == 1 {
					// Every other cycle, the socket's directory is removed
					// under the running host first (registry guard.go).
					at := time.Now()
					m.note(at, "removed the registry's socket directory")
					s.note(at, "removed the registry's socket directory")
					pid, back := c.removeSocketDir()
					time.Sleep(50 * time.Millisecond)
					ms, _ := m.l.stall(at.Add(-20*time.Millisecond), time.Now(), nil)
					ss, _ := s.l.stall(at.Add(-20*time.Millisecond), time.Now(), nil)
					rm.add(back, max(ms, ss), pid != host)
					host = pid
					time.Sleep(100 * time.Millisecond)
				}
				at := time.Now()
				killed, killedAt := c.killHost(host, m, s, r)
				m.note(killedAt, fmt.Sprintf("killed the registry host (%s) pid %d", killed, host))
				s.note(killedAt, fmt.Sprintf("killed the registry host (%s) pid %d", killed, host))
				// Recovery: Get, Stat and Remove each succeed again.
				for {
					got, ok := r.recovered(killedAt)
					if ok {
						for op, v := range got {
							if worst == nil {
								worst = map[string]time.Duration{}
							}
							worst[op] = max(worst[op], v)
						}
						gets = append(gets, got["g"])
						break
					}
					if time.Since(killedAt) > hangAfter {
						t.Fatalf("chaos: registry calls not working %v after its host (%s pid %d) was killed: %s; %s",
							hangAfter, killed, host, r.failures(), segDiag(m.seg))
					}
					m.reap()
					time.Sleep(time.Millisecond)
				}
				time.Sleep(50 * time.Millisecond)
				ms, _ := m.l.stall(at.Add(-20*time.Millisecond), time.Now(), nil)
				ss, _ := s.l.stall(at.Add(-20*time.Millisecond), time.Now(), nil)
				stalls = append(stalls, max(ms, ss))
				// The new host (a client's view may lag a moment behind).
				for host = c.serverPid(c.ctl); procState(host) == "gone"; host = c.serverPid(c.ctl) {
					if time.Since(at) > hangAfter {
						t.Fatalf("chaos: the registry is still served by dead pid %d", host)
					}
					time.Sleep(time.Millisecond)
				}
				cycles++
			}
			probs := r.stop()
			probs = append(probs, m.finish()...)
			probs = append(probs, s.finish()...)
			sort.Slice(stalls, func(i, j int) bool { return stalls[i] > stalls[j] })
			slices.Sort(gets)
			sum := fmt.Sprintf("%s: host killed %d times; first success after the SIGKILL: Get ≤ %v (median %v), Stat ≤ %v, Remove ≤ %v; "+
				"longest fast-path stall around a kill %v; %s; registry calls: %s; msgq: %s; sem: %s",
				mode, cycles, worst["g"].Round(time.Microsecond), gets[len(gets)/2].Round(time.Microsecond),
				worst["s"].Round(time.Microsecond), worst["r"].Round(time.Microsecond),
				stalls[0], rm, r.failures(), m.summary(), s.summary())
			rep.add("registry %s\n  msgq stall caught live: %s\n  sem stall caught live: %s", sum, m.w.snapshot(), s.w.snapshot())
			rep.addMsgq("registry/"+mode, m)
			rep.addSem("registry/"+mode, s)
			rep.mu.Lock()
			rep.tot.hostKills += cycles
			rep.mu.Unlock()
			t.Log(sum)
			for _, p := range probs {
				t.Error(p)
			}
		})
	}
}

// dirRemovals sums up the socket directory's removals in chaosRegistry.
type dirRemovals struct {
	n, moved    int           // removals; those after which another process served
	back, stall time.Duration // worst: from the directory back to a connection served; fast-path stall
}

func (r *dirRemovals) add(back, stall time.Duration, moved bool) {
	r.n++
	r.back, r.stall = max(r.back, back), max(r.stall, stall)
	if moved {
		r.moved++
	}
}

func (r dirRemovals) String() string {
	return fmt.Sprintf("socket directory removed %d times: a new connection served ≤ %v after it was back, by another host %d times, longest fast-path stall around it %v",
		r.n, r.back.Round(time.Microsecond), r.moved, r.stall)
}

// removeSocketDir removes the registry's socket directory, as rm -rf does
// (again until it is gone: the host puts its files back meanwhile, which
// can make the last rmdir fail), checks that no process makes it again
// (the host steps down; its clients do not make it), makes it again and
// waits until a new connection is served, by a registry that knows every
// object of the cluster. It returns that registry's pid and how long after
// the directory was back it answered.
func (c *cluster) removeSocketDir() (int, time.Duration) {
	c.t.Helper()
	dir := filepath.Dir(c.sock)
	at := time.Now()
	for os.RemoveAll(dir) != nil {
		if time.Since(at) > hangAfter {
			c.t.Fatalf("chaos: %s could not be removed in %v", dir, hangAfter)
		}
	}
	time.Sleep(20 * time.Millisecond)
	if _, err := os.Stat(dir); err == nil {
		c.t.Errorf("chaos: %s was made again after its removal", dir)
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		c.t.Fatalf("chaos: %v", err)
	}
	at = time.Now()
	var last string
	for time.Since(at) < hangAfter {
		cl, err := registry.Dial(c.sock)
		if err != nil {
			last = err.Error()
			time.Sleep(time.Millisecond)
			continue
		}
		back := time.Since(at)
		pid := cl.ServerPid()
		known := map[obj]bool{}
		for _, kind := range []shm.Kind{shm.KindSem, shm.KindMsg} {
			objs, err := cl.List(kind)
			if err != nil {
				c.t.Fatalf("chaos: list after the socket directory's removal: %v", err)
			}
			for _, o := range objs {
				k := "sem"
				if kind == shm.KindMsg {
					k = "q"
				}
				known[obj{k, o.ID}] = true
			}
		}
		cl.Close()
		c.mu.Lock()
		for o, live := range c.objs {
			if live && !known[o] {
				c.t.Errorf("chaos: after the socket directory's removal, the registry (pid %d) does not know %s %d", pid, o.kind, o.id)
			}
		}
		c.mu.Unlock()
		return pid, back
	}
	c.t.Fatalf("chaos: no registry served %s %v after its directory was removed: %s", c.sock, hangAfter, last)
	return 0, 0
}

// killHost SIGKILLs the process serving the registry (pid) — the daemon,
// or whichever client hosts it now — keeping the loads' books, and says
// what it was and when the SIGKILL went (a load's process is stopped
// first, which can take a while: its registry calls wait meanwhile).
func (c *cluster) killHost(pid int, m *msgqLoad, s *semLoad, r *regClients) (string, time.Time) {
	if pid == c.host.pid && c.host.alive() {
		at := time.Now()
		c.host.kill()
		return "first host", at
	}
	if pid == c.ctl.pid {
		at := time.Now()
		c.ctl.kill()
		c.ctl = c.newCtl()
		return "ctl client", at
	}
	for _, role := range m.roles {
		if role.cur.pid == pid {
			return "msgq " + role.cur.name, m.killRole(role)
		}
	}
	for _, role := range s.roles {
		if role.cur.pid == pid {
			return "sem " + role.name, s.killRole(role)
		}
	}
	if rc := r.byPid(pid); rc != nil {
		at := time.Now()
		r.kill(rc)
		return "regclient", at
	}
	env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	helper := ""
	for _, kv := range strings.Split(string(env), "\x00") {
		if strings.HasPrefix(kv, helperEnv+"=") {
			helper = kv
		}
	}
	c.t.Fatalf("chaos: registry served by pid %d (%s, %s), which is none of the test's processes: %s; %s",
		pid, procState(pid), helper, rolesDiag(m.roles), segDiag(m.seg))
	return "", time.Time{}
}
