package shm

import "sync/atomic"

// HotWords returns the mutable header words that package sem's fast path
// reads on every operation: the object's state (StateLive while it is not
// removed), its permission sequence (see PermSeq) and its dead-process
// generation (see DeadGen). The caller keeps the pointers so that each check
// is one load instead of a walk through the Segment. They are valid until
// Close; the words are only ever read through them.
func (s *Segment) HotWords() (state, permSeq, deadGen *atomic.Uint32) {
	return &s.h.state, &s.h.permSeq, &s.h.deadGen
}
