package registry

import (
	"sync"

	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// Limits are the registry's configurable limits. The registry enforces
// SEMMSL, SEMMNI, SEMMNS, MSGMNI and MSGMNB (on IPC_SET of qbytes) and
// MaxSegment; the others are reported by Info for the kinds to read.
type Limits struct {
	SEMMSL int // max semaphores per set
	SEMMNI int // max sets
	SEMMNS int // max semaphores in all sets
	SEMOPM int // max ops per semop
	SEMVMX int // max semaphore value
	MSGMAX int // max message size
	MSGMNB int // default and unprivileged max queue bytes
	MSGMNI int // max queues
	// MaxSegment caps the bytes of one object's segment (its layout size).
	MaxSegment uint64
}

// DefaultMaxSegment is the default cap on one object's segment: 256 MiB.
const DefaultMaxSegment = 256 << 20

// DefaultLimits are Linux's defaults (include/uapi/linux/sem.h, msg.h),
// with SEMMNS = SEMMSL × SEMMNI.
func DefaultLimits() Limits {
	return Limits{
		SEMMSL: kernel.SEMMSL, SEMMNI: kernel.SEMMNI, SEMMNS: kernel.SEMMSL * kernel.SEMMNI,
		SEMOPM: kernel.SEMOPM, SEMVMX: kernel.SEMVMX,
		MSGMAX: kernel.MSGMAX, MSGMNB: kernel.MSGMNB, MSGMNI: kernel.MSGMNI,
		MaxSegment: DefaultMaxSegment,
	}
}

// withDefaults fills zero fields with the defaults.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	fill := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	fill(&l.SEMMSL, d.SEMMSL)
	fill(&l.SEMMNI, d.SEMMNI)
	if l.SEMMNS <= 0 {
		l.SEMMNS = l.SEMMSL * l.SEMMNI
	}
	fill(&l.SEMOPM, d.SEMOPM)
	fill(&l.SEMVMX, d.SEMVMX)
	fill(&l.MSGMAX, d.MSGMAX)
	fill(&l.MSGMNB, d.MSGMNB)
	fill(&l.MSGMNI, d.MSGMNI)
	if l.MaxSegment == 0 {
		l.MaxSegment = d.MaxSegment
	}
	return l
}

// Usage is IPC_INFO / SEM_INFO / MSG_INFO-like: the limits in force and what
// is in use for one kind.
type Usage struct {
	Limits  Limits
	Objects int    // live objects of the kind (semusz, msgpool)
	Units   uint64 // sem: semaphores in all sets (semaem); msg: 0, the registry does not read queues
	Bytes   uint64 // bytes of all the kind's segments
	MaxID   int    // highest live id of the kind, -1 if none
}

var repairs struct {
	sync.RWMutex
	fns map[shm.Kind][]func(seg *shm.Segment)
}

// RegisterRepair registers fn as the eager repair of kind: a registry
// server running in this process (usysvd, or an embedded host) calls it for
// every segment of that kind after a client process died, and once for
// every segment when it starts or takes over. fn runs with no registry lock
// held, on one goroutine shared by all repairs (so it should not block for
// long); it must tolerate segments that are being removed. Kinds call it
// from an init function, so linking the kind into usysvd is enough.
func RegisterRepair(kind shm.Kind, fn func(seg *shm.Segment)) {
	repairs.Lock()
	defer repairs.Unlock()
	if repairs.fns == nil {
		repairs.fns = make(map[shm.Kind][]func(*shm.Segment))
	}
	repairs.fns[kind] = append(repairs.fns[kind], fn)
}

func repairHooks(kind shm.Kind) []func(*shm.Segment) {
	repairs.RLock()
	defer repairs.RUnlock()
	return repairs.fns[kind]
}
