package fuzz

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/registry"
	"github.com/usysv/usysv/shm"
)

// FuzzRegistryWire sends arbitrary bytes to a live registry: a fresh
// registry.Server on a socket in t.TempDir(), a raw connection from
// net.Dial. With framed false the bytes go out as they are (the frame
// decoder's length, version and reserved checks); with framed true they
// are read as a list of frames that are well formed often enough to reach
// every op's payload decoder and handler (see wireFrames), with
// occasional lies in the length, version or reserved bytes.
//
// While the hostile connection is still open (possibly in the middle of a
// frame), an ordinary client on another connection must be served:
// Info, Get (create), Stat, List, Remove. Every response the hostile
// connection gets must be a well-formed frame answering its requests in
// order (same op, same tag, an errno that is 0 or a real errno). Every
// object the fuzz input created is removed, and the server closed, before
// the next input.
func FuzzRegistryWire(f *testing.F) {
	keepCrashReports(f)
	f.Fuzz(func(t *testing.T, data []byte, framed bool) {
		requireRoot(t)
		defer guard(t, corpusEntry(data, framed))()
		runWire(t, data, framed)
	})
}

// The wire format (registry/wire.go), restated here because the package
// keeps it unexported: a frame is a 4-byte little-endian length of the
// rest, then version (1), op, two reserved zero bytes, a 4-byte tag and
// the payload; a response adds a 4-byte errno after the tag.
const (
	wireVersion = 1
	wireMaxBody = 64 << 10
)

// syscallECONNRESET: the registry may close a connection with unread
// input (the rest of a malformed stream), which resets it.
var syscallECONNRESET = kernel.ECONNRESET

// Payload sizes of the request ops (1 hello … 7 info, 8 adopt).
var wirePayload = [9]int{0: -1, 1: 0, 2: 52, 3: 8, 4: 28, 5: 8, 6: 8, 7: 4, 8: 0}

// wireOps is the number of op values wireFrames makes: 0 and wireOps-1
// are unknown ops.
const wireOps = len(wirePayload) + 1

type wireReq struct {
	op  byte
	tag uint32
}

// wireFrames builds a request stream from data. Per frame: an op byte
// (op%wireOps, so 0 and 9 are unknown ops), a shape byte, then the payload
// bytes. The shape's low 2 bits: 0-1 the op's exact payload size, 2 a
// size from the next byte, 3 the op's size ± 1..4. Bit 2: a wrong
// version; bit 3: a non-zero reserved byte; bit 4: a length field that
// lies (from the next byte: short, long, or beyond the limit). Bits 5-7
// choose the kind written in the first payload word (sem, msg, or as the
// bytes say). It returns the stream, the requests that are well formed as
// far as this function knows, and whether that is all the registry can
// answer: after a frame whose length lies, the bytes may happen to form
// well-formed frames again (a length one too long, say, that swallows the
// next frame's first byte), so from there on responses are checked for
// framing only.
func wireFrames(data []byte) ([]byte, []wireReq, bool) {
	p := &prog{b: data}
	var out []byte
	var reqs []wireReq
	wellFormed, exact := true, true
	for tag := uint32(1); p.more() && len(out) < 1<<20; tag++ {
		op := p.u8() % byte(wireOps)
		known := op >= 1 && int(op) < len(wirePayload)
		shape := p.u8()
		size := 0
		if known {
			size = wirePayload[op]
		}
		switch shape & 3 {
		case 2:
			size = int(p.u8())
		case 3:
			size = max(size+int(p.u8()%9)-4, 0)
		}
		sized := known && size == wirePayload[op]
		payload := make([]byte, size)
		for i := range payload {
			payload[i] = p.u8()
		}
		if size >= 4 {
			switch shape >> 5 {
			case 0, 1, 2:
				binary.LittleEndian.PutUint32(payload, uint32(shm.KindSem))
			case 3, 4, 5:
				binary.LittleEndian.PutUint32(payload, uint32(shm.KindMsg))
			}
		}
		if op == 2 && size == 52 {
			// Get: keep the layout small and the key private more often
			// than not, so that creations succeed and stay cheap.
			if payload[4]&1 == 0 {
				binary.LittleEndian.PutUint32(payload[4:], 0)
			}
			binary.LittleEndian.PutUint64(payload[20:], uint64(payload[20])*64)     // capacity
			binary.LittleEndian.PutUint32(payload[28:], uint32(payload[28]%4))      // waiters
			binary.LittleEndian.PutUint64(payload[36:], uint64(payload[36]%64)*8+8) // body size
		}
		body := make([]byte, 0, 8+size)
		version, reserved := byte(wireVersion), byte(0)
		if shape&4 != 0 {
			version = p.u8()
		}
		if shape&8 != 0 {
			reserved = p.u8() | 1
		}
		body = append(body, version, op, 0, reserved)
		body = binary.LittleEndian.AppendUint32(body, tag)
		body = append(body, payload...)
		length := uint32(len(body))
		if shape&16 != 0 && wellFormed {
			exact = false
		}
		if shape&16 != 0 {
			switch l := p.u8(); {
			case l < 0x40:
				length = uint32(l % 8) // shorter than a header
			case l < 0x80:
				length -= uint32(l%4) + 1
			case l < 0xC0:
				length += uint32(l%4) + 1
			default:
				length = wireMaxBody + 1 + uint32(l)
			}
		}
		out = binary.LittleEndian.AppendUint32(out, length)
		out = append(out, body...)
		ok := wellFormed && version == wireVersion && reserved == 0 && length == uint32(len(body)) &&
			known && sized
		if ok {
			reqs = append(reqs, wireReq{op, tag})
		}
		wellFormed = ok // after a malformed frame the connection is closed
	}
	return out, reqs, exact
}

