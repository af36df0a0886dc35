package msgq

import (
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
