package sem

import (
	"context"

	"github.com/usysv/usysv/kernel"
)

// Errors. Every error this package returns for a SysV condition matches
// the errno Linux returns in the same state with errors.Is (kernel.EINVAL,
// kernel.EAGAIN, ...); the sentinels below add context for usysv's own
// limits and match both themselves and their errno.
var (
	// ErrNoWaiterSlot: a blocking Op found the set's waiter table (or its
	// op-array arena) full; see the limits in doc.go. Matches ENOSPC.
	ErrNoWaiterSlot = &limitError{msg: "sem: too many blocked operations on this set", err: kernel.ENOSPC}
	// ErrNoUndoRecord: more than UndoRecords processes hold SEM_UNDO
	// adjustments on this set at once. Matches ENOSPC.
	ErrNoUndoRecord = &limitError{msg: "sem: too many processes with SEM_UNDO adjustments on this set", err: kernel.ENOSPC}
	// ErrClosed: the handle was closed. Matches EINVAL, what a stale id gives.
	ErrClosed = &limitError{msg: "sem: handle closed", err: kernel.EINVAL}
)

type limitError struct {
	msg string
	err error
}

func (e *limitError) Error() string { return e.msg + ": " + e.err.Error() }
func (e *limitError) Unwrap() error { return e.err }

// canceledError is returned by an Op whose context ended while it was
// blocked: it matches both the context's error and kernel.EINTR, which is
// what a signal gives a C caller blocked in semop.
type canceledError struct{ ctx error }

func (e canceledError) Error() string   { return "sem: operation canceled: " + e.ctx.Error() }
func (e canceledError) Unwrap() []error { return []error{e.ctx, kernel.EINTR} }

func canceled(ctx context.Context) error {
	err := ctx.Err()
	if err == nil {
		err = context.Canceled
	}
	return canceledError{ctx: err}
}
