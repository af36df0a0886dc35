package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/msgq"
	"github.com/usysv/usysv/registry"
	"github.com/usysv/usysv/sem"
	"github.com/usysv/usysv/shm"
)

// usysv: this module's sem and msgq, through their handles (*sem.Array,
// *msgq.Queue), as a Go program would use them. Blocking calls get a
// background context: the cost of cancellability is part of the price.

func init() {
	registerSem(Usysv, usysvSem{})
	registerMsg(Usysv, usysvMsg{})
}

type usysvSem struct{}

type usysvSet struct {
	s      *sem.Array
	remove func() error
}

func (usysvSem) Create(nsems int) (SemSet, error) {
	s, err := sem.Open(kernel.IPC_PRIVATE, nsems, kernel.IPC_CREAT|0o600)
	if err != nil {
		return nil, fmt.Errorf("sem.Open: %w", err)
	}
	// Cleanup may remove the set while a benchmark still uses the handle:
	// Remove is safe then, Close (unmapping) is not, so only the owner's
	// own Remove closes.
	return &usysvSet{s: s, remove: track(s.Remove)}, nil
}

func (usysvSem) Open(ref string) (SemSet, error) {
	id, err := strconv.Atoi(ref)
	if err != nil {
		return nil, fmt.Errorf("bad semaphore ref %q", ref)
	}
	s, err := sem.OpenID(id)
	if err != nil {
		return nil, fmt.Errorf("sem.OpenID: %w", err)
	}
	return &usysvSet{s: s}, nil
}

func (s *usysvSet) Ref() string { return strconv.Itoa(s.s.ID()) }

func (s *usysvSet) Op(ops []Buf) error { return s.s.Op(context.Background(), ops...) }

func (s *usysvSet) Close() error { return s.s.Close() }

func (s *usysvSet) Remove() error {
	if s.remove == nil {
		return errors.Join(s.s.Remove(), s.s.Close())
	}
	return errors.Join(s.remove(), s.s.Close())
}

type usysvMsg struct{}

type usysvQueue struct {
	q      *msgq.Queue
	remove func() error
	batch  []msgq.Msg // scratch for SendBatch and RecvBatch
	shared bool       // an End of the creator's handle
}

func (usysvMsg) Typed() bool { return true }

// Create makes a queue with the byte capacity the kernel's queue gets in
// the same case (queueBytes).
func (usysvMsg) Create(o ChanOpts) (Chan, error) {
	q, err := msgq.OpenConfig(kernel.IPC_PRIVATE, kernel.IPC_CREAT|0o600,
		msgq.Config{Capacity: queueBytes(o.MsgSize)})
	if err != nil {
		return nil, fmt.Errorf("msgq.Open: %w", err)
	}
	return &usysvQueue{q: q, remove: track(q.Remove)}, nil // see usysvSem.Create
}

func (usysvMsg) Open(ref string, side int, files []*os.File) (Endpoint, error) {
	id, err := strconv.Atoi(ref)
	if err != nil {
		return nil, fmt.Errorf("bad queue ref %q", ref)
	}
	q, err := msgq.OpenID(id)
	if err != nil {
		return nil, fmt.Errorf("msgq.OpenID: %w", err)
	}
	return &usysvQueue{q: q}, nil
}

func (q *usysvQueue) Ref() string          { return strconv.Itoa(q.q.ID()) }
func (q *usysvQueue) Files(int) []*os.File { return nil }

// End shares the creator's handle: Close on it does nothing.
func (q *usysvQueue) End(int) (Endpoint, error) { return &usysvQueue{q: q.q, shared: true}, nil }

func (q *usysvQueue) Send(mtype int64, p []byte) error {
	return q.q.Send(context.Background(), mtype, p)
}

func (q *usysvQueue) Recv(buf []byte, mtype int64) (int, error) {
	n, _, err := q.q.Recv(context.Background(), buf, mtype, 0)
	return n, err
}

func (q *usysvQueue) SendBatch(mtype int64, msgs [][]byte) error {
	b := q.scratch(len(msgs))
	for i, m := range msgs {
		b[i] = msgq.Msg{Type: mtype, Data: m}
	}
	_, err := q.q.SendBatch(context.Background(), b)
	return err
}

func (q *usysvQueue) RecvBatch(bufs [][]byte, sizes []int, mtype int64) (int, error) {
	b := q.scratch(len(bufs))
	for i, buf := range bufs {
		b[i] = msgq.Msg{Data: buf}
	}
	n, err := q.q.RecvBatch(context.Background(), b, mtype, 0)
	for i := range n {
		sizes[i] = b[i].N
	}
	return n, err
}

func (q *usysvQueue) scratch(n int) []msgq.Msg {
	if cap(q.batch) < n {
		q.batch = make([]msgq.Msg, n)
	}
	return q.batch[:n]
}

func (q *usysvQueue) Close() error {
	if q.shared || q.remove != nil {
		return nil // the creator's handle, closed by Remove
	}
	return q.q.Close()
}

func (q *usysvQueue) Remove() error { return errors.Join(q.remove(), q.q.Close()) }

// NewLookup makes a queue under a fresh key; Get looks that key up, as
// msgget(key, 0) asks the kernel: from the third time on the client's get
// cache answers (registry/getcache.go), so the case measures a repeated
// lookup; the first one of a key is a registry round trip (registry's
// BenchmarkGetExisting).
func (usysvMsg) NewLookup() (Lookup, error) {
	c, err := registry.Default()
	if err != nil {
		return nil, err
	}
	for range 100 {
		key := freshKey()
		q, err := msgq.Open(key, kernel.IPC_CREAT|kernel.IPC_EXCL|0o600)
		if errors.Is(err, kernel.EEXIST) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("msgq.Open: %w", err)
		}
		return &usysvLookup{c: c, key: key, id: q.ID(), q: q, remove: track(q.Remove)}, nil
	}
	return nil, errors.New("msgq.Open: no free key")
}

type usysvLookup struct {
	c       *registry.Client
	key, id int
	q       *msgq.Queue
	remove  func() error
}

func (l *usysvLookup) Get() error {
	id, err := l.c.Get(registry.GetRequest{Kind: shm.KindMsg, Key: int32(l.key)})
	if err != nil {
		return fmt.Errorf("registry get: %w", err)
	}
	if id != l.id {
		return fmt.Errorf("registry get(%#x) = %d, want %d", l.key, id, l.id)
	}
	return nil
}

func (l *usysvLookup) Remove() error { return errors.Join(l.remove(), l.q.Close()) }
