package kernel_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/usysv/usysv/kernel"
)

// A goroutine that made another runnable and then blocks in poll(2) or
// epoll_wait(2) (ReadBlocking and the other socket waits, Epoll.Wait) lets
// it run first. With one P, the runnable goroutine then runs while the
// waiter is not yet in the system call; without the yield it would run
// only after the runtime's sysmon took the P from the waiting thread, so
// it would find that thread in the call. Which it finds is read from
// /proc/self/task/*/syscall.
func TestBlockingWaitsLetRunnableGoroutinesRun(t *testing.T) {
	c, s := unixPair(t)
	ep, err := kernel.EpollCreate()
	require.NoError(t, err)
	defer ep.Close()
	efd, err := kernel.Eventfd()
	require.NoError(t, err)
	defer unix.Close(efd)
	require.NoError(t, ep.Add(efd, 1))

	_, read := threadsIn(0, nil)
	require.NotZero(t, read, "no /proc/self/task/*/syscall could be read: nothing to look at")
	epfd := uint64(kernel.EpollFd(ep))
	cases := []struct {
		name    string
		in      func() int // threads of this process in the wait's system call
		wait    func()     // blocks until release
		release func()
	}{
		{"ReadBlocking", func() int { n, _ := threadsIn(unix.SYS_PPOLL, nil); return n },
			func() { _, _ = kernel.ReadBlocking(s, make([]byte, 1)) },
			func() { _, _ = c.Write([]byte{1}) }},
		{"Epoll.Wait", func() int { n, _ := threadsIn(unix.SYS_EPOLL_PWAIT, &epfd); return n },
			func() { _, _ = ep.Wait(-1); kernel.EventfdDrain(efd) },
			func() { _ = kernel.EventfdSignal(efd) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			// Up to three tries: on a busy machine, sysmon may take the P
			// from the goroutine looking, if a read of it is held up, and
			// let the waiter into its call meanwhile. Without the yield,
			// every try finds it there.
			var before, n int
			for range 3 {
				before = tc.in()
				seen := make(chan int, 1)
				done := make(chan struct{})
				go func() { seen <- tc.in() }()
				go func() { tc.wait(); close(done) }()
				n = <-seen
				tc.release()
				<-done
				if n == before {
					return
				}
			}
			require.Equal(t, before, n, "a goroutine runnable when the wait began ran only once its thread was in the system call")
		})
	}
}

// AcceptBlocking takes a connection that is already pending without the
// yield of its wait: with one P, a goroutine made runnable just before has
// not run when it returns. (With the wait first, it always has.)
func TestAcceptTakesPendingWithoutYield(t *testing.T) {
	addr := &net.UnixAddr{Name: t.TempDir() + "/s", Net: "unix"}
	ln, err := net.ListenUnix("unix", addr)
	require.NoError(t, err)
	defer ln.Close()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	// Up to three tries: the runtime may preempt the caller, or take its
	// P while it is in a system call, and run the goroutine meanwhile.
	ran := false
	for range 3 {
		d, err := net.DialUnix("unix", nil, addr)
		require.NoError(t, err)
		defer d.Close()
		var flag atomic.Bool
		go flag.Store(true)
		c, err := kernel.AcceptBlocking(ln)
		ran = flag.Load()
		require.NoError(t, err)
		require.NoError(t, c.Close())
		if !ran {
			break
		}
	}
	require.False(t, ran, "a goroutine runnable before the accept of a pending connection ran before it returned, in each of three tries")
}

// threadsIn counts the threads of this process in system call nr (with
// its first argument arg0, unless nil), and the threads whose state it
// could read.
func threadsIn(nr int, arg0 *uint64) (n, read int) {
	tasks, _ := filepath.Glob("/proc/self/task/*/syscall") // (a fixed, valid pattern)
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // (a thread that exited)
		}
		read++
		f := strings.Fields(string(b)) // "nr arg0 ...", "running" or "-1 ..."
		if len(f) < 2 || f[0] != strconv.Itoa(nr) {
			continue
		}
		if arg0 != nil && f[1] != fmt.Sprintf("%#x", *arg0) {
			continue
		}
		n++
	}
	return n, read
}
