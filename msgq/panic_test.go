package msgq

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
)

// The panic the tests inject at a step, as a queue corrupted beyond what
// the code handles would raise one (FINDINGS F15).
const injected = "injected: corrupt beyond repair"

// A panic inside Send or Recv that the caller recovers, at a step the call
// passes holding the lock, is as the caller's death there (TestCrashSender,
// TestCrashBig, TestCrashReceiver, TestCrashFlusher): the section's guard
// repairs at once, the message is whole or absent, no slot or block is
// stranded, and nobody waits for ever on a lock this live process holds.
func TestPanicInsideCall(t *testing.T) {
	cases := []struct {
		step string
		size int  // 200: through the store under the lock; 3000: copied outside it
		send bool // the call is the third send, else the third receive of five
		gone bool // the third message: sent (a send), or taken (a receive)
	}{
		{"send-locked", 200, true, false}, {"send-alloc", 200, true, false},
		{"send-written", 200, true, false}, {"send-linked", 200, true, true},
		{"recv-locked", 200, false, false}, {"recv-copied", 200, false, false},
		{"recv-unlinked", 200, false, true}, {"recv-freed", 200, false, true},
		// Copied outside the lock: the steps under it (send-alloc and
		// send-written, recv-copied, are outside: no lock to give up).
		{"send-locked", 3000, true, false}, {"send-linked", 3000, true, true},
		{"recv-locked", 3000, false, false}, {"recv-unlinked", 3000, false, true},
		{"recv-freed", 3000, false, true},
	}
	ctx := context.Background()
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s %d", c.step, c.size), func(t *testing.T) {
			q := newQueueConfig(t, Config{Capacity: 8 * 3000})
			msg := func(i int) []byte { return padded(fmt.Sprintf("m%d", i), c.size) }
			var want []string
			buf := make([]byte, c.size)
			if c.send {
				require.NoError(t, q.Send(ctx, 1, msg(0)))
				require.NoError(t, q.Send(ctx, 1, msg(1)))
				crash.PanicAt(stepNames[c.step], 1, injected)
				assert.PanicsWithValue(t, injected, func() { _ = q.Send(ctx, 1, msg(2)) }, "the panic goes on to the caller")
				want = []string{"m0", "m1"}
				if c.gone {
					want = append(want, "m2")
				}
			} else {
				for i := range 5 {
					require.NoError(t, q.Send(ctx, 1, msg(i)))
				}
				for range 2 {
					_, _, err := q.Recv(ctx, buf, 0, 0)
					require.NoError(t, err)
				}
				crash.PanicAt(stepNames[c.step], 1, injected)
				assert.PanicsWithValue(t, injected, func() { _, _, _ = q.Recv(ctx, buf, 0, 0) }, "the panic goes on to the caller")
				want = []string{"m3", "m4"}
				if !c.gone {
					want = append([]string{"m2"}, want...)
				}
			}
			crash.Disarm()

			other, err := OpenID(q.ID())
			require.NoError(t, err)
			defer other.Close()
			testutil.Returns(t, 2*lineWait, "Check through another handle (it takes the lock)", other.Check)
			for i := range q.v.slots {
				assert.Equal(t, uint32(slotFree), q.v.slots[i].State.Load(), "slot %d", i)
			}
			assert.Equal(t, want, drain(t, other))
			// The handle whose call panicked works on.
			require.NoError(t, q.Send(ctx, 1, msg(5)))
			assert.Equal(t, []string{"m5"}, drain(t, q))
			require.NoError(t, other.Check())
		})
	}
}

// The same inside the move of the ring's messages into the store that a
// send too big for the ring makes first (ring-flushed: linked there, the
// ring's head not yet moved past them): no message is lost or duplicated,
// and the big one is not sent.
func TestPanicInsideFlush(t *testing.T) {
	q := newQueue(t)
	ctx := context.Background()
	for i := range 5 {
		require.NoError(t, q.Send(ctx, 1, []byte(fmt.Sprintf("m%d", i)))) // (through the ring)
	}
	crash.PanicAt(stepRingFlushed, 1, injected)
	assert.PanicsWithValue(t, injected, func() { _ = q.Send(ctx, 1, padded("big", slotText+1)) }, "the panic goes on to the caller")
	crash.Disarm()
	other, err := OpenID(q.ID())
	require.NoError(t, err)
	defer other.Close()
	testutil.Returns(t, 2*lineWait, "Check through another handle (it takes the lock)", other.Check)
	assert.Equal(t, []string{"m0", "m1", "m2", "m3", "m4"}, drain(t, other))
	require.NoError(t, q.Send(ctx, 1, []byte("after")))
	assert.Equal(t, []string{"after"}, drain(t, q))
}

// A receiver asleep in a waiter slot, handed a message by a send, panics
// as it takes the message from its slot (recv-handed, the lock held): the
// slot is given up as a dead receiver's and the message goes back into
// the queue, as after that receiver's death (TestCrashSleepingReceiver).
func TestPanicInsideWokenReceiver(t *testing.T) {
	q := newQueue(t)
	ctx := context.Background()
	crash.PanicAt(stepRecvHanded, 1, injected) // (before the receiver starts: it reads it)
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		_, _, _ = q.Recv(ctx, make([]byte, 64), 0, 0)
	}()
	waitSlots(t, q, 1)
	require.NoError(t, q.Send(ctx, 1, []byte("m0"))) // (handed to the sleeper)
	assert.Equal(t, injected, <-done, "the panic goes on to the caller")
	crash.Disarm()
	other, err := OpenID(q.ID())
	require.NoError(t, err)
	defer other.Close()
	testutil.Returns(t, 2*lineWait, "Check through another handle (it takes the lock)", other.Check)
	assert.Equal(t, []string{"m0"}, drain(t, other))
}

// A panic while a call sleeps in its waiter slot, outside the lock (at
// "sleep"), gives the slot up as a dead process's and repairs: a receiver's
// slot is not handed the next message (which would be lost to it), and a
// sender's is not counted among those to wake.
func TestPanicWhileAsleep(t *testing.T) {
	ctx := context.Background()
	t.Run("receiver", func(t *testing.T) {
		q := newQueue(t)
		crash.PanicAt(stepSleep, 1, injected)
		assert.PanicsWithValue(t, injected, func() { _, _, _ = q.Recv(ctx, make([]byte, 64), 0, 0) })
		crash.Disarm()
		for i := range q.v.slots {
			assert.Equal(t, uint32(slotFree), q.v.slots[i].State.Load(), "slot %d", i)
		}
		require.NoError(t, q.Send(ctx, 1, []byte("m0")))
		assert.Equal(t, []string{"m0"}, drain(t, q))
	})
	t.Run("sender", func(t *testing.T) {
		q := newQueue(t)
		require.NoError(t, q.Set(DS{Perm: statPerm(t, q), Qbytes: 1}))
		require.NoError(t, q.Send(ctx, 1, []byte("x"))) // (full)
		crash.PanicAt(stepSleep, 1, injected)
		assert.PanicsWithValue(t, injected, func() { _ = q.Send(ctx, 1, []byte("y")) })
		crash.Disarm()
		for i := range q.v.slots {
			assert.Equal(t, uint32(slotFree), q.v.slots[i].State.Load(), "slot %d", i)
		}
		require.NoError(t, q.Check())
		assert.Equal(t, []string{"x"}, drain(t, q))
	})
}
