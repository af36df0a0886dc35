package registry

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// How long a call waits for a registry to answer (including a takeover
// after the host died) and for one response; how long it waits for a
// registry whose host process is stopped before it fails with
// ErrHostStopped, and how often it looks.
var (
	connectTimeout  = 10 * time.Second
	responseTimeout = 60 * time.Second
	stoppedGrace    = time.Second
	stoppedPoll     = 200 * time.Millisecond
)

// Client is a connection to a registry. Its methods are safe for
// concurrent use by goroutines; requests are pipelined on one connection.
//
// The connection is also how the registry knows the process is alive: the
// registry watches the process (pidfd) from its first connection until it
// exits, and then repairs what it left behind.
type Client struct {
	socket   string
	embedded bool // the Default client: hosts a registry, reconnects in the background
	ns       atomic.Uint64
	tag      atomic.Uint32

	mu        sync.Mutex
	cn        *conn
	wake      chan struct{} // closed (and replaced) whenever cn or lastErr changes
	lastErr   error
	redialing bool
	closed    bool

	lim    Limits
	spid   int // pid of the registry last connected to
	conns  atomic.Uint64
	ownDir bool // the socket's directory is the per-user default (Default without $USYSV_SOCKET)

	gets getCache // answers to repeated gets (getcache.go)
}

// conn is one connection; a Client replaces it when it breaks.
type conn struct {
	nc      *net.UnixConn
	spid    int // the serving process, as the kernel says (SO_PEERCRED)
	wmu     sync.Mutex
	pmu     sync.Mutex
	pending map[uint32]chan []byte
	dead    chan struct{}
	isDead  bool
}

var def struct {
	sync.Mutex
	c *Client
}

// hosted is the registry this process hosts, if any (embedded mode). It
// serves on goroutines; it does not keep the process alive.
var hosted struct {
	sync.Mutex
	s *Server
}

// Default returns the process-wide client. It connects to SocketPath()
// ($USYSV_SOCKET, else the per-user default). When no registry answers, it
// hosts one in this process (goroutines bound to that socket, serialised
// with other processes by the socket's lock file) and connects to it. It
// stays connected for the life of the process; when the registry goes away
// (its host exited) it reconnects at once, and one of the clients takes the
// registry over. Nothing is lost: the new registry rebuilds its table from
// the kernel's segments.
func Default() (*Client, error) {
	def.Lock()
	defer def.Unlock()
	if def.c != nil {
		return def.c, nil
	}
	path := SocketPath()
	ownDir := os.Getenv("USYSV_SOCKET") == ""
	if ownDir {
		if err := defaultDir(path); err != nil {
			return nil, err
		}
	}
	c, err := newClient(path, true)
	if err != nil {
		return nil, err
	}
	c.ownDir = ownDir
	if _, err := c.getConn(time.Now().Add(connectTimeout)); err != nil {
		c.shutdown() // stop its reconnection loop
		return nil, err
	}
	def.c = c
	return c, nil
}

// defaultDir makes the per-user default socket directory of path if it is
// missing: private to the user, except root's /run/usysv, which other
// users' clients may reach. Someone else's directory (say a
// /tmp/usysv-<uid> made by another user) could hold someone else's
// registry: it is refused (EACCES).
func defaultDir(path string) error {
	mode := os.FileMode(0o700)
	if path == "/run/usysv/registry.sock" {
		mode = 0o755
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, mode); err != nil {
		return fmt.Errorf("registry: socket directory: %w", err)
	}
	uid, m, err := kernel.StatOwner(dir)
	if err != nil {
		return fmt.Errorf("registry: socket directory: %w", err)
	}
	if uid != uint32(kernel.Geteuid()) || m&0o022 != 0 {
		return fmt.Errorf("registry: socket directory %s is owned by uid %d with mode %#o; want ours, not writable by others: %w",
			dir, uid, m, kernel.EACCES)
	}
	return nil
}

// Dial connects to the registry at socket. It never hosts one: if nothing
// answers it fails (ECONNREFUSED or ENOENT). A broken connection is redialled
// by the next call. While connected, the client keeps one thread blocked in
// poll(2) for the registry's responses (docs/INTERNALS.md, "Waiting on
// sockets"); Close ends it.
func Dial(socket string) (*Client, error) {
	c, err := newClient(socket, false)
	if err != nil {
		return nil, err
	}
	if _, err := c.getConn(time.Now().Add(connectTimeout)); err != nil {
		return nil, err
	}
	return c, nil
}

