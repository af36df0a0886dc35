package kernel

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ShmReplaceWithZeros replaces the SysV shm attach that b covers (b must be
// a whole slice from Shmat) with private anonymous zero pages at the same
// address: the segment is detached (its nattch drops, and a removed
// segment is freed), while the addresses stay valid, reading zeros. Code
// that may still hold pointers into the attach then reads "nothing here"
// instead of faulting. The placeholder is released by MunmapBytes.
func ShmReplaceWithZeros(b []byte) error {
	if len(b) == 0 {
		return EINVAL
	}
	p := unsafe.Pointer(&b[0])
	_, err := unix.MmapPtr(-1, 0, p, uintptr(len(b)),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED)
	return err
}

// MunmapBytes is munmap(2) of the pages that b covers.
func MunmapBytes(b []byte) error {
	if len(b) == 0 {
		return EINVAL
	}
	return unix.MunmapPtr(unsafe.Pointer(&b[0]), uintptr(len(b)))
}
