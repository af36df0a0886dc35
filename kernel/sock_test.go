package kernel_test

import (
	"io"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
)

// PeerHungUp: a peer that closed its end has hung up, one that only shut
// down its writing side (and may still read the answers) has not.
func TestPeerHungUp(t *testing.T) {
	c, s := unixPair(t)
	_, err := c.Write([]byte("request"))
	require.NoError(t, err)
	assert.False(t, kernel.PeerHungUp(s), "connected, a request unread")
	require.NoError(t, c.CloseWrite())
	assert.False(t, kernel.PeerHungUp(s), "half-closed: it can still read")
	require.NoError(t, c.Close())
	assert.True(t, kernel.PeerHungUp(s), "closed, the request still unread")
}

// unixPair is a connected pair of unix stream sockets, closed when the
// test ends: the dialling end and the accepted one.
func unixPair(t *testing.T) (c, s *net.UnixConn) {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: t.TempDir() + "/s", Net: "unix"})
	require.NoError(t, err)
	defer l.Close()
	c, err = net.DialUnix("unix", nil, l.Addr().(*net.UnixAddr))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	s, err = l.AcceptUnix()
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return c, s
}

func TestReadBlocking(t *testing.T) {
	c, s := unixPair(t)
	type result struct {
		n   int
		err error
	}
	read := func(p []byte) chan result {
		ch := make(chan result, 1)
		go func() {
			n, err := kernel.ReadBlocking(s, p)
			ch <- result{n, err}
		}()
		return ch
	}
	waiting := func() bool {
		return slices.Equal(testutil.GoroutineStates("kernel.ReadBlocking("), []string{"syscall"})
	}
	buf := make([]byte, 8)
	ch := read(buf)
	// It waits in a system call of its own, not parked in the network
	// poller ("IO wait").
	require.Eventually(t, waiting, 5*time.Second, time.Millisecond, "the reader waits in a system call")
	_, err := c.Write([]byte("hello"))
	require.NoError(t, err)
	r := <-ch
	require.NoError(t, r.err)
	assert.Equal(t, "hello", string(buf[:r.n]))

	// What is there is read at once, in pieces as small as p.
	_, err = c.Write([]byte("abc"))
	require.NoError(t, err)
	n, err := kernel.ReadBlocking(s, buf[:2])
	require.NoError(t, err)
	assert.Equal(t, "ab", string(buf[:n]))
	n, err = kernel.ReadBlocking(s, buf[:0])
	require.NoError(t, err, "an empty read")
	assert.Zero(t, n)
	n, err = kernel.ReadBlocking(s, buf)
	require.NoError(t, err)
	assert.Equal(t, "c", string(buf[:n]))

	// CloseRead ends a wait, with end of stream; so does the peer's close.
	endsWait := func(end func() error, what string) {
		ch := read(buf)
		require.Eventually(t, waiting, 5*time.Second, time.Millisecond)
		require.NoError(t, end())
		r := <-ch
		assert.Zero(t, r.n, what)
		assert.ErrorIs(t, r.err, io.EOF, what)
	}
	endsWait(s.CloseRead, "CloseRead")
	require.NoError(t, s.Close())
	_, err = kernel.ReadBlocking(s, buf)
	assert.ErrorIs(t, err, net.ErrClosed, "a closed connection")
	c, s = unixPair(t)
	endsWait(c.Close, "the peer's close")
}

// ReadBlockingUntil gives up at its deadline, as a net.Conn's read does,
// and still reads what is there once the deadline has passed.
func TestReadBlockingUntil(t *testing.T) {
	c, s := unixPair(t)
	buf := make([]byte, 8)
	start := time.Now()
	n, err := kernel.ReadBlockingUntil(s, buf, start.Add(20*time.Millisecond))
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.Zero(t, n)
	assert.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond, "it waited for the deadline")
	_, err = c.Write([]byte("late"))
	require.NoError(t, err)
	n, err = kernel.ReadBlockingUntil(s, buf, start)
	require.NoError(t, err, "bytes already there, past the deadline")
	assert.Equal(t, "late", string(buf[:n]))
	_, err = kernel.ReadBlockingUntil(s, buf, start)
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "nothing there, past the deadline")

	// A deadline ahead does not end a wait that data ends first.
	go func() {
		time.Sleep(5 * time.Millisecond)
		_, _ = c.Write([]byte("soon"))
	}()
	n, err = kernel.ReadBlockingUntil(s, buf, time.Now().Add(time.Minute))
	require.NoError(t, err)
	assert.Equal(t, "soon", string(buf[:n]))
}