func newClient(socket string, embedded bool) (*Client, error) {
	path, err := absSocket(socket)
	if err != nil {
		return nil, err
	}
	c := &Client{socket: path, embedded: embedded, wake: make(chan struct{})}
	c.ns.Store(shm.Namespace(path))
	return c, nil
}

// Socket is the absolute path of the registry socket.
func (c *Client) Socket() string { return c.socket }

// Namespace is the registry namespace (shm.Namespace of the socket path, as
// the registry reports it): pass it to shm.Map.
func (c *Client) Namespace() uint64 { return c.ns.Load() }

// Limits are the limits of the registry last connected to.
func (c *Client) Limits() Limits {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lim
}

// ServerPid is the pid of the process serving the registry the client is
// connected to (the daemon, or the embedded host), for tests and tools.
func (c *Client) ServerPid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.spid
}

// Close closes a client made by Dial; later calls fail. On the Default
// client it does nothing: that client lives as long as the process.
func (c *Client) Close() error {
	if c.embedded {
		return nil
	}
	c.shutdown()
	return nil
}

func (c *Client) shutdown() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	cn := c.cn
	c.cn = nil
	c.signal()
	c.mu.Unlock()
	c.gets.clear()
	if cn != nil {
		cn.close()
	}
}

// signal wakes everyone waiting for a connection; c.mu is held.
func (c *Client) signal() {
	close(c.wake)
	c.wake = make(chan struct{})
}

// getConn returns a live connection, waiting for a (re)connection until
// deadline.
func (c *Client) getConn(deadline time.Time) (*conn, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	tried := false
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		if cn := c.cn; cn != nil {
			c.mu.Unlock()
			return cn, nil
		}
		if tried && (!c.embedded && !c.redialing || errors.Is(c.lastErr, ErrHostStopped)) {
			err := c.lastErr
			c.mu.Unlock()
			return nil, err
		}
		if !c.redialing {
			c.redialing = true
			go c.reconnect()
		}
		tried = true
		w := c.wake
		c.mu.Unlock()
		d := time.Until(deadline)
		if d <= 0 {
			return nil, c.timeoutErr()
		}
		if timer == nil {
			timer = time.NewTimer(d)
		}
		select {
		case <-w:
		case <-timer.C:
			return nil, c.timeoutErr()
		}
	}
}

func (c *Client) timeoutErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastErr != nil {
		return fmt.Errorf("registry: no registry at %s: %w", c.socket, c.lastErr)
	}
	return fmt.Errorf("registry: no registry at %s: %w", c.socket, kernel.ETIMEDOUT)
}

// reconnect connects, hosting a registry first if this is the Default
// client and nobody serves the socket. The Default client keeps trying
// until it succeeds; a Dial client tries once.
func (c *Client) reconnect() {
	backoff := time.Millisecond
	for {
		cn, hello, err := c.connect()
		c.mu.Lock()
		if c.closed {
			c.redialing = false
			c.mu.Unlock()
			if cn != nil {
				cn.close()
			}
			return
		}
		if err == nil {
			c.cn, c.lastErr, c.redialing = cn, nil, false
			c.lim, c.spid = hello.lim, hello.pid
			c.ns.Store(hello.ns)
			c.conns.Add(1)
			c.signal()
			c.mu.Unlock()
			go c.readLoop(cn)
			return
		}
		c.lastErr = err
		if !c.embedded {
			c.redialing = false
			c.signal()
			c.mu.Unlock()
			return
		}
		if errors.Is(err, ErrHostStopped) {
			c.signal() // callers fail now rather than at their deadline
		}
		c.mu.Unlock()
		time.Sleep(backoff)
		if backoff *= 2; backoff > 50*time.Millisecond {
			backoff = 50 * time.Millisecond
		}
	}
}

type hello struct {
	ns  uint64
	pid int
	lim Limits
}

