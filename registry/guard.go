package registry

import (
	"errors"
	"fmt"
	"log"
	"math"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/usysv/usysv/kernel"
)

// The guard: a host keeps its socket and lock file where clients look.
//
// Clients find the registry by its socket's path, and would-be hosts are
// kept out by the flock on <socket>.lock. Both are names in a directory,
// and a name can be removed under a running host (rm, a cleaner, a
// directory removed whole). With the socket gone, a client that is not
// connected yet finds nobody; with the lock file gone too, it hosts a
// second registry for the same namespace, and the two tables drift apart
// (one's creations unknown to the other, a key made twice).
//
// So a host watches the socket's directory (inotify: entries removed or
// renamed over, the directory itself removed, renamed or unmounted). On
// any such event it looks whether the two paths still name its own socket
// and lock file, and, while the directory is there, puts back what went:
// the lock file (locked again, as NewServer does), the socket (a new
// listener at the path; the old one can no longer be reached) and its
// creation journal. That takes about a millisecond, in which a client
// that found nothing rarely gets as far as the lock.
//
// A directory that went (removed, renamed away) is not put back by the
// host: it steps down. Who makes it again depends on whose it is. The
// per-user default directory (Default without $USYSV_SOCKET) is the
// library's own: the clients make it again when they try to host (as
// Default made it), and the namespace has a registry again at once. A
// $USYSV_SOCKET directory is the user's: whoever removed it meant it
// gone, a test's clean-up say, which would otherwise fail or leave it
// behind; a client that had a connection does not make it again (host),
// only a process connecting for the first time does, as before. Until
// then the namespace has no registry; calls that need it fail meanwhile.
//
// Stepping down (stepDown) is Close: the server stops serving (it
// answers the requests in hand, then its clients reconnect) and Serve
// returns ErrDisplaced. If another process
// holds the lock at the path by then, a second registry started in the
// window: this one asks it to adopt the objects this one made, changed or
// removed meanwhile (Client.Adopt): it adopts every segment of the
// namespace its table lacks, forgets those removed here, and takes owners
// and modes from the segments, as a registry starting there would (until
// then, a call by id on such an object takes it in: onObject). A key
// that both made in the overlap is kept by neither, as rebuild does for
// any key two objects claim; both objects live on by id.
//
// Not watched: a rename of a directory above the socket's (the directory
// itself keeps its inode, its watch sees nothing). Without inotify (its
// per-user limit of instances reached, say) a host runs unguarded and
// logs so. A file put back while rm -rf empties the directory makes its
// last rmdir fail (ENOTEMPTY); rename a live registry's directory away
// before removing it.

// guardToken is the inotify descriptor's data in the server's epoll set
// (pidfds count up from 1, the eventfd is 0).
const guardToken = math.MaxUint64

// ErrDisplaced is what Serve returns after the server stepped down because
// its socket's directory went or another registry took its socket's lock
// (see the guard above).
var ErrDisplaced = fmt.Errorf("registry: the socket's directory went, or another registry took the socket over; stepped down: %w", kernel.EADDRINUSE)

// startGuard watches the socket's directory; NewServer calls it once the
// epoll set exists.
func (s *Server) startGuard() {
	in, err := kernel.InotifyInit()
	if err == nil {
		if err = in.WatchEntries(filepath.Dir(s.socket)); err == nil {
			err = s.ep.Add(in.Fd(), guardToken)
		}
		if err != nil {
			_ = in.Close()
		}
	}
	if err != nil {
		log.Printf("registry: %s: not watching the socket's directory (%v): a socket or lock file removed while this registry runs is not put back", s.socket, err)
		return
	}
	s.ino = in
	s.lock = s.raise(s.lock)
	s.jr.f = s.raise(s.jr.f)
	s.lnPin = s.pinAbove(s.ln.Load())
}

