package msgq

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// Tests of the lock-free ring and of its hand-over to the store.

func init() { testutil.RegisterHelper("ringcrasher", ringCrasherHelper) }

// ringCrasherHelper ID flush COUNT: sends m0..m(COUNT-1) through the ring,
// then one message too big for it (which moves the ring's messages into
// the store first), printing "sent" after the small ones; run with
// KillAtEnv set it dies inside.
func ringCrasherHelper(args []string) int {
	id, _ := strconv.Atoi(args[0])
	count, _ := strconv.Atoi(args[2])
	q, err := OpenID(id)
	if err != nil {
		fmt.Println("err", err)
		return 1
	}
	ctx := context.Background()
	for i := 0; i < count; i++ {
		if err := q.Send(ctx, 1, []byte(fmt.Sprintf("m%d", i))); err != nil {
			fmt.Println("err", err)
			return 1
		}
	}
	fmt.Println("sent")
	if err := q.Send(ctx, 1, make([]byte, slotText+1)); err != nil {
		fmt.Println("err", err)
		return 1
	}
	fmt.Println("done")
	return 0
}

// killed waits for helper p to die by its crash hook and for the registry
// to have seen the death (it bumps the dead generation of every queue), so
// that no late repair sends the next calls through the lock path.
func killed(t *testing.T, q *Queue, p *testutil.Proc, gen uint32) {
	t.Helper()
	require.Equal(t, -1, p.Wait(lineWait), "killed")
	testutil.Eventually(t, lineWait, "the registry to see the death", func() bool { return q.seg.DeadGen() != gen })
}

// reopened waits, making calls that go through the lock, until the ring is
// open again: it reopens once the store is empty, after up to 64 locked
// calls if opening it recently bought nothing.
func reopened(t *testing.T, q *Queue) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if open, _, _, _ := ringState(q); open {
			return
		}
		_, err := q.Stat()
		require.NoError(t, err)
	}
	t.Fatalf("the ring did not open again: openSkip %d, useless %d, store %d", q.v.ctl.openSkip, q.v.ctl.useless, q.v.ctl.head)
}

// ringState is what a test can see of the ring (white-box).
func ringState(q *Queue) (open bool, head, tail uint32, store uint32) {
	h, t := q.v.rc.head.Load(), q.v.rc.tail.Load()
	return (h|t)&ringClosed == 0, rpos(h), rpos(t), q.v.ctl.head
}

// Small sends and FIFO receives with nobody asleep go through the ring and
// leave the store empty; the ring's counts are the queue's.
func TestRingUsed(t *testing.T) {
	q := newQueue(t)
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		require.NoError(t, q.Send(ctx, int64(1+i%2), []byte(fmt.Sprintf("m%d", i))))
	}
	open, head, tail, store := ringState(q)
	assert.True(t, open)
	assert.Equal(t, uint32(10), tail-head)
	assert.Zero(t, store, "the store holds nothing")
	ds, err := q.Stat()
	require.NoError(t, err)
	assert.Equal(t, uint64(10), ds.Qnum)
	assert.Equal(t, uint64(20), ds.Cbytes)
	assert.Equal(t, kernel.Getpid(), ds.Lspid)
	buf := make([]byte, 16)
	for i := 0; i < 10; i++ {
		n, typ, err := q.Recv(ctx, buf, 0, 0)
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprintf("m%d", i), string(buf[:n]))
		assert.Equal(t, int64(1+i%2), typ)
	}
	open, head, tail, _ = ringState(q)
	assert.True(t, open)
	assert.Equal(t, head, tail)
	require.NoError(t, q.Check())
}

// A message too big for a slot, a typed receive of a message behind the
// first, or a negative msgtyp close the ring and move its messages into
// the store, in order; the ring opens again when the store is empty.
func TestRingToStoreAndBack(t *testing.T) {
	q := newQueue(t)
	ctx := context.Background()
	big := make([]byte, slotText+1)
	want := []string{}
	for i := 0; i < 5; i++ {
		s := fmt.Sprintf("m%d", i)
		require.NoError(t, q.Send(ctx, 1, []byte(s)))
		want = append(want, s)
	}
	require.NoError(t, q.Send(ctx, 2, big))
	open, _, _, store := ringState(q)
	assert.False(t, open, "the store holds messages: the ring is closed")
	assert.NotZero(t, store)
	require.NoError(t, q.Send(ctx, 1, []byte("after")))
	want = append(want, string(big), "after")
	require.NoError(t, q.Check())
	var got []string
	buf := make([]byte, 256)
	for range want {
		n, _, err := q.TryRecv(buf, 0, 0)
		require.NoError(t, err)
		got = append(got, string(buf[:n]))
	}
	assert.Equal(t, want, got)
	reopened(t, q) // the store is empty: the ring opens again

	// A typed receive of a message behind the first.
	for i := 1; i <= 4; i++ {
		require.NoError(t, q.Send(ctx, int64(i), []byte(fmt.Sprintf("t%d", i))))
	}
	n, typ, err := q.TryRecv(buf, 3, 0)
	require.NoError(t, err)
	assert.Equal(t, "t3", string(buf[:n]))
	assert.Equal(t, int64(3), typ)
	// The first message matches: taken from the ring (or the store).
	n, _, err = q.TryRecv(buf, 1, 0)
	require.NoError(t, err)
	assert.Equal(t, "t1", string(buf[:n]))
	n, _, err = q.TryRecv(buf, -4, 0)
	require.NoError(t, err)
	assert.Equal(t, "t2", string(buf[:n]))
	n, _, err = q.TryRecv(buf, 0, 0)
	require.NoError(t, err)
	assert.Equal(t, "t4", string(buf[:n]))
	_, _, err = q.TryRecv(buf, 0, 0)
	assert.ErrorIs(t, err, ErrEmpty)
	require.NoError(t, q.Check())
	reopened(t, q)
}

