package registry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// The wire protocol between clients and the registry, over a unix stream
// socket. Every message is one frame:
//
//	offset  size  field
//	     0     4  length of the rest of the frame (little-endian)
//	     4     1  protocol version (protoVersion)
//	     5     1  op
//	     6     2  reserved, 0
//	     8     4  tag: chosen by the client, echoed in the response
//	    12        request payload
//
// A response carries, after the tag, the errno of the operation (0: success)
// as a uint32, then the op's payload. All integers are little-endian. A
// frame longer than maxFrame, of another version, with an unknown op or a
// payload of the wrong size is malformed: the registry closes that
// connection and no other. Requests on one connection are answered in
// order; the tag lets a client have several in flight.
//
// The caller's identity is never in a frame: the registry takes it from
// SO_PEERCRED and /proc/<pid>/status when the connection is made.
const (
	protoVersion = 1
	maxFrame     = 64 << 10
	reqHeader    = 8  // version, op, reserved, tag (after the length)
	respHeader   = 12 // ... and errno
	listPage     = 512
	objectSize   = 56
)

// Ops.
const (
	opHello  = 1
	opGet    = 2
	opStat   = 3
	opSet    = 4
	opRemove = 5
	opList   = 6
	opInfo   = 7
	opAdopt  = 8 // Client.Adopt; a registry that predates it closes the connection
)

// statAny, or'ed into opStat's kind, asks for the object without the read
// permission check (Client.StatAny). A registry that predates it finds no
// such kind: EINVAL.
const statAny = 1 << 31

var errMalformed = errors.New("registry: malformed frame")

// blockingReader reads a connection waiting in poll(2), outside the Go
// runtime's network poller (kernel.ReadBlocking says why): a client's
// readLoop and a server's serveConn wait there for as long as the
// connection lasts. Past deadline, unless zero, a read fails with
// os.ErrDeadlineExceeded.
type blockingReader struct {
	nc       *net.UnixConn
	deadline time.Time
}

func (r *blockingReader) Read(p []byte) (int, error) {
	return kernel.ReadBlockingUntil(r.nc, p, r.deadline)
}

// readFrame reads one frame into buf (grown if needed) and returns its body
// (the bytes after the length prefix).
func readFrame(r io.Reader, buf []byte) ([]byte, error) {
	var lb [4]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(lb[:])
	if n < reqHeader || n > maxFrame {
		return nil, fmt.Errorf("%w: length %d", errMalformed, n)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// enc builds a frame. Start it with newFrame and finish it with bytes.
type enc struct{ b []byte }

func newFrame(buf []byte, op byte, tag uint32) enc {
	b := append(buf[:0], 0, 0, 0, 0, protoVersion, op, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, tag)
	return enc{b}
}

func (e *enc) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *enc) i32(v int32)  { e.u32(uint32(v)) }
func (e *enc) i64(v int64)  { e.u64(uint64(v)) }

func (e *enc) bytes() []byte {
	binary.LittleEndian.PutUint32(e.b, uint32(len(e.b)-4))
	return e.b
}

// dec reads a payload; any read past the end marks it bad instead of
// panicking.
type dec struct {
	b   []byte
	bad bool
}

func (d *dec) u32() uint32 {
	if len(d.b) < 4 {
		d.bad = true
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *dec) u64() uint64 {
	if len(d.b) < 8 {
		d.bad = true
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *dec) i32() int32 { return int32(d.u32()) }
func (d *dec) i64() int64 { return int64(d.u64()) }

// done reports whether the payload was exactly consumed.
func (d *dec) done() bool { return !d.bad && len(d.b) == 0 }

func (e *enc) object(o Object) {
	e.i32(int32(o.ID))
	e.u32(uint32(o.Kind))
	e.i32(o.Perm.Key)
	e.u32(o.Perm.UID)
	e.u32(o.Perm.GID)
	e.u32(o.Perm.CUID)
	e.u32(o.Perm.CGID)
	e.u32(o.Perm.Mode)
	e.u32(o.Perm.Seq)
	e.u32(uint32(o.Count))
	e.i64(o.Ctime)
	e.u64(o.Param)
}

func (d *dec) object() Object {
	var o Object
	o.ID = int(d.i32())
	o.Kind = shm.Kind(d.u32())
	o.Perm.Key = d.i32()
	o.Perm.UID = d.u32()
	o.Perm.GID = d.u32()
	o.Perm.CUID = d.u32()
	o.Perm.CGID = d.u32()
	o.Perm.Mode = d.u32()
	o.Perm.Seq = d.u32()
	o.Count = int(d.u32())
	o.Ctime = d.i64()
	o.Param = d.u64()
	return o
}

func (e *enc) limits(l Limits) {
	for _, v := range []int{l.SEMMSL, l.SEMMNI, l.SEMMNS, l.SEMOPM, l.SEMVMX, l.MSGMAX, l.MSGMNB, l.MSGMNI} {
		e.u64(uint64(v))
	}
	e.u64(l.MaxSegment)
}

func (d *dec) limits() Limits {
	var l Limits
	for _, v := range []*int{&l.SEMMSL, &l.SEMMNI, &l.SEMMNS, &l.SEMOPM, &l.SEMVMX, &l.MSGMAX, &l.MSGMNB, &l.MSGMNI} {
		*v = int(d.u64())
	}
	l.MaxSegment = d.u64()
	return l
}

func (e *enc) params(p shm.Params) {
	e.u32(p.Count)
	e.u64(p.Capacity)
	e.u32(p.Waiters)
	e.u32(p.MaxMsg)
	e.u64(p.BodySize)
}

func (d *dec) params() shm.Params {
	var p shm.Params
	p.Count = d.u32()
	p.Capacity = d.u64()
	p.Waiters = d.u32()
	p.MaxMsg = d.u32()
	p.BodySize = d.u64()
	return p
}
