package registry

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

func TestSmoke(t *testing.T) {
	c := defaultClient(t)
	key := testutil.Key(t)
	id := mustGet(t, c, semReq(key, 3, kernel.IPC_CREAT|kernel.IPC_EXCL|0o640))
	id2, err := c.Get(semReq(key, 0, 0))
	require.NoError(t, err)
	require.Equal(t, id, id2)
	o, err := c.Stat(shm.KindSem, id)
	require.NoError(t, err)
	t.Logf("%+v", o)
	objs, err := c.List(shm.KindSem)
	require.NoError(t, err)
	t.Logf("%+v", objs)
	u, err := c.Info(shm.KindSem)
	require.NoError(t, err)
	t.Logf("%+v", u)
	ds, err := kernel.ShmctlStat(id)
	require.NoError(t, err)
	t.Logf("%+v", ds)
}
