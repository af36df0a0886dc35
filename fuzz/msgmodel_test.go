package fuzz

import (
	"fmt"
	"math"

	"github.com/cespare/xxhash/v2"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/msgq"
)

// msgModel is System V message queue semantics as Linux implements them
// (SEMANTICS A3-A6, checked against the kernel by FuzzMsgDiff), for one
// queue used by a process that is root without CAP_SYS_RESOURCE (as
// here: qbytes above MSGMNB is EPERM; with it, the driver leaves such
// values out), so no EACCES and no other EPERM, and nobody to wake; and,
// for steps marked nobody (FuzzMsgDiff), by a helper process running as
// nobody (testutil.Nobody, no capabilities): Linux's ipcperms and
// owner checks.
type msgModel struct {
	msgs         []modelMsg
	cbytes       uint64
	qbytes       uint64
	lspid, lrpid int
	stime, rtime bool // set at least once
	perm         kernel.IpcPerm
	removed      bool
	key          int
	self         int
	nobodyPid    int          // the helper running nobody's steps
	recvs        []*modelRecv // blocked receivers, in the order they came
}

type modelMsg struct {
	mtype int64
	text  []byte
}

func newMsgModel(key int, mode uint32, self int, fresh bool) *msgModel {
	m := &msgModel{qbytes: msgq.MSGMNB, perm: kernel.IpcPerm{Key: int32(key), Mode: mode & 0o777}, key: key, self: self}
	if !fresh { // pooled queues start after one message sent and received
		m.lspid, m.lrpid = self, self
	}
	return m
}

func (m *msgModel) name() string { return "model" }

// caller is the pid of the process that runs st.
func (m *msgModel) caller(st *msgStep) int {
	if st.nobody {
		return m.nobodyPid
	}
	return m.self
}

// allowed is Linux's ipcperms for the step's caller: root always (as
// CAP_IPC_OWNER), nobody as permits says.
func (m *msgModel) allowed(st *msgStep, flag uint32) bool {
	return !st.nobody || permits(m.perm, flag)
}

// owns is Linux's ipcctl_obtain_check for IPC_SET and IPC_RMID: the
// caller is the queue's uid or cuid, or has CAP_SYS_ADMIN (root).
func (m *msgModel) owns(st *msgStep) bool {
	return !st.nobody || owner(m.perm)
}

// permits is Linux's ipcperms for nobody (no capabilities, no
// supplementary groups): the mode bits of its class (owner if it is the
// object's uid or cuid, else group if gid or cgid is its group, else
// other) must grant every access bit that flag requests in any of its
// three classes.
func permits(perm kernel.IpcPerm, flag uint32) bool {
	granted := perm.Mode
	switch {
	case owner(perm):
		granted >>= 6
	case perm.GID == testutil.Nobody || perm.CGID == testutil.Nobody:
		granted >>= 3
	}
	requested := flag>>6 | flag>>3 | flag
	return requested&^granted&7 == 0
}

// owner: nobody is the object's uid or cuid.
func owner(perm kernel.IpcPerm) bool {
	return perm.UID == testutil.Nobody || perm.CUID == testutil.Nobody
}

// fits is Linux's msg_fits_inqueue.
func (m *msgModel) fits(n int) bool {
	return m.cbytes+uint64(n) <= m.qbytes && uint64(len(m.msgs))+1 <= m.qbytes
}

// find is Linux's convert_mode + find_msg: the index of the message a
// receive takes, or -1.
func (m *msgModel) find(msgtyp int64, flags int) int {
	switch {
	case flags&msgq.MSG_COPY != 0:
		if msgtyp >= 0 && msgtyp < int64(len(m.msgs)) {
			return int(msgtyp)
		}
	case msgtyp == 0:
		if len(m.msgs) > 0 {
			return 0
		}
	case msgtyp < 0:
		lim := -msgtyp
		if msgtyp == math.MinInt64 {
			lim = math.MaxInt64
		}
		best := -1
		for i, x := range m.msgs {
			if x.mtype <= lim && (best < 0 || x.mtype < m.msgs[best].mtype) {
				best = i
			}
		}
		return best
	default:
		for i, x := range m.msgs {
			if (x.mtype == msgtyp) != (flags&msgq.MSG_EXCEPT != 0) {
				return i
			}
		}
	}
	return -1
}

