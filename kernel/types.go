package kernel

// The Go types of the SysV API. The contract packages alias them
// (registry.Perm, sem.Buf, sem.DS, msgq.DS, shm.DS), so the kernel baseline
// in this package and usysv take and return exactly the same types.

// IpcPerm is struct ipc_perm with Go types.
type IpcPerm struct {
	Key                        int32
	UID, GID, CUID, CGID, Mode uint32
	Seq                        uint32
}

// Sembuf is struct sembuf: Num is the semaphore index, Op the operation, Flg
// IPC_NOWAIT and/or SEM_UNDO.
type Sembuf struct {
	Num uint16
	Op  int16
	Flg int16
}

// SemidDS is struct semid64_ds with Go types.
type SemidDS struct {
	Perm         IpcPerm
	Otime, Ctime int64
	Nsems        int
}

// MsqidDS is struct msqid64_ds with Go types.
type MsqidDS struct {
	Perm                 IpcPerm
	Stime, Rtime, Ctime  int64
	Cbytes, Qnum, Qbytes uint64
	Lspid, Lrpid         int
}

// ShmidDS is struct shmid64_ds with Go types.
type ShmidDS struct {
	Perm                ShmPerm
	Segsz               uint64
	Atime, Dtime, Ctime int64
	Cpid, Lpid          int
	Nattch              uint64
}

// ShmPerm is IpcPerm (kept as its own name so ShmidDS reads like the C struct).
type ShmPerm = IpcPerm

// SemInfo is struct seminfo (IPC_INFO / SEM_INFO).
type SemInfo struct {
	Semmap, Semmni, Semmns, Semmnu, Semmsl, Semopm, Semume, Semusz, Semvmx, Semaem int32
}

// MsgInfo is struct msginfo (IPC_INFO / MSG_INFO).
type MsgInfo struct {
	Msgpool, Msgmap, Msgmax, Msgmnb, Msgmni, Msgssz, Msgtql int32
	Msgseg                                                  uint16
}
