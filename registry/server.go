package registry

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"math"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// Default timeouts (copied into each Server) that keep a hostile or stuck client from holding a connection
// goroutine for ever. They never delay other clients: each connection has
// its own goroutine and no lock is held while reading or writing.
var (
	frameTimeout = 5 * time.Second // to finish a frame once its first byte came
	writeTimeout = 5 * time.Second // to take a response
)

// maxConnsPerUID bounds the connections one user may hold open, so that one
// user cannot exhaust the registry's descriptors for everyone else.
const maxConnsPerUID = 1024

// Server is a registry serving one socket: the key table of one namespace,
// permission decisions, and the liveness of its client processes.
type Server struct {
	socket string
	ns     uint64
	lim    Limits
	ln     atomic.Pointer[net.UnixListener] // replaced by the guard (guard.go)
	euid   uint32
	host   Creds    // this process's: the creator of the segments it makes (kernelMode)
	jr     *journal // creations in progress (journal.go); under mu, replaced under gmu and mu

	// The guard's (guard.go): what it puts back, under gmu.
	gmu       sync.Mutex
	lock      *os.File    // <socket>.lock, flocked
	dir       *os.File    // the socket's directory, shared-flocked (lockDir)
	sockFile  os.FileInfo // the socket file listened on
	lnPin     pin         // the listener's descriptor above the watch's (exit order)
	ino       *kernel.Inotify
	recheck   chan struct{} // the directory's watch fired
	displaced atomic.Bool   // stepped down: another registry took the lock
	closeDone chan struct{} // Close has finished
	guardHook func()        // if set (by tests, before Serve), called before each look

	mu     sync.RWMutex
	byID   map[int]*entry
	byKey  map[tableKey]*entry
	nobj   map[shm.Kind]int
	nsems  uint64
	nbytes map[shm.Kind]uint64

	cmu     sync.Mutex
	conns   map[*net.UnixConn]pin // with its descriptor above the watch's (exit order)
	perUID  map[uint32]int
	procs   map[procID]*proc
	byToken map[uint64]*proc
	token   uint64

	frameTimeout, writeTimeout time.Duration

	ep      *kernel.Epoll
	evfd    int
	repair  chan struct{}
	exec    chan struct{} // a client's connection ended with its process alive (execLoop)
	closed  atomic.Bool
	done    chan struct{}
	serving atomic.Bool
	wg      sync.WaitGroup
	logOnce sync.Once
}

type tableKey struct {
	kind shm.Kind
	key  int32
}

// entry is one live object. refs counts users outside the table lock
// (repair passes); a removed entry is unmapped when the last lets go.
//
// uid, gid and mode are the registry's own copy of the object's
// permissions: decisions are made on it, not on the header, which any
// process that maps the segment could rewrite. The header copy (what the
// kinds' fast paths read) is re-asserted from it after every client death.
type entry struct {
	id             int
	seg            *shm.Segment
	p              shm.Params
	uid, gid, mode uint32
	kcuid, kcgid   uint32 // the kernel segment's creator: the registry host that made it
	refs           int
	removed        bool
}

type procID struct {
	pid   int
	start uint64
}

type proc struct {
	id    procID
	fd    int
	token uint64
}

// SocketPath is the registry socket a process uses: $USYSV_SOCKET, else
// $XDG_RUNTIME_DIR/usysv/registry.sock, else /run/usysv/registry.sock for
// root, else <tmp>/usysv-<uid>/registry.sock.
func SocketPath() string {
	if s := os.Getenv("USYSV_SOCKET"); s != "" {
		return s
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "usysv", "registry.sock")
	}
	if kernel.Geteuid() == 0 {
		return "/run/usysv/registry.sock"
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("usysv-%d", kernel.Geteuid()), "registry.sock")
}

// absSocket is the canonical form of a socket path, the one its namespace
// is computed from.
func absSocket(socket string) (string, error) {
	if socket == "" {
		return "", fmt.Errorf("registry: empty socket path: %w", kernel.EINVAL)
	}
	return filepath.Abs(socket)
}

// lockDir opens dir and takes a shared flock on it, for the server to hold
// for its life (nil if it cannot): systemd-tmpfiles' age-based cleaning
// skips a directory that someone holds a BSD lock on, and everything below
// it (tmpfiles.d(5), "Age"; tried with systemd 252: a held lock, shared or
// exclusive, kept a directory its aging removed otherwise). Without it, a
// registry whose directory ages out (/tmp ages after 10 days on
// RHEL-like systems) loses its socket and lock file while it runs (the
// guard, guard.go, would put them back, after a window in which a
// client could start a second registry). A directory someone else holds
// exclusively is kept by their lock.
func lockDir(dir string) *os.File {
	f, err := os.Open(dir)
	if err != nil {
		return nil
	}
	_ = kernel.Flock(int(f.Fd()), kernel.LOCK_SH|kernel.LOCK_NB)
	return f
}

// errBusy means another registry holds the socket's lock.
var errBusy = fmt.Errorf("registry: another registry serves this socket: %w", kernel.EADDRINUSE)

// NewServer takes the socket's lock (<socket>.lock, an exclusive flock held
// for the server's life, so that two registries never serve one socket),
// replaces a stale socket file (anything else at the path is an error,
// EEXIST, and stays), listens (mode 0666, so that other users
// reach it; permission decisions are the registry's) and rebuilds the table
// from the kernel's segment list: every live usysv segment of this socket's
// namespace, after undoing the creations that dead hosts left unfinished
// (journal.go). Zero fields of lim take Linux's defaults. Serve starts
// serving.
func NewServer(socket string, lim Limits) (*Server, error) {
	return newServer(socket, lim, true)
}

