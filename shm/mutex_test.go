package shm_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// lockHelper starts a helper with segment s mapped.
func lockHelper(t *testing.T, s *shm.Segment) *testutil.Proc {
	t.Helper()
	p := testutil.Start(t, "shm", nil)
	mustCall(t, p, "map %d %d", s.ID(), s.Params().Kind)
	return p
}

// stoppedHolder starts a helper with segment s mapped that takes its lock
// and is then stopped (SIGSTOP; continued when the test ends).
func stoppedHolder(t *testing.T, s *shm.Segment) *testutil.Proc {
	t.Helper()
	p := lockHelper(t, s)
	mustCall(t, p, "lock")
	p.Signal(kernel.SIGSTOP)
	t.Cleanup(func() { _ = kernel.Kill(p.Pid(), kernel.SIGCONT) })
	testutil.Eventually(t, lineTimeout, "the helper to stop", func() bool { return testutil.ProcState(p.Pid()) == "T" })
	return p
}

// lockAsync calls Lock in a goroutine and delivers its result.
func lockAsync(m *shm.Mutex) <-chan bool {
	c := make(chan bool, 1)
	go func() { c <- m.Lock() }()
	return c
}

func TestMutexInProcess(t *testing.T) {
	s, err := shm.FromBytes(formatted(t, testParams()))
	require.NoError(t, err)
	m := s.Lock()
	assert.Zero(t, m.Holder())
	require.False(t, m.Lock(), "a free lock has no dead owner")
	assert.Equal(t, kernel.Getpid(), m.Holder())
	assert.False(t, m.TryLock(), "not reentrant")
	assert.False(t, m.RecoverIfDead(), "we are alive")
	m.Unlock()
	assert.Zero(t, m.Holder())
	assert.False(t, m.RecoverIfDead(), "a free lock is not recovered")
	require.True(t, m.TryLock())
	m.Unlock()
}

// TestMutexAcrossProcesses has a helper and this process take turns.
func TestMutexAcrossProcesses(t *testing.T) {
	s := newSegment(t, testParams())
	m := s.Lock()
	p := lockHelper(t, s)

	require.False(t, m.Lock())
	p.Send("lock")
	require.True(t, p.Quiet(3*shm.LivenessInterval), "the helper got a lock we hold")
	m.Unlock()
	v, err := answer(t, p)
	require.NoError(t, err)
	assert.Equal(t, []string{"false"}, v, "handed over by Unlock, no owner died")
	assert.Equal(t, p.Pid(), m.Holder())
	assert.False(t, m.TryLock())
	assert.False(t, m.RecoverIfDead(), "the helper is alive")

	c := lockAsync(m)
	mustCall(t, p, "unlock")
	assert.False(t, <-c)
	assert.Equal(t, kernel.Getpid(), m.Holder())
	m.Unlock()
}

// TestMutexExclusion counts under the lock from two processes at once; a
// lost update means two holders at once.
func TestMutexExclusion(t *testing.T) {
	s := newSegment(t, testParams())
	c, err := shm.At[uint64](s, s.Params().BodyOffset())
	require.NoError(t, err)
	const n = 100000
	p := lockHelper(t, s)
	p.Send("count %d", n)
	m := s.Lock()
	for i := 0; i < n; i++ {
		m.Lock()
		*c = *c + 1
		m.Unlock()
	}
	_, err = answer(t, p)
	require.NoError(t, err)
	m.Lock()
	assert.Equal(t, uint64(2*n), *c)
	m.Unlock()
}

// TestMutexOwnerKilled: a holder SIGKILLed inside its critical section
// leaves the lock to the next taker, who is told to repair.
func TestMutexOwnerKilled(t *testing.T) {
	s := newSegment(t, testParams())
	m := s.Lock()
	p := lockHelper(t, s)
	v := mustCall(t, p, "lock")
	require.Equal(t, []string{"false"}, v)
	p.Kill()
	assert.Equal(t, p.Pid(), m.Holder(), "a dead holder still holds the word")
	require.True(t, m.Lock(), "the taker learns that the owner died")
	assert.Equal(t, kernel.Getpid(), m.Holder())
	m.Unlock()
	require.False(t, m.Lock(), "recovered once, then an ordinary lock")
	m.Unlock()
}

