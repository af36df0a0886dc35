package kernel

import (
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Unix sockets: a peer's credentials and whether it hung up, and waits
// for a connection or for bytes that block in poll(2) rather than in the
// Go runtime's network poller (ReadBlocking says why).

// PeerCred returns the pid, uid and gid of the process at the other end of a
// unix socket connection (SO_PEERCRED): the kernel's word, not the peer's.
func PeerCred(conn *net.UnixConn) (pid int, uid, gid uint32, err error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, 0, 0, err
	}
	var uc *unix.Ucred
	var serr error
	if err := rc.Control(func(fd uintptr) {
		uc, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, 0, 0, err
	}
	if serr != nil {
		return 0, 0, 0, serr
	}
	return int(uc.Pid), uc.Uid, uc.Gid, nil
}

// PeerHungUp reports whether the process at the other end of a unix
// socket connection has closed it, even if bytes it sent before are still
// unread: poll(2) with no wait sees POLLHUP. A peer that only shut down its
// writing side (shutdown(SHUT_WR): POLLRDHUP alone) can still read, so it
// has not hung up.
func PeerHungUp(conn *net.UnixConn) bool {
	rc, err := conn.SyscallConn()
	if err != nil {
		return true
	}
	hup := false
	_ = rc.Control(func(fd uintptr) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, 0)
		hup = err == nil && n > 0 && pfd[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0
	})
	return hup
}

// ReadBlocking is read(2) on the socket or pipe behind c, waiting in
// poll(2) while nothing is there instead of in the Go runtime's network
// poller. For a reader that waits for hours (a connection between a
// registry and its client): while any goroutine is parked in the network
// poller, an idle thread of the process blocks in epoll_pwait(2) with no
// timeout, and each timer the process arms (a time.Sleep) first wakes
// that thread (a write to the poller's eventfd, a read, another
// epoll_pwait). Measured, a ping-pong whose waiters sleep took about
// 5–20 µs more per round trip that way, whether it used usysv's sem, the
// kernel's semop or a bare futex. A wait here is one thread blocked in the
// kernel, which the Go scheduler leaves alone, once the goroutines the
// caller made runnable have run (letReadiedRun).
//
// It returns 0, io.EOF at end of stream. Close does not end a wait in
// poll: shut the connection's read side down first (CloseRead), which
// does, and then Close.
func ReadBlocking(c syscall.Conn, p []byte) (int, error) {
	return ReadBlockingUntil(c, p, time.Time{})
}

// ReadBlockingUntil is ReadBlocking that waits no later than deadline (the
// zero time: no limit): then it returns 0 and an error matching
// os.ErrDeadlineExceeded, as a read past a net.Conn's deadline does. Bytes
// already there are read whatever the deadline.
func ReadBlockingUntil(c syscall.Conn, p []byte, deadline time.Time) (n int, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	cerr := rc.Control(func(fd uintptr) {
		for {
			n, err = unix.Read(int(fd), p)
			switch err {
			case nil:
				if n == 0 && len(p) > 0 {
					err = io.EOF
				}
				return
			case unix.EINTR:
			case unix.EAGAIN:
				n = 0
				if _, err = pollIn(int(fd), deadline); err != nil {
					return
				}
			default:
				n = 0
				return
			}
		}
	})
	if cerr != nil {
		return 0, cerr
	}
	return n, err
}

// pollIn waits in poll(2) until fd is readable (or hung up, or in error)
// and returns the events it got; os.ErrDeadlineExceeded once deadline
// (unless zero) has passed. EINTR, and poll's own timeout, return no
// events and no error: the caller looks again, and the next call reports
// the deadline.
func pollIn(fd int, deadline time.Time) (int16, error) { return pollFor(fd, unix.POLLIN, deadline) }

// pollFor is pollIn for any events.
func pollFor(fd int, events int16, deadline time.Time) (int16, error) {
	ms := -1
	if !deadline.IsZero() {
		left := time.Until(deadline)
		if left <= 0 {
			return 0, os.ErrDeadlineExceeded
		}
		ms = int((left + time.Millisecond - 1) / time.Millisecond)
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: events}}
	letReadiedRun()
	switch _, err := unix.Poll(pfd, ms); err {
	case nil:
		return pfd[0].Revents, nil
	case unix.EINTR:
		return 0, nil
	default:
		return 0, err
	}
}