// newServer is NewServer; with mkdir false, a missing directory is an
// error (ENOENT) instead of being made (host, after a connection was lost).
func newServer(socket string, lim Limits, mkdir bool) (*Server, error) {
	path, err := absSocket(socket)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if !mkdir {
			return nil, fmt.Errorf("registry: socket directory %s: %w", dir, kernel.ENOENT)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	ln, sockFile, err := listen(path)
	if err != nil {
		lock.Close()
		return nil, err
	}
	s := &Server{
		socket: path, ns: shm.Namespace(path), lim: lim.withDefaults(), lock: lock, dir: lockDir(dir), sockFile: sockFile,
		recheck: make(chan struct{}, 1), closeDone: make(chan struct{}),
		euid: uint32(kernel.Geteuid()), host: hostCreds(),
		byID: make(map[int]*entry), byKey: make(map[tableKey]*entry),
		nobj: make(map[shm.Kind]int), nbytes: make(map[shm.Kind]uint64),
		conns: make(map[*net.UnixConn]pin), perUID: make(map[uint32]int),
		procs: make(map[procID]*proc), byToken: make(map[uint64]*proc),
		repair: make(chan struct{}, 1), exec: make(chan struct{}, 1), done: make(chan struct{}), evfd: -1,
		frameTimeout: frameTimeout, writeTimeout: writeTimeout, lnPin: noPin,
	}
	s.ln.Store(ln)
	if s.ep, err = kernel.EpollCreate(); err != nil {
		s.abort()
		return nil, err
	}
	if s.evfd, err = kernel.Eventfd(); err != nil {
		s.abort()
		return nil, err
	}
	if err := s.ep.Add(s.evfd, 0); err != nil {
		s.abort()
		return nil, err
	}
	if s.jr, err = newJournal(path); err != nil {
		s.abort()
		return nil, err
	}
	s.recoverJournals(s.jr.path)
	if err := s.rebuild(); err != nil {
		s.abort()
		return nil, err
	}
	s.startGuard()
	return s, nil
}

func (s *Server) abort() {
	s.ln.Load().Close()
	if s.ep != nil {
		s.ep.Close()
	}
	if s.evfd >= 0 {
		kernel.Close(s.evfd)
	}
	for _, e := range s.byID {
		e.seg.Close()
	}
	if s.jr != nil {
		s.jr.close()
	}
	s.lock.Close()
	s.dir.Close()
}

// Socket is the absolute path the server listens on.
func (s *Server) Socket() string { return s.socket }

// Namespace is the server's namespace (shm.Namespace of its socket path).
func (s *Server) Namespace() uint64 { return s.ns }

// rebuild adopts every live segment of the namespace. Segments of other
// namespaces, foreign segments and segments the registry cannot map are
// skipped; keyed ones, and those of sizes without shm.SizeMark, are not
// even attached (shm.Candidate). One that a creation began and nobody
// finished (unfinished, never written, its creator gone) is removed. A
// segment whose kernel segment was removed behind the registry's back
// (SHM_DEST) is treated as removed; one whose header says removed but
// whose kernel segment is not (an IPC_RMID whose host was killed between
// the two) is removed now.
//
// Run again on a table that is not empty (adopt), it also brings the
// objects the table has up to date: those whose segment went or whose
// header says removed are forgotten, and owners and modes are taken from
// the segments as for an adopted one.
func (s *Server) rebuild() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	segs, err := kernel.ShmList()
	if err != nil {
		return fmt.Errorf("registry: list kernel segments: %w", err)
	}
	listed := make(map[int]bool, len(segs))
	sort.Slice(segs, func(i, j int) bool {
		if segs[i].DS.Ctime != segs[j].DS.Ctime {
			return segs[i].DS.Ctime < segs[j].DS.Ctime
		}
		return segs[i].ID < segs[j].ID
	})
	dup := make(map[tableKey]bool) // keys more than one object claimed
	for _, ks := range segs {
		listed[ks.ID] = true
		if e := s.byID[ks.ID]; e != nil {
			s.refresh(ks, e)
			continue
		}
		if !shm.Candidate(ks.DS) {
			continue
		}
		var seg *shm.Segment
		removed, creating := false, false
		err := s.withAccess(ks, func() error {
			p, st, err := shm.Peek(ks.ID)
			if err != nil || p.Namespace != s.ns {
				return err
			}
			switch st {
			case shm.StateLive:
				seg, err = shm.Map(ks.ID, p.Kind, s.ns)
			case shm.StateRemoved:
				removed = true
			case shm.StateCreating:
				creating = true
			}
			return err
		})
		if err == nil && removed && ks.DS.Perm.Mode&kernel.SHM_DEST == 0 {
			_ = kernel.ShmctlRemove(ks.ID)
			continue
		}
		if err == nil && creating && !kernel.ProcessAlive(ks.DS.Cpid, 0) {
			// A creation whose host was killed before it published
			// the object: nobody was told its id (journal.go).
			log.Printf("registry: object %d, made by pid %d (gone) and never published, removed", ks.ID, ks.DS.Cpid)
			_ = kernel.ShmctlRemove(ks.ID)
			continue
		}
		if errors.Is(err, shm.ErrForeign) && unfinished(ks.DS, s.euid) &&
			!kernel.ProcessAlive(ks.DS.Cpid, 0) && allZero(ks.ID) {
			// A creation whose host was killed before the header
			// (journal.go).
			log.Printf("registry: segment %d, begun by pid %d (gone) and never finished, removed", ks.ID, ks.DS.Cpid)
			_ = kernel.ShmctlRemove(ks.ID)
			continue
		}
		if err != nil || seg == nil {
			continue
		}
		p := seg.Params()
		if seg.Keyless() {
			p.Key = 0 // (a key once claimed twice: see below)
		}
		if ks.DS.Perm.Mode&kernel.SHM_DEST != 0 {
			if seg.MarkRemoved() {
				seg.WakeAll()
			}
			seg.Close()
			continue
		}
		uid, gid, mode := s.adoptPerm(ks, seg)
		e := &entry{id: ks.ID, seg: seg, p: p, uid: uid, gid: gid, mode: mode, kcuid: ks.DS.Perm.CUID, kcgid: ks.DS.Perm.CGID}
		tk := tableKey{p.Kind, p.Key}
		if old := s.byKey[tk]; p.Key != 0 && (old != nil || dup[tk]) {
			// Two objects claim one key: a process that can map one of
			// them wrote the key into its header (the checksum is no
			// seal), or two registries once served one socket. Neither
			// keeps the key, so that a get of it finds neither (a forger
			// cannot take over another's key this way), and their headers
			// say so, so that an object made for the key later keeps it
			// across take-overs; both live on by id.
			log.Printf("registry: segment %d claims key %#x, as another did; neither keeps it", ks.ID, uint32(p.Key))
			if old != nil {
				delete(s.byKey, tk)
				old.seg.DropKey()
				old.p.Key = 0
			}
			dup[tk] = true
			seg.DropKey()
			e.p.Key = 0
		}
		s.add(e)
	}
	for id, e := range s.byID {
		if !listed[id] {
			s.forget(e) // (its segment is gone: someone else removed it)
		}
	}
	return nil
}