// TestMutexOwnerExecd: a holder that execs inside its critical section
// is gone as surely as a dead one (its goroutine is, with the old image),
// though its pid and start time live on: the lock goes to the next taker,
// who is told to repair. Before the lock word named the sentinel thread,
// it stayed held until the new program exited.
func TestMutexOwnerExecd(t *testing.T) {
	s := newSegment(t, testParams())
	m := s.Lock()
	for _, asleep := range []bool{false, true} {
		p := lockHelper(t, s)
		require.Equal(t, []string{"false"}, mustCall(t, p, "lock"))
		// The word names a thread of the helper's other than its main one.
		task := m.HolderTask()
		assert.NotEqual(t, p.Pid(), task)
		assert.DirExists(t, fmt.Sprintf("/proc/%d/task/%d", p.Pid(), task))
		assert.Equal(t, p.Pid(), m.Holder())
		var c <-chan bool
		if asleep {
			c = lockAsync(m)
			time.Sleep(shm.LivenessInterval / 2)
			select {
			case <-c:
				t.Fatal("Lock returned while a live helper held the lock")
			default:
			}
		}
		p.Send("exec")
		p.Expect("ok", lineTimeout)
		mustCall(t, p, "pid") // the new image runs
		assert.NoDirExists(t, fmt.Sprintf("/proc/%d/task/%d", p.Pid(), task), "the exec ended the thread")
		if !asleep {
			c = lockAsync(m)
		}
		select {
		case died := <-c:
			require.True(t, died, "the taker learns that the owner is gone")
		case <-time.After(lineTimeout):
			t.Fatalf("the lock of an exec'd holder was not taken over (asleep %v)", asleep)
		}
		assert.Equal(t, kernel.Getpid(), m.Holder())
		m.Unlock()
		mustCall(t, p, "map %d %d", s.ID(), s.Params().Kind)
		require.Equal(t, []string{"false"}, mustCall(t, p, "lock"), "the new image takes the lock as anyone")
		assert.False(t, m.RecoverIfDead(), "the new image holds it, alive")
		mustCall(t, p, "unlock")
		p.Kill()
	}
}

// TestMutexOwnerKilledWhileWaiting: the waiter is already asleep when the
// holder dies.
func TestMutexOwnerKilledWhileWaiting(t *testing.T) {
	s := newSegment(t, testParams())
	m := s.Lock()
	p := lockHelper(t, s)
	mustCall(t, p, "lock")
	c := lockAsync(m)
	select {
	case <-c:
		t.Fatal("Lock returned while a live helper held the lock")
	case <-time.After(2 * shm.LivenessInterval):
	}
	p.Kill()
	require.True(t, <-c)
	m.Unlock()
}

func TestMutexRecoverIfDead(t *testing.T) {
	s := newSegment(t, testParams())
	m := s.Lock()
	p := lockHelper(t, s)
	mustCall(t, p, "lock")
	assert.False(t, m.RecoverIfDead())
	p.Kill()
	require.True(t, m.RecoverIfDead())
	assert.Equal(t, kernel.Getpid(), m.Holder())
	assert.False(t, m.RecoverIfDead(), "now we hold it")
	m.Unlock()
}

// TestMutexStoppedOwner: a holder that is stopped, not dead, keeps the lock
// however long it stays stopped; it is not taken over.
func TestMutexStoppedOwner(t *testing.T) {
	s := newSegment(t, testParams())
	m := s.Lock()
	p := stoppedHolder(t, s)

	c := lockAsync(m)
	select {
	case died := <-c:
		t.Fatalf("Lock took the lock from a stopped holder (ownerDied=%v)", died)
	case <-time.After(5 * shm.LivenessInterval):
	}
	assert.False(t, m.RecoverIfDead(), "a stopped holder is alive")
	assert.Equal(t, p.Pid(), m.Holder())

	p.Signal(kernel.SIGCONT)
	mustCall(t, p, "unlock")
	require.False(t, <-c, "handed over normally")
	assert.Equal(t, kernel.Getpid(), m.Holder())
	m.Unlock()
}