// WriteBlockingUntil writes all of p to the socket or pipe behind c
// (write(2), as many as it takes), waiting in poll(2) while its buffer is
// full, no later than deadline (the zero time: no limit), for the reason
// ReadBlocking gives. It returns how many bytes were written; short of
// len(p), with an error: one matching os.ErrDeadlineExceeded at the
// deadline, EPIPE if the peer closed its end. A deadline set on a net.Conn
// (SetWriteDeadline) stays armed as a runtime timer until it passes, even
// after the write, and a pending timer keeps an idle thread of the
// process waiting in the network poller until then, which each shorter
// timer the process arms has to wake. Close does not end a wait in poll:
// shut both sides of the connection down first (CloseRead and
// CloseWrite: poll sees POLLHUP, and the write fails with EPIPE), and
// then Close.
func WriteBlockingUntil(c syscall.Conn, p []byte, deadline time.Time) (n int, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	cerr := rc.Control(func(fd uintptr) {
		for n < len(p) {
			k, werr := unix.Write(int(fd), p[n:])
			switch werr {
			case nil:
				n += k
			case unix.EINTR:
			case unix.EAGAIN:
				if _, err = pollFor(int(fd), unix.POLLOUT, deadline); err != nil {
					return
				}
			default:
				err = werr
				return
			}
		}
	})
	if cerr != nil {
		return n, cerr
	}
	return n, err
}

// AcceptBlocking accepts a connection on ln (accept4(2), non-blocking and
// close-on-exec, as net's Accept makes them), waiting in poll(2) while
// none is pending, for the reason ReadBlocking gives. A pending one is
// taken at once, without the wait's yield (letReadiedRun), which in a
// process whose Ps are all busy can keep the caller off a P for
// milliseconds: in the chaos test's take-overs, whose clients are queued
// before the new registry serves, the new host's own hello was answered
// 14–16 ms (median of about 240 take-overs, in each of two runs) after
// it was sent, and 6 ms once pending connections were taken first. Close
// does not end the wait: ShutdownListener does (the wait then returns
// net.ErrClosed), and then Close. The connection is the process's own
// descriptor, made into a *net.UnixConn.
func AcceptBlocking(ln *net.UnixListener) (*net.UnixConn, error) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	cerr := rc.Control(func(fd uintptr) {
		for {
			nfd, _, err = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			switch err {
			case nil:
				return
			case unix.EAGAIN, unix.EINTR, unix.ECONNABORTED:
				// None pending (or another accept took it, or its client
				// gave up): wait.
			default:
				return
			}
			var ev int16
			if ev, err = pollIn(int(fd), time.Time{}); err != nil {
				return
			}
			if ev&unix.POLLHUP != 0 {
				err = net.ErrClosed // ShutdownListener
				return
			}
		}
	})
	if cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(nfd), "unix")
	defer f.Close()
	c, err := net.FileConn(f) // (a copy of the descriptor, registered with net)
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

// ShutdownListener shuts ln down (shutdown(2), SHUT_RDWR): new connects
// are refused, and a wait in AcceptBlocking ends. Close it afterwards.
func ShutdownListener(ln *net.UnixListener) error {
	rc, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_RDWR) }); err != nil {
		return err
	}
	return serr
}

// letReadiedRun lets the goroutines that the caller made runnable run
// before its thread blocks in the kernel. A goroutine readied by another
// (a channel send: a client's readLoop handing a response to the call
// that waits for it) goes to the front of the same P's run queue, and a
// thread that blocks in a system call keeps its P, run queue and all,
// until the runtime's sysmon takes it back (20 µs to 10 ms later: sysmon
// sleeps longer while the process is idle) or another thread steals the
// goroutine. A registry call whose registry runs in the same process
// waited that long for its own response: p50 of registry
// BenchmarkGetExisting/serial 163–330 µs, against 25–29 µs with the yield
// (17–20 µs when both sides waited in the network poller). Gosched
// puts the caller behind them, on the global run queue; with nothing else
// runnable it returns at once.
func letReadiedRun() { runtime.Gosched() }
