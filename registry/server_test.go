package registry

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

func init() {
	// map: for each line "id kind ns", try to map the segment read-write.
	testutil.RegisterHelper("map", func(args []string) int {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			id, _ := strconv.Atoi(f[0])
			kind, _ := strconv.Atoi(f[1])
			ns, _ := strconv.ParseUint(f[2], 10, 64)
			seg, err := shm.Map(id, shm.Kind(kind), ns)
			if err == nil {
				seg.Close()
			}
			fmt.Println(errName(err))
		}
		return 0
	})
	// connect: connect with Default, say so, and wait to be killed.
	testutil.RegisterHelper("connect", func(args []string) int {
		if _, err := Default(); err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("connected")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		return 0
	})
}

// startServer runs a private registry on a socket of its own (its own
// namespace) and returns it with a client.
func startServer(t testing.TB, lim Limits) (*Server, *Client) {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o777))
	s, err := NewServer(filepath.Join(dir, "reg.sock"), lim)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		require.NoError(t, s.Close())
		require.NoError(t, <-done)
	})
	c, err := Dial(s.Socket())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return s, c
}

// A1.9: ENOSPC at the configured SEMMNI, SEMMNS and MSGMNI; Info reports
// usage.
func TestLimits(t *testing.T) {
	_, c := startServer(t, Limits{SEMMNI: 3, SEMMNS: 5, MSGMNI: 1, SEMMSL: 10})
	a := mustGet(t, c, semReq(testutil.Key(t), 3, creat|excl|0o600))
	_, err := c.Get(semReq(testutil.Key(t), 3, creat|excl|0o600))
	require.ErrorIs(t, err, kernel.ENOSPC, "SEMMNS")
	mustGet(t, c, semReq(kernel.IPC_PRIVATE, 2, 0o600))
	_, err = c.Get(semReq(kernel.IPC_PRIVATE, 1, 0o600))
	require.ErrorIs(t, err, kernel.ENOSPC, "SEMMNS with IPC_PRIVATE")
	// SEMMSL is the configured one, checked before anything else.
	_, err = c.Get(semReq(testutil.Key(t), 11, creat|excl|0o600))
	require.ErrorIs(t, err, kernel.EINVAL)
	u, err := c.Info(shm.KindSem)
	require.NoError(t, err)
	assert.Equal(t, 2, u.Objects)
	assert.Equal(t, uint64(5), u.Units)
	assert.Equal(t, 5, u.Limits.SEMMNS)
	assert.Equal(t, kernel.SEMVMX, u.Limits.SEMVMX, "zero limits take Linux's defaults")
	assert.GreaterOrEqual(t, u.MaxID, a)
	require.NoError(t, c.Remove(shm.KindSem, a))
	mustGet(t, c, semReq(testutil.Key(t), 1, creat|excl|0o600))
	mustGet(t, c, semReq(testutil.Key(t), 1, creat|excl|0o600)) // 3 sets, 4 sems
	_, err = c.Get(semReq(testutil.Key(t), 1, creat|excl|0o600))
	require.ErrorIs(t, err, kernel.ENOSPC, "SEMMNI")

	k := testutil.Key(t)
	mustGet(t, c, msgReq(k, creat|excl|0o600))
	_, err = c.Get(msgReq(testutil.Key(t), creat|0o600))
	require.ErrorIs(t, err, kernel.ENOSPC, "MSGMNI")
	_, err = c.Get(msgReq(kernel.IPC_PRIVATE, 0o600))
	require.ErrorIs(t, err, kernel.ENOSPC, "MSGMNI with IPC_PRIVATE")
	// A full table still finds what exists.
	_, err = c.Get(msgReq(k, creat|0o600))
	require.NoError(t, err)
	mu, err := c.Info(shm.KindMsg)
	require.NoError(t, err)
	assert.Equal(t, 1, mu.Objects)
}