// TestMutexLockAsWithin: a wait for a lock that a stopped process holds
// ends with the deadline (ETIMEDOUT) or the context (its error), without
// the lock, and leaves the other sleepers' wait as it was: the holder's
// Unlock still hands the lock on. A free lock is taken whatever the
// context says.
func TestMutexLockAsWithin(t *testing.T) {
	s := newSegment(t, testParams())
	m := s.Lock()
	p := stoppedHolder(t, s)
	type result struct {
		died bool
		err  error
	}
	within := func(ctx context.Context, deadline time.Time) <-chan result {
		c := make(chan result, 1)
		go func() {
			died, err := m.LockAsWithin(ctx, deadline, shm.LockWord())
			c <- result{died, err}
		}()
		return c
	}
	wait := func(c <-chan result) result {
		t.Helper()
		select {
		case r := <-c:
			return r
		case <-time.After(lineTimeout):
			t.Fatal("LockAsWithin still waits")
			return result{}
		}
	}

	const limit = 20 * time.Millisecond
	r := wait(within(context.Background(), time.Now().Add(limit)))
	assert.Equal(t, kernel.ETIMEDOUT, r.err)
	other := lockAsync(m) // a sleeper without end
	ctx, cancel := context.WithCancel(context.Background())
	c := within(ctx, time.Time{})
	time.Sleep(limit) // (to let it sleep; the result is the same if not)
	cancel()
	r = wait(c)
	assert.Equal(t, context.Canceled, r.err)
	ctx, cancel = context.WithTimeout(context.Background(), limit)
	defer cancel()
	r = wait(within(ctx, time.Time{}))
	assert.Equal(t, context.DeadlineExceeded, r.err)
	assert.Equal(t, p.Pid(), m.Holder())

	p.Signal(kernel.SIGCONT)
	mustCall(t, p, "unlock")
	select {
	case died := <-other:
		require.False(t, died, "handed over normally")
	case <-time.After(lineTimeout):
		t.Fatal("the other sleeper was not handed the lock")
	}
	m.Unlock()
	r = wait(within(ctx, time.Now().Add(-time.Second)))
	require.NoError(t, r.err, "a free lock is taken")
	assert.Equal(t, kernel.Getpid(), m.Holder())
	m.Unlock()
}

// TestMutexAbandoned: a lock abandoned by its holder (a critical section
// cut short by a panic that was recovered) is taken over, with ownerDied,
// by the next taker in another process and in the holder's own, asleep
// or not, although the holder lives; after the repair it is an ordinary
// lock again.
func TestMutexAbandoned(t *testing.T) {
	s := newSegment(t, testParams())
	m := s.Lock()
	p := lockHelper(t, s)

	// Another process abandons; one of our goroutines is already asleep.
	require.Equal(t, []string{"false"}, mustCall(t, p, "lock"))
	c := lockAsync(m)
	require.True(t, p.Quiet(2*shm.LivenessInterval), "the helper got a lock we hold")
	select {
	case <-c:
		t.Fatal("Lock returned while the helper held the lock")
	default:
	}
	mustCall(t, p, "abandon")
	require.True(t, <-c, "a sleeper takes an abandoned lock over and is told to repair")
	assert.Equal(t, kernel.Getpid(), m.Holder())
	assert.False(t, m.RecoverIfDead(), "now we hold it")

	// This process abandons: the helper takes it over although we live.
	m.Abandon()
	assert.Equal(t, kernel.Getpid(), m.Holder(), "the word still names us")
	assert.Equal(t, []string{"true"}, mustCall(t, p, "lock"))
	mustCall(t, p, "unlock")

	// And a goroutine of ours: an abandoned lock is not "another goroutine
	// of ours" to wait for.
	require.False(t, m.Lock())
	m.Abandon()
	assert.False(t, m.TryLock())
	require.True(t, m.RecoverIfDead())
	m.Unlock()
	require.False(t, m.Lock(), "recovered once, then an ordinary lock")
	m.Unlock()
	assert.Equal(t, []string{"false"}, mustCall(t, p, "lock"), "and for others too")
	mustCall(t, p, "unlock")
}

