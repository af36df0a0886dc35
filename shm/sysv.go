package shm

import (
	"sync"
	"unsafe"

	"github.com/usysv/usysv/kernel"
)

// The kernel's own SysV shared memory with Go types. These are plain
// kernel segments: Go and C programs share them by key.

// DS is struct shmid_ds.
type DS = kernel.ShmidDS

// Flags for Get and Attach (Linux values).
const (
	IPC_PRIVATE = kernel.IPC_PRIVATE
	IPC_CREAT   = kernel.IPC_CREAT
	IPC_EXCL    = kernel.IPC_EXCL
	SHM_RDONLY  = kernel.SHM_RDONLY
	SHM_EXEC    = kernel.SHM_EXEC
	// SHM_DEST is set in Perm.Mode once a segment is marked for removal
	// while still attached.
	SHM_DEST = kernel.SHM_DEST
)

// Get is shmget(2): the id of the segment for key, creating it with
// IPC_CREAT. Errors are the kernel's (ENOENT, EEXIST, EINVAL, EACCES, ENOSPC).
func Get(key, size, flags int) (int, error) { return kernel.Shmget(key, size, flags) }

// attached records the start and length of every attach made by Attach,
// so that Detach can refuse a slice that is not one.
var attached struct {
	sync.Mutex
	m map[uintptr]int
}

// Attach is shmat(2) at an address the kernel chooses; SHM_RDONLY maps it
// read-only (a write then faults). The slice covers the segment's size and
// is valid until Detach.
func Attach(id, flags int) ([]byte, error) {
	b, err := kernel.Shmat(id, flags)
	if err != nil {
		return nil, err
	}
	if len(b) > 0 {
		attached.Lock()
		if attached.m == nil {
			attached.m = make(map[uintptr]int)
		}
		attached.m[uintptr(unsafe.Pointer(&b[0]))] = len(b)
		attached.Unlock()
	}
	return b, nil
}

// Detach is shmdt(2). b must be a slice returned by Attach, unchanged at
// its start: anything else (a sub-slice, a slice already detached) gives
// EINVAL, as the kernel does for an address that starts no attach. b must
// not be touched afterwards.
func Detach(b []byte) error {
	if len(b) == 0 {
		return kernel.EINVAL
	}
	addr := uintptr(unsafe.Pointer(&b[0]))
	attached.Lock()
	defer attached.Unlock()
	if _, ok := attached.m[addr]; !ok {
		return kernel.EINVAL
	}
	if err := kernel.ShmdtAddr(addr); err != nil {
		return err
	}
	delete(attached.m, addr)
	return nil
}

// Stat is shmctl(IPC_STAT).
func Stat(id int) (DS, error) { return kernel.ShmctlStat(id) }

// Set is shmctl(IPC_SET): it copies Perm.UID, Perm.GID and Perm.Mode&0777.
func Set(id int, ds DS) error {
	if id < 0 {
		return kernel.EINVAL
	}
	return kernel.ShmctlSet(id, ds.Perm.UID, ds.Perm.GID, ds.Perm.Mode)
}

// Remove is shmctl(IPC_RMID). A segment still attached lives on, with
// SHM_DEST in its mode and its key made private, until the last detach.
func Remove(id int) error {
	if id < 0 {
		return kernel.EINVAL
	}
	return kernel.ShmctlRemove(id)
}
