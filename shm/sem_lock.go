package shm

// LockWord is the value TryLock stores in the lock word for this process
// (its pid and start time), for a caller that keeps it.
func LockWord() uint64 { return me() }

// TryLockAs is TryLock for a hot path that keeps this process's LockWord:
// one CAS, without looking the caller's identity up. Added for package
// sem's lean path.
func (m *Mutex) TryLockAs(lockWord uint64) bool {
	if m.word.CompareAndSwap(0, lockWord) {
		raceAcquire(m.futex)
		return true
	}
	return false
}
