package kernel

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Getpid is getpid(2).
func Getpid() int { return unix.Getpid() }

// Kill is kill(2).
func Kill(pid, sig int) error { return unix.Kill(pid, unix.Signal(sig)) }

// Signal numbers used by tests and tools.
const (
	SIGKILL = int(unix.SIGKILL)
	SIGSTOP = int(unix.SIGSTOP)
	SIGCONT = int(unix.SIGCONT)
	SIGTERM = int(unix.SIGTERM)
)

// PidfdOpen is pidfd_open(2). The descriptor becomes readable when the
// process exits, and keeps naming that process even if its pid is reused.
func PidfdOpen(pid int) (int, error) {
	return unix.PidfdOpen(pid, 0)
}

// PidfdExited reports whether the process behind a pidfd has exited,
// without blocking. A descriptor that is not open gives EBADF.
func PidfdExited(fd int) (bool, error) {
	if fd < 0 {
		return false, EBADF // poll(2) would silently skip it
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, err
		}
		if fds[0].Revents&unix.POLLNVAL != 0 {
			return false, EBADF
		}
		return n > 0, nil
	}
}

// StopThread stops this process with SIGSTOP sent to the calling OS
// thread (tgkill), so that this thread is stopped before it runs on: with
// kill(2) the kernel picks the thread that starts the group stop, and the
// caller could run on for a while. The caller must have locked its
// goroutine to the thread (runtime.LockOSThread). For crash tests.
func StopThread() error {
	return unix.Tgkill(unix.Getpid(), unix.Gettid(), unix.SIGSTOP)
}

// Close is close(2).
func Close(fd int) error { return unix.Close(fd) }

// Unread is how many bytes wait to be read on stream socket fd (the
// SIOCINQ ioctl). Tests use it to see a request arrive without timing it.
func Unread(fd int) (int, error) { return unix.IoctlGetInt(fd, unix.SIOCINQ) }

// ProcessStartTime returns the start time of process pid, in clock ticks
// since boot (field 22 of /proc/pid/stat). A pid together with its start
// time names one process for ever, even after the pid is reused.
func ProcessStartTime(pid int) (uint64, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 {
		return 0, EPROTO
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, ESRCH // a zombie has exited; only its parent's wait is left
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// ProcessStopped reports whether process pid is stopped: by a signal
// (SIGSTOP, SIGTSTP: Ctrl-Z) or by a debugger. Such a process is alive but
// will do nothing until someone continues it.
func ProcessStopped(pid int) bool {
	f, err := procStat(pid)
	return err == nil && len(f) > 0 && (f[0] == "T" || f[0] == "t")
}

// ProcessExiting reports whether process pid has begun to exit (or to
// dump core), as far as its /proc entry shows: its main thread has a
// SIGKILL pending (the kernel queues one on every thread of a process
// that is to die, before any of them starts to exit: a fatal signal, or
// another thread's exit_group) or is exiting or dumping core
// (PF_EXITING, PF_DUMPCORE), or it is a zombie already. A process that
// exec'd shows none of these. (Not seen: the moments between the main
// thread's own exit_group and its PF_EXITING, if another thread finishes
// exiting first.) An unreadable entry counts as exiting only if the
// process is gone.
func ProcessExiting(pid int) bool {
	f, err := procStat(pid)
	if err != nil {
		return errors.Is(err, ESRCH)
	}
	return statExiting(f)
}

// statExiting is ProcessExiting's reading of /proc/pid/stat's fields
// from field 3 on (procStat).
func statExiting(f []string) bool {
	// f[0] is field 3 (state), f[6] field 9 (flags), f[28] field 31
	// (the main thread's pending signals, low 31).
	switch {
	case len(f) > 0 && (f[0] == "Z" || f[0] == "X"):
		return true
	case len(f) < 29:
		return false
	}
	flags, _ := strconv.ParseUint(f[6], 10, 64)
	sigs, _ := strconv.ParseUint(f[28], 10, 64)
	return flags&(pfExiting|pfDumpcore) != 0 || sigs&(1<<(SIGKILL-1)) != 0
}

// Task flags (include/linux/sched.h) that /proc/pid/stat shows.
const (
	pfExiting  = 0x00000004
	pfDumpcore = 0x00000200
)

// procStat returns the fields of /proc/pid/stat from field 3 (state) on.
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	switch {
	case errors.Is(err, ENOENT), errors.Is(err, ESRCH):
		return nil, ESRCH
	case err != nil:
		return nil, err // (out of file descriptors, say: the process may live)
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, EPROTO
	}
	return strings.Fields(string(b[i+1:])), nil
}

// ProcessAlive reports whether the process pid that started at start (as
// ProcessStartTime reports it; 0 means "any") is still running. Zombies
// count as dead. A process whose /proc entry cannot be read for another
// reason than its absence (this process out of file descriptors, say)
// counts as alive: callers free what a dead process held.
func ProcessAlive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := ProcessStartTime(pid)
	switch {
	case errors.Is(err, ESRCH):
		return false
	case err != nil:
		return true
	}
	return start == 0 || st == start
}

