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

// Robust futex list (set_robust_list(2), include/uapi/linux/futex.h):
// when a thread that registered a list exits, by any means, the kernel
// walks the list and, in every listed 32-bit word whose low bits hold the
// thread's id, replaces the id with FutexOwnerDied. It does so early in
// the exit, before the process can be seen to have died (wait, pidfd,
// /proc): shm.Life is built on it.
const (
	FutexOwnerDied = 0x40000000 // FUTEX_OWNER_DIED
	FutexTIDMask   = 0x3fffffff // FUTEX_TID_MASK
)

// RobustListHead is the kernel's struct robust_list_head. Next is the
// address of the first entry (an entry is a pointer-sized word holding the
// address of the next one; the last points back at the head);
// FutexOffset is the distance from an entry to its futex word; Pending is
// an entry being added or removed, also marked if the thread dies then.
type RobustListHead struct {
	Next        uintptr
	FutexOffset int
	Pending     uintptr
}

// SetRobustList registers head as the calling thread's robust list.
// Only the calling OS thread is affected: the caller must be locked to it
// (runtime.LockOSThread), and head must stay where it is.
func SetRobustList(head *RobustListHead) error {
	_, _, e := unix.Syscall(unix.SYS_SET_ROBUST_LIST, uintptr(unsafe.Pointer(head)), unsafe.Sizeof(*head), 0)
	if e != 0 {
		return e
	}
	return nil
}

// Gettid is the calling thread's id.
func Gettid() int { return unix.Gettid() }
