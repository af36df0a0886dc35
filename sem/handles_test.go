package sem

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/registry"
	"github.com/usysv/usysv/shm"
)

// TestPackageLevelRemoveDetaches: sets created, used and removed through
// the package-level functions do not stay attached to the process (each
// would keep its removed kernel segment alive and count against the host's
// SHMMNI: fuzz/FINDINGS.md F1, internal/chaos/FINDINGS.md F2), not even
// for a moment (F8: a loop like this one, detaching a second later, held
// thousands). A removed id keeps answering EINVAL.
func TestPackageLevelRemoveDetaches(t *testing.T) {
	base := testutil.SysVMappings(t)
	const n = 200
	var last int
	for i := 0; i < n; i++ {
		id, err := Get(IPC_PRIVATE, 1, 0o600)
		require.NoError(t, err)
		require.NoError(t, SetVal(id, 0, 1))
		require.NoError(t, Op(id, []Buf{{Num: 0, Op: -1}}))
		require.NoError(t, Remove(id))
		last = id
		if i%20 == 19 {
			require.LessOrEqual(t, testutil.SysVMappings(t), base+2, "after %d sets", i+1)
		}
	}
	require.ErrorIs(t, Op(last, []Buf{{Num: 0, Op: 1}}), kernel.EINVAL)
	_, err := GetVal(last, 0)
	require.ErrorIs(t, err, kernel.EINVAL)
	require.LessOrEqual(t, testutil.SysVMappings(t), base+2)
}

// TestRemovedElsewhereDetaches: a cached set removed by someone else (here
// through the registry directly, as another process would) and never
// touched again is detached when this process next opens another set.
func TestRemovedElsewhereDetaches(t *testing.T) {
	c, err := registry.Default()
	require.NoError(t, err)
	base := testutil.SysVMappings(t)
	const n = 20
	for i := 0; i < n; i++ {
		id, err := Get(IPC_PRIVATE, 1, 0o600)
		require.NoError(t, err)
		require.NoError(t, SetVal(id, 0, 1)) // cached here
		require.NoError(t, c.Remove(shm.KindSem, id))
	}
	id, err := Get(IPC_PRIVATE, 1, 0o600)
	require.NoError(t, err)
	defer func() { require.NoError(t, Remove(id)) }()
	require.NoError(t, SetVal(id, 0, 1))
	require.LessOrEqual(t, testutil.SysVMappings(t), base+2, "the %d removed sets are detached", n)
}

// TestBlockedWaiterSeesRemoval: a waiter blocked through the package-level
// functions gets EIDRM when its set is removed, although Remove drops and
// retires the cached handle it sleeps on (fuzz FINDINGS F9: the retired
// segment's zero words read as a completed wait, and it returned nil).
func TestBlockedWaiterSeesRemoval(t *testing.T) {
	for i := 0; i < 50; i++ {
		id, err := Get(IPC_PRIVATE, 1, 0o600)
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- Op(id, []Buf{{Num: 0, Op: -1}}) }()
		testutil.Eventually(t, 10*time.Second, "waiter queued", func() bool {
			n, _ := GetNcnt(id, 0)
			return n == 1
		})
		require.NoError(t, Remove(id))
		require.ErrorIs(t, <-done, kernel.EIDRM, "iteration %d", i)
	}
}
