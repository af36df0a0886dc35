package registry

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
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
	// adopt: ask the registry at $USYSV_SOCKET to adopt, and say how it went.
	testutil.RegisterHelper("adopt", func(args []string) int {
		c, err := Dial(os.Getenv("USYSV_SOCKET"))
		if err == nil {
			err = c.Adopt()
			c.Close()
		}
		fmt.Println(errName(err))
		return 0
	})
	// host: connect with Default (hosting the registry if nobody serves
	// $USYSV_SOCKET), print the serving pid, then for each line read print
	// the serving pid a fresh Dial finds (or the error).
	testutil.RegisterHelper("host", func(args []string) int {
		c, err := Default()
		if err != nil {
			fmt.Println("error", errName(err))
			return 1
		}
		fmt.Println(c.ServerPid())
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			d, err := Dial(c.Socket())
			if err != nil {
				fmt.Println("error", errName(err))
				continue
			}
			fmt.Println(d.ServerPid())
			d.Close()
		}
		return 0
	})
}

// made creates an object through c and removes its kernel segment when
// the test ends, whatever registry serves it then, or none (these tests
// make registries step down under their objects).
func made(t *testing.T, c *Client, req GetRequest) int {
	t.Helper()
	id, err := c.Get(req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = kernel.ShmctlRemove(id) })
	return id
}

// serving reports whether a registry answers at sock. (A socket file
// alone says less: a registry binds its socket before it listens, and a
// Dial in between is refused, ECONNREFUSED; seen under load.)
func serving(sock string) bool {
	c, err := Dial(sock)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// removeDir removes dir and everything in it, as rm -rf does, until it is
// gone: a guard putting its files back makes the last rmdir fail with
// ENOTEMPTY, as it would for rm.
func removeDir(t *testing.T, dir string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, "the directory removed", func() bool { return os.RemoveAll(dir) == nil })
}

// serverOwns reports whether s's socket and lock file are in place and its
// own, and its journal file is there.
func serverOwns(s *Server) bool {
	s.gmu.Lock()
	defer s.gmu.Unlock()
	return s.ownsLock() && s.ownsSocket() && sameFile(s.jr.path, s.jr.f)
}

// A socket or lock file removed under a running registry is put back (its
// directory still there): new clients reach the same registry (its table),
// old connections go on.
func TestGuardPutsBackSocket(t *testing.T) {
	s, c := startServer(t, Limits{})
	id := mustGet(t, c, semReq(testutil.Key(t), 1, creat|excl|0o600))

	require.NoError(t, os.Remove(s.Socket()))
	testutil.Eventually(t, 10*time.Second, "the socket put back", func() bool { return serverOwns(s) })
	c2, err := Dial(s.Socket())
	require.NoError(t, err, "a new client reaches it")
	t.Cleanup(func() { c2.Close() })
	_, err = c2.Stat(shm.KindSem, id)
	assert.NoError(t, err, "the same registry: it knows the object")
	_, err = c.Stat(shm.KindSem, id)
	assert.NoError(t, err, "the old connection goes on")

	// The socket renamed away, and something else renamed over its path.
	require.NoError(t, os.Rename(s.Socket(), s.Socket()+".old"))
	testutil.Eventually(t, 10*time.Second, "the socket put back after a rename", func() bool { return serverOwns(s) })
	require.NoError(t, os.WriteFile(s.Socket()+".x", nil, 0o600))
	require.NoError(t, os.Rename(s.Socket()+".x", s.Socket()+".lock"))
	testutil.Eventually(t, 10*time.Second, "the lock file put back", func() bool { return serverOwns(s) })
	_, err = NewServer(s.Socket(), Limits{})
	assert.ErrorIs(t, err, errBusy, "the lock put back keeps a second registry out")
	c3, err := Dial(s.Socket())
	require.NoError(t, err)
	t.Cleanup(func() { c3.Close() })
	_, err = c3.Stat(shm.KindSem, id)
	assert.NoError(t, err)

	// A regular file put in the socket's place is not removed (it is not
	// the registry's to remove); the registry goes on for its clients.
	require.NoError(t, os.WriteFile(s.Socket()+".x", []byte("data"), 0o600))
	require.NoError(t, os.Rename(s.Socket()+".x", s.Socket()))
	time.Sleep(100 * time.Millisecond) // (the guard's look, and its retries)
	b, err := os.ReadFile(s.Socket())
	require.NoError(t, err)
	assert.Equal(t, "data", string(b), "the file stays")
	_, err = c3.Stat(shm.KindSem, id)
	assert.NoError(t, err, "connected clients go on")
	require.NoError(t, os.Remove(s.Socket()))
	testutil.Eventually(t, 10*time.Second, "the socket put back once the file is gone", func() bool { return serverOwns(s) })
}