// Layouts the registry refuses: too big, or invalid; and a sem layout
// whose count disagrees with nsems.
func TestBadLayouts(t *testing.T) {
	_, c := startServer(t, Limits{MaxSegment: 1 << 20})
	req := msgReq(testutil.Key(t), creat|excl|0o600)
	req.Layout.BodySize = 2 << 20
	_, err := c.Get(req)
	require.ErrorIs(t, err, kernel.EINVAL)
	req.Layout.BodySize = 1001 // not a multiple of 8
	_, err = c.Get(req)
	require.ErrorIs(t, err, kernel.EINVAL)
	req.Layout.BodySize = 1024
	req.Layout.Waiters = shm.MaxWaiters + 1
	_, err = c.Get(req)
	require.ErrorIs(t, err, kernel.EINVAL)
	sreq := semReq(testutil.Key(t), 3, creat|excl|0o600)
	sreq.Layout.Count = 2
	_, err = c.Get(sreq)
	require.ErrorIs(t, err, kernel.EINVAL)
	// Nothing was created.
	objs, err := c.List(shm.KindMsg)
	require.NoError(t, err)
	assert.Empty(t, objs)
	objs, err = c.List(shm.KindSem)
	require.NoError(t, err)
	assert.Empty(t, objs)
}

// The kernel segment's owner and mode follow the object's: a class gets
// rw on the segment iff the object grants it r or w, so a process with no
// right to the object cannot map it at all.
func TestKernelSegmentPerms(t *testing.T) {
	testutil.RequireRoot(t)
	c := defaultClient(t)
	p := testutil.Start(t, "map", nil, testutil.AsNobody())
	canMap := func(id int, kind shm.Kind) string {
		p.Send("%d %d %d", id, kind, c.Namespace())
		return p.Line(5 * time.Second)
	}
	kstat := func(id int) (uint32, uint32, uint32) {
		ds, err := kernel.ShmctlStat(id)
		require.NoError(t, err)
		return ds.Perm.UID, ds.Perm.GID, ds.Perm.Mode & 0o777
	}
	id := mustGet(t, c, semReq(testutil.Key(t), 2, creat|excl|0o600))
	uid, gid, mode := kstat(id)
	assert.Equal(t, []uint32{0, 0, 0o600}, []uint32{uid, gid, mode})
	assert.Equal(t, "EACCES", canMap(id, shm.KindSem))

	require.NoError(t, c.Set(shm.KindSem, id, 0, 0, 0o604, 0))
	_, _, mode = kstat(id)
	assert.Equal(t, uint32(0o606), mode)
	assert.Equal(t, "ok", canMap(id, shm.KindSem))
	// A wrong kind is refused by the header, not the kernel.
	assert.Equal(t, "EINVAL", canMap(id, shm.KindMsg))

	require.NoError(t, c.Set(shm.KindSem, id, testutil.Nobody, testutil.Nobody, 0o400, 0))
	uid, gid, mode = kstat(id)
	assert.Equal(t, []uint32{testutil.Nobody, testutil.Nobody, 0o600}, []uint32{uid, gid, mode})
	assert.Equal(t, "ok", canMap(id, shm.KindSem))
	require.NoError(t, c.Set(shm.KindSem, id, testutil.Nobody, testutil.Nobody, 0o070, 0))
	_, _, mode = kstat(id)
	assert.Equal(t, uint32(0o060), mode)
	assert.Equal(t, "EACCES", canMap(id, shm.KindSem), "owner class with no rights, exclusively")

	mid := mustGet(t, c, msgReq(testutil.Key(t), creat|excl|0o751))
	_, _, mode = kstat(mid)
	assert.Equal(t, uint32(0o660), mode, "x alone gives nothing")
	assert.Equal(t, "EACCES", canMap(mid, shm.KindMsg))
}

func TestKernelMode(t *testing.T) {
	for mode, want := range map[uint32]uint32{
		0: 0, 0o777: 0o666, 0o400: 0o600, 0o200: 0o600, 0o100: 0, 0o040: 0o060,
		0o004: 0o006, 0o421: 0o660, 0o7777: 0o666, 0o066: 0o066, 0o111: 0,
	} {
		assert.Equal(t, want, KernelMode(mode), "%#o", mode)
	}
}

