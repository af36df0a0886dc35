// Package fuzz holds usysv's fuzz targets. Each feeds arbitrary bytes to a
// validator of shared memory or of the wire protocol, or drives a structure
// against a simple model or against the kernel, and fails only on a panic,
// a hang or a broken invariant: hostile input must come back as an error.
//
// Seed corpora live in testdata/fuzz/<Target>/, so `go test ./fuzz`
// replays them (in about a second); `make fuzz` runs every target in turn
// (FUZZTIME, default 30s). One target:
//
//	go test -run '^$' -fuzz '^FuzzSemDiff$' -fuzztime 60s ./fuzz
//
// The seeds of the program-driven targets are written as programs in
// seeds_test.go; TestSeeds checks that the files match (regenerate with
// USYSV_WRITE_SEEDS=1 go test -run TestSeeds ./fuzz). To see a corpus
// entry run step by step: USYSV_FUZZ_TRACE=1 go test -v -run
// 'FuzzSemDiff/<name>' ./fuzz. What the targets found in other packages,
// and how the targets steer around it until it is fixed, is in
// FINDINGS.md.
//
// # Targets
//
//   - FuzzSegmentHeader: arbitrary bytes as a segment header (shm.FromBytes).
//   - FuzzSemModel, FuzzMsgModel: a program decoded from the input (see
//     decodeSemStep, decodeMsgStep) runs on a usysv set or queue through its
//     handle (*sem.Array, *msgq.Queue) and on an in-memory model of Linux's
//     semantics (semModel, msgModel); every result, errno, value, pid and
//     counter must match, and after every step that can change the object
//     its whole state is compared (values, sempids, counts, IPC_STAT; the
//     queue's messages read with MSG_COPY, and Queue.Check). Calls that
//     would sleep are issued with a context that expires after 200µs
//     (EINTR, nothing applied).
//   - FuzzSemDiff, FuzzMsgDiff: the same programs through the contract
//     functions and through the kernel's own SysV IPC (package kernel),
//     compared call by call (times and ids excepted); the model is checked
//     against the kernel too. On objects made by key (the program's first
//     bytes choose), calls are also left blocked in goroutines — semop
//     arrays, msgrcv receivers — so that wake-up order, counts, hand-over
//     and EIDRM are compared.
//   - FuzzCorruptSem, FuzzCorruptMsg: fuzz bytes written into a live set's
//     or queue's waiter table, body and mutable header words (mapped with
//     shm.Map) while goroutines run non-blocking or short-timeout operations
//     on it: no panic, no memory fault, no call longer than callTimeout,
//     only errnos or ErrCorrupt, lengths within the caller's buffers, and
//     IPC_RMID still works.
//   - FuzzRegistryWire: raw bytes, or frames built from the input, to a live
//     registry.Server on a raw connection, while an ordinary client on
//     another connection must be served; responses must answer requests in
//     order.
//
// # How the differential targets cover the contract API (DESIGN.md §4)
//
// Semaphores (FuzzSemDiff; pooled sets go through the contract functions,
// sets made by key through a *sem.Array because of FINDINGS.md F1, except
// their IPC_RMID now and then and every call after it):
//
//   - sem.Get: the set's own key, another key, IPC_PRIVATE; nsems 0, n,
//     n-1, n+1, -1, SEMMSL+1; flags IPC_CREAT, IPC_EXCL, both, none, mode
//     bits, and IPC_NOWAIT (ignored). ENOENT, EEXIST, EINVAL, "the same
//     set", "a new set".
//   - sem.Op: arrays of 0-5 ops, SEMOPM and SEMOPM+1 (E2BIG), empty
//     (EINVAL); sem_op in -4..4 and edge values (±SEMVMX, -32768, ±30000…);
//     sem_num valid, just past nsems and 65535 (EFBIG); sem_flg IPC_NOWAIT,
//     SEM_UNDO (semadj overflow: ERANGE) and bits semop ignores; an op that
//     would sleep without IPC_NOWAIT becomes semtimedop with a zero timeout.
//     "Try" steps are Op with IPC_NOWAIT on every op.
//   - sem.TimedOp: timeouts 0, 1µs, 200µs; 6 s for blocked waiters.
//   - sem.GetVal, GetPid, GetNcnt, GetZcnt: semnum valid, nsems, -1,
//     65535; counts non-zero while waiters are blocked.
//   - sem.SetVal: values 0-5 and -1, SEMVMX, SEMVMX+1, 65535, 65536,
//     ±2^31 (ERANGE before EINVAL); bad semnum.
//   - sem.GetAll, sem.SetAll (values ≤ SEMVMX and above: ERANGE; wrong
//     lengths against the model only).
//   - sem.Stat (perm, nsems, whether otime is set), sem.Set (uid, gid
//     0, 65534, 1000, -1; mode any 16 bits), sem.Remove (and every call
//     after it: EINVAL); id -1 for every call.
//
// Message queues (FuzzMsgDiff; all through the contract functions):
//
//   - msgq.Get: as sem.Get, without nsems.
//   - msgq.Send: mtype 1-6, 0, -1, 2^32, 2^62, MaxInt64, MinInt64; sizes 0-23
//     and around usysv's 128-byte blocks and 24-byte message header, 1000,
//     4096, MSGMAX-1, MSGMAX, MSGMAX+1 (EINVAL), 16384; IPC_NOWAIT, no flag
//     (when it fits), and MSG_NOERROR|MSG_EXCEPT|MSG_COPY (ignored); EAGAIN
//     on a full queue (bytes and message count both capped by qbytes).
//   - msgq.Recv: msgtyp -7..7, ±2^32, ±2^40, ±100, MaxInt64, -MaxInt64,
//     MinInt64; buffers from 0 to 16384 (E2BIG, the message stays);
//     IPC_NOWAIT, MSG_NOERROR, MSG_EXCEPT, MSG_COPY (index, EINVAL without
//     IPC_NOWAIT or with MSG_EXCEPT, ENOMSG past the end, EINVAL with
//     MSG_NOERROR and a short buffer), an ignored bit; a receive that would
//     sleep gets IPC_NOWAIT (ENOMSG), or, on a queue made by key, is left
//     blocked for a later send (hand-over, E2BIG) or the removal (EIDRM).
//   - msgq.Stat (perm, cbytes, qnum, qbytes, lspid, lrpid, whether stime and
//     rtime are set), msgq.Set (uid, gid, mode, qbytes 0…16385 and ≥ 2^32:
//     EPERM above MSGMNB, before EINVAL for uid/gid -1), msgq.Remove; id -1
//     for every call.
//
// # Hygiene
//
// Every object is removed, also when an execution fails: kernel objects
// with testutil.Track, usysv objects in t.Cleanup, pooled ones (one set per
// size and one queue per process, reset before each program) by each
// target's f.Cleanup. Every call is bounded (callTimeout) and every
// execution too (iterationLimit, under the fuzzing engine's own 10 s), with
// goroutine stacks written under /tmp/fuzz-findings/; a fuzz worker that
// dies leaves its crash report in /tmp/fuzz-findings/workers/.
package fuzz