// refresh brings e, in the table already, up to date with its segment
// (rebuild, run again by adopt); s.mu is held.
func (s *Server) refresh(ks kernel.ShmSegment, e *entry) {
	if ks.DS.Perm.Mode&kernel.SHM_DEST != 0 || e.seg.Removed() {
		if ks.DS.Perm.Mode&kernel.SHM_DEST == 0 {
			_ = kernel.ShmctlRemove(ks.ID)
		}
		if e.seg.MarkRemoved() {
			e.seg.WakeAll()
		}
		s.forget(e)
		return
	}
	e.uid, e.gid, e.mode = s.adoptPerm(ks, e.seg)
}

// adopt is Client.Adopt: rebuild run again, so that the table takes in the
// objects of its namespace that another registry made (or changed, or
// removed) while both served the socket, then a death's pass (processes
// may have died while only the other one watched them). For the
// registry's own user and CAP_SYS_ADMIN (EPERM): adopting re-reads
// headers any mapper can write.
func (s *Server) adopt(c Creds) error {
	if c.UID != s.euid && !c.SysAdmin {
		return kernel.EPERM
	}
	if err := s.rebuild(); err != nil {
		log.Print(err)
		return kernel.EIO
	}
	s.deathPass()
	return nil
}

// adoptPerm is the owner and mode rebuild gives an adopted object. The
// header's copy is what any process that can map the segment can write;
// the kernel segment's owner and mode only the registry (or the object's
// owner) can set, to the object's owner and KernelMode of its mode
// (setKernelPerm). So the kernel's owner stands, and the header's mode
// only within what the kernel's grants each class: across a take-over, a
// mapper cannot make itself (or anyone) the owner, nor give a class access
// the object did not give it; within a class that has some, it can turn
// read into read-write, which the kernel segment's mode (read-write for
// either) cannot tell apart. Both copies are then made to agree. (A host
// killed inside IPC_SET, between the header and the kernel segment, loses
// that IPC_SET; so does one served by a registry that could not set the
// kernel segment, neither root nor its creator nor its owner: it logged
// that.)
func (s *Server) adoptPerm(ks kernel.ShmSegment, seg *shm.Segment) (uid, gid, mode uint32) {
	huid, hgid, hmode, _ := seg.Perm()
	kp := ks.DS.Perm
	if kp.UID == kp.CUID && kp.GID == kp.CGID && kp.Mode&0o777 == shm.CreateMode&0o777 {
		// The kernel segment's permissions were never set: its host died
		// inside the creation (a host of another user, whose journal this
		// registry does not judge). Only the header tells.
		s.setKernelPerm(ks.ID, huid, hgid, s.kernelMode(kp.CUID, kp.CGID, huid, hgid, seg.Params().CUID, seg.Params().CGID, hmode))
		return huid, hgid, hmode
	}
	uid, gid, mode = kp.UID, kp.GID, hmode
	for shift := 0; shift <= 6; shift += 3 {
		if (kp.Mode>>shift)&6 == 0 {
			mode &^= 6 << shift // (x grants no mapping, nor anything else: the header's stands)
		}
	}
	if uid != huid || gid != hgid || mode != hmode {
		log.Printf("registry: segment %d: header owner %d:%d mode %#o, kernel's %d:%d %#o; adopted as %d:%d %#o",
			ks.ID, huid, hgid, hmode, kp.UID, kp.GID, kp.Mode&0o777, uid, gid, mode)
		seg.SetPerm(uid, gid, mode, seg.Ctime())
	}
	if km := s.kernelMode(kp.CUID, kp.CGID, uid, gid, seg.Params().CUID, seg.Params().CGID, mode); km != kp.Mode&0o777 {
		s.setKernelPerm(ks.ID, uid, gid, km)
	}
	return uid, gid, mode
}

// withAccess runs fn; if fn fails with EACCES and this process created or
// owns the kernel segment, it lends itself read-write access for the
// duration of fn (a registry running as an ordinary user that took over
// from another host of the same user).
func (s *Server) withAccess(ks kernel.ShmSegment, fn func() error) error {
	err := fn()
	if !errors.Is(err, kernel.EACCES) || (ks.DS.Perm.CUID != s.euid && ks.DS.Perm.UID != s.euid) {
		return err
	}
	perm := ks.DS.Perm
	if kernel.ShmctlSet(ks.ID, perm.UID, perm.GID, (perm.Mode&0o777)|0o600) != nil {
		return err
	}
	defer func() { _ = kernel.ShmctlSet(ks.ID, perm.UID, perm.GID, perm.Mode&0o777) }()
	return fn()
}

// add puts e in the table; s.mu is held or the server is not serving yet.
func (s *Server) add(e *entry) {
	s.byID[e.id] = e
	if e.p.Key != 0 {
		s.byKey[tableKey{e.p.Kind, e.p.Key}] = e
	}
	s.nobj[e.p.Kind]++
	s.nbytes[e.p.Kind] += e.p.Size()
	if e.p.Kind == shm.KindSem {
		s.nsems += uint64(e.p.Count)
	}
}

// forget drops e from the table; s.mu is held.
func (s *Server) forget(e *entry) {
	delete(s.byID, e.id)
	if e.p.Key != 0 && s.byKey[tableKey{e.p.Kind, e.p.Key}] == e {
		delete(s.byKey, tableKey{e.p.Kind, e.p.Key})
	}
	s.nobj[e.p.Kind]--
	s.nbytes[e.p.Kind] -= e.p.Size()
	if e.p.Kind == shm.KindSem {
		s.nsems -= uint64(e.p.Count)
	}
	e.removed = true
	if e.refs == 0 {
		e.seg.Close()
	}
}