// A registry restarted (or another taking over) adopts every live object
// of its namespace, by key and id, with its permissions, and nothing else.
func TestRebuild(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "reg.sock")
	s1, c1, done1 := serveAt(t, sock)
	// A second server on the same socket is refused while the first runs.
	_, err := NewServer(sock, Limits{})
	require.ErrorIs(t, err, kernel.EADDRINUSE)

	type rec struct {
		kind shm.Kind
		key  int
		id   int
		o    Object
	}
	var recs []rec
	for i, mode := range []int{0o600, 0, 0o644, 0o066} {
		kind := shm.KindSem
		req := semReq(testutil.Key(t), i+1, creat|excl|mode)
		if i%2 == 1 {
			kind = shm.KindMsg
			req = msgReq(testutil.Key(t), creat|excl|mode)
		}
		id, err := c1.Get(req)
		require.NoError(t, err)
		t.Cleanup(func() { _ = kernel.ShmctlRemove(id) })
		recs = append(recs, rec{kind: kind, key: int(req.Key), id: id})
	}
	priv, err := c1.Get(semReq(kernel.IPC_PRIVATE, 1, 0o600))
	require.NoError(t, err)
	t.Cleanup(func() { _ = kernel.ShmctlRemove(priv) })
	require.NoError(t, c1.Set(shm.KindSem, recs[0].id, testutil.Nobody, 0, 0o640, 0))
	require.NoError(t, c1.Set(shm.KindMsg, recs[1].id, 0, 0, 0o600, 1000))
	gone, err := c1.Get(semReq(testutil.Key(t), 1, creat|excl|0o600))
	require.NoError(t, err)
	require.NoError(t, c1.Remove(shm.KindSem, gone))
	for i := range recs {
		recs[i].o, err = c1.Stat(recs[i].kind, recs[i].id)
		require.NoError(t, err)
	}
	c1.Close()
	require.NoError(t, s1.Close())
	require.NoError(t, <-done1)

	s2, c2, done2 := serveAt(t, sock)
	defer func() {
		for _, r := range recs {
			assert.NoError(t, c2.Remove(r.kind, r.id))
		}
		assert.NoError(t, c2.Remove(shm.KindSem, priv))
		c2.Close()
		assert.NoError(t, s2.Close())
		assert.NoError(t, <-done2)
	}()
	for _, r := range recs {
		req := semReq(r.key, 0, 0)
		if r.kind == shm.KindMsg {
			req = msgReq(r.key, 0)
		}
		id, err := c2.Get(req)
		require.NoError(t, err)
		assert.Equal(t, r.id, id)
		o, err := c2.Stat(r.kind, id)
		require.NoError(t, err)
		assert.Equal(t, r.o, o)
	}
	_, err = c2.Stat(shm.KindSem, priv)
	require.NoError(t, err, "IPC_PRIVATE objects are found by id")
	_, err = c2.Stat(shm.KindSem, gone)
	require.ErrorIs(t, err, kernel.EINVAL, "removed objects stay removed")
	u, err := c2.Info(shm.KindSem)
	require.NoError(t, err)
	assert.Equal(t, 3, u.Objects)

	// Another namespace adopts none of them; the binary's own registry
	// does not either.
	_, c3 := startServer(t, Limits{})
	for _, k := range []shm.Kind{shm.KindSem, shm.KindMsg} {
		objs, err := c3.List(k)
		require.NoError(t, err)
		assert.Empty(t, objs)
		_, err = c3.Stat(k, recs[0].id)
		require.ErrorIs(t, err, kernel.EINVAL)
	}
	_, err = defaultClient(t).Stat(shm.KindSem, recs[0].id)
	require.ErrorIs(t, err, kernel.EINVAL)
}

