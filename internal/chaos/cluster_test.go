package chaos

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/registry"
	"github.com/usysv/usysv/shm"
)

// A cluster is one registry of its own (a socket in a fresh directory, so
// a namespace of its own) hosted by a helper process, with every helper of
// the test pointed at it. The test process itself is no client: it only
// starts, kills, stops and inspects processes, maps segments read-write
// to look at their lock and waiter table, and removes what it made.
type cluster struct {
	t testing.TB
	starter
	sock string
	ns   uint64
	host *proc // the registry host it started with (embedded: also the ctl)
	ctl  *proc // a client answering ctl commands

	mu   sync.Mutex
	objs map[obj]bool
	segs map[obj]*shm.Segment
}

type obj struct {
	kind string // "q" or "sem"
	id   int
}

func (o obj) shmKind() shm.Kind {
	if o.kind == "q" {
		return shm.KindMsg
	}
	return shm.KindSem
}

// newCluster starts a registry: mode "embedded" (a client process that
// hosts it, and also serves ctl commands) or "daemon" (a standalone
// registry process, plus a ctl client).
func newCluster(t testing.TB, mode string) *cluster {
	t.Helper()
	return newClusterEnv(t, mode)
}

// newClusterEnv is newCluster with extra environment for the host.
func newClusterEnv(t testing.TB, mode string, hostEnv ...string) *cluster {
	t.Helper()
	dir, err := os.MkdirTemp(os.Getenv("USYSV_TEST_DIR"), "chaos-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755))
	sock := filepath.Join(dir, "reg.sock")
	c := &cluster{t: t, starter: starter{t: t, env: []string{"USYSV_SOCKET=" + sock}}, sock: sock,
		ns: shm.Namespace(sock), objs: map[obj]bool{}, segs: map[obj]*shm.Segment{}}
	t.Cleanup(c.cleanup)
	c.host = c.start("chaos-host", []string{mode}, nil, hostEnv...)
	if l, err := c.host.next(20 * time.Second); err != nil || l != "ready" {
		t.Fatalf("chaos: registry host: %q %v", l, err)
	}
	if mode == "embedded" {
		c.ctl = c.host
	} else {
		c.ctl = c.newCtl()
	}
	return c
}

// newCtl starts another client that answers ctl commands.
func (c *cluster) newCtl() *proc {
	c.t.Helper()
	p := c.start("chaos-ctl", nil, nil)
	if l, err := p.next(20 * time.Second); err != nil || l != "ready" {
		c.t.Fatalf("chaos: ctl client: %q %v", l, err)
	}
	return p
}

// create makes an object through the ctl client ("newq CAP MAXMSG
// WAITERS" or "newsem V,V,...") and returns its id; it is removed when
// the test ends.
func (c *cluster) create(kind string, args ...any) int {
	c.t.Helper()
	cmd := "newq"
	if kind == "sem" {
		cmd = "newsem"
	}
	l := c.ctl.call(c.t, 20*time.Second, cmd+strings.Repeat(" %v", len(args)), args...)
	var id int
	if _, err := fmt.Sscanf(l, "id %d", &id); err != nil {
		c.t.Fatalf("chaos: %s: %q", cmd, l)
	}
	c.mu.Lock()
	c.objs[obj{kind, id}] = true
	c.mu.Unlock()
	return id
}

// seg maps an object's segment into the test process, for looking at its
// lock and waiter table.
func (c *cluster) seg(kind string, id int) *shm.Segment {
	c.t.Helper()
	o := obj{kind, id}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.segs[o]; s != nil {
		return s
	}
	s, err := shm.Map(id, o.shmKind(), c.ns)
	require.NoError(c.t, err)
	c.segs[o] = s
	return s
}

// holds says what process pid holds in a segment: the lock, and how many
// waiter slots.
func holds(s *shm.Segment, pid int) (lock bool, slots int) {
	lock = s.Lock().Holder() == pid
	for i := range s.Waiters() {
		w := &s.Waiters()[i]
		if w.State.Load() != 0 && int(w.PID.Load()) == pid {
			slots++
		}
	}
	return lock, slots
}

// remover removes objects through the registry: from the test process
// (registry.Dial, which never hosts) or, if no registry answers, through a
// new ctl client (which then hosts one). done releases it.
func (c *cluster) remover() (remove func(o obj) error, done func()) {
	if cl, err := registry.Dial(c.sock); err == nil {
		return func(o obj) error { return cl.Remove(o.shmKind(), o.id) }, func() { cl.Close() }
	}
	p, err := c.try("chaos-ctl", nil, nil)
	if err == nil {
		var l string
		if l, err = p.next(20 * time.Second); err == nil && l != "ready" {
			err = fmt.Errorf("ctl client: %q", l)
		}
	}
	if err != nil {
		return func(obj) error { return err }, func() {}
	}
	return func(o obj) error {
		if !p.send("rm %s %d", o.kind, o.id) {
			return fmt.Errorf("ctl client gone")
		}
		l, err := p.next(20 * time.Second)
		if err == nil && l != "ok" {
			err = fmt.Errorf("%s", l)
		}
		return err
	}, p.kill
}

// cleanup removes the cluster's objects, checks that nothing else of its
// namespace is left, and stops its registry.
func (c *cluster) cleanup() {
	c.mu.Lock()
	objs := c.objs
	c.objs = map[obj]bool{}
	for _, s := range c.segs {
		_ = s.Close()
	}
	c.segs = map[obj]*shm.Segment{}
	c.mu.Unlock()
	c.host.cont()
	if len(objs) > 0 {
		remove, done := c.remover()
		for o := range objs {
			if err := remove(o); err != nil {
				c.t.Errorf("chaos: remove %s %d: %v", o.kind, o.id, err)
			}
		}
		done()
	}
	if leaks := testutil.Leaks(c.ns); len(leaks) > 0 {
		c.t.Errorf("chaos: objects left in the cluster's namespace (removed now):\n  %s", strings.Join(leaks, "\n  "))
	}
	if orphans := c.orphans(); len(orphans) > 0 {
		c.t.Errorf("chaos: segments without a usysv header left by the cluster's processes (removed now):\n  %s", strings.Join(orphans, "\n  "))
	}
	_ = os.RemoveAll(filepath.Dir(c.sock))
}

// orphans lists, and removes, the kernel segments that the cluster's
// processes (all dead by now) made and that are not live usysv objects of
// its namespace: what a registry host killed in the middle of a creation
// or a removal would leak if the next registry did not finish or undo it. It first takes the
// registry over once more, as the next client would, in case the last host
// was killed inside a creation.
func (c *cluster) orphans() []string {
	if s, err := registry.NewServer(c.sock, registry.Limits{}); err == nil {
		_ = s.Close()
	}
	// Each pid with the seconds its process lived (the kernel's ctime is in
	// whole seconds, a tick behind at most): a segment of another process
	// that reused one of the pids (pid_max can be 32768; a long run starts
	// thousands) was made outside them.
	type life struct{ from, to int64 }
	lives := map[int][]life{}
	names := map[int]string{}
	c.starter.mu.Lock()
	for _, p := range c.starter.procs {
		names[p.pid] = p.name
		p.mu.Lock()
		to := p.exitedAt.Unix() + 1
		if p.exitedAt.IsZero() {
			to = math.MaxInt64
		}
		p.mu.Unlock()
		lives[p.pid] = append(lives[p.pid], life{p.start.Unix() - 1, to})
	}
	c.starter.mu.Unlock()
	ours := func(ds kernel.ShmidDS) bool {
		for _, l := range lives[ds.Cpid] {
			if ds.Ctime >= l.from && ds.Ctime <= l.to {
				return true
			}
		}
		return false
	}
	segs, err := kernel.ShmList()
	if err != nil {
		return []string{fmt.Sprintf("list kernel segments: %v", err)}
	}
	var out []string
	for _, sg := range segs {
		if !ours(sg.DS) || sg.DS.Perm.Mode&kernel.SHM_DEST != 0 {
			continue
		}
		p, st, err := shm.Peek(sg.ID)
		if err == nil && p.Namespace == c.ns && st == shm.StateLive {
			continue // a usysv object of the cluster: testutil.Leaks' business
		}
		header := fmt.Sprintf("header: %v", err)
		if err == nil {
			header = fmt.Sprintf("header: kind %v, key %#x, state %d, namespace ours %v", p.Kind, uint32(p.Key), st, p.Namespace == c.ns)
		}
		out = append(out, fmt.Sprintf("segment %d, %d bytes, made by pid %d (%s) at %d, mode %#o, %d attaches; %s",
			sg.ID, sg.DS.Segsz, sg.DS.Cpid, names[sg.DS.Cpid], sg.DS.Ctime, sg.DS.Perm.Mode, sg.DS.Nattch, header))
		_ = kernel.ShmctlRemove(sg.ID)
	}
	return out
}

// serverPid asks a client which process serves the registry now.
func (c *cluster) serverPid(p *proc) int {
	l := p.call(c.t, 30*time.Second, "pid")
	n, err := strconv.Atoi(strings.TrimPrefix(l, "pid "))
	if err != nil {
		c.t.Fatalf("chaos: pid: %q", l)
	}
	return n
}
