package kernel

import (
	"time"

	"golang.org/x/sys/unix"
)

// ProcessCPUTime is the CPU time (user and system) every thread of this
// process has used so far: getrusage(2), RUSAGE_SELF. Added for package
// bench, whose idle rows measure what a blocked waiter costs.
func ProcessCPUTime() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