// A section (Enter) is open from Enter until its Unlock or Abandon, and
// its number is never open again: a guard can tell its own section from
// one another goroutine opened since, through another Mutex value too.
func TestMutexSections(t *testing.T) {
	s := newSegment(t, testParams())
	m, other := s.Lock(), s.Lock()
	require.False(t, m.Lock())
	a := m.Enter()
	assert.True(t, m.Open(a))
	assert.True(t, other.Open(a), "the number is in the segment")
	m.Unlock()
	assert.False(t, m.Open(a), "ended by Unlock")

	require.False(t, other.Lock())
	b := other.Enter()
	assert.NotEqual(t, a, b)
	assert.False(t, m.Open(a), "a later section is not an earlier one")
	assert.True(t, m.Open(b))
	other.Abandon()
	assert.False(t, m.Open(b), "ended by Abandon")

	require.True(t, m.Lock(), "abandoned: taken over")
	c := m.Enter()
	assert.False(t, m.Open(a))
	assert.False(t, m.Open(b))
	assert.True(t, m.Open(c))
	m.Unlock()
}

// An abandoned waiter slot names this process with a start time that is
// not its own: a repair finds its owner dead.
func TestWaiterSlotAbandon(t *testing.T) {
	var w shm.WaiterSlot
	pid, start := kernel.Self()
	w.PID.Store(uint32(pid))
	w.Start.Store(start)
	require.True(t, kernel.ProcessAlive(pid, w.Start.Load()))
	w.Abandon()
	assert.Equal(t, uint32(pid), w.PID.Load())
	assert.False(t, kernel.ProcessAlive(pid, w.Start.Load()))
}

// TestMutexReusedPid: the lock word names a live process, but with another
// start time: the holder died and its pid was reused. The lock is taken over.
func TestMutexReusedPid(t *testing.T) {
	s := newSegment(t, testParams())
	p := lockHelper(t, s)
	start, err := kernel.ProcessStartTime(p.Pid())
	require.NoError(t, err)
	word, err := shm.At[uint64](s, 192)
	require.NoError(t, err)

	*word = uint64(uint32(start+1))<<32 | uint64(p.Pid())
	m := s.Lock()
	require.True(t, m.RecoverIfDead(), "the pid names another process now")
	m.Unlock()

	*word = uint64(uint32(start+1))<<32 | uint64(p.Pid())
	require.True(t, m.Lock())
	m.Unlock()

	// With the right start time the helper is the live holder.
	*word = uint64(uint32(start))<<32 | uint64(p.Pid())
	require.False(t, m.RecoverIfDead())
	*word = 0
}

// Holder names the process whose task the word names, even before that
// process has entered a section (LockAs and TryLockAs store no pid):
// before, it named the previous holder there.
func TestMutexHolderBeforeEnter(t *testing.T) {
	s := newSegment(t, testParams())
	m := s.Lock()
	p := lockHelper(t, s)
	mustCall(t, p, "lock")
	mustCall(t, p, "unlock")
	require.True(t, m.TryLockAs(shm.LockWord()))
	assert.Equal(t, kernel.Getpid(), m.Holder())
	m.Unlock()
}

// An abandoned word's start time is not its holder's, and never 0, which
// holderDead reads as "unknown: alive if the task is".
func TestAbandonedStart(t *testing.T) {
	for _, w := range []uint64{0x1234_0000_0042, 0xffffffff_00000042, 0x00000000_00000042} {
		a := shm.Abandoned(w)
		assert.NotEqual(t, w>>32, a>>32, "%#x", w)
		assert.NotZero(t, a>>32, "%#x", w)
		assert.Equal(t, uint32(w), uint32(a), "%#x: the task stays", w)
	}
}