// sleeps reports whether the step, issued without IPC_NOWAIT, would sleep.
func (m *msgModel) sleeps(st *msgStep) bool {
	if st.badID || m.removed {
		return false
	}
	switch st.kind {
	case mSend:
		return st.mtype >= 1 && st.size <= msgq.MSGMAX && !m.fits(st.size)
	case mRecv:
		return st.flags&msgq.MSG_COPY == 0 && m.find(st.msgtyp, st.flags) < 0
	}
	return false
}

func (m *msgModel) step(st *msgStep) string {
	switch st.kind {
	case mSend:
		if st.size > msgq.MSGMAX || st.mtype < 1 || st.badID || m.removed {
			return "EINVAL"
		}
		if !m.allowed(st, 0o222) {
			return "EACCES"
		}
		if !m.fits(st.size) {
			return m.block(st)
		}
		m.lspid, m.stime = m.caller(st), true
		if m.pipelinedSend(st.mtype, st.text()) {
			return "ok"
		}
		m.msgs = append(m.msgs, modelMsg{st.mtype, st.text()})
		m.cbytes += uint64(st.size)
		return "ok"
	case mRecv:
		if st.flags&msgq.MSG_COPY != 0 && (st.flags&msgq.MSG_EXCEPT != 0 || st.flags&msgq.IPC_NOWAIT == 0) {
			return "EINVAL"
		}
		if st.badID || m.removed {
			return "EINVAL"
		}
		if !m.allowed(st, 0o444) {
			return "EACCES"
		}
		i := m.find(st.msgtyp, st.flags)
		if i < 0 {
			return m.block(st)
		}
		x := m.msgs[i]
		if len(x.text) > st.bufsize {
			if st.flags&msgq.MSG_NOERROR == 0 {
				return "E2BIG"
			}
			if st.flags&msgq.MSG_COPY != 0 {
				return "EINVAL" // copy_msg: the copy buffer is bufsize bytes
			}
		}
		n := min(len(x.text), st.bufsize)
		if st.flags&msgq.MSG_COPY == 0 {
			m.msgs = append(m.msgs[:i:i], m.msgs[i+1:]...)
			m.cbytes -= uint64(len(x.text))
			m.lrpid, m.rtime = m.caller(st), true
		}
		return recvString(n, x.mtype, x.text[:n], true)
	case mStat:
		if st.badID || m.removed {
			return "EINVAL"
		}
		if !m.allowed(st, 0o444) {
			return "EACCES"
		}
		return msgStatString(msgq.DS{Perm: m.perm, Cbytes: m.cbytes, Qnum: uint64(len(m.msgs)), Qbytes: m.qbytes,
			Lspid: m.lspid, Lrpid: m.lrpid}, m.stime, m.rtime, st.times)
	case mSet:
		if st.badID || m.removed {
			return "EINVAL"
		}
		if !m.owns(st) {
			return "EPERM"
		}
		qbytes := uint64(uint32(st.qbytes)) // Linux keeps the low 32 bits
		if qbytes > msgq.MSGMNB {
			return "EPERM" // no CAP_SYS_RESOURCE
		}
		if st.uid == ^uint32(0) || st.gid == ^uint32(0) {
			return "EINVAL"
		}
		m.perm.UID, m.perm.GID = st.uid, st.gid
		m.perm.Mode = m.perm.Mode&^0o777 | st.mode&0o777
		m.qbytes = qbytes
		return "ok"
	case mGet:
		key := st.getKey(m.key)
		exists := key != 0 && key == m.key && !m.removed
		switch {
		case key == kernel.IPC_PRIVATE || (!exists && st.flags&kernel.IPC_CREAT != 0):
			return "ok new"
		case !exists:
			return "ENOENT"
		case st.flags&kernel.IPC_CREAT != 0 && st.flags&kernel.IPC_EXCL != 0:
			return "EEXIST"
		case !m.allowed(st, uint32(st.flags)&0o777):
			return "EACCES"
		}
		return "ok same"
	case mRemove:
		if st.badID || m.removed {
			return "EINVAL"
		}
		if !m.owns(st) {
			return "EPERM"
		}
		m.removed = true
		for _, r := range m.recvs {
			r.result = "EIDRM"
		}
		m.recvs = nil
		return "ok"
	}
	return "model: unknown step"
}

