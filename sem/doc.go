// Package sem is System V semaphore sets in user space: semget, semop,
// semtimedop and semctl with Linux's semantics, errno for errno, where an
// operation that need not sleep never enters the kernel.
//
// # API
//
// The contract API (DESIGN.md §4) takes ids, as the C calls do: Get, Op,
// TimedOp, GetVal, SetVal, GetAll, SetAll, GetPid, GetNcnt, GetZcnt, Stat,
// Set (IPC_SET) and Remove. They are thin wrappers over handles: Open /
// OpenID return a *Array (a semaphore array, as ipcs calls it: DESIGN.md
// names the handle *sem.Set, which Go cannot have beside the contract
// function Set) whose methods are the same calls, plus Op(ctx, ...)
// cancellable by a context (the error then matches both ctx.Err() and
// kernel.EINTR, what a signal gives a C caller: the Go runtime owns
// signals, so EINTR never happens otherwise), TryOp, Close (unmap) and
// Remove (IPC_RMID). Limits are constants: SEMMSL, SEMOPM, SEMVMX,
// UndoRecords; and see below.
//
// # Objects and lifetime
//
// A set is created by Get/Open with IPC_CREAT (or IPC_PRIVATE) through the
// registry, which checks permissions on kernel-attested credentials; it
// lives in one kernel SysV shared-memory segment and its id is that
// segment's shmid. It outlives the processes that use it until Remove.
// Opening a set (by key or id) first connects this process to the registry
// (registry.Default), which then watches it: when the process dies, its
// SEM_UNDO adjustments are applied and whatever it left half done is
// repaired. Handles of the package-level functions are cached per id and
// dropped once their set is found removed (by Remove here, or by a call
// that finds it gone): detached at once, or when the last call in flight
// on it ends, their addresses left readable as zeros for a minute
// (shm.Segment.Retire).
//
// # How an operation runs
//
// Each semaphore is a 64-bit word holding its value and sempid (layout.go).
// Every call first checks the handle's gate: one word caching that the
// handle is open, that every death the registry reported has been repaired
// here, and the read/alter decision for the set's current permissions;
// it is compared with two words of the segment header and the set's state
// (fast.go). Then:
//
//   - A single op without SEM_UNDO on a word that no transaction or waiter
//     holds is one CAS that sets value and sempid together (plus, once a
//     second, a store of sem_otime): about 13 ns here, of which the CAS
//     is 11. (On a word a SEM_UNDO op left its completed intent on, one
//     load more, of that op's semadj parity; the CAS keeps the intent.)
//   - A single SEM_UNDO op, once the process has an undo record, is a
//     CAS claiming the process's semadj word of that semaphore (one
//     goroutine of a process at a time: this keeps goroutines that mix
//     SEM_UNDO and plain ops from an ABA on the word), the word's CAS with
//     an intent naming the record, then a plain store of the semadj that
//     completes the op and releases the claim; a process killed between
//     the CAS and the store leaves an intent that whoever next needs the
//     word completes. The completed intent stays on the word until the
//     next SEM_UNDO op replaces it or a lock holder freezes the word, and
//     whoever takes it off decides on a word that cannot change under the
//     decision (the lock holder's frozen word; the op's own record under
//     its claim; another record's, checked again once the op's own intent
//     guards the word): whether an intent is complete is one parity bit,
//     and a look at it followed by a CAS could take off a later, identical
//     intent still in flight (op.go: fastUndo; txn.go: freeze).
//   - A short array (up to 8 ops) without SEM_UNDO whose semaphores no
//     waiter names runs lean: the segment lock taken with one CAS, each
//     word frozen with one CAS as the array is evaluated, the journal and
//     the new words written with plain stores, the lock released. That is
//     2 + k locked instructions for k semaphores: a design must claim
//     each word against concurrent lock-free ops (k), and these two order
//     transactions. A three-op array costs 5 (~45 ns here; ~70 ns in all).
//   - A single post (op > 0, no SEM_UNDO) on a semaphore that waiters name
//     goes from the gate straight to the lock, and when those waiters are
//     all single ops without SEM_UNDO (and no array waits anywhere)
//     completes them itself (op.go: post): one scan of the waiter table,
//     the word frozen, the post stored in it (one word: its own commit
//     point), the decrements that can now proceed completed in queue
//     order, then, at 0, the zero waiters, each as a journaled transaction
//     of the general format, the word released and the completed woken.
//     This is what wakes a sleeping partner, so it is kept short.
//   - Everything else (arrays with SEM_UNDO, operations that must block or
//     wake a waiter, SETVAL, SETALL, GETALL, GETNCNT/GETZCNT) runs under
//     the segment's robust lock as a journaled transaction (txn.go): the
//     words it touches are frozen, the array is evaluated as the kernel's
//     perform_atomic_semop does, committed, applied, and then the wait
//     queues are scanned as the kernel's do_smart_update does (queue.go),
//     the waker applying each waiter's whole array (including its SEM_UNDO
//     bookkeeping) and handing it its result.
//
// Words that only the lock holder may write at that moment (the journal,
// frozen words, waiter-slot fields) are written with plain stores on amd64
// (layout.go: putWord); the locked instructions left are the claims and
// the releases that others race with.
//
// # Guarantees, across goroutines and processes
//
//   - An op array is applied atomically, in array order; IPC_NOWAIT is
//     honoured per op; a blocked array is applied, whole, by the process
//     that makes it possible, and its caller returns without racing.
//   - Queued waiters are looked at exactly when Linux's queues look at
//     them (queue.go): after a change, the ones it can let proceed are
//     completed in Linux's order (FIFO on each list, one that can proceed
//     never held behind one that cannot), and one whose array now fails
//     (an IPC_NOWAIT op that would block: EAGAIN; ERANGE) fails when
//     Linux fails it; GETNCNT and GETZCNT count each waiter on the op it
//     blocked on when Linux last looked at it.
//   - A process killed at any instruction inside an operation leaves the
//     set as if the operation were applied whole or not at all (a test
//     hook, CrashEnv, kills a process at named steps to check this), and
//     blocks nobody: its lock is taken over, its waiter slot dropped, its
//     SEM_UNDO adjustments applied (clamped to [0, SEMVMX], sempid = the
//     dead process), by the registry at once or by the next operation that
//     could observe them.
//   - As on Linux, where the exit itself drops a process's queued semops
//     and applies its undo, a death is final before anyone can see it (a
//     reaped child, a pidfd): the kernel marks the process's waiter slots
//     and undo record as it exits (shm.Life, a robust futex list), wakers
//     pass its waiters by and GETNCNT/GETZCNT do not count them, and every
//     call that finds a marked undo record applies it first (settle; the
//     fast paths: one load while no record has a holder). Exceptions, in
//     which the undo comes later (with the registry's report; for a held
//     lock, when its holder unlocks), as if the death came a moment
//     later: the lock held at that moment by another process that is
//     stopped (SIGSTOP; found so within 10 ms), or running but for more
//     than a second (a call waits for a running holder to unlock, which
//     repairs, as Linux's calls wait for its lock; an Op keeps to its
//     context and TimedOp to its timeout meanwhile: they end as on
//     expiry, nothing done); a record whose holder took it through a
//     handle since closed; more than 2048 Lives held by one process at
//     once, its blocked calls and undo records on
//     all sets and queues (the kernel's walk stops there, newest first);
//     a process that exec'd (below). A marked process found alive and
//     exiting (its memory still being torn down, say:
//     kernel.ProcessExiting) is looked at again by every call until it
//     is gone, as Linux applies the undo at the end of the exit; until
//     then every call on the set takes the slow path and reads /proc
//     (for tens of ms after a kill of a process with GBs of memory:
//     calls of ~15 µs instead of tens of ns; longer if its exit is
//     stuck).
//     One found alive and not exiting, at two looks 20 ms apart (a
//     killed process can look so for a moment: txn.go, sawAlive), exec'd
//     (execve keeps semadj, and the new image takes its record back, and
//     any op its old image left in flight, if it uses the set); until the
//     second look every call looks again. After it, it is looked at again
//     once the registry reports a death (any process's) or the second
//     ends, so that its own death comes with the registry's report (within
//     a second if no registry watches it).
//   - A panic inside an operation while it holds the set's lock (a set
//     corrupted beyond what the code handles) is handled as a death at
//     that point: the set is repaired at once, the caller's queued waiter
//     dropped, sleepers woken, and the panic goes on to the caller, who
//     may recover it; nobody waits on the lock of a live process. A panic
//     while the caller waits queued gives its waiter slot up the same way.
//     (A panic on a lock-free path is not caught: those are a few stores
//     on checked indexes.)
//   - A stopped (SIGSTOP) lock holder is never taken over: the calls that
//     need the lock wait. An Op waits for the lock no longer than its
//     context, or TimedOp's timeout, allows, and then ends as a blocked Op
//     ends, with nothing applied (Linux never stops a process inside
//     semop's lock). So does an Op already queued: it leaves its place in
//     line without the lock (queue.go: leaving the queue), unless that
//     holder had claimed it to complete it: then it waits for the holder,
//     and its ops are applied. TryOp and the control calls wait for the
//     holder. The others go on, also after a death: while a live
//     process holds the lock, the repair of a death is left to the holder
//     (before it unlocks) or to the next call that finds the lock free
//     (txn.go: tryRepair).
//   - Permissions (read for GET* and all-zero arrays, alter otherwise) are
//     checked on every call against the set's current mode, with this
//     process's credentials as they were when it first used usysv.
//
// # Blocking
//
// An op that would block spins for a while before it queues, and a queued
// waiter spins for a while before it sleeps in FUTEX_WAIT on its slot
// (spin.go): tight re-checks for up to 3 µs, several times an active
// partner's answer and a fraction of a sleep and wake-up. Spinning is
// adaptive per handle: a spin that ends with the op done earns credit, one
// that ends in a sleep anyway loses it, and a handle without credit sleeps
// at once but for probes (streaks of 8 blocking calls, at a random point
// of a period that doubles while probes fail, spin up to 20 µs: spinning
// pays only when both partners spin, so the two sides' probes must meet).
// A spinner whose peer began its spin on the same CPU yields that CPU
// between looks (sched_yield), unless a recent yield was slow (a busy
// machine: shm.CoLocation). So waiters spin while the partner runs, on
// another CPU or, yielding to it, on theirs, and stop when it waits for a
// CPU, instead of burning the CPU it needs. A sleeping waiter costs what the kernel's semop
// sleep does: one FUTEX_WAIT, and for the waker one FUTEX_WAKE after its
// locked path, which it makes only if the waiter said it may be asleep. A
// blocked waiter uses no CPU. Each goroutine blocked in Op holds an OS
// thread while it sleeps. A waker that dies after releasing the lock and
// before its FUTEX_WAKE leaves a completed waiter asleep until the
// registry's repair of that death; the next call that queues itself on the
// set first wakes every completed waiter that may be asleep (rewakeDone),
// which matters when the dead waker was the registry's host.
//
// # Limits and memory
//
// A set has up to SEMMSL (32000) semaphores. Its segment holds 8 bytes of
// state and 8 of journal per semaphore, 4 bytes of semadj per semaphore
// for each of UndoRecords (32) processes that may hold SEM_UNDO
// adjustments at once, and a table of waiter slots: 128 bytes each,
// 2 × nsems of them but at least 64 and at most 1024, sharing an arena of
// SEMOPM + 4 × slots sembufs for their op arrays (so an array of SEMOPM
// ops can block while the other blocked arrays hold 4 ops each on
// average). About 8 KiB, plus 144 bytes per semaphore (its word, shadow
// and journal entry, and its semadj word in each undo record), plus 160
// per waiter slot (the slot and its share of the arena): a one-semaphore
// set takes 18.3 KiB, a 100-semaphore set 54 KiB, a 32000-semaphore set
// 4.6 MiB (its kernel segment a little more, up to the next size with
// shm.SizeMark: no page more unless those bytes fill whole pages). More
// blocked operations than slots
// (or arena) give ErrNoWaiterSlot, more concurrent SEM_UNDO processes
// ErrNoUndoRecord; both match ENOSPC.
// sempid holds 22 bits (Linux pids are below 2^22).
//
// # Differences from Linux
//
//   - A SEM_UNDO op that fails with EFBIG or EACCES gives its process an
//     undo record for the set, as Linux's find_alloc_undo does (its exit
//     then sets otime and looks at the waiters again), except for a
//     process that cannot map the set at all (no right to it): it has no
//     record, and its exit changes nothing.
//   - ENOSPC for the limits above where Linux would allocate.
//   - SetAll requires exactly one value per semaphore (EINVAL otherwise);
//     TimedOp with a negative timeout is EINVAL, as an invalid timespec.
//   - sem_otime is one set-wide time (what IPC_STAT reports on Linux).
//   - A blocked Op keeps its place in line while its process is stopped or
//     its thread handles a signal; Linux's semop fails with EINTR after
//     either (signal(7)), and a caller that tries again joins the tail.
//     (The kernel baseline here retries such EINTRs: kernel.Semop.)
//
// # What a process that can map the segment can still do
//
// The kernel's segment permissions decide who can map a set at all; the
// library enforces read/alter on top. A process that maps the segment
// read-write (any class the set grants read or write) can, by writing the
// memory directly, change any semaphore value, pretend to be another
// process in sempid or in the waiter table, or corrupt the journal. Other
// processes' calls then return wrong values or errors (ErrCorrupt), but
// never read or write outside the segment. A forged in-flight SEM_UNDO
// intent is dropped by the first transaction that needs its word: at once
// when no goroutine of the named process holds the semadj claim, else
// after a second (txn.go: settleIntent).
package sem
