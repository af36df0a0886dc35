package kernel

import "golang.org/x/sys/unix"

// SchedYield is sched_yield(2): it lets another runnable thread have this
// CPU. Added for package sem, whose spinning waiters yield the CPU to the
// process they wait for when CPUs are oversubscribed.
func SchedYield() {
	_, _, _ = unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
}
