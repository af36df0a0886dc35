// Package msgq is System V message queues in user space: msgget, msgsnd,
// msgrcv and msgctl with Linux's semantics, errno for errno, whose sends
// and receives move messages through shared memory without entering the
// kernel unless a caller must sleep or wake a sleeper.
//
// # Use
//
// The contract API (Get, Send, Recv, Stat, Set, Remove) takes ids and
// flags as the C calls do. The handle is the Go-shaped way and the fast
// one:
//
//	q, err := msgq.Open(key, msgq.IPC_CREAT|0o600)
//	err = q.Send(ctx, 1, []byte("job"))
//	n, typ, err := q.Recv(ctx, buf, 0, 0)
//	n, err = q.RecvBatch(ctx, msgs, 0, 0) // one lock for many messages
//	q.Close()                             // detach; q.Remove() destroys
//
// Queues are created and removed through the registry (package registry),
// which a process reaches, or hosts, on first use. They outlive the
// processes that use them, until Remove. The id of a queue is the kernel
// shmid of its segment: OpenID maps it directly. Every package-level
// function is a thin wrapper over a handle kept per id.
//
// Errors match the kernel's errnos with errors.Is (kernel.EINVAL, EACCES,
// EIDRM, E2BIG, ENOMSG, EAGAIN, ...): ErrFull is EAGAIN, ErrEmpty is
// ENOMSG. Go callers get no EINTR from signals; a blocking call whose
// context ends returns an error matching both ctx.Err() and kernel.EINTR.
// Each goroutine blocked in a call holds an OS thread while it sleeps.
//
// # Limits
//
// A queue made by Open or Get takes messages of up to MSGMAX (8192) bytes
// and has qbytes MSGMNB (16384), as Linux. OpenConfig makes queues with
// larger limits for the library's own use (Config): the store is sized
// for Config.Capacity, the largest qbytes the queue can ever have, so an
// IPC_SET of a larger qbytes fails with EINVAL where Linux would take it
// from a process with CAP_SYS_RESOURCE. The queue-full test is Linux's:
// a message fits iff cbytes+len ≤ qbytes and qnum+1 ≤ qbytes.
//
// # Layout (details in layout.go)
//
// One kernel segment per queue: the common header (package shm), a table
// of waiter slots, then the body: a control block, a link array and a
// block array. A message is a chain of 128-byte blocks holding a 24-byte
// header (type, length, next message, sequence number) followed by its
// text; the queue is a singly linked list of messages from head; free
// blocks form one chain. An all-zero body is a valid empty queue.
//
// The store is sized so that it always holds what Linux would accept:
// qnum ≤ qbytes messages with cbytes ≤ qbytes bytes in all, in any mix,
// whatever order they are received in (a typed receive takes from the
// middle; a message nobody receives never blocks the rest), plus one
// message per waiter slot handed to a sleeping receiver.
//
// # Concurrency and cost
//
// Every change of the queue happens under the segment's robust lock
// (shm.Mutex), in a short critical section. An uncontended send or
// receive is one CAS to take the lock and one atomic swap to release it,
// a copy of the text, and a handful of plain loads and stores: no
// syscall, no allocation. FIFO receive (msgtyp 0) and send are O(1); a
// typed receive walks the queue from the head to its match, O(messages
// ahead of it) ≤ O(qnum), and msgtyp < 0 walks the whole queue unless a
// type-1 message comes first. Batch calls take the lock once per batch.
//
// A call that cannot proceed spins for up to 20 µs watching a counter
// that the other side bumps only while someone spins (so two active
// processes playing ping-pong never sleep), then takes a waiter slot and
// sleeps on its futex word. Wakers look at waiter counts in shared memory
// and issue FUTEX_WAKE only when someone sleeps. A message sent while
// receivers sleep is offered to them in the order they went to sleep, as
// Linux's pipelined send does: the first whose type criteria match takes
// it (directly, it never counts in qnum), or fails with E2BIG if it is
// too big for that receiver's buffer. A receive that frees room wakes
// every sleeping sender whose message now fits. When more callers block
// than there are waiter slots (Config.Waiters, default 64) the rest sleep
// on one shared word, are woken by every change while they wait, and
// re-check for removal every shm.LivenessInterval: correct, but without
// FIFO hand-over, and the only place where anything polls.
//
// Permissions: the registry decides get, stat, set and remove on
// kernel-attested credentials; send and receive check write and read
// permission on the fast path against the queue's current mode (cached
// per handle until the registry changes it). A process that can map the
// segment (the kernel's own check: it has read or write on the queue) can
// of course write anything into it; the library never trusts what it
// reads there (below), but such a process can lose or forge messages.
//
// # Peers that die
//
// The only committed state is the list from head and the messages held in
// waiter slots; tail, counters and the free list are derived and rebuilt
// when needed. A send commits with one store (linking the message); a
// receive with one store (unlinking it). So:
//
//   - a sender killed mid-send leaves the whole message or nothing;
//   - a receiver killed mid-receive loses at most the message it was
//     taking, and only if it died after its commit store;
//   - a receiver that dies asleep, or after a message was handed to it but
//     before it took it, loses nothing: the message goes back into the
//     queue at its place in send order (receivers may by then have taken
//     later messages, so they see it late);
//   - no block or slot stays stranded.
//
// Bound: a lock holder that dies is taken over by the next process that
// wants the lock, at once if the registry noticed the death (it wakes
// lock sleepers) and otherwise within shm.LivenessInterval (100 ms); the
// taker rebuilds everything derived before it goes on. Dead waiters are
// cleared by the registry's eager repair (RegisterRepair), run as soon as
// it sees the death, and by the next operation of every process that
// notices the registry's death generation changed.
//
// The segment is hostile input: every index and length read from it is
// checked; a bad one gives ErrCorrupt, never a panic or an access outside
// the segment. (*Queue).Check walks every invariant.
//
// KillAtEnv is a test-only hook that makes a process SIGKILL itself at a
// named step inside Send or Recv.
//
// # Handles
//
// A *Queue is safe for concurrent use by goroutines. Close detaches it:
// calls blocked on it return ErrClosed before Close returns, later calls
// return ErrClosed; Close must not race with calls that are running and
// not blocked. Slices passed to Send and Recv are copied before the call
// returns and never retained.
package msgq