func (c *Client) connect() (*conn, hello, error) {
	cn, h, err := dial(c.socket)
	if err == nil || !c.embedded {
		return cn, h, err
	}
	// Nobody answers. Host a registry here, unless another process holds
	// the socket's lock (it is starting one, or is stuck): then wait.
	// Only the first connection may make a missing socket directory: one
	// that went later was removed on purpose (registry guard.go), unless
	// it is the per-user default one, the library's own.
	if c.ownDir {
		if err := defaultDir(c.socket); err != nil {
			return nil, h, err
		}
	}
	if herr := host(c.socket, c.conns.Load() == 0); herr != nil && !errors.Is(herr, errBusy) {
		return nil, h, herr
	}
	return dial(c.socket)
}

// host starts an embedded registry in this process; mkdir is newServer's.
func host(socket string, mkdir bool) error {
	hosted.Lock()
	defer hosted.Unlock()
	if hosted.s != nil && !hosted.s.closed.Load() {
		return errBusy // ours is running; dial again
	}
	s, err := newServer(socket, Limits{}, mkdir)
	if err != nil {
		return err
	}
	hosted.s = s
	go func() { _ = s.Serve() }()
	return nil
}

// dial connects and says hello. The hello's write and read wait in
// poll(2), as every wait on a registry socket does (docs/INTERNALS.md,
// "Waiting on sockets"). When the read waited in the network poller, the
// new host's own client took its answer 3.2 ms (median) after it was
// sent in the chaos test's take-overs, against 0.7–0.8 ms in poll(2).
func dial(socket string) (*conn, hello, error) {
	var h hello
	nc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		return nil, h, err
	}
	spid, _, _, err := kernel.PeerCred(nc)
	if err != nil {
		nc.Close()
		return nil, h, err
	}
	e := newFrame(nil, opHello, 0)
	deadline := time.Now().Add(connectTimeout)
	if _, err := kernel.WriteBlockingUntil(nc, e.bytes(), deadline); err != nil {
		nc.Close()
		return nil, h, err
	}
	body, err := readFrame(&stopWatch{nc: nc, pid: spid, deadline: deadline}, nil)
	if err != nil {
		nc.Close()
		return nil, h, fmt.Errorf("registry: hello: %w", err)
	}
	d, errno, ok := parseResponse(body)
	if !ok || body[1] != opHello {
		nc.Close()
		return nil, h, fmt.Errorf("registry: bad hello response: %w", kernel.EPROTO)
	}
	if errno != 0 {
		nc.Close()
		return nil, h, fmt.Errorf("registry: hello: %w", errno)
	}
	h.ns = d.u64()
	h.pid = int(d.u32())
	h.lim = d.limits()
	if !d.done() {
		nc.Close()
		return nil, h, fmt.Errorf("registry: bad hello response: %w", kernel.EPROTO)
	}
	return &conn{nc: nc, spid: spid, pending: make(map[uint32]chan []byte), dead: make(chan struct{})}, h, nil
}

// stopWatch reads the hello response until deadline, but fails with
// ErrHostStopped once the serving process pid has been stopped for
// stoppedGrace.
type stopWatch struct {
	nc       *net.UnixConn
	pid      int
	deadline time.Time
	stop     hostStop
}

// hostStop tells, from looks every stoppedPoll, when the serving process
// has been stopped for stoppedGrace.
type hostStop struct{ since time.Time }

// givenUp looks at process pid now and reports whether it has been stopped
// for stoppedGrace.
func (h *hostStop) givenUp(pid int, now time.Time) bool {
	switch {
	case !kernel.ProcessStopped(pid):
		h.since = time.Time{}
	case h.since.IsZero():
		h.since = now
	default:
		return now.Sub(h.since) >= stoppedGrace
	}
	return false
}

func (w *stopWatch) Read(p []byte) (int, error) {
	deadline := w.deadline
	for {
		next := time.Now().Add(stoppedPoll)
		if next.After(deadline) {
			next = deadline
		}
		n, err := kernel.ReadBlockingUntil(w.nc, p, next)
		if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		now := time.Now()
		if w.stop.givenUp(w.pid, now) {
			return 0, ErrHostStopped
		}
		if now.After(deadline) {
			return 0, err
		}
	}
}

