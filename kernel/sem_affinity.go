package kernel

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// PinCPU restricts every thread of this process to one CPU
// (sched_setaffinity on each task in /proc/self/task; threads started
// later inherit the mask). Added for package sem's benchmarks, which run
// the two sides of a ping-pong on CPUs of their own.
func PinCPU(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
			return err
		}
	}
	return nil
}