// A segment removed in the kernel behind the registry's back (ipcrm -m)
// while still mapped is treated as removed by the next registry.
func TestRebuildSkipsKernelRemoved(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "reg.sock")
	s1, err := NewServer(sock, Limits{})
	require.NoError(t, err)
	go func() { _ = s1.Serve() }()
	c1, err := Dial(sock)
	require.NoError(t, err)
	key := testutil.Key(t)
	id, err := c1.Get(semReq(key, 1, creat|excl|0o600))
	require.NoError(t, err)
	seg, err := shm.Map(id, shm.KindSem, c1.Namespace())
	require.NoError(t, err)
	defer seg.Close()
	require.NoError(t, kernel.ShmctlRemove(id))
	c1.Close()
	require.NoError(t, s1.Close())

	_, c2 := startServer2(t, sock)
	_, err = c2.Get(semReq(key, 0, 0))
	require.ErrorIs(t, err, kernel.ENOENT)
	assert.True(t, seg.Removed(), "mappers see the object removed")
}

// A process that can map an object's segment can write its state word.
// One it marked removed behind the registry's back is still the registry's
// to stat, list and remove: before, the registry took the word's word for
// it, refused IPC_RMID with EINVAL and kept the segment mapped for ever
// (a fuzz worker attacking such words filled the host's SHMMNI).
func TestForgedRemovedStateStillRemovable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "reg.sock")
	_, c := startServer2(t, sock)
	id, err := c.Get(semReq(testutil.Key(t), 1, creat|excl|0o600))
	require.NoError(t, err)
	seg, err := shm.Map(id, shm.KindSem, c.Namespace())
	require.NoError(t, err)
	require.True(t, seg.MarkRemoved(), "the forged write")
	require.NoError(t, seg.Close())

	_, err = c.Stat(shm.KindSem, id)
	require.NoError(t, err, "IPC_STAT of an object the registry holds live")
	objs, err := c.List(shm.KindSem)
	require.NoError(t, err)
	found := false
	for _, o := range objs {
		found = found || o.ID == id
	}
	assert.True(t, found, "ipcs lists it")
	require.NoError(t, c.Remove(shm.KindSem, id))
	// The registry detached it: with no mapping left, the kernel segment
	// is gone.
	testutil.RequireShmGone(t, id, "no mapping left")
	require.ErrorIs(t, c.Remove(shm.KindSem, id), kernel.EINVAL)
}

func startServer2(t *testing.T, sock string) (*Server, *Client) {
	t.Helper()
	s, c, done := serveAt(t, sock)
	t.Cleanup(func() {
		c.Close()
		require.NoError(t, s.Close())
		require.NoError(t, <-done)
	})
	return s, c
}

// serveAt starts a server at sock and dials it. The caller closes both;
// done gets Serve's result.
func serveAt(t testing.TB, sock string) (s *Server, c *Client, done chan error) {
	t.Helper()
	s, err := NewServer(sock, Limits{})
	require.NoError(t, err)
	done = make(chan error, 1)
	go func() { done <- s.Serve() }()
	c, err = Dial(sock)
	require.NoError(t, err)
	return s, c, done
}

// When a client process dies, every segment's dead generation is bumped,
// and the repair hooks registered in the registry's process run.
func TestDeathRunsRepair(t *testing.T) {
	c := defaultClient(t)
	id := mustGet(t, c, semReq(kernel.IPC_PRIVATE, 1, 0o600))
	var mu sync.Mutex
	calls := 0
	RegisterRepair(shm.KindSem, func(seg *shm.Segment) {
		if seg.ID() == id {
			mu.Lock()
			calls++
			mu.Unlock()
		}
	})
	seg, err := shm.Map(id, shm.KindSem, c.Namespace())
	require.NoError(t, err)
	defer seg.Close()
	gen := seg.DeadGen()
	p := testutil.Start(t, "connect", nil)
	p.Expect("connected", 10*time.Second)
	assert.Equal(t, gen, seg.DeadGen(), "a connection alone bumps nothing")
	p.Kill()
	testutil.Eventually(t, 10*time.Second, "dead generation bumped", func() bool { return seg.DeadGen() != gen })
	testutil.Eventually(t, 10*time.Second, "repair hook run", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return calls > 0
	})
	// A client that closes its connection but lives on is not dead; its
	// death later still counts.
	gen = seg.DeadGen()
	p2 := testutil.Start(t, "dialclose", nil)
	p2.Expect("closed", 10*time.Second)
	p2.Send("exit")
	require.Equal(t, 0, p2.Wait(10*time.Second))
	testutil.Eventually(t, 10*time.Second, "death after close noticed", func() bool { return seg.DeadGen() != gen })
}

