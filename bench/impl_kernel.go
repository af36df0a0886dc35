package bench

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/usysv/usysv/kernel"
)

// The kernel's own SysV semaphores and message queues: the baseline.

func init() {
	registerSem(Kernel, kernelSem{})
	registerMsg(Kernel, kernelMsg{})
}

type kernelSem struct{}

type kernelSet struct {
	id     int
	remove func() error
}

func (kernelSem) Create(nsems int) (SemSet, error) {
	id, err := kernel.Semget(kernel.IPC_PRIVATE, nsems, kernel.IPC_CREAT|0o600)
	if err != nil {
		return nil, fmt.Errorf("semget: %w", err)
	}
	return &kernelSet{id: id, remove: track(func() error { return kernel.SemctlRemove(id) })}, nil
}

func (kernelSem) Open(ref string) (SemSet, error) {
	id, err := strconv.Atoi(ref)
	if err != nil {
		return nil, fmt.Errorf("bad semaphore ref %q", ref)
	}
	return &kernelSet{id: id}, nil
}

func (s *kernelSet) Ref() string        { return strconv.Itoa(s.id) }
func (s *kernelSet) Op(ops []Buf) error { return kernel.Semop(s.id, ops) }
func (s *kernelSet) Close() error       { return nil }
func (s *kernelSet) Remove() error {
	if s.remove == nil {
		return kernel.SemctlRemove(s.id)
	}
	return s.remove()
}

type kernelMsg struct{}

type kernelQueue struct {
	id     int
	remove func() error
}

func (kernelMsg) Typed() bool { return true }

func (kernelMsg) Create(o ChanOpts) (Chan, error) {
	if o.MsgSize > kernel.MSGMAX {
		return nil, fmt.Errorf("message of %d bytes exceeds the kernel's msgmax %d", o.MsgSize, kernel.MSGMAX)
	}
	id, err := kernel.Msgget(kernel.IPC_PRIVATE, kernel.IPC_CREAT|0o600)
	if err != nil {
		return nil, fmt.Errorf("msgget: %w", err)
	}
	q := &kernelQueue{id: id, remove: track(func() error { return kernel.MsgctlRemove(id) })}
	if err := sizeKernelQueue(id, queueBytes(o.MsgSize)); err != nil {
		_ = q.Remove()
		return nil, err
	}
	return q, nil
}

// sizeKernelQueue sets a queue's msg_qbytes to want bytes. Raising it
// above msgmnb needs CAP_SYS_RESOURCE; without it the queue keeps its
// default, msgmnb, and so does the usysv queue of the same case
// (queueBytes).
func sizeKernelQueue(id, wantBytes int) error {
	want := uint64(wantBytes)
	ds, err := kernel.MsgctlStat(id)
	if err != nil {
		return fmt.Errorf("msgctl IPC_STAT: %w", err)
	}
	if ds.Qbytes == want {
		return nil
	}
	ds.Qbytes = want
	if err := kernel.MsgctlSet(id, ds); err != nil && !errors.Is(err, kernel.EPERM) {
		return fmt.Errorf("msgctl IPC_SET qbytes %d: %w", want, err)
	}
	return nil
}

func (kernelMsg) Open(ref string, side int, files []*os.File) (Endpoint, error) {
	id, err := strconv.Atoi(ref)
	if err != nil {
		return nil, fmt.Errorf("bad queue ref %q", ref)
	}
	return &kernelQueue{id: id}, nil
}

func (q *kernelQueue) Ref() string                      { return strconv.Itoa(q.id) }
func (q *kernelQueue) Files(int) []*os.File             { return nil }
func (q *kernelQueue) End(int) (Endpoint, error)        { return &kernelQueue{id: q.id}, nil }
func (q *kernelQueue) Send(mtype int64, p []byte) error { return kernel.Msgsnd(q.id, mtype, p, 0) }
func (q *kernelQueue) Recv(buf []byte, mtype int64) (int, error) {
	n, _, err := kernel.Msgrcv(q.id, buf, mtype, 0)
	return n, err
}
func (q *kernelQueue) Close() error { return nil }
func (q *kernelQueue) Remove() error {
	if q.remove == nil {
		return kernel.MsgctlRemove(q.id)
	}
	return q.remove()
}

// NewLookup makes a queue under a fresh key; Get is msgget(key, 0).
func (kernelMsg) NewLookup() (Lookup, error) {
	for range 100 {
		key := freshKey()
		id, err := kernel.Msgget(key, kernel.IPC_CREAT|kernel.IPC_EXCL|0o600)
		if errors.Is(err, kernel.EEXIST) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("msgget: %w", err)
		}
		return &kernelLookup{key: key, id: id, remove: track(func() error { return kernel.MsgctlRemove(id) })}, nil
	}
	return nil, errors.New("msgget: no free key")
}

type kernelLookup struct {
	key, id int
	remove  func() error
}

func (l *kernelLookup) Get() error {
	id, err := kernel.Msgget(l.key, 0)
	if err != nil {
		return fmt.Errorf("msgget: %w", err)
	}
	if id != l.id {
		return fmt.Errorf("msgget(%#x) = %d, want %d", l.key, id, l.id)
	}
	return nil
}

func (l *kernelLookup) Remove() error { return l.remove() }

var keySeq atomic.Uint64

// freshKey returns a SysV key that no other process is likely to use: a
// hash of the pid, a counter and the time, never IPC_PRIVATE. Callers
// create with IPC_EXCL and retry on EEXIST.
func freshKey() int {
	h := xxhash.Sum64String(fmt.Sprintf("usysv-bench/%d/%d/%d", os.Getpid(), keySeq.Add(1), time.Now().UnixNano()))
	k := int(int32(h))
	if k == kernel.IPC_PRIVATE || k == -1 {
		k = 0x5bec
	}
	return k
}
