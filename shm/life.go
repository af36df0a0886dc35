package shm

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/usysv/usysv/kernel"
)

// Life is a word in a segment that says, from the instant its holder dies,
// that it has died: no registry round trip, no system call to look.
//
// Linux applies a dead process's SEM_UNDO and drops its queued semop and
// msgrcv calls inside the exit itself, before anyone can see that the
// process has died (wait, a pidfd, /proc). The registry learns of a death
// only after that, so a process that reaps a child and then posts a
// semaphore or sends a message could hand it to the dead child's waiter
// slot, where it is lost until the repair: Linux would keep it for the
// living. A waker that finds its waiter's Life dead skips that waiter.
//
// How: the kernel's robust futex list (set_robust_list(2)). Each process
// has one sentinel thread, which registers a list and then blocks for the
// life of the process. Hold writes the sentinel's thread id into the word
// and links the Life into that list; when the process dies (or execs) the
// kernel, still inside the exit, replaces the id with FUTEX_OWNER_DIED in
// every listed word that holds it. Release unlinks it. The list's links
// are in the segments, next to the words (the kernel needs a fixed
// distance between a link and its word), and hold this process's
// addresses; the process keeps its own copy of the list and never reads
// the links back, so a process that rewrites them in a segment can only
// misdirect the kernel's walk of the list at its owner's death (which then
// stops, or sets FUTEX_OWNER_DIED in another 32-bit word, of a mapping of
// the dying process, whose low 30 bits equal its sentinel's id).
//
// A Life is held by one process at a time, through one mapping (the list
// knows it by its address), and must not be reused by another process
// before its holder Releases it (or has died): the link would then belong
// to two lists. Segment.Close and Retire unlink the Lives of the segment
// first. The kernel walks at most 2048 entries (ROBUST_LIST_LIMIT), newest
// first. Without robust lists (the system call failing) Hold only clears
// the word, and a death is known when the registry reports it, as before.
// The sentinel is one more OS thread, started by the first Hold or lock;
// its id and start time also name the process image in lock words (the
// exec that ends the image ends it: mutex.go).
type Life struct {
	word atomic.Uint32 // the holder's sentinel thread id, or FUTEX_OWNER_DIED
	_    uint32
	link atomic.Uint64 // robust_list entry: the holder's next entry (its address; setLink)
}

const (
	lifeSize = int(unsafe.Sizeof(Life{}))
	// lifeOffset is the robust list's futex_offset: from link to word.
	lifeOffset = int(unsafe.Offsetof(Life{}.word)) - int(unsafe.Offsetof(Life{}.link))
)

// Dead reports whether the process that held l has died (or exec'd)
// while it held it.
func (l *Life) Dead() bool { return l.word.Load()&kernel.FutexOwnerDied != 0 }

// Hold makes l this process's: from now until Release, l is Dead once the
// process dies. Call it before the slot that holds l is published to
// others. It is idempotent.
func (l *Life) Hold() {
	lives.start.Do(startSentinel)
	lives.mu.Lock()
	defer lives.mu.Unlock()
	l.word.Store(lives.tid) // also clears an earlier holder's mark
	e := l.entry()
	if lives.tid == 0 || slices.Contains(lives.held, l) || lives.inGone(e) {
		return
	}
	h := &lives.head
	atomic.StoreUintptr(&h.Pending, e) // (a death from here on marks l)
	l.setLink(atomic.LoadUintptr(&h.Next))
	atomic.StoreUintptr(&h.Next, e)
	atomic.StoreUintptr(&h.Pending, 0)
	lives.held = slices.Insert(lives.held, 0, l)
}

// Release ends Hold: l no longer follows this process. Call it before the
// slot that holds l may be freed. Releasing a Life not held does nothing.
func (l *Life) Release() {
	lives.mu.Lock()
	defer lives.mu.Unlock()
	if i := slices.Index(lives.held, l); i >= 0 {
		unlinkLocked(i)
	}
}

// Abandon gives l up as if its holder had died: it is released and then
// marked Dead. The kinds' panic guards use it with WaiterSlot.Abandon.
func (l *Life) Abandon() {
	l.Release()
	l.word.Store(kernel.FutexOwnerDied)
}

// setLink stores the next entry's address in l's link, pointer-sized at
// its start, where the kernel reads a pointer (on any byte order).
func (l *Life) setLink(next uintptr) {
	(*atomic.Uintptr)(unsafe.Pointer(&l.link)).Store(next)
}

// entry is l's address in the kernel's list (that of its link). It does
// not touch l: the list may still hold a Life whose memory is gone.
func (l *Life) entry() uintptr { return uintptr(unsafe.Pointer(l)) + unsafe.Offsetof(l.link) }

