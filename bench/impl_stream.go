package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
)

// The other things a Go program might pass messages through: a unix
// SOCK_SEQPACKET socket pair (message boundaries kept by the kernel) and a
// pair of pipes (fixed-size messages; a write of up to PIPE_BUF bytes is
// atomic, so several writers and readers never split a 64-byte message).
// Neither has message types. Both go through *os.File: in the creating
// process its descriptors are non-blocking and use Go's poller; a helper
// process receives them blocking, as exec hands descriptors over, so a
// read there is one blocking system call, like msgrcv.

func init() {
	registerMsg(Unix, sockMsg{})
	registerMsg(Pipe, pipeMsg{})
}

// fileEnd is one side of a socket pair or pipe pair.
type fileEnd struct {
	w, r  *os.File
	size  int  // pipe: every message is exactly size bytes; 0: socket
	owned bool // Close closes w and r (helper side)
}

func (e *fileEnd) Send(_ int64, p []byte) error {
	if e.size > 0 && len(p) != e.size {
		return fmt.Errorf("pipe carries %d-byte messages, not %d", e.size, len(p))
	}
	_, err := e.w.Write(p)
	return err
}

func (e *fileEnd) Recv(buf []byte, _ int64) (int, error) {
	if e.size > 0 {
		if len(buf) < e.size {
			return 0, io.ErrShortBuffer
		}
		return io.ReadFull(e.r, buf[:e.size])
	}
	n, err := e.r.Read(buf)
	if err == nil && n == 0 {
		err = io.EOF
	}
	return n, err
}

func (e *fileEnd) Close() error {
	if !e.owned {
		return nil
	}
	if e.w == e.r {
		return e.w.Close()
	}
	return errors.Join(e.w.Close(), e.r.Close())
}

// fileChan is a channel made of descriptors: ends[side] = {write, read}.
type fileChan struct {
	ref    string
	ends   [2][2]*os.File
	size   int
	remove func() error
}

func (c *fileChan) Ref() string { return c.ref }

func (c *fileChan) Files(side int) []*os.File {
	w, r := c.ends[side][0], c.ends[side][1]
	if w == r {
		return []*os.File{w}
	}
	return []*os.File{w, r}
}

func (c *fileChan) End(side int) (Endpoint, error) {
	return &fileEnd{w: c.ends[side][0], r: c.ends[side][1], size: c.size}, nil
}

func (c *fileChan) Remove() error { return c.remove() }

func closeAll(fs ...*os.File) func() error {
	return func() error {
		var errs []error
		for _, f := range fs {
			if f != nil {
				errs = append(errs, f.Close())
			}
		}
		return errors.Join(errs...)
	}
}

type sockMsg struct{}

func (sockMsg) Typed() bool { return false }

// Create makes a connected SOCK_SEQPACKET pair through a listener on a
// temporary path (the standard library has no socketpair), then forgets
// the path.
func (sockMsg) Create(o ChanOpts) (Chan, error) {
	dir, err := os.MkdirTemp("", "usysv-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	addr := &net.UnixAddr{Name: filepath.Join(dir, "s"), Net: "unixpacket"}
	ln, err := net.ListenUnix("unixpacket", addr)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	type accepted struct {
		c   *net.UnixConn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.AcceptUnix()
		ch <- accepted{c, err}
	}()
	c0, err := net.DialUnix("unixpacket", nil, addr)
	if err != nil {
		return nil, err
	}
	a := <-ch
	if a.err != nil {
		c0.Close()
		return nil, a.err
	}
	c1 := a.c
	f0, err0 := c0.File()
	f1, err1 := c1.File()
	c0.Close()
	c1.Close()
	if err := errors.Join(err0, err1); err != nil {
		_ = closeAll(f0, f1)()
		return nil, err
	}
	c := &fileChan{ref: "0", remove: track(closeAll(f0, f1))}
	c.ends[0] = [2]*os.File{f0, f0}
	c.ends[1] = [2]*os.File{f1, f1}
	return c, nil
}

func (sockMsg) Open(ref string, side int, files []*os.File) (Endpoint, error) {
	if len(files) != 1 {
		return nil, fmt.Errorf("socket side needs 1 descriptor, got %d", len(files))
	}
	return &fileEnd{w: files[0], r: files[0], owned: true}, nil
}

type pipeMsg struct{}

func (pipeMsg) Typed() bool { return false }

// Create makes two pipes: side 0 writes to side 1 through the first and
// reads what side 1 writes through the second. The ref is the message size.
func (pipeMsg) Create(o ChanOpts) (Chan, error) {
	if o.MsgSize <= 0 {
		return nil, errors.New("pipe needs a message size")
	}
	r1, w1, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	r2, w2, err := os.Pipe()
	if err != nil {
		_ = closeAll(r1, w1)()
		return nil, err
	}
	c := &fileChan{ref: strconv.Itoa(o.MsgSize), size: o.MsgSize, remove: track(closeAll(r1, w1, r2, w2))}
	c.ends[0] = [2]*os.File{w1, r2}
	c.ends[1] = [2]*os.File{w2, r1}
	return c, nil
}

func (pipeMsg) Open(ref string, side int, files []*os.File) (Endpoint, error) {
	size, err := strconv.Atoi(ref)
	if err != nil || size <= 0 {
		return nil, fmt.Errorf("bad pipe ref %q", ref)
	}
	if len(files) != 2 {
		return nil, fmt.Errorf("pipe side needs 2 descriptors, got %d", len(files))
	}
	return &fileEnd{w: files[0], r: files[1], size: size, owned: true}, nil
}
