package msgq

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
)

// sysvMappings counts this process's SysV shm attaches.
func sysvMappings(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/maps")
	require.NoError(t, err)
	return strings.Count(string(b), "SYSV")
}

// TestPackageLevelRemoveDetaches: queues created, used and removed through
// the package-level functions do not stay attached to the process (each
// would keep its removed kernel segment alive and count against the host's
// SHMMNI: fuzz/FINDINGS.md F3, internal/chaos/FINDINGS.md F2).
func TestPackageLevelRemoveDetaches(t *testing.T) {
	base := sysvMappings(t)
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
		return sysvMappings(t) < base+n/10
	})
}
