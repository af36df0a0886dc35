// Package fuzz holds usysv's fuzz targets. Each feeds arbitrary bytes to a
// validator of shared memory or of the wire protocol, or drives a structure
// against a simple model or against the kernel, and fails only on a panic,
// a hang or a broken invariant: hostile input must come back as an error.
//
// Seed corpora live in testdata/fuzz/<Target>/, so `go test ./fuzz`
// replays them (in about a second); `make fuzz` runs every target in turn,
// each for a count of inputs (the Makefile's FUZZCOUNTS, about 30 s each
// here; FUZZTIME=60s or FUZZTIME=5000x for every target instead). A
// count sets no deadline, so Go 1.26's fuzz coordinator cannot fail a
// target that found nothing as the time runs out (golang/go#75804). One
// target:
//
//	go test -run '^$' -fuzz '^FuzzSemDiff$' -fuzztime 10000x ./fuzz
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
//     compared call by call (times and ids excepted), and FuzzSemDiff
//     compares the set's whole state with the kernel's after every step
//     that changed it; the model is checked against the kernel too. On
//     objects made by key (the program's first
//     bytes choose), calls are also left blocked in goroutines — semop
//     arrays, msgrcv receivers — so that wake-up order, counts, hand-over
//     and EIDRM are compared; steps marked "as nobody" run in a helper
//     process without privileges (permission checks).
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
// FuzzSemDiff and FuzzMsgDiff call only the contract functions (sem.Op,
// msgq.Send, ...: ids, not handles) and compare each result with the
// kernel's, times and ids excepted; the model is checked against the
// kernel too. A program runs on a pooled object (IPC_PRIVATE, mode 0600,
// reset between programs) or on a fresh one made by key with one of 8
// modes. A step may run "as nobody": in a helper process (testutil.AsNobody,
// uid/gid 65534, no capabilities), on the same kernel and usysv objects,
// after IPC_SET gave nobody ownership or group or other bits, or not.
//
//	call            what is generated                                     checked
//	sem.Get         own key / other key / IPC_PRIVATE; nsems 0, n, n±1,   ENOENT EEXIST EINVAL EACCES,
//	                -1, SEMMSL+1; IPC_CREAT, IPC_EXCL, both, none;         "same set" / "new set"
//	                8 modes; IPC_NOWAIT (ignored)
//	sem.Op          0-5 ops, SEMOPM, SEMOPM+1; sem_op -4..4 (0: wait for  E2BIG EINVAL EFBIG ERANGE
//	                zero) and ±SEMVMX, -32768, ±30000...; sem_num valid,   EAGAIN EACCES EIDRM; values,
//	                nsems.., 65535; several ops on one semaphore;          sempids, GETNCNT/GETZCNT,
//	                IPC_NOWAIT, SEM_UNDO (semadj overflow: ERANGE),        otime set; waiters' results
//	                ignored bits; arrays left blocked in goroutines (up    and wake-up order
//	                to 8; sem.Op or TimedOp 6 s), woken by later steps or
//	                ended by IPC_RMID
//	sem.TimedOp     timeouts 0, 1µs, 200µs (expiry: EAGAIN); 6 s for       as sem.Op
//	                blocked waiters; negative (model only)
//	GetVal GetPid   semnum valid, nsems, -1, 65535; while waiters block    EINVAL EACCES, values
//	GetNcnt GetZcnt
//	SetVal          0-5, -1, SEMVMX, SEMVMX+1, 65535, 65536, ±2^31; bad    ERANGE before EINVAL, EACCES,
//	                semnum                                                 waking waiters
//	GetAll SetAll   values ≤ SEMVMX and above; wrong lengths               ERANGE EINVAL EACCES
//	sem.Stat        every program ends with it                             perm, nsems, otime set
//	sem.Set         uid/gid 0, 65534, 1000, -1; mode any 16 bits           EINVAL EPERM (non-owner)
//	sem.Remove      on the live set, again, then every call on the stale   EINVAL EPERM, EIDRM to
//	                id; id -1 for every call                               waiters
//
//	msgq.Get        as sem.Get without nsems                               ENOENT EEXIST EACCES
//	msgq.Send       mtype 1-6, 0, -1, 2^32, 2^62, MaxInt64, MinInt64;      EINVAL EAGAIN EACCES,
//	                sizes 0-23, 24, 96-97 (a ring slot), 104-256 (blocks), lspid, stime, qnum, cbytes,
//	                1000, 4096, MSGMAX-1..+1, 16384; IPC_NOWAIT, none      hand-over to a blocked
//	                (when it fits), MSG_NOERROR|MSG_EXCEPT|MSG_COPY        receiver (pipelined_send)
//	                (ignored); full queue (bytes and count vs qbytes)
//	msgq.Recv       msgtyp -7..7, ±2^32, ±2^40, ±100, MaxInt64, -MaxInt64, n, type, text, lrpid, rtime;
//	                MinInt64; buffers 0-16384; IPC_NOWAIT, MSG_NOERROR,    E2BIG (message stays),
//	                MSG_EXCEPT, MSG_COPY, ignored bit; receivers left      ENOMSG EINVAL EACCES EIDRM,
//	                blocked (up to 8) for later sends or IPC_RMID          MSG_COPY index/EINVAL rules
//	msgq.Stat       after every program (and as a step)                   perm, qnum, cbytes, qbytes,
//	                                                                      lspid, lrpid, times set
//	msgq.Set        uid/gid 0, 65534, 1000, -1; mode; qbytes 0..16385,    EPERM above MSGMNB (root
//	                ≥ 2^32 (low 32 bits)                                   here has no CAP_SYS_RESOURCE,
//	                                                                      nobody never), EPERM
//	                                                                      non-owner, EINVAL uid -1
//	msgq.Remove     as sem.Remove                                          EINVAL EPERM, EIDRM
//
// Not covered, and why:
//
//   - Senders left blocked on a full queue: Linux wakes every blocked
//     sender to retry (ss_wakeup) after the call that made room has
//     returned, so which sender gets in, and the state after that step,
//     depend on scheduling. A send that would sleep gets IPC_NOWAIT.
//   - IPC_SET while receivers are blocked (Linux makes them search again,
//     reordering them: FINDINGS.md), a negative semtimedop timeout (no
//     kernel answer: model only), qbytes
//     above MSGMNB on a host where root has CAP_SYS_RESOURCE (usysv's
//     documented capacity).
//   - Nobody's steps never carry SEM_UNDO (its adjustments would be applied
//     when the helper exits, after the comparison) and never block: blocked
//     waiters and receivers are this process's own.
//   - A signal interrupting a call (EINTR): the Go runtime owns signals;
//     the handle's context cancellation, which stands for it, is covered by
//     FuzzSemModel and FuzzMsgModel.
//   - A second process's SEM_UNDO at its exit, and crashes: the chaos
//     tests (internal/chaos) cover those.
//
// # Hygiene
//
// Every object is removed, also when an execution fails: kernel objects
// with testutil.Track, usysv objects in t.Cleanup, pooled ones (one set per
// size and one queue per process, reset before each program) by each
// target's f.Cleanup. Every call is bounded (callTimeout) and every
// execution too (iterationLimit, under the fuzzing engine's own 10 s), with
// goroutine stacks written under /tmp/fuzz-findings/; a fuzz worker that
// dies leaves its crash report in /tmp/fuzz-findings/workers/, and a panic
// that the corruption targets recover is written at once to
// /tmp/fuzz-findings/panic-*.txt (the engine drops the report of an
// execution that fails while it minimizes an input).
package fuzz
