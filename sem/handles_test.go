package sem

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
)

// TestPackageLevelRemoveDetaches: sets created, used and removed through
// the package-level functions do not stay attached to the process (each
// would keep its removed kernel segment alive and count against the host's
// SHMMNI: fuzz/FINDINGS.md F1, internal/chaos/FINDINGS.md F2). A removed
// id keeps answering EINVAL.
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
	}
	require.ErrorIs(t, Op(last, []Buf{{Num: 0, Op: 1}}), kernel.EINVAL)
	_, err := GetVal(last, 0)
	require.ErrorIs(t, err, kernel.EINVAL)
	testutil.Eventually(t, 30*time.Second, "removed sets detached", func() bool {
		return testutil.SysVMappings(t) < base+n/10
	})
}
