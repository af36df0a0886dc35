package msgq

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/killat"
	"github.com/usysv/usysv/internal/testutil"
)

func init() { testutil.RegisterHelper("crasher", crasherHelper) }

// crasherHelper ID send|recv COUNT [SIZE]: sends m0..m(COUNT-1) (padded
// with dots to SIZE bytes), or receives COUNT messages (blocking), printing
// each (without the dots); run with KillAtEnv set it dies inside.
func crasherHelper(args []string) int {
	if killat.Execed() {
		// The new image of an "exec:" step: alive, and done with the queue.
		fmt.Println("execed")
		_, _ = io.Copy(io.Discard, os.Stdin)
		return 0
	}
	id, _ := strconv.Atoi(args[0])
	count, _ := strconv.Atoi(args[2])
	size := 0
	if len(args) > 3 {
		size, _ = strconv.Atoi(args[3])
	}
	q, err := OpenID(id)
	if err != nil {
		fmt.Println("err", err)
		return 1
	}
	ctx := context.Background()
	buf := make([]byte, max(64, size))
	for i := 0; i < count; i++ {
		if args[1] == "send" {
			err = q.Send(ctx, 1, padded(fmt.Sprintf("m%d", i), size))
		} else {
			var n int
			n, _, err = q.Recv(ctx, buf, 0, 0)
			fmt.Println(strings.TrimRight(string(buf[:n]), "."))
		}
		if err != nil {
			fmt.Println("err", err)
			return 1
		}
	}
	fmt.Println("done")
	return 0
}

// padded is s with dots up to size bytes.
func padded(s string, size int) []byte {
	return []byte(s + strings.Repeat(".", max(0, size-len(s))))
}

// drain receives everything queued (IPC_NOWAIT) and returns the texts.
func drain(t *testing.T, q *Queue) []string {
	t.Helper()
	var out []string
	buf := make([]byte, MSGMAX)
	for {
		n, _, err := q.TryRecv(buf, 0, 0)
		if err == ErrEmpty {
			return out
		}
		require.NoError(t, err)
		out = append(out, strings.TrimRight(string(buf[:n]), "."))
	}
}

// drainRepaired drains q until every waiter slot is free: until the
// registry's repair, or the next operation's, has freed the slot of a
// helper gone from its call (dead or exec'd) and what it held, so that
// every block is accounted for (Check). It returns the texts received.
func drainRepaired(t *testing.T, q *Queue) []string {
	t.Helper()
	var got []string
	testutil.Eventually(t, lineWait, "the slot of the call gone to be repaired", func() bool {
		got = append(got, drain(t, q)...)
		for i := range q.v.slots {
			if q.v.slots[i].State.Load() != slotFree {
				return false
			}
		}
		return true
	})
	require.NoError(t, q.Check())
	return got
}

// A sender killed at any step of its send leaves the whole message or
// nothing, and no block stranded.
func TestCrashSender(t *testing.T) {
	for _, c := range []struct {
		step string
		sent bool // the third message is in the queue
	}{
		{"send-locked", false}, {"send-alloc", false}, {"send-written", false}, {"send-linked", true},
	} {
		t.Run(c.step, func(t *testing.T) {
			q := newQueue(t)
			p := testutil.Start(t, "crasher", []string{fmt.Sprint(q.ID()), "send", "5"},
				testutil.Env(KillAtEnv+"="+c.step+":3"))
			assert.Equal(t, -1, p.Wait(lineWait), "killed")
			require.NoError(t, q.Check())
			want := []string{"m0", "m1"}
			if c.sent {
				want = append(want, "m2")
			}
			assert.Equal(t, want, drain(t, q))
			require.NoError(t, q.Check())
			// The queue is whole: it still takes and gives messages.
			require.NoError(t, q.Send(context.Background(), 1, []byte("after")))
			assert.Equal(t, []string{"after"}, drain(t, q))
		})
	}
}