func init() {
	testutil.RegisterHelper("dialclose", func(args []string) int {
		c, err := Dial(os.Getenv("USYSV_SOCKET"))
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		c.Close()
		fmt.Println("closed")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		return 0
	})
}

// A process that maps a segment can rewrite the header's copy of the
// permissions; the registry decides on its own copy, and writes it back
// after the next client death.
func TestTamperedHeaderPerms(t *testing.T) {
	testutil.RequireRoot(t)
	d := newDiffer(t)
	c := d.c
	key := testutil.Key(t)
	q := d.create("root", "msg", key, 0, creat|excl|0o600)
	id := q.rid
	seg, err := shm.Map(id, shm.KindMsg, c.Namespace())
	require.NoError(t, err)
	defer seg.Close()
	seg.SetPerm(testutil.Nobody, testutil.Nobody, 0o666, 1) // what a hostile mapper could do
	// The registry answers as the kernel does for the untampered queue.
	d.do("nobody", "EACCES", "msgget %d %#o", key, 0o400)
	d.stat("nobody", "EACCES", q)
	d.do("nobody", "EPERM", "msgrm %d %d", q.kid, q.rid)
	o, err := c.Stat(shm.KindMsg, id)
	require.NoError(t, err)
	assert.Equal(t, []uint32{0, 0, 0o600}, []uint32{o.Perm.UID, o.Perm.GID, o.Perm.Mode})

	p := testutil.Start(t, "connect", nil)
	p.Expect("connected", 10*time.Second)
	p.Kill()
	testutil.Eventually(t, 10*time.Second, "header permissions restored", func() bool {
		uid, gid, mode, _ := seg.Perm()
		return uid == 0 && gid == 0 && mode == 0o600
	})
}

func init() {
	// whereami: connect with Default, print the socket and the registry's pid.
	testutil.RegisterHelper("whereami", func(args []string) int {
		c, err := Default()
		if err != nil {
			fmt.Println("error", errName(err))
			return 0
		}
		fmt.Println(c.Socket(), c.ServerPid())
		return 0
	})
}

// Without USYSV_SOCKET, Default uses $XDG_RUNTIME_DIR/usysv/registry.sock,
// making the directory private, hosting a registry there if none answers;
// it refuses a directory another user owns.
func TestDefaultSocketPath(t *testing.T) {
	testutil.RequireRoot(t)
	xdg := t.TempDir()
	p := testutil.Start(t, "whereami", nil, testutil.Env("USYSV_SOCKET=", "XDG_RUNTIME_DIR="+xdg))
	sock := filepath.Join(xdg, "usysv", "registry.sock")
	assert.Equal(t, fmt.Sprintf("%s %d", sock, p.Pid()), p.Line(10*time.Second))
	require.Equal(t, 0, p.Wait(10*time.Second))
	uid, mode, err := kernel.StatOwner(filepath.Dir(sock))
	require.NoError(t, err)
	assert.Equal(t, uint32(0), uid)
	assert.Equal(t, uint32(0o700), mode)

	bad := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(bad, "usysv"), 0o700))
	require.NoError(t, os.Chown(filepath.Join(bad, "usysv"), testutil.Nobody, testutil.Nobody))
	p = testutil.Start(t, "whereami", nil, testutil.Env("USYSV_SOCKET=", "XDG_RUNTIME_DIR="+bad))
	assert.Equal(t, "error EACCES", p.Line(10*time.Second))
}