// Serve accepts and serves connections until Close. It first runs the
// start-up pass that a death runs (processes may have died while no
// registry ran). It returns nil after Close, and ErrDisplaced once the
// server has stepped down for another registry and finished closing
// (guard.go). The accept and each connection wait in poll(2), a thread
// each (docs/INTERNALS.md, "Waiting on sockets").
func (s *Server) Serve() error {
	if !s.serving.CompareAndSwap(false, true) {
		return fmt.Errorf("registry: Serve called twice: %w", kernel.EINVAL)
	}
	if !s.goTracked(s.watch) {
		return nil // closed already
	}
	go s.repairLoop()
	go s.execLoop()
	if s.ino != nil {
		go s.guardLoop()
	}
	s.deathPass()
	for {
		ln := s.ln.Load()
		nc, err := kernel.AcceptBlocking(ln)
		if err != nil {
			if s.closed.Load() {
				if s.displaced.Load() {
					<-s.closeDone
					return ErrDisplaced
				}
				return nil
			}
			if s.ln.Load() != ln {
				continue // the guard put a new socket in place
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and the like: back off instead of spinning.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !s.goTracked(func() { s.serveConn(nc) }) {
			nc.Close() // closed meanwhile: the next accept ends the loop
		}
	}
}

// closeListener closes a listener that Serve may be waiting on. The wait
// is in poll(2) (kernel.AcceptBlocking), outside the Go runtime's network
// poller for the reason kernel.ReadBlocking gives: Close alone would not
// end it, and would wait for it, so the listener is shut down first.
func closeListener(ln *net.UnixListener) error {
	_ = kernel.ShutdownListener(ln)
	return ln.Close()
}

// goTracked starts f, which must call s.wg.Done when it returns, as a
// goroutine that Close waits for, unless Close has begun (then it reports
// false and starts nothing). Under cmu, which Close takes after setting
// closed and before it waits, so that no Add overlaps Close's Wait (a
// WaitGroup misuse the race detector reported when Close followed Serve at
// once: TestServerLocksSocketDir).
func (s *Server) goTracked(f func()) bool {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.closed.Load() {
		return false
	}
	s.wg.Add(1)
	go f()
	return true
}

// Close stops serving: the listener is closed, and each connection once
// the requests its client had sent are answered (a creating get not yet
// begun is dropped: handle); the segments are unmapped (objects live on in
// the kernel and are found again by the next registry), the lock released and the socket file removed (if
// the path still names it). If another process holds the lock at the path
// by then (the lock file was replaced while this server ran), the registry
// there is asked to adopt the objects this one made (guard.go).
func (s *Server) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	defer close(s.closeDone)
	close(s.done)
	s.gmu.Lock()
	ln := s.ln.Load()
	ln.SetUnlinkOnClose(s.ownsSocket()) // (another registry's socket stays)
	err := closeListener(ln)
	s.lnPin.drop()
	s.lnPin = noPin
	s.gmu.Unlock()
	s.cmu.Lock()
	for c := range s.conns {
		// The reading side only: serveConn still answers the request in
		// hand, and those its client sent before this (the kernel keeps
		// buffered data readable after SHUT_RD; handle drops a creating
		// get), then finds the end and closes. A creation in flight must
		// reach its client, which cannot send again (EPIPE) and
		// reconnects to the next registry. (Before, the whole connection
		// was closed: a creation finished meanwhile was kept but its
		// answer lost, and the client's retry, served by the next
		// registry before it adopted this one's objects, made a second
		// object for the key; both became keyless, and the first was
		// known to nobody: TestCloseAnswersCreation.)
		_ = c.CloseRead()
	}
	s.cmu.Unlock()
	if stepHook != nil {
		stepHook(stepConnsShut)
	}
	_ = kernel.EventfdSignal(s.evfd)
	s.wg.Wait()
	s.cmu.Lock()
	for _, p := range s.procs {
		kernel.Close(p.fd)
	}
	s.procs, s.byToken = map[procID]*proc{}, map[uint64]*proc{}
	s.cmu.Unlock()
	s.ep.Close()
	kernel.Close(s.evfd)
	s.jr.close() // no creation is in progress: the connections are done
	s.mu.Lock()
	for _, e := range s.byID {
		// A repair pass still running keeps its segments mapped until done.
		e.removed = true
		if e.refs == 0 {
			e.seg.Close()
		}
	}
	s.byID, s.byKey = map[int]*entry{}, map[tableKey]*entry{}
	s.mu.Unlock()
	s.gmu.Lock()
	replaced := !s.ownsLock()
	s.lock.Close()
	s.dir.Close()
	s.gmu.Unlock()
	if replaced && lockHeld(s.socket+".lock") {
		s.askAdopt()
	}
	// The watch last: its release can take hundreds of ms (exit order,
	// guard.go). Under gmu, since a look of the guard's may still use it.
	s.gmu.Lock()
	if s.ino != nil {
		_ = s.ino.Close()
	}
	s.gmu.Unlock()
	return err
}

// serveConn serves one client connection: requests in order, one frame at
// a time. Identity is fixed at connection time from SO_PEERCRED (pid, uid,
// gid) and /proc/<pid>/status (supplementary groups, capabilities).
func (s *Server) serveConn(nc *net.UnixConn) {
	defer s.wg.Done()
	defer nc.Close()
	pid, uid, gid, err := kernel.PeerCred(nc)
	if err != nil || pid <= 0 {
		return // a peer in a pid namespace we cannot see cannot be tracked
	}
	start, err := kernel.ProcessStartTime(pid)
	if err != nil {
		return
	}
	creds, err := kernel.ProcessCreds(pid)
	if err != nil {
		return
	}
	creds.PID, creds.UID, creds.GID = pid, uid, gid
	if !s.addConn(nc, uid) {
		return
	}
	defer s.dropConn(nc, uid)
	if err := s.track(procID{pid, start}); err != nil {
		return
	}
	defer s.connEnded(pid, start)
	gone := func() bool {
		if !kernel.PeerHungUp(nc) {
			return false
		}
		if droppedHook != nil {
			droppedHook()
		}
		return true
	}
	rd := &blockingReader{nc: nc}
	br := bufio.NewReaderSize(rd, 4096)
	rbuf := make([]byte, 256)
	wbuf := make([]byte, 0, 256)
	for {
		// An idle client may stay connected for ever (that is how the
		// registry knows it lives); once a frame starts it must finish.
		rd.deadline = time.Time{}
		if _, err := br.Peek(1); err != nil {
			return
		}
		rd.deadline = time.Now().Add(s.frameTimeout)
		body, err := readFrame(br, rbuf)
		if err != nil {
			return
		}
		if cap(body) > cap(rbuf) {
			rbuf = body[:0]
		}
		out, ok := s.handle(creds, body, wbuf, gone)
		if !ok {
			return
		}
		if _, err := kernel.WriteBlockingUntil(nc, out, time.Now().Add(s.writeTimeout)); err != nil {
			return
		}
		if cap(out) <= maxFrame {
			wbuf = out[:0]
		}
	}
}

func (s *Server) addConn(nc *net.UnixConn, uid uint32) bool {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.closed.Load() || s.perUID[uid] >= maxConnsPerUID {
		return false
	}
	s.conns[nc] = s.pinAbove(nc)
	s.perUID[uid]++
	return true
}

func (s *Server) dropConn(nc *net.UnixConn, uid uint32) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if p, ok := s.conns[nc]; ok {
		p.drop()
		delete(s.conns, nc)
	}
	if s.perUID[uid]--; s.perUID[uid] <= 0 {
		delete(s.perUID, uid)
	}
}

