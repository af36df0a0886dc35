package chaos

import (
	"fmt"
	"math/bits"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// A ledger is where the msgq workers record what they did, so that the
// test can check it: a plain kernel SysV shared-memory segment (not a
// usysv object) that every worker maps. Writing to it is a store to
// memory, so a worker records each message the instant its call returned,
// and a SIGKILL loses nothing that was recorded; and, unlike lines on a
// pipe, recording never waits for the test process to read (on two cores
// a pipe that fills up while the test is descheduled stalls the workers,
// which would be measured as a stall of the queue).
//
//	offset            what
//	0                 header (unused)
//	ledgerProd        per producer incarnation: how many of its messages
//	                  (0, 1, 2, ...) it saw sent successfully (uint64);
//	                  semaphore workers count operations here (ops, holding)
//	ledgerBits        progress bitmap: bit i set when some worker completed
//	                  an operation in millisecond i after t0
//	ledgerLanes       per consumer role: a count, then one entry per
//	                  message received, PROD<<40 | SEQ, in receive order;
//	                  each entry is written before the count that covers it
//
// Words are accessed atomically through unsafe.Pointer: the test-only
// equivalent of shm.At for a segment with no usysv header.
type ledger struct {
	id      int
	mem     []byte
	t0      int64
	lanes   int
	laneCap int
}

const (
	ledgerProd     = 4096
	maxProducers   = 1 << 16
	ledgerBits     = ledgerProd + maxProducers*8
	bitmapBits     = 1 << 22 // 70 minutes of milliseconds
	ledgerLanes    = ledgerBits + bitmapBits/8
	laneAlign      = 4096
	maxLedgerLanes = 16
)

// defaultLaneCap is how many messages one consumer role can record: the
// segment's pages are only allocated as they are written, so this is
// address space, not memory. On 64 bits, 8M for each started minute of
// the run (a lane has taken up to about 4M a minute here; a 5-minute
// make chaos once filled a fixed 8M), up to 128M (1 GiB a lane).
func defaultLaneCap() int {
	if bits.UintSize == 32 {
		return 1 << 20
	}
	minutes := max(1, int((*duration+time.Minute-1)/time.Minute))
	return min(8<<20*minutes, 128<<20)
}

func laneBytes(cap int) int { return (8 + cap*8 + laneAlign - 1) / laneAlign * laneAlign }

// newLedger makes a ledger with lanes consumer lanes, removed when the test ends.
func newLedger(t testing.TB, lanes int) *ledger {
	t.Helper()
	require.LessOrEqual(t, lanes, maxLedgerLanes)
	cap := defaultLaneCap()
	size := ledgerLanes + lanes*laneBytes(cap)
	id, err := shm.Get(kernel.IPC_PRIVATE, size, 0o600)
	require.NoError(t, err)
	testutil.Track(t, "shm", id)
	mem, err := shm.Attach(id, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = shm.Detach(mem) })
	return &ledger{id: id, mem: mem, t0: time.Now().UnixNano(), lanes: lanes, laneCap: cap}
}

// args are what a worker needs to open the ledger.
func (l *ledger) args() []string {
	return []string{fmt.Sprint(l.id), fmt.Sprint(l.t0), fmt.Sprint(l.lanes), fmt.Sprint(l.laneCap)}
}

// openLedger maps the ledger in a worker (args from ledger.args).
func openLedger(args []string) (*ledger, error) {
	l := &ledger{id: atoi(args[0]), lanes: atoi(args[2]), laneCap: atoi(args[3])}
	l.t0 = atoi64(args[1])
	mem, err := shm.Attach(l.id, 0)
	if err != nil {
		return nil, err
	}
	if len(mem) < ledgerLanes+l.lanes*laneBytes(l.laneCap) {
		return nil, fmt.Errorf("ledger of %d bytes too small", len(mem))
	}
	l.mem = mem
	return l, nil
}

func (l *ledger) word(off int) *atomic.Uint64 {
	if off < 0 || off+8 > len(l.mem) || off%8 != 0 {
		panic(fmt.Sprintf("chaos: ledger offset %d out of range", off))
	}
	return (*atomic.Uint64)(unsafe.Pointer(&l.mem[off]))
}

// sent is producer prod's count of messages sent.
func (l *ledger) sent(prod int) *atomic.Uint64 { return l.word(ledgerProd + prod%maxProducers*8) }

// A semaphore worker in role slot i (i < 256) has two words of the
// producer area, each on a cache line of its own: its count of operations
// done and whether it holds a token with SEM_UNDO (1) or not (0).
func (l *ledger) ops(i int) *atomic.Uint64     { return l.sent(i * 8) }
func (l *ledger) holding(i int) *atomic.Uint64 { return l.sent(i*8 + 1) }

func (l *ledger) laneOff(lane int) int { return ledgerLanes + lane*laneBytes(l.laneCap) }

// laneCount is the number of entries recorded in lane.
func (l *ledger) laneCount(lane int) *atomic.Uint64 { return l.word(l.laneOff(lane)) }

// record appends an entry to lane; false if the lane is full.
func (l *ledger) record(lane int, prod int, seq uint64) bool {
	c := l.laneCount(lane)
	n := c.Load()
	if n >= uint64(l.laneCap) {
		return false
	}
	l.word(l.laneOff(lane) + 8 + int(n)*8).Store(uint64(prod)<<40 | seq)
	c.Store(n + 1)
	return true
}

// entry i of lane: producer and sequence.
func (l *ledger) entry(lane, i int) (int, uint64) {
	e := l.word(l.laneOff(lane) + 8 + i*8).Load()
	return int(e >> 40), e & (1<<40 - 1)
}

// marker sets progress bits for one worker, at most once per millisecond.
type marker struct {
	l    *ledger
	last int64
}

func (m *marker) mark() {
	i := (time.Now().UnixNano() - m.l.t0) / int64(time.Millisecond)
	if i == m.last || i < 0 || i >= bitmapBits {
		return
	}
	m.last = i
	m.l.word(ledgerBits + int(i/64)*8).Or(1 << (i % 64))
}

// progressed reports whether some worker marked millisecond i.
func (l *ledger) progressed(i int64) bool {
	if i < 0 || i >= bitmapBits {
		return false
	}
	return l.word(ledgerBits+int(i/64)*8).Load()&(1<<(i%64)) != 0
}

// stall is the longest run of milliseconds in [from, to) in which no
// worker completed anything, and when it ended. The milliseconds in the
// excluded intervals count as progress: they are when the test itself held
// a process stopped (to see what it held before killing it), which is no
// stall of the system under test.
func (l *ledger) stall(from, to time.Time, excluded [][2]time.Time) (time.Duration, time.Time) {
	ms := func(t time.Time) int64 { return (t.UnixNano() - l.t0) / int64(time.Millisecond) }
	a, b := ms(from), ms(to)
	skip := map[int64]bool{}
	for _, iv := range excluded {
		for i := ms(iv[0]); i <= ms(iv[1]); i++ {
			skip[i] = true
		}
	}
	best, end, run := int64(0), a, int64(0)
	for i := max(a, 0); i < b && i < bitmapBits; i++ {
		if l.progressed(i) || skip[i] {
			if run > best {
				best, end = run, i
			}
			run = 0
		} else {
			run++
		}
	}
	return time.Duration(best) * time.Millisecond, time.Unix(0, l.t0+end*int64(time.Millisecond))
}
