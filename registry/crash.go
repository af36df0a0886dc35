package registry

import (
	"github.com/usysv/usysv/internal/killat"
)

// KillAtEnv names the registry's test-only crash hook: when the environment
// variable holds "step" or "step:n", the process SIGKILLs itself the n-th
// time (default 1) it reaches that step while serving. It is read once, at
// start-up; unset, each step costs one load and compare. Crash tests use
// it, with shm.KillAtEnv for the steps inside shm.CreateWith, to kill a
// registry host in the middle of a creation or a removal. Steps:
//
//	create-made     the segment is created and formatted (shm.CreateWith
//	                returned), not yet in the table; the journal says
//	                "made"
//	create-added    in the table, kernel permissions set; the journal
//	                still says "made"
//	create-done     the journal says the creation is done; the answer is
//	                not sent yet
//	remove-marked   IPC_RMID: the header says removed, the kernel segment
//	                is not removed yet
const KillAtEnv = "USYSV_REGISTRY_KILLAT"

type step uint8

const (
	stepNone step = iota
	stepCreateMade
	stepCreateAdded
	stepCreateDone
	stepRemoveMarked
	stepConnsShut // not a crash point: Close has shut every connection's reading side (stepHook only)
)

var stepNames = map[string]step{
	"create-made": stepCreateMade, "create-added": stepCreateAdded,
	"create-done": stepCreateDone, "remove-marked": stepRemoveMarked,
}

var crash killat.Points[step]

func init() { crash.Arm("registry", KillAtEnv, stepNames) }

// stepHook, if set (by tests, before serving), is called at every step,
// after the crash hook: an in-process test holds a request there.
var stepHook func(step)

// crashPoint is a labelled step (see KillAtEnv).
func crashPoint(s step) {
	crash.At(s)
	if stepHook != nil {
		stepHook(s)
	}
}
