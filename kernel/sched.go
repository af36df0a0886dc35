package kernel

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Scheduling, for spinning waiters (shm.CoLocation): a waiter whose peer
// runs on its CPU yields that CPU between looks.

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
