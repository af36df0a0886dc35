package msgq

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
)

func init() { testutil.RegisterHelper("lockholder", lockHolderHelper) }

// lockHolderHelper ID: takes the queue's lock (as a locked call does,
// the ring left as it is), says "held", and releases it when a line comes
// on stdin, then says "released".
func lockHolderHelper(args []string) int {
	id, _ := strconv.Atoi(args[0])
	q, err := OpenID(id)
	if err != nil {
		fmt.Println("err", err)
		return 1
	}
	var wl wakeList
	q.lock(&wl)
	fmt.Println("held")
	bufio.NewScanner(os.Stdin).Scan()
	q.unlock(&wl)
	fmt.Println("released")
	return 0
}

// Chaos finding F3: a process stopped (SIGSTOP) while it holds the queue's
// lock, and another process's death (which makes every handle repair
// lazily), must not stop the lock-free FIFO sends and receives of a third:
// they go on without the repair, which waits for the lock to be free. The
// death leaves a sender's claim at the ring's tail (the third gives it
// back itself), or a receiver's copy of a message it never took.
func TestStoppedLockHolderAndDeath(t *testing.T) {
	for _, c := range []struct {
		step   string // where the dying process is killed
		queued bool   // a message is queued for it to receive
	}{
		{"ring-claimed", false}, {"ring-taken", true},
	} {
		t.Run(c.step, func(t *testing.T) {
			q := newQueue(t)
			id := q.ID()
			// C opens its handle (through the ring) before anyone dies.
			user := testutil.Start(t, "ipc", nil)
			call := func(format string, a ...any) string {
				t.Helper()
				user.Send(format, a...)
				return user.Line(lineWait) // fails the test rather than hang
			}
			require.Equal(t, "ok", call("snd usysv %d 1 first %d", id, IPC_NOWAIT))
			require.Equal(t, "ok 5 1 first", call("rcv usysv %d 64 0 %d", id, IPC_NOWAIT))
			require.True(t, q.v.isOpen(), "the ring is open")
			if c.queued {
				require.Equal(t, "ok", call("snd usysv %d 1 kept %d", id, IPC_NOWAIT))
			}

			// A holds the lock and is stopped.
			holder := testutil.Start(t, "lockholder", []string{fmt.Sprint(id)})
			holder.Expect("held", lineWait)
			holder.Signal(kernel.SIGSTOP)
			t.Cleanup(func() { _ = kernel.Kill(holder.Pid(), kernel.SIGCONT) })
			testutil.Eventually(t, lineWait, "the lock holder to stop", func() bool { return testutil.ProcState(holder.Pid()) == "T" })

			// B dies inside a lock-free call; the registry bumps the dead
			// generation (its eager repair cannot take the lock).
			gen := q.seg.DeadGen()
			op := "send"
			if c.queued {
				op = "recv"
			}
			dying := testutil.Start(t, "crasher", []string{fmt.Sprint(id), op, "1"}, testutil.Env(KillAtEnv+"="+c.step))
			require.Equal(t, -1, dying.Wait(lineWait), "killed")
			testutil.Eventually(t, lineWait, "the registry to see the death", func() bool { return q.seg.DeadGen() != gen })
			require.Equal(t, holder.Pid(), q.mu.Holder(), "the stopped holder keeps the lock")

			// C's lock-free calls go on.
			if c.queued {
				require.Equal(t, "ok 4 1 kept", call("rcv usysv %d 64 0 %d", id, IPC_NOWAIT))
			}
			require.Equal(t, "ok", call("snd usysv %d 1 second %d", id, IPC_NOWAIT))
			require.Equal(t, "ok", call("snd usysv %d 1 third %d", id, IPC_NOWAIT))
			require.Equal(t, "ok 6 1 second", call("rcv usysv %d 64 0 %d", id, IPC_NOWAIT))
			require.Equal(t, "ENOMSG", call("rcv usysv %d 64 2 %d", id, IPC_NOWAIT)[4:], "a typed receive that finds nothing in the ring")
			require.Equal(t, holder.Pid(), q.mu.Holder())

			// Continued, A releases the lock; the repair left pending runs
			// at C's next call, and the queue is whole.
			holder.Signal(kernel.SIGCONT)
			holder.Send("release")
			holder.Expect("released", lineWait)
			require.Equal(t, "ok 5 1 third", call("rcv usysv %d 64 0 %d", id, IPC_NOWAIT))
			require.Equal(t, "ok", call("snd usysv %d 1 last 0", id))
			require.Equal(t, "ok 4 1 last", call("rcv usysv %d 64 0 0", id))
			require.NoError(t, q.Check())
		})
	}
}

