package kernel

import (
	"os"

	"golang.org/x/sys/unix"
)

// StopSignals are the signals a daemon or a long run stops on, cleanly:
// SIGTERM, SIGINT, and SIGHUP (its terminal closed, an ssh session
// dropped: the default action would end it without its clean-up), for
// os/signal.Notify without importing syscall.
func StopSignals() []os.Signal { return []os.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGHUP} }