// handle decodes one request frame and returns the response frame. ok is
// false for a malformed frame: the connection is then closed.
//
// gone reports whether the client has closed its connection (a client
// that only shut down its writing side still reads its answers). A request that
// changes something (a Get that may create, IPC_SET, IPC_RMID) is not
// applied for a client that is gone, and the connection is closed: the
// client gave up waiting (the registry's host was stopped, see
// ErrHostStopped) and was told the request was not applied, or died; a
// late creation would belong to nobody. Nor is a Get that may create,
// once Close has begun: its client gets ErrConnLost, or repeats it with
// the next registry if that is safe (Client.call). (A registry stepping
// down may have lost its directory, and so its creation journal: killed
// inside a creation then, it would leave a segment that nobody can name.)
func (s *Server) handle(c Creds, body []byte, buf []byte, gone func() bool) (out []byte, ok bool) {

	if body[0] != protoVersion || body[2] != 0 || body[3] != 0 {
		return nil, false
	}
	op := body[1]
	d := dec{b: body[4:]}
	tag := d.u32()
	resp := newFrame(buf, op, tag)
	resp.u32(0) // errno, patched below
	var err error
	switch op {
	case opHello:
		if !d.done() {
			return nil, false
		}
		resp.u64(s.ns)
		resp.u32(uint32(kernel.Getpid()))
		resp.limits(s.lim)
	case opGet:
		var r GetRequest
		r.Kind = shm.Kind(d.u32())
		r.Key = d.i32()
		r.Flags = int(d.i32())
		r.Count = int(d.i32())
		r.Layout = d.params()
		r.Param = d.u64()
		if !d.done() {
			return nil, false
		}
		if (r.Key == kernel.IPC_PRIVATE || r.Flags&kernel.IPC_CREAT != 0) && (s.closed.Load() || gone()) {
			return nil, false
		}
		var id int
		id, err = s.get(c, r, gone)
		if err == errClientGone {
			return nil, false
		}
		resp.i32(int32(id))
	case opStat:
		kw, id := d.u32(), int(d.i32())
		if !d.done() {
			return nil, false
		}
		var o Object
		err = s.onObject(shm.Kind(kw&^statAny), id, func() (err error) {
			o, err = s.stat(c, shm.Kind(kw&^statAny), id, kw&statAny != 0)
			return err
		})
		resp.object(o)
	case opSet:
		kind, id := shm.Kind(d.u32()), int(d.i32())
		uid, gid, mode, param := d.u32(), d.u32(), d.u32(), d.u64()
		if !d.done() || gone() {
			return nil, false
		}
		err = s.onObject(kind, id, func() error { return s.set(c, kind, id, uid, gid, mode, param) })
	case opRemove:
		kind, id := shm.Kind(d.u32()), int(d.i32())
		if !d.done() || gone() {
			return nil, false
		}
		err = s.onObject(kind, id, func() error { return s.remove(c, kind, id) })
	case opList:
		kind, after := shm.Kind(d.u32()), int(d.i32())
		if !d.done() {
			return nil, false
		}
		objs, more := s.list(kind, after)
		resp.u32(uint32(len(objs)))
		if more {
			resp.u32(1)
		} else {
			resp.u32(0)
		}
		for _, o := range objs {
			resp.object(o)
		}
	case opInfo:
		kind := shm.Kind(d.u32())
		if !d.done() {
			return nil, false
		}
		u := s.info(kind)
		resp.limits(u.Limits)
		resp.u64(uint64(u.Objects))
		resp.u64(u.Units)
		resp.u64(u.Bytes)
		resp.i64(int64(u.MaxID))
	case opAdopt:
		if !d.done() {
			return nil, false
		}
		err = s.adopt(c)
	default:
		return nil, false
	}
	if err != nil {
		var errno kernel.Errno
		if !errors.As(err, &errno) {
			errno = kernel.EIO
		}
		// An error response carries no payload.
		resp.b = resp.b[:4+respHeader]
		binary.LittleEndian.PutUint32(resp.b[4+reqHeader:], uint32(errno))
	}
	return resp.bytes(), true
}

// droppedHook, if set (by tests, before serving), is called whenever a
// request is dropped because its client is gone.
var droppedHook func()

// errClientGone: a creation was undone because its client gave up (create).
var errClientGone = errors.New("registry: the client gave up")

func validKind(k shm.Kind) bool { return k == shm.KindSem || k == shm.KindMsg }

