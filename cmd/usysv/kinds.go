package main

// What only the kinds know (values, queue contents, and the layout a new
// object needs). The registry is kind-agnostic, so ipcs prints "-" where a
// kind is not linked, and ipcmk refuses to create. kinds_bind.go binds them to
// the sem and msgq packages' contract functions.

// semDetail is what sem.Stat gives, and with rows the GET* commands.
type semDetail struct {
	Otime, Ctime int64
	Sems         []semRow
}

type semRow struct{ Val, Ncnt, Zcnt, Pid int }

// msgDetail is msgq.Stat's DS.
type msgDetail struct {
	Stime, Rtime, Ctime  int64
	Cbytes, Qnum, Qbytes uint64
	Lspid, Lrpid         int
}

var (
	semStat   func(id int, rows bool) (semDetail, error)
	msgStat   func(id int) (msgDetail, error)
	semCreate func(key, nsems, flags int) (int, error)
	msgCreate func(key, flags int) (int, error)
)
