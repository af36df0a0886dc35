package kernel

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Scheduling, for spinning waiters (shm.CoLocation): a waiter whose peer
// runs on its CPU yields that CPU between looks, or moves to another.

// SchedYield is sched_yield(2): it lets another runnable thread have this
// CPU.
func SchedYield() {
	_, _, _ = unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
}

// Getcpu is getcpu(2): the CPU the calling thread runs on now (it may
// run on another one by the time the caller looks).
func Getcpu() int {
	var cpu uint32
	_, _, _ = unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), 0, 0)
	return int(cpu)
}

// MoveOffCPU moves the calling thread off CPU cpu, to another CPU its
// affinity mask allows, and leaves the mask as it was: it narrows the
// mask to exclude cpu (sched_setaffinity(2) migrates a thread whose CPU
// the new mask excludes before it returns) and restores it (which does
// not move the thread back). It reports whether the thread moved; it
// does not when the mask allows cpu alone, or does not include it, or
// holds CPUs past unix.CPUSet's 1024.
func MoveOffCPU(cpu int) bool {
	runtime.LockOSThread() // both calls apply to this thread
	defer runtime.UnlockOSThread()
	var mask unix.CPUSet
	if unix.SchedGetaffinity(0, &mask) != nil || !mask.IsSet(cpu) || mask.Count() < 2 {
		return false
	}
	off := mask
	off.Clear(cpu)
	if unix.SchedSetaffinity(0, &off) != nil {
		return false
	}
	// The restore fails only if the CPUs the thread may use changed in
	// between (hot-unplug, a cpuset update): it then keeps the narrower
	// mask, which the kernel has adjusted to the change.
	_ = unix.SchedSetaffinity(0, &mask)
	return true
}
