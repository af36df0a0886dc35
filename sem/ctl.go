package sem

import (
	"github.com/usysv/usysv/internal/clock"
	"github.com/usysv/usysv/kernel"
)

// live is the lookup every call starts with: a closed handle or a removed
// set is EINVAL (a stale id); a death reported since this handle last
// looked is repaired first, unless a live process holds the lock
// (tryRepair).
func (s *Array) live() error {
	if s.closed.Load() {
		return ErrClosed
	}
	if s.seg.Removed() {
		return kernel.EINVAL
	}
	if s.deadGen.Load() != s.seenGen.Load() {
		s.tryRepair(false)
	}
	s.settle()
	return nil
}

// GetVal is semctl(GETVAL): semval of semaphore num (read permission).
func (s *Array) GetVal(num int) (int, error) {
	w, err := s.getWord(num)
	if err != nil {
		return -1, err
	}
	return int(w & valueMask), nil
}

// GetPid is semctl(GETPID): the pid of the last process that changed
// semaphore num (semop, SETVAL, SETALL or its exit-time undo), 0 if none.
func (s *Array) GetPid(num int) (int, error) {
	w, err := s.getWord(num)
	if err != nil {
		return -1, err
	}
	return int((w & pidMask) >> pidShift), nil
}

func (s *Array) getWord(num int) (uint64, error) {
	if err := s.live(); err != nil {
		return 0, err
	}
	if !s.permitted(false) {
		return 0, kernel.EACCES
	}
	if num < 0 || num >= s.nsems {
		return 0, kernel.EINVAL
	}
	return s.v.words[num].Load(), nil
}

// GetNcnt is semctl(GETNCNT): how many queued operations wait for semaphore
// num to increase. A waiter counts only on the op it blocks on (Linux ≥ 3.16).
func (s *Array) GetNcnt(num int) (int, error) { return s.count(num, false) }

// GetZcnt is semctl(GETZCNT): how many queued operations wait for semaphore
// num to become zero, counted as GetNcnt.
func (s *Array) GetZcnt(num int) (int, error) { return s.count(num, true) }

func (s *Array) count(num int, zero bool) (int, error) {
	if err := s.live(); err != nil {
		return -1, err
	}
	if !s.permitted(false) {
		return -1, kernel.EACCES
	}
	if num < 0 || num >= s.nsems {
		return -1, kernel.EINVAL
	}
	n := 0
	defer s.guard(s.lock())
	slots := s.v.slotsInUse()
	for idx := range slots {
		slot := &slots[idx]
		if slot.State.Load() != stWaiting || slot.Life.Dead() {
			continue
		}
		ops, _, ok := s.waiterOps(slot)
		bi := slot.Arg[argBlock].Load() // (any value: the segment may be corrupt)
		if !ok || bi >= uint64(len(ops)) {
			continue
		}
		b := ops[bi]
		if int(b.Num) == num && (zero && b.Op == 0 || !zero && b.Op < 0) {
			n++
		}
	}
	s.unlock()
	return n, nil
}

// GetAll is semctl(GETALL): every semval, read at one instant.
func (s *Array) GetAll() ([]uint16, error) {
	if err := s.live(); err != nil {
		return nil, err
	}
	if !s.permitted(false) {
		return nil, kernel.EACCES
	}
	vals := make([]uint16, s.nsems)
	if s.nsems == 1 {
		vals[0] = uint16(s.v.words[0].Load() & valueMask)
		return vals, nil
	}
	defer s.guard(s.lock())
	for i := range vals {
		s.freeze(i)
		vals[i] = uint16(s.sc.work[i] & valueMask)
	}
	s.unlock()
	return vals, nil
}

// SetVal is semctl(SETVAL) (alter permission): semval = val, sempid = this
// process, every process's semadj for num cleared, ctime updated, and
// waiters that can now proceed completed. val outside [0, SEMVMX] is
// ERANGE, before anything else.
func (s *Array) SetVal(num, val int) error {
	if val < 0 || val > SEMVMX {
		return kernel.ERANGE
	}
	if err := s.live(); err != nil {
		return err
	}
	if num < 0 || num >= s.nsems {
		return kernel.EINVAL
	}
	if !s.permitted(true) {
		return kernel.EACCES
	}
	defer s.guard(s.lock())
	if s.seg.Removed() {
		s.unlock()
		return kernel.EIDRM
	}
	s.freeze(num)
	d := uint64(val) | s.pid
	s.sc.work[num] = d
	putWord(&s.v.shadow[num], d)
	putWord(&s.v.hdr.jarg, uint64(num))
	putWord(&s.v.hdr.jcommit, packCommit(jkSetVal, -1, 0, 0))
	crashpoint(StepCommitted)
	s.sc.dirty = append(s.sc.dirty[:0], int32(num))
	s.apply(s.sc.dirty, s.v.hdr.nwait.Load() == 0)
	s.seg.SetCtime(clock.Now())
	s.smartUpdate(nil)
	s.unlock()
	return nil
}

// SetAll is semctl(SETALL) (alter permission): every semval from vals,
// which must hold exactly one value per semaphore (EINVAL otherwise), all
// ≤ SEMVMX (ERANGE, nothing changed); sempid = this process for all, every
// semadj cleared, ctime updated, waiters that can now proceed completed.
func (s *Array) SetAll(vals []uint16) error {
	if err := s.live(); err != nil {
		return err
	}
	if !s.permitted(true) {
		return kernel.EACCES
	}
	if len(vals) != s.nsems {
		return kernel.EINVAL
	}
	for _, v := range vals {
		if v > SEMVMX {
			return kernel.ERANGE
		}
	}
	defer s.guard(s.lock())
	if s.seg.Removed() {
		s.unlock()
		return kernel.EIDRM
	}
	s.sc.dirty = s.sc.dirty[:0]
	for i, v := range vals {
		s.freeze(i)
		d := uint64(v) | s.pid
		s.sc.work[i] = d
		putWord(&s.v.shadow[i], d)
		s.sc.dirty = append(s.sc.dirty, int32(i))
	}
	putWord(&s.v.hdr.jcommit, packCommit(jkSetAll, -1, 0, 0))
	crashpoint(StepCommitted)
	s.apply(s.sc.dirty, s.v.hdr.nwait.Load() == 0)
	s.seg.SetCtime(clock.Now())
	s.smartUpdate(nil)
	s.unlock()
	return nil
}
