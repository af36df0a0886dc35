package kernel

import "golang.org/x/sys/unix"

// Inotify is an inotify(7) instance, non-blocking and close-on-exec: the
// registry watches its socket's directory with it, to notice when its
// socket, lock file or the directory itself is removed while it runs. Its
// descriptor goes into an Epoll; the events themselves are only a cue to
// look again.
type Inotify struct{ fd int }

// InotifyInit is inotify_init1(IN_NONBLOCK|IN_CLOEXEC).
func InotifyInit() (*Inotify, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &Inotify{fd: fd}, nil
}

// Fd is the descriptor, readable while events are pending.
func (n *Inotify) Fd() int { return n.fd }

// entryEvents are the events of a directory whose entries can go: one
// removed, renamed away or renamed over, or the directory itself removed,
// renamed or unmounted.
const entryEvents = unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_UNMOUNT | unix.IN_ONLYDIR

// WatchEntries watches dir (a directory) for an entry going or being
// replaced, and for dir itself going. Watching the same directory again
// is harmless; a directory that was replaced needs a new watch (the old
// one ends with it).
func (n *Inotify) WatchEntries(dir string) error {
	_, err := unix.InotifyAddWatch(n.fd, dir, entryEvents)
	return err
}

// Drain reads and discards every pending event.
func (n *Inotify) Drain() {
	var buf [4096]byte
	for {
		k, err := unix.Read(n.fd, buf[:])
		if err == unix.EINTR {
			continue
		}
		if k <= 0 || err != nil {
			return
		}
	}
}

// Close closes the instance; its watches end with it.
func (n *Inotify) Close() error { return unix.Close(n.fd) }