// Exit order. When a process dies, the kernel closes its descriptors in
// the order of their numbers and then runs the files' final releases last
// in, first out: the highest-numbered first. Releasing an inotify
// instance that has a watch waits for an SRCU grace period
// (fsnotify_destroy_group), 15 to 300 ms on a loaded machine, and every
// release still to run waits with it. A killed host whose lock file,
// socket and journal were numbered below its watch kept them that long:
// clients connected to its dead socket and waited for their hello, nobody
// could take its lock, and a creation it left unfinished waited for the
// next take-over. (In the chaos registry scenario, Get worked again 29–33
// ms after the median SIGKILL and 280–540 ms after the worst; with this,
// 18–22 and 87–168 ms.) So every
// file that others wait on when a host dies is numbered above the watch:
// the lock file and the journal are moved up (raise), and the listener
// and each connection, whose descriptors the net package owns, get a
// second descriptor above it (pin), closed with them. A clean Close
// closes the watch last.

// pin is a second descriptor of a socket, numbered above the watch's
// (exit order), or noPin.
type pin int

const noPin pin = -1

// pinAbove pins c if its descriptor is numbered below the watch's. (Out
// of descriptors, it does not: the order is lost, nothing else.)
func (s *Server) pinAbove(c kernel.FileConn) pin {
	if s.ino == nil {
		return noPin
	}
	fd, err := kernel.DupAbove(c, s.ino.Fd())
	if err != nil {
		return noPin
	}
	return pin(fd)
}

func (p pin) drop() {
	if p != noPin {
		_ = kernel.Close(int(p))
	}
}

// raise returns f, or a duplicate of it numbered above the watch's if f's
// descriptor is below (f is closed then; a flock stays, as it belongs to
// the open file, not the descriptor).
func (s *Server) raise(f *os.File) *os.File {
	if s.ino == nil {
		return f
	}
	fd, err := kernel.DupAbove(f, s.ino.Fd())
	if err != nil || fd < 0 {
		return f
	}
	g := os.NewFile(uintptr(fd), f.Name())
	_ = f.Close()
	return g
}

// guardLoop looks at the paths each time the watch fires, until the server
// closes or steps down.
func (s *Server) guardLoop() {
	for {
		select {
		case <-s.done:
			return
		case <-s.recheck:
		}
		if s.guardCheck() {
			s.stepDown()
			return
		}
	}
}

// guardCheck puts back whatever of the lock file, the socket and the
// journal went. It reports true if another process holds the lock at the
// path, or the directory went: the server must step down.
func (s *Server) guardCheck() (displaced bool) {
	if s.guardHook != nil {
		s.guardHook()
	}
	s.gmu.Lock()
	defer s.gmu.Unlock()
	for attempt := 0; attempt < 3 && !s.closed.Load(); attempt++ {
		err := s.reclaim()
		if err == nil {
			return false
		}
		if errors.Is(err, errBusy) || err == errDirGone {
			return true
		}
		// Something else at the socket's path (EEXIST), say, or a file
		// replaced again under the repair: look again, twice. Then the
		// server goes on for its connected clients, as before the guard,
		// until the next event.
		log.Printf("registry: putting back %s: %v", s.socket, err)
	}
	return false
}

// reclaim is one look and repair; s.gmu is held.
func (s *Server) reclaim() error {
	lockOK, sockOK := s.ownsLock(), s.ownsSocket()
	journalOK := sameFile(s.jr.path, s.jr.f)
	if lockOK && sockOK && journalOK {
		return nil
	}
	dir := filepath.Dir(s.socket)
	// A directory that went is not put back here: this server steps
	// down, and the clients make it again or not (see the top of this
	// file, and Client.connect).
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return errDirGone
	}
	// Watch the directory that is there now (it may be a new one) before
	// anything else, so that its removal during the repair is seen.
	if err := s.ino.WatchEntries(dir); err != nil {
		return errDirGone
	}
	if d := lockDir(dir); d != nil {
		_ = s.dir.Close()
		s.dir = d
	}
	if !lockOK {
		lock, err := lockFile(s.socket + ".lock")
		if err != nil {
			return err
		}
		_ = s.lock.Close()
		s.lock = s.raise(lock)
		log.Printf("registry: %s.lock was removed while this registry ran; put back", s.socket)
	}
	if !sockOK {
		ln, fi, err := listen(s.socket)
		if err != nil {
			return err
		}
		s.sockFile = fi
		oldPin := s.lnPin
		s.lnPin = s.pinAbove(ln)
		old := s.ln.Swap(ln)
		old.SetUnlinkOnClose(false) // (its path is the new socket's)
		_ = closeListener(old)      // Serve's accept moves to the new listener
		oldPin.drop()
		log.Printf("registry: %s was removed while this registry ran; put back", s.socket)
	}
	if !journalOK {
		j, err := newJournal(s.socket)
		if err != nil {
			return err
		}
		j.f = s.raise(j.f)
		s.mu.Lock() // (waits out a creation in progress: creations hold mu)
		old := s.jr
		s.jr = j
		s.mu.Unlock()
		old.close()
	}
	return nil
}

