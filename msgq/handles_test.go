package msgq

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
)

// TestPackageLevelRemoveDetaches: queues created, used and removed through
// the package-level functions do not stay attached to the process (each
// would keep its removed kernel segment alive and count against the host's
// SHMMNI: fuzz/FINDINGS.md F3, internal/chaos/FINDINGS.md F2).
func TestPackageLevelRemoveDetaches(t *testing.T) {
	base := testutil.SysVMappings(t)
	const n = 200
	for i := 0; i < n; i++ {
		id, err := Get(IPC_PRIVATE, 0o600)
		require.NoError(t, err)
		require.NoError(t, Send(id, 1, []byte("x"), IPC_NOWAIT))
		_, err = Stat(id)
		require.NoError(t, err)
		require.NoError(t, Remove(id))
	}
	testutil.Eventually(t, 30*time.Second, "removed queues detached", func() bool {
		return testutil.SysVMappings(t) < base+n/10
	})
}