// A receiver left blocked (FuzzMsgDiff on fresh queues).
type modelRecv struct {
	st     *msgStep
	result string // "" while it waits
}

// spawnRecv is a receive left to block: "queued" if it would sleep, else
// its result.
func (m *msgModel) spawnRecv(st *msgStep) (*modelRecv, string) {
	r := &modelRecv{st: st}
	if m.sleeps(st) {
		m.recvs = append(m.recvs, r)
		return r, "queued"
	}
	r.result = m.step(st)
	return r, r.result
}

// pipelinedSend is Linux's pipelined_send: the message goes to the first
// waiting receiver (in the order they came) whose type selection matches;
// one whose buffer is too small (without MSG_NOERROR) fails with E2BIG and
// the search goes on. It reports whether a receiver took the message.
func (m *msgModel) pipelinedSend(mtype int64, text []byte) bool {
	for i := 0; i < len(m.recvs); i++ {
		r := m.recvs[i]
		if !recvMatches(r.st, mtype) {
			continue
		}
		m.recvs = append(m.recvs[:i:i], m.recvs[i+1:]...)
		i--
		if r.st.flags&msgq.MSG_NOERROR == 0 && r.st.bufsize < len(text) {
			r.result = "E2BIG"
			continue
		}
		n := min(len(text), r.st.bufsize)
		r.result = recvString(n, mtype, text[:n], true)
		m.lrpid, m.rtime = m.self, true
		return true
	}
	return false
}

// recvMatches is Linux's testmsg for a waiting receiver.
func recvMatches(st *msgStep, mtype int64) bool {
	switch {
	case st.msgtyp == 0:
		return true
	case st.msgtyp < 0:
		lim := -st.msgtyp
		if st.msgtyp == math.MinInt64 {
			lim = math.MaxInt64
		}
		return mtype <= lim
	case st.flags&msgq.MSG_EXCEPT != 0:
		return mtype != st.msgtyp
	}
	return mtype == st.msgtyp
}

// block is the result of a call that cannot proceed: EAGAIN (send) or
// ENOMSG (receive) with IPC_NOWAIT, EINTR for a handle call whose context
// expires, and a marker the driver never lets happen otherwise.
func (m *msgModel) block(st *msgStep) string {
	if st.flags&msgq.IPC_NOWAIT != 0 {
		if st.kind == mSend {
			return "EAGAIN"
		}
		return "ENOMSG"
	}
	if st.ctx {
		return "EINTR"
	}
	return "model: would sleep"
}

// recvString is what a receive is compared on: the length, the type, a hash
// of the text, and whether the buffer past the text was left alone.
func recvString(n int, mtype int64, text []byte, tailOK bool) string {
	s := fmt.Sprintf("ok n=%d type=%d text=%016x", n, mtype, xxhash.Sum64(text))
	if !tailOK {
		s += " (wrote past the text)"
	}
	return s
}

// msgStatString: the permission (not the sequence number), the counters
// and pids, and, when withTimes, whether stime and rtime are still 0.
func msgStatString(ds msgq.DS, stime, rtime, withTimes bool) string {
	s := fmt.Sprintf("ok key=%#x uid=%d gid=%d cuid=%d cgid=%d mode=%#o cbytes=%d qnum=%d qbytes=%d lspid=%d lrpid=%d",
		uint32(ds.Perm.Key), ds.Perm.UID, ds.Perm.GID, ds.Perm.CUID, ds.Perm.CGID, ds.Perm.Mode,
		ds.Cbytes, ds.Qnum, ds.Qbytes, ds.Lspid, ds.Lrpid)
	if withTimes {
		s += fmt.Sprintf(" stime-set=%t rtime-set=%t", stime, rtime)
	}
	return s
}

// The steps of a queue program.
type msgKind int

