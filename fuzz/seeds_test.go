package fuzz

import (
	"math/rand"
	"testing"
)

// The seed corpora of the model and differential targets, written as
// programs. TestSeeds keeps testdata/fuzz/<Target>/ equal to them
// (USYSV_WRITE_SEEDS=1 go test -run TestSeeds ./fuzz rewrites the files).

// semHeader: nsems index (semNsems), then fresh bit | mode index<<1.
func semProg(nsemsIdx byte, fresh bool, build func(e *semEnc)) []byte {
	e := &semEnc{}
	h1 := byte(0)
	if fresh {
		h1 = 1
	}
	e.b(nsemsIdx, h1)
	build(e)
	return e.enc
}

// Sem opcodes for semEnc.ctl.
const (
	scSetVal  = 3
	scSetAll  = 4
	scGetVal  = 5
	scGetPid  = 6
	scGetNcnt = 7
	scGetZcnt = 8
	scGetAll  = 9
	scStat    = 10
	scSet     = 11
	scGet     = 12
	scRemove  = 13
	scBadID   = 0xF0 // OR into an opcode: id -1
	scAlt     = 0x40 // OR into an opcode: after IPC_RMID, through the contract functions
	scNobody  = 0x20 // OR into an opcode: run by the helper as nobody (FuzzSemDiff)
)

