package sem

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
)

// A blocked Op returns once its context's deadline passes, even if the
// wake-up for the expiry never comes (fuzz FINDINGS F14, formerly U3).
func TestOpDeadlineWithoutWakeup(t *testing.T) {
	s := newSet(t, 1)
	ctx := testutil.LostWakeupContext(20 * time.Millisecond)
	res := make(chan error, 1)
	go func() { res <- s.Op(ctx, Buf{Num: 0, Op: -1}) }()
	select {
	case err := <-res:
		require.True(t, errors.Is(err, context.DeadlineExceeded) && errors.Is(err, kernel.EINTR), "got %v", err)
	case <-time.After(10 * time.Second):
		require.NoError(t, s.SetVal(0, 1)) // let it go before failing
		t.Fatal("Op still blocked 10 s after its context's deadline")
	}
	n, err := s.GetNcnt(0)
	require.NoError(t, err)
	require.Zero(t, n, "the waiter left the queue")
}