// get is semget/msgget, with Linux's checks in Linux's order
// (ipc/util.c ipcget, ipc/sem.c ksys_semget/newary, ipc/msg.c newque).
// gone is handle's: a creation whose client gave up meanwhile is undone.
func (s *Server) get(c Creds, r GetRequest, gone func() bool) (int, error) {
	if !validKind(r.Kind) {
		return -1, kernel.EINVAL
	}
	if r.Kind == shm.KindSem && (r.Count < 0 || r.Count > s.lim.SEMMSL) {
		return -1, kernel.EINVAL
	}
	if r.Key == kernel.IPC_PRIVATE {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.create(c, r, gone)
	}
	tk := tableKey{r.Kind, r.Key}
	s.mu.RLock()
	e := s.byKey[tk]
	if e != nil {
		defer s.mu.RUnlock()
		return s.existing(c, r, e)
	}
	s.mu.RUnlock()
	if r.Flags&kernel.IPC_CREAT == 0 {
		return -1, kernel.ENOENT
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.byKey[tk]; e != nil { // created meanwhile
		return s.existing(c, r, e)
	}
	return s.create(c, r, gone)
}

// existing finishes a get that found e: EEXIST, the size check, EACCES.
func (s *Server) existing(c Creds, r GetRequest, e *entry) (int, error) {
	if r.Flags&(kernel.IPC_CREAT|kernel.IPC_EXCL) == kernel.IPC_CREAT|kernel.IPC_EXCL {
		return -1, kernel.EEXIST
	}
	if r.Kind == shm.KindSem && r.Count > int(e.p.Count) {
		return -1, kernel.EINVAL
	}
	if !Permitted(c, e.uid, e.gid, e.p.CUID, e.p.CGID, e.mode, RequestedAccess(r.Flags)) {
		return -1, kernel.EACCES
	}
	return e.id, nil
}

// create makes a new object; s.mu is held for writing. If its client is
// gone by the time the object is complete (gone), nobody has learnt its
// id, and it is removed again: errClientGone.
func (s *Server) create(c Creds, r GetRequest, gone func() bool) (int, error) {
	p := r.Layout
	if r.Kind == shm.KindSem {
		if r.Count == 0 {
			return -1, kernel.EINVAL
		}
		if p.Count == 0 {
			p.Count = uint32(r.Count)
		}
		if p.Count != uint32(r.Count) {
			return -1, fmt.Errorf("registry: layout for %d semaphores, request for %d: %w", p.Count, r.Count, kernel.EINVAL)
		}
		if s.nsems+uint64(r.Count) > uint64(s.lim.SEMMNS) {
			return -1, kernel.ENOSPC
		}
	}
	mni := s.lim.MSGMNI
	if r.Kind == shm.KindSem {
		mni = s.lim.SEMMNI
	}
	if s.nobj[r.Kind] >= mni {
		return -1, kernel.ENOSPC
	}
	p.Kind, p.Namespace, p.Key, p.CUID, p.CGID = r.Kind, s.ns, r.Key, c.UID, c.GID
	if p.Waiters > shm.MaxWaiters || p.BodySize > shm.MaxBodySize || p.BodySize%8 != 0 || p.Size() > s.lim.MaxSegment {
		return -1, fmt.Errorf("registry: layout of %d bytes (%d waiters, %d body bytes) refused: %w",
			p.Size(), p.Waiters, p.BodySize, kernel.EINVAL)
	}
	mode := uint32(r.Flags) & 0o777
	// The journal says what is being created until the object is complete
	// and in the table, so that the next registry can undo a creation
	// whose host was killed half-way (journal.go).
	if err := s.jr.intent(shm.SegmentSize(p), time.Now().UnixNano()); err != nil {
		return -1, err
	}
	id, err := shm.CreateWith(p, c.UID, c.GID, mode, time.Now().Unix(), s.jr.made)
	if err != nil {
		s.journalDone()
		return -1, err
	}
	crashPoint(stepCreateMade)
	seg, err := shm.Map(id, r.Kind, s.ns)
	if err != nil {
		_ = kernel.ShmctlRemove(id)
		s.journalDone()
		return -1, err
	}
	seg.SetParam(r.Param)
	s.setKernelPerm(id, c.UID, c.GID, s.kernelMode(s.host.UID, s.host.GID, c.UID, c.GID, c.UID, c.GID, mode))
	// IPC_SET moved the segment's ctime on, perhaps into the next second:
	// write the journal again, so that its time stays the later one, as
	// undoMade requires.
	if err := s.jr.made(id); err != nil {
		s.unmake(id, seg, nil)
		s.journalDone()
		return -1, err
	}
	e := &entry{id: id, seg: seg, p: seg.Params(), uid: c.UID, gid: c.GID, mode: mode, kcuid: s.host.UID, kcgid: s.host.GID}
	s.add(e)
	crashPoint(stepCreateAdded)
	if gone() {
		// The client gave up waiting (this host was stopped in here:
		// ErrHostStopped told it nothing was applied). The journal
		// still names the object, which the next registry would remove
		// if this one died now.
		s.unmake(id, seg, e)
		s.journalDone()
		return -1, errClientGone
	}
	if err := s.jr.done(); err != nil {
		// The journal still names the object, and the next registry
		// would remove it: do it now, before anyone has learnt of it.
		s.unmake(id, seg, e)
		return -1, err
	}
	// Live from now on. Until here, a rebuild that finds the object's host
	// gone removes it, journal or not (the journal may have gone with the
	// socket's directory).
	seg.Publish()
	crashPoint(stepCreateDone)
	return id, nil
}

// unmake removes an object that create made but gave nobody: its header
// says removed, its kernel segment goes, and its entry (e, if it was
// added) is forgotten, else its mapping closed.
func (s *Server) unmake(id int, seg *shm.Segment, e *entry) {
	seg.MarkRemoved()
	_ = kernel.ShmctlRemove(id)
	if e != nil {
		s.forget(e)
	} else {
		_ = seg.Close()
	}
}

// journalDone records, after a failed creation whose segment is gone, that
// none is in progress. If it cannot, the journal names a segment that no
// longer exists, which the next registry finds gone.
func (s *Server) journalDone() {
	if err := s.jr.done(); err != nil {
		log.Print(err)
	}
}

// KernelMode is the mode the registry gives an object's kernel segment: a
// class gets read-write on the segment if the object grants it read or
// write, else nothing.
func KernelMode(mode uint32) uint32 {
	var k uint32
	for shift := 0; shift <= 6; shift += 3 {
		if (mode>>shift)&6 != 0 {
			k |= 6 << shift
		}
	}
	return k
}

// kernelMode is the mode the registry gives the kernel segment of an
// object (uid, gid, cuid, cgid, mode) whose segment kcuid:kcgid created:
// KernelMode(mode), and read-write for the owner class also if the object
// grants the segment's creator read or write. For the kernel puts the
// creator's uid in the segment's owner class (cuid) whatever class the
// object puts it in: a registry hosted by an ordinary user, serving
// another user's object that grants the host's user access as group or
// other only, could otherwise not map it for that user's processes, nor
// could they. (The object's owner may then map a segment whose owner
// bits the object leaves empty: it could give itself them by IPC_SET.) A
// creator of uid 0 has CAP_IPC_OWNER, which maps whatever the mode.
func (s *Server) kernelMode(kcuid, kcgid, uid, gid, cuid, cgid, mode uint32) uint32 {
	k := KernelMode(mode)
	if kcuid == 0 || kcuid == uid {
		return k
	}
	c := Creds{UID: kcuid, GID: kcgid}
	if kcuid == s.host.UID {
		c.GID, c.Groups = s.host.GID, s.host.Groups
	}
	if Permitted(c, uid, gid, cuid, cgid, mode, Read) || Permitted(c, uid, gid, cuid, cgid, mode, Write) {
		k |= 0o600
	}
	return k
}

// hostCreds is this process's credentials, for kernelMode (its ids alone
// if /proc cannot tell its groups).
func hostCreds() Creds {
	c, err := kernel.SelfCreds()
	if err != nil {
		c = Creds{UID: uint32(kernel.Geteuid()), GID: uint32(kernel.Getegid())}
	}
	c.IPCOwner = false // (kernelMode asks what the mode grants, not what the host may)
	return c
}

// setKernelPerm gives the kernel segment the object's owner and the mode
// kernelMode derives. It can fail only for a registry that is neither root nor the
// segment's creator (it took over from another user's embedded registry);
// the object's own permissions, which the library enforces, still hold.
func (s *Server) setKernelPerm(id int, uid, gid, kmode uint32) {
	if err := kernel.ShmctlSet(id, uid, gid, kmode); err != nil {
		s.logOnce.Do(func() {
			log.Printf("registry: cannot set the kernel permissions of segment %d: %v (further failures not logged)", id, err)
		})
	}
}

// lookup finds a live object by id and kind; s.mu is held.
func (s *Server) lookup(kind shm.Kind, id int) (*entry, error) {
	if id < 0 || !validKind(kind) {
		return nil, kernel.EINVAL
	}
	// Whether the object lives is the registry's own record (forget
	// deletes it), not the segment's state word: a process that can map
	// the segment can write that word, and an object it marked removed
	// must still be removable, or its segment stays mapped here for ever.
	e := s.byID[id]
	if e == nil || e.p.Kind != kind {
		return nil, kernel.EINVAL
	}
	return e, nil
}

// onObject runs call, a request on object id. If id is unknown (EINVAL) but
// names a live object of the namespace, one that another registry made
// while both served the socket and that this one has not adopted yet
// (guard.go: the other steps down, finishes its requests, then asks for
// the adoption), the table takes it in (rebuild) and call runs again. So
// a client that got the id from the other one can stat, set and remove
// it here at once. (Before, these calls said EINVAL until the adoption,
// and a Remove retried after its connection broke took that EINVAL for
// "already removed": the object lived on.)
func (s *Server) onObject(kind shm.Kind, id int, call func() error) error {
	err := call()
	if !errors.Is(err, kernel.EINVAL) || !s.unadopted(kind, id) {
		return err
	}
	if rerr := s.rebuild(); rerr != nil {
		log.Print(rerr)
		return err
	}
	return call()
}

// unadopted reports whether id is a live object of kind in this
// namespace that the table does not have. Only segments that rebuild
// would look at are looked at (shm.Candidate).
func (s *Server) unadopted(kind shm.Kind, id int) bool {
	if id < 0 || !validKind(kind) {
		return false
	}
	s.mu.RLock()
	_, known := s.byID[id]
	s.mu.RUnlock()
	if known {
		return false
	}
	ds, err := kernel.ShmctlStat(id)
	if err != nil || !shm.Candidate(ds) || ds.Perm.Mode&kernel.SHM_DEST != 0 {
		return false
	}
	p, st, err := shm.Peek(id)
	return err == nil && p.Namespace == s.ns && p.Kind == kind && st == shm.StateLive
}

func (s *Server) object(e *entry) Object {
	return Object{
		ID:   e.id,
		Kind: e.p.Kind,
		Perm: Perm{Key: e.p.Key, UID: e.uid, GID: e.gid, CUID: e.p.CUID, CGID: e.p.CGID,
			Mode: e.mode, Seq: uint32(e.id) >> 15},
		Ctime: e.seg.Ctime(),
		Count: int(e.p.Count),
		Param: e.seg.Param(),
	}
}

func (s *Server) stat(c Creds, kind shm.Kind, id int, anyone bool) (Object, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, err := s.lookup(kind, id)
	if err != nil {
		return Object{}, err
	}
	o := s.object(e)
	if !anyone && !Permitted(c, o.Perm.UID, o.Perm.GID, o.Perm.CUID, o.Perm.CGID, o.Perm.Mode, Read) {
		return Object{}, kernel.EACCES
	}
	return o, nil
}

// set is IPC_SET (ipc/util.c ipcctl_obtain_check, ipc_update_perm;
// ipc/msg.c msgctl_down for qbytes).
func (s *Server) set(c Creds, kind shm.Kind, id int, uid, gid, mode uint32, param uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.lookup(kind, id)
	if err != nil {
		return err
	}
	if !IsOwner(c, e.uid, e.p.CUID) {
		return kernel.EPERM
	}
	if kind == shm.KindMsg {
		// Linux keeps msg_qbytes in 32 bits whatever msqid64_ds says: a
		// value of 2^32 or more is taken modulo 2^32 (1<<40 sets 0).
		param = uint64(uint32(param))
		if param > uint64(s.lim.MSGMNB) && !c.SysResource {
			return kernel.EPERM
		}
		if param > e.p.Capacity {
			return fmt.Errorf("registry: qbytes %d exceeds the queue's capacity %d: %w", param, e.p.Capacity, kernel.EINVAL)
		}
	}
	if uid == math.MaxUint32 || gid == math.MaxUint32 {
		return kernel.EINVAL
	}
	mode &= 0o777
	e.uid, e.gid, e.mode = uid, gid, mode
	e.seg.SetPerm(uid, gid, mode, time.Now().Unix())
	if kind == shm.KindMsg {
		e.seg.SetParam(param)
	}
	s.setKernelPerm(id, uid, gid, s.kernelMode(e.kcuid, e.kcgid, uid, gid, e.p.CUID, e.p.CGID, mode))
	// Waiters re-check what changed (a receiver may have lost read
	// permission, a sender may now fit).
	e.seg.WakeAll()
	return nil
}

// remove is IPC_RMID: the object is marked removed (waiters wake and return
// EIDRM, later calls EINVAL), its kernel segment removed (it lives on while
// mapped) and its key freed.
func (s *Server) remove(c Creds, kind shm.Kind, id int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.lookup(kind, id)
	if err != nil {
		return err
	}
	if !IsOwner(c, e.uid, e.p.CUID) {
		return kernel.EPERM
	}
	e.seg.MarkRemoved()
	e.seg.WakeAll()
	crashPoint(stepRemoveMarked)
	if err := kernel.ShmctlRemove(id); err != nil && !errors.Is(err, kernel.EINVAL) && !errors.Is(err, kernel.EIDRM) {
		// A host without the rights on a segment another host made (an
		// unprivileged take-over): the object is removed for every
		// usysv process, its header says so; its kernel segment stays
		// until a registry that may remove it rebuilds (rebuild removes
		// the segments of removed objects). (EINVAL, EIDRM: someone
		// removed the segment already, ipcrm by hand say.)
		log.Printf("registry: object %d removed, but not its kernel segment: %v (a registry with the rights will remove it)", id, err)
	}
	s.forget(e)
	return nil
}

// list returns up to listPage objects of kind with ids above after, in id
// order, and whether more follow. Like /proc/sysvipc, it needs no permission.
func (s *Server) list(kind shm.Kind, after int) ([]Object, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var ids []int
	for id, e := range s.byID {
		if e.p.Kind == kind && id > after {
			ids = append(ids, id)
		}
	}
	sort.Ints(ids)
	more := len(ids) > listPage
	if more {
		ids = ids[:listPage]
	}
	out := make([]Object, len(ids))
	for i, id := range ids {
		out[i] = s.object(s.byID[id])
	}
	return out, more
}

func (s *Server) info(kind shm.Kind) Usage {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u := Usage{Limits: s.lim, Objects: s.nobj[kind], Bytes: s.nbytes[kind], MaxID: -1}
	if kind == shm.KindSem {
		u.Units = s.nsems
	}
	for id, e := range s.byID {
		if e.p.Kind == kind && id > u.MaxID {
			u.MaxID = id
		}
	}
	return u
}

// track starts watching a client process (once per process, however many
// connections it opens). The pidfd stays watched after the connection
// closes, until the process exits: its death is what matters.
func (s *Server) track(id procID) error {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.procs[id] != nil {
		return nil
	}
	fd, err := kernel.PidfdOpen(id.pid)
	if err != nil {
		return err
	}
	// The pid could have been reused between SO_PEERCRED and pidfd_open.
	if st, err := kernel.ProcessStartTime(id.pid); err != nil || st != id.start {
		kernel.Close(fd)
		return kernel.ESRCH
	}
	s.token++
	p := &proc{id: id, fd: fd, token: s.token}
	if err := s.ep.Add(fd, p.token); err != nil {
		kernel.Close(fd)
		return err
	}
	s.procs[id] = p
	s.byToken[p.token] = p
	return nil
}

// watch waits for client processes to exit.
func (s *Server) watch() {
	defer s.wg.Done()
	for {
		toks, err := s.ep.Wait(-1)
		if err != nil || s.closed.Load() {
			return
		}
		died := false
		s.cmu.Lock()
		for _, t := range toks {
			if t == 0 {
				continue // the eventfd: Close
			}
			if t == guardToken {
				s.ino.Drain()
				select {
				case s.recheck <- struct{}{}:
				default: // a look is pending
				}
				continue
			}
			p := s.byToken[t]
			if p == nil {
				continue
			}
			_ = s.ep.Remove(p.fd)
			kernel.Close(p.fd)
			delete(s.byToken, t)
			delete(s.procs, p.id)
			died = true
		}
		s.cmu.Unlock()
		if died {
			s.deathPass()
		}
	}
}

// connEnded follows the end of a client's connection: if its process
// lives, it may have exec'd (the connection is close-on-exec), which ends
// the old image as a death does, though the process lives on: a waiter
// slot or a message copy it was in is left, marked by its Lives (shm.Life:
// an exec marks them as a death does), for a repair pass to free (its
// SEM_UNDO stays, its process living). execLoop runs that pass. (Locks
// and ring claims the old image held need none: they name the image, not
// the process.)
func (s *Server) connEnded(pid int, start uint64) {
	if s.closed.Load() || !kernel.ProcessAlive(pid, start) || kernel.ProcessExiting(pid) {
		return // (a death: watch reports it. A process's connection closes in its exit, before it is a zombie.)
	}
	select {
	case s.exec <- struct{}{}:
	default: // a pass is pending
	}
}

// execPassInterval spaces the passes connEnded asks for, so that a
// client that connects and hangs up in a loop cannot make every process
// repair every object in a loop: a slot an exec left is freed within it.
const execPassInterval = 100 * time.Millisecond

// execLoop runs a death's pass (deathPass) for the connections that ended
// with their processes alive, at most one per execPassInterval.
func (s *Server) execLoop() {
	for {
		select {
		case <-s.done:
			return
		case <-s.exec:
		}
		s.deathPass()
		select {
		case <-s.done:
			return
		case <-time.After(execPassInterval):
		}
	}
}

// deathPass is what follows a client's death: every segment's dead
// generation is bumped and its sleepers woken (each kind repairs lazily on
// its next operation), and the eager repair hooks are scheduled.
//
// It also writes the registry's copy of each object's permissions back over
// a header that a mapper rewrote (the write lock serialises SetPerm).
func (s *Server) deathPass() {
	s.mu.Lock()
	for _, e := range s.byID {
		if uid, gid, mode, _ := e.seg.Perm(); uid != e.uid || gid != e.gid || mode != e.mode {
			e.seg.SetPerm(e.uid, e.gid, e.mode, e.seg.Ctime())
		}
		e.seg.BumpDeadGen()
		e.seg.WakeAll()
	}
	s.mu.Unlock()
	select {
	case s.repair <- struct{}{}:
	default: // a pass is already pending; it will see this death too
	}
}

// repairLoop runs the registered repair hooks, one pass per batch of
// deaths, without holding the table lock (a hook may wait for a segment's
// lock).
func (s *Server) repairLoop() {
	for {
		select {
		case <-s.done:
			return
		case <-s.repair:
		}
		s.mu.Lock()
		var es []*entry
		for _, e := range s.byID {
			if len(repairHooks(e.p.Kind)) > 0 {
				e.refs++
				es = append(es, e)
			}
		}
		s.mu.Unlock()
		for _, e := range es {
			if !s.closed.Load() && !e.seg.Removed() {
				for _, fn := range repairHooks(e.p.Kind) {
					runHook(fn, e.seg)
				}
			}
			s.mu.Lock()
			if e.refs--; e.refs == 0 && e.removed {
				e.seg.Close()
			}
			s.mu.Unlock()
		}
	}
}

func runHook(fn func(*shm.Segment), seg *shm.Segment) {
	defer func() {
		if r := recover(); r != nil {
			log.Printf("registry: repair hook for segment %d panicked: %v", seg.ID(), r)
		}
	}()
	fn(seg)
}
