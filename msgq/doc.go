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
//	n, err = q.RecvBatch(ctx, msgs, 0, 0) // many messages in one call
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
// Other differences from Linux: lspid and lrpid are process ids. Linux
// records the receiving thread's id as lrpid when msgsnd hands a message
// straight to a sleeping receiver (pipelined_send), and the process id
// otherwise; usysv records the process id in both cases.
//
// Sleeping receivers keep their place in line, which on Linux they can
// lose (a review's differential tests, run on both):
//   - A receiver whose process is stopped (SIGSTOP, Ctrl-Z, a debugger),
//     or whose thread handles any signal (the Go runtime's own SIGURG
//     preemption included), stays in line, and a matching message is
//     handed to it, to take once it runs again. On Linux the stop or the
//     signal takes the task off the receivers' list and msgrcv is
//     restarted at its tail, so the next receiver gets the message.
//   - After an IPC_SET, Linux's receivers all wake, re-check their
//     permission and go back to sleep in whatever order they ran, so which
//     receiver gets which message later varies; usysv's keep their order,
//     one of the orders Linux can give.
//   - A receiver killed just as a message is handed to it: Linux loses
//     the message with it; usysv puts it back at its place in send order
//     (crash safety, below), so another receiver can see it after a later
//     one, which a FIFO reader never sees on Linux.
//
// # Layout (details in layout.go)
//
// One kernel segment per queue: the common header (package shm), a table
// of waiter slots, then the body: a control block, the ring (a lock-free
// FIFO lane of 128-byte slots, one per 32 bytes of capacity, 16 to 65536
// of them) and the store (a link array and a block array). An all-zero
// body is a valid empty queue.
//
// The store holds messages as chains of 128-byte blocks, each a 24-byte
// header (type, length, next message, sequence number) and the text, in a
// singly linked list from head; free blocks form one chain. It is sized so
// that it always holds what Linux would accept: qnum ≤ qbytes messages
// with cbytes ≤ qbytes bytes in all, in any mix, whatever order they are
// received in (a typed receive takes from the middle; a message nobody
// receives never blocks the rest), plus one message per waiter slot handed
// to a sleeping receiver.
//
// # The two lanes
//
// The ring carries messages of up to 96 bytes between senders and FIFO
// receivers without the lock. It is open only while the store is empty,
// no receiver sleeps, and no locked operation is halfway through closing
// it; then the whole queue is the ring. A call that needs the store — a
// message too big for a slot, a full ring (more small messages queued
// than slots), a receive by type of a message behind the first, msgtyp <
// 0, MSG_COPY, a receiver that must sleep (so that sends are handed to
// sleepers in their order, as Linux's pipelined send does), a sender with
// no free waiter slot — takes the segment lock, closes the ring (a bit in
// its head and tail words, which every lock-free call checks in the word
// it uses anyway) and moves the ring's messages into the store, in order,
// as one batch. From then on everything goes through the lock, as in a
// plain locked queue, until a locked call finds the store empty and nobody
// waiting and opens the ring again (unless that call moved a message too
// big for the ring, or the last message sent through the lock was one: the
// next one is likely too, and closing and opening for each would cost four
// CAS; and after an open during which no receive
// went through the ring before it closed again, as in rounds of sends and
// typed receives, it waits that many locked calls more: 2, 4, ... up to
// 64 for such opens in a row). So every message in the store is older
// than every message in the ring, and FIFO order, hand-over order, E2BIG to
// sleepers and typed selection are exactly the locked store's.
//
// A ring slot (two cache lines) holds a state word, the type, the length
// and up to 96 bytes of text. A send claims the slot at the tail position
// with a CAS on its word that records its process image (shm.Identity),
// writes the message into it, and commits with a CAS on the tail word
// (position and byte count; it fails if the ring closed, and the sender
// then gives the slot back and takes the lock path). After its commit it
// warms the slot four positions ahead: a plain store into a word of each
// of its lines that nobody reads, so that the claim of that slot does not
// wait for its lines to come back from the receiver's CPU one after the
// other. The commit is the send's linearization point, so every position
// before the tail holds a whole message. A receive copies
// the head's message speculatively and takes it with one CAS on the head
// word, which fails if another receiver took it first or the ring closed.
// A slot behind the head is free for the next lap as it is.
//
// Accounting is Linux's test on counters each side owns: qnum is
// tail.position − head.position and cbytes tail.bytes − head.bytes (plus
// the store's counts, which are zero while the ring is open). A sender
// reads the receivers' head word only when the copy it saw last says the
// queue is full; a receiver reads the senders' tail word only when the
// copy it saw last and the pub hint (a word of its own line where each
// sender stores the tail's position after its commit, without a CAS) both
// say the ring is empty, and it spins on the hint, not the tail, while the
// ring is empty: so the tail's line stays with the senders. lspid, stime,
// lrpid and rtime are stored only when they change, with plain stores (a
// locked store would wait for the call's earlier stores to reach the other
// CPUs). Stat reads the head twice around the tail, so qnum and cbytes are
// a pair that held at one instant.
//
// # Concurrency and cost
//
// Through the ring (the common case: 64-byte messages, FIFO receive, nobody
// asleep), a send is two CAS (claim, commit), a copy into the slot and two
// plain stores that warm a slot ahead; a receive is one CAS (the head) and
// a copy out; neither takes a lock or makes a syscall, and each touches,
// besides the slots, only its own side's cache line (the other side's only
// when the queue looks full or empty).
// A receive by type whose type the first message has is the same; one
// whose first message does not match reads the ring (ENOMSG without the
// lock if nothing in it matches). A batch send takes each message the
// same way; a batch receive copies every message committed behind the head
// and takes them all with one CAS.
//
// Through the lock, every change happens under the segment's robust lock
// (shm.Mutex) in a short critical section: one CAS to take it, one swap to
// release it, a copy, a few loads and stores; closing the ring costs two
// CAS plus one copy per message it held, opening it two CAS. FIFO receive
// and send are O(1); a typed receive walks the store from the head to its
// match, O(messages ahead of it) ≤ O(qnum), and msgtyp < 0 walks the whole
// store unless a type-1 message comes first. Batch calls take the lock
// once. A message of 2 KiB or more (bigCopy) is copied with the lock
// released, as Linux copies outside its lock: a send takes the lock to
// allocate its blocks and again to link them, a receive to unlink the
// message and again to free them, and in between the blocks belong to a
// waiter slot of the process (freed by repair if it dies), so that a
// sender's copy and a receiver's overlap. (Messages handed to a sleeping
// receiver are still copied out under the lock.)
//
// A call that cannot proceed watches the word that will change (the tail
// for a receiver, the head for a sender; under the lock, a generation word
// and the ring's words) for up to 20 µs, then sleeps in a waiter slot on
// its futex word. The value it watches is the one from before its last look
// (taken under the lock, or before the ring call that failed), so a change
// in between ends the watch at once. One in 16 of the watches that saw
// nothing in their first 128 looks makes one getcpu(2) (a real system call,
// so not at the start of every watch: most end sooner; the others take the
// handle's last answer) and a swap of a shared word that records which
// process last did so on which CPU: if that was another process on this
// very CPU (peers handing messages back and forth are often put on one CPU
// by the scheduler, and neither ever sleeps), the watch yields the CPU
// (sched_yield) every 128 looks, since the answer can only come after a
// yield; otherwise it only looks for 5 µs and yields after that. A yield
// that kept the caller off its CPU for 200 µs or more (other threads want
// it: the scheduler then keeps a yielder away for milliseconds) turns the
// handle's yields off for its next 64 (doubling while they stay slow), as
// for package sem (shm.CoLocation). The watch
// adapts per handle. After four in a row saw nothing (the peer is idle, or
// not running), a call watches only 2 µs, enough for a round trip to a peer
// running on another CPU, and only one call in n does (n doubles, up to 64,
// while these short watches see nothing, and is 1 again when one does); one
// call in 64 watches the full 20 µs. Right after the handle woke a sleeping
// peer, a call sleeps at once (the peer answers only after its wake-up, and
// on a busy machine a sleeper woken gets a CPU sooner than a spinner): one
// in n (16, doubling up to 4096 while they see nothing) watches 40 µs, long
// enough to see a woken peer answer, so that two peers that both sleep find
// out when they can both spin again; once one such watch saw the answer,
// every call after a wake-up watches (n is 1) until one sees nothing, since
// on an idle machine the two would otherwise keep waking each other.
//
// A receiver that keeps up with a stream finds the ring empty after almost
// every message, and each message is then handed over alone: the
// receiver's looks pull the hint's and the slot's lines to its CPU while
// the sender writes them. After two watches in a row that saw the next
// message within their first 128 looks, a handle's receivers look only
// every 4 µs (stream mode), so that the sender fills slots undisturbed and
// the receives that follow find a run of messages. A look that finds fewer
// than 4 (a peer that answers, as in ping-pong), or a watch that sees
// nothing, ends stream mode; 4 µs is what it adds to a message's latency,
// at most. A handle that sends between its receives answers what it
// receives: its receives never enter stream mode, and their watches pause
// (shm.Pause) before each look, which made a ping-pong's round trip 9%
// shorter in alternating runs. A 1P→1C stream of single sends went from
// 4.4–4.8× the kernel to 5–8× in the same runs with stream mode.
//
// Wakers look at waiter counts in shared memory and issue FUTEX_WAKE only
// when someone sleeps. A sender that waits for room sleeps with the ring
// open: receivers through the ring check one word on their own cache line
// (sendWake) after each take and take the lock to wake it when it is set.
// A receiver that must sleep closes the ring; a message sent while
// receivers sleep is offered to them in the order they went to sleep, as
// Linux's pipelined send does: the first whose type criteria match takes
// it (directly, it never counts in qnum), or fails with E2BIG if it is too
// big for that receiver's buffer. A receive that frees room wakes every
// sleeping sender whose message now fits. When more callers block than
// there are waiter slots (Config.Waiters, default 64) the rest sleep on
// one shared word, are woken by every change while they wait, and
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
// The store's committed state is the list from head and the messages held
// in waiter slots; tail, counters and the free list are derived and
// rebuilt when needed. A send to the store commits with one store
// (linking the message); a receive with one store (unlinking it). In the
// ring, a send commits with its CAS on the tail, a receive with its CAS on
// the head; a claim that a sender did not commit names the sender. Moving
// the ring into the store writes an intent record, links the batch (the
// commit point) and then moves the ring's head. So:
//
//   - a sender killed mid-send leaves the whole message or nothing: a
//     claim it left at the ring's tail is given back (by repair, or by a
//     sender or lock holder that finds its claimer dead), and other
//     senders wait for it until then;
//   - a receiver killed mid-receive loses at most the message it was
//     taking, and only if it died after its commit; through the ring it
//     leaves nothing else behind;
//   - a receiver that dies asleep is passed by from the moment it dies, as
//     Linux drops it in the exit, before anyone can see the death (a reaped
//     child, a pidfd): the kernel marks its waiter slot as it exits
//     (shm.Life), and senders do not hand messages to a marked slot;
//   - a receiver that dies after a message was handed to it but before it
//     took it loses nothing: the message goes back into the queue at its
//     place in send order (receivers may by then have taken later
//     messages, so they see it late);
//   - a lock holder that dies while moving the ring into the store leaves
//     either the ring as it was or the batch in the store (its record says
//     which); the next lock holder finishes;
//   - no block, slot or ring position stays stranded.
//
// Bound: a lock holder that dies is taken over by the next process that
// wants the lock, at once if the registry noticed the death (it wakes
// lock sleepers) and otherwise within shm.LivenessInterval (100 ms); the
// taker rebuilds everything derived before it goes on. A sender's claim at
// the ring's tail is given back when the registry's repair or the next
// locked operation runs, or by a sender waiting behind it, which checks
// its claimer's liveness after 1 ms (without the lock). Dead waiters are
// cleared by the registry's eager repair (RegisterRepair), run as soon as
// it sees the death, and by the next operation of every process that
// notices the registry's death generation changed; a lock-free call that
// finds the lock held leaves that repair to a later call instead of
// waiting (the ring needs none), so a stopped lock holder does not stop
// the ring's calls after a death. A wake-up a dead receiver owed a sender
// (it freed room, then died before its FUTEX_WAKE, which comes after the
// lock is released) is made by that repair too, and, before it, by the
// next call that would sleep on the queue: it first wakes every sleeping
// sender whose message fits (rewakeSenders), which matters when the dead
// receiver was also the registry's host. A sender that is alive but stopped
// (SIGSTOP) between its claim and its commit holds up nobody for long: the
// senders behind it wait 2 ms, then take the lock path, which closes the
// ring and goes on without it (its claim, not committed, sent nothing; it
// gives the slot back when it runs again and finds the ring closed). A
// stopped lock holder holds up the calls that need the lock; a Send or
// Recv that holds no waiter slot yet waits for it no longer than its
// context allows, and then ends as a blocked call ends, having done
// nothing (one that sleeps in a slot, which a message may have been
// handed to, gives the slot up under the lock, so it waits for the
// holder even then, as do the non-blocking calls and the control calls).
//
// The segment is hostile input: every index and length read from it is
// checked; a bad one gives ErrCorrupt, never a panic or an access outside
// the segment. (*Queue).Check walks every invariant of the store and the
// ring. Should a panic come all the same while a call holds the lock, it
// is handled as the caller's death at that point: the queue is repaired at
// once, the waiter slots the call held given up, sleepers woken, and the
// panic goes on to the caller, who may recover it; nobody waits on the
// lock of a live process. A panic while the caller sleeps in a waiter slot
// gives the slot up the same way. (A panic on the ring is not caught:
// those are a few stores on checked indexes.)
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
// returns and never retained; a receive that fails may have written into
// its buffer.
package msgq