// parseResponse checks a response frame's header and returns a decoder over
// its payload and its errno.
func parseResponse(body []byte) (dec, kernel.Errno, bool) {
	if len(body) < respHeader || body[0] != protoVersion {
		return dec{}, 0, false
	}
	errno := kernel.Errno(binary.LittleEndian.Uint32(body[reqHeader:]))
	return dec{b: body[respHeader:]}, errno, true
}

// readLoop delivers responses until the connection breaks, then lets the
// client reconnect.
func (c *Client) readLoop(cn *conn) {
	br := bufio.NewReaderSize(&blockingReader{nc: cn.nc}, 4096)
	for {
		body, err := readFrame(br, nil)
		if err != nil || len(body) < respHeader {
			break
		}
		tag := binary.LittleEndian.Uint32(body[4:])
		cn.pmu.Lock()
		ch := cn.pending[tag]
		delete(cn.pending, tag)
		cn.pmu.Unlock()
		if ch != nil {
			ch <- body
		}
	}
	cn.pmu.Lock()
	cn.isDead = true
	close(cn.dead)
	cn.pmu.Unlock()
	cn.close()
	c.mu.Lock()
	if c.cn == cn {
		c.cn = nil
		if c.embedded && !c.closed && !c.redialing {
			// Reconnect at once, not at the next call: the registry must
			// know this process, and someone must take over a dead host.
			c.redialing = true
			go c.reconnect()
		}
	}
	c.mu.Unlock()
}

// close closes the connection. Both sides are shut down first, which
// ends readLoop's wait in poll(2) and that of a request's write waiting
// for room (a registry host that stopped reading); Close alone would end
// neither, and would wait for them.
func (cn *conn) close() {
	_ = cn.nc.CloseRead()
	_ = cn.nc.CloseWrite()
	_ = cn.nc.Close()
}

var errLost = errors.New("registry: connection lost")

// roundTrip sends one request and waits for its response. sent reports
// whether the request may have reached the registry.
func (cn *conn) roundTrip(frame []byte, tag uint32) (body []byte, sent bool, err error) {
	ch := make(chan []byte, 1)
	cn.pmu.Lock()
	if cn.isDead {
		cn.pmu.Unlock()
		return nil, false, errLost
	}
	cn.pending[tag] = ch
	cn.pmu.Unlock()
	cn.wmu.Lock()
	_, err = kernel.WriteBlockingUntil(cn.nc, frame, time.Now().Add(responseTimeout))
	cn.wmu.Unlock()
	if err != nil {
		cn.pmu.Lock()
		delete(cn.pending, tag)
		cn.pmu.Unlock()
		cn.close() // a partly written frame poisons the stream
		return nil, false, errLost
	}
	// Wait, looking now and then whether the serving process is stopped:
	// then nothing will come until someone continues it, which may be
	// never (Ctrl-Z on whichever process hosts an embedded registry).
	giveUp := time.Now().Add(responseTimeout)
	var stop hostStop
	t := time.NewTimer(stoppedPoll)
	defer t.Stop()
	for {
		select {
		case b := <-ch:
			return b, true, nil
		case <-cn.dead:
			select {
			case b := <-ch:
				return b, true, nil
			default:
			}
			return nil, true, errLost
		case <-t.C:
		}
		now := time.Now()
		if stop.givenUp(cn.spid, now) {
			cn.abandon(tag)
			return nil, true, ErrHostStopped
		}
		if now.After(giveUp) {
			cn.abandon(tag)
			return nil, true, fmt.Errorf("registry: no response from the registry in %v: %w", responseTimeout, kernel.ETIMEDOUT)
		}
		t.Reset(stoppedPoll)
	}
}

// abandon gives up on the request tag: the connection is closed, so that
// the registry, when it gets to the request, finds the client gone and does
// not apply it (Server.handle). The other requests pending on it fail as
// if the connection broke, and are retried or reported as such.
func (cn *conn) abandon(tag uint32) {
	cn.pmu.Lock()
	delete(cn.pending, tag)
	cn.pmu.Unlock()
	cn.close()
}

// retry says what a call may do when the connection breaks after the
// request was sent.
type retry int

