package shm

import (
	"sync/atomic"
	"unsafe"
)

// The common layout of every usysv segment. All offsets and every unsafe
// cast into mapped memory live in this file and in access.go.
//
//	offset  size  field            written by        notes
//	------  ----  ---------------  ----------------  -----------------------------------
//	   0      4   magic            creator, once     "usv1" little-endian (Magic)
//	   4      4   version          creator, once     LayoutVersion
//	   8      4   kind             creator, once     KindSem / KindMsg
//	  12      4   headerSize       creator, once     HeaderSize
//	  16      8   size             creator, once     bytes of the whole layout
//	  24      8   namespace        creator, once     registry namespace
//	  32      4   key              creator, once     SysV key (0 = IPC_PRIVATE)
//	  36      4   count            creator, once     sem: nsems
//	  40      8   capacity         creator, once     msg: bytes the body can hold
//	  48      4   cuid             creator, once
//	  52      4   cgid             creator, once
//	  56      4   waiters          creator, once     waiter-table slots
//	  60      4   maxMsg           creator, once     msg: largest message
//	  64      8   bodySize         creator, once     bytes of the kind-specific body
//	  72      8   checksum         creator, once     xxhash64 of bytes [0,72)
//	 128      4   state            registry          StateCreating / StateLive / StateRemoved (atomic)
//	 132      4   permSeq          registry          seqlock over uid..mode (odd: writing)
//	 136      4   uid              registry
//	 140      4   gid              registry
//	 144      4   mode             registry          low 9 bits
//	 148      4   deadGen          registry          bumped when a client process dies
//	 152      8   ctime            registry, kinds   Unix seconds (atomic)
//	 160      8   param            registry          msg: qbytes (atomic)
//	 168      4   keyless          registry          1: the key is dropped (DropKey; added
//	                                                  within version 2: 0, as older
//	                                                  segments have it, means keyed)
//	 192      8   lock             anyone            robust mutex: start<<32 | lockWaiters | tid
//	                                                  of the holder's sentinel thread
//	                                                  (the futex is its low 32 bits)
//	 200      8   section          the lock holder   critical-section counter (Mutex.Enter)
//	 208      4   holderPid        the lock holder   its pid, for Mutex.Holder (added
//	                                                  within version 2)
//	 256          waiter table     kinds             waiters × WaiterSize bytes
//	 ...          body             kinds             bodySize bytes
//
// Every 64-bit field is 8-aligned; the mutable words are on their own
// cache lines, away from the immutable part and from the lock.
//
// The version covers what the kinds keep in the body and the waiter table
// as well: processes that share an object must follow one protocol. 3: a
// sem waiter leaves its queue without the lock, and lock holders claim a
// waiter before they complete it (sem/queue.go); a process of version 2
// would complete a waiter that had left.
const (
	Magic         = 0x31767375 // "usv1"
	LayoutVersion = 3
	HeaderSize    = 256
	WaiterSize    = 128

	offMagic     = 0
	offVersion   = 4
	offKind      = 8
	offHdrSize   = 12
	offSize      = 16
	offNamespace = 24
	offKey       = 32
	offCount     = 36
	offCapacity  = 40
	offCUID      = 48
	offCGID      = 52
	offWaiters   = 56
	offMaxMsg    = 60
	offBodySize  = 64
	offChecksum  = 72
	immutableEnd = offChecksum

	offState   = 128
	offPermSeq = 132
	offUID     = 136
	offGID     = 140
	offMode    = 144
	offDeadGen = 148
	offCtime   = 152
	offParam   = 160
	offKeyless = 168
	offLock    = 192
	offSection = 200
	offHolder  = 208
)

// header is the mapped view of the mutable part of the common header.
type header struct {
	state     atomic.Uint32
	permSeq   atomic.Uint32
	uid       atomic.Uint32
	gid       atomic.Uint32
	mode      atomic.Uint32
	deadGen   atomic.Uint32
	ctime     atomic.Int64
	param     atomic.Uint64
	keyless   atomic.Uint32
	_         [20]byte
	lock      atomic.Uint64
	section   atomic.Uint64
	holderPid atomic.Uint32
}

// WaiterSlot is one entry of the waiter table: a process blocked in an
// operation sleeps on Futex. The common part is generic so that the registry
// can wake every waiter (on IPC_RMID, or after a client died) without
// knowing the kind; Arg holds kind-specific parameters.
//
// Life tells others at once when the holder has died (life.go): the holder
// takes it (Hold) before it publishes the slot in State and gives it back
// (Release) before it frees the slot. The second cache line is Life's and
// spare.
type WaiterSlot struct {
	Futex atomic.Uint32 // wakers add 1, then FUTEX_WAKE
	State atomic.Uint32 // 0: free; kinds define the rest
	PID   atomic.Uint32
	_     uint32
	Start atomic.Uint64 // start time of PID (kernel.ProcessStartTime)
	Arg   [5]atomic.Uint64
	Life  Life
	_     [WaiterSize - 64 - lifeSize]byte
}

// Compile-time checks that the Go structs match the table above.
var (
	_ [offLock - offState - int(unsafe.Offsetof(header{}.lock))]struct{}
	_ [int(unsafe.Offsetof(header{}.lock)) - (offLock - offState)]struct{}
	_ [offCtime - offState - int(unsafe.Offsetof(header{}.ctime))]struct{}
	_ [offParam - offState - int(unsafe.Offsetof(header{}.param))]struct{}
	_ [offKeyless - offState - int(unsafe.Offsetof(header{}.keyless))]struct{}
	_ [int(unsafe.Offsetof(header{}.keyless)) - (offKeyless - offState)]struct{}
	_ [WaiterSize - int(unsafe.Sizeof(WaiterSlot{}))]struct{}
	_ [int(unsafe.Sizeof(WaiterSlot{})) - WaiterSize]struct{}
	_ [offSection - offState - int(unsafe.Offsetof(header{}.section))]struct{}
	_ [int(unsafe.Offsetof(header{}.section)) - (offSection - offState)]struct{}
	_ [offHolder - offState - int(unsafe.Offsetof(header{}.holderPid))]struct{}
	_ [int(unsafe.Offsetof(header{}.holderPid)) - (offHolder - offState)]struct{}
	_ [HeaderSize - offHolder - 4]struct{}
	_ [lifeSize - 16]struct{}
	_ [16 - lifeSize]struct{}
)
