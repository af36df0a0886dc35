package shm

import "github.com/usysv/usysv/kernel"

// LockCached is Lock for hot paths (added for package msgq): an
// uncontended acquire is one CAS and, when the owner record already names
// this process, no second store. Unlock clears the record (so that a waiter
// never matches a new holder's pid against an earlier holder's start time
// after pid reuse), so in practice the record is stored on each acquire, on
// the cache line the CAS just took.
func (m *Mutex) LockCached() (ownerDied bool) {
	pid, start := kernel.Self()
	if m.word.CompareAndSwap(0, uint32(pid)) {
		if own := uint64(pid)<<32 | uint64(uint32(start)); m.owner.Load() != own {
			m.owner.Store(own)
		}
		raceAcquire(m.word)
		return false
	}
	return m.lockSlow()
}
