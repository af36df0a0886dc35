package msgq

import (
	"github.com/usysv/usysv/internal/killat"
)

// KillAtEnv names the test-only crash hook: when the environment variable
// holds "step" or "step:n", the process SIGKILLs itself the n-th time
// (default 1) it reaches that step inside Send or Recv. It is read once, at
// start-up; unset, each step costs one load and compare. Crash tests (here
// and in issue 7) use it to kill a sender or receiver at a precise point.
//
// Steps, in the order a call passes them. A send or receive goes through
// the store (under the lock) or through the ring (lock-free); the steps
// that both have carry the same name, at the same point of the operation:
//
//	send-locked    store: sender holds the lock; ring: about to claim the
//	               tail's slot. Nothing changed yet
//	ring-claimed   ring: slot claimed, nothing written (not yet sent)
//	send-alloc     store: blocks taken for the message, header written, text
//	               not yet; ring: type and length written, text not yet
//	send-written   text written, message not linked (store) / position not
//	               committed (ring): not yet sent
//	ring-written   ring: the same state as send-written (the whole message in
//	               its claimed slot, not committed), under the ring's name
//	send-linked    store: message linked: the commit point has passed;
//	               counters not updated; ring: position committed (the commit
//	               point), lspid/stime not updated
//	recv-locked    store: receiver holds the lock; ring: the first message
//	               matches, about to copy it. Nothing changed yet
//	recv-copied    text copied out, message not unlinked (store) / the head
//	               not moved past it (ring): not yet received
//	ring-taken     ring: the same state as recv-copied (the message copied,
//	               about to take it with the head's CAS), under the ring's name
//	recv-unlinked  message unlinked (store) / head moved past it (ring): the
//	               commit point has passed; blocks not freed
//	recv-freed     blocks freed (ring: the slot is free once the head passed
//	               it, so this is recv-unlinked's point), counters not updated
//	recv-handed    a message handed to this sleeping receiver was copied out,
//	               its slot not yet released
//	sleep          about to sleep in a waiter slot (lock released)
//	ring-flushed   a locked call moving the ring's messages into the store
//	               has linked them there, the ring's head not moved past them
//	unlocked       a locked section released the lock, the wake-ups it
//	               decided on (marked in the waiters' slots) not yet made
//
// A message of bigCopy bytes or more is copied with the lock released: a
// send passes send-locked and takes its blocks under the lock, then
// send-alloc and send-written without it, then send-linked under it again;
// a receive passes recv-locked and recv-unlinked (its commit) under the
// lock, then recv-copied without it (the message is received already),
// then recv-freed under it again.
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
	stepRingClaimed
	stepRingWritten
	stepRingTaken
	stepRingFlushed
	stepUnlocked
)

var stepNames = map[string]step{
	"send-locked": stepSendLocked, "send-alloc": stepSendAlloc, "send-written": stepSendWritten,
	"send-linked": stepSendLinked, "recv-locked": stepRecvLocked, "recv-copied": stepRecvCopied,
	"recv-unlinked": stepRecvUnlinked, "recv-freed": stepRecvFreed, "recv-handed": stepRecvHanded,
	"sleep": stepSleep, "ring-claimed": stepRingClaimed, "ring-written": stepRingWritten,
	"ring-taken": stepRingTaken, "ring-flushed": stepRingFlushed, "unlocked": stepUnlocked,
}

var crash killat.Points[step]

func init() { crash.Arm("msgq", KillAtEnv, stepNames) }

// crashPoint is a labelled step of Send or Recv (see KillAtEnv).
func crashPoint(s step) { crash.At(s) }

// repairHook, if set (by tests), runs at the start of every repair.
var repairHook func()

// roomHook, if set (by tests), runs in a sender of the locked path that
// found no room, just before it reads the futex word it will sleep on.
var roomHook func()
