package shm

// Offsets of the header's fields, for the golden layout test (package
// shm_test), which pins them to the numbers in layout.go's table.
var HeaderOffsets = map[string]int{
	"magic": offMagic, "version": offVersion, "kind": offKind, "headerSize": offHdrSize,
	"size": offSize, "namespace": offNamespace, "key": offKey, "count": offCount,
	"capacity": offCapacity, "cuid": offCUID, "cgid": offCGID, "waiters": offWaiters,
	"maxMsg": offMaxMsg, "bodySize": offBodySize, "checksum": offChecksum,
	"immutableEnd": immutableEnd,
	"state":        offState, "permSeq": offPermSeq, "uid": offUID, "gid": offGID, "mode": offMode,
	"deadGen": offDeadGen, "ctime": offCtime, "param": offParam,
	"lock": offLock, "section": offSection, "holderPid": offHolder,
}

// LivesHeld is how many Lives this process's robust list links.
func LivesHeld() int {
	lives.mu.Lock()
	defer lives.mu.Unlock()
	return len(lives.held)
}

// Abandoned is the lock word Abandon leaves.
var Abandoned = abandoned
