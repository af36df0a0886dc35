package registry

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// cached reports whether c answers req from its get cache now.
func cached(c *Client, req GetRequest) bool {
	k, ok := cacheKey(req)
	if !ok {
		return false
	}
	_, hit := c.gets.lookup(c, k)
	return hit
}

// The get cache answers a repeated get of an existing key in the process,
// from the second answer on, and never once the object was removed,
// re-created under its key or had its permissions changed; a request
// that creates or must fail is never answered from it.
func TestGetCache(t *testing.T) {
	c := defaultClient(t)
	key := testutil.Key(t)
	req := msgReq(key, kernel.IPC_CREAT|0o600)
	id := mustGet(t, c, req)
	assert.False(t, cached(c, req), "a create is not cached")
	for i := 0; i < 3; i++ {
		got, err := c.Get(req)
		require.NoError(t, err)
		assert.Equal(t, id, got)
	}
	assert.True(t, cached(c, req), "answered twice: cached")
	plain := msgReq(key, 0)
	assert.False(t, cached(c, plain), "other flags: another entry")
	_, err := c.Get(msgReq(key, kernel.IPC_CREAT|kernel.IPC_EXCL|0o600))
	assert.ErrorIs(t, err, kernel.EEXIST, "IPC_CREAT|IPC_EXCL always asks the registry")

	// IPC_SET: the next get asks again (and is cached again).
	require.NoError(t, c.Set(shm.KindMsg, id, 0, 0, 0o640, kernel.MSGMNB))
	assert.False(t, cached(c, req))
	got, err := c.Get(req)
	require.NoError(t, err)
	assert.Equal(t, id, got)
	assert.True(t, cached(c, req))

	// Removed: ENOENT, the entry is gone and its segment detached; a new
	// object under the key is found.
	require.NoError(t, c.Remove(shm.KindMsg, id))
	assert.False(t, cached(c, req))
	_, err = c.Get(plain)
	assert.ErrorIs(t, err, kernel.ENOENT)
	assert.Zero(t, c.gets.n.Load(), "the removed object's segment is detached")
	id2 := mustGet(t, c, req)
	for i := 0; i < 2; i++ {
		got, err := c.Get(req)
		require.NoError(t, err)
		assert.Equal(t, id2, got)
	}
	assert.True(t, cached(c, req))

	// nsems is part of the request: a larger count than the set's is
	// EINVAL however often a smaller one was answered.
	ks := testutil.Key(t)
	sreq := semReq(ks, 2, kernel.IPC_CREAT|0o600)
	sid := mustGet(t, c, sreq)
	for i := 0; i < 3; i++ {
		got, err := c.Get(sreq)
		require.NoError(t, err)
		assert.Equal(t, sid, got)
	}
	assert.True(t, cached(c, sreq))
	_, err = c.Get(semReq(ks, 3, 0))
	assert.ErrorIs(t, err, kernel.EINVAL)
}

// The same seen from another user's process, against the kernel: its
// repeated gets stay right across IPC_SET (EACCES once the mode no longer
// lets it in, ok again after), IPC_RMID (ENOENT) and a re-creation under
// the same key (the new object).
func TestDiffGetCache(t *testing.T) {
	d := newDiffer(t)
	for _, kind := range []string{"sem", "msg"} {
		key := testutil.Key(t)
		get := func(who, want string) (string, string) {
			if kind == "sem" {
				return d.do(who, want, "semget %d 1 %#o", key, 0o600)
			}
			return d.do(who, want, "msgget %d %#o", key, 0o600)
		}
		set := func(o obj, mode int) {
			if kind == "sem" {
				d.do("root", "ok", "semset %d %d 0 0 %#o", o.kid, o.rid, mode)
			} else {
				d.do("root", "ok", "msgset %d %d 0 0 %#o %d", o.kid, o.rid, mode, kernel.MSGMNB)
			}
		}
		o := d.create("root", kind, key, 1, creat|excl|0o666)
		ids := strconv.Itoa(o.kid) + " " + strconv.Itoa(o.rid)
		for i := 0; i < 4; i++ {
			k, r := get("nobody", "ok")
			assert.Equal(t, ids, k+" "+r, kind)
		}
		set(o, 0o600)
		get("nobody", "EACCES")
		get("nobody", "EACCES")
		set(o, 0o606)
		for i := 0; i < 3; i++ {
			get("nobody", "ok")
		}
		d.do("root", "ok", "%srm %d %d", kind, o.kid, o.rid)
		get("nobody", "ENOENT")
		o2 := d.create("root", kind, key, 1, creat|excl|0o666)
		for i := 0; i < 3; i++ {
			k, r := get("nobody", "ok")
			assert.Equal(t, strconv.Itoa(o2.kid)+" "+strconv.Itoa(o2.rid), k+" "+r, kind)
		}
	}
}

// Requests answered once are remembered up to getKeysMax, no further.
func TestGetCacheBounded(t *testing.T) {
	c := defaultClient(t)
	var g getCache
	key := testutil.Key(t)
	mustGet(t, c, msgReq(key, kernel.IPC_CREAT|0o600))
	for i := 0; i < getKeysMax+10; i++ {
		req := msgReq(key, 0o600|i%0o100)
		req.Count = i // (part of the key; a queue ignores it)
		k, _ := cacheKey(req)
		_, err := g.ask(c, k, req)
		require.NoError(t, err)
	}
	assert.Equal(t, int32(getKeysMax), g.keys.Load())
	g.clear()
	assert.Zero(t, g.keys.Load())
}