// The socket's whole directory removed (rm -rf, or renamed away): the
// registry does not make it again (whoever removed it meant it gone) but
// steps down, and its process's client does not host again while it is
// missing. Once the directory is back, the next registry adopts
// everything.
func TestGuardDirectoryGone(t *testing.T) {
	for _, how := range []string{"removed", "renamed"} {
		t.Run(how, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run", "usysv")
			require.NoError(t, os.MkdirAll(dir, 0o755))
			sock := filepath.Join(dir, "reg.sock")
			_, c, done := serveAt(t, sock)
			t.Cleanup(func() { c.Close() })
			id := made(t, c, msgReq(testutil.Key(t), creat|excl|0o600))
			if how == "removed" {
				removeDir(t, dir)
			} else {
				require.NoError(t, os.Rename(dir, dir+".old"))
			}
			select {
			case err := <-done:
				require.ErrorIs(t, err, ErrDisplaced)
			case <-time.After(20 * time.Second):
				t.Fatal("the registry did not step down")
			}
			// Re-hosting (a client whose registry went) does not make it.
			_, err := newServer(sock, Limits{}, false)
			require.ErrorIs(t, err, kernel.ENOENT)
			_, err = os.Stat(dir)
			require.ErrorIs(t, err, os.ErrNotExist, "not made again")

			require.NoError(t, os.MkdirAll(dir, 0o755))
			s2, c2 := startServer2(t, sock)
			_ = s2
			_, err = c2.Stat(shm.KindMsg, id)
			assert.NoError(t, err, "the next registry adopts the object")
			require.NoError(t, c2.Remove(shm.KindMsg, id))
		})
	}
}

// Across processes: a registry hosted by one process whose socket
// directory is removed steps down, and no process makes the directory
// again; once it is back, the clients host a registry again at once.
func TestGuardAcrossProcesses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	require.NoError(t, os.Mkdir(dir, 0o755))
	sock := filepath.Join(dir, "reg.sock")
	env := testutil.Env("USYSV_SOCKET=" + sock)
	h := testutil.Start(t, "host", nil, env)
	require.Equal(t, strconv.Itoa(h.Pid()), h.Line(10*time.Second), "hosts the registry")
	c, err := Dial(sock)
	require.NoError(t, err)
	id := made(t, c, semReq(kernel.IPC_PRIVATE, 1, 0o600))
	c.Close()

	removeDir(t, dir)
	time.Sleep(200 * time.Millisecond) // (the host's client tries to host again meanwhile)
	_, err = os.Stat(dir)
	require.ErrorIs(t, err, os.ErrNotExist, "no process made the directory again")

	require.NoError(t, os.Mkdir(dir, 0o755))
	testutil.Eventually(t, 10*time.Second, "a registry again", func() bool { return serving(sock) })
	h.Send("dial")
	assert.Equal(t, strconv.Itoa(h.Pid()), h.Line(10*time.Second), "the host's client hosts again")
	c, err = Dial(sock)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Stat(shm.KindSem, id)
	assert.NoError(t, err, "and it knows the object")
	assert.NoError(t, c.Remove(shm.KindSem, id))
}

// The per-user default directory ($XDG_RUNTIME_DIR/usysv here) is the
// library's own: removed, its host steps down and the clients make it
// again (private, as Default does) and host again at once.
func TestGuardDefaultDirectory(t *testing.T) {
	testutil.RequireRoot(t)
	xdg := t.TempDir()
	dir := filepath.Join(xdg, "usysv")
	sock := filepath.Join(dir, "registry.sock")
	h := testutil.Start(t, "host", nil, testutil.Env("USYSV_SOCKET=", "XDG_RUNTIME_DIR="+xdg))
	require.Equal(t, strconv.Itoa(h.Pid()), h.Line(10*time.Second), "hosts the registry")
	removeDir(t, dir)
	testutil.Eventually(t, 10*time.Second, "the directory and socket made again", func() bool { return serving(sock) })
	uid, mode, err := kernel.StatOwner(dir)
	require.NoError(t, err)
	assert.Equal(t, []uint32{0, 0o700}, []uint32{uid, mode})
	h.Send("dial")
	assert.Equal(t, strconv.Itoa(h.Pid()), h.Line(10*time.Second), "hosted again by the same client")
}

