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
)
