package kernel

import (
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Futex operations (include/uapi/linux/futex.h). The private flag is never
// used: every futex here lives in memory shared between processes.
const (
	futexWait = 0
	futexWake = 1
)

// FutexWait sleeps while *addr == val, until woken by FutexWake on the same
// word, or until deadline (the zero Time means no deadline).
//
// It returns nil when woken or when *addr no longer equals val, and
// ETIMEDOUT once the deadline has passed. EINTR (the Go runtime preempts
// threads with signals) is retried inside, with the remaining time
// recomputed from the deadline. A nil return does not promise that the
// caller's condition holds: callers loop on their own predicate.
func FutexWait(addr *atomic.Uint32, val uint32, deadline time.Time) error {
	for {
		var tsp unsafe.Pointer
		var ts unix.Timespec
		if !deadline.IsZero() {
			d := time.Until(deadline)
			if d <= 0 {
				return ETIMEDOUT
			}
			ts = unix.NsecToTimespec(int64(d))
			tsp = unsafe.Pointer(&ts)
		}
		_, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWait,
			uintptr(val), uintptr(tsp), 0, 0)
		switch e {
		case 0, unix.EAGAIN:
			return nil
		case unix.EINTR:
			if addr.Load() != val {
				return nil
			}
			continue
		case unix.ETIMEDOUT:
			if !deadline.IsZero() && time.Until(deadline) > 0 {
				continue // the kernel's clock and ours disagree by a hair
			}
			return ETIMEDOUT
		default:
			return e
		}
	}
}

// FutexWake wakes up to n waiters sleeping on addr and returns how many it woke.
func FutexWake(addr *atomic.Uint32, n int) (int, error) {
	r, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWake, uintptr(n), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
