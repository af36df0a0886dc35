package kernel

import (
	"os"

	"golang.org/x/sys/unix"
)

// StopSignals are the signals a daemon stops on (SIGTERM, SIGINT), for
// os/signal.Notify without importing syscall.
func StopSignals() []os.Signal { return []os.Signal{unix.SIGTERM, unix.SIGINT} }
