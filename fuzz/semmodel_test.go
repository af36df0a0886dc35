package fuzz

import (
	"fmt"
	"testing"
	"time"

	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/sem"
)

// semModel is System V semaphore semantics as Linux implements them
// (SEMANTICS A7-A10, checked against the kernel by FuzzSemDiff), for one
// set used by one process that is root (CAP_IPC_OWNER, CAP_SYS_ADMIN): so
// no EACCES and no EPERM, and no other process to wake anyone; and, for
// steps marked nobody (FuzzSemDiff), by a helper process running as nobody
// without capabilities: Linux's ipcperms and owner checks (see msgModel).
type semModel struct {
	nsems   int
	vals    []int
	pids    []int
	adj     []int // this process's semadj
	adjGone bool  // adj no longer followed (waiters; syncValues)
	perm    kernel.IpcPerm
	otime   bool // a semop has succeeded
	removed bool
	key     int // the set's key (0: private)
	self    int // our pid
	nobody  int // the pid of the helper running nobody's steps
}

// caller is the pid of the process that runs st.
func (m *semModel) caller(st *semStep) int {
	if st.nobody {
		return m.nobody
	}
	return m.self
}

func (m *semModel) allowed(st *semStep, flag uint32) bool {
	return !st.nobody || permits(m.perm, flag)
}

func (m *semModel) owns(st *semStep) bool {
	return !st.nobody || owner(m.perm)
}

func newSemModel(nsems, key int, mode uint32, self int, fresh bool) *semModel {
	m := &semModel{nsems: nsems, vals: make([]int, nsems), pids: make([]int, nsems), adj: make([]int, nsems),
		perm: kernel.IpcPerm{Key: int32(key), Mode: mode & 0o777}, key: key, self: self}
	if !fresh { // pooled sets start after SETALL of zeros
		for i := range m.pids {
			m.pids[i] = self
		}
	}
	return m
}

// syncValues copies the kernel set's values into the model (once waiters,
// which the model does not follow, may have changed them).
func (m *semModel) syncValues(t *testing.T, k *semKernel) {
	if m.removed || k.removed {
		return
	}
	vals, err := kernel.SemctlGetAll(k.id)
	if err != nil {
		t.Fatalf("kernel GETALL: %v", err)
	}
	for i, v := range vals {
		m.vals[i] = int(v)
	}
	// The model is not stepped while waiters exist, so its semadj goes
	// stale (SETVAL clears it, semops change it): eval then skips the
	// semadj range check. That can only turn an ERANGE into a predicted
	// sleep, and a call predicted to sleep is issued with a zero timeout,
	// which answers ERANGE just the same.
	m.adjGone = true
}

// sleeps reports whether ops, issued without a timeout, would put the
// caller to sleep: everything valid, and an op that cannot proceed has no
// IPC_NOWAIT.
func (m *semModel) sleeps(st *semStep) bool {
	if st.kind != sOp || st.badID || m.removed || len(st.ops) == 0 || len(st.ops) > sem.SEMOPM {
		return false
	}
	res, _, _ := m.eval(st.ops, st.call == callTry)
	return res == evalSleep
}

const (
	evalOK = iota
	evalSleep
	evalAgain
	evalRange
	evalFBig
)

// eval is Linux's perform_atomic_semop on copies: array order, each op
// seeing the ones before it; the first op that cannot proceed decides
// (IPC_NOWAIT on that op: EAGAIN), an out-of-range value or semadj before
// it gives ERANGE.
func (m *semModel) eval(ops []sem.Buf, nowait bool) (res int, vals, adj []int) {
	for _, o := range ops {
		if int(o.Num) >= m.nsems {
			return evalFBig, nil, nil
		}
	}
	vals = append([]int(nil), m.vals...)
	adj = append([]int(nil), m.adj...)
	for _, o := range ops {
		cur := vals[o.Num]
		if (o.Op == 0 && cur != 0) || cur+int(o.Op) < 0 {
			if nowait || o.Flg&sem.IPC_NOWAIT != 0 {
				return evalAgain, nil, nil
			}
			return evalSleep, nil, nil
		}
		if cur+int(o.Op) > sem.SEMVMX {
			return evalRange, nil, nil
		}
		if o.Flg&sem.SEM_UNDO != 0 && !m.adjGone {
			u := adj[o.Num] - int(o.Op)
			if u < -sem.SEMAEM-1 || u > sem.SEMAEM {
				return evalRange, nil, nil
			}
			adj[o.Num] = u
		}
		vals[o.Num] = cur + int(o.Op)
	}
	return evalOK, vals, adj
}