// A process stopped (SIGSTOP) while it holds the queue's lock keeps the
// lock until it is continued. A call that needs the lock meanwhile (to
// sleep in a waiter slot, or for a message too big for the ring) waits
// for it no longer than its context allows: it ends as a blocked call
// ends, with an error matching ctx.Err() and EINTR, having done nothing.
func TestCallGivesUpOnStoppedHolder(t *testing.T) {
	q := newQueue(t)
	holder := testutil.Start(t, "lockholder", []string{fmt.Sprint(q.ID())})
	holder.Expect("held", lineWait)
	holder.Signal(kernel.SIGSTOP)
	t.Cleanup(func() { _ = kernel.Kill(holder.Pid(), kernel.SIGCONT) })
	testutil.Eventually(t, lineWait, "the lock holder to stop", func() bool { return testutil.ProcState(holder.Pid()) == "T" })

	const limit = 20 * time.Millisecond
	within := func(what string, f func(ctx context.Context) error) error {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- f(ctx) }()
		select {
		case err := <-done:
			return err
		case <-time.After(lineWait):
			_ = kernel.Kill(holder.Pid(), kernel.SIGCONT)
			holder.Send("release")
			<-done
			t.Fatalf("%s did not return within %v", what, lineWait)
			return nil
		}
	}
	big := make([]byte, 4096) // (beyond the ring's slots: the lock)
	buf := make([]byte, len(big))
	for _, c := range []struct {
		what string
		f    func(ctx context.Context) error
	}{
		{"a receive that would sleep", func(ctx context.Context) error {
			_, _, err := q.Recv(ctx, buf, 0, 0)
			return err
		}},
		{"a typed receive that would sleep", func(ctx context.Context) error {
			_, _, err := q.Recv(ctx, buf, 3, 0)
			return err
		}},
		{"a big send", func(ctx context.Context) error { return q.Send(ctx, 1, big) }},
		{"a big batch", func(ctx context.Context) error {
			_, err := q.SendBatch(ctx, []Msg{{Type: 1, Data: big}})
			return err
		}},
	} {
		err := within(c.what, c.f)
		assert.ErrorIs(t, err, context.DeadlineExceeded, c.what)
		assert.ErrorIs(t, err, kernel.EINTR, c.what)
	}
	// A cancel ends the wait too.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Send(ctx, 1, big) }()
	time.Sleep(limit) // (to let it sleep; it ends the same way if not)
	cancel()
	err := within("a cancelled send", func(context.Context) error { return <-done })
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, kernel.EINTR)
	require.Equal(t, holder.Pid(), q.mu.Holder(), "the stopped holder keeps the lock")

	holder.Signal(kernel.SIGCONT)
	holder.Send("release")
	holder.Expect("released", lineWait)
	ds, err := q.Stat()
	require.NoError(t, err)
	assert.Zero(t, ds.Qnum, "nothing was sent")
	require.NoError(t, q.Send(context.Background(), 2, big))
	n, typ, err := q.Recv(context.Background(), buf, 0, 0)
	require.NoError(t, err)
	assert.Equal(t, len(big), n)
	assert.Equal(t, int64(2), typ)
	require.NoError(t, q.Check())
}