func runWire(t *testing.T, data []byte, framed bool) {
	sock := filepath.Join(t.TempDir(), "r.sock")
	srv, err := registry.NewServer(sock, registry.Limits{SEMMNI: 64, MSGMNI: 64, MaxSegment: 1 << 20})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	defer func() {
		cleanupRegistry(t, sock)
		closed := make(chan error, 1)
		go func() { closed <- srv.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Errorf("Server.Close: %v", err)
			}
		case <-time.After(callTimeout):
			t.Errorf("Server.Close did not return within %v", callTimeout)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(callTimeout):
			t.Errorf("Serve did not return after Close")
		}
	}()

	stream, reqs, exact := data, []wireReq(nil), false
	if framed {
		stream, reqs, exact = wireFrames(data)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	uc := conn.(*net.UnixConn)

	// Read every response as it comes, so that the server never blocks
	// writing to us.
	var rd wireReader
	rd.done = make(chan struct{})
	go func() {
		defer close(rd.done)
		_ = uc.SetReadDeadline(time.Now().Add(2 * callTimeout))
		buf := make([]byte, 4096)
		for {
			n, err := uc.Read(buf)
			rd.mu.Lock()
			rd.b = append(rd.b, buf[:n]...)
			if err != nil && err != io.EOF {
				rd.err = err
			}
			rd.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	_ = uc.SetWriteDeadline(time.Now().Add(callTimeout))
	_, _ = uc.Write(stream) // the server may close early: a short write is fine

	// The hostile connection is open, maybe in the middle of a frame:
	// another client must be served all the same.
	checkServed(t, sock)

	// The registry does not apply a request that changes something once
	// the client has closed its end (it gave up: registry doc), so the
	// write side stays open until every well-formed request is answered
	// (or the registry closed the connection, or the read deadline).
	for deadline := time.Now().Add(2 * callTimeout); rd.responses() < len(reqs) && time.Now().Before(deadline); {
		select {
		case <-rd.done:
			deadline = time.Now()
		case <-time.After(100 * time.Microsecond):
		}
	}
	_ = uc.CloseWrite()
	<-rd.done
	if rd.err != nil && !errors.Is(rd.err, syscallECONNRESET) {
		t.Fatalf("reading the responses: %v (the registry neither answered nor closed the connection)", rd.err)
	}
	checkResponses(t, rd.b, reqs, exact)
}

// wireReader collects what the registry sends on the raw connection.
type wireReader struct {
	mu   sync.Mutex
	b    []byte
	err  error
	done chan struct{}
}

// responses counts the complete frames read so far.
func (r *wireReader) responses() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for b := r.b; len(b) >= 4; n++ {
		l := int(binary.LittleEndian.Uint32(b))
		if l > len(b)-4 {
			break
		}
		b = b[4+l:]
	}
	return n
}

// checkResponses checks that resp is a sequence of well-formed responses
// that starts with one per request of reqs, in order; with exact, there is
// no other. Responses past reqs (raw input, or after a length that lied)
// are checked for framing only.
func checkResponses(t *testing.T, resp []byte, reqs []wireReq, exact bool) {
	t.Helper()
	n := 0
	for len(resp) > 0 {
		if len(resp) < 4+12 {
			t.Fatalf("response %d: %d bytes, shorter than a response header", n, len(resp))
		}
		l := binary.LittleEndian.Uint32(resp)
		if l < 12 || l > wireMaxBody || int(l) > len(resp)-4 {
			t.Fatalf("response %d: length %d with %d bytes left", n, l, len(resp)-4)
		}
		body := resp[4 : 4+l]
		resp = resp[4+l:]
		if body[0] != wireVersion || body[2] != 0 || body[3] != 0 {
			t.Fatalf("response %d: header % x", n, body[:4])
		}
		tag := binary.LittleEndian.Uint32(body[4:])
		e := binary.LittleEndian.Uint32(body[8:])
		if e >= 4096 {
			t.Fatalf("response %d: errno %d", n, e)
		}
		if exact && n >= len(reqs) {
			t.Fatalf("response %d (op %d tag %d) to a request that was not well formed (%d well-formed requests)", n, body[1], tag, len(reqs))
		}
		if n < len(reqs) {
			if body[1] != reqs[n].op || tag != reqs[n].tag {
				t.Fatalf("response %d: op %d tag %d, request op %d tag %d", n, body[1], tag, reqs[n].op, reqs[n].tag)
			}
			if e == uint32(kernel.EIO) {
				t.Fatalf("response %d (op %d): EIO, an error that is not an errno reached the wire", n, body[1])
			}
		}
		n++
	}
	if n < len(reqs) || exact && n != len(reqs) {
		t.Fatalf("%d responses to %d well-formed requests", n, len(reqs))
	}
}

// checkServed runs an ordinary client's calls on a connection of its own,
// each bounded by callTimeout.
func checkServed(t *testing.T, sock string) {
	t.Helper()
	bounded(t, "an ordinary client", func() error {
		c, err := registry.Dial(sock)
		if err != nil {
			return fmt.Errorf("Dial: %w", err)
		}
		defer c.Close()
		if _, err := c.Info(shm.KindSem); err != nil {
			return fmt.Errorf("Info: %w", err)
		}
		id, err := c.Get(registry.GetRequest{Kind: shm.KindSem, Key: kernel.IPC_PRIVATE, Flags: 0o600, Count: 1,
			Layout: shm.Params{Count: 1, Waiters: 1, BodySize: 64}})
		if errors.Is(err, kernel.ENOSPC) {
			return nil // the input filled the registry's table: fine
		}
		if err != nil {
			return fmt.Errorf("Get: %w", err)
		}
		if _, err := c.Stat(shm.KindSem, id); err != nil {
			return fmt.Errorf("Stat: %w", err)
		}
		if _, err := c.List(shm.KindSem); err != nil {
			return fmt.Errorf("List: %w", err)
		}
		if err := c.Remove(shm.KindSem, id); err != nil {
			return fmt.Errorf("Remove: %w", err)
		}
		return nil
	})
}

// cleanupRegistry removes every object of the registry at sock.
func cleanupRegistry(t *testing.T, sock string) {
	t.Helper()
	bounded(t, "removing the input's objects", func() error {
		c, err := registry.Dial(sock)
		if err != nil {
			return err
		}
		defer c.Close()
		for _, k := range []shm.Kind{shm.KindSem, shm.KindMsg} {
			objs, err := c.List(k)
			if err != nil {
				return fmt.Errorf("List: %w", err)
			}
			for _, o := range objs {
				if err := c.Remove(k, o.ID); err != nil {
					return fmt.Errorf("Remove %d: %w", o.ID, err)
				}
			}
		}
		return nil
	})
}

// bounded runs fn and fails the target if it errs or takes longer than
// callTimeout.
func bounded(t *testing.T, what string, fn func() error) {
	t.Helper()
	testutil.Returns(t, callTimeout, what, fn)
}

type wireSeed struct {
	name   string
	data   []byte
	framed bool
}

// wireSeeds: every op well formed, each way of being malformed, and raw
// byte strings around the length checks.
func wireSeeds() []wireSeed {
	frame := func(op, shape byte, payload ...byte) []byte {
		return append([]byte{op, shape}, payload...)
	}
	zeros := func(n int) []byte { return make([]byte, n) }
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	get := make([]byte, 52) // kind (patched), key 0 (private), flags, count …
	binary.LittleEndian.PutUint32(get[8:], 0o1600)
	get[12] = 1 // count 1
	get[16] = 1 // layout count 1
	get[28] = 1 // waiters 1
	get[36] = 7 // body size 64
	getMsg := append([]byte(nil), get...)
	getMsg[12], getMsg[16], getMsg[20] = 0, 0, 16 // capacity 1024
	raw := func(length uint32, rest ...byte) []byte {
		return append(binary.LittleEndian.AppendUint32(nil, length), rest...)
	}
	return []wireSeed{
		{"all-ops", cat(frame(1, 0), frame(2, 0, get...), frame(3, 0, zeros(8)...), frame(4, 0, zeros(28)...),
			frame(5, 0, zeros(8)...), frame(6, 0, zeros(8)...), frame(7, 0, zeros(4)...), frame(2, 0x60, getMsg...), frame(8, 0)), true},
		{"stat-set-remove-created", cat(frame(2, 0, get...), frame(6, 0, zeros(8)...), frame(4, 0, zeros(28)...)), true},
		{"unknown-op", cat(frame(1, 0), frame(0, 0), frame(1, 0)), true},
		{"op-9", cat(frame(9, 0)), true},
		{"short-payload", cat(frame(3, 3, 0, 0, 0, 0, 0, 0, 0), frame(1, 0)), true},
		{"long-payload", cat(frame(7, 3, 8, 1, 2, 3, 4, 5, 6, 7, 8), frame(1, 0)), true},
		{"bad-version", cat(frame(1, 4, 2)), true},
		{"bad-reserved", cat(frame(1, 8, 1)), true},
		{"length-short", cat(frame(1, 16, 0x01)), true},
		{"length-long", cat(frame(1, 16, 0x81)), true},
		{"length-huge", cat(frame(1, 16, 0xFF)), true},
		{"random-size", cat(frame(5, 2, 200), zeros(200)), true},
		{"empty", nil, false},
		{"hello", raw(8, 1, 1, 0, 0, 7, 0, 0, 0), false},
		{"hello-twice", append(raw(8, 1, 1, 0, 0, 7, 0, 0, 0), raw(8, 1, 1, 0, 0, 8, 0, 0, 0)...), false},
		{"length-0", raw(0), false},
		{"length-7", raw(7, 1, 1, 0, 0, 0, 0, 0), false},
		{"length-max", raw(wireMaxBody, 1, 1), false},
		{"length-max+1", raw(wireMaxBody+1, 1, 1), false},
		{"length-ffffffff", raw(0xFFFFFFFF), false},
		{"half-header", []byte{8, 0}, false},
		{"half-frame", raw(12, 1, 3, 0, 0, 1, 0, 0, 0), false},
	}
}