func (m *semModel) name() string { return "model" }

func (m *semModel) step(st *semStep) string {
	switch st.kind {
	case sOp:
		if len(st.ops) > sem.SEMOPM {
			return "E2BIG"
		}
		if len(st.ops) == 0 || st.badID || (st.call == callTimed && st.timeout < 0) || m.removed {
			return "EINVAL"
		}
		alter := false
		for _, o := range st.ops {
			if int(o.Num) >= m.nsems {
				return "EFBIG"
			}
			alter = alter || o.Op != 0
		}
		if alter && !m.allowed(st, 0o222) || !alter && !m.allowed(st, 0o444) {
			return "EACCES"
		}
		res, vals, adj := m.eval(st.ops, st.call == callTry)
		switch res {
		case evalFBig:
			return "EFBIG"
		case evalRange:
			return "ERANGE"
		case evalAgain:
			return "EAGAIN"
		case evalSleep:
			switch st.call {
			case callTimed:
				return "EAGAIN"
			case callCtx:
				return "EINTR"
			}
			return "model: would sleep" // the driver never lets this happen
		}
		m.vals = vals
		if !st.nobody { // nobody's ops never have SEM_UNDO (runSem)
			m.adj = adj
		}
		for _, o := range st.ops {
			m.pids[o.Num] = m.caller(st)
		}
		m.otime = true
		return "ok"
	case sSetVal:
		if st.badID {
			return "EINVAL"
		}
		if st.val < 0 || st.val > sem.SEMVMX {
			return "ERANGE"
		}
		if m.removed || st.num < 0 || st.num >= m.nsems {
			return "EINVAL"
		}
		if !m.allowed(st, 0o222) {
			return "EACCES"
		}
		m.vals[st.num], m.pids[st.num], m.adj[st.num] = st.val, m.caller(st), 0
		return "ok"
	case sSetAll:
		if st.badID || m.removed {
			return "EINVAL"
		}
		if !m.allowed(st, 0o222) {
			return "EACCES"
		}
		if len(st.vals) != m.nsems {
			return "EINVAL"
		}
		for _, v := range st.vals {
			if v > sem.SEMVMX {
				return "ERANGE"
			}
		}
		for i, v := range st.vals {
			m.vals[i], m.pids[i], m.adj[i] = int(v), m.caller(st), 0
		}
		return "ok"
	case sGetVal, sGetPid, sGetNcnt, sGetZcnt:
		if st.badID || m.removed {
			return "EINVAL"
		}
		if !m.allowed(st, 0o444) {
			return "EACCES"
		}
		if st.num < 0 || st.num >= m.nsems {
			return "EINVAL"
		}
		switch st.kind {
		case sGetVal:
			return fmt.Sprintf("ok %d", m.vals[st.num])
		case sGetPid:
			return fmt.Sprintf("ok %d", m.pids[st.num])
		}
		return "ok 0"
	case sGetAll:
		if st.badID || m.removed {
			return "EINVAL"
		}
		if !m.allowed(st, 0o444) {
			return "EACCES"
		}
		vals := make([]uint16, m.nsems)
		for i, v := range m.vals {
			vals[i] = uint16(v)
		}
		return fmt.Sprintf("ok %v", vals)
	case sStat:
		if st.badID || m.removed {
			return "EINVAL"
		}
		if !m.allowed(st, 0o444) {
			return "EACCES"
		}
		return semStatString(sem.DS{Perm: m.perm, Nsems: m.nsems}, m.otime, st.otime)
	case sSet:
		if st.badID || m.removed {
			return "EINVAL"
		}
		if !m.owns(st) {
			return "EPERM"
		}
		if st.uid == ^uint32(0) || st.gid == ^uint32(0) {
			return "EINVAL"
		}
		m.perm.UID, m.perm.GID = st.uid, st.gid
		m.perm.Mode = m.perm.Mode&^0o777 | st.mode&0o777
		return "ok"
	case sGet:
		return m.get(st)
	case sRemove:
		if st.badID || m.removed {
			return "EINVAL"
		}
		if !m.owns(st) {
			return "EPERM"
		}
		m.removed = true
		return "ok"
	}
	return "model: unknown step"
}

