package sem

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/kernel"
)

// TestCloseAfterCanceledOp: a blocked Op ended by its context returns only
// once the context's wake-up has finished touching the set, so closing the
// handle right away (unmapping the segment) is safe. Before the fix the
// wake-up could write to the unmapped waiter slot and fault the process
// (fuzz/FINDINGS.md F4).
func TestCloseAfterCanceledOp(t *testing.T) {
	id, err := Get(IPC_PRIVATE, 1, 0o600)
	require.NoError(t, err)
	t.Cleanup(func() { _ = Remove(id) })
	for i := 0; i < 2000; i++ {
		h, err := OpenID(id)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Microsecond)
		err = h.Op(ctx, Buf{Num: 0, Op: -1})
		cancel()
		require.True(t, errors.Is(err, context.DeadlineExceeded) && errors.Is(err, kernel.EINTR), "iteration %d: %v", i, err)
		require.NoError(t, h.Close())
	}
	n, err := GetNcnt(id, 0)
	require.NoError(t, err)
	require.Zero(t, n, "no waiter left queued")
}
