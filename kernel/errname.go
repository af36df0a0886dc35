package kernel

import "golang.org/x/sys/unix"

// ErrnoName returns the C name of an errno ("EINVAL"), or "" for a number
// Linux does not define. Tests and tools print errnos by name with it.
func ErrnoName(e Errno) string { return unix.ErrnoName(e) }