// get is semget: "ok same" when it returns the set under test, "ok new"
// when it creates one (the driver removes it at once).
func (m *semModel) get(st *semStep) string {
	if st.nsems < 0 || st.nsems > sem.SEMMSL {
		return "EINVAL"
	}
	key := st.getKey(m.key)
	exists := key != 0 && key == m.key && !m.removed
	switch {
	case key == kernel.IPC_PRIVATE || (!exists && st.flags&kernel.IPC_CREAT != 0):
		if st.nsems == 0 {
			return "EINVAL"
		}
		return "ok new"
	case !exists:
		return "ENOENT"
	case st.flags&kernel.IPC_CREAT != 0 && st.flags&kernel.IPC_EXCL != 0:
		return "EEXIST"
	case st.nsems > m.nsems:
		return "EINVAL"
	case !m.allowed(st, uint32(st.flags)&0o777):
		return "EACCES"
	}
	return "ok same"
}

// semStatString is what IPC_STAT results are compared on: the permission
// (not the sequence number), nsems and, when withOtime, whether otime is
// still 0. ctime and otime values are not compared (seconds from two
// clocks).
func semStatString(ds sem.DS, otimeSet, withOtime bool) string {
	s := fmt.Sprintf("ok key=%#x uid=%d gid=%d cuid=%d cgid=%d mode=%#o nsems=%d",
		uint32(ds.Perm.Key), ds.Perm.UID, ds.Perm.GID, ds.Perm.CUID, ds.Perm.CGID, ds.Perm.Mode, ds.Nsems)
	if withOtime {
		s += fmt.Sprintf(" otime-set=%t", otimeSet)
	}
	return s
}

// The steps of a semaphore program.
type semKind int

const (
	sOp semKind = iota
	sSetVal
	sSetAll
	sGetVal
	sGetPid
	sGetNcnt
	sGetZcnt
	sGetAll
	sStat
	sSet
	sGet
	sRemove
)

var semKindNames = [...]string{"semop", "SETVAL", "SETALL", "GETVAL", "GETPID", "GETNCNT", "GETZCNT", "GETALL", "IPC_STAT", "IPC_SET", "semget", "IPC_RMID"}

// How an op array is issued.
type semCall int

const (
	callOp    semCall = iota // Op / semop: may block (issued only when nothing would sleep)
	callTry                  // TryOp (handle) or every op with IPC_NOWAIT
	callTimed                // TimedOp / semtimedop(timeout)
	callCtx                  // handle Op(ctx) with a short deadline: EINTR if it would sleep
)

type semStep struct {
	kind    semKind
	badID   bool // id -1
	alt     bool // after IPC_RMID: through the contract functions instead of the handle
	ops     []sem.Buf
	call    semCall
	timeout time.Duration
	num     int
	val     int
	vals    []uint16
	uid     uint32
	gid     uint32
	mode    uint32
	otime   bool // IPC_STAT: compare whether otime is set
	nobody  bool // run by a helper process as nobody (FuzzSemDiff)
	wait    bool // semop: in a goroutine of its own, left blocked (FuzzSemDiff on fresh sets); call callTry: without a timeout
	keySel  int  // semget: 0 the set's key, 1 another key, 2 IPC_PRIVATE
	other   int  // the other key
	nsems   int
	flags   int
}

func (st *semStep) getKey(own int) int {
	switch st.keySel {
	case 0:
		return own
	case 1:
		return st.other
	}
	return kernel.IPC_PRIVATE
}