// The same for messages copied into and out of the store outside the lock
// (bigCopy bytes or more): a sender killed while it writes outside the
// lock sent nothing, a receiver killed while it copies out received the
// message (its commit came first); no block is stranded either way.
func TestCrashBig(t *testing.T) {
	const size = 3000
	for _, c := range []struct {
		step  string
		send  bool
		sent  bool // send: the third message is in the queue
		taken bool // recv: the third message is gone
	}{
		{"send-locked", true, false, false}, {"send-alloc", true, false, false},
		{"send-written", true, false, false}, {"send-linked", true, true, false},
		{"recv-locked", false, false, false}, {"recv-unlinked", false, false, true},
		{"recv-copied", false, false, true}, {"recv-freed", false, false, true},
	} {
		t.Run(c.step, func(t *testing.T) {
			q := newQueueConfig(t, Config{Capacity: 8 * size})
			var want []string
			if c.send {
				p := testutil.Start(t, "crasher", []string{fmt.Sprint(q.ID()), "send", "5", fmt.Sprint(size)},
					testutil.Env(KillAtEnv+"="+c.step+":3"))
				assert.Equal(t, -1, p.Wait(lineWait), "killed")
				want = []string{"m0", "m1"}
				if c.sent {
					want = append(want, "m2")
				}
			} else {
				for i := 0; i < 5; i++ {
					require.NoError(t, q.Send(context.Background(), 1, padded(fmt.Sprintf("m%d", i), size)))
				}
				p := testutil.Start(t, "crasher", []string{fmt.Sprint(q.ID()), "recv", "5", fmt.Sprint(size)},
					testutil.Env(KillAtEnv+"="+c.step+":3"))
				p.Expect("m0", lineWait)
				p.Expect("m1", lineWait)
				assert.Equal(t, -1, p.Wait(lineWait), "killed")
				want = []string{"m3", "m4"}
				if !c.taken {
					want = append([]string{"m2"}, want...)
				}
			}
			// The registry's repair, or the next operation's, frees the
			// dead process's slot and what it held; then every block is
			// accounted for.
			got := drainRepaired(t, q)
			assert.Equal(t, want, got)
			require.NoError(t, q.Send(context.Background(), 1, padded("after", size)))
			assert.Equal(t, []string{"after"}, drain(t, q))
			require.NoError(t, q.Check())
		})
	}
}

// A receiver killed at any step of its receive loses at most the message
// it was taking (none if it had not passed the commit point), and no block
// is stranded.
func TestCrashReceiver(t *testing.T) {
	for _, c := range []struct {
		step  string
		taken bool // the third message is gone
	}{
		{"recv-locked", false}, {"recv-copied", false}, {"recv-unlinked", true}, {"recv-freed", true},
	} {
		t.Run(c.step, func(t *testing.T) {
			q := newQueue(t)
			for i := 0; i < 5; i++ {
				require.NoError(t, q.Send(context.Background(), 1, []byte(fmt.Sprintf("m%d", i))))
			}
			p := testutil.Start(t, "crasher", []string{fmt.Sprint(q.ID()), "recv", "5"},
				testutil.Env(KillAtEnv+"="+c.step+":3"))
			p.Expect("m0", lineWait)
			p.Expect("m1", lineWait)
			assert.Equal(t, -1, p.Wait(lineWait), "killed")
			require.NoError(t, q.Check())
			want := []string{"m3", "m4"}
			if !c.taken {
				want = append([]string{"m2"}, want...)
			}
			assert.Equal(t, want, drain(t, q))
			require.NoError(t, q.Check())
		})
	}
}

// A receiver that dies asleep, or after a message was handed to it but
// before it took it, loses nothing: repair puts the message back in its
// place and frees the slot.
func TestCrashSleepingReceiver(t *testing.T) {
	for _, step := range []string{"sleep", "recv-handed"} {
		t.Run(step, func(t *testing.T) {
			q := newQueue(t)
			p := testutil.Start(t, "crasher", []string{fmt.Sprint(q.ID()), "recv", "1"},
				testutil.Env(KillAtEnv+"="+step+":1"))
			if step == "sleep" {
				// Died holding a waiter slot; the registry may repair before
				// or after the sends below, but the slot's Life is marked
				// already: the sends pass it by.
				assert.Equal(t, -1, p.Wait(lineWait), "killed")
			} else {
				waitBlocked(t, usysvImpl, q.ID(), p)
			}
			require.NoError(t, q.Send(context.Background(), 1, []byte("first")))
			require.NoError(t, q.Send(context.Background(), 1, []byte("second")))
			if step == "recv-handed" {
				assert.Equal(t, -1, p.Wait(lineWait), "killed")
			}
			// Once the registry has seen the death, the next operation (or
			// its eager repair) requeues the handed-over message.
			var got []string
			testutil.Eventually(t, lineWait, "the message handed to the dead receiver to come back", func() bool {
				got = append(got, drain(t, q)...)
				return len(got) == 2
			})
			// A message handed to the dead receiver before its death was
			// noticed comes back at its place in send order, but after a
			// live receiver may have taken a later one.
			assert.ElementsMatch(t, []string{"first", "second"}, got)
			if step == "sleep" {
				assert.Equal(t, []string{"first", "second"}, got, "queued in order, not handed to the dead")
			}
			require.NoError(t, q.Check())
			testutil.Eventually(t, lineWait, "the repair to free the dead receiver's slot", func() bool {
				_, _ = q.Stat() // (repairs once the registry has seen the death)
				for i := range q.v.slots {
					if q.v.slots[i].State.Load() != slotFree {
						return false
					}
				}
				return true
			})
		})
	}
}

