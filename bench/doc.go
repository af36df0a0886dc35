// Package bench measures usysv against the kernel's own System V IPC, side
// by side, in the same run.
//
// One suite of cases runs against several implementations through common
// interfaces (SemImpl, MsgImpl), in the manner of hashicorp/raft's bench
// package:
//
//   - usysv: this module's sem and msgq packages;
//   - kernel: the kernel's semop/msgsnd/msgrcv, through package kernel;
//   - unix: a unix SOCK_SEQPACKET socket pair, for the message cases where
//     it tells the reader something (no message types);
//   - pipe: a pair of pipes carrying fixed-size messages, likewise.
//
// There are two ways in. `usysv bench` (and `make bench`) calls Run and
// prints a table (Report.WriteTable) or JSON; `go test -bench . ./bench`
// runs the same cases as benchmarks named CASE/impl=NAME, with the custom
// metrics p50-ns, p99-ns, msgs/s, cpu-us/s and, on usysv, x-kernel (the speed-up over
// the kernel sub-benchmark just before it), in the format benchstat reads.
//
// # Cases
//
//	sem/uncontended       P then V (two semops) on one semaphore, one process
//	sem/undo              the same with SEM_UNDO on both
//	sem/multi3            P then V on three semaphores, three operations per semop
//	sem/pingpong          round trip between two processes on two semaphores:
//	                      back to back, so the waiter is still active (usysv may
//	                      catch the post while spinning; the kernel always sleeps)
//	sem/pingpong-pinned   the same with the two processes pinned to CPUs 0 and 1,
//	                      so both are active at once and never share a CPU; the
//	                      kernel's waiter still sleeps, and on a virtual machine
//	                      waking it means waking its idle vCPU (tens of µs here)
//	sem/pingpong-asleep   the same, but each side pauses 200 µs before it posts, so
//	                      its partner sleeps in the kernel; the pauses are taken
//	                      off the round trips (each side measures its own)
//	sem/idle-waiter       a process blocked in a P on a semaphore at 0, then
//	                      posted: the CPU time that process used per second
//	                      while the call slept (its process CPU clock, read by
//	                      the driver from 200 ms after the call began, for
//	                      0.8 s a round, 0.15 s with -quick; the helper does
//	                      nothing meanwhile, not even look at a clock). Both
//	                      implementations sleep in the kernel and make no
//	                      system call while blocked: 0 µs/s on both sides
//	                      here, and the speed-up column says "same"
//	msg/sendrecv          send 64 B then receive it, one process
//	msg/stream            1 producer process → 1 consumer process, 64 B, msgs/s
//	msg/stream-batch      the same, usysv sending and receiving 32 messages per call
//	                      (SendBatch, RecvBatch); the kernel has no such call and
//	                      runs one by one, so this row is what batching buys
//	msg/stream-2p2c       2 producer processes → 2 consumer processes, 64 B, msgs/s
//	msg/typed             send, then receive by type from a queue holding 4
//	                      messages of each of 8 interleaved types (the wanted
//	                      type is mid-queue)
//	msg/stream-8k         1 → 1 processes, 8 KiB messages, msgs/s
//	msg/pingpong          64 B round trip between two processes (types 1 and 2 on
//	                      one queue; the socket's two ends; two pipes)
//	msg/pingpong-pinned   the same, usysv and kernel only, pinned as above
//	msg/idle-receiver     sem/idle-waiter for a receiver on an empty queue, sent
//	                      one 64 B message at the end
//	registry/get          look up an existing key: usysv's registry Get against
//	                      msgget(key, 0), after warm-up calls: usysv answers from
//	                      the client's get cache (a key looked up twice with the
//	                      same flags; registry/getcache.go). The first two
//	                      lookups are round trips to the registry (usysv bench
//	                      runs a private one embedded in its own process unless
//	                      -socket names a running usysvd), paid once per key and
//	                      process, not per operation
//
// Both SysV implementations get the same queue capacity: QueueBytes (the
// kernel's default 16 KiB for 64-byte messages, 64 KiB for 8 KiB ones), or
// the kernel's msgmnb (16 KiB here) for both where this process may not
// raise a kernel queue above it (that needs CAP_SYS_RESOURCE, which even
// root may lack: it does on the development machine, so the 8 KiB row
// there holds 2 messages on each side). Pipes and sockets keep the
// kernel's default buffer sizes.
//
// # Method
//
// Numbers from spinning waiters depend on free CPUs: on a machine busy
// with other work (see "loadavg" in the report), a waiter that spins can
// hold the CPU its partner needs, and the active ping-pong rows suffer
// first. Run on an otherwise idle machine for numbers to quote.
//
// Every process of a cross-process case is a helper: the benchmark's own
// binary re-executed (Spawner, HelperMain), so usysv and the kernel run in
// identical processes; the driver only creates and removes the objects and
// starts and times the streams. Each case is first run once briefly on each
// implementation to calibrate, then Rounds times on each, the order of
// implementations rotating from round to round so that neither always
// runs first on a noisy machine. A run warms up (untimed operations)
// before it times anything.
//
// Latency samples are taken per operation for round trips and registry
// gets. For in-process operations that take tens of nanoseconds, one
// sample is the mean of a group of consecutive operations sized so that a
// group lasts about a microsecond (ops_per_sample in the report), less the
// measured cost of reading the clock; p99 is then the 99th percentile of
// those groups, which smooths single outliers. Samples of all rounds are
// pooled. Throughput is messages over the time from telling the producers
// to go until the last consumer has its share.
//
// The table marks a speed-up with ~ when the rounds disagree on it by more
// than a factor of 1.5 (Steady): the machine was too busy for that row.
//
// Speed-up is kernel p50 / usysv p50 for latency, usysv rate / kernel
// rate for streams and kernel CPU / usysv CPU for blocked processes: above
// 1 usysv is faster (or, blocked, cheaper); three significant digits;
// null when either used no CPU measurable at all (the table shows "same"
// when both used none, "∞" when only usysv did, "worse" when only the
// kernel did). It compares numbers from the
// same run, never stored ones.
//
// Every object a run creates is removed before Run returns, also after an
// error or when its context ends; Cleanup removes whatever is left (a
// command calls it from its interrupt handler). Helpers are killed with
// their driver (PR_SET_PDEATHSIG).
//
// # JSON report (schema usysv-bench/v1)
//
// `usysv bench -json` writes one JSON object, described exactly by the JSON
// Schema in schema.json (the variable Schema; Validate checks a report
// against it, and that each speed-up matches its numbers):
//
//	"schema"    "usysv-bench/v1"
//	"mode"      "quick" or "full"
//	"started"   start time, UTC, RFC 3339 to the second ("2026-01-02T03:04:05Z")
//	"seconds"   wall time of the whole run
//	"host"      the machine and settings:
//	    "os", "arch", "cpus", "cpu" (model name), "kernel" (release), "go"
//	    "registry"   the usysv registry socket used, or "default"
//	    "budget"     timed duration per case and implementation ("2.5s")
//	    "rounds"     timed runs per case and implementation
//	    "available"  implementations compiled in, comma-separated
//	    "loadavg"    the 1-minute load average when the run started
//	"results"   one object per case, in table order:
//	    "case"     id, "group/name", as listed above
//	    "title"    the table's row label
//	    "kind"     "latency", "throughput" or "idle"
//	    "unit"     "ns" (latency), "msgs/s" (throughput) or "us/s" (idle)
//	    "speedup"  usysv against the kernel (see Method), or null if either
//	               has no number
//	    "impls"    by implementation name ("usysv", "kernel", "unix", "pipe"),
//	               only those the case ran on; each either
//	        latency:     "p50_ns", "p99_ns", "samples", "ops_per_sample",
//	                     "per_round" (p50 of each round's samples),
//	                     "ops" (operations timed), "seconds" (their time)
//	        throughput:  "msgs_per_s", "per_round" (msgs/s of each round),
//	                     "ops" (messages), "seconds"
//	        idle:        "cpu_us_per_s" (CPU µs the blocked process used per
//	                     second blocked), "per_round" (the same, per round),
//	                     "ops" (milliseconds blocked), "seconds"
//	        or failed:   "error" (text), with "ops" and "seconds" 0
//
// No other fields appear. A later incompatible change gets a new schema id.
package bench