// Opening the ring is skipped for a while after opens that bought
// nothing (no receive went through it before it closed again), and not
// after ones that did.
func TestRingOpenHint(t *testing.T) {
	q := newQueue(t)
	ctx := context.Background()
	buf := make([]byte, 8)
	round := func() { // sends through the ring, then typed receives that close it
		for i := int64(1); i <= 3; i++ {
			require.NoError(t, q.Send(ctx, i, []byte("x")))
		}
		for i := int64(3); i >= 1; i-- {
			_, _, err := q.TryRecv(buf, i, 0)
			require.NoError(t, err)
		}
	}
	reopened(t, q)
	round()
	assert.Equal(t, uint32(1), q.v.ctl.useless)
	reopened(t, q)
	round()
	assert.Equal(t, uint32(2), q.v.ctl.useless)
	// An open during which a receive went through the ring resets it.
	reopened(t, q)
	require.NoError(t, q.Send(ctx, 1, []byte("x")))
	_, _, err := q.TryRecv(buf, 0, 0)
	require.NoError(t, err)
	round()
	assert.Zero(t, q.v.ctl.useless)
	require.NoError(t, q.Check())
}

// A receive that comes to the lock path after a spin and finds the ring
// open takes a first message that matches from the ring, and leaves it
// open. It used to close it: in a message ping-pong, a receiver that had
// spun there closed every open with its peer's message in the ring, which
// counted as an open that bought nothing, and the opens were put off.
// A first message that does not match still closes it, and the store
// selects, as before.
func TestLockedReceiveTakesFromOpenRing(t *testing.T) {
	q := newQueue(t)
	ctx := context.Background()
	reopened(t, q)
	require.NoError(t, q.Send(ctx, 2, []byte("reply")))
	m := []Msg{{Data: make([]byte, 8)}}
	n, err := q.recvMsgs(ctx, m, 2, 0, true) // as Recv calls it after its spin
	require.NoError(t, err)
	require.Equal(t, 1, n)
	assert.Equal(t, "reply", string(m[0].Data[:m[0].N]))
	assert.Equal(t, int64(2), m[0].Type)
	open, head, tail, store := ringState(q)
	assert.True(t, open, "the ring stays open")
	assert.Equal(t, head, tail)
	assert.Zero(t, store)
	assert.Zero(t, q.v.ctl.useless, "an open that bought something")
	ds, err := q.Stat()
	require.NoError(t, err)
	assert.Zero(t, ds.Qnum)
	assert.Equal(t, kernel.Getpid(), ds.Lrpid)

	require.NoError(t, q.Send(ctx, 1, []byte("one")))
	require.NoError(t, q.Send(ctx, 3, []byte("three")))
	n, err = q.recvMsgs(ctx, m, 3, 0, true)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	assert.Equal(t, "three", string(m[0].Data[:m[0].N]))
	open, _, _, _ = ringState(q)
	assert.False(t, open, "the first message did not match: closed, the store selected")
	n, typ, err := q.TryRecv(m[0].Data, 0, 0)
	require.NoError(t, err)
	assert.Equal(t, "one", string(m[0].Data[:n]))
	assert.Equal(t, int64(1), typ)
	require.NoError(t, q.Check())
}

// Typed receives through the ring: the first message when it matches;
// ENOMSG when nothing in the ring matches; E2BIG leaving it queued.
func TestRingTyped(t *testing.T) {
	q := newQueue(t)
	ctx := context.Background()
	buf := make([]byte, 8)
	require.NoError(t, q.Send(ctx, 5, []byte("five")))
	require.NoError(t, q.Send(ctx, 6, []byte("six")))
	_, _, err := q.TryRecv(buf, 7, 0)
	assert.ErrorIs(t, err, ErrEmpty)
	open, _, _, _ := ringState(q)
	assert.True(t, open, "nothing matched: the ring stays open")
	_, _, err = q.TryRecv(buf[:3], 5, 0)
	assert.ErrorIs(t, err, kernel.E2BIG)
	n, typ, err := q.TryRecv(buf, 6, MSG_EXCEPT)
	require.NoError(t, err)
	assert.Equal(t, "five", string(buf[:n]))
	assert.Equal(t, int64(5), typ)
	n, _, err = q.TryRecv(buf[:2], 6, MSG_NOERROR)
	require.NoError(t, err)
	assert.Equal(t, "si", string(buf[:n]))
	open, head, tail, _ := ringState(q)
	assert.True(t, open)
	assert.Equal(t, head, tail)
}

