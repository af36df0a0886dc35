package shm

import "github.com/usysv/usysv/kernel"

// LockCached is Lock for hot paths (added for package msgq): when the
// owner word already names this process — it held the lock last, the
// common case for a process streaming messages — it is not stored again,
// so an uncontended acquire is a single CAS. The owner word only serves to
// tell a dead holder from a live one after pid reuse; it is correct as soon
// as the holder's CAS succeeds and it names the holder.
func (m *Mutex) LockCached() (ownerDied bool) {
	pid, start := kernel.Self()
	if m.word.CompareAndSwap(0, uint32(pid)) {
		if own := uint64(pid)<<32 | uint64(uint32(start)); m.owner.Load() != own {
			m.owner.Store(own)
		}
		return false
	}
	return m.lockSlow()
}
