// Package shm maps usysv's shared-memory segments safely, and offers the
// kernel's own SysV shared memory with Go types.
//
// # usysv segments
//
// Every semaphore set and message queue lives in one kernel SysV shm
// segment. Map validates its common header (magic, layout version, kind,
// sizes, registry namespace and an xxhash checksum of the immutable part)
// and returns a *Segment. All access to mapped memory goes through At and
// Slice, which check bounds, overflow, alignment and that the type holds no
// Go pointers, and Segment.Bytes (bytes, bounds-checked). The segment is hostile input: a corrupt or foreign segment
// gives ErrCorrupt, ErrVersionMismatch or ErrForeign (which matches
// kernel.EINVAL), never a panic or an access outside the mapping.
//
// The header carries, beside the immutable parameters, the words every kind
// shares: the object's state (being created, live or removed), its permissions (written by
// the registry under a seqlock), ctime, a generation bumped by the registry
// when a client process dies, and a robust Mutex that survives the death of
// its holder (and whose critical sections, numbered by Enter, let a kind
// tell its own section from another goroutine's when a panic cuts one
// short: Open, Abandon). After the header comes a table of WaiterSlots,
// one per blocked operation (a process may hold several); the registry can wake them all
// without knowing the kind. The kind-specific body follows.
//
// A Life, in a waiter slot or anywhere in a segment, says at once that the
// process holding it has died: the kernel marks it inside the exit (a
// robust futex list registered by one sentinel thread per process),
// before a wait or a pidfd can report the death, as Linux's own SysV IPC
// drops a dead process's waiters and applies its undo inside the exit.
//
// CoLocation is for the spinning waiters of packages sem and msgq: whether
// the process a waiter waits for began its spin on the same CPU (a word in
// the kind's body records which process last did, on which CPU), so that
// the waiter yields that CPU between looks; and a yield that backs off when
// yields turn out slow.
//
// # Kernel SysV shm
//
// Get, Attach, Detach, Stat, Set and Remove are shmget, shmat, shmdt and
// shmctl with Go types and the kernel's errnos. A slice from Attach is valid
// until Detach; using it afterwards faults. Segments outlive the processes
// that made them, until Remove and the last detach.
package shm
