package kernel

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Getcpu is getcpu(2): the CPU the calling thread runs on now (it may
// run on another one by the time the caller looks). Added for package
// msgq, whose spinning waiters yield the CPU only when the process they
// wait for last ran on the same one.
func Getcpu() int {
	var cpu uint32
	_, _, _ = unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), 0, 0)
	return int(cpu)
}
