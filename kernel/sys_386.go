package kernel

import "golang.org/x/sys/unix"

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

// ipc64 selects the 64-bit *_ds layouts on i386.
const ipc64 = IPC_64
