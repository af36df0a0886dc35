package kernel

import (
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel's own SysV semaphores and message queues. These are the
// baseline usysv is measured and checked against; they take and return the
// same Go types as the usysv contract API.

// Semget is semget(2).
func Semget(key, nsems, flag int) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_SEMGET, uintptr(int32(key)), cint(nsems), uintptr(flag))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// Semop is semop(2). EINTR from Go's own preemption signals is retried.
func Semop(id int, ops []Sembuf) error {
	return semtimedop(id, ops, nil)
}

// Semtimedop is semtimedop(2) with a relative timeout; EAGAIN on expiry.
func Semtimedop(id int, ops []Sembuf, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	return semtimedop(id, ops, &deadline)
}

func semtimedop(id int, ops []Sembuf, deadline *time.Time) error {
	var p unsafe.Pointer
	if len(ops) > 0 {
		p = unsafe.Pointer(&ops[0])
	}
	for {
		var tsp unsafe.Pointer
		var ts rawTimespec
		if deadline != nil {
			d := time.Until(*deadline)
			if d < 0 {
				d = 0
			}
			ts.Sec, ts.Nsec = int64(d/time.Second), int64(d%time.Second)
			tsp = unsafe.Pointer(&ts)
		}
		_, _, e := unix.Syscall6(sysSemtimedop, cint(id), uintptr(p), uintptr(len(ops)), uintptr(tsp), 0, 0)
		if e == unix.EINTR {
			continue
		}
		return errnoErr(e)
	}
}

