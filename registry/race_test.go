package registry

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

func init() {
	// creator: args are keys. Waits for "go", then creates each with
	// IPC_CREAT|IPC_EXCL and prints "<key> <id>" or "<key> <errno>".
	testutil.RegisterHelper("creator", func(args []string) int {
		c, err := Default()
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("ready")
		in := bufio.NewScanner(os.Stdin)
		in.Scan()
		for _, a := range args {
			k, _ := strconv.Atoi(a)
			id, err := c.Get(semReq(k, 1, creat|excl|0o600))
			if err != nil {
				fmt.Println(a, errName(err))
			} else {
				fmt.Println(a, id)
			}
		}
		fmt.Println("done")
		in.Scan()
		return 0
	})
}

// IPC_CREAT|IPC_EXCL is atomic across processes: of several processes
// racing to create the same keys, exactly one wins each key.
func TestRacingCreators(t *testing.T) {
	c := defaultClient(t)
	const procs, nkeys = 4, 40
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = strconv.Itoa(testutil.Key(t))
	}
	var ps []*testutil.Proc
	for i := 0; i < procs; i++ {
		p := testutil.Start(t, "creator", keys)
		p.Expect("ready", 10*time.Second)
		ps = append(ps, p)
	}
	for _, p := range ps {
		p.Send("go")
	}
	winners := map[string][]int{}
	for _, p := range ps {
		for {
			l := p.Line(20 * time.Second)
			if l == "done" {
				break
			}
			k, v, _ := strings.Cut(l, " ")
			if id, err := strconv.Atoi(v); err == nil {
				winners[k] = append(winners[k], id)
				cleanupObj(t, c, shm.KindSem, id)
			} else {
				require.Equal(t, "EEXIST", v, "key %s", k)
			}
		}
	}
	for _, k := range keys {
		require.Len(t, winners[k], 1, "key %s", k)
		kn, _ := strconv.Atoi(k)
		id, err := c.Get(semReq(kn, 0, 0))
		require.NoError(t, err)
		assert.Equal(t, winners[k][0], id)
	}
	u, err := c.Info(shm.KindSem)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, u.Objects, nkeys)
}

func init() {
	// worker: connects with Default (it may host the registry or take it
	// over). Commands on stdin:
	//   create sem|msg MODE       → "id <id> key <key>"
	//   work N                    → N Gets and Stats of the objects created, then "worked <errors>"
	//   pid                       → "pid <registry server pid>"
	//   get sem|msg KEY / stat sem|msg ID → "ok <id|perm>" or the errno
	testutil.RegisterHelper("worker", func(args []string) int {
		c, err := Default()
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("ready")
		type made struct {
			kind shm.Kind
			key  int
			id   int
		}
		var objs []made
		kindOf := func(s string) shm.Kind {
			if s == "msg" {
				return shm.KindMsg
			}
			return shm.KindSem
		}
		req := func(kind shm.Kind, key, flags int) GetRequest {
			if kind == shm.KindMsg {
				return msgReq(key, flags)
			}
			return semReq(key, 1, flags)
		}
		in := bufio.NewScanner(os.Stdin)
		seq := 0
		for in.Scan() {
			f := strings.Fields(in.Text())
			switch f[0] {
			case "create":
				kind := kindOf(f[1])
				mode, _ := strconv.ParseInt(f[2], 0, 32)
				seq++
				key := int(int32(uint32(os.Getpid())<<12 | uint32(seq)))
				id, err := c.Get(req(kind, key, creat|excl|int(mode)))
				if err != nil {
					fmt.Println("error", err)
					continue
				}
				objs = append(objs, made{kind, key, id})
				fmt.Println("id", id, "key", key)
			case "work":
				n, _ := strconv.Atoi(f[1])
				bad := 0
				for i := 0; i < n; i++ {
					if i == n/10 {
						fmt.Println("working")
					}
					for _, o := range objs {
						id, err := c.Get(req(o.kind, o.key, 0))
						if err != nil || id != o.id {
							bad++
							fmt.Fprintln(os.Stderr, "worker get:", id, err)
						}
						if _, err := c.Stat(o.kind, o.id); err != nil {
							bad++
							fmt.Fprintln(os.Stderr, "worker stat:", err)
						}
					}
				}
				fmt.Println("worked", bad)
			case "pid":
				fmt.Println("pid", c.ServerPid())
			case "conns":
				fmt.Println("conns", c.conns.Load())
			case "get":
				key, _ := strconv.Atoi(f[2])
				id, err := c.Get(req(kindOf(f[1]), key, 0))
				fmt.Println(result(err, strconv.Itoa(id)))
			case "stat":
				id, _ := strconv.Atoi(f[2])
				o, err := c.Stat(kindOf(f[1]), id)
				fmt.Println(result(err, permString(o.Perm)))
			}
		}
		return 0
	})
}

