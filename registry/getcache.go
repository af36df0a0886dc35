package registry

import (
	"sync"
	"sync/atomic"

	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// The get cache: a Get that this client has already seen answered for an
// existing object is answered again in the process, without a round trip
// to the registry, for as long as nothing the answer depends on can have
// changed. The registry's answer to a get of an existing key depends on
// the request (kind, key, flags, count), on the object's immutable
// parameters (creator, nsems), on its permissions (uid, gid, mode: every
// IPC_SET bumps the segment's permission sequence) and on the caller's
// identity, which the registry fixes when the connection is made. So an
// entry holds the id, the object's segment mapped, the permission sequence
// read before the registry was asked, and the connection it was asked on;
// a lookup answers from it while the segment is live, the sequence is the
// same and the connection is the same one. Anything else asks the
// registry.
//
// What is never answered here: IPC_PRIVATE and IPC_CREAT|IPC_EXCL gets
// (each creates or fails), and a request until the registry has answered
// it twice with the same id: the first answer may have been a create,
// whose outcome for the creator can differ from a later get's (Linux
// checks the requested mode only against an existing object), and most
// keys are looked up once, which should not cost a mapping.
//
// Memory: at most getCacheMax entries with an attach of the object's
// segment, and getKeysMax small ones in all. An entry whose object was removed is dropped
// (and detached, so that the kernel can free the segment) at every get
// that asks the registry and every Remove through this client; one
// removed by another process stays attached until then.
const getCacheMax = 64

// getKeysMax bounds the entries without a segment (requests answered
// once); past it, new requests are not remembered.
const getKeysMax = 1024

type getKey struct {
	kind              shm.Kind
	key, flags, count int32
}

// getEntry is immutable once stored.
type getEntry struct {
	id      int
	seg     *shm.Segment // nil: answered once, not cached yet
	permSeq uint32
	conn    uint64 // Client.conns when the registry was asked
	noMap   bool   // the segment could not be mapped: never cached
}

type getCache struct {
	m    sync.Map // getKey → *getEntry
	mu   sync.Mutex
	n    atomic.Int32 // entries with a segment
	keys atomic.Int32 // entries
}

func cacheKey(req GetRequest) (getKey, bool) {
	if req.Key == kernel.IPC_PRIVATE || req.Flags&(kernel.IPC_CREAT|kernel.IPC_EXCL) == kernel.IPC_CREAT|kernel.IPC_EXCL {
		return getKey{}, false
	}
	return getKey{req.Kind, req.Key, int32(req.Flags), clampInt32(req.Count)}, true
}

// lookup answers req from the cache if it can.
func (g *getCache) lookup(c *Client, k getKey) (int, bool) {
	v, ok := g.m.Load(k)
	if !ok {
		return -1, false
	}
	e := v.(*getEntry)
	if e.seg == nil || e.seg.Removed() || e.seg.PermSeq() != e.permSeq || c.conns.Load() != e.conn {
		return -1, false
	}
	return e.id, true
}

// ask is Get through the registry, learning from the answer.
func (g *getCache) ask(c *Client, k getKey, req GetRequest) (int, error) {
	g.sweep()
	var seg *shm.Segment
	var seq uint32
	noMap := false
	conn := c.conns.Load()
	if v, ok := g.m.Load(k); ok {
		e := v.(*getEntry)
		seg = e.seg
		if seg == nil && !e.noMap && g.n.Load() < getCacheMax {
			// Answered once before: map the object now, so that the
			// permission sequence is read before the registry decides.
			var err error
			if seg, err = c.Map(req.Kind, e.id); err != nil {
				seg, noMap = nil, true
			}
		}
		noMap = noMap || e.noMap
		if seg != nil {
			seq = seg.PermSeq()
		}
	}
	id, err := c.get(req)

	g.mu.Lock()
	defer g.mu.Unlock()
	var oe, ne *getEntry
	if v, ok := g.m.Load(k); ok {
		oe = v.(*getEntry)
	}
	switch {
	case err == nil && oe != nil && oe.id == id && seg != nil && seg.ID() == id && !seg.Removed():
		ne = &getEntry{id: id, seg: seg, permSeq: seq, conn: conn}
		g.m.Store(k, ne)
	case err == nil && (oe != nil || g.keys.Load() < getKeysMax):
		ne = &getEntry{id: id, noMap: noMap && oe != nil && oe.id == id}
		g.m.Store(k, ne)
	case oe != nil:
		g.m.Delete(k)
	}
	switch {
	case oe == nil && ne != nil:
		g.keys.Add(1)
	case oe != nil && ne == nil:
		g.keys.Add(-1)
	}
	if oe != nil && oe.seg != nil {
		g.n.Add(-1)
		if oe.seg != ne.segment() {
			drop(oe.seg)
		}
	}
	if ne.segment() != nil {
		g.n.Add(1)
	}
	if seg != nil && seg != ne.segment() && (oe == nil || seg != oe.seg) {
		drop(seg)
	}
	return id, err
}

func (e *getEntry) segment() *shm.Segment {
	if e == nil {
		return nil
	}
	return e.seg
}

// clear drops every entry (the client is shutting down).
func (g *getCache) clear() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.m.Range(func(k, v any) bool {
		g.m.Delete(k)
		g.keys.Add(-1)
		if e := v.(*getEntry); e.seg != nil {
			g.n.Add(-1)
			drop(e.seg)
		}
		return true
	})
}

// sweep drops the entries whose object was removed.
func (g *getCache) sweep() {
	if g.n.Load() == 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.m.Range(func(k, v any) bool {
		if e := v.(*getEntry); e.seg != nil && e.seg.Removed() {
			g.m.Delete(k)
			g.keys.Add(-1)
			g.n.Add(-1)
			drop(e.seg)
		}
		return true
	})
}

// drop detaches a segment that a concurrent lookup may still be reading:
// Retire keeps its addresses readable (as zeros: a removed state, which
// sends the lookup to the registry) for a while.
func drop(seg *shm.Segment) { _ = seg.Retire() }
