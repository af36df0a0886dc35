package kernel

import "golang.org/x/sys/unix"

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