// semctl is semctl(2) with a scalar argument.
func semctl(id, num, cmd int, arg uintptr) (int, error) {
	r, _, e := unix.Syscall6(unix.SYS_SEMCTL, cint(id), cint(num), uintptr(cmd|ipc64), arg, 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// semctlPtr is semctl(2) with a buffer. The pointer becomes a uintptr in
// the system call's own argument list, the one place where the compiler
// keeps what it points at alive and in place (unsafe.Pointer rule 4): a
// uintptr made by the caller and passed down would still name the old
// copy of a stack buffer after the stack moved (a grown goroutine stack),
// and the kernel would fill, or read, that old copy instead.
func semctlPtr(id, num, cmd int, p unsafe.Pointer) (int, error) {
	r, _, e := unix.Syscall6(unix.SYS_SEMCTL, cint(id), cint(num), uintptr(cmd|ipc64), uintptr(p), 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// SemctlGetVal is semctl(GETVAL).
func SemctlGetVal(id, num int) (int, error) { return semctl(id, num, GETVAL, 0) }

// SemctlGetPid is semctl(GETPID).
func SemctlGetPid(id, num int) (int, error) { return semctl(id, num, GETPID, 0) }

// SemctlGetNcnt is semctl(GETNCNT).
func SemctlGetNcnt(id, num int) (int, error) { return semctl(id, num, GETNCNT, 0) }

// SemctlGetZcnt is semctl(GETZCNT).
func SemctlGetZcnt(id, num int) (int, error) { return semctl(id, num, GETZCNT, 0) }

// SemctlSetVal is semctl(SETVAL).
func SemctlSetVal(id, num, val int) error {
	_, err := semctl(id, num, SETVAL, cint(val)) // (out of int's range: ERANGE, not a truncated value)
	return err
}

// SemctlGetAll is semctl(GETALL).
func SemctlGetAll(id int) ([]uint16, error) {
	ds, err := SemctlStat(id)
	if err != nil {
		return nil, err
	}
	vals := make([]uint16, ds.Nsems+1) // never empty, so &vals[0] is valid
	if _, err := semctlPtr(id, 0, GETALL, unsafe.Pointer(&vals[0])); err != nil {
		return nil, err
	}
	return vals[:ds.Nsems], nil
}

// SemctlSetAll is semctl(SETALL). vals must hold one value per semaphore:
// a slice of another length is EINVAL, as sem.SetAll's, after the
// kernel's own checks of the id and the permission (EACCES first, as
// there). The kernel takes no length: it reads one value per semaphore
// from the pointer, so it is never given a slice shorter than the set.
func SemctlSetAll(id int, vals []uint16) error {
	n, known := semNsems(id)
	switch {
	case !known:
		// Size unknown (no SEM_STAT_ANY: a kernel before 4.17, an LSM
		// that denies it, or ipcmni_extend, where IndexMask is not the
		// index; and no read permission): pad to the most semaphores a
		// set can have (semmsl is an int, but a sembuf's sem_num is 16
		// bits), so that the kernel reads nothing past vals. The length
		// goes unchecked then: a short slice sets the rest to 0.
		buf := make([]uint16, max(len(vals), 1<<16))
		copy(buf, vals)
		vals = buf
	case len(vals) != n:
		// n values, the first above SEMVMX: the kernel checks the id and
		// the permission, then the values, whose ERANGE is the length's
		// EINVAL. Nothing is changed.
		buf := make([]uint16, n)
		buf[0] = SEMVMX + 1
		if _, err := semctlPtr(id, 0, SETALL, unsafe.Pointer(&buf[0])); err != nil && err != ERANGE {
			return err
		}
		return EINVAL
	}
	_, err := semctlPtr(id, 0, SETALL, unsafe.Pointer(&vals[0]))
	return err
}

// semNsems is the number of semaphores of set id, if a stat can say:
// SEM_STAT_ANY (no permission needed) or else IPC_STAT.
func semNsems(id int) (int, bool) {
	if got, ds, err := SemctlStatAny(id & IndexMask); err == nil && got == id && ds.Nsems > 0 {
		return ds.Nsems, true
	}
	if ds, err := SemctlStat(id); err == nil && ds.Nsems > 0 {
		return ds.Nsems, true
	}
	return 0, false
}

// SemctlStat is semctl(IPC_STAT).
func SemctlStat(id int) (SemidDS, error) {
	var raw rawSemidDS
	if _, err := semctlPtr(id, 0, IPC_STAT, unsafe.Pointer(&raw)); err != nil {
		return SemidDS{}, err
	}
	return raw.ds(), nil
}

// SemctlStatAny is semctl(SEM_STAT_ANY) on a kernel index (an id's index
// is id & IndexMask): IPC_STAT without the read permission check. It
// returns the full id of the set at that index.
func SemctlStatAny(index int) (int, SemidDS, error) {
	var raw rawSemidDS
	id, err := semctlPtr(index, 0, SEM_STAT_ANY, unsafe.Pointer(&raw))
	if err != nil {
		return -1, SemidDS{}, err
	}
	return id, raw.ds(), nil
}

// IndexMask takes a SysV id to its kernel index, as SEM_STAT_ANY and
// MSG_STAT_ANY want (ipcid_to_idx with the default IPCMNI of 32768).
const IndexMask = 1<<15 - 1

// SemctlSet is semctl(IPC_SET): uid, gid and mode&0777.
func SemctlSet(id int, ds SemidDS) error {
	var raw rawSemidDS
	raw.Perm.set(ds.Perm.UID, ds.Perm.GID, ds.Perm.Mode)
	_, err := semctlPtr(id, 0, IPC_SET, unsafe.Pointer(&raw))
	return err
}

// SemctlRemove is semctl(IPC_RMID).
func SemctlRemove(id int) error {
	_, err := semctl(id, 0, IPC_RMID, 0)
	return err
}

// SemctlInfo is semctl(IPC_INFO or SEM_INFO); it returns the highest used index.
func SemctlInfo(cmd int) (int, SemInfo, error) {
	if cmd != IPC_INFO && cmd != SEM_INFO {
		return 0, SemInfo{}, EINVAL // another command's buffer is no SemInfo
	}
	var info SemInfo
	n, err := semctlPtr(0, 0, cmd, unsafe.Pointer(&info))
	return n, info, err
}

// SemctlCmd runs semctl with an arbitrary command and a scalar argument, for
// tests of error paths (unknown commands and the like). A command whose
// argument is a buffer gets EINVAL unless arg is 0 (a null pointer: the
// kernel's EFAULT), never an integer for the kernel to write through.
func SemctlCmd(id, num, cmd int, arg int) (int, error) {
	switch cmd {
	case IPC_STAT, IPC_SET, IPC_INFO, GETALL, SETALL, SEM_STAT, SEM_INFO, SEM_STAT_ANY:
		if arg != 0 {
			return -1, EINVAL
		}
	}
	return semctl(id, num, cmd, uintptr(arg))
}

// Msgget is msgget(2).
func Msgget(key, flag int) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_MSGGET, uintptr(int32(key)), uintptr(flag), 0)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// msgBufs recycles struct msgbuf scratch space (a C long mtype, then the
// text) so that Msgsnd and Msgrcv do not allocate per message.
var msgBufs = sync.Pool{New: func() any { b := make([]byte, mtypeSize+MSGMAX); return &b }}

func msgBuf(n int) *[]byte {
	bp := msgBufs.Get().(*[]byte)
	if cap(*bp) < mtypeSize+n {
		b := make([]byte, mtypeSize+n)
		bp = &b
	}
	*bp = (*bp)[:mtypeSize+n]
	return bp
}

// Msgsnd is msgsnd(2). EINTR from Go's own preemption signals is retried.
// An mtype that does not fit the platform's C long is EINVAL.
func Msgsnd(id int, mtype int64, text []byte, flags int) error {
	if !mtypeOK(mtype) {
		return EINVAL
	}
	bp := msgBuf(len(text))
	defer msgBufs.Put(bp)
	b := *bp
	putMtype(b, mtype)
	copy(b[mtypeSize:], text)
	for {
		_, _, e := unix.Syscall6(unix.SYS_MSGSND, cint(id), uintptr(unsafe.Pointer(&b[0])), uintptr(len(text)), uintptr(flags), 0, 0)
		if e == unix.EINTR {
			continue
		}
		return errnoErr(e)
	}
}

// Msgrcv is msgrcv(2): it copies the text into buf and returns its length
// and type. EINTR from Go's own preemption signals is retried. An mtype
// that does not fit the platform's C long is EINVAL.
func Msgrcv(id int, buf []byte, mtype int64, flags int) (int, int64, error) {
	if !mtypeOK(mtype) {
		return 0, 0, EINVAL
	}
	bp := msgBuf(len(buf))
	defer msgBufs.Put(bp)
	b := *bp
	for {
		r, _, e := unix.Syscall6(unix.SYS_MSGRCV, cint(id), uintptr(unsafe.Pointer(&b[0])), uintptr(len(buf)), uintptr(mtype), uintptr(flags), 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, 0, e
		}
		n := copy(buf, b[mtypeSize:mtypeSize+int(r)])
		return n, getMtype(b), nil
	}
}

// msgctl is msgctl(2) with no buffer (arg 0, or a test's scalar).
func msgctl(id, cmd int, arg uintptr) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_MSGCTL, cint(id), uintptr(cmd|ipc64), arg)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// msgctlPtr is msgctl(2) with a buffer, converted as semctlPtr's.
func msgctlPtr(id, cmd int, p unsafe.Pointer) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_MSGCTL, cint(id), uintptr(cmd|ipc64), uintptr(p))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// MsgctlStat is msgctl(IPC_STAT).
func MsgctlStat(id int) (MsqidDS, error) {
	var raw rawMsqidDS
	if _, err := msgctlPtr(id, IPC_STAT, unsafe.Pointer(&raw)); err != nil {
		return MsqidDS{}, err
	}
	return raw.ds(), nil
}

// MsgctlStatAny is msgctl(MSG_STAT_ANY) on a kernel index: IPC_STAT
// without the read permission check. It returns the full id of the queue
// at that index.
func MsgctlStatAny(index int) (int, MsqidDS, error) {
	var raw rawMsqidDS
	id, err := msgctlPtr(index, MSG_STAT_ANY, unsafe.Pointer(&raw))
	if err != nil {
		return -1, MsqidDS{}, err
	}
	return id, raw.ds(), nil
}

// MsgctlSet is msgctl(IPC_SET): uid, gid, mode&0777 and qbytes.
func MsgctlSet(id int, ds MsqidDS) error {
	var raw rawMsqidDS
	raw.Perm.set(ds.Perm.UID, ds.Perm.GID, ds.Perm.Mode)
	raw.setQbytes(ds.Qbytes)
	_, err := msgctlPtr(id, IPC_SET, unsafe.Pointer(&raw))
	return err
}

// MsgctlRemove is msgctl(IPC_RMID).
func MsgctlRemove(id int) error {
	_, err := msgctl(id, IPC_RMID, 0)
	return err
}

// MsgctlInfo is msgctl(IPC_INFO or MSG_INFO); it returns the highest used index.
func MsgctlInfo(cmd int) (int, MsgInfo, error) {
	if cmd != IPC_INFO && cmd != MSG_INFO {
		return 0, MsgInfo{}, EINVAL // another command's buffer is no MsgInfo
	}
	var info MsgInfo
	n, err := msgctlPtr(0, cmd, unsafe.Pointer(&info))
	return n, info, err
}

// MsgctlCmd runs msgctl with an arbitrary command and no buffer, for tests
// of error paths.
func MsgctlCmd(id, cmd int) (int, error) { return msgctl(id, cmd, 0) }
