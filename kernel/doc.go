// Package kernel is the one place where usysv talks to the Linux kernel.
//
// It is the only package in the module that imports golang.org/x/sys/unix or
// syscall (TestImportBoundary fails otherwise). It holds no
// policy: one thin function per kernel operation, named after the C call,
// returning the kernel's errno as a syscall.Errno (re-exported here as
// Errno and the E* constants so that no other package needs syscall).
//
// What lives here:
//
//   - SysV shared memory: Shmget, Shmat, Shmdt, ShmctlStat, ShmctlSet,
//     ShmctlRemove, ShmList (the kernel's list of segments, used by the
//     registry to rebuild its table), ShmMemory and Resident (which of a
//     segment's pages exist: the registry's look at an orphan).
//   - Futexes on shared memory (never FUTEX_PRIVATE_FLAG): FutexWait with an
//     absolute deadline, FutexWake.
//   - Process liveness that survives pid reuse: PidfdOpen, ProcessStartTime,
//     ProcessAlive, and an epoll set for watching pidfds.
//   - Credentials: the caller's own (SelfCreds), a unix-socket peer's (PeerCred),
//     and another process's groups and capabilities. Unread: the bytes
//     waiting on a socket (tests use it to see a request arrive).
//   - Unix sockets (sock.go): waits for a connection or for bytes that block
//     in poll(2), not in the Go runtime's network poller, with poll's timeout
//     instead of net's deadlines (AcceptBlocking, ShutdownListener,
//     ReadBlocking, ReadBlockingUntil, WriteBlockingUntil), and PeerHungUp.
//   - The kernel's own SysV semaphores and message queues (Semget, Semop,
//     Semtimedop, Semctl*, Msgget, Msgsnd, Msgrcv, Msgctl*) with the same Go
//     types as the usysv contract API: the baseline that benchmarks and
//     differential tests compare usysv against.
//
// Blocking calls (FutexWait, Semop, Msgsnd, Msgrcv) park the calling OS
// thread in the kernel. The Go runtime interrupts threads with SIGURG for
// preemption; those EINTRs are retried here with the remaining time
// recomputed, because a Go program cannot tell them from a "caught signal".
package kernel