const (
	retrySafe   retry = iota // idempotent: send again
	retryNever               // not idempotent: report ErrConnLost
	retryRemove              // send again; EINVAL then means "already removed"
)

// call sends op with the payload that put writes, and returns a decoder
// over the response payload, or the registry's errno.
func (c *Client) call(op byte, policy retry, put func(e *enc)) (dec, error) {
	deadline := time.Now().Add(connectTimeout)
	lost := false
	for attempt := 0; ; attempt++ {
		cn, err := c.getConn(deadline)
		if err != nil {
			return dec{}, err
		}
		tag := c.tag.Add(1)
		e := newFrame(make([]byte, 0, 64), op, tag)
		put(&e)
		body, sent, err := cn.roundTrip(e.bytes(), tag)
		if err == nil {
			d, errno, ok := parseResponse(body)
			if !ok || body[1] != op {
				cn.close()
				return dec{}, fmt.Errorf("registry: bad response: %w", kernel.EPROTO)
			}
			if errno != 0 {
				if lost && policy == retryRemove && errno == kernel.EINVAL {
					return dec{}, nil
				}
				return dec{}, errno
			}
			return d, nil
		}
		if !errors.Is(err, errLost) {
			return dec{}, err // ErrHostStopped and timeouts are not retried
		}
		if sent {
			if policy == retryNever {
				return dec{}, ErrConnLost
			}
			lost = true
		}
		if attempt >= 8 && time.Now().After(deadline) {
			return dec{}, ErrConnLost
		}
	}
}

// Get is semget/msgget: it looks req.Key up, or creates the object. The
// id returned is the kernel shmid of the object's segment. Errors are the
// kernel's errnos for the same call (ENOENT, EEXIST, EINVAL, EACCES,
// ENOSPC); see SEMANTICS A1, A2, A7. A get the registry has answered twice
// for an existing object is answered in the process while the object and
// its permissions stay as they were (getcache.go).
func (c *Client) Get(req GetRequest) (int, error) {
	if k, ok := cacheKey(req); ok {
		if id, hit := c.gets.lookup(c, k); hit {
			return id, nil
		}
		return c.gets.ask(c, k, req)
	}
	return c.get(req)
}

// get is Get through the registry.
func (c *Client) get(req GetRequest) (int, error) {
	policy := retrySafe
	if req.Key == kernel.IPC_PRIVATE || req.Flags&(kernel.IPC_CREAT|kernel.IPC_EXCL) == kernel.IPC_CREAT|kernel.IPC_EXCL {
		policy = retryNever
	}
	d, err := c.call(opGet, policy, func(e *enc) {
		e.u32(uint32(req.Kind))
		e.i32(req.Key)
		e.i32(int32(req.Flags))
		e.i32(clampInt32(req.Count))
		e.params(req.Layout)
		e.u64(req.Param)
	})
	if err != nil {
		return -1, err
	}
	id := int(d.i32())
	if !d.done() {
		return -1, fmt.Errorf("registry: bad get response: %w", kernel.EPROTO)
	}
	return id, nil
}

func clampInt32(v int) int32 {
	switch {
	case v > 1<<31-1:
		return 1<<31 - 1
	case v < -1<<31:
		return -1 << 31
	}
	return int32(v)
}

func clampID(id int) int32 {
	if id < 0 || id > 1<<31-1 {
		return -1
	}
	return int32(id)
}

// Stat is IPC_STAT: EINVAL for a negative, unknown, removed or
// wrong-kind id; EACCES without read permission.
func (c *Client) Stat(kind shm.Kind, id int) (Object, error) {
	return c.stat(uint32(kind), id)
}

// StatAny is Stat without the read permission check, as Linux's
// SEM_STAT_ANY and MSG_STAT_ANY (and /proc/sysvipc, and List) show any
// object to anyone. sem uses it for the checks Linux makes before the
// permission: a semaphore number against the set's size.
func (c *Client) StatAny(kind shm.Kind, id int) (Object, error) {
	return c.stat(uint32(kind)|statAny, id)
}

func (c *Client) stat(kindWord uint32, id int) (Object, error) {
	d, err := c.call(opStat, retrySafe, func(e *enc) {
		e.u32(kindWord)
		e.i32(clampID(id))
	})
	if err != nil {
		return Object{}, err
	}
	o := d.object()
	if !d.done() {
		return Object{}, fmt.Errorf("registry: bad stat response: %w", kernel.EPROTO)
	}
	return o, nil
}