func semSeeds() map[string][]byte {
	return map[string][]byte{
		// semop01: +0,+1,+4,+9 with SEM_UNDO, then GETALL; pids; an undo
		// decrement, a wait-for-zero that proceeds.
		"basic": semProg(3, false, func(e *semEnc) {
			e.op(0, sop(0, 0, 2), sop(1, 1, 2), sop(2, 4, 2), sop(3, 4, 2))
			e.op(0, sop(3, 4, 2))
			e.ctl(scGetAll).ctl(scGetPid, 1).ctl(scGetVal, 3)
			e.op(0, sop(1, -1, 2), sop(0, 0, 0))
			e.ctl(scGetAll).ctl(scGetNcnt, 0).ctl(scGetZcnt, 1)
		}),
		// SEMANTICS 9.2: later ops see earlier ones on the same semaphore.
		"array-order": semProg(1, false, func(e *semEnc) {
			e.op(0, sop(0, 1, 0), sop(0, -1, 0))
			e.op(0, sop(0, -1, 1), sop(0, 1, 0))
			e.op(0, sop(0, 2, 0), sop(0, -1, 0), sop(0, 0, 1))
			e.ctl(scGetAll)
			e.op(0, sop(0, 1, 0), sop(1, -1, 0), sop(0, -1, 0))
			e.ctl(scGetAll)
		}),
		// SEMANTICS 9.4: IPC_NOWAIT is per op; the one that blocks decides.
		"nowait-per-op": semProg(1, false, func(e *semEnc) {
			e.op(0, sop(1, 1, 1), sop(0, -1, 0))
			e.op(0, sop(0, -1, 1), sop(1, 1, 0))
			e.op(3, sop(0, -1, 0), sop(1, 1, 0))
			e.op(0, sop(1, 1, 0), sop(0, 0, 0))
			e.ctl(scGetAll)
		}),
		// ERANGE: value above SEMVMX, an earlier out-of-range op beating a
		// later block, and semadj overflow.
		"erange": semProg(1, false, func(e *semEnc) {
			e.op(0, sop(0, 1, 0))
			e.op(0, bigSop(0, 0, 0))
			e.op(0, bigSop(0, 0, 0), sop(1, -1, 0))
			e.op(0, sop(1, -1, 0), bigSop(0, 0, 0))
			e.ctl(scSetVal, 0, 0)
			e.op(0, bigSop(0, 5, 2)) // +30000 SEM_UNDO: semadj -30000
			e.op(0, bigSop(0, 6, 0)) // -30000
			e.op(0, bigSop(0, 5, 2)) // semadj would be -60000
			e.op(0, bigSop(0, 5, 0))
			e.ctl(scGetAll)
			e.op(0, bigSop(0, 6, 2), bigSop(0, 5, 2))
			e.ctl(scGetAll)
		}),
		// EFBIG, E2BIG, EINVAL for an empty array, SEMOPM ops.
		"limits": semProg(2, false, func(e *semEnc) {
			e.op(0, [3]byte{0xF0, 5, 0})
			e.op(0, [3]byte{0xFF, 5, 2})
			e.op(0, sop(0, -1, 0), [3]byte{0xF1, 5, 0})
			e.b(0, 31)          // no ops
			e.b(0, 30, 0, 5, 0) // SEMOPM+1 ops
			e.b(0, 29, 0, 5, 0) // SEMOPM ops of +1
			e.ctl(scGetAll)
			e.b(0, 29, 0, 3, 3) // SEMOPM ops of -1, NOWAIT|UNDO
			e.ctl(scGetAll)
		}),
		// SETVAL and SETALL: ERANGE before EINVAL, semnum checks, semadj
		// cleared (a later undo overflow test), sempid.
		"setval-setall": semProg(2, false, func(e *semEnc) {
			e.ctl(scSetVal, 0, 0xF0)         // -1: ERANGE
			e.ctl(scSetVal, 0, 0xF2)         // 32768: ERANGE
			e.ctl(scSetVal, 0xFE, 3)         // semnum -1
			e.ctl(scSetVal, 0xF0, 3)         // semnum nsems
			e.ctl(scSetVal|scBadID, 0, 0xF0) // id -1 before ERANGE
			e.ctl(scSetVal, 1, 0xF1)         // SEMVMX
			e.ctl(scGetVal, 1).ctl(scGetPid, 1).ctl(scGetVal, 0xFE).ctl(scGetPid, 0xF0)
			e.op(0, bigSop(0, 5, 2))
			e.ctl(scSetAll, 0, 1, 2, 3)
			e.op(0, bigSop(0, 5, 2))
			e.ctl(scSetAll, 0, 0xF1, 0, 0) // 32768: ERANGE, nothing changed
			e.ctl(scSetAll, 0xFE, 1, 1, 1, 1)
			e.ctl(scSetAll, 0xFF)
			e.ctl(scGetAll)
		}),
		// semtimedop: zero, tiny and negative timeouts; Op that would sleep.
		// A single wait-for-zero op (the lock-free quick path, once the
		// handle has made a call) sets sempid, also when the word holds
		// another pid: 0 on a fresh set.
		"zero-op-sempid": semProg(1, true, func(e *semEnc) {
			e.op(3, sop(0, -1, 0)) // EAGAIN; the first op on a handle takes the slow path
			e.op(0, sop(0, 0, 0))
			e.ctl(scGetPid, 0).ctl(scGetPid, 1)
			e.op(0, sop(1, 0, 0), sop(0, 0, 0))
			e.ctl(scGetPid, 1)
		}),
		"timed": semProg(0, false, func(e *semEnc) {
			e.op(4, sop(0, -1, 0))
			e.op(5, sop(0, -1, 0))
			e.op(6, sop(0, 0, 0), sop(0, -1, 0))
			e.op(7, sop(0, 1, 0))
			e.op(0, sop(0, -1, 0))
			e.op(0, sop(0, 1, 0))
			e.op(0, sop(0, 0, 0))
			e.op(6, sop(0, -1, 0))
			e.ctl(scGetAll).ctl(scStat)
		}),
		// IPC_STAT / IPC_SET: mode masking, uid -1, ownership given away
		// (root keeps every right).
		"ipc-set": semProg(1, false, func(e *semEnc) {
			e.ctl(scStat)
			e.ctl(scSet, 0, 0).u16(0o7777)
			e.ctl(scStat)
			e.ctl(scSet, 5, 0).u16(0o644)
			e.ctl(scSet, 3, 4).u16(0)
			e.ctl(scStat)
			e.op(0, sop(0, 1, 0))
			e.ctl(scGetAll)
			e.ctl(scSet|scBadID, 0, 0).u16(0o600)
		}),
		// A set made by key: semget's errors and answers, IPC_RMID, and every
		// call after it, through the handle and the contract functions.
		"lifecycle": semProg(2, true, func(e *semEnc) {
			e.ctl(scStat)
			e.ctl(scGet, 0, 1, 3) // own key, CREAT|EXCL: EEXIST
			e.ctl(scGet, 0, 0, 0) // own key, nsems 0: the set
			e.ctl(scGet, 0, 3, 0) // nsems+1: EINVAL
			e.ctl(scGet, 0, 5, 0) // SEMMSL+1
			e.ctl(scGet, 1, 1, 0) // other key: ENOENT
			e.ctl(scGet, 1, 1, 1) // other key, CREAT: new
			e.ctl(scGet, 2, 0, 0) // private, nsems 0: EINVAL
			e.ctl(scGet, 2, 1, 0) // private: new
			e.op(0, sop(0, 1, 2))
			e.ctl(scStat)
			e.ctl(scRemove)
			e.ctl(scRemove)
			e.ctl(scGetVal, 0).ctl(scGetVal|scAlt, 0).ctl(scStat).ctl(scStat | scAlt)
			e.op(0, sop(0, 1, 0))
			e.b(scAlt, 0, 0, 5, 0)
			e.ctl(scSetVal, 0, 1).ctl(scSetVal|scAlt, 0, 1).ctl(scSetAll|scAlt, 0, 1, 1, 1)
			e.ctl(scGetAll|scAlt).ctl(scSet|scAlt, 0, 0).u16(0o600)
			e.ctl(scGet, 0, 1, 0) // own key after removal: ENOENT
			e.ctl(scGet, 0, 1, 1) // IPC_CREAT: new
		}),
		// 65 semaphores: duplicate-mask collisions in the kernel's fast path.
		"wide": semProg(7, false, func(e *semEnc) {
			e.op(0, sop(0, 2, 2), sop(64, 1, 0), sop(0, -1, 2), sop(64, -1, 0))
			e.op(0, sop(1, 1, 0), sop(65, 0, 0))
			e.op(0, [3]byte{0xF0, 5, 0})
			e.ctl(scGetVal, 64).ctl(scGetPid, 64).ctl(scGetAll)
		}),
		// Waiters (FuzzSemDiff): FIFO among those that can proceed, a later
		// one overtaking an earlier one that cannot (SEMANTICS 9.12),
		// wait-for-zero, counts, SETVAL/SETALL waking, EIDRM at the end.
		"waiters": semProg(2, true, func(e *semEnc) {
			e.wait(sop(0, -2, 0))
			e.wait(sop(0, -1, 2))
			e.ctl(scGetNcnt, 0)
			e.op(0, sop(0, 1, 0)) // wakes the second
			e.ctl(scGetAll).ctl(scGetNcnt, 0).ctl(scGetPid, 0)
			e.ctl(scSetVal, 1, 1)
			e.wait(sop(1, 0, 0))
			e.ctl(scGetZcnt, 1)
			e.ctl(scSetVal, 0, 2)       // wakes the first
			e.ctl(scSetAll, 0, 0, 0, 0) // wakes the zero waiter
			e.ctl(scGetAll)
			e.wait(sop(0, -1, 0), sop(1, -1, 0), sop(2, 0, 0))
			e.wait(sop(2, -1, 0))
			e.ctl(scSetAll, 0, 1, 1, 1) // the second proceeds, then the first can't (sem2 is 0 now? no: 1-1=0) ...
			e.ctl(scGetAll).ctl(scGetNcnt, 0).ctl(scGetNcnt, 2).ctl(scGetZcnt, 2)
			e.op(0, sop(2, 1, 0))
			e.ctl(scGetAll)
			e.wait(sop(0, -1, 0))
		}),
		// Waiters without a timeout (sem.Op, semop): woken by a later op,
		// or by the removal at the end.
		"waiters-untimed": semProg(1, true, func(e *semEnc) {
			e.ctl(scSetVal, 1, 1)
			e.waitOp(sop(0, -1, 2))
			e.waitOp(sop(1, 0, 0), sop(0, 0, 0))
			e.ctl(scGetNcnt, 0).ctl(scGetZcnt, 1)
			e.op(0, sop(0, 1, 0)) // wakes the first; the second waits for sem 1
			e.ctl(scGetAll).ctl(scGetPid, 0).ctl(scGetZcnt, 1)
			e.ctl(scSetVal, 1, 0) // wakes the second
			e.ctl(scGetAll).ctl(scGetPid, 1)
			e.waitOp(sop(0, -1, 0))
		}),
		// Steps as nobody (FuzzSemDiff): EACCES for read (GET*, IPC_STAT,
		// wait-for-zero) and alter (ops, SETVAL, SETALL) by mode class,
		// EFBIG and EINVAL before EACCES, EPERM for a non-owner's IPC_SET
		// and IPC_RMID, semget's requested mode, the helper's pid as
		// sempid, and nobody's op waking this process's waiter.
		"as-nobody": semProg(1, true, func(e *semEnc) {
			n := byte(scNobody)
			mode := func(m uint16) []byte { return []byte{byte(m), byte(m >> 8)} }
			e.ctl(scSet, 0, 0).b(mode(0o604)...) // nobody may read
			e.ctl(scGetVal|n, 0).ctl(scGetAll|n).ctl(scStat|n).ctl(scGetPid|n, 1)
			e.ctl(scGetNcnt|n, 0xFE)                         // after the read check: EINVAL
			e.opAs(n, 0, sop(0, 1, 0))                       // alter: EACCES
			e.opAs(n, 0, sop(0xF0, 1, 0))                    // EFBIG first
			e.ctl(scSetVal|n, 0, 1).ctl(scSetVal|n, 0, 0xF0) // EACCES; ERANGE first
			e.ctl(scSetAll|n, 0, 1, 1)
			e.ctl(scSet|n, 3, 3).b(mode(0o666)...) // not the owner: EPERM
			e.ctl(scRemove | n)                    // EPERM
			e.ctl(scSet, 0, 3).b(mode(0o620)...)   // nobody's group may alter only
			e.ctl(scGetAll | n).ctl(scStat | n)    // EACCES
			e.opAs(n, 0, sop(0, 0, 0))             // wait-for-zero reads: EACCES
			e.opAs(n, 0, sop(0, 1, 0), sop(1, 2, 0))
			e.ctl(scSetVal|n, 1, 3)
			e.ctl(scGetAll).ctl(scGetPid, 0).ctl(scGetPid, 1)
			e.ctl(scGet|n, 0, 1, 0)    // 0600 requested: EACCES
			e.ctl(scGet|n, 0, 1, 4<<3) // 0200: the same set
			e.ctl(scGet|n, 2, 0, 0)    // private: its own, removed at once
			e.ctl(scSet, 3, 0).b(mode(0o600)...)
			e.ctl(scSetAll, 0, 0, 0)
			e.wait(sop(0, -1, 0))
			e.opAs(n, 0, sop(0, 2, 2)) // wakes the waiter (SEM_UNDO dropped)
			e.ctl(scGetAll).ctl(scGetPid, 0)
			e.ctl(scSetAll|n, 0, 3, 4).ctl(scGetPid, 1)
			e.ctl(scSet|n, 4, 4).b(mode(0o644)...) // to uid 1000: ok
			e.ctl(scSetVal|n, 0, 1)                // EACCES
			e.ctl(scRemove | n)                    // EPERM
			e.ctl(scSet, 3, 0).b(mode(0o600)...)
			e.ctl(scRemove | n)
			e.ctl(scGetAll).ctl(scGetAll | n)
		}),
		// Waiters that get ERANGE from their waker, and that are still
		// blocked when the program removes the set.
		"waiters-erange-rmid": semProg(1, true, func(e *semEnc) {
			e.ctl(scSetVal, 1, 0xF1) // SEMVMX
			e.wait(sop(0, -1, 0), sop(1, 1, 0))
			e.wait(sop(0, -1, 0))
			e.op(0, sop(0, 1, 0))
			e.ctl(scGetAll).ctl(scGetNcnt, 0)
			e.wait(sop(1, 0, 0))
			e.ctl(scRemove)
			e.ctl(scGetAll)
		}),
		// Unknown sem_flg bits are ignored; semget ignores IPC_NOWAIT.
		"junk-flags": semProg(1, true, func(e *semEnc) {
			e.op(0, sop(0, 1, 4|2), sop(1, 0, 4))
			e.op(0, sop(0, -2, 4|1))
			e.ctl(scGet, 0, 0, 4)
			e.ctl(scGetAll)
		}),
	}
}

