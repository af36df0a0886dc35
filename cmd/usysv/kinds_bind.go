package main

import (
	"github.com/usysv/usysv/msgq"
	"github.com/usysv/usysv/sem"
)

// The kinds, through their contract functions (DESIGN §4).
func init() {
	semStat = func(id int, rows bool) (semDetail, error) {
		ds, err := sem.Stat(id)
		if err != nil || !rows {
			return semDetail{Otime: ds.Otime, Ctime: ds.Ctime}, err
		}
		d := semDetail{Otime: ds.Otime, Ctime: ds.Ctime, Sems: make([]semRow, ds.Nsems)}
		for i := range d.Sems {
			r := &d.Sems[i]
			if r.Val, err = sem.GetVal(id, i); err != nil {
				return d, err
			}
			if r.Ncnt, err = sem.GetNcnt(id, i); err != nil {
				return d, err
			}
			if r.Zcnt, err = sem.GetZcnt(id, i); err != nil {
				return d, err
			}
			if r.Pid, err = sem.GetPid(id, i); err != nil {
				return d, err
			}
		}
		return d, nil
	}
	msgStat = func(id int) (msgDetail, error) {
		ds, err := msgq.Stat(id)
		if err != nil {
			return msgDetail{}, err
		}
		return msgDetail{Stime: ds.Stime, Rtime: ds.Rtime, Ctime: ds.Ctime, Cbytes: ds.Cbytes,
			Qnum: ds.Qnum, Qbytes: ds.Qbytes, Lspid: ds.Lspid, Lrpid: ds.Lrpid}, nil
	}
	semCreate = sem.Get
	msgCreate = msgq.Get
}
