package registry

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// Layouts the tests create objects with. The registry does not look inside
// the body, so any valid layout will do.
func semReq(key, nsems, flags int) GetRequest {
	n := nsems
	if n < 0 {
		n = 0
	}
	return GetRequest{Kind: shm.KindSem, Key: int32(key), Flags: flags, Count: nsems,
		Layout: shm.Params{Count: uint32(n), Waiters: 4, BodySize: uint64(8 * (n + 1))}}
}

const testCapacity = 2 * kernel.MSGMNB

func msgReq(key, flags int) GetRequest {
	return GetRequest{Kind: shm.KindMsg, Key: int32(key), Flags: flags,
		Layout: shm.Params{Capacity: testCapacity, MaxMsg: kernel.MSGMAX, Waiters: 4, BodySize: testCapacity},
		Param:  kernel.MSGMNB}
}

// defaultClient is the test binary's process-wide client (this process
// hosts the embedded registry on the binary's private socket).
func defaultClient(t testing.TB) *Client {
	t.Helper()
	c, err := Default()
	require.NoError(t, err)
	return c
}

// mustGet creates an object and removes it when the test ends.
func mustGet(t testing.TB, c *Client, req GetRequest) int {
	t.Helper()
	id, err := c.Get(req)
	require.NoError(t, err)
	cleanupObj(t, c, req.Kind, id)
	return id
}

func cleanupObj(t testing.TB, c *Client, kind shm.Kind, id int) {
	t.Cleanup(func() {
		if err := c.Remove(kind, id); err != nil {
			// Removed by the test itself, or by another user's IPC_RMID.
			require.ErrorIs(t, err, kernel.EINVAL)
		}
	})
}
