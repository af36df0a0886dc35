package kernel_test

import (
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
)

// word returns the 32-bit word at off of an attached segment.
func word(b []byte, off int) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&b[off]))
}

func TestFutexWaitTimeout(t *testing.T) {
	b := attach(t, newShm(t, 4096, 0o600), 0)
	w := word(b, 0)

	deadline := time.Now().Add(20 * time.Millisecond)
	require.ErrorIs(t, kernel.FutexWait(w, 0, deadline), kernel.ETIMEDOUT)
	assert.False(t, time.Now().Before(deadline), "returned before its deadline")

	// A deadline already past times out without sleeping.
	require.ErrorIs(t, kernel.FutexWait(w, 0, time.Now().Add(-time.Second)), kernel.ETIMEDOUT)

	// A word that no longer holds val returns at once, even with no deadline.
	w.Store(1)
	require.NoError(t, kernel.FutexWait(w, 0, time.Time{}))
}

// TestFutexWaitSignals checks that signals (the Go runtime's own SIGURG)
// interrupting the wait neither end it early nor turn into errors.
func TestFutexWaitSignals(t *testing.T) {
	b := attach(t, newShm(t, 4096, 0o600), 0)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				_ = kernel.Kill(kernel.Getpid(), sigurg)
				time.Sleep(time.Millisecond)
			}
		}
	}()
	deadline := time.Now().Add(100 * time.Millisecond)
	err := kernel.FutexWait(word(b, 0), 0, deadline)
	close(stop)
	<-done
	require.ErrorIs(t, err, kernel.ETIMEDOUT)
	assert.False(t, time.Now().Before(deadline), "an EINTR ended the wait early")
}

// sigurg is SIGURG on Linux (x86 and generic), which the Go runtime handles.
const sigurg = 23

func TestFutexBadAddress(t *testing.T) {
	b := attach(t, newShm(t, 4096, 0o600), 0)
	// The kernel wants futex words 4-aligned.
	misaligned := (*atomic.Uint32)(unsafe.Pointer(&b[1]))
	require.ErrorIs(t, kernel.FutexWait(misaligned, 0, time.Now().Add(time.Second)), kernel.EINVAL)
	_, err := kernel.FutexWake(misaligned, 1)
	require.ErrorIs(t, err, kernel.EINVAL)

	n, err := kernel.FutexWake(word(b, 0), 1)
	require.NoError(t, err)
	assert.Zero(t, n, "nobody to wake")
}

// TestFutexWakeAcrossProcesses has a helper sleep on a word of a kernel
// segment and wakes it from this process. Were the futex private, the wake
// would find no waiter and the helper would sleep for ever.
func TestFutexWakeAcrossProcesses(t *testing.T) {
	id := newShm(t, 4096, 0o600)
	b := attach(t, id, 0)

	p := testutil.Start(t, "sysv", nil)
	p.Send("futexwait %d", id)
	p.Expect("waiting", lineTimeout)
	// The helper may not be asleep yet; keep waking (the word stays 0, so
	// only a wake can end its wait) until a wake finds it.
	woken := 0
	testutil.Eventually(t, lineTimeout, "a FUTEX_WAKE to find the helper", func() bool {
		n, err := kernel.FutexWake(word(b, 0), 10)
		require.NoError(t, err)
		woken += n
		return woken > 0
	})
	assert.Equal(t, 1, woken)
	_, err := answer(t, p)
	require.NoError(t, err)
	assert.Zero(t, word(b, 0).Load(), "woken by the wake, not by a change of value")
}
