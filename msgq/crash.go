package msgq

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/usysv/usysv/kernel"
)

// KillAtEnv names the test-only crash hook: when the environment variable
// holds "step" or "step:n", the process SIGKILLs itself the n-th time
// (default 1) it reaches that step inside Send or Recv. It is read once, at
// start-up; unset, each step costs one load and compare. Crash tests (here
// and in issue 7) use it to kill a sender or receiver at a precise point.
//
// Steps, in the order a call passes them:
//
//	send-locked    sender holds the lock; nothing changed yet
//	send-alloc     blocks taken for the message, header written, text not yet
//	send-written   text written, message not linked (not yet sent)
//	send-linked    message linked: the commit point has passed; counters not updated
//	recv-locked    receiver holds the lock; nothing changed yet
//	recv-copied    text copied out, message not unlinked (not yet received)
//	recv-unlinked  message unlinked: the commit point has passed; blocks not freed
//	recv-freed     blocks freed, counters not updated
//	recv-handed    a message handed to this sleeping receiver was copied out,
//	               its slot not yet released
//	sleep          about to sleep in a waiter slot (lock released)
const KillAtEnv = "USYSV_MSGQ_KILLAT"

type step uint8

const (
	stepNone step = iota
	stepSendLocked
	stepSendAlloc
	stepSendWritten
	stepSendLinked
	stepRecvLocked
	stepRecvCopied
	stepRecvUnlinked
	stepRecvFreed
	stepRecvHanded
	stepSleep
)

var stepNames = map[string]step{
	"send-locked": stepSendLocked, "send-alloc": stepSendAlloc, "send-written": stepSendWritten,
	"send-linked": stepSendLinked, "recv-locked": stepRecvLocked, "recv-copied": stepRecvCopied,
	"recv-unlinked": stepRecvUnlinked, "recv-freed": stepRecvFreed, "recv-handed": stepRecvHanded,
	"sleep": stepSleep,
}

var (
	killAt   step // written once by init, read-only afterwards
	killLeft atomic.Int64
)

func init() {
	v := os.Getenv(KillAtEnv)
	if v == "" {
		return
	}
	name, count, _ := strings.Cut(v, ":")
	s, ok := stepNames[name]
	n := int64(1)
	if count != "" {
		var err error
		if n, err = strconv.ParseInt(count, 10, 64); err != nil || n < 1 {
			ok = false
		}
	}
	if !ok {
		fmt.Fprintf(os.Stderr, "msgq: ignoring %s=%q: want step[:n], step one of %v\n", KillAtEnv, v, stepNames)
		return
	}
	killAt = s
	killLeft.Store(n)
}

// crashPoint is a labelled step of Send or Recv (see KillAtEnv).
func crashPoint(s step) {
	if killAt == s {
		crashHit()
	}
}

func crashHit() {
	if killLeft.Add(-1) == 0 {
		pid, _ := kernel.Self()
		_ = kernel.Kill(pid, kernel.SIGKILL)
		select {} // the signal is on its way
	}
}