// The server holds a shared flock on its socket's directory while it runs
// (lockDir), and lets go of it at Close.
func TestServerLocksSocketDir(t *testing.T) {
	dir := t.TempDir()
	s, err := NewServer(filepath.Join(dir, "reg.sock"), Limits{})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	f, err := os.Open(dir)
	require.NoError(t, err)
	defer f.Close()
	assert.ErrorIs(t, kernel.Flock(int(f.Fd()), kernel.LOCK_EX|kernel.LOCK_NB), kernel.EWOULDBLOCK, "held while the server runs")
	require.NoError(t, s.Close())
	require.NoError(t, <-done)
	assert.NoError(t, kernel.Flock(int(f.Fd()), kernel.LOCK_EX|kernel.LOCK_NB), "let go at Close")
}

// What the lock is for: systemd-tmpfiles' aging leaves a running
// registry's directory alone, while it removes an idle directory beside it
// (which shows the aging ran). Skipped where systemd-tmpfiles is not
// installed; TestServerLocksSocketDir checks the lock itself everywhere.
func TestTmpfilesAgingSparesServer(t *testing.T) {
	tmpfiles, err := exec.LookPath("systemd-tmpfiles")
	if err != nil {
		t.Skip("no systemd-tmpfiles here")
	}
	parent := t.TempDir()
	live, idle := filepath.Join(parent, "live"), filepath.Join(parent, "idle")
	require.NoError(t, os.Mkdir(idle, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(idle, "f"), nil, 0o600))
	s, c := startServer2(t, filepath.Join(live, "reg.sock"))
	conf := filepath.Join(t.TempDir(), "age.conf")
	require.NoError(t, os.WriteFile(conf, []byte("e "+parent+" - - - 1s\n"), 0o600))
	time.Sleep(2500 * time.Millisecond) // everything in parent is now older than the age
	out, err := exec.Command(tmpfiles, "--clean", conf).CombinedOutput()
	require.NoError(t, err, "%s", out)
	_, err = os.Stat(idle)
	assert.ErrorIs(t, err, os.ErrNotExist, "the aging ran")
	for _, p := range []string{s.Socket(), s.Socket() + ".lock"} {
		_, err = os.Stat(p)
		assert.NoError(t, err, "the running registry's %s is kept", filepath.Base(p))
	}
	_, err = c.List(shm.KindSem)
	assert.NoError(t, err)
	c2, err := Dial(s.Socket())
	require.NoError(t, err, "new clients still reach it")
	c2.Close()
}

// waitUnread waits until one of s's connections has bytes its server has
// not read yet: a request sent while the connection's handler is busy.
func waitUnread(t *testing.T, s *Server) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		n, err := 0, error(nil)
		s.cmu.Lock()
		for c := range s.conns {
			rc, e := c.SyscallConn()
			var ue error
			if e == nil {
				e = rc.Control(func(fd uintptr) {
					var k int
					k, ue = kernel.Unread(int(fd))
					n += k
				})
			}
			err = errors.Join(err, e, ue)
		}
		s.cmu.Unlock()
		require.NoError(t, err)
		if n > 0 {
			return
		}
		require.False(t, time.Now().After(deadline), "no request arrived")
	}
}