// A registry that finds another holding the lock at its path (its
// directory was removed and a second registry started there before it
// could put it back) steps down: Serve returns ErrDisplaced, it leaves the
// other's socket in place, its clients move to the other, and the other
// adopts what it made, changed and removed meanwhile (or earlier: at a
// call on an object by id that only A knows). A key both made is kept by
// neither.
func TestGuardStepsDown(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	sock := filepath.Join(dir, "reg.sock")
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	holdB := make(chan struct{}) // B's guard must not mend what A might break
	var b *Server                // (closed last: the objects' clean-ups go through it)
	bDone := make(chan error, 1)
	t.Cleanup(func() {
		if b != nil {
			require.NoError(t, b.Close())
			require.NoError(t, <-bDone)
		}
	})

	a, err := NewServer(sock, Limits{})
	require.NoError(t, err)
	a.guardHook = func() { <-release }
	aDone := make(chan error, 1)
	go func() { aDone <- a.Serve() }()
	ca, err := Dial(sock)
	require.NoError(t, err)
	t.Cleanup(func() { ca.Close() })
	kx, kr, kp, ky, kd, kz := testutil.Key(t), testutil.Key(t)+1, testutil.Key(t)+2, testutil.Key(t)+3, testutil.Key(t)+4, testutil.Key(t)+5
	x := made(t, ca, semReq(kx, 1, creat|excl|0o600))
	r := made(t, ca, semReq(kr, 1, creat|excl|0o600))
	p := made(t, ca, msgReq(kp, creat|excl|0o600))

	// The directory goes; A's guard is held back while B starts there.
	require.NoError(t, os.RemoveAll(dir))
	b, err = NewServer(sock, Limits{})
	require.NoError(t, err)
	b.guardHook = func() { <-holdB }
	t.Cleanup(func() { close(holdB) })
	go func() { bDone <- b.Serve() }()
	cb, err := Dial(sock)
	require.NoError(t, err)
	t.Cleanup(func() { cb.Close() })
	require.NotEqual(t, ca.ServerPid(), 0)

	// The overlap: A (through its old connection) and B each make and
	// change things the other does not know.
	y := made(t, ca, semReq(ky, 2, creat|excl|0o600))
	da := made(t, ca, semReq(kd, 1, creat|excl|0o600))
	require.NoError(t, ca.Remove(shm.KindSem, r))
	require.NoError(t, ca.Set(shm.KindMsg, p, 0, 0, 0o640, kernel.MSGMNB))
	db := made(t, cb, semReq(kd, 1, creat|excl|0o600))
	z := made(t, cb, semReq(kz, 1, creat|excl|0o600))
	_, err = cb.Stat(shm.KindSem, r)
	require.NoError(t, err, "B still has what A removed")
	_, err = cb.Get(semReq(ky, 0, 0))
	require.ErrorIs(t, err, kernel.ENOENT, "B does not know A's new key yet")
	_, err = cb.Stat(shm.KindSem, y)
	require.NoError(t, err, "B takes A's new object in at its first call by id (onObject)")

	once.Do(func() { close(release) })
	select {
	case err := <-aDone:
		require.ErrorIs(t, err, ErrDisplaced)
	case <-time.After(20 * time.Second):
		t.Fatal("A did not step down")
	}
	fi, err := os.Lstat(sock)
	require.NoError(t, err, "A left B's socket in place")
	require.True(t, os.SameFile(fi, b.sockFile))

	get := func(key int) (int, error) { return cb.Get(semReq(key, 0, 0)) }
	for _, k := range []struct {
		key, id int
	}{{kx, x}, {ky, y}, {kz, z}} {
		got, err := get(k.key)
		if assert.NoError(t, err, "key %#x", k.key) {
			assert.Equal(t, k.id, got, "key %#x", k.key)
		}
	}
	_, err = get(kr)
	assert.ErrorIs(t, err, kernel.ENOENT, "A's removal adopted")
	_, err = cb.Stat(shm.KindSem, r)
	assert.ErrorIs(t, err, kernel.EINVAL)
	o, err := cb.Stat(shm.KindMsg, p)
	require.NoError(t, err)
	assert.Equal(t, uint32(0o640), o.Perm.Mode, "A's IPC_SET adopted")
	_, err = get(kd)
	assert.ErrorIs(t, err, kernel.ENOENT, "a key both made is kept by neither")
	for _, id := range []int{da, db} {
		o, err := cb.Stat(shm.KindSem, id)
		if assert.NoError(t, err, "both live on by id") {
			assert.Zero(t, o.Perm.Key)
		}
	}
	// A's client reconnects, and reaches B.
	_, err = ca.Stat(shm.KindSem, y)
	assert.NoError(t, err)
	assert.Equal(t, cb.ServerPid(), ca.ServerPid())
}