// Batch receives through the ring take several messages with one CAS, in
// order, stopping before one too big for its buffer (E2BIG if it is the
// first), truncating with MSG_NOERROR.
func TestRingRecvBatch(t *testing.T) {
	q := newQueue(t)
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		n := 4
		if i == 6 {
			n = 40
		}
		require.NoError(t, q.Send(ctx, int64(1+i), []byte(fmt.Sprintf("%-*d", n, i))))
	}
	ms := make([]Msg, 4)
	for i := range ms {
		ms[i].Data = make([]byte, 8)
	}
	texts := func(k int) []string {
		var out []string
		for _, m := range ms[:k] {
			out = append(out, fmt.Sprintf("%d:%s", m.Type, m.Data[:m.N]))
		}
		return out
	}
	k, err := q.TryRecvBatch(ms, 0, 0)
	require.NoError(t, err)
	assert.Equal(t, []string{"1:0   ", "2:1   ", "3:2   ", "4:3   "}, texts(k))
	k, err = q.TryRecvBatch(ms, 0, 0)
	require.NoError(t, err)
	assert.Equal(t, []string{"5:4   ", "6:5   "}, texts(k), "stops before the long one")
	_, err = q.TryRecvBatch(ms, 0, 0)
	assert.ErrorIs(t, err, kernel.E2BIG)
	k, err = q.TryRecvBatch(ms, 0, MSG_NOERROR)
	require.NoError(t, err)
	assert.Equal(t, []string{"7:6       ", "8:7   ", "9:8   ", "10:9   "}, texts(k))
	open, head, tail, store := ringState(q)
	assert.True(t, open)
	assert.Equal(t, head, tail)
	assert.Zero(t, store, "all through the ring")
	_, err = q.TryRecvBatch(ms, 0, 0)
	assert.ErrorIs(t, err, ErrEmpty)
	require.NoError(t, q.Check())
}

// A sender that waits for room sleeps with the ring open; a receive through
// the ring wakes it.
func TestRingSenderSleeps(t *testing.T) {
	q := newQueue(t)
	require.NoError(t, q.Set(DS{Perm: statPerm(t, q), Qbytes: 20}))
	ctx := context.Background()
	require.NoError(t, q.Send(ctx, 1, make([]byte, 15)))
	done := make(chan error)
	go func() { done <- q.Send(ctx, 1, make([]byte, 10)) }()
	waitSlots(t, q, 1)
	open, _, _, _ := ringState(q)
	assert.True(t, open, "a sleeping sender leaves the ring open")
	assert.Equal(t, uint32(1), q.v.rc.sendWake.Load())
	require.NoError(t, q.Check())
	buf := make([]byte, 32)
	n, _, err := q.TryRecv(buf, 0, 0)
	require.NoError(t, err)
	assert.Equal(t, 15, n)
	require.NoError(t, <-done)
	assert.Zero(t, q.v.rc.sendWake.Load())
	n, _, err = q.TryRecv(buf, 0, 0)
	require.NoError(t, err)
	assert.Equal(t, 10, n)
	require.NoError(t, q.Check())
}

// More small messages than ring slots: the ring fills, the rest go to the
// store behind them, in order.
func TestRingFull(t *testing.T) {
	q := newQueueConfig(t, Config{Capacity: 512}) // a ring of minRing slots
	require.Equal(t, uint32(minRing), q.v.nslots)
	var want []string
	for i := 0; i < 3*minRing; i++ {
		s := fmt.Sprintf("%d", i)
		require.NoError(t, q.TrySend(1, []byte(s)))
		want = append(want, s)
	}
	require.NoError(t, q.Check())
	ds, err := q.Stat()
	require.NoError(t, err)
	assert.Equal(t, uint64(3*minRing), ds.Qnum)
	assert.Equal(t, want, drain(t, q))
	require.NoError(t, q.Check())
}