// deadReceiverHanded makes a queue with a receiver of type 2 queued in a
// waiter slot for a process that is dead (and whose Life was never
// marked), and sends m1, x (type 2: handed to that receiver), m3.
func deadReceiverHanded(t *testing.T) (*Queue, *waiter) {
	q := newQueue(t)
	ctx := context.Background()
	p := testutil.Start(t, "crasher", []string{"-1", "send", "0"})
	assert.Equal(t, 1, p.Wait(lineWait)) // OpenID(-1) fails: a pid that is now dead
	require.NoError(t, q.Send(ctx, 1, []byte("m1")))
	q.lock(&wakeList{})
	w := new(waiter)
	q.claim(w, slotRecv, 2, uint64(searchEqual)|1000<<32)
	w.slot.PID.Store(uint32(p.Pid()))
	w.slot.Life.Release() // (a process that died before it was marked)
	q.mu.Unlock()
	require.NoError(t, q.Send(ctx, 2, []byte("x")))
	require.NoError(t, q.Send(ctx, 1, []byte("m3")))
	return q, w
}

// White-box: a message handed to a receiver whose process is dead goes
// back into the queue at its place in send order once a death is known.
func TestRequeueFromDeadReceiver(t *testing.T) {
	q, w := deadReceiverHanded(t)
	assert.Equal(t, uint32(slotDelivered), w.slot.State.Load())
	require.NoError(t, q.Check())
	q.seg.BumpDeadGen()
	assert.Equal(t, []string{"m1", "x", "m3"}, drain(t, q))
	assert.Equal(t, uint32(slotFree), w.slot.State.Load())
	require.NoError(t, q.Check())
}

// White-box: a repair that put a dead receiver's message back into the
// queue and died before it freed the receiver's slot leaves the message in
// both; the full rebuild that follows (its lock is taken over) keeps it
// queued once, and everything after it. (Before, the rebuild gave the
// slot the message and cut the list there: m3 and m4 were lost, silently.)
func TestRebuildAfterRequeue(t *testing.T) {
	q, w := deadReceiverHanded(t)
	ctx := context.Background()
	require.NoError(t, q.Send(ctx, 1, []byte("m4")))
	var wl wakeList
	q.lock(&wl)
	// The dead repairer's part: the flush and the requeue, not the free.
	q.v.setClosed()
	require.NoError(t, q.v.flush())
	q.v.requeue(uint32(w.slot.Arg[argBlock].Load()))
	require.Equal(t, uint32(slotDelivered), w.slot.State.Load())
	q.v.repair(true)
	q.deadGen.Store(q.seg.DeadGen())
	q.unlock(&wl)
	assert.Equal(t, uint32(slotFree), w.slot.State.Load())
	require.NoError(t, q.Check())
	assert.Equal(t, []string{"m1", "x", "m3", "m4"}, drain(t, q))
	require.NoError(t, q.Check())
}

// White-box: a full rebuild (a lock holder died) keeps the chain a live
// process writes or copies out outside the lock, and frees a dead one's,
// in both cases leaving every block accounted for.
func TestRebuildKeepsOutsideChains(t *testing.T) {
	q := newQueueConfig(t, Config{Capacity: 32768})
	require.NoError(t, q.Send(context.Background(), 1, padded("queued", 3000)))
	p := testutil.Start(t, "crasher", []string{"-1", "send", "0"})
	assert.Equal(t, 1, p.Wait(lineWait)) // OpenID(-1) fails: a pid that is now dead
	v := q.v
	for _, c := range []struct {
		state uint32
		pid   uint32
		kept  bool
	}{
		{slotWriting, q.pid, true}, {slotTaken, q.pid, true},
		{slotWriting, uint32(p.Pid()), false}, {slotTaken, uint32(p.Pid()), false},
	} {
		func() {
			var wl wakeList
			q.lock(&wl)
			defer q.unlock(&wl) // also when an assertion fails
			s := q.freeSlot()
			require.NotNil(t, s)
			b, err := v.alloc(uint32(chainBlocks(3000)))
			require.NoError(t, err)
			h := v.hdr(b)
			h.mtype, h.len, h.next, h.seq = 1, 3000, 0, 0
			s.PID.Store(c.pid)
			s.Arg[argBlock].Store(uint64(b) + 1)
			s.State.Store(c.state)
			require.NoError(t, v.check())
			v.repair(true)
			require.NoError(t, v.check(), "state %d pid %d", c.state, c.pid)
			if c.kept {
				assert.Equal(t, c.state, s.State.Load())
				v.freeHeld(s)
				s.State.Store(slotFree)
			} else {
				assert.Equal(t, uint32(slotFree), s.State.Load())
			}
			require.NoError(t, v.check())
		}()
	}
	assert.Equal(t, []string{"queued"}, drain(t, q))
}