// ownsLock reports whether the lock file's path names the file this
// server holds locked.
func (s *Server) ownsLock() bool { return sameFile(s.socket+".lock", s.lock) }

// ownsSocket reports whether the socket's path names the socket this
// server listens on.
func (s *Server) ownsSocket() bool {
	fi, err := os.Lstat(s.socket)
	return err == nil && s.sockFile != nil && os.SameFile(fi, s.sockFile)
}

func sameFile(path string, f *os.File) bool {
	a, err := os.Lstat(path)
	if err != nil {
		return false
	}
	b, err := f.Stat()
	return err == nil && os.SameFile(a, b)
}

// lockFile opens (or creates, mode 0666: whoever takes over next may be
// another user) the lock file at path and takes its exclusive flock:
// errBusy if another process holds it. The path is checked to name the
// file locked (one removed between the open and the lock would keep
// nobody out).
func lockFile(path string) (*os.File, error) {
	for attempt := 0; ; attempt++ {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
		if err != nil {
			return nil, fmt.Errorf("registry: lock file: %w", err)
		}
		_ = f.Chmod(0o666)
		if err := kernel.Flock(int(f.Fd()), kernel.LOCK_EX|kernel.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, kernel.EWOULDBLOCK) {
				return nil, errBusy
			}
			return nil, fmt.Errorf("registry: lock %s: %w", path, err)
		}
		if sameFile(path, f) {
			return f, nil
		}
		f.Close()
		if attempt == 2 {
			return nil, fmt.Errorf("registry: lock %s: the file keeps being replaced: %w", path, kernel.EAGAIN)
		}
	}
}

// lockHeld reports whether some process holds the lock file at path.
func lockHeld(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return errors.Is(kernel.Flock(int(f.Fd()), kernel.LOCK_SH|kernel.LOCK_NB), kernel.EWOULDBLOCK)
}

// listen replaces a stale socket at path (anything else there is an
// error, EEXIST, and stays: a mistyped path must not cost a file) and
// listens on it, mode 0666 (other users reach it; permission decisions are
// the registry's). The lock is held. It returns the socket file's identity
// too, for ownsSocket.
func listen(path string) (*net.UnixListener, os.FileInfo, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() != os.ModeSocket {
		return nil, nil, fmt.Errorf("registry: %s exists and is not a socket: %w", path, kernel.EEXIST)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("registry: stale socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, nil, err
	}
	_ = os.Chmod(path, 0o666)
	fi, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		return nil, nil, err
	}
	return ln, fi, nil
}

// errDirGone: the socket's directory was removed (or renamed away).
var errDirGone = errors.New("registry: the socket's directory is gone")

// stepDown stops serving because another registry holds the socket's
// lock, or the socket's directory is gone: Close (which asks a registry
// that took over to adopt what this one made), and Serve returns
// ErrDisplaced.
func (s *Server) stepDown() {
	log.Printf("registry: %s: the socket's directory is gone, or another registry took the socket's lock; stepping down", s.socket)
	s.displaced.Store(true)
	_ = s.Close()
}

// adoptTimeout bounds how long a server that stepped down keeps trying to
// reach the registry that took over.
const adoptTimeout = 2 * time.Second

// askAdopt asks the registry now serving the socket to adopt the objects
// this one made or changed (Close calls it when another process holds the
// lock at the path). If none can be reached, the next registry to start
// there rebuilds its table from the kernel anyway.
func (s *Server) askAdopt() {
	deadline := time.Now().Add(adoptTimeout)
	for {
		c, err := Dial(s.socket)
		if err == nil {
			err = c.Adopt()
			_ = c.Close()
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) || !lockHeld(s.socket+".lock") {
			log.Printf("registry: could not ask the registry serving %s to adopt the objects made here: %v (the next one to start there will find them)", s.socket, err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
