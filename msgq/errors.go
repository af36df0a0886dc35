package msgq

import (
	"context"
	"fmt"

	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

var (
	// ErrFull is returned by the non-blocking sends when the message does
	// not fit in the queue (Linux's test: cbytes+len > qbytes or
	// qnum+1 > qbytes). It matches kernel.EAGAIN, msgsnd's errno with
	// IPC_NOWAIT.
	ErrFull error = &wrapError{msg: "msgq: queue full", err: kernel.EAGAIN}
	// ErrEmpty is returned by the non-blocking receives when no message
	// matches. It matches kernel.ENOMSG, msgrcv's errno with IPC_NOWAIT.
	ErrEmpty error = &wrapError{msg: "msgq: no message", err: kernel.ENOMSG}
	// ErrCorrupt means the queue's shared memory breaks the queue's own
	// invariants (an index or length out of range, a cycle). It matches
	// shm.ErrCorrupt. The library returns it instead of panicking or
	// touching memory outside the segment.
	ErrCorrupt error = &wrapError{msg: "msgq: queue is corrupt", err: shm.ErrCorrupt}
	// ErrClosed is returned by calls on a handle after Close. It matches
	// kernel.EINVAL, what the kernel says for an id that names nothing.
	ErrClosed error = &wrapError{msg: "msgq: handle closed", err: kernel.EINVAL}
)

type wrapError struct {
	msg string
	err error
}

func (e *wrapError) Error() string { return e.msg + ": " + e.err.Error() }
func (e *wrapError) Unwrap() error { return e.err }

// interrupted is the error of a blocking call whose context ended: it
// matches both the context's error and kernel.EINTR, what a SysV call
// interrupted by a signal returns.
type interrupted struct{ ctx error }

func (e *interrupted) Error() string   { return "msgq: interrupted: " + e.ctx.Error() }
func (e *interrupted) Unwrap() []error { return []error{e.ctx, kernel.EINTR} }

func ctxError(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return &interrupted{ctx: err}
	}
	return nil
}

// corrupt builds an ErrCorrupt with what was found.
func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, a...)...)
}
