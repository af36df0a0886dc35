package msgq

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/registry"
	"github.com/usysv/usysv/shm"
)

// TestPackageLevelRemoveDetaches: queues created, used and removed through
// the package-level functions do not stay attached to the process (each
// would keep its removed kernel segment alive and count against the host's
// SHMMNI: fuzz/FINDINGS.md F3, internal/chaos/FINDINGS.md F2), not even
// for a moment (F8: a loop like this one, detaching a second later, held
// thousands). A removed id keeps answering EINVAL.
func TestPackageLevelRemoveDetaches(t *testing.T) {
	base := testutil.SysVMappings(t)
	const n = 200
	var last int
	for i := 0; i < n; i++ {
		id, err := Get(IPC_PRIVATE, 0o600)
		require.NoError(t, err)
		require.NoError(t, Send(id, 1, []byte("x"), IPC_NOWAIT))
		_, err = Stat(id)
		require.NoError(t, err)
		require.NoError(t, Remove(id))
		last = id
		if i%20 == 19 {
			require.LessOrEqual(t, testutil.SysVMappings(t), base+2, "after %d queues", i+1)
		}
	}
	require.ErrorIs(t, Send(last, 1, []byte("x"), IPC_NOWAIT), kernel.EINVAL)
	require.LessOrEqual(t, testutil.SysVMappings(t), base+2)
}

// TestRemovedElsewhereDetaches: a cached queue removed by someone else
// (here through the registry directly, as another process would) and
// never touched again is detached when this process next opens another.
func TestRemovedElsewhereDetaches(t *testing.T) {
	c, err := registry.Default()
	require.NoError(t, err)
	base := testutil.SysVMappings(t)
	const n = 20
	for i := 0; i < n; i++ {
		id, err := Get(IPC_PRIVATE, 0o600)
		require.NoError(t, err)
		require.NoError(t, Send(id, 1, []byte("x"), IPC_NOWAIT)) // cached here
		require.NoError(t, c.Remove(shm.KindMsg, id))
	}
	id, err := Get(IPC_PRIVATE, 0o600)
	require.NoError(t, err)
	defer func() { require.NoError(t, Remove(id)) }()
	require.NoError(t, Send(id, 1, []byte("x"), IPC_NOWAIT))
	require.LessOrEqual(t, testutil.SysVMappings(t), base+2, "the %d removed queues are detached", n)
}

// TestRemoveDuringCalls: package-level calls of other goroutines racing
// the package-level Remove, which retires the cached handle they share
// (its words turn to zeros), get what Linux gives a call racing IPC_RMID:
// their result, EIDRM or EINVAL; never "corrupt", and never a torn
// message. (Before, a big message copied outside the lock found its waiter
// slot zeroed, and the call said the queue was corrupt.)
func TestRemoveDuringCalls(t *testing.T) {
	gone := func(err error) bool { return errors.Is(err, kernel.EINVAL) || errors.Is(err, kernel.EIDRM) }
	for i := 0; i < 40; i++ {
		id, err := Get(IPC_PRIVATE, 0o600)
		require.NoError(t, err)
		var wg sync.WaitGroup
		wg.Add(2)
		var sendErr, recvErr error
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				size := []int{MSGMAX, 100, 3000}[k%3]
				err := Send(id, 1, bytes.Repeat([]byte{byte(size % 251)}, size), IPC_NOWAIT)
				if err != nil && !errors.Is(err, ErrFull) {
					if !gone(err) {
						sendErr = err
					}
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			buf := make([]byte, MSGMAX)
			for {
				n, _, err := Recv(id, buf, 0, IPC_NOWAIT)
				if err == nil && !bytes.Equal(buf[:n], bytes.Repeat([]byte{byte(n % 251)}, n)) {
					recvErr = fmt.Errorf("a torn message of %d bytes", n)
					return
				}
				if err != nil && !errors.Is(err, ErrEmpty) {
					if !gone(err) {
						recvErr = err
					}
					return
				}
			}
		}()
		time.Sleep(time.Duration(rand.IntN(1200)) * time.Microsecond)
		require.NoError(t, Remove(id))
		wg.Wait()
		require.NoError(t, sendErr, "send, round %d", i)
		require.NoError(t, recvErr, "receive, round %d", i)
	}
}

// TestCallsAfterRemoval: package-level calls on a cached handle of a
// queue removed before they began (by another handle, as by another
// process) answer EINVAL, as Linux does, also while one of them retires
// the handle under the others. (Before, a send that found it removed and
// then saw the retirement said EIDRM.)
func TestCallsAfterRemoval(t *testing.T) {
	for i := 0; i < 100; i++ {
		id, err := Get(IPC_PRIVATE, 0o600)
		require.NoError(t, err)
		require.NoError(t, Send(id, 1, []byte{1}, IPC_NOWAIT)) // cached
		q, err := OpenID(id)
		require.NoError(t, err)
		require.NoError(t, q.Remove())
		require.NoError(t, q.Close())
		var wg sync.WaitGroup
		errs := make([]error, 4)
		start := make(chan struct{})
		for g := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if g == 0 {
					_, _, errs[g] = Recv(id, make([]byte, 8), 0, IPC_NOWAIT)
				} else {
					errs[g] = Send(id, 1, []byte{1}, IPC_NOWAIT)
				}
			}()
		}
		close(start)
		wg.Wait()
		for g, err := range errs {
			require.ErrorIs(t, err, kernel.EINVAL, "round %d, call %d", i, g)
		}
	}
}

// TestBlockedReceiverSeesHandOver: a receiver blocked in the package-level
// Recv gets what a send handed to it (here E2BIG: its buffer is too small)
// even when the queue is removed right after the send, although Remove
// drops and retires the cached handle it sleeps on (fuzz FINDINGS F10: it
// read its slot from the retired segment's zero words and said EIDRM).
func TestBlockedReceiverSeesHandOver(t *testing.T) {
	for i := 0; i < 50; i++ {
		id, err := Get(IPC_PRIVATE, 0o600)
		require.NoError(t, err)
		q, err := handle(id)
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() {
			_, _, err := Recv(id, nil, 0, 0)
			done <- err
		}()
		testutil.Eventually(t, 10*time.Second, "receiver queued", func() bool {
			for i := range q.v.slots {
				if q.v.slots[i].State.Load() == slotRecv {
					return true
				}
			}
			return false
		})
		require.NoError(t, Send(id, 1, []byte("x"), IPC_NOWAIT))
		require.NoError(t, Remove(id))
		require.ErrorIs(t, <-done, kernel.E2BIG, "iteration %d", i)
	}
}