func (st *semStep) String() string {
	id := ""
	if st.badID {
		id = " id=-1"
	}
	if st.nobody {
		id += " as-nobody"
	}
	switch st.kind {
	case sOp:
		call := [...]string{"Op", "Try", "Timed", "Ctx"}[st.call]
		if st.wait {
			call = "waiter: Timed(" + waiterTimeout.String() + ")"
			if st.call == callTry {
				call = "waiter: Op"
			}
		}
		if st.call == callTimed && !st.wait {
			call += fmt.Sprintf("(%v)", st.timeout)
		}
		ops := fmt.Sprint(st.ops)
		if len(st.ops) > 8 {
			ops = fmt.Sprintf("[%d ops: %v ...]", len(st.ops), st.ops[:4])
		}
		return fmt.Sprintf("semop%s %s %s", id, call, ops)
	case sSetVal:
		return fmt.Sprintf("SETVAL%s num=%d val=%d", id, st.num, st.val)
	case sSetAll:
		return fmt.Sprintf("SETALL%s %v", id, st.vals)
	case sGetVal, sGetPid, sGetNcnt, sGetZcnt:
		return fmt.Sprintf("%s%s num=%d", semKindNames[st.kind], id, st.num)
	case sSet:
		return fmt.Sprintf("IPC_SET%s uid=%d gid=%d mode=%#o", id, int32(st.uid), int32(st.gid), st.mode)
	case sGet:
		return fmt.Sprintf("semget%s key=%s nsems=%d flags=%#o", id, [...]string{"own", "other", "private"}[st.keySel], st.nsems, st.flags)
	}
	return semKindNames[st.kind] + id
}

// Fuzz byte tables.
var (
	semBigOps = [16]int16{sem.SEMVMX, -sem.SEMVMX, -32768, 16384, -16384, 30000, -30000, 100,
		-100, 1000, -1000, 2, -2, 32766, 5, -5}
	semBigVals = [16]int{-1, sem.SEMVMX, sem.SEMVMX + 1, 65535, 65536, 1<<31 - 1, -1 << 31, 32766,
		1000, 20000, 2, 3, 100, 30000, -2, 5}
	semBigAll = [16]uint16{32767, 32768, 65535, 1000, 30000, 32766, 20000, 100, 7, 8, 9, 10, 16384, 40000, 1, 2}
	semModes  = [8]uint32{0o600, 0o644, 0o666, 0o400, 0o200, 0, 0o777, 0o640}
	semIDs    = [6]uint32{0, 0, 0, 65534, 1000, ^uint32(0)}
)

// semNum decodes a semaphore number for a sembuf: mostly valid, else just
// past the end, or 65535 (sem_num -1).
func semNum(x byte, nsems int) uint16 {
	switch {
	case x < 0xF0:
		return uint16(int(x) % nsems)
	case x < 0xFF:
		return uint16(nsems + int(x-0xF0))
	}
	return 65535
}

// ctlNum decodes a semnum for semctl: as semNum, and -1.
func ctlNum(x byte, nsems int) int {
	if x == 0xFE {
		return -1
	}
	return int(semNum(x, nsems))
}

func decodeSemOp(p *prog, nsems int) sem.Buf {
	x, y, f := p.u8(), p.u8(), p.u8()
	b := sem.Buf{Num: semNum(x, nsems)}
	if y < 0xF0 {
		b.Op = int16(y%9) - 4
	} else {
		b.Op = semBigOps[y-0xF0]
	}
	if f&1 != 0 {
		b.Flg |= sem.IPC_NOWAIT
	}
	if f&2 != 0 {
		b.Flg |= sem.SEM_UNDO
	}
	if f&4 != 0 {
		b.Flg |= 0x2100 // bits semop ignores
	}
	return b
}

