// Package registry is usysv's trusted third party: it maps SysV keys to
// objects, creates objects with IPC_CREAT/IPC_EXCL atomicity, decides
// IPC_STAT, IPC_SET and IPC_RMID on kernel-attested credentials, and
// notices when client processes die so that the kinds can clean up after
// them. It is the only slow path; semop, msgsnd and msgrcv never reach it.
// It is kind-agnostic: it knows the common segment header (package shm),
// not what a semaphore set or a queue keeps in its body.
//
// # Objects
//
// Every object is one kernel SysV shared-memory segment, created by the
// registry (shm.CreateWith) with the layout the kind asked for; the object's
// id is the segment's kernel shmid, so any process can map an object by id
// (shm.Map) without asking the registry. Objects outlive the processes that
// made them, and the registry too: they are removed only by IPC_RMID
// (Client.Remove), which marks the header removed (waiters wake and return
// EIDRM, later calls get EINVAL), removes the kernel segment (it lives on
// until the last process unmaps it) and frees the key.
//
// The registry's table is a cache of the kernel's segment list: a registry
// that starts, restarts or takes over rebuilds it from kernel.ShmList and
// the segment headers, which carry kind, key, creator, permissions and the
// registry namespace (shm.Namespace of the socket path, so two registries,
// say two test binaries, never adopt each other's objects). A registry
// killed with SIGKILL loses nothing, and leaks nothing:
//
//   - A creation is shmget, then attach and header, then the table and
//     the answer. Until the header is written nothing in the segment says
//     it is usysv's, so the host keeps a journal next to the socket
//     (<socket>.journal.*, one small file per host, removed when it stops
//     cleanly) saying which creation it is in the middle of: the size and
//     time before shmget, the id as soon as shmget returns, "done" once
//     the object is complete and in the table, before the answer is sent.
//     The next registry undoes a creation its dead host left unfinished:
//     it removes the segment, header or not (nobody was told the id; a
//     client's creating Get saw ErrConnLost or is retried). A finished
//     creation whose answer was lost is kept, as the kernel keeps an
//     object whose creator was killed on its way out of semget. Without
//     the journal (a host killed inside shmget had not written the id; a
//     journal can be lost with its directory) it is undone all the same
//     once the host's pid is free: a segment without a header yet, by any
//     later rebuild (its size carries shm.SizeMark, and the kernel's list
//     shows it IPC_PRIVATE, mode shm.CreateMode, of the registry's uid);
//     one with, by the namespace's next rebuild (the header says
//     shm.StateCreating until the host publishes the object, just before
//     the answer) (journal.go).
//   - The journal names the segment by id, and the registry removes it
//     only if the kernel's own record agrees (IPC_PRIVATE, created by the
//     journal's host pid and uid, of its size, between the journal's
//     intent and its last write) and the journal is of this boot and IPC
//     namespace (a socket directory may outlive both). A segment without
//     a header is found by the kernel's facts alone, and removed only if,
//     besides, it holds only zeros (nobody wrote to it) and no process has
//     its creator's pid now. Another program's segment would be taken for
//     one only if that program ran as the registry's user, made it
//     IPC_PRIVATE, mode 0600, of one of the 1 in 4096 sizes with the mark,
//     never wrote to it, and exited. Nothing else is ever removed: other
//     programs' segments, other namespaces' and other users' are left
//     alone, and a journal is read only if it is a regular file of the
//     registry's own uid, not writable by others (it is as trusted as the
//     socket directory, which clients trust already).
//   - An IPC_RMID whose host was killed after marking the header removed
//     but before removing the kernel segment is finished by the next
//     registry's rebuild.
//
// A creating Get whose client dies before reading the answer (after the
// registry has checked that it is still connected) still creates the
// object, as semget does for a process killed on its way out of the
// system call: an IPC_PRIVATE object made so belongs to nobody and stays
// until someone removes it (ipcs lists it).
//
// # Finding and starting the registry
//
// Clients connect to $USYSV_SOCKET, else $XDG_RUNTIME_DIR/usysv/registry.sock,
// else /run/usysv/registry.sock for root, else <tmp>/usysv-<uid>/registry.sock
// (SocketPath). Default is the process-wide client. When nothing answers, it
// hosts a registry in the calling process (goroutines; nothing is started
// from init and nothing keeps the process alive) after taking an exclusive
// flock on <socket>.lock, which serialises would-be hosts across processes
// and is released by the kernel when the host dies. Every client's
// connection then breaks; each reconnects at once, and the first to get the
// lock hosts the next registry. Requests in flight are retried when that is
// safe (everything but a creating Get with IPC_EXCL or IPC_PRIVATE, which
// gives ErrConnLost; a retried Remove that finds the object gone counts as
// done). cmd/usysvd runs the same Server standalone.
//
// The socket and its lock file are names in a directory, and a name can
// be removed under a running host. With the socket gone, clients that
// connect later find nobody; with the lock file gone too, the first of them
// hosts a second registry for the same namespace, and the two tables drift
// apart. A host holds a shared flock on the socket's directory, which
// keeps systemd-tmpfiles' age-based cleaning out of it (lockDir), and
// watches the directory (inotify, guard.go): when its socket, its lock
// file or its journal goes (rm, a rename), it puts them back at once,
// locked as before. When the directory itself goes (rm -rf, a rename, an
// unmount), it steps down (Serve returns ErrDisplaced). The clients then
// make the per-user default directory again at once, and host; a
// $USYSV_SOCKET directory is the user's, and no client that had a
// connection makes it again: until it is back, or a new process connects
// for the first time (which makes it), nobody serves that namespace. A second registry that
// got the lock first is left to serve: the first steps down (it answers
// the requests in hand but begins no creation, then its clients reconnect
// to the second)
// and asks the second to adopt what it made, changed or removed meanwhile
// (Client.Adopt). Until then, the second takes in such an object at the
// first call on it by id (stat, set, remove: a rebuild), but a get by key
// does not find it. A key that both registries made in that overlap is
// kept by neither, as after any take-over that finds a key claimed twice;
// both objects live on by id. A host killed inside a creation while its
// directory is being removed loses its creation journal with it; the
// creation is undone all the same (above). A
// rename of a directory above the socket's is not seen; a host that cannot
// get an inotify instance runs unguarded (logged).
//
// A host that is stopped (SIGSTOP, Ctrl-Z, a debugger) still holds the
// lock, so nobody can take over. A client sees it in /proc (the serving
// pid comes from SO_PEERCRED) and, once it has been stopped for a second,
// gives up: the call fails with ErrHostStopped (matching ETIMEDOUT) and the
// connection is closed. The registry drops a changing request (a Get that
// may create, IPC_SET, IPC_RMID) whose client has closed its connection,
// so a call that gave up is not applied when the host is continued; and a
// creation whose host was stopped while making it, after that check, is
// undone once the host goes on and finds its client gone (nobody has the
// id: TestHostStoppedInCreate). Two windows remain, each a few
// microseconds: a creation stopped between that last look at its client
// and its answer is kept (an IPC_PRIVATE one then belongs to nobody), and
// an IPC_SET or IPC_RMID stopped in the middle of its change is applied
// when the host goes on, though its caller was told ErrHostStopped.
//
// # Wire protocol and identity
//
// Length-prefixed, versioned binary frames over a unix stream socket (see
// wire.go): at most 64 KiB, one response per request, matched by tag. The
// caller's identity is never in a frame: pid, euid and egid come from
// SO_PEERCRED, supplementary groups and capabilities (CAP_IPC_OWNER,
// CAP_SYS_ADMIN, CAP_SYS_RESOURCE) from /proc/<pid>/status, read once when
// the connection is made. A process that changes its credentials keeps, for
// that connection, the ones it had when it connected (as with a file
// descriptor opened before setuid). A malformed frame (bad length, version,
// op or payload size) closes that connection only. Each connection has its
// own goroutine, and no lock is held while reading or writing, so a client
// that sends half a frame, stops reading its responses or floods requests
// delays nobody else; it loses its connection after a timeout. One uid may
// hold at most 1024 connections.
//
// # Semantics
//
// Get, Stat, Set and Remove follow Linux (SEMANTICS A1, A2 and the get/ctl
// parts of A3, A4, A7, A8), errno for errno and in Linux's order:
// IPC_PRIVATE always creates; semget's nsems < 0 or > SEMMSL is EINVAL
// before the lookup; then ENOENT, EEXIST, the size check (nsems above the
// set's: EINVAL), then EACCES with the requested mode merged from the low 9
// flag bits (no bits: always granted); creation gives EINVAL for nsems 0 and
// ENOSPC at SEMMNS, SEMMNI or MSGMNI (Limits, Linux's defaults). The
// permission class is chosen exclusively (owner if euid is uid or cuid;
// group if egid or a supplementary group is gid or cgid; else other), and
// CAP_IPC_OWNER bypasses it (Permitted). IPC_SET and IPC_RMID need euid ==
// uid or cuid, or CAP_SYS_ADMIN (IsOwner), else EPERM; IPC_SET copies uid,
// gid and mode&0777 and sets ctime; uid or gid (uint32)-1 is EINVAL. A
// queue's qbytes above MSGMNB needs CAP_SYS_RESOURCE (EPERM; root lacks it
// in some sandboxes); qbytes above the capacity the queue's segment was
// laid out with is EINVAL (a usysv limit: Linux has no such bound); 0 is
// allowed. Stat needs read permission (EACCES). Negative, unknown, removed
// and wrong-kind ids are EINVAL. List, like /proc/sysvipc, needs no
// permission. After IPC_SET the registry wakes every waiter of the object,
// so that blocked operations re-check what changed.
//
// # What the kernel enforces and what the library enforces
//
// The kernel enforces who may map a segment at all. The registry gives each
// segment the object's uid and gid and a derived mode: a class gets
// read-write on the segment if the object grants it read or write, else
// nothing. A process with no right to an object therefore cannot attach
// its segment (root, with CAP_IPC_OWNER, always can). The mode is coarser
// than the object's (read alone gives read-write on the segment, because
// even a read-only operation such as a wait-for-zero registers as a waiter),
// and the classes can differ in two cases, because the kernel knows one uid
// and one gid per segment and counts the registry as the segment's creator:
// a process that is the object's creator (cuid) but no longer its owner, or
// that is in the object's creator group (cgid) but not in its group, falls
// into the segment's group or other class. The kernel may then refuse a
// mapping the object allows (that process gets EACCES from the kind), or
// allow one the object refuses (the library still refuses its operations).
// The registry's own uid, as the segments' creator, is in every segment's
// owner class: so that its processes get the access the object grants them
// as group or other, that class also gets read-write when the object
// grants the segment's creator read or write (which may let the object's
// owner map a segment whose owner bits the object leaves empty; it could
// give itself them by IPC_SET).
//
// The library enforces the finer rules: the registry decides get, stat,
// set and remove; the kinds check read versus alter on every operation with
// Permitted and their process's credentials (Self), re-checked when the
// header's permission sequence changes.
//
// A process that can map a segment can write anything to it: it can change
// values and messages it was only allowed to read, corrupt the body or
// the waiter table (other processes then get shm.ErrCorrupt, never a crash
// or an access outside the segment), hold the segment's lock while
// stopped, or rewrite the header's mutable words (state, dead generation,
// qbytes, ctime, and the copy of the permissions that the kinds' fast paths
// read), which other processes' libraries believe. The registry keeps its
// own copy of every object's permissions, decides on it, and writes it back
// over a tampered header after every client death. It cannot change the
// kernel segment's own permissions or the running registry's table. It can
// rewrite the immutable header too (kind, key, namespace, creator, sizes:
// the checksum catches accidents, it is no seal), which matters when a
// registry takes over and rebuilds its table from the headers (Server):
//   - the owner comes from the kernel segment, and the mode only as far as
//     the kernel segment's mode grants each class: a tampered header makes
//     no one the owner and gives no class access the object did not give
//     it, but within a class that has some, read can become read-write;
//   - a key claimed by two objects is given to neither: a forger cannot
//     take over another object's key (it can squat a key nobody holds, as
//     anyone can with SysV keys). One window is open: rebuild drops the key
//     from the older header first, so a registry killed between the two
//     drops (two stores) leaves the key to the newer object, which a
//     forger can always be (its IPC_SET moves its ctime on). Found by a
//     review with a debugger; not closed (it needs a record of the
//     disputed key that outlives the rebuild);
//   - a header marked removed is taken as a removal the previous host did
//     not finish: the mapper destroys the object, as it could by
//     corrupting it.
//
// In short: the kernel keeps out everyone with no right to an object;
// among those who may use it, the SysV read/alter distinction holds for
// cooperating programs only, as with any shared memory.
//
// # Deaths
//
// The registry opens a pidfd for every client process when it first
// connects, paired with its start time, and watches it (epoll) until the
// process exits, connected or not. When one dies it bumps every segment's
// dead generation and wakes every waiter and lock sleeper (each kind
// repairs lazily on its next operation: drops the dead process's waiter
// slots, applies its SEM_UNDO, finishes or undoes half-done operations), and
// then runs the repair hooks registered in its own process
// (RegisterRepair) for an eager repair. A starting or taking-over registry
// does the same once, since processes may have died while none ran. When
// a client's connection ends while its process lives on (it exec'd: the
// connection is close-on-exec), the registry runs the same pass, at most
// once per 100 ms (connEnded, execLoop): the exec ended what the old
// image was doing, and its waiter slots, which that exec marked dead
// (shm.Life), are freed.
//
// # Multi-user hosts
//
// Run usysvd as root (cmd/usysvd/usysvd.service) and point every user at it
// with USYSV_SOCKET. An embedded registry is trusted by every client that
// connects to it: its host's uid creates every segment and so may attach
// them all. A registry that cannot map a segment (an unprivileged host
// taking over objects of other users) cannot adopt it: those objects are
// then unknown to that registry (a get of their key finds nothing, and
// IPC_STAT, IPC_SET and IPC_RMID by id are EINVAL), though calls that map
// them by id go on; see README, Limits.
package registry
