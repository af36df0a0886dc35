package shm

// LockWord is the value the lock word holds while this process holds the
// lock (its image's identity: sentinel tid and start time, mutex.go), for a hot path that keeps it: LockAs and
// TryLockAs then take the lock with one inlined CAS, without looking the
// caller's identity up.
func LockWord() uint64 { return me() }

// LockAs is Lock given this process's LockWord. It returns what Lock
// returns.
func (m *Mutex) LockAs(lockWord uint64) (ownerDied bool) {
	if m.word.CompareAndSwap(0, lockWord) {
		raceAcquire(m.futex)
		return false
	}
	return m.lockSlow()
}

// TryLockAs is TryLock given this process's LockWord.
func (m *Mutex) TryLockAs(lockWord uint64) bool {
	if m.word.CompareAndSwap(0, lockWord) {
		raceAcquire(m.futex)
		return true
	}
	return false
}
