// Package chaos is usysv's fault-injection suite: real processes using
// message queues, semaphore sets and the registry are SIGKILLed, killed at
// labelled steps inside their calls, and SIGSTOPped, and everything they
// were promised is checked afterwards. It has no API; it is all tests.
//
//	go test ./internal/chaos                      # the short run (part of make test)
//	make chaos DURATION=60s                       # the long run, with a report
//	go test ./internal/chaos -run Chaos -v -args -chaos.duration=60s
//
// # Set-up
//
// Every test runs its own registry (a socket in a fresh directory, so a
// namespace of its own), hosted by a helper process: embedded (a client
// that hosts it, as any usysv process may) or standalone (registry.NewServer
// and Serve in a process of its own, which is what cmd/usysvd runs, the
// kinds' repair hooks linked in). Every other actor is a helper process too
// (the test binary re-executed, testutil.RegisterHelper); the test process
// only starts, stops, kills and inspects them — it maps the objects'
// segments to see who holds the lock and the waiter slots — and is no
// client of the registries it tests. Objects are removed and the namespace
// checked for leftovers at the end of each test, and so is the kernel's
// segment list for segments made by the test's processes that are not live
// objects of the namespace (a registry host killed inside a creation or a
// removal must not leak its segment: FINDINGS.md F6).
//
// The message-queue workers record what they did in a ledger (ledger_test.go):
// a plain SysV shared-memory segment where a producer stores, right after
// each send returned, how many it has sent, and a consumer appends each
// message it received, right after the call returned. A store cannot be
// half done by SIGKILL, and unlike lines on a pipe it never makes a worker
// wait for the test to read (on two cores that would stall the queue and
// be measured as its stall). Payloads carry producer, sequence, type,
// length and an xxhash checksum (payload_test.go), so a torn message is
// seen. The ledger also has a progress bitmap (one bit per millisecond in
// which some worker completed a call): the longest run of empty
// milliseconds is the "max stall" of the report, not counting the moments
// the test itself held a victim stopped to look at it before killing it.
//
// The report (printed by TestChaos; make chaos) counts, per scenario and
// in total: kills (SIGKILLs by the test at random moments, deaths at a
// crash-hook step, kills of registry hosts), recoveries (deaths that left
// something for others to repair: the segment lock held, a waiter slot
// held, a SEM_UNDO token held, any crash-hook death — they are all inside
// a call — and every registry host), messages sent and received,
// semaphore operations, and the maximum stall, with a snapshot of the
// processes during the longest stall caught live (watch_test.go: sampled
// by the test process, so it runs until the first look after the
// snapshot and can be longer than the ledger's; the moments the test held
// a victim stopped do not count in either).
//
// # The scenarios (TestChaos; -chaos.duration shares out the long run)
//
//   - msgq: producers (single sends, batches) and consumers (FIFO, by
//     type, lowest type, MSG_EXCEPT, batches) on one small queue (full
//     most of the time, fewer waiter slots than sleepers). Random workers
//     are stopped, inspected (lock? waiter slot?), SIGKILLed and restarted;
//     a quarter of the incarnations carry a crash hook at a random step
//     and count. Checked at the end, after a drain: no message received
//     twice or torn; every message a producer saw sent was received, or
//     drained, or went with a dying consumer (at most one call's worth per
//     consumer death); at most one call's worth of messages received that
//     a dying producer did not see sent, and none from producers stopped
//     cleanly; per-producer order for every consumer, except messages
//     handed to a consumer that died before taking them (requeued in send
//     order: at most one per death of a consumer in a waiter slot); the
//     queue's own invariants (Queue.Check).
//   - sem: SEM_UNDO holders (arrays, with and without plain ops in them;
//     single ops on the lock-free path), token movers (atomic arrays), a
//     wait-for-zero and a GETALL checker on one set, killed and restarted
//     the same way, with crash hooks in a quarter of them. The checker
//     verifies while it runs, under GETALL's consistent view, that the
//     movers' token sum and the holders' L+Z never change; at the end,
//     once every worker has exited, every undo must have been applied
//     exactly once (L, Z, M back to their initial values) and no waiter
//     left behind.
//   - registry: the registry's host is SIGKILLed again and again while a
//     msgq load, a sem load and two Get/Stat/Remove loops run: a
//     standalone daemon first, then whichever client took over; and in a
//     second cluster an embedded host. Measured: the first successful Get,
//     Stat and Remove after each SIGKILL (a load's process is stopped
//     before it is killed; its registry calls wait meanwhile, and that is
//     not counted), and the longest fast-path stall
//     around it; checked: the loads' guarantees, every registry call
//     working again, nothing leaked (a creating Get lost in flight is
//     looked up by key). Every other cycle, before the kill, the socket's
//     directory is removed (as rm -rf, again until it is gone: the host
//     may put a file back in between); its host must step down and nobody
//     make it again (checked 20 ms later). Made again by the test, a new
//     connection must be served by a registry that knows every object of
//     the loads. Measured: how soon, and the fast-path stall around it.
//   - stop: a worker is SIGSTOPped holding the segment lock, asleep in a
//     waiter slot, or holding a SEM_UNDO token, and kept stopped while
//     another client dies (the registry's death pass and the kinds'
//     repairs run). Its lock is not taken over, its slot not freed, its
//     undo not applied; the others go on where they do not need it; after
//     SIGCONT it completes and the loads' end checks hold.
//   - unblock: TestDeathToUnblock's measurements, repeated.
//
// Outside TestChaos: the deterministic kill-at-step tests (below),
// TestDeathToUnblock, TestStopped (a stopped receiver keeps the message
// handed to it, a stopped SEM_UNDO holder its token, while the registry
// repairs after another death), tests that the checks themselves fail on
// broken data (TestMsgqVerifyCatches, TestSemChecks,
// TestSemCheckerCatches), and the reproductions of FINDINGS.md, which run
// only with USYSV_CHAOS_FINDINGS=1 (they fail while a finding stands).
//
// # Every crash hook step and its deterministic tests
//
// msgq (msgq.KillAtEnv). msgq/crash_test.go and ring_test.go kill at
// each step with nobody waiting; here with others waiting and the
// registry watching (the same step names serve the store and the ring
// paths; which one a call takes depends on the queue's state):
//
//	send-locked    TestCrashSender; TestKillAtStepMsgq/send-locked (an unrelated
//	               receiver asleep, a lock contender); TestKillAtStepMsgqWakeups/
//	               hand-over/send-locked (a receiver of that type asleep: the
//	               hand-over path)
//	send-alloc     TestCrashSender; TestKillAtStepMsgq/send-alloc;
//	               TestKillAtStepMsgqWakeups/hand-over/send-alloc
//	send-written   TestCrashSender; TestKillAtStepMsgq/send-written
//	send-linked    TestCrashSender; TestKillAtStepMsgq/send-linked
//	recv-locked    TestCrashReceiver; TestKillAtStepMsgq/recv-locked;
//	               TestDeathToUnblock/msgq-lock (a typed receive);
//	               TestKillAtStepMsgqWakeups/sender-waits/recv-locked (a sender
//	               asleep on the full queue must go on waiting)
//	recv-copied    TestCrashReceiver; TestKillAtStepMsgq/recv-copied;
//	               TestKillAtStepMsgqWakeups/sender-waits/recv-copied
//	recv-unlinked  TestCrashReceiver; TestKillAtStepMsgq/recv-unlinked;
//	               TestKillAtStepMsgqWakeups/sender-waits/recv-unlinked (the
//	               repair must wake the sender)
//	recv-freed     TestCrashReceiver; TestKillAtStepMsgq/recv-freed;
//	               TestKillAtStepMsgqWakeups/sender-waits/recv-freed;
//	               TestDeathToUnblock/msgq-space
//	recv-handed    TestCrashSleepingReceiver; TestKillAtStepMsgqWakeups/
//	               second-receiver/recv-handed (the message reaches another
//	               receiver)
//	sleep          TestCrashSleepingReceiver; TestKillAtStepMsgqWakeups/
//	               second-receiver/sleep
//	ring-claimed   TestCrashRingSender (not here: with a receiver asleep and
//	ring-written   TestCrashRingSender  a lock contender, the calls never
//	ring-taken     TestCrashRingReceiver take the ring)
//	ring-flushed   TestCrashFlusher; TestKillAtStepMsgqFlush (a receiver and a
//	               lock contender come next)
//	unlocked       TestOwedWakeNextSleeper (a receive through the ring and a
//	               locked one that owed a sleeping sender its wake-up; the
//	               registry stopped, the next receiver to sleep wakes it)
//
// A test whose call never passes its step fails, saying so: it would
// prove nothing.
//
// sem (sem.CrashEnv). sem/crash_test.go kills at each step with no
// registry watching (recovery by lock take-over or explicit repair) and
// nobody waiting; here with the registry, a waiter and a lock contender:
//
//	undo-cas        TestCrashInsideOp; TestKillAtStepSemUndo/undo-cas
//	locked          TestCrashInsideOp; TestKillAtStepSem/locked
//	evaluated       TestCrashInsideOp; TestKillAtStepSem/evaluated;
//	                TestDeathToUnblock/sem-lock
//	committed       TestCrashInsideOp; TestKillAtStepSem/committed (the recovery
//	                must wake the waiter the dead op owed);
//	                TestKillAtStepSemUndo/undo-array/committed;
//	                TestDeathToUnblock/sem-committed, sem-committed+contender
//	applying        TestCrashInsideOp; TestKillAtStepSem/applying;
//	                TestKillAtStepSemUndo/undo-array/applying
//	enqueued        TestCrashInsideOp; TestKillAtStepSemUndo/queued/enqueued (a
//	                living waiter behind the dead one gets the post)
//	waiting         TestCrashInsideOp; TestKillAtStepSemUndo/queued/waiting
//	undo-committed  TestCrashInsideRepair (a client repairing);
//	                TestKillAtStepSemRepair (the registry host dies in its
//	                eager repair; a client takes the registry over)
//	unlocked        TestOwedSemWakeNextSleeper (a post that completed a
//	                sleeping waiter; the registry stopped, the next call to
//	                sleep on the set wakes it)
//	lean-locked, lean-frozen (:1, :2), lean-evaluated, lean-committed,
//	lean-releasing (:1, :2)
//	                TestCrashInsideOp; TestKillAtStepSemLean/* (a waiter on
//	                another semaphore, a lock contender after the death)
//
// Steps whose deterministic tests are in package sem only:
//
//	undo-read, freeze-look
//	                TestCrashInsideOp; TestUndoMixedGoroutines, TestFreezeIntentABA,
//	                TestForeignIntentABA (sem/intent_test.go)
//	post-frozen, post-applied, post-committed (:1, :2), post-completed (:1, :2)
//	                TestCrashInsidePost; TestPanicInsidePost
//	claimed (:1, :2)
//	                TestCrashInsidePost; TestPanicInsidePost; TestCrashWhileClaiming
//	                (the general path); TestClaimedWaiterWaitsForItsClaimer
//	                (stop: there)
//
// Every step is also armed at random, under load, by TestChaos/msgq and
// TestChaos/sem, and SIGKILL at any instruction by their stop-and-kill.
// sem's post path runs only on a set whose waiters are all single ops
// without SEM_UNDO (any other waiter sends a post to the general path), so
// TestChaos/sem runs a second load beside the first, on a set of its own:
// a poster, two blocking takers and a checker, whose incarnations arm
// locked and the post-* steps (a short run has a few deaths there; the
// checker fails the run on more posts than the poster makes, or on P stuck
// above 0 beside a blocked taker). The first load reaches undo-read and
// freeze-look rarely: freeze-look in about 0.3% of locked sections.
// The hooks' "exec:" mode (the process execs itself at the step) is tested
// in the packages: sem TestExecInsideOp, msgq TestExecInsideCall.
//
// # Death to unblock
//
// TestDeathToUnblock measures, for each way of waiting on a process that
// dies, the time from the death to the waiter going on, with the registry
// up and with it stopped (SIGSTOP of its host: no process is told of
// deaths, as when none runs): a waiter for the segment lock (the dead
// holder is found by the registry's pidfd notice, or by the waiter itself
// within shm.LivenessInterval), and a waiter whose wake-up the dead
// process owed (its SEM_UNDO, a committed array, space it freed): at once
// with the registry; without one, only when a registry runs again, or
// when a third process needs the lock and takes it over (or, for a
// SEM_UNDO, makes any call on the set: its exit marked its undo record,
// which that call applies). See FINDINGS.md
// and the README's Guarantees for the numbers.
package chaos