// Creds are a process's credentials as far as SysV permission checks go.
type Creds struct {
	PID      int
	UID, GID uint32 // effective ids (the fsuid/fsgid for group matching is the same unless changed)
	Groups   []uint32
	// IPCOwner is CAP_IPC_OWNER (bypasses SysV mode checks), SysAdmin
	// CAP_SYS_ADMIN (IPC_SET / IPC_RMID on others' objects), SysResource
	// CAP_SYS_RESOURCE (msg_qbytes above MSGMNB).
	IPCOwner, SysAdmin, SysResource bool
}

// Capability bit numbers (include/uapi/linux/capability.h).
const (
	CAP_SYS_RESOURCE = 24
	CAP_SYS_ADMIN    = 21
	CAP_IPC_OWNER    = 15
	CAP_IPC_LOCK     = 14
)

// ProcessCreds reads the credentials of process pid from /proc/pid/status
// (effective uid and gid, supplementary groups, effective capabilities).
func ProcessCreds(pid int) (Creds, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return Creds{}, ESRCH
	}
	c := Creds{PID: pid}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		switch k {
		case "Uid": // real, effective, saved, fs
			if len(f) >= 2 {
				c.UID = parseU32(f[1])
			}
		case "Gid":
			if len(f) >= 2 {
				c.GID = parseU32(f[1])
			}
		case "Groups":
			for _, g := range f {
				c.Groups = append(c.Groups, parseU32(g))
			}
		case "CapEff":
			if len(f) == 1 {
				caps, _ := strconv.ParseUint(f[0], 16, 64)
				c.IPCOwner = caps&(1<<CAP_IPC_OWNER) != 0
				c.SysAdmin = caps&(1<<CAP_SYS_ADMIN) != 0
				c.SysResource = caps&(1<<CAP_SYS_RESOURCE) != 0
			}
		}
	}
	return c, nil
}

// ThreadGroup returns the pid of the process that thread tid belongs to
// (the Tgid of /proc/tid/status), or ESRCH if there is no such thread.
func ThreadGroup(tid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/status")
	if err != nil {
		return 0, ESRCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Tgid:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, EPROTO
}

func parseU32(s string) uint32 {
	n, _ := strconv.ParseUint(s, 10, 32)
	return uint32(n)
}

// SelfCreds returns the calling process's credentials.
func SelfCreds() (Creds, error) {
	c, err := ProcessCreds(unix.Getpid())
	if err != nil {
		return c, err
	}
	// The syscalls are authoritative for the ids; /proc gives groups and caps.
	c.UID, c.GID = uint32(unix.Geteuid()), uint32(unix.Getegid())
	return c, nil
}

// Epoll is an epoll instance, used to watch many pidfds from one goroutine.
type Epoll struct{ fd int }

// EpollCreate is epoll_create1(EPOLL_CLOEXEC).
func EpollCreate() (*Epoll, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &Epoll{fd: fd}, nil
}

// Add watches fd for readability, reporting data when it fires.
func (e *Epoll) Add(fd int, data uint64) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	ev.Fd = int32(data)
	ev.Pad = int32(data >> 32)
	return unix.EpollCtl(e.fd, unix.EPOLL_CTL_ADD, fd, &ev)
}