func msgProg(fresh bool, build func(e *msgEnc)) []byte {
	e := &msgEnc{}
	h := byte(0)
	if fresh {
		h = 1
	}
	e.b(h)
	build(e)
	return e.enc
}

// Msg opcodes for msgEnc.ctl.
const (
	mcStat   = 4
	mcSet    = 5
	mcGet    = 6
	mcRemove = 7
	mcNobody = 0x20 // OR into an opcode: run by the helper as nobody (FuzzMsgDiff)
)

// set encodes IPC_SET: uid and gid index (semIDs: 3 is nobody, 5 is -1),
// mode, qbytes index (msgQbytes).
func (e *msgEnc) set(uid, gid byte, mode uint16, qbytes byte) *msgEnc {
	return e.setAs(0, uid, gid, mode, qbytes)
}

// setAs is set with extra opcode bits (mcNobody).
func (e *msgEnc) setAs(op, uid, gid byte, mode uint16, qbytes byte) *msgEnc {
	e.b(mcSet|op, uid, gid)
	e.u16(mode)
	e.b(qbytes)
	return e
}

func msgSeeds() map[string][]byte {
	return map[string][]byte{
		// msgrcv07: type selection, 0 / >0 / <0 / EXCEPT, FIFO among equals.
		// msgtyp < 0 takes the FIRST message of the lowest type (here 2,
		// not 1, where find stops at once), and MSG_EXCEPT is ignored for
		// msgtyp < 0 while the queue's head is not the lowest type.
		"types-lowest": msgProg(false, func(e *msgEnc) {
			e.send(2, 5, 1).send(1, 5, 3).send(1, 6, 5).send(2, 7, 1) // types 3, 2(a), 2(b), 3
			e.recv(20, typ(-3), 1)                                    // 2(a)
			e.recv(20, typ(-2), 1|4)                                  // 2(b), not the head (type 3)
			e.recv(20, typ(-7), 1|4)                                  // 3
			e.ctl(mcStat)
		}),
		"types": msgProg(false, func(e *msgEnc) {
			e.send(2, 5, 1).send(0, 3, 1).send(1, 4, 1).send(0, 6, 1).send(4, 7, 1)
			e.recv(20, typ(-3), 1) // 1a
			e.recv(20, typ(-3), 1) // 1b
			e.recv(20, typ(2), 1|4)
			e.recv(20, typ(-2), 1|4) // EXCEPT ignored for msgtyp <= 0 (the head is the lowest here: types-lowest tells)
			e.recv(20, typ(0), 1|4)
			e.recv(20, typ(7), 1)
			e.recv(20, typ(0), 1)
			e.ctl(mcStat)
		}),
		// E2BIG leaves the message; NOERROR truncates and removes it.
		"e2big": msgProg(false, func(e *msgEnc) {
			e.send(0, 10, 1)
			e.recv(9, typ(0), 1)
			e.ctl(mcStat)
			e.recv(3, typ(1), 1|2)
			e.ctl(mcStat)
			e.send(0, 0, 1)
			e.recv(0, typ(0), 1)
		}),
		// MSG_COPY: index, needs NOWAIT, excludes EXCEPT, E2BIG, and EINVAL
		// with NOERROR and a short buffer.
		"copy": msgProg(false, func(e *msgEnc) {
			e.send(0, 3, 1).send(1, 5, 1)
			e.recv(10, typ(0), 1|8).recv(10, typ(1), 1|8).recv(10, typ(2), 1|8).recv(10, typ(-1), 1|8)
			e.recv(10, typ(0), 8).recv(10, typ(0), 1|8|4)
			e.recv(2, typ(1), 1|8).recv(2, typ(1), 1|8|2)
			e.ctl(mcStat)
		}),
		// msgsnd05 / SEMANTICS 5.4: cbytes and qnum both capped by qbytes.
		"full": msgProg(false, func(e *msgEnc) {
			e.set(0, 0, 0o600, 3) // qbytes 3
			e.send(0, 0, 1).send(0, 0, 1).send(0, 0, 1).send(0, 0, 1)
			e.ctl(mcStat)
			e.recv(0, typ(0), 1)
			e.send(0, 1, 1)
			e.set(0, 0, 0o600, 4) // 10
			e.send(0, 9, 1).send(0, 6, 1).send(0, 6, 0)
			e.set(0, 0, 0o600, 0) // 0: nothing fits
			e.send(0, 0, 1)
			e.ctl(mcStat)
		}),
		// qbytes limits and IPC_SET check order: EPERM above MSGMNB before
		// EINVAL for uid -1; MSGMNB itself and 0 allowed.
		"qbytes": msgProg(false, func(e *msgEnc) {
			e.set(0, 0, 0o600, 9)  // 16385: EPERM
			e.set(5, 0, 0o600, 9)  // uid -1 and 16385: EPERM
			e.set(5, 0, 0o600, 8)  // uid -1: EINVAL
			e.set(0, 5, 0o600, 7)  // gid -1
			e.set(3, 3, 0o7777, 7) // 16383
			e.ctl(mcStat)
			e.set(0, 0, 0o600, 8) // back to 16384
			e.ctl(mcStat)
		}),
		// Sizes around the block boundaries of usysv's store and the limits.
		"sizes": msgProg(false, func(e *msgEnc) {
			for i := 0; i < 13; i++ {
				e.send(byte(i%6), big(i), 1)
			}
			e.ctl(mcStat)
			for i := 0; i < 13; i++ {
				e.recv(big(11), typ(0), 1)
			}
			e.send(0xF0, 1, 1).send(0xF1, 1, 1).send(0xF2, 1, 1).send(0xF3, 1, 1).send(0xF4, 1, 1)
			e.recv(10, 0xC1, 1).recv(10, 0xC0, 1).recv(10, 0xC2, 1)
			e.ctl(mcStat)
		}),
		// Calls without IPC_NOWAIT: ones that can proceed, and ones that would
		// sleep (the model target lets those expire; the differential adds
		// IPC_NOWAIT).
		"blocking": msgProg(false, func(e *msgEnc) {
			e.recv(10, typ(0), 0)
			e.send(0, 5, 0)
			e.recv(10, typ(0), 0)
			e.set(0, 0, 0o600, 1)
			e.send(0, 0, 0).send(0, 0, 0)
			e.recv(10, typ(3), 2)
			e.ctl(mcStat)
		}),
		// A queue made by key: msgget's answers, IPC_RMID, and calls after.
		"lifecycle": msgProg(true, func(e *msgEnc) {
			e.ctl(mcStat)
			e.ctl(mcGet, 0, 3) // CREAT|EXCL: EEXIST
			e.ctl(mcGet, 0, 0)
			e.ctl(mcGet, 1, 0) // ENOENT
			e.ctl(mcGet, 1, 1) // new
			e.ctl(mcGet, 2, 0) // private: new
			e.send(0, 5, 1)
			e.recv(10, typ(0), 1)
			e.ctl(mcStat)
			e.ctl(mcRemove).ctl(mcRemove)
			e.send(0, 5, 1).ctl(0x40, 0, 5, 1)
			e.recv(10, typ(0), 1).ctl(0x42, 10, typ(0), 1)
			e.ctl(mcStat).ctl(0x44).ctl(0x45, 0, 0, 0x80, 0x01, 8)
			e.ctl(mcGet, 0, 0) // ENOENT
			e.ctl(mcGet, 0, 1) // new
		}),
		// id -1 and the bad-argument EINVALs.
		"bad-args": msgProg(false, func(e *msgEnc) {
			e.ctl(0xF0, 0, 1, 1).ctl(0xF2, 10, typ(0), 1).ctl(0xF4).ctl(0xF5, 0, 0, 0x80, 0x01, 8).ctl(0xF7)
			e.send(0xF0, 1, 1).send(0xF1, 1, 1)
			e.send(0, big(12), 1).send(0, big(11), 1)
			e.recv(10, typ(0), 8).recv(10, typ(0), 1|8|4)
			e.recv(big(11), 0xC0, 1|2)
		}),
		// Blocked receivers (FuzzMsgDiff): hand-over in arrival order to the
		// first that matches, E2BIG to one whose buffer is too small, types
		// 0 / >0 / <0 / EXCEPT, MSG_NOERROR, EIDRM for those left.
		"receivers": msgProg(true, func(e *msgEnc) {
			e.wait(20, typ(5), 0) // R1: type 5
			e.wait(20, typ(0), 0) // R2: any
			e.wait(20, typ(0), 0) // R3: any
			e.send(2, 4, 1)       // type 3 → R2
			e.send(4, 4, 1)       // type 5 → R1
			e.send(3, 4, 1)       // type 4 → R3
			e.ctl(mcStat)
			e.wait(2, typ(-3), 0) // too small
			e.wait(2, typ(-3), 2) // NOERROR
			e.wait(20, typ(2), 4) // EXCEPT 2
			e.send(1, 10, 1)      // type 2 → E2BIG to the first, truncated to the second
			e.send(1, 10, 1)      // type 2 → queued (the EXCEPT one does not match)
			e.send(0, 3, 1)       // type 1 → EXCEPT receiver
			e.ctl(mcStat)
			e.wait(20, typ(7), 0)
			e.wait(20, typ(-1), 0)
			e.recv(20, typ(0), 1)
			e.ctl(mcStat)
		}),
		// Flags msgsnd and msgrcv ignore.
		"junk-flags": msgProg(true, func(e *msgEnc) {
			e.send(0, 3, 1|2).send(1, 3, 2)
			e.recv(10, typ(0), 1|16).recv(10, typ(-7), 16)
			e.ctl(mcGet, 0, 4)
			e.ctl(mcStat)
		}),
		// Steps as nobody (FuzzMsgDiff): EACCES by mode class, EPERM for a
		// non-owner's IPC_SET and IPC_RMID and for qbytes above MSGMNB,
		// msgget's requested mode, the helper's pids in lspid/lrpid, a
		// hand-over from nobody's send to this process's receiver.
		"as-nobody": msgProg(true, func(e *msgEnc) {
			n := byte(mcNobody)
			e.ctl(mcStat | n)          // 0600, root's: EACCES
			e.b(n, 0, 5, 1)            // send: EACCES
			e.setAs(n, 3, 3, 0o666, 8) // not the owner: EPERM
			e.ctl(mcRemove | n)        // EPERM
			e.set(3, 0, 0o640, 8)      // nobody owns it now
			e.b(n, 0, 5, 1)            // lspid: the helper
			e.ctl(mcStat | n)
			e.b(n|2, 10, typ(0), 1) // lrpid: the helper
			e.ctl(mcStat)
			e.setAs(n, 3, 0, 0o600, 9) // 16385 without CAP_SYS_RESOURCE: EPERM
			e.setAs(n, 3, 0, 0o600, 5) // 100
			e.set(0, 3, 0o604, 8)      // nobody's group, no group bits
			e.ctl(mcStat | n)
			e.b(n, 0, 1, 1).b(n|2, 10, typ(0), 1)
			e.ctl(mcGet|n, 0, 5<<3) // mode 0 requests nothing: the same queue
			e.ctl(mcGet|n, 0, 3<<3) // requests 0400: EACCES
			e.ctl(mcGet|n, 2, 1)    // private: nobody's own, removed at once
			e.set(3, 0, 0o622, 8)
			e.wait(20, typ(0), 0) // this process's receiver
			e.b(n, 2, 4, 1)       // handed over by nobody's send
			e.ctl(mcStat)
			e.ctl(mcRemove | n) // the owner: ok
			e.ctl(mcStat).ctl(mcStat | n)
		}),
	}
}