// lives is this process's robust list: the kernel's head, registered by
// the sentinel thread, and the Lives it links, in list order.
// livesT is lives' type.
type livesT struct {
	start sync.Once
	tid   uint32 // the sentinel thread's id; 0 without robust lists
	ident uint64 // this image's lock word (identity)
	mu    sync.Mutex
	head  kernel.RobustListHead
	held  []*Life
	gone  []span // retired segments' memory (zeros, then unmapped): never linked
}

var lives livesT

// span is the memory [lo, hi).
type span struct{ lo, hi uintptr }

func memSpan(mem []byte) span {
	lo := uintptr(unsafe.Pointer(&mem[0]))
	return span{lo, lo + uintptr(len(mem))}
}

func (sp span) has(a uintptr) bool { return sp.lo <= a && a < sp.hi }

// inGone reports whether a is in a retired segment (lives.mu held).
func (l *livesT) inGone(a uintptr) bool {
	for _, sp := range l.gone {
		if sp.has(a) {
			return true
		}
	}
	return false
}

// unlinkLocked takes lives.held[i] out of the list (lives.mu held).
func unlinkLocked(i int) {
	h := &lives.head
	next := uintptr(unsafe.Pointer(h))
	if i+1 < len(lives.held) {
		next = lives.held[i+1].entry()
	}
	if i == 0 {
		atomic.StoreUintptr(&h.Next, next)
	} else {
		lives.held[i-1].setLink(next)
	}
	lives.held = slices.Delete(lives.held, i, i+1)
}

// unlinkAround unlinks every Life held in mem and then runs change, which
// replaces or unmaps mem's pages, with the list locked: the kernel must
// never walk into memory that is gone, or that something else has been
// mapped over since, and no Hold may link a Life in mem in between. With
// retiring, mem's pages become zeros that goroutines may still touch: a
// Hold there only sets the word until unlinkAround runs again without it
// (when they are unmapped).
func unlinkAround(mem []byte, retiring bool, change func() error) error {
	if len(mem) == 0 {
		return change()
	}
	sp := memSpan(mem)
	lives.mu.Lock()
	defer lives.mu.Unlock()
	for i := 0; i < len(lives.held); {
		if sp.has(lives.held[i].entry()) {
			unlinkLocked(i)
			continue
		}
		i++
	}
	lives.gone = slices.DeleteFunc(lives.gone, func(g span) bool { return g == sp })
	if retiring {
		lives.gone = append(lives.gone, sp)
	}
	return change()
}

// startSentinel starts the thread whose death marks this process's Lives
// and whose id names this process image in lock words (mutex.go: me). It
// stays locked to its goroutine, which never returns, so the thread lives
// as long as the image: an exec ends it (the kernel ends every thread but
// the one that execs), as a death does. It is never the main thread,
// whose tid and start time an exec by another thread takes over.
func startSentinel() {
	ready := make(chan sentinel)
	go runSentinel(ready)
	s := <-ready
	lives.tid = s.robust
	lives.ident = s.ident
}

// sentinel is what the sentinel thread reports once it runs: the tid its
// robust list marks Lives with (0 without robust lists) and its lock
// identity.
type sentinel struct {
	robust uint32
	ident  uint64
}

func runSentinel(ready chan<- sentinel) {
	runtime.LockOSThread()
	tid := kernel.Gettid()
	if tid == kernel.Getpid() {
		// The main thread. Locked to it, this goroutine makes sure the
		// one it starts runs on another thread.
		inner := make(chan sentinel)
		go runSentinel(inner)
		s := <-inner
		runtime.UnlockOSThread()
		ready <- s
		return
	}
	s := sentinel{ident: identity(tid)}
	h := &lives.head
	h.Next = uintptr(unsafe.Pointer(h))
	h.FutexOffset = lifeOffset
	if kernel.SetRobustList(h) == nil {
		s.robust = uint32(tid)
	}
	ready <- s
	select {}
}

// identity is this image's lock word (without lockWaiters): the sentinel
// thread's tid and the low 32 bits of its start time, which name that
// thread, and so this image, for ever. If the start time cannot be read
// (out of file descriptors for a tenth of a second, say), the process's
// pid and start time (kernel.Self) stand in: a holder then found alive
// after an exec is taken for alive, as a stopped one is.
func identity(tid int) uint64 {
	for try := 0; try < 50; try++ {
		if st, err := kernel.ProcessStartTime(tid); err == nil {
			return uint64(uint32(st))<<32 | uint64(tid)
		}
		time.Sleep(2 * time.Millisecond)
	}
	pid, start := kernel.Self()
	return uint64(uint32(start))<<32 | uint64(pid)
}