// The registry host (a process hosting the embedded registry) is killed
// with SIGKILL while clients work; one of them takes over, and every
// object is found again by key and id with its permissions.
func TestTakeover(t *testing.T) {
	testutil.RequireRoot(t)
	// A socket of its own, in a directory only root may write: so that the
	// unprivileged client cannot host (a registry must be able to map every
	// segment to adopt it; see doc.go) and the race is between root processes.
	dir, err := os.MkdirTemp(os.Getenv("USYSV_TEST_DIR"), "takeover-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	sock := filepath.Join(dir, "reg.sock")
	env := testutil.Env("USYSV_SOCKET=" + sock)

	host := testutil.Start(t, "worker", nil, env)
	host.Expect("ready", 10*time.Second)
	host.Send("pid")
	require.Equal(t, fmt.Sprintf("pid %d", host.Pid()), host.Line(5*time.Second), "the first client hosts")

	w1 := testutil.Start(t, "worker", nil, env)
	w2 := testutil.Start(t, "worker", nil, env)
	wn := testutil.Start(t, "worker", nil, env, testutil.AsNobody())
	workers := []*testutil.Proc{w1, w2, wn}
	type made struct {
		w         *testutil.Proc
		kind      string
		id, key   int
		permAfter string
	}
	var objs []made
	c, err := Dial(sock)
	require.NoError(t, err)
	defer c.Close()
	for i, w := range workers {
		w.Expect("ready", 10*time.Second)
		for j, kind := range []string{"sem", "msg"} {
			mode := []string{"0600", "0640", "0666"}[(i+j)%3]
			w.Send("create %s %s", kind, mode)
			var id, key int
			l := w.Line(10 * time.Second)
			_, err := fmt.Sscanf(l, "id %d key %d", &id, &key)
			require.NoError(t, err, l)
			objs = append(objs, made{w: w, kind: kind, id: id, key: key})
			t.Cleanup(func() { _ = kernel.ShmctlRemove(id) })
		}
	}
	// The record before: what the owner sees.
	for i := range objs {
		o := &objs[i]
		o.w.Send("stat %s %d", o.kind, o.id)
		o.permAfter = o.w.Line(5 * time.Second)
		require.True(t, strings.HasPrefix(o.permAfter, "ok:"), o.permAfter)
	}
	for _, w := range workers {
		w.Send("work 3000")
	}
	for _, w := range workers {
		w.Expect("working", 30*time.Second)
	}
	host.Kill()
	for _, w := range workers {
		w.Expect("worked 0", 60*time.Second)
	}
	for _, w := range workers {
		w.Send("conns")
		assert.Equal(t, "conns 2", w.Line(5*time.Second), "connected, lost the host, reconnected")
	}
	// One of the root workers hosts now.
	w1.Send("pid")
	newHost := w1.Line(5 * time.Second)
	assert.Contains(t, []string{fmt.Sprintf("pid %d", w1.Pid()), fmt.Sprintf("pid %d", w2.Pid())}, newHost)
	for _, w := range workers {
		w.Send("pid")
		assert.Equal(t, newHost, w.Line(5*time.Second), "every client reconnected to the new host")
	}
	// Everything is found again, by key and id, with the same permissions,
	// by every client.
	for _, o := range objs {
		for _, w := range workers {
			w.Send("get %s %d", o.kind, o.key)
			assert.Equal(t, fmt.Sprintf("ok:%d", o.id), w.Line(5*time.Second))
		}
		o.w.Send("stat %s %d", o.kind, o.id)
		assert.Equal(t, o.permAfter, o.w.Line(5*time.Second))
	}
	// Permission decisions survive too: nobody may not read root's 0600 set.
	wn.Send("stat sem %d", objs[0].id)
	assert.Equal(t, "EACCES", wn.Line(5*time.Second))
	for _, o := range objs {
		kind := shm.KindSem
		if o.kind == "msg" {
			kind = shm.KindMsg
		}
		assert.NoError(t, c.Remove(kind, o.id))
	}
}

// Hostile clients — garbage, half frames, huge lengths, a client that
// never reads its responses, a pile of idle connections — do not stop
// other clients from being served, and each bad connection is closed
// (the one that never reads once a response waits writeTimeout).
func TestHostileClients(t *testing.T) {
	oldFrame, oldWrite := frameTimeout, writeTimeout
	frameTimeout, writeTimeout = 300*time.Millisecond, 300*time.Millisecond
	s, c := startServer(t, Limits{})
	frameTimeout, writeTimeout = oldFrame, oldWrite
	dialRaw := func() *net.UnixConn {
		nc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: s.Socket(), Net: "unix"})
		require.NoError(t, err)
		t.Cleanup(func() { nc.Close() })
		return nc
	}
	closedByServer := func(nc *net.UnixConn) bool {
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		var b [64]byte
		for {
			_, err := nc.Read(b[:])
			if err != nil {
				var ne net.Error
				return !(errors.As(err, &ne) && ne.Timeout())
			}
		}
	}
	garbage := dialRaw()
	_, err := garbage.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	require.NoError(t, err)
	huge := dialRaw()
	_, err = huge.Write([]byte{0xff, 0xff, 0xff, 0xff, 1, 1, 0, 0})
	require.NoError(t, err)
	badVersion := dialRaw()
	e := newFrame(nil, opHello, 1)
	fr := e.bytes()
	fr[4] = 99
	_, err = badVersion.Write(fr)
	require.NoError(t, err)
	badPayload := dialRaw()
	e = newFrame(nil, opStat, 1)
	e.u32(1) // kind but no id
	_, err = badPayload.Write(e.bytes())
	require.NoError(t, err)
	half := dialRaw()
	_, err = half.Write([]byte{100, 0, 0, 0, protoVersion, opGet})
	require.NoError(t, err)
	// A client that floods requests and never reads the responses.
	flood := dialRaw()
	floodEnded := make(chan struct{})
	go func() {
		defer close(floodEnded)
		e := newFrame(nil, opInfo, 1)
		e.u32(uint32(shm.KindSem))
		b := e.bytes()
		_ = flood.SetWriteDeadline(time.Now().Add(30 * time.Second))
		for {
			if _, err := flood.Write(b); err != nil {
				return
			}
		}
	}()
	var idle []*net.UnixConn
	for i := 0; i < 50; i++ {
		idle = append(idle, dialRaw())
	}

	// Other clients — this process's and another process's — are served.
	id := mustGet(t, c, semReq(testutil.Key(t), 1, creat|excl|0o644))
	for i := 0; i < 200; i++ {
		_, err := c.Stat(shm.KindSem, id)
		require.NoError(t, err)
	}
	p := testutil.Start(t, "worker", nil, testutil.Env("USYSV_SOCKET="+s.Socket()))
	p.Expect("ready", 10*time.Second)
	p.Send("create msg 0600")
	require.True(t, strings.HasPrefix(p.Line(10*time.Second), "id "))
	p.Send("work 500")
	p.Expect("working", 60*time.Second)
	p.Expect("worked 0", 60*time.Second)
	p.Send("pid")
	p.Expect(fmt.Sprintf("pid %d", kernel.Getpid()), 10*time.Second)

	for name, nc := range map[string]*net.UnixConn{"garbage": garbage, "huge length": huge,
		"bad version": badVersion, "bad payload": badPayload, "half frame": half} {
		assert.True(t, closedByServer(nc), "%s: connection not closed", name)
	}
	select {
	case <-floodEnded: // its writes failed: the server closed the connection
	case <-time.After(10 * time.Second):
		t.Error("never reads: connection not closed")
	}
	_ = idle
	objs, err := c.List(shm.KindMsg)
	require.NoError(t, err)
	for _, o := range objs {
		assert.NoError(t, c.Remove(shm.KindMsg, o.ID))
	}
}
