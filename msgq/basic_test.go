package msgq

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRoundTrip(t *testing.T) {
	q := newQueue(t)
	ctx := context.Background()
	require.NoError(t, q.Send(ctx, 7, []byte("hello")))
	require.NoError(t, q.Send(ctx, 8, make([]byte, 1000)))
	require.NoError(t, q.Check())
	buf := make([]byte, 2000)
	n, typ, err := q.Recv(ctx, buf, 0, 0)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(buf[:n]))
	assert.Equal(t, int64(7), typ)
	n, typ, err = q.Recv(ctx, buf, 0, 0)
	require.NoError(t, err)
	assert.Equal(t, 1000, n)
	assert.Equal(t, int64(8), typ)
	require.NoError(t, q.Check())
}