const (
	mSend msgKind = iota
	mRecv
	mStat
	mSet
	mGet
	mRemove
)

type msgStep struct {
	kind    msgKind
	badID   bool
	alt     bool // after IPC_RMID: through the contract functions instead of the handle
	ctx     bool // handle call with a context that expires after 200µs
	mtype   int64
	size    int
	fill    byte // text seed
	flags   int
	bufsize int
	msgtyp  int64
	uid     uint32
	gid     uint32
	mode    uint32
	qbytes  uint64
	times   bool // IPC_STAT: compare whether stime/rtime are set
	wait    bool // msgrcv: in a goroutine of its own, left blocked (FuzzMsgDiff on fresh queues)
	nobody  bool // run by a helper process as nobody (FuzzMsgDiff)
	keySel  int
	other   int
}

func (st *msgStep) getKey(own int) int {
	switch st.keySel {
	case 0:
		return own
	case 1:
		return st.other
	}
	return kernel.IPC_PRIVATE
}

// text is the message text of a send: size bytes from the step's seed.
func (st *msgStep) text() []byte {
	b := make([]byte, st.size)
	for i := range b {
		b[i] = st.fill + byte(i*31) + byte(i>>8)
	}
	return b
}

func (st *msgStep) String() string {
	id := ""
	if st.badID {
		id = " id=-1"
	}
	ctx := ""
	if st.ctx {
		ctx = " ctx(200µs)"
	}
	if st.nobody {
		id += " as-nobody"
	}
	switch st.kind {
	case mSend:
		return fmt.Sprintf("msgsnd%s%s type=%d size=%d flags=%s", id, ctx, st.mtype, st.size, msgFlagString(st.flags))
	case mRecv:
		if st.wait {
			ctx = " waiter"
		}
		return fmt.Sprintf("msgrcv%s%s bufsize=%d msgtyp=%d flags=%s", id, ctx, st.bufsize, st.msgtyp, msgFlagString(st.flags))
	case mStat:
		return "IPC_STAT" + id
	case mSet:
		return fmt.Sprintf("IPC_SET%s uid=%d gid=%d mode=%#o qbytes=%d", id, int32(st.uid), int32(st.gid), st.mode, st.qbytes)
	case mGet:
		return fmt.Sprintf("msgget%s key=%s flags=%#o", id, [...]string{"own", "other", "private"}[st.keySel], st.flags)
	case mRemove:
		return "IPC_RMID" + id
	}
	return "?"
}

func msgFlagString(f int) string {
	s := ""
	for _, x := range []struct {
		bit  int
		name string
	}{{msgq.IPC_NOWAIT, "NOWAIT"}, {msgq.MSG_NOERROR, "NOERROR"}, {msgq.MSG_EXCEPT, "EXCEPT"}, {msgq.MSG_COPY, "COPY"}} {
		if f&x.bit != 0 {
			s += "|" + x.name
			f &^= x.bit
		}
	}
	if f != 0 {
		s += fmt.Sprintf("|%#o", f)
	}
	if s == "" {
		return "0"
	}
	return s[1:]
}

// Fuzz byte tables.
var (
	msgSizes = [16]int{0, 96, 104, 105, 128, 232, 233, 256, 1000, 4096, 8191, 8192, 8193, 16384, 24, 97}
	msgTypes = [16]int64{0, -1, 1 << 62, math.MaxInt64, math.MinInt64, 100, 7, 8, 1 << 32, -100, 2, 3, 1, 1, 1, 5}
	msgTyps  = [16]int64{math.MinInt64, math.MaxInt64, -math.MaxInt64, 1 << 40, -(1 << 40), 100, -100, 1 << 32,
		-(1 << 32), 8, -8, 6, -6, 0, 1, -1}
	msgQbytes = [16]uint64{0, 1, 2, 3, 10, 100, 1000, 16383, 16384, 16385, 1 << 40, 50, 200, 24, 128, 16384}
)

// msgSize decodes a text or buffer size: small ones mostly, else sizes
// around the ring's limit (96 bytes in a slot), block boundaries (128-byte
// blocks, a 24-byte header) and limits.
func msgSize(s byte) int {
	if s < 0xC0 {
		return int(s % 24)
	}
	return msgSizes[s%16]
}