// decodeSemStep reads one step. The opcode byte: low 4 bits the step,
// bit 6 "alt", bits 4-5 = 2 "as nobody", ≥ 0xF0 id -1.
func decodeSemStep(p *prog, nsems int) *semStep {
	c := p.u8()
	st := &semStep{badID: c >= 0xF0, alt: c&0x40 != 0, nobody: c < 0xF0 && c&0x30 == 0x20}
	switch c & 0x0F {
	default: // 0, 1, 2, 14, 15
		st.kind = sOp
		st.wait = c&0x0F == 15
		a := p.u8()
		n := 1 + int(a&31)%5
		switch a & 31 {
		case 31:
			n = 0
		case 30:
			n = sem.SEMOPM + 1
		case 29:
			n = sem.SEMOPM
		}
		switch a >> 5 {
		case 3:
			st.call = callTry
		case 4:
			st.call = callTimed
		case 5:
			st.call, st.timeout = callTimed, time.Microsecond
		case 6:
			st.call, st.timeout = callTimed, 200*time.Microsecond
		case 7:
			st.call, st.timeout = callTimed, -time.Nanosecond
		}
		if n > 16 {
			b := decodeSemOp(p, nsems)
			st.ops = make([]sem.Buf, n)
			for i := range st.ops {
				st.ops[i] = b
				if int(b.Num) < nsems {
					st.ops[i].Num = uint16((int(b.Num) + i) % nsems)
				}
			}
		} else {
			st.ops = make([]sem.Buf, n)
			for i := range st.ops {
				st.ops[i] = decodeSemOp(p, nsems)
			}
		}
	case 3:
		st.kind = sSetVal
		st.num = ctlNum(p.u8(), nsems)
		if v := p.u8(); v < 0xF0 {
			st.val = int(v % 6)
		} else {
			st.val = semBigVals[v-0xF0]
		}
	case 4:
		st.kind = sSetAll
		n := nsems
		switch p.u8() {
		case 0xFF:
			n = 0
		case 0xFE:
			n = nsems + 1
		case 0xFD:
			n = nsems - 1
		}
		st.vals = make([]uint16, n)
		for i := range st.vals {
			if v := p.u8(); v < 0xF0 {
				st.vals[i] = uint16(v % 6)
			} else {
				st.vals[i] = semBigAll[v-0xF0]
			}
		}
	case 5, 6, 7, 8:
		st.kind = [...]semKind{sGetVal, sGetPid, sGetNcnt, sGetZcnt}[c&0x0F-5]
		st.num = ctlNum(p.u8(), nsems)
	case 9:
		st.kind = sGetAll
	case 10:
		st.kind = sStat
	case 11:
		st.kind = sSet
		st.uid = pick(p, semIDs[:]...)
		st.gid = pick(p, semIDs[:]...)
		st.mode = uint32(p.u16())
	case 12:
		st.kind = sGet
		st.badID = false
		st.keySel = int(p.u8() % 3)
		st.nsems = pick(p, 0, nsems, nsems-1, nsems+1, -1, sem.SEMMSL+1, 1, nsems)
		f := p.u8()
		if f&1 != 0 {
			st.flags |= kernel.IPC_CREAT
		}
		if f&2 != 0 {
			st.flags |= kernel.IPC_EXCL
		}
		if f&4 != 0 {
			st.flags |= kernel.IPC_NOWAIT // ignored by semget
		}
		st.flags |= int(semModes[f>>3&7])
	case 13:
		st.kind = sRemove
	}
	return st
}

// Seed encoders (the inverse of decodeSemStep, for readable seeds).
type semEnc struct{ enc }

func (e *semEnc) op(call byte, ops ...[3]byte) *semEnc { return e.opAs(0, call, ops...) }

// opAs is op with extra opcode bits (scNobody).
func (e *semEnc) opAs(bits, call byte, ops ...[3]byte) *semEnc {
	// call: 0 Op, 3 Try, 4 Timed(0), 5 Timed(1µs), 6 Timed(200µs), 7 Timed(-1)
	e.b(bits, call<<5|byte(len(ops)-1))
	for _, o := range ops {
		e.b(o[0], o[1], o[2])
	}
	return e
}

// wait encodes a waiter step (FuzzSemDiff on fresh sets; elsewhere an
// ordinary semop).
func (e *semEnc) wait(ops ...[3]byte) *semEnc {
	e.b(15, byte(len(ops)-1))
	for _, o := range ops {
		e.b(o[0], o[1], o[2])
	}
	return e
}

// waitOp encodes a waiter without a timeout (sem.Op, semop).
func (e *semEnc) waitOp(ops ...[3]byte) *semEnc {
	e.b(15, 3<<5|byte(len(ops)-1))
	for _, o := range ops {
		e.b(o[0], o[1], o[2])
	}
	return e
}

// sop encodes one sembuf: num, op in -4..4, flags (1 NOWAIT, 2 UNDO, 4 junk).
func sop(num byte, op int, flg byte) [3]byte { return [3]byte{num, byte(op + 4), flg} }

// bigSop encodes a sembuf with op semBigOps[i].
func bigSop(num byte, i int, flg byte) [3]byte { return [3]byte{num, byte(0xF0 + i), flg} }

func (e *semEnc) ctl(code byte, args ...byte) *semEnc { e.b(code); e.b(args...); return e }