// corruptSeeds: programs for FuzzCorruptSem and FuzzCorruptMsg. The
// structured ones aim at one thing each; the random ones (fixed seeds)
// give the fuzzer a spread of writes and operations to start from.
func corruptSeeds(kind byte) map[string][]byte {
	// header-word writes: step 0 (write), region 4, word index, value
	// index, then 0 + a byte value (low bit 0: the byte is the value).
	hdr := func(word, v byte) []byte { return []byte{0, 4, word, 0, 0, v} }
	// an op in the main goroutine: step 1, then the op's bytes.
	op := func(b ...byte) []byte { return append([]byte{1}, b...) }
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	var setup []byte
	var ops [][]byte // a few operations of the kind, as decodeOp reads them
	if kind == 's' {
		setup = []byte{2, 1, 2, 3} // 3 semaphores, values 1 2 3
		ops = [][]byte{
			{0, 0, 0, 3, 1},       // TryOp [{0 -1}]
			{3, 0, 1, 3, 0},       // Op(ctx) [{1 -1}]
			{2, 1, 0, 5, 2, 2, 0}, // TimedOp(200µs) [{0 +1 UNDO} {2 -4}]
			{8},                   // GetAll
			{6, 1},                // GetNcnt(1)
			{11},                  // Stat
			{9, 0, 5},             // SetVal(0, 5)
		}
	} else {
		setup = []byte{4, 3, 10, 200, 5} // 4 messages
		ops = [][]byte{
			{0, 0, 10},           // TrySend
			{2, 10, 4, 0},        // TryRecv msgtyp 0
			{5, 10, 0, 0},        // Recv(ctx)
			{4, 1, 10},           // Send(ctx)
			{7},                  // Check
			{6},                  // Stat
			{9, 1, 4, 1, 10, 10}, // TryRecvBatch
		}
	}
	workers := func(n int) []byte {
		b := []byte{byte(n)}
		k := min(6, len(ops)) // a worker loops over at most 6 ops
		for w := 0; w < n; w++ {
			b = append(b, byte(k-1))
			for _, o := range ops[len(ops)-k:] {
				b = append(b, o...)
			}
		}
		return b
	}
	var allOps []byte
	for _, o := range ops {
		allOps = append(allOps, op(o...)...)
	}
	seeds := map[string][]byte{
		"ops-only":      cat(setup, workers(0), allOps),
		"state-removed": cat(setup, workers(2), allOps, hdr(0, 2), allOps, hdr(0, 1), allOps),
		"perm-seq-odd":  cat(setup, workers(1), hdr(1, 7), allOps, hdr(1, 8), allOps),
		"mode-0":        cat(setup, workers(1), hdr(4, 0), allOps, hdr(4, 0o600&0xff), allOps),
		"dead-gen":      cat(setup, workers(2), hdr(5, 9), allOps, hdr(5, 10), allOps),
		"qbytes":        cat(setup, workers(1), hdr(7, 0), allOps, hdr(7, 3), allOps),
		// waiter table: slot 0's state and pid, body words.
		"waiters": cat(setup, workers(2), allOps, []byte{0, 0, 0, 4, 0x0d, 1}, allOps, []byte{0, 0, 0, 8, 0x0d, 1}, allOps),
		"live":    cat(setup, workers(2), allOps, []byte{0, 3, 0, 40, 0x0e}, allOps, []byte{0, 3, 1, 30, 0x0a}, allOps),
	}
	r := rand.New(rand.NewSource(int64(kind)))
	for i := 0; i < 6; i++ {
		b := make([]byte, 64+r.Intn(400))
		r.Read(b)
		seeds["random-"+string(rune('a'+i))] = b
	}
	return seeds
}

func TestSeeds(t *testing.T) {
	for _, target := range []string{"FuzzSemModel", "FuzzSemDiff"} {
		syncCorpus(t, target, semSeeds())
	}
	for _, target := range []string{"FuzzMsgModel", "FuzzMsgDiff"} {
		syncCorpus(t, target, msgSeeds())
	}
	data, framed := map[string][]byte{}, map[string]bool{}
	for _, s := range wireSeeds() {
		data[s.name], framed[s.name] = s.data, s.framed
	}
	syncCorpus(t, "FuzzRegistryWire", data, framed)
	syncCorpus(t, "FuzzCorruptSem", corruptSeeds('s'))
	syncCorpus(t, "FuzzCorruptMsg", corruptSeeds('m'))
}
