package kernel

import (
	"math"

	"golang.org/x/sys/unix"
)

// Errno is the kernel's error number type (syscall.Errno). Every error this
// package returns for a failed system call is an Errno, so errors.Is(err,
// kernel.EINVAL) and errors.As(err, &errno) work.
type Errno = unix.Errno

// The errnos the SysV API returns, re-exported so that no other package has
// to import syscall.
const (
	EPERM        = unix.EPERM
	ENOENT       = unix.ENOENT
	ESRCH        = unix.ESRCH
	EINTR        = unix.EINTR
	E2BIG        = unix.E2BIG
	EBADF        = unix.EBADF
	EAGAIN       = unix.EAGAIN
	ENOMEM       = unix.ENOMEM
	EACCES       = unix.EACCES
	EFAULT       = unix.EFAULT
	EEXIST       = unix.EEXIST
	EINVAL       = unix.EINVAL
	EFBIG        = unix.EFBIG
	EPIPE        = unix.EPIPE
	ENOSPC       = unix.ENOSPC
	ERANGE       = unix.ERANGE
	ENOSYS       = unix.ENOSYS
	ENOMSG       = unix.ENOMSG
	EIDRM        = unix.EIDRM
	ETIMEDOUT    = unix.ETIMEDOUT
	ECONNREFUSED = unix.ECONNREFUSED
	EPROTO       = unix.EPROTO
	EBADMSG      = unix.EBADMSG
)

// SysV flag and command values (Linux numeric values, include/uapi/linux/ipc.h,
// sem.h, msg.h, shm.h).
const (
	IPC_PRIVATE = 0
	IPC_CREAT   = 0o1000
	IPC_EXCL    = 0o2000
	IPC_NOWAIT  = 0o4000

	IPC_RMID = 0
	IPC_SET  = 1
	IPC_STAT = 2
	IPC_INFO = 3
	// IPC_64 selects the 64-bit structure layouts (include/uapi/linux/ipc.h).
	IPC_64 = 0x100

	SEM_UNDO     = 0x1000
	GETPID       = 11
	GETVAL       = 12
	GETALL       = 13
	GETNCNT      = 14
	GETZCNT      = 15
	SETVAL       = 16
	SETALL       = 17
	SEM_STAT     = 18
	SEM_INFO     = 19
	SEM_STAT_ANY = 20

	MSG_NOERROR  = 0o10000
	MSG_EXCEPT   = 0o20000
	MSG_COPY     = 0o40000
	MSG_STAT     = 11
	MSG_INFO     = 12
	MSG_STAT_ANY = 13

	SHM_RDONLY   = 0o10000
	SHM_RND      = 0o20000
	SHM_REMAP    = 0o40000
	SHM_EXEC     = 0o100000
	SHM_LOCK     = 11
	SHM_UNLOCK   = 12
	SHM_STAT     = 13
	SHM_INFO     = 14
	SHM_STAT_ANY = 15
	// SHM_DEST and SHM_LOCKED are mode bits shown in shm_perm.mode
	// (include/uapi/linux/shm.h).
	SHM_DEST   = 0o1000
	SHM_LOCKED = 0o2000
)

// Default Linux limits (include/uapi/linux/sem.h, msg.h).
const (
	SEMMSL = 32000
	SEMMNI = 32000
	SEMOPM = 500
	SEMVMX = 32767
	SEMAEM = SEMVMX
	MSGMAX = 8192
	MSGMNB = 16384
	MSGMNI = 32000
)

// errnoErr returns nil for 0 and the Errno otherwise, without allocating.
func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// cint passes a Go int where the kernel takes a C int (ids, semaphore
// numbers, counts). A value outside int32 would be truncated into another,
// possibly existing, id; it is passed as -1 instead, so the kernel rejects
// it with its own errno in its own order of checks.
func cint(v int) uintptr {
	if v < math.MinInt32 || v > math.MaxInt32 {
		return ^uintptr(0)
	}
	return uintptr(v)
}