// The registry's eager repair recovers a panic of its hook and goes on
// (registry runHook): a repair that panics on a corrupted queue abandons
// the lock, and the next locked call repairs from the start, as after a
// death, instead of waiting for ever on a lock held by a live process
// (which it did before).
func TestPanicInsideEagerRepair(t *testing.T) {
	q := newQueue(t)
	ctx := context.Background()
	require.NoError(t, q.Send(ctx, 1, []byte("kept")))
	repairHook = func() { panic("corrupt beyond repair") }
	func() {
		defer func() { assert.Equal(t, "corrupt beyond repair", recover(), "the panic goes on") }()
		repairSegment(q.seg)
	}()
	repairHook = nil
	done := make(chan error, 1)
	go func() { done <- q.Check() }() // (takes the lock)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(2 * lineWait):
		t.Fatal("the call waits for ever for the lock the panicked repair held") // (and leaks its goroutine)
	}
	assert.Equal(t, []string{"kept"}, drain(t, q))
}

// rebuild reads bump once, and bounds it itself: repair clamps the word
// before it, but another process may write it in between (rebuild read it
// again as its walk's bound: index out of range with the lock held).
func TestRebuildBumpWritten(t *testing.T) {
	q := newQueue(t)
	require.NoError(t, q.TrySend(1, padded("kept", 200))) // too big for the ring: in the store
	v := q.v
	func() {
		var wl wakeList
		q.lock(&wl)
		defer q.unlock(&wl)
		v.ctl.bump = 0xFFFFFFFE
		v.rebuild() // as if written after repair's clamp
		v.repair(true)
		require.NoError(t, v.check())
	}()
	assert.Equal(t, []string{"kept"}, drain(t, q))
}

// A full repair renumbers sequence numbers that a corrupt segment left out
// of order along the list, not below the next one to give, or so high that
// the next sends would wrap, so that the queue passes Check again and
// keeps its order; later sends come after.
func TestRebuildRenumbers(t *testing.T) {
	for name, corrupt := range map[string]func(v *view, hs []*msgHdr){
		"out of order":  func(v *view, hs []*msgHdr) { hs[1].seq = hs[0].seq },
		"next too low":  func(v *view, hs []*msgHdr) { v.ctl.seq = hs[1].seq },
		"first too big": func(v *view, hs []*msgHdr) { hs[0].seq = ^uint64(0) },
		"next too big":  func(v *view, hs []*msgHdr) { v.ctl.seq = ^uint64(0) }, // (Check fails after the next send)
	} {
		t.Run(name, func(t *testing.T) {
			q := newQueue(t)
			for i := range 3 {
				require.NoError(t, q.TrySend(1, padded(fmt.Sprintf("m%d", i), 200))) // (too big for the ring: the store)
			}
			v := q.v
			func() {
				var wl wakeList
				q.lock(&wl)
				defer q.unlock(&wl)
				var hs []*msgHdr
				for m := v.ctl.head; m != 0; m = v.hdr(m - 1).next {
					hs = append(hs, v.hdr(m-1))
				}
				require.Len(t, hs, 3)
				corrupt(v, hs)
				v.repair(true)
				require.NoError(t, v.check())
			}()
			require.NoError(t, q.TrySend(1, padded("after", 200)))
			require.NoError(t, q.Check())
			assert.Equal(t, []string{"m0", "m1", "m2", "after"}, drain(t, q))
		})
	}
}