// AcceptBlocking waits in a system call of its own, accepts working
// connections, and ends with net.ErrClosed when the listener is shut
// down, which also refuses connects from then on.
func TestAcceptBlocking(t *testing.T) {
	addr := &net.UnixAddr{Name: t.TempDir() + "/s", Net: "unix"}
	ln, err := net.ListenUnix("unix", addr)
	require.NoError(t, err)
	type result struct {
		c   *net.UnixConn
		err error
	}
	accept := func() chan result {
		ch := make(chan result, 1)
		go func() {
			c, err := kernel.AcceptBlocking(ln)
			ch <- result{c, err}
		}()
		return ch
	}
	waiting := func() bool {
		return slices.Equal(testutil.GoroutineStates("kernel.AcceptBlocking("), []string{"syscall"})
	}
	ch := accept()
	require.Eventually(t, waiting, 5*time.Second, time.Millisecond, "the accept waits in a system call")
	d, err := net.DialUnix("unix", nil, addr)
	require.NoError(t, err)
	defer d.Close()
	r := <-ch
	require.NoError(t, r.err)
	defer r.c.Close()
	_, err = d.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 8)
	n, err := kernel.ReadBlocking(r.c, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf[:n]), "the accepted connection carries the bytes")
	pid, _, _, err := kernel.PeerCred(r.c)
	require.NoError(t, err)
	assert.Equal(t, os.Getpid(), pid, "and the peer's credentials")

	// A connection pending before the wait is taken at once.
	d2, err := net.DialUnix("unix", nil, addr)
	require.NoError(t, err)
	defer d2.Close()
	c2, err := kernel.AcceptBlocking(ln)
	require.NoError(t, err)
	require.NoError(t, c2.Close())

	ch = accept()
	require.Eventually(t, waiting, 5*time.Second, time.Millisecond)
	require.NoError(t, kernel.ShutdownListener(ln))
	r = <-ch
	assert.ErrorIs(t, r.err, net.ErrClosed, "a shut-down listener ends the wait")
	assert.Nil(t, r.c)
	_, err = kernel.AcceptBlocking(ln)
	assert.ErrorIs(t, err, net.ErrClosed, "and any later accept")
	_, err = net.DialUnix("unix", nil, addr)
	assert.Error(t, err, "connects are refused")
	require.NoError(t, ln.Close())
	_, err = kernel.AcceptBlocking(ln)
	assert.ErrorIs(t, err, net.ErrClosed, "a closed listener")
}

// WriteBlockingUntil writes everything, waiting in a system call of its
// own while the socket's buffer is full; at its deadline it reports how
// much it wrote; a closed peer gives EPIPE.
func TestWriteBlockingUntil(t *testing.T) {
	c, s := unixPair(t)
	n, err := kernel.WriteBlockingUntil(c, []byte("hello"), time.Time{})
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	buf := make([]byte, 8)
	k, err := kernel.ReadBlocking(s, buf)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(buf[:k]))

	// More than the buffers hold: it waits, and ends at the deadline with
	// what went through.
	big := make([]byte, 64<<20)
	n, err = kernel.WriteBlockingUntil(c, big, time.Now().Add(20*time.Millisecond))
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.Positive(t, n)
	assert.Less(t, n, len(big))
	queued := n

	// A reader that drains the other end lets a write of it all finish;
	// the writer meanwhile waits in a system call.
	done := make(chan int64, 1)
	go func() {
		var got int64
		p := make([]byte, 1<<16)
		for got < int64(queued+len(big)) {
			k, err := kernel.ReadBlocking(s, p)
			if err != nil {
				break
			}
			got += int64(k)
		}
		done <- got
	}()
	type result struct {
		n   int
		err error
	}
	wrote := make(chan result, 1)
	go func() {
		n, err := kernel.WriteBlockingUntil(c, big, time.Time{})
		wrote <- result{n, err}
	}()
	r := <-wrote
	require.NoError(t, r.err)
	assert.Equal(t, len(big), r.n)
	assert.Equal(t, int64(queued+len(big)), <-done, "every byte arrived")

	// A writer waiting for room is in a system call, not the poller.
	go func() { _, _ = kernel.WriteBlockingUntil(c, big, time.Now().Add(time.Minute)) }()
	require.Eventually(t, func() bool {
		return slices.Equal(testutil.GoroutineStates("kernel.WriteBlockingUntil("), []string{"syscall"})
	}, 5*time.Second, time.Millisecond, "the writer waits in a system call")
	require.NoError(t, s.Close())
	require.Eventually(t, func() bool { return len(testutil.GoroutineStates("kernel.WriteBlockingUntil(")) == 0 },
		5*time.Second, time.Millisecond, "the peer's close ends the wait")
	_, err = kernel.WriteBlockingUntil(c, []byte("x"), time.Time{})
	assert.ErrorIs(t, err, kernel.EPIPE, "a closed peer")

	// Shutting down both sides of one's own end ends a wait (poll then
	// sees POLLHUP; Close alone would wait for it).
	c, _ = unixPair(t)
	go func() {
		n, err := kernel.WriteBlockingUntil(c, big, time.Time{})
		wrote <- result{n, err}
	}()
	require.Eventually(t, func() bool {
		return slices.Equal(testutil.GoroutineStates("kernel.WriteBlockingUntil("), []string{"syscall"})
	}, 5*time.Second, time.Millisecond)
	require.NoError(t, c.CloseRead())
	require.NoError(t, c.CloseWrite())
	select {
	case r := <-wrote:
		assert.ErrorIs(t, r.err, kernel.EPIPE, "its own end shut down")
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown did not end the wait")
	}
}
