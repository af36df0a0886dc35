package kernel

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// Raw x86-64 layouts (arch/x86/include/uapi/asm/sembuf.h, asm-generic/msgbuf.h,
// asm-generic/ipcbuf.h).

const sysSemtimedop = unix.SYS_SEMTIMEDOP

type rawTimespec = unix.Timespec

func modeT(m uint32) uint32 { return m }

type rawPerm struct {
	Key                        int32
	UID, GID, CUID, CGID, Mode uint32
	Seq, _                     uint16
	_, _                       uint64
}

type rawSemidDS struct {
	Perm  rawPerm
	Otime int64
	_     uint64
	Ctime int64
	_     uint64
	Nsems uint64
	_, _  uint64
}

type rawMsqidDS struct {
	Perm                 rawPerm
	Stime, Rtime, Ctime  int64
	Cbytes, Qnum, Qbytes uint64
	Lspid, Lrpid         int32
	_, _                 uint64
}

func (r *rawSemidDS) ds() SemidDS {
	return SemidDS{Perm: r.Perm.perm(), Otime: r.Otime, Ctime: r.Ctime, Nsems: int(r.Nsems)}
}

func (r *rawMsqidDS) ds() MsqidDS {
	return MsqidDS{Perm: r.Perm.perm(), Stime: r.Stime, Rtime: r.Rtime, Ctime: r.Ctime,
		Cbytes: r.Cbytes, Qnum: r.Qnum, Qbytes: r.Qbytes, Lspid: int(r.Lspid), Lrpid: int(r.Lrpid)}
}

func (r *rawMsqidDS) setQbytes(q uint64) { r.Qbytes = q }

func (p *rawPerm) perm() IpcPerm {
	return IpcPerm{Key: p.Key, UID: p.UID, GID: p.GID, CUID: p.CUID, CGID: p.CGID, Mode: p.Mode, Seq: uint32(p.Seq)}
}

func (p *rawPerm) set(uid, gid, mode uint32) { p.UID, p.GID, p.Mode = uid, gid, mode }

// ipc64 is ORed into *ctl commands: x86-64 has only the 64-bit layouts and
// rejects IPC_64 (no CONFIG_ARCH_WANT_IPC_PARSE_VERSION).
const ipc64 = 0

// mtypeSize is sizeof(long), the mtype at the start of struct msgbuf.
const mtypeSize = 8

func putMtype(b []byte, t int64) { binary.NativeEndian.PutUint64(b, uint64(t)) }
func getMtype(b []byte) int64    { return int64(binary.NativeEndian.Uint64(b)) }

// mtypeOK reports whether t fits the C long that carries it.
func mtypeOK(int64) bool { return true }
