package kernel

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Shmget is shmget(2). A negative size is EINVAL (size_t would make it
// huge on 64-bit kernels, but merely large on 32-bit ones).
func Shmget(key, size, flag int) (int, error) {
	if size < 0 {
		return -1, EINVAL
	}
	r, _, e := unix.Syscall(unix.SYS_SHMGET, uintptr(int32(key)), uintptr(size), uintptr(flag))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// Shmat is shmat(2) at an address the kernel chooses. The returned slice
// covers the segment's size as IPC_STAT reports it (shm_segsz). It is valid
// until Shmdt; touching it afterwards faults. A segment larger than a
// slice can be (2 GiB and more, on 386) is detached again: ENOMEM.
func Shmat(id, flag int) ([]byte, error) {
	addr, _, e := unix.Syscall(unix.SYS_SHMAT, cint(id), 0, uintptr(flag))
	if e != 0 {
		return nil, e
	}
	ds, err := shmctlStat(id, IPC_STAT)
	n, fits := sliceLen(ds.Segsz)
	if err == nil && !fits {
		err = ENOMEM
	}
	if err != nil {
		_, _, _ = unix.Syscall(unix.SYS_SHMDT, addr, 0, 0)
		return nil, err
	}
	// addr is memory the kernel mapped, outside the Go heap.
	p := *(*unsafe.Pointer)(unsafe.Pointer(&addr))
	return unsafe.Slice((*byte)(p), n), nil
}

// sliceLen is the length of a slice over size bytes, if a slice can be
// that long (unsafe.Slice panics otherwise).
func sliceLen(size uint64) (int, bool) {
	if size > math.MaxInt {
		return 0, false
	}
	return int(size), true
}

// ShmatAt is shmat(2) at a chosen address (SHM_RND, SHM_REMAP apply).
// It returns the address the segment was attached at.
func ShmatAt(id int, addr uintptr, flag int) (uintptr, error) {
	r, _, e := unix.Syscall(unix.SYS_SHMAT, cint(id), addr, uintptr(flag))
	if e != 0 {
		return 0, e
	}
	return r, nil
}

// Shmdt is shmdt(2) on the start of b. b must not be used afterwards.
func Shmdt(b []byte) error {
	if len(b) == 0 {
		return EINVAL
	}
	return ShmdtAddr(uintptr(unsafe.Pointer(&b[0])))
}

// ShmdtAddr is shmdt(2) on a raw address.
func ShmdtAddr(addr uintptr) error {
	_, _, e := unix.Syscall(unix.SYS_SHMDT, addr, 0, 0)
	return errnoErr(e)
}

// ShmctlStat is shmctl(IPC_STAT).
func ShmctlStat(id int) (ShmidDS, error) {
	if id < 0 {
		return ShmidDS{}, EINVAL
	}
	return shmctlStat(id, IPC_STAT)
}

// ShmctlStatIndex is shmctl(SHM_STAT_ANY) on a kernel index; it returns the
// full id of the segment at that index. ENOENT or EINVAL means no segment there.
func ShmctlStatIndex(index int) (int, ShmidDS, error) {
	var raw unix.SysvShmDesc
	r, _, e := unix.Syscall(unix.SYS_SHMCTL, cint(index), SHM_STAT_ANY|ipc64, uintptr(unsafe.Pointer(&raw)))
	if e != 0 {
		return -1, ShmidDS{}, e
	}
	return int(r), shmDS(&raw), nil
}

func shmctlStat(id, cmd int) (ShmidDS, error) {
	var raw unix.SysvShmDesc
	_, _, e := unix.Syscall(unix.SYS_SHMCTL, cint(id), uintptr(cmd|ipc64), uintptr(unsafe.Pointer(&raw)))
	if e != 0 {
		return ShmidDS{}, e
	}
	return shmDS(&raw), nil
}

func shmDS(raw *unix.SysvShmDesc) ShmidDS {
	return ShmidDS{
		Perm: IpcPerm{Key: raw.Perm.Key, UID: raw.Perm.Uid, GID: raw.Perm.Gid,
			CUID: raw.Perm.Cuid, CGID: raw.Perm.Cgid, Mode: uint32(raw.Perm.Mode), Seq: uint32(raw.Perm.Seq)},
		Segsz: uint64(raw.Segsz), Atime: int64(raw.Atime), Dtime: int64(raw.Dtime), Ctime: int64(raw.Ctime),
		Cpid: int(raw.Cpid), Lpid: int(raw.Lpid), Nattch: uint64(raw.Nattch),
	}
}

// ShmctlSet is shmctl(IPC_SET): it sets uid, gid and the low 9 mode bits.
func ShmctlSet(id int, uid, gid, mode uint32) error {
	var raw unix.SysvShmDesc
	raw.Perm.Uid = uid
	raw.Perm.Gid = gid
	raw.Perm.Mode = modeT(mode)
	_, _, e := unix.Syscall(unix.SYS_SHMCTL, cint(id), IPC_SET|ipc64, uintptr(unsafe.Pointer(&raw)))
	return errnoErr(e)
}

// ShmctlRemove is shmctl(IPC_RMID).
func ShmctlRemove(id int) error {
	_, _, e := unix.Syscall(unix.SYS_SHMCTL, cint(id), IPC_RMID|ipc64, 0)
	return errnoErr(e)
}

// ShmctlLock is shmctl(SHM_LOCK) (lock true) or shmctl(SHM_UNLOCK).
func ShmctlLock(id int, lock bool) error {
	cmd := SHM_UNLOCK
	if lock {
		cmd = SHM_LOCK
	}
	_, _, e := unix.Syscall(unix.SYS_SHMCTL, cint(id), uintptr(cmd|ipc64), 0)
	return errnoErr(e)
}

// ShmSegment is one entry of the kernel's segment list.
type ShmSegment struct {
	ID int
	DS ShmidDS
}

// ShmList lists every SysV shm segment in this IPC namespace, without
// permission checks (SHM_INFO for the highest index, then SHM_STAT_ANY on each).
func ShmList() ([]ShmSegment, error) {
	var info [128]byte // struct shm_info; only the return value (max index) is used
	maxIdx, _, e := unix.Syscall(unix.SYS_SHMCTL, 0, SHM_INFO|ipc64, uintptr(unsafe.Pointer(&info[0])))
	if e != 0 {
		return nil, e
	}
	var out []ShmSegment
	for i := 0; i <= int(maxIdx); i++ {
		id, ds, err := ShmctlStatIndex(i)
		if err != nil {
			if errors.Is(err, EINVAL) || errors.Is(err, ENOENT) || errors.Is(err, EIDRM) {
				continue
			}
			return out, err
		}
		out = append(out, ShmSegment{ID: id, DS: ds})
	}
	return out, nil
}

// ShmMemory is how much of segment id's memory exists: rss bytes resident
// and swap bytes swapped out (/proc/sysvipc/shm, whose columns these are;
// it lists every segment of this IPC namespace to anyone). A page nobody
// ever touched is neither: it reads as zeros without existing. ENOENT if
// id is not listed.
func ShmMemory(id int) (rss, swap uint64, err error) {
	b, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		return 0, 0, err
	}
	lines := strings.Split(string(b), "\n")
	col := map[string]int{}
	for i, name := range strings.Fields(lines[0]) {
		col[name] = i
	}
	ci, ok1 := col["shmid"]
	cr, ok2 := col["rss"]
	cs, ok3 := col["swap"]
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, fmt.Errorf("kernel: /proc/sysvipc/shm has no shmid, rss and swap columns")
	}
	want := strconv.Itoa(id)
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) <= max(ci, cr, cs) || f[ci] != want {
			continue
		}
		if rss, err = strconv.ParseUint(f[cr], 10, 64); err == nil {
			swap, err = strconv.ParseUint(f[cs], 10, 64)
		}
		return rss, swap, err
	}
	return 0, 0, ENOENT
}

// Resident reports, for each page of mem (a mapping, page-aligned), whether
// it is resident in memory (mincore(2)).
func Resident(mem []byte) ([]bool, error) {
	if len(mem) == 0 {
		return nil, nil
	}
	pg := os.Getpagesize()
	vec := make([]byte, (len(mem)+pg-1)/pg)
	_, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&mem[0])), uintptr(len(mem)), uintptr(unsafe.Pointer(&vec[0])))
	if e != 0 {
		return nil, e
	}
	out := make([]bool, len(vec))
	for i, v := range vec {
		out[i] = v&1 != 0
	}
	return out, nil
}