// A registry that is closed (or steps down for another: guard.go) while it
// makes an object answers the creation before the connection ends, so the
// client learns the id and the next registry keeps the key for it. A
// creating get it reads after that is not applied (ErrConnLost: the
// client may retry with the next registry).
// (Before, Close closed every connection at once: the creating get failed
// with ErrConnLost though the object was made, so nobody had its id, and
// the client's retry, served by a registry that had not adopted it yet,
// made a second object for the key. Found by TestChaos/registry.)
func TestCloseAnswersCreation(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "reg.sock")
	s, c, served := serveAt(t, sock)
	defer c.Close()
	inside, release, shut := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var once sync.Once
	stepHook = func(st step) {
		switch st {
		case stepCreateDone:
			once.Do(func() { close(inside); <-release })
		case stepConnsShut:
			close(shut)
		}
	}
	key := testutil.Key(t)
	type result struct {
		id  int
		err error
	}
	got := make(chan result, 1)
	go func() {
		id, err := c.Get(msgReq(key, creat|excl|0o600))
		got <- result{id, err}
	}()
	<-inside
	// A second creation, sent on the same connection meanwhile, is read
	// once Close has begun: it is not applied.
	late := make(chan error, 1)
	go func() {
		_, err := c.Get(msgReq(kernel.IPC_PRIVATE, creat|0o600))
		late <- err
	}()
	waitUnread(t, s)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	// Close shuts the connections' reading side, then waits for the
	// request in hand.
	<-shut
	close(release)
	r := <-got
	lateErr := <-late
	require.NoError(t, <-closed)
	require.NoError(t, <-served)
	stepHook = nil // (the handler has returned: Close waited for it)

	_, c2 := startServer2(t, sock)
	objs, err := c2.List(shm.KindMsg)
	require.NoError(t, err)
	for _, o := range objs {
		require.NoError(t, c2.Remove(shm.KindMsg, o.ID))
	}
	require.NoError(t, r.err, "the creation's answer")
	require.Len(t, objs, 1, "the late creation is not applied")
	assert.Equal(t, r.id, objs[0].ID)
	assert.Equal(t, int32(key), objs[0].Perm.Key)
	assert.ErrorIs(t, lateErr, ErrConnLost)
}

// A client's connection waits for responses in poll(2), not parked in the
// Go runtime's network poller (kernel.ReadBlocking says why), and Close
// ends that wait.
func TestClientWaitsOutsideNetpoller(t *testing.T) {
	c := defaultClient(t)
	d, err := Dial(c.Socket())
	require.NoError(t, err)
	mustGet(t, c, semReq(kernel.IPC_PRIVATE, 1, kernel.IPC_CREAT|0o600)) // (c connects)
	loops := func() []string { return testutil.GoroutineStates("registry.(*Client).readLoop(") }
	require.Eventually(t, func() bool {
		st := loops()
		return len(st) >= 2 && !slices.ContainsFunc(st, func(s string) bool { return s != "syscall" })
	}, 5*time.Second, time.Millisecond, "every read loop waits in a system call")
	n := len(loops())

	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Close waits for the read loop")
	}
	require.Eventually(t, func() bool { return len(loops()) == n-1 }, 5*time.Second, time.Millisecond,
		"the closed client's read loop ends")
}

// A server waits for connections and requests in poll(2) too, not parked
// in the network poller (docs/INTERNALS.md, "Waiting on sockets"): no
// goroutine of the package is, while clients are connected and idle, and
// Close ends those waits.
func TestServerWaitsOutsideNetpoller(t *testing.T) {
	s, err := NewServer(filepath.Join(t.TempDir(), "reg.sock"), Limits{})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	var clients []*Client
	for range 2 {
		c, err := Dial(s.Socket())
		require.NoError(t, err)
		clients = append(clients, c)
	}
	id, err := clients[0].Get(semReq(kernel.IPC_PRIVATE, 1, kernel.IPC_CREAT|0o600))
	require.NoError(t, err)
	require.NoError(t, clients[1].Remove(shm.KindSem, id))
	serving := func() []string { return testutil.GoroutineStates("registry.(*Server).serveConn(") }
	allSyscall := func(st []string) bool {
		return !slices.ContainsFunc(st, func(s string) bool { return s != "syscall" })
	}
	require.Eventually(t, func() bool {
		st, acc := serving(), testutil.GoroutineStates("registry.(*Server).Serve(")
		return len(st) >= 2 && allSyscall(st) && len(acc) >= 1 && allSyscall(acc)
	}, 5*time.Second, time.Millisecond, "the accept and every connection wait in a system call")
	assert.NotContains(t, testutil.GoroutineStates("registry."), "IO wait", "no goroutine of the package is in the network poller")

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Close waits for the server's waits in poll")
	}
	require.NoError(t, <-done, "Serve returns")
	for _, c := range clients {
		require.NoError(t, c.Close())
	}
}
