package shm

// LockCached is Lock. It once skipped a redundant store of a separate owner
// record; the lock word now carries the owner in the same CAS, so there is
// nothing left to skip. Kept for the callers that use it.
func (m *Mutex) LockCached() (ownerDied bool) { return m.Lock() }
