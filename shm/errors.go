package shm

import (
	"errors"

	"github.com/usysv/usysv/kernel"
)

var (
	// ErrCorrupt means a segment's contents break its own invariants (a bad
	// checksum, an index or length out of range). The library returns it
	// instead of panicking or touching memory outside the segment.
	ErrCorrupt = errors.New("shm: segment is corrupt")
	// ErrVersionMismatch means the segment was laid out by another version
	// of usysv.
	ErrVersionMismatch = errors.New("shm: segment layout version mismatch")
	// ErrForeign means the segment is not a usysv object (no magic), or is
	// of another kind or registry namespace. It matches kernel.EINVAL, which
	// is what the SysV calls return for an id that names no such object.
	ErrForeign = &wrapError{msg: "shm: not a usysv object of this kind", err: kernel.EINVAL}
	// ErrBounds, ErrAlign and ErrType are returned by the accessors for a
	// request outside the segment, misaligned, or of a type that cannot live
	// in shared memory. They wrap ErrCorrupt: offsets come from the segment.
	ErrBounds = &wrapError{msg: "shm: access out of bounds", err: ErrCorrupt}
	ErrAlign  = &wrapError{msg: "shm: misaligned access", err: ErrCorrupt}
	ErrType   = errors.New("shm: type not allowed in shared memory")
)

type wrapError struct {
	msg string
	err error
}

func (e *wrapError) Error() string { return e.msg + ": " + e.err.Error() }
func (e *wrapError) Unwrap() error { return e.err }
