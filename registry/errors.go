package registry

import (
	"fmt"

	"github.com/usysv/usysv/kernel"
)

var (
	// ErrClosed is returned by calls on a Client after Close.
	ErrClosed = fmt.Errorf("registry: client closed: %w", kernel.ENOTCONN)
	// ErrConnLost means the connection to the registry broke after a
	// request that is not safe to repeat (a creating Get with IPC_EXCL or
	// IPC_PRIVATE) was sent: it may or may not have been applied. It
	// matches kernel.ECONNRESET. Idempotent requests are retried instead.
	ErrConnLost = fmt.Errorf("registry: connection to the registry lost; the request may have been applied: %w", kernel.ECONNRESET)
	// ErrHostStopped means the process serving the registry (usysvd, or
	// the client hosting an embedded registry) has been stopped — by
	// SIGSTOP, Ctrl-Z or a debugger — for a second, so the call gave up.
	// The request was not applied: the registry drops a changing request
	// whose client is gone, and undoes a creation it was stopped in the
	// middle of; unless the host stopped within a few microseconds of
	// finishing it (package doc), when it is applied as it goes on. It matches
	// kernel.ETIMEDOUT. Nobody can take over a stopped host: calls fail
	// this way until it is continued or killed.
	ErrHostStopped = fmt.Errorf("registry: the registry's host process is stopped; the request was given up (not applied, unless the host stopped while finishing it): %w", kernel.ETIMEDOUT)
)
