package registry

import (
	"sync"

	"github.com/usysv/usysv/kernel"
)

// Permitted is Linux's ipcperms(): it reports whether c may access an
// object with owner uid, group gid, creator cuid/cgid and the given mode for
// want (Read, Write or both; 0 asks for nothing and is always granted).
//
// The class is chosen exclusively, as Linux does: the owner bits count if
// the caller's euid is the owner's or the creator's; else the group bits if
// its egid or any supplementary group is the object's group or creator
// group; else the other bits. CAP_IPC_OWNER (c.IPCOwner) bypasses the check.
func Permitted(c Creds, uid, gid, cuid, cgid, mode uint32, want Access) bool {
	req := uint32(want) & 7
	if req == 0 || c.IPCOwner {
		return true
	}
	granted := mode
	switch {
	case c.UID == cuid || c.UID == uid:
		granted >>= 6
	case inGroup(c, cgid) || inGroup(c, gid):
		granted >>= 3
	}
	return req&^granted&7 == 0
}

func inGroup(c Creds, g uint32) bool {
	if c.GID == g {
		return true
	}
	for _, x := range c.Groups {
		if x == g {
			return true
		}
	}
	return false
}

// RequestedAccess is what the low 9 bits of a *get flag ask for: Linux merges
// every class's bits into one rwx request ((flg>>6)|(flg>>3)|flg)&7.
func RequestedAccess(flags int) Access {
	f := uint32(flags)
	return Access((f>>6 | f>>3 | f) & 7)
}

// IsOwner reports whether c may IPC_SET or IPC_RMID an object with owner uid
// and creator cuid: the owner, the creator, or CAP_SYS_ADMIN.
func IsOwner(c Creds, uid, cuid uint32) bool {
	return c.UID == uid || c.UID == cuid || c.SysAdmin
}

var self struct {
	once sync.Once
	c    Creds
}

// Self returns this process's credentials (effective uid and gid,
// supplementary groups, capabilities), read once. A process that changes
// its credentials afterwards keeps being judged, by its own fast paths, on
// the old ones; the registry judges it on the credentials it had when it
// connected.
func Self() Creds {
	self.once.Do(func() {
		c, err := kernel.SelfCreds()
		if err != nil {
			pid := kernel.Getpid()
			c = Creds{PID: pid, UID: uint32(kernel.Geteuid())}
		}
		self.c = c
	})
	return self.c
}
