package kernel

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// flock(2) operations.
const (
	LOCK_SH = unix.LOCK_SH
	LOCK_EX = unix.LOCK_EX
	LOCK_NB = unix.LOCK_NB
	LOCK_UN = unix.LOCK_UN
)

// More errnos the registry's socket and lock handling meets.
const (
	EWOULDBLOCK = unix.EWOULDBLOCK
	EADDRINUSE  = unix.EADDRINUSE
	ECONNRESET  = unix.ECONNRESET
	ENOTCONN    = unix.ENOTCONN
	EIO         = unix.EIO
	ENOTDIR     = unix.ENOTDIR
)

// Flock is flock(2) on an open descriptor; EINTR is retried.
func Flock(fd int, how int) error {
	for {
		err := unix.Flock(fd, how)
		if err != unix.EINTR {
			return err
		}
	}
}

// FileConn is what DupAbove takes: an *os.File, or a net connection or
// listener.
type FileConn = syscall.Conn

// DupAbove returns a duplicate of c's descriptor numbered above min
// (fcntl F_DUPFD_CLOEXEC), or -1 if c's own number already is above min.
// c's blocking mode stays as it is (os.File.Fd would change it). The
// registry orders the release of its files when its process dies with it
// (registry guard.go, "Exit order").
func DupAbove(c FileConn, min int) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	dup := -1
	cerr := rc.Control(func(fd uintptr) {
		if int(fd) > min {
			return
		}
		dup, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, min+1)
	})
	if cerr != nil {
		return -1, cerr
	}
	return dup, err
}

// StatDevIno returns st_dev and st_ino of path (stat(2), following
// symlinks), for ftok(3).
func StatDevIno(path string) (dev, ino uint64, err error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, err
	}
	return uint64(st.Dev), uint64(st.Ino), nil
}

// StatOwner returns the owner uid and the mode bits (permissions, setuid,
// setgid, sticky: st_mode & 07777) of path, without following a final
// symlink (lstat(2)).
func StatOwner(path string) (uid, mode uint32, err error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return 0, 0, err
	}
	return st.Uid, st.Mode & 0o7777, nil
}