// Many goroutines sending messages of mixed sizes (ring and store) and
// receiving FIFO and typed, while others call Stat and Check: every
// message arrives once, intact, in per-sender order for FIFO receivers;
// Stat never shows more than qbytes.
func TestRingConcurrent(t *testing.T) {
	q := newQueueConfig(t, Config{Capacity: 4096})
	const senders, perSender = 4, 3000
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(s)))
			buf := make([]byte, 300)
			for i := 0; i < perSender; i++ {
				n := 8 + rng.Intn(24)
				if rng.Intn(20) == 0 {
					n = slotText + 1 + rng.Intn(150)
				}
				binary.LittleEndian.PutUint32(buf, uint32(s))
				binary.LittleEndian.PutUint32(buf[4:], uint32(i))
				for j := 8; j < n; j++ {
					buf[j] = byte(i + j)
				}
				if err := q.Send(ctx, int64(1+s), buf[:n]); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var got [senders][]bool
	for s := range got {
		got[s] = make([]bool, perSender)
	}
	var mu sync.Mutex
	var total atomic.Int64
	check := func(m []byte) {
		s := int(binary.LittleEndian.Uint32(m))
		i := int(binary.LittleEndian.Uint32(m[4:]))
		for j := 8; j < len(m); j++ {
			if m[j] != byte(i+j) {
				t.Errorf("message %d/%d corrupt at %d", s, i, j)
				return
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if got[s][i] {
			t.Errorf("message %d/%d twice", s, i)
		}
		got[s][i] = true
		total.Add(1)
	}
	var rwg sync.WaitGroup
	for r := 0; r < 3; r++ {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			buf := make([]byte, 300)
			var mine [senders]int
			for s := range mine {
				mine[s] = -1
			}
			batch := make([]Msg, 4)
			for i := range batch {
				batch[i].Data = make([]byte, 300)
			}
			for total.Load() < senders*perSender {
				switch r {
				case 0: // FIFO, one by one
					n, _, err := q.TryRecv(buf, 0, 0)
					if err == nil {
						s, i := int(binary.LittleEndian.Uint32(buf)), int(binary.LittleEndian.Uint32(buf[4:]))
						if i <= mine[s] {
							t.Errorf("receiver %d: sender %d's %d after %d", r, s, i, mine[s])
						}
						mine[s] = i
						check(buf[:n])
					}
				case 1: // FIFO batches
					k, err := q.TryRecvBatch(batch, 0, 0)
					if err == nil {
						for _, m := range batch[:k] {
							s, i := int(binary.LittleEndian.Uint32(m.Data)), int(binary.LittleEndian.Uint32(m.Data[4:]))
							if i <= mine[s] {
								t.Errorf("receiver %d: sender %d's %d after %d", r, s, i, mine[s])
							}
							mine[s] = i
							check(m.Data[:m.N])
						}
					}
				default: // typed
					typ := int64(1 + rand.Intn(senders))
					n, rt, err := q.TryRecv(buf, typ, 0)
					if err == nil {
						if rt != typ {
							t.Errorf("typed receive of %d got %d", typ, rt)
						}
						s, i := int(binary.LittleEndian.Uint32(buf)), int(binary.LittleEndian.Uint32(buf[4:]))
						if i <= mine[s] {
							t.Errorf("typed receiver: sender %d's %d after %d", s, i, mine[s])
						}
						mine[s] = i
						check(buf[:n])
					}
				}
				if t.Failed() || ctx.Err() != nil {
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	var owg sync.WaitGroup
	owg.Add(1)
	go func() {
		defer owg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ds, err := q.Stat()
			if err != nil {
				t.Error(err)
				return
			}
			if ds.Qnum > ds.Qbytes || ds.Cbytes > ds.Qbytes {
				t.Errorf("Stat: qnum %d, cbytes %d over qbytes %d", ds.Qnum, ds.Cbytes, ds.Qbytes)
			}
			if i%8 == 0 {
				if err := q.Check(); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	wg.Wait()
	rwg.Wait()
	close(stop)
	owg.Wait()
	for s := range got {
		for i, ok := range got[s] {
			if !ok {
				t.Fatalf("message %d/%d never arrived", s, i)
			}
		}
	}
	require.NoError(t, q.Check())
}

// A sender killed at each step of a send through the ring leaves the whole
// message (after the commit) or nothing, and the ring goes on: a claim it
// left at the tail is given back.
func TestCrashRingSender(t *testing.T) {
	for _, c := range []struct {
		step string
		sent bool
	}{
		{"send-locked", false}, {"ring-claimed", false}, {"send-alloc", false}, {"send-written", false},
		{"ring-written", false}, {"send-linked", true},
	} {
		t.Run(c.step, func(t *testing.T) {
			q := newQueue(t)
			gen := q.seg.DeadGen()
			p := testutil.Start(t, "crasher", []string{fmt.Sprint(q.ID()), "send", "5"},
				testutil.Env(KillAtEnv+"="+c.step+":3"))
			killed(t, q, p, gen)
			_, head, tail, store := ringState(q)
			assert.Zero(t, store, "the sends went through the ring")
			want := []string{"m0", "m1"}
			if c.sent {
				want = append(want, "m2")
			}
			assert.Equal(t, uint32(len(want)), tail-head)
			// The ring is still usable: the next send waits for the dead
			// claim, finds its claimer dead, and the lock path settles
			// it (unless the registry's repair did already).
			require.NoError(t, q.Send(context.Background(), 1, []byte("after")))
			require.NoError(t, q.Check())
			assert.Equal(t, append(want, "after"), drain(t, q))
			require.NoError(t, q.Check())
		})
	}
}

// claimAlive: a claim bearing this process's task id is its own only if
// it bears its start time too; else a dead image whose id was reused made
// it, and it is given back like any dead process's.
func TestClaimAliveReusedPid(t *testing.T) {
	own := claimBase(shm.Identity())
	assert.True(t, claimAlive(claimed|own))
	assert.False(t, claimAlive(claimed|own^1<<startShift), "our pid, another start time")
	assert.False(t, claimAlive(claimed), "no pid")
}

// A receiver killed at each step of a receive through the ring loses at
// most the message it was taking (none before the commit).
func TestCrashRingReceiver(t *testing.T) {
	for _, c := range []struct {
		step  string
		taken bool
	}{
		{"recv-locked", false}, {"recv-copied", false}, {"ring-taken", false},
		{"recv-unlinked", true}, {"recv-freed", true},
	} {
		t.Run(c.step, func(t *testing.T) {
			q := newQueue(t)
			for i := 0; i < 5; i++ {
				require.NoError(t, q.Send(context.Background(), 1, []byte(fmt.Sprintf("m%d", i))))
			}
			gen := q.seg.DeadGen()
			p := testutil.Start(t, "crasher", []string{fmt.Sprint(q.ID()), "recv", "5"},
				testutil.Env(KillAtEnv+"="+c.step+":3"))
			p.Expect("m0", lineWait)
			p.Expect("m1", lineWait)
			killed(t, q, p, gen)
			open, _, _, store := ringState(q)
			assert.True(t, open)
			assert.Zero(t, store)
			want := []string{"m3", "m4"}
			if !c.taken {
				want = append([]string{"m2"}, want...)
			}
			assert.Equal(t, want, drain(t, q))
			require.NoError(t, q.Check())
		})
	}
}

// A locked call that dies moving the ring's messages into the store, after
// linking them there and before moving the ring's head past them: the
// next lock holder finishes the move from the record; no message is lost
// or duplicated.
func TestCrashFlusher(t *testing.T) {
	q := newQueue(t)
	gen := q.seg.DeadGen()
	p := testutil.Start(t, "ringcrasher", []string{fmt.Sprint(q.ID()), "flush", "5"},
		testutil.Env(KillAtEnv+"=ring-flushed"))
	p.Expect("sent", lineWait)
	killed(t, q, p, gen)
	// Died holding the lock with its intent recorded (unless the
	// registry's repair already took over): Check takes the lock over.
	require.NoError(t, q.Check())
	assert.Zero(t, q.v.ctl.flushOn)
	assert.Equal(t, []string{"m0", "m1", "m2", "m3", "m4"}, drain(t, q))
	require.NoError(t, q.Check())
	require.NoError(t, q.Send(context.Background(), 1, []byte("after")))
	assert.Equal(t, []string{"after"}, drain(t, q))
}

// White-box: a claim at the tail by a process that died is given back by
// repair (and by a lock holder that closes the ring); a live one is left.
func TestRingDeadClaim(t *testing.T) {
	q := newQueue(t)
	ctx := context.Background()
	require.NoError(t, q.Send(ctx, 1, []byte("m0")))
	p := testutil.Start(t, "crasher", []string{"-1", "send", "0"})
	assert.Equal(t, 1, p.Wait(lineWait)) // a pid that is now dead
	st, _ := kernel.ProcessStartTime(kernel.Getpid())
	dead := claimBase(p.Pid(), uint32(st))
	v := q.v
	tp := rpos(v.rc.tail.Load())
	s := &v.ring[tp&v.mask]
	sv := s.seq.Load()
	forged := claimed | dead | 2<<lenShift | uint64(tp&cposMask)
	s.seq.Store(forged)
	require.NoError(t, v.checkRing(), "a claim at the tail is a sender writing")
	q.seg.BumpDeadGen()
	require.NoError(t, q.Send(ctx, 1, []byte("m1"))) // repairs first
	assert.NotEqual(t, forged, s.seq.Load())
	_ = sv
	assert.Equal(t, []string{"m0", "m1"}, drain(t, q))
	require.NoError(t, q.Check())
}

// The ring's words and slots are hostile input too: whatever they hold,
// calls return (errors or not) without panicking, Check reports it, and a
// rebuild after a dead lock holder makes the ring sound again.
func TestRingCorrupt(t *testing.T) {
	q := newQueue(t)
	v := q.v
	rng := rand.New(rand.NewSource(3))
	fill := func() {
		for i := 0; i < 6; i++ {
			_ = q.TrySend(int64(1+i%3), make([]byte, 10*i))
		}
	}
	cases := map[string]func(){
		"head past tail":   func() { v.rc.head.Store(ringWord(false, rpos(v.rc.tail.Load())+5, 0)) },
		"tail far ahead":   func() { v.rc.tail.Add(uint64(v.nslots+3) << 32) },
		"bytes":            func() { v.rc.tail.Add(7) },
		"slot word":        func() { v.ring[rpos(v.rc.head.Load())&v.mask].seq.Store(12345) },
		"slot length":      func() { v.ring[rpos(v.rc.head.Load())&v.mask].len = 999 },
		"slot type":        func() { v.ring[rpos(v.rc.head.Load())&v.mask].mtype = -4 },
		"open with store":  func() { v.ctl.head = 1 },
		"half closed":      func() { closeWord(&v.rc.head) },
		"flush never done": func() { v.ctl.flushOn = 1; v.ctl.flushFirst = 3; v.ctl.flushTo = 77 },
	}
	for name, corrupt := range cases {
		v.repair(true)
		require.NoError(t, v.check(), name)
		drain(t, q)
		v.ctl.openSkip = 0
		v.maybeOpen()
		require.True(t, v.isOpen(), name)
		fill()
		_, head, tail, _ := ringState(q)
		require.Equal(t, uint32(6), tail-head, name)
		corrupt()
		assert.ErrorIs(t, v.check(), ErrCorrupt, name)
		for k := 0; k < 10; k++ {
			_, _, _ = q.TryRecv(make([]byte, MSGMAX), int64(rng.Intn(7)-3), rng.Intn(2)*MSG_NOERROR)
			_ = q.TrySend(int64(1+rng.Intn(3)), make([]byte, rng.Intn(200)))
		}
		v.repair(true)
		assert.NoError(t, v.check(), name)
		v.maybeOpen()
	}
	// Random scribbles over the ring.
	raw := make([]byte, 8)
	for i := 0; i < 200; i++ {
		v.repair(true)
		require.NoError(t, v.check(), "round %d", i)
		v.ctl.openSkip = 0
		v.maybeOpen()
		fill()
		for k := 0; k < 4; k++ {
			rng.Read(raw)
			w := binary.LittleEndian.Uint64(raw)
			switch rng.Intn(5) {
			case 0:
				v.ring[rng.Intn(len(v.ring))].seq.Store(w)
			case 1:
				v.ring[rng.Intn(len(v.ring))].len = uint32(w)
			case 2:
				v.rc.head.Store(w)
			case 3:
				v.rc.tail.Store(w)
			case 4:
				v.rc.pub.Store(w)
			}
		}
		for k := 0; k < 5; k++ {
			_, _, _ = q.TryRecv(make([]byte, MSGMAX), int64(rng.Intn(7)-3), rng.Intn(2)*MSG_NOERROR)
			_ = q.TrySend(int64(1+rng.Intn(3)), make([]byte, rng.Intn(200)))
		}
		_, _ = q.Stat()
		_ = q.Check()
	}
	v.repair(true)
	require.NoError(t, v.check())
	v.maybeOpen()
}

// TestSpinSeesEarlyChange: a spin watches the ring word from before the
// caller's last look, so a message sent between that look and the spin
// ends the spin at once instead of after its whole budget (which would
// count as a spin that saw nothing: spinFails).
func TestSpinSeesEarlyChange(t *testing.T) {
	q := newQueue(t)
	rc := q.v.rc
	var st spinner
	defer st.finish(q)
	require.True(t, q.ringSpin(&st, &rc.tail), "the first call only takes the value")
	open, _, _, _ := ringState(q)
	require.True(t, open)
	require.NoError(t, q.TrySend(1, []byte("x"))) // between the look and the spin
	require.True(t, q.ringSpin(&st, &rc.tail))
	assert.Zero(t, q.spinFails.Load(), "the spin saw the change")

	// The lock path's spin, given the words as they were under the lock.
	h, tl := rc.head.Load(), rc.tail.Load()
	buf := make([]byte, 8)
	_, _, err := q.TryRecv(buf, 0, 0)
	require.NoError(t, err)
	q.spin(&q.v.ctl.sendGen, q.v.ctl.sendGen.Load(), h, tl)
	assert.Zero(t, q.spinFails.Load(), "the spin saw the change")
	require.NoError(t, q.Check())
}

// The pub hint (ring.go) only ever speeds a receive up: each commit
// stores the tail's new position in it; a stale or wrong value (behind the
// head, far ahead, garbage) neither loses nor invents a message, and an
// empty ring is still reported from the tail itself; closing the ring
// changes it, so that a receiver spinning on it sees the close at once.
func TestRingPubHint(t *testing.T) {
	q := newQueue(t)
	rc := q.v.rc
	ctx := context.Background()
	buf := make([]byte, 16)
	for i := 0; i < 3; i++ {
		require.NoError(t, q.Send(ctx, 1, []byte(fmt.Sprintf("m%d", i))))
		assert.Equal(t, rpos(rc.tail.Load()), uint32(rc.pub.Load()), "each commit stores the tail's position")
	}
	_, head, _, _ := ringState(q)
	for i, hint := range []uint64{0, uint64(head - 1), uint64(head+q.v.nslots+5) | 1<<62} {
		rc.pub.Store(hint)
		q.tailSeen.Store(0)
		n, _, err := q.TryRecv(buf, 0, 0)
		require.NoError(t, err, "hint %#x", hint)
		assert.Equal(t, fmt.Sprintf("m%d", i), string(buf[:n]), "hint %#x", hint)
	}
	for _, hint := range []uint64{0, uint64(rpos(rc.head.Load())), uint64(rpos(rc.head.Load()) + 1), ^uint64(0)} {
		rc.pub.Store(hint) // (ahead of the tail: a forged hint; the next slot holds no claim for its position)
		q.tailSeen.Store(0)
		_, _, err := q.TryRecv(buf, 0, 0)
		assert.ErrorIs(t, err, ErrEmpty, "hint %#x", hint)
	}

	// Batches: a hint behind the head or ahead of the tail takes what is
	// there, in order, and nothing else.
	for _, hint := range []uint64{0, uint64(rpos(rc.head.Load()) + 2), uint64(rpos(rc.head.Load()) + 9)} {
		for i := 0; i < 5; i++ {
			require.NoError(t, q.Send(ctx, 1, []byte(fmt.Sprintf("b%d", i))))
		}
		rc.pub.Store(hint)
		msgs := make([]Msg, 8)
		for i := range msgs {
			msgs[i].Data = make([]byte, 16)
		}
		got := 0
		for got < 5 {
			n, err := q.RecvBatch(ctx, msgs[got:], 0, IPC_NOWAIT)
			require.NoError(t, err, "hint %#x", hint)
			got += n
		}
		for i := 0; i < 5; i++ {
			assert.Equal(t, fmt.Sprintf("b%d", i), string(msgs[i].Data[:msgs[i].N]), "hint %#x", hint)
		}
		_, err := q.RecvBatch(ctx, msgs, 0, IPC_NOWAIT)
		assert.ErrorIs(t, err, ErrEmpty, "hint %#x", hint)
	}

	// A spin on a hint with bit 63 set (garbage) waits as any other,
	// and ends when the ring closes.
	rc.pub.Store(^uint64(0))
	var st spinner
	defer st.finish(q)
	require.True(t, q.ringSpin(&st, &rc.pub), "the first call only takes the value")
	assert.Equal(t, ^uint64(0), st.seen)
	var wl wakeList
	q.lock(&wl)
	q.v.setClosed()
	q.unlock(&wl)
	require.True(t, q.ringSpin(&st, &rc.pub))
	assert.Zero(t, q.spinFails.Load(), "the spin saw the close")
	require.NoError(t, q.Check())
}

// Stream mode (ring.go): streamQuick quick receive spins in a row turn it
// on; a look that finds a run of streamRun messages keeps it on; a shorter
// run (a reply), a slow answer, or a spin that sees nothing turns it off.
// No message is missed either way.
func TestStreamMode(t *testing.T) {
	q := newQueue(t)
	tx, err := OpenID(q.ID()) // the sender's handle
	require.NoError(t, err)
	defer tx.Close()
	rc := q.v.rc
	buf := make([]byte, 8)
	// spin looks, has send sent (by another goroutine after delay), and
	// spins for them as a receiver would; then it receives what came.
	spin := func(send int, delay time.Duration) bool {
		var st spinner
		defer st.finish(q)
		require.True(t, q.ringSpin(&st, &rc.pub), "the first call only takes the value")
		done := make(chan error, 1)
		go func() {
			time.Sleep(delay)
			for range send {
				if err := tx.TrySend(1, []byte("x")); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		if delay == 0 {
			require.NoError(t, <-done)
		}
		ok := q.ringSpin(&st, &rc.pub)
		if delay != 0 {
			require.NoError(t, <-done)
		}
		for range send {
			_, _, err := q.TryRecv(buf, 0, 0)
			require.NoError(t, err)
		}
		return ok
	}

	for i := 1; i <= streamQuick; i++ {
		require.True(t, spin(1, 0))
		require.EqualValues(t, i, q.streamy.Load(), "quick spins count")
	}
	require.True(t, spin(streamRun, 0))
	assert.EqualValues(t, streamQuick, q.streamy.Load(), "a run keeps stream mode")
	require.True(t, spin(1, 0))
	assert.Zero(t, q.streamy.Load(), "a reply ends stream mode")

	q.streamy.Store(streamQuick)
	t0 := time.Now()
	assert.False(t, spin(0, 0))
	assert.GreaterOrEqual(t, time.Since(t0), streamGap, "it looked more than once")
	assert.Zero(t, q.streamy.Load(), "a spin that sees nothing ends stream mode")

	q.streamy.Store(streamQuick - 1)
	spin(1, 200*time.Microsecond) // past the budget, or at least 128 looks
	assert.Zero(t, q.streamy.Load(), "a slow answer ends the count")

	// A handle that sends between its receives answers: its receives
	// are replies, which neither count towards stream mode nor spin in it.
	for range 2 * streamQuick {
		require.NoError(t, q.TrySend(2, []byte("reply")))
		_, _, err := q.TryRecv(buf, 2, 0)
		require.NoError(t, err)
		require.True(t, spin(1, 0))
		require.Zero(t, q.streamy.Load(), "quick spins of an answerer do not count")
	}
	q.streamy.Store(streamQuick)
	require.NoError(t, q.TrySend(2, []byte("reply")))
	_, _, err = q.TryRecv(buf, 2, 0)
	require.NoError(t, err)
	require.True(t, spin(1, 0))
	assert.Zero(t, q.streamy.Load(), "an answerer leaves stream mode and its quick spin does not count")
	assert.False(t, q.sent.Load(), "the mark is used up")
	require.NoError(t, q.Check())
}

// waitOpen (ring.go): a batch sender that finds the ring closed while the
// store holds messages and no receiver sleeps waits for the receive that
// empties the store to open the ring, and then sends through it. With a
// receiver asleep (which keeps the ring closed until a send wakes it) it
// does not wait.
func TestWaitOpen(t *testing.T) {
	q := newQueue(t)
	ctx := context.Background()
	buf := make([]byte, 256)
	// A big message closes the ring and keeps it closed (bigLast) until a
	// small one is sent through the lock: nothing to wait for.
	require.NoError(t, q.Send(ctx, 1, make([]byte, slotText+1)))
	open, _, _, store := ringState(q)
	require.False(t, open)
	require.NotZero(t, store)
	var st spinner
	require.NoError(t, q.enter())
	st.on, st.budget, st.polite = true, 2*time.Second, -1
	assert.False(t, q.waitOpen(&st))
	st.finish(q)
	// After a small one through the lock the receive that empties the
	// store opens it.
	require.NoError(t, q.Send(ctx, 1, []byte("small")))
	open, _, _, _ = ringState(q)
	require.False(t, open)
	_, _, err := q.TryRecv(buf, 0, 0)
	require.NoError(t, err)

	spin := func() (bool, time.Duration) {
		var st spinner
		require.NoError(t, q.enter())
		st.on, st.budget, st.polite = true, 10*time.Second, -1
		defer st.finish(q)
		t0 := time.Now()
		ok := q.waitOpen(&st)
		return ok, time.Since(t0)
	}
	errc := make(chan error, 1)
	t0 := time.Now() // (before the receiver's sleep starts: the wait covers it)
	go func() {
		time.Sleep(5 * time.Millisecond)
		_, _, err := q.TryRecv(buf, 0, 0)
		errc <- err
	}()
	ok, _ := spin()
	d := time.Since(t0)
	require.NoError(t, <-errc)
	require.True(t, ok, "the ring opened")
	assert.GreaterOrEqual(t, d, 5*time.Millisecond, "it waited for the receive")
	_, _, tail0, _ := ringState(q)
	msgs := []Msg{{Type: 1, Data: []byte("a")}, {Type: 1, Data: []byte("b")}, {Type: 1, Data: []byte("c")}}
	n, err := q.TrySendBatch(msgs)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	_, _, tail1, store := ringState(q)
	assert.Equal(t, tail0+3, tail1, "the batch went through the ring")
	assert.Zero(t, store)

	rctx, cancel := context.WithCancel(ctx)
	go func() {
		_, _, err := q.Recv(rctx, buf, 9, 0) // nothing of type 9: it sleeps
		errc <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); q.v.ctl.opensWhenEmpty(); {
		require.True(t, time.Now().Before(deadline), "the receiver never slept")
		time.Sleep(time.Millisecond)
	}
	ok, d = spin()
	assert.False(t, ok)
	assert.Less(t, d, 5*time.Second, "it did not spin its budget out for a sleeping receiver")
	cancel()
	assert.ErrorIs(t, <-errc, context.Canceled)
	for _, want := range []string{"a", "b", "c"} {
		n, _, err := q.TryRecv(buf, 0, 0)
		require.NoError(t, err)
		assert.Equal(t, want, string(buf[:n]))
	}
	require.NoError(t, q.Check())
}

// Warming (ring.go) changes nothing a receiver reads: with the ring nearly
// full, the slots a send warms hold messages not yet received, and each
// arrives intact and in order, lap after lap.
func TestRingWarmKeepsMessages(t *testing.T) {
	q := newQueueConfig(t, Config{Capacity: 512}) // a ring of minRing slots
	ns := int(q.v.nslots)
	require.Greater(t, ns, ringWarm)
	ctx := context.Background()
	buf := make([]byte, slotText)
	for lap := 0; lap < 3; lap++ {
		var want []string
		for i := 0; i < ns-1; i++ {
			m := fmt.Sprintf("lap %d message %02d %s", lap, i, strings.Repeat("x", i%8))
			require.NoError(t, q.Send(ctx, int64(1+i%3), []byte(m)))
			want = append(want, m)
		}
		open, _, _, store := ringState(q)
		require.True(t, open)
		require.Zero(t, store, "all through the ring")
		for i, m := range want {
			n, typ, err := q.TryRecv(buf, 0, 0)
			require.NoError(t, err)
			assert.Equal(t, m, string(buf[:n]))
			assert.Equal(t, int64(1+i%3), typ)
		}
		require.NoError(t, q.Check())
	}
}

// A batch that fills the ring's slots while the queue still has room goes
// on through the store (the ring is open, nothing to wait for).
func TestBatchPastFullRing(t *testing.T) {
	q := newQueueConfig(t, Config{Capacity: 512}) // a ring of minRing slots
	ns := int(q.v.nslots)
	msgs := make([]Msg, ns+8)
	for i := range msgs {
		msgs[i] = Msg{Type: 1, Data: []byte{byte(i)}}
	}
	done := make(chan error, 1)
	go func() {
		n, err := q.SendBatch(context.Background(), msgs)
		if err == nil && n != len(msgs) {
			err = fmt.Errorf("sent %d of %d", n, len(msgs))
		}
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("SendBatch past a full ring did not return")
	}
	buf := make([]byte, 8)
	for i := range msgs {
		n, _, err := q.TryRecv(buf, 0, 0)
		require.NoError(t, err)
		require.Equal(t, []byte{byte(i)}, buf[:n])
	}
	require.NoError(t, q.Check())
}

// A head word closed while the tail is open (a corrupt segment) does not
// keep a sender that finds the queue full spinning for ever: ringSpin's
// shortcut for a closed ring ("the caller's next look sees it closed") is
// taken once, and then the spin waits within its budget. The sender spun
// on, ignoring its context (FuzzCorruptMsg/155aa928908a7bff).
func TestSpinOnCorruptClosedHead(t *testing.T) {
	q := newQueue(t)
	require.NoError(t, q.Set(DS{Perm: statPerm(t, q), Qbytes: 1}))
	require.NoError(t, q.Send(context.Background(), 1, []byte("x"))) // (through the ring: full)
	rc := q.v.rc
	rc.head.Store(rc.head.Load() | ringClosed)
	q.wokePeer.Store(false) // (so that the sender spins: spinBudget)
	q.spinFails.Store(0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	testutil.Returns(t, lineWait, "Send on a full queue whose head says closed", func() error {
		_ = q.Send(ctx, 1, []byte("y")) // (what it returns: the segment is corrupt)
		return nil
	})
	// The lock path closed the ring whole, and moved its message.
	assert.Equal(t, []string{"x"}, drain(t, q))
}