// Map maps the segment of object id of kind in the client's namespace
// (shm.Map). When the segment's permissions keep this process out
// (EACCES), it asks the registry whether id names a live object at all: if
// not, the answer is EINVAL, as the kernel's for an id that names nothing,
// whatever the caller's rights (a removed object's segment outlives it
// while another process still has it mapped).
func (c *Client) Map(kind shm.Kind, id int) (*shm.Segment, error) {
	seg, err := shm.Map(id, kind, c.Namespace())
	if errors.Is(err, kernel.EACCES) {
		if _, serr := c.Stat(kind, id); errors.Is(serr, kernel.EINVAL) {
			return nil, kernel.EINVAL
		}
	}
	return seg, err
}

// Set is IPC_SET: it copies uid, gid and mode&0777 and updates ctime; for
// a queue, param is the new qbytes (above MSGMNB needs CAP_SYS_RESOURCE,
// else EPERM; above the queue's capacity is EINVAL). param is ignored for
// semaphore sets. Only the owner, the creator or CAP_SYS_ADMIN may (EPERM).
func (c *Client) Set(kind shm.Kind, id int, uid, gid, mode uint32, param uint64) error {
	_, err := c.call(opSet, retrySafe, func(e *enc) {
		e.u32(uint32(kind))
		e.i32(clampID(id))
		e.u32(uid)
		e.u32(gid)
		e.u32(mode)
		e.u64(param)
	})
	return err
}

// Remove is IPC_RMID: waiters wake with EIDRM, the key is free again, and
// later use of the id gives EINVAL. Only the owner, the creator or
// CAP_SYS_ADMIN may (EPERM).
func (c *Client) Remove(kind shm.Kind, id int) error {
	_, err := c.call(opRemove, retryRemove, func(e *enc) {
		e.u32(uint32(kind))
		e.i32(clampID(id))
	})
	c.gets.sweep() // (detach at once what this removal leaves cached)
	return err
}

// List returns every live object of kind, in id order. Like
// /proc/sysvipc, it needs no permission.
func (c *Client) List(kind shm.Kind) ([]Object, error) {
	var out []Object
	after := -1
	for {
		d, err := c.call(opList, retrySafe, func(e *enc) {
			e.u32(uint32(kind))
			e.i32(int32(after))
		})
		if err != nil {
			return nil, err
		}
		n := d.u32()
		more := d.u32() != 0
		if n > listPage {
			return nil, fmt.Errorf("registry: bad list response: %w", kernel.EPROTO)
		}
		for i := uint32(0); i < n; i++ {
			out = append(out, d.object())
		}
		if !d.done() {
			return nil, fmt.Errorf("registry: bad list response: %w", kernel.EPROTO)
		}
		if !more || n == 0 {
			return out, nil
		}
		after = out[len(out)-1].ID
	}
}

// Adopt asks the registry to take into its table the objects of its
// namespace it lacks, forget those gone and re-read owners and modes from
// the segments, as a registry starting at its socket would. A registry
// that steps down for another (its lock file was removed and another
// registry took the socket) asks this of the other, for what it made in the
// overlap (guard.go). For the registry's own user and CAP_SYS_ADMIN (EPERM
// otherwise); EIO if the kernel's segment list cannot be read.
func (c *Client) Adopt() error {
	_, err := c.call(opAdopt, retrySafe, func(*enc) {})
	return err
}

// Info is IPC_INFO / SEM_INFO / MSG_INFO: the limits in force and the
// registry's usage for kind.
func (c *Client) Info(kind shm.Kind) (Usage, error) {
	d, err := c.call(opInfo, retrySafe, func(e *enc) { e.u32(uint32(kind)) })
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	u.Limits = d.limits()
	u.Objects = int(d.u64())
	u.Units = d.u64()
	u.Bytes = d.u64()
	u.MaxID = int(d.i64())
	if !d.done() {
		return Usage{}, fmt.Errorf("registry: bad info response: %w", kernel.EPROTO)
	}
	return u, nil
}