// decodeMsgStep reads one step. The opcode byte: low 3 bits the step
// (0-3 send and receive, 4 IPC_STAT, 5 IPC_SET, 6 msgget, 7 IPC_RMID),
// bit 6 "alt", bits 4-5 = 2 "as nobody", ≥ 0xF0 id -1.
func decodeMsgStep(p *prog) *msgStep {
	c := p.u8()
	st := &msgStep{badID: c >= 0xF0, alt: c&0x40 != 0, nobody: c < 0xF0 && c&0x30 == 0x20}
	switch c & 7 {
	case 0, 1:
		st.kind = mSend
		if t := p.u8(); t < 0xF0 {
			st.mtype = 1 + int64(t%6)
		} else {
			st.mtype = msgTypes[t-0xF0]
		}
		st.size = msgSize(p.u8())
		f := p.u8()
		if f&1 != 0 {
			st.flags |= msgq.IPC_NOWAIT
		}
		if f&2 != 0 {
			st.flags |= msgq.MSG_NOERROR | msgq.MSG_EXCEPT | msgq.MSG_COPY // msgsnd ignores them
		}
		st.fill = f
	case 2, 3:
		st.kind = mRecv
		st.wait = c&0x0F == 0x0B
		st.bufsize = msgSize(p.u8())
		if m := p.u8(); m < 0xC0 {
			st.msgtyp = int64(m%15) - 7
		} else {
			st.msgtyp = msgTyps[m%16]
		}
		f := p.u8()
		if f&1 != 0 {
			st.flags |= msgq.IPC_NOWAIT
		}
		if f&2 != 0 {
			st.flags |= msgq.MSG_NOERROR
		}
		if f&4 != 0 {
			st.flags |= msgq.MSG_EXCEPT
		}
		if f&8 != 0 {
			st.flags |= msgq.MSG_COPY
		}
		if f&16 != 0 {
			st.flags |= kernel.IPC_CREAT // msgrcv ignores it
		}
	case 4:
		st.kind = mStat
	case 5:
		st.kind = mSet
		st.uid = pick(p, semIDs[:]...)
		st.gid = pick(p, semIDs[:]...)
		st.mode = uint32(p.u16())
		st.qbytes = msgQbytes[p.u8()%16]
	case 6:
		st.kind = mGet
		st.badID = false
		st.keySel = int(p.u8() % 3)
		f := p.u8()
		if f&1 != 0 {
			st.flags |= kernel.IPC_CREAT
		}
		if f&2 != 0 {
			st.flags |= kernel.IPC_EXCL
		}
		if f&4 != 0 {
			st.flags |= kernel.IPC_NOWAIT // ignored by msgget
		}
		st.flags |= int(semModes[f>>3&7])
	case 7:
		st.kind = mRemove
	}
	return st
}

// Seed encoders.
type msgEnc struct{ enc }

// send: type byte (<0xF0: 1+t%6), size byte (see msgSize), flag byte
// (1 NOWAIT, 2 ignored flags; the rest seeds the text).
func (e *msgEnc) send(t, size, f byte) *msgEnc { e.b(0, t, size, f); return e }

// recv: bufsize byte, msgtyp byte (<0xC0: m%15-7), flag byte (1 NOWAIT,
// 2 NOERROR, 4 EXCEPT, 8 COPY, 16 ignored).
func (e *msgEnc) recv(size, typ, f byte) *msgEnc { e.b(2, size, typ, f); return e }

func (e *msgEnc) ctl(code byte, args ...byte) *msgEnc { e.b(code); e.b(args...); return e }

// wait: a receive left blocked (FuzzMsgDiff on fresh queues; elsewhere an
// ordinary receive). Flags as recv; IPC_NOWAIT and MSG_COPY are dropped.
func (e *msgEnc) wait(size, typ, f byte) *msgEnc { e.b(0x0B, size, typ, f); return e }

// typ encodes msgtyp v in -7..7 for recv.
func typ(v int) byte { return byte(v + 7) }

// big encodes the size msgSizes[i].
func big(i int) byte { return byte(0xC0 + i) }