// Remove stops watching fd.
func (e *Epoll) Remove(fd int) error {
	return unix.EpollCtl(e.fd, unix.EPOLL_CTL_DEL, fd, nil)
}

// Wait blocks up to msec milliseconds (-1: for ever) and returns the data of
// the descriptors that are ready. EINTR is retried. Before it blocks, the
// goroutines its caller made runnable run (letReadiedRun: the registry's
// watch hands a death to its repair loop and waits again).
func (e *Epoll) Wait(msec int) ([]uint64, error) {
	var evs [32]unix.EpollEvent
	for {
		if msec != 0 {
			letReadiedRun()
		}
		n, err := unix.EpollWait(e.fd, evs[:], msec)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		out := make([]uint64, n)
		for i := 0; i < n; i++ {
			out[i] = uint64(uint32(evs[i].Fd)) | uint64(uint32(evs[i].Pad))<<32
		}
		return out, nil
	}
}

// Close closes the epoll instance.
func (e *Epoll) Close() error { return unix.Close(e.fd) }

// Eventfd is eventfd(2) with EFD_CLOEXEC; used to interrupt an Epoll.Wait.
func Eventfd() (int, error) { return unix.Eventfd(0, unix.EFD_CLOEXEC) }

// EventfdSignal adds 1 to an eventfd, making it readable.
func EventfdSignal(fd int) error {
	var b = [8]byte{1}
	_, err := unix.Write(fd, b[:])
	return err
}

// EventfdDrain resets an eventfd to zero.
func EventfdDrain(fd int) {
	var b [8]byte
	_, _ = unix.Read(fd, b[:])
}

var self struct {
	once  sync.Once
	pid   int
	start uint64
}

// Self returns the calling process's pid and start time (ProcessStartTime),
// read once. Go programs do not fork without exec, so neither changes. A
// read that fails (out of file descriptors, say) is tried again for up to
// a tenth of a second: others take a start time of 0 for "any".
func Self() (pid int, start uint64) {
	self.once.Do(func() {
		self.pid = unix.Getpid()
		for try := 0; try < 50; try++ {
			var err error
			if self.start, err = ProcessStartTime(self.pid); err == nil {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	return self.pid, self.start
}

// ChildAttr returns process attributes for a helper child: killed when its
// parent dies (PR_SET_PDEATHSIG), in its own process group, and running as
// uid/gid with the given supplementary groups when asUser is true.
func ChildAttr(asUser bool, uid, gid uint32, groups []uint32) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if asUser {
		a.Credential = &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}
	}
	return a
}

// NewIPCNamespace makes a child started with a (so attributes from
// ChildAttr) start in an IPC namespace of its own (CLONE_NEWIPC; needs
// CAP_SYS_ADMIN): its SysV objects and limits are its own, and its objects
// go with its last process. Tests use it to fill a kernel table without
// touching the host's.
func NewIPCNamespace(a *syscall.SysProcAttr) { a.Cloneflags |= syscall.CLONE_NEWIPC }

// Exec replaces the calling process's image (execve(2)) and returns only
// on failure. The process keeps its pid and start time, and (SysV) its
// semadj values; its other threads end.
func Exec(path string, argv, env []string) error { return unix.Exec(path, argv, env) }

// Geteuid is geteuid(2).
func Geteuid() int { return unix.Geteuid() }

// Getegid is getegid(2).
func Getegid() int { return unix.Getegid() }
