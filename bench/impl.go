package bench

import (
	"fmt"
	"os"
	"sort"
	"sync"

	"github.com/usysv/usysv/kernel"
)

// Buf is one semaphore operation, struct sembuf.
type Buf = kernel.Sembuf

// The implementation names used in results, benchmark names (impl=NAME)
// and the -impl filter.
const (
	Usysv  = "usysv"  // this module: sem and msgq
	Kernel = "kernel" // the kernel's own SysV IPC, through package kernel
	Unix   = "unix"   // a unix SOCK_SEQPACKET socket pair (messages only)
	Pipe   = "pipe"   // a pair of pipes, fixed-size messages (messages only)
)

// SemImpl is a semaphore implementation under test.
type SemImpl interface {
	// Create makes a new private set of nsems semaphores, all zero. Only
	// the process that created it calls Remove.
	Create(nsems int) (SemSet, error)
	// Open attaches to a set another process created, named by its Ref.
	Open(ref string) (SemSet, error)
}

// SemSet is one semaphore set, as a process sees it.
type SemSet interface {
	// Ref names the set for Open in another process (the set's id).
	Ref() string
	// Op is semop(2): all of ops, atomically, blocking as semop does.
	Op(ops []Buf) error
	// Close detaches; the set lives on.
	Close() error
	// Remove destroys the set (IPC_RMID) and detaches.
	Remove() error
}

// MsgImpl is a message transport under test. A channel has two sides, 0
// and 1: what side 0 sends, side 1 receives and the other way round. For
// a SysV queue both sides are the same queue and message types say who a
// message is for; the benchmarks use types 1 (to side 1) and 2 (to side 0)
// where both sides receive.
type MsgImpl interface {
	// Typed reports whether Recv selects messages by type as msgrcv(2)
	// does. Untyped transports ignore types and deliver in order.
	Typed() bool
	// Create makes a new private channel for messages of up to
	// o.MsgSize bytes.
	Create(o ChanOpts) (Chan, error)
	// Open attaches side of a channel that another process created: ref
	// is the channel's Ref and files are what its Files(side) returned,
	// as the helper process received them.
	Open(ref string, side int, files []*os.File) (Endpoint, error)
}

// ChanOpts are the parameters of a new channel.
type ChanOpts struct {
	MsgSize int // largest message, bytes
}

// Chan is a channel as its creator holds it.
type Chan interface {
	// Ref names the channel for Open in another process.
	Ref() string
	// Files are the descriptors a helper process needs to open side; the
	// helper receives them as its descriptors 3, 4, ...
	Files(side int) []*os.File
	// End opens side in this process.
	End(side int) (Endpoint, error)
	// Remove destroys the channel and closes the creator's descriptors.
	Remove() error
}

// Endpoint is one side of a channel.
type Endpoint interface {
	// Send delivers p, of type mtype (> 0; ignored by untyped
	// transports), to the other side, blocking while the channel is full.
	Send(mtype int64, p []byte) error
	// Recv takes the next message for this side (of type mtype, with
	// msgrcv's rules, for typed transports) into buf, blocking while
	// there is none, and returns its length.
	Recv(buf []byte, mtype int64) (int, error)
	// Close detaches this side (it does not destroy the channel).
	Close() error
}

// Batcher is implemented by an Endpoint that can move several messages in
// one call (usysv's SendBatch and RecvBatch). Others are driven one
// message at a time in the batch case.
type Batcher interface {
	// SendBatch sends every message of msgs, of type mtype, in order.
	SendBatch(mtype int64, msgs [][]byte) error
	// RecvBatch receives at least one and at most len(bufs) messages of
	// type mtype, blocking while there is none, and returns how many, with
	// each one's length in sizes.
	RecvBatch(bufs [][]byte, sizes []int, mtype int64) (int, error)
}

// Lookup is the registry-get case: an object made under a fresh key, and
// the lookup of that key (semget/msgget without IPC_CREAT).
type Lookup interface {
	Get() error
	Remove() error
}

// Looker is implemented by a MsgImpl that can look objects up by key.
type Looker interface {
	NewLookup() (Lookup, error)
}

var impls struct {
	sync.Mutex
	sem map[string]SemImpl
	msg map[string]MsgImpl
}

// registerSem and registerMsg make an implementation available under name.
// They are called from the init functions of the impl_*.go files.
func registerSem(name string, s SemImpl) {
	impls.Lock()
	defer impls.Unlock()
	if impls.sem == nil {
		impls.sem = map[string]SemImpl{}
	}
	impls.sem[name] = s
}

func registerMsg(name string, m MsgImpl) {
	impls.Lock()
	defer impls.Unlock()
	if impls.msg == nil {
		impls.msg = map[string]MsgImpl{}
	}
	impls.msg[name] = m
}

func semImpl(name string) (SemImpl, error) {
	impls.Lock()
	defer impls.Unlock()
	s, ok := impls.sem[name]
	if !ok {
		return nil, fmt.Errorf("bench: no semaphore implementation %q in this build", name)
	}
	return s, nil
}

func msgImpl(name string) (MsgImpl, error) {
	impls.Lock()
	defer impls.Unlock()
	m, ok := impls.msg[name]
	if !ok {
		return nil, fmt.Errorf("bench: no message implementation %q in this build", name)
	}
	return m, nil
}

// Available lists the implementations compiled into this build.
func Available() []string {
	impls.Lock()
	defer impls.Unlock()
	seen := map[string]bool{}
	for n := range impls.sem {
		seen[n] = true
	}
	for n := range impls.msg {
		seen[n] = true
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return implRank(out[i]) < implRank(out[j]) })
	return out
}

// implRank orders implementations as the table's columns do.
func implRank(name string) int {
	switch name {
	case Usysv:
		return 0
	case Kernel:
		return 1
	case Unix:
		return 2
	case Pipe:
		return 3
	}
	return 4
}