// Adopt is for the registry's own user (and CAP_SYS_ADMIN): EPERM for
// another.
func TestAdoptPermission(t *testing.T) {
	testutil.RequireRoot(t)
	c := defaultClient(t) // (a socket nobody can reach)
	key := testutil.Key(t)
	id := mustGet(t, c, semReq(key, 1, creat|excl|0o640))
	require.NoError(t, c.Adopt())
	o, err := c.Stat(shm.KindSem, id)
	require.NoError(t, err, "adopting again keeps what the table has")
	assert.Equal(t, []uint32{0o640, uint32(key)}, []uint32{o.Perm.Mode, uint32(o.Perm.Key)})
	p := testutil.Start(t, "adopt", nil, testutil.AsNobody())
	assert.Equal(t, "EPERM", p.Line(10*time.Second))
	p = testutil.Start(t, "adopt", nil)
	assert.Equal(t, "ok", p.Line(10*time.Second))
}

// lastFd is the highest descriptor of this process that names c's file:
// the one whose close releases it when the process dies (guard.go, exit
// order).
func lastFd(t *testing.T, c kernel.FileConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	require.NoError(t, err)
	own := -1
	require.NoError(t, rc.Control(func(fd uintptr) { own = int(fd) }))
	want, err := os.Stat("/proc/self/fd/" + strconv.Itoa(own))
	require.NoError(t, err)
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	last := -1
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if fi, err := os.Stat("/proc/self/fd/" + e.Name()); err == nil && os.SameFile(fi, want) {
			last = max(last, n)
		}
	}
	return last
}

// What others wait on when a host dies (its lock file, its socket, its
// journal, its connections) is released before its directory's watch,
// whose release can take hundreds of ms: each has a descriptor numbered
// above the watch's. Checked as NewServer made them, and as the guard and
// accept make them again in the holes below the watch.
func TestGuardExitOrder(t *testing.T) {
	// Holes below the watch: the descriptors opened before NewServer are,
	// unless one that another test freed meanwhile (a connection closing)
	// gave the watch a lower number than all of them (seen under load);
	// then the set-up is made again, up to three times.
	var holes []*os.File
	t.Cleanup(func() {
		for _, f := range holes {
			f.Close()
		}
	})
	var (
		s     *Server
		c     *Client
		watch int
		below int
	)
	for range 3 {
		var these []*os.File
		for range 12 {
			f, err := os.Open(os.DevNull)
			require.NoError(t, err)
			these = append(these, f)
		}
		holes = append(holes, these...)
		s, c = startServer(t, Limits{})
		require.NotNil(t, s.ino)
		watch = s.ino.Fd()
		for _, f := range these {
			if int(f.Fd()) < watch {
				below++
			}
		}
		if below > 0 {
			break
		}
	}
	require.NotZero(t, below, "no descriptor of the test's below the watch's %d", watch)
	mustGet(t, c, semReq(kernel.IPC_PRIVATE, 1, 0o600)) // (the table is not empty)
	s.gmu.Lock()
	journal := s.jr.path
	s.gmu.Unlock()
	look := func(when string) {
		t.Helper()
		s.gmu.Lock()
		lock, ln, jr := s.lock, s.ln.Load(), s.jr.f
		s.gmu.Unlock()
		assert.Greater(t, lastFd(t, lock), watch, "the lock file, %s", when)
		assert.Greater(t, lastFd(t, ln), watch, "the listener, %s", when)
		assert.Greater(t, lastFd(t, jr), watch, "the journal, %s", when)
		s.cmu.Lock()
		conns := make([]*net.UnixConn, 0, len(s.conns))
		for nc := range s.conns {
			conns = append(conns, nc)
		}
		s.cmu.Unlock()
		require.NotEmpty(t, conns)
		for _, nc := range conns {
			assert.Greater(t, lastFd(t, nc), watch, "a connection, %s", when)
		}
	}
	look("as NewServer made them")

	for _, f := range holes {
		f.Close()
	}
	holes = nil
	require.NoError(t, os.Remove(s.Socket()))
	require.NoError(t, os.Remove(s.Socket()+".lock"))
	require.NoError(t, os.Remove(journal))
	testutil.Eventually(t, 10*time.Second, "the files put back", func() bool { return serverOwns(s) })
	c2, err := Dial(s.Socket())
	require.NoError(t, err)
	t.Cleanup(func() { c2.Close() })
	look("as the guard and accept made them again")
}
