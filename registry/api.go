package registry

import (
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// Perm is struct ipc_perm (contract: DESIGN.md §4).
type Perm = kernel.IpcPerm

// Creds are the credentials a permission decision is made on.
type Creds = kernel.Creds

// Access is what an operation needs: Read (4) or Write (2, "alter").
type Access uint32

// Access bits, as in the mode's rwx triplets.
const (
	Read  Access = 4
	Write Access = 2
)

// GetRequest is msgget/semget: look a key up, or create an object.
type GetRequest struct {
	Kind  shm.Kind
	Key   int32
	Flags int // IPC_CREAT, IPC_EXCL and the low 9 bits (mode)
	// Count is semget's nsems: on lookup it must not exceed the existing
	// set's (0 means "any"); on creation it must be ≥ 1.
	Count int
	// Layout is the segment layout the kind needs if the object is created:
	// Count, Capacity, MaxMsg, Waiters, BodySize. The registry fills Kind,
	// Namespace, Key, CUID and CGID.
	Layout shm.Params
	// Param is the kind's initial mutable parameter (msg: qbytes).
	Param uint64
}

// Object is what the registry knows of one object.
type Object struct {
	ID    int
	Kind  shm.Kind
	Perm  Perm
	Ctime int64
	Count int    // sem: nsems
	Param uint64 // msg: qbytes
}