// A sender or receiver that execs at a step of its call is gone from the
// call as if it had died there (its goroutine went with the old image),
// while the process lives on: the message is sent whole or not at all,
// received or still queued, nothing stranded, and the queue goes on at
// once, locked calls included (before, a lock held at the exec stayed held
// until the new program exited).
func TestExecInsideCall(t *testing.T) {
	for _, c := range []struct {
		step string
		size int
		send bool
		done bool // the third message was sent, or taken
	}{
		{"send-locked", 0, true, false}, {"send-alloc", 0, true, false},
		{"send-written", 0, true, false}, {"send-linked", 0, true, true},
		{"recv-locked", 0, false, false}, {"recv-copied", 0, false, false},
		{"recv-unlinked", 0, false, true}, {"recv-freed", 0, false, true},
		{"send-alloc", 3000, true, false}, {"send-written", 3000, true, false},
		{"send-linked", 3000, true, true},
		{"recv-locked", 3000, false, false}, {"recv-unlinked", 3000, false, true},
		{"recv-copied", 3000, false, true}, {"recv-freed", 3000, false, true},
		{"ring-claimed", 0, true, false}, {"ring-written", 0, true, false},
		{"ring-taken", 0, false, false},
	} {
		t.Run(fmt.Sprintf("%s/%d", c.step, c.size), func(t *testing.T) {
			q := newQueueConfig(t, Config{Capacity: 8 * max(c.size, 64)})
			verb, want := "send", []string{"m0", "m1"}
			if !c.send {
				verb, want = "recv", []string{"m2", "m3", "m4"}
				for i := 0; i < 5; i++ {
					require.NoError(t, q.Send(context.Background(), 1, padded(fmt.Sprintf("m%d", i), c.size)))
				}
			}
			switch {
			case c.send && c.done:
				want = append(want, "m2")
			case !c.send && c.done:
				want = want[1:]
			}
			p := testutil.Start(t, "crasher", []string{fmt.Sprint(q.ID()), verb, "5", fmt.Sprint(c.size)},
				testutil.Env(KillAtEnv+"=exec:"+c.step+":3"))
			if !c.send {
				p.Expect("m0", lineWait)
				p.Expect("m1", lineWait)
			}
			p.Expect("execed", lineWait)
			got := drainRepaired(t, q)
			assert.Equal(t, want, got)
			// Locked calls too: a typed receive takes the lock.
			require.NoError(t, q.Send(context.Background(), 2, padded("after", c.size)))
			buf := make([]byte, MSGMAX)
			n, _, err := q.TryRecv(buf, 2, 0)
			require.NoError(t, err)
			assert.Equal(t, "after", strings.TrimRight(string(buf[:n]), "."))
			for _, m := range []string{"x1", "x2", "x3"} {
				require.NoError(t, q.Send(context.Background(), 1, padded(m, c.size)))
			}
			assert.Equal(t, []string{"x1", "x2", "x3"}, drain(t, q), "FIFO receives go on")
			if v := q.v; v.nslots != 0 {
				tp := rpos(v.rc.tail.Load())
				assert.False(t, claimFor(v.ring[tp&v.mask].seq.Load(), tp), "the old image's claim is given back")
			}
			require.NoError(t, q.Check())
		})
	}
}

// With a registry hosted by an ordinary user (the embedded default), that
// user's processes get from another user's queue what its mode grants
// them, as on Linux: here "other" write (mode 0002). The kernel puts
// the host's uid in the owner class of every segment the host creates,
// so the registry gives that class read-write on the segment when the
// object grants the host's user access (before, it got the object's owner
// bits, none here, and every call failed with EACCES).
func TestNonRootHostOtherClass(t *testing.T) {
	testutil.RequireRoot(t)
	dir, err := os.MkdirTemp("", "usysv-nonroot-host") // (t.TempDir's parent is 0700)
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	require.NoError(t, os.Chmod(dir, 0o777))
	env := testutil.Env("USYSV_SOCKET=" + filepath.Join(dir, "reg.sock"))
	host := testutil.Start(t, "ipc", nil, testutil.AsNobody(), env)
	host.Send("stat usysv -1") // (a call that reaches the registry: nobody hosts it)
	host.Line(lineWait)
	owner := testutil.Start(t, "ipc", nil, testutil.AsUser(1000, 1000), env)
	owner.Send("get usysv %d %d", IPC_PRIVATE, IPC_CREAT|0o002)
	f := strings.Fields(owner.Line(lineWait))
	require.Equal(t, "ok", f[0], "get: %v", f)
	defer func() { owner.Send("rm usysv %s", f[1]); owner.Line(lineWait) }()
	host.Send("snd usysv %s 1 x %d", f[1], IPC_NOWAIT)
	assert.Equal(t, "ok", host.Line(lineWait), "msgsnd by the host's user, other class of mode 0002")
	host.Send("stat usysv %s", f[1])
	assert.Equal(t, "err EACCES", host.Line(lineWait), "no read: IPC_STAT is refused, as on Linux")
}
