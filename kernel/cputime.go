package kernel

import (
	"time"

	"golang.org/x/sys/unix"
)

// ProcessCPUTime is the CPU time (user and system) every thread of process
// pid has used so far: clock_gettime(2) on the process's CPU-time clock
// (clock_getcpuclockid(3)), which any process may read. Added for package
// bench, whose idle rows measure what a blocked waiter costs from outside
// it, so that the measuring itself wakes nothing in the measured process.
func ProcessCPUTime(pid int) (time.Duration, error) {
	// MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED) of the kernel's
	// include/linux/posix-timers.h: all threads, their exact run time.
	const cpuclockSched = 2
	clock := int32(^uint32(pid)<<3 | cpuclockSched)
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err != nil {
		return 0, err
	}
	return time.Duration(ts.Nano()), nil
}
