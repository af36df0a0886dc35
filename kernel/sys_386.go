package kernel

import (
	"encoding/binary"
	"math"

	"golang.org/x/sys/unix"
)

// Raw i386 layouts (arch/x86/include/uapi/asm/sembuf.h, asm-generic/msgbuf.h,
// asm-generic/ipcbuf.h; __kernel_mode_t is unsigned short on i386). The 386
// build exists as a 64-bit-atomic alignment tripwire (make test-386).

// sysSemtimedop is semtimedop_time64 (arch/x86/entry/syscalls/syscall_32.tbl).
const sysSemtimedop = unix.SYS_SEMTIMEDOP_TIME64

type rawTimespec struct{ Sec, Nsec int64 }

func modeT(m uint32) uint16 { return uint16(m) }

type rawPerm struct {
	Key                  int32
	UID, GID, CUID, CGID uint32
	Mode, _              uint16
	Seq, _               uint16
	_, _                 uint32
}

type rawSemidDS struct {
	Perm             rawPerm
	Otime, OtimeHigh uint32
	Ctime, CtimeHigh uint32
	Nsems            uint32
	_, _             uint32
}

type rawMsqidDS struct {
	Perm                 rawPerm
	Stime, StimeHigh     uint32
	Rtime, RtimeHigh     uint32
	Ctime, CtimeHigh     uint32
	Cbytes, Qnum, Qbytes uint32
	Lspid, Lrpid         int32
	_, _                 uint32
}

func t64(lo, hi uint32) int64 { return int64(uint64(hi)<<32 | uint64(lo)) }

func (r *rawSemidDS) ds() SemidDS {
	return SemidDS{Perm: r.Perm.perm(), Otime: t64(r.Otime, r.OtimeHigh), Ctime: t64(r.Ctime, r.CtimeHigh), Nsems: int(r.Nsems)}
}

func (r *rawMsqidDS) ds() MsqidDS {
	return MsqidDS{Perm: r.Perm.perm(), Stime: t64(r.Stime, r.StimeHigh), Rtime: t64(r.Rtime, r.RtimeHigh),
		Ctime: t64(r.Ctime, r.CtimeHigh), Cbytes: uint64(r.Cbytes), Qnum: uint64(r.Qnum), Qbytes: uint64(r.Qbytes),
		Lspid: int(r.Lspid), Lrpid: int(r.Lrpid)}
}

func (r *rawMsqidDS) setQbytes(q uint64) { r.Qbytes = uint32(q) }

func (p *rawPerm) perm() IpcPerm {
	return IpcPerm{Key: p.Key, UID: p.UID, GID: p.GID, CUID: p.CUID, CGID: p.CGID, Mode: uint32(p.Mode), Seq: uint32(p.Seq)}
}

func (p *rawPerm) set(uid, gid, mode uint32) { p.UID, p.GID, p.Mode = uid, gid, uint16(mode) }

// ipc64 is ORed into *ctl commands. The direct shmctl/semctl/msgctl system
// calls (i386 has them since Linux 5.1; they are what unix.SYS_*CTL name)
// always use the 64-bit *_ds layouts and reject a cmd carrying IPC_64 with
// EINVAL; only the multiplexed ipc(2) call parses IPC_64. So: 0, as on x86-64.
const ipc64 = 0

// mtypeSize is sizeof(long), the mtype at the start of struct msgbuf.
const mtypeSize = 4

func putMtype(b []byte, t int64) { binary.NativeEndian.PutUint32(b, uint32(int32(t))) }
func getMtype(b []byte) int64    { return int64(int32(binary.NativeEndian.Uint32(b))) }

// mtypeOK reports whether t fits the C long that carries it.
func mtypeOK(t int64) bool { return t >= math.MinInt32 && t <= math.MaxInt32 }
