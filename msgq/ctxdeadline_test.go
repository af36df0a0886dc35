package msgq

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
)

// A blocked Recv returns once its context's deadline passes, even if the
// wake-up for the expiry never comes (fuzz FINDINGS F14, formerly U3).
func TestRecvDeadlineWithoutWakeup(t *testing.T) {
	q := newQueue(t)
	ctx := testutil.LostWakeupContext(20 * time.Millisecond)
	res := make(chan error, 1)
	go func() {
		_, _, err := q.Recv(ctx, make([]byte, 8), 0, 0)
		res <- err
	}()
	select {
	case err := <-res:
		require.True(t, errors.Is(err, context.DeadlineExceeded), "got %v", err)
	case <-time.After(10 * time.Second):
		require.NoError(t, q.TrySend(1, []byte("x"))) // let it go before failing
		t.Fatal("Recv still blocked 10 s after its context's deadline")
	}
}
