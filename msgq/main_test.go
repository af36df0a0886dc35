package msgq

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// newQueue creates a fresh queue (mode 0600 unless given) removed when the
// test ends, after its invariants are checked.
func newQueue(t testing.TB, mode ...int) *Queue {
	t.Helper()
	return newQueueConfig(t, Config{}, mode...)
}

func newQueueConfig(t testing.TB, cfg Config, mode ...int) *Queue {
	t.Helper()
	m := 0o600
	if len(mode) > 0 {
		m = mode[0]
	}
	q, err := OpenConfig(testutil.Key(t), IPC_CREAT|IPC_EXCL|m, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		if q.enter() == nil {
			removed := q.seg.Removed()
			q.leave()
			if !removed {
				if err := q.Check(); err != nil {
					t.Errorf("queue invariants after the test: %v", err)
				}
			}
		}
		_ = q.Remove()
		_ = q.Close()
	})
	return q
}

// newKernelQueue creates a kernel queue for differential tests.
func newKernelQueue(t testing.TB, mode ...int) int {
	t.Helper()
	m := 0o600
	if len(mode) > 0 {
		m = mode[0]
	}
	id, err := kernel.Msgget(testutil.Key(t), IPC_CREAT|IPC_EXCL|m)
	require.NoError(t, err)
	testutil.Track(t, "msg", id)
	return id
}
