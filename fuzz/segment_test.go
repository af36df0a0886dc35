package fuzz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/usysv/usysv/shm"
)

// FuzzSegmentHeader feeds arbitrary bytes to shm.FromBytes, the validator
// every process runs on a segment it maps. Invalid input must give
// ErrForeign, ErrVersionMismatch or ErrCorrupt. Valid input must be
// canonical (Format of the parameters it reports rewrites the same header),
// and every accessor, at offsets taken from the header itself, must succeed
// exactly when a plain model of bounds and alignment says it should.
//
// With reseal set, the checksum at [72,80) is recomputed before validation,
// so that the fuzzer, which cannot forge xxhash, explores the fields behind
// it too: sizes, counts and limits that a buggy or hostile creator wrote.
func FuzzSegmentHeader(f *testing.F) {
	for _, s := range segmentHeaderSeeds() {
		f.Add(s.data, s.reseal)
	}
	f.Fuzz(func(t *testing.T, data []byte, reseal bool) {
		if reseal && len(data) >= 80 {
			data = append([]byte(nil), data...)
			binary.LittleEndian.PutUint64(data[72:], xxhash.Sum64(data[:72]))
		}
		checkSegmentHeader(t, data)
	})
}

func checkSegmentHeader(t *testing.T, data []byte) {
	// Copy into a fresh allocation: the fuzzer's slice may sit at any
	// address, while mapped segments are page-aligned.
	mem := append(make([]byte, 0, len(data)), data...)
	s, err := shm.FromBytes(mem)

	// The same bytes one byte off alignment: never a misaligned atomic.
	shifted := make([]byte, len(data)+1)[1:]
	copy(shifted, data)
	_, serr := shm.FromBytes(shifted)

	if err != nil {
		if !errors.Is(err, shm.ErrForeign) && !errors.Is(err, shm.ErrVersionMismatch) && !errors.Is(err, shm.ErrCorrupt) {
			t.Fatalf("FromBytes: unexpected error kind: %v", err)
		}
		if serr == nil {
			t.Fatalf("misaligned copy validated, aligned one did not: %v", err)
		}
		return
	}
	if !errors.Is(serr, shm.ErrAlign) {
		t.Fatalf("misaligned copy of a valid header: got %v, want ErrAlign", serr)
	}

	p := s.Params()
	if p.Waiters > shm.MaxWaiters || p.BodySize > shm.MaxBodySize || p.BodySize%8 != 0 {
		t.Fatalf("validated absurd parameters %+v", p)
	}
	if uint64(s.Len()) != p.Size() || p.Size() > uint64(len(mem)) || p.BodyOffset()+p.BodySize != p.Size() {
		t.Fatalf("sizes: len %d, params %+v, %d bytes given", s.Len(), p, len(mem))
	}
	if len(s.Waiters()) != int(p.Waiters) {
		t.Fatalf("%d waiter slots, header says %d", len(s.Waiters()), p.Waiters)
	}

	// Canonical: the immutable part is exactly what Format writes for p.
	again := make([]byte, p.Size())
	if err := shm.Format(again, p, 0, 0, 0, 0); err != nil {
		t.Fatalf("Format of validated params %+v: %v", p, err)
	}
	if !bytes.Equal(again[:80], mem[:80]) {
		t.Fatalf("header not canonical:\n got %x\nwant %x", mem[:80], again[:80])
	}

	// Accessors at offsets the header supplies, against the model.
	size := uint64(s.Len())
	offs := []uint64{
		0, shm.HeaderSize, p.BodyOffset(), p.Size(), p.Size() - 4, p.Size() - 8,
		p.Capacity, p.BodyOffset() + p.Capacity, uint64(p.Count), uint64(p.MaxMsg),
		p.BodyOffset() + uint64(p.MaxMsg), uint64(uint32(p.Key)), p.Namespace,
		p.BodySize, uint64(p.CUID), uint64(p.CGID), math.MaxUint64 - 3,
	}
	counts := []int{0, 1, int(p.Count), int(p.Waiters), int(p.MaxMsg), int(p.BodySize / 8), -1, math.MaxInt}
	for _, off := range offs {
		checkAt[atomic.Uint64](t, s, off, 8, 8)
		checkAt[atomic.Uint32](t, s, off, 4, 4)
		checkAt[uint8](t, s, off, 1, 1)
		checkAt[[3]uint16](t, s, off, 6, 2)
		for _, n := range counts {
			checkSlice[atomic.Uint32](t, s, off, n, 4)
			checkSlice[[16]byte](t, s, off, n, 16)
		}
		for _, n := range []uint64{0, 1, 8, p.BodySize, p.Capacity, size, math.MaxUint64} {
			b, err := s.Bytes(off, n)
			ok := off <= size && n <= size-off
			if ok != (err == nil) {
				t.Fatalf("Bytes(%d, %d) on %d bytes: err %v", off, n, size, err)
			}
			if err == nil && uint64(len(b)) != n {
				t.Fatalf("Bytes(%d, %d) has %d bytes", off, n, len(b))
			}
			if err != nil && !errors.Is(err, shm.ErrBounds) {
				t.Fatalf("Bytes(%d, %d): %v", off, n, err)
			}
		}
	}
	if _, err := s.Bytes(p.BodyOffset(), p.BodySize); err != nil {
		t.Fatalf("the body is not accessible: %v", err)
	}

	// The mutable words read from hostile bytes without hanging or panicking.
	_ = s.State()
	_ = s.Removed()
	_ = s.DeadGen()
	_ = s.Ctime()
	_ = s.Param()
	_ = s.Keyless()
	if s.PermSeq()%2 == 0 { // an odd one makes Perm wait (boundedly): too slow to fuzz
		_, _, mode, _ := s.Perm()
		if mode > 0o777 {
			t.Fatalf("Perm mode %o", mode)
		}
	}
	for i := range s.Waiters() {
		_ = s.Waiters()[i].State.Load()
	}
	m := s.Lock()
	_ = m.Holder()
	if m.TryLock() {
		m.Unlock()
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close of a FromBytes segment: %v", err)
	}
}

// checkAt calls At[T](s, off) and compares with the model: it works iff
// [off, off+size) lies inside the segment and off is align-aligned (the
// segment's base is 8-aligned here). On success it touches the memory.
func checkAt[T any](t *testing.T, s *shm.Segment, off, size, align uint64) {
	t.Helper()
	v, err := shm.At[T](s, off)
	n := uint64(s.Len())
	inside := off <= n && size <= n-off
	if inside && off%align != 0 {
		if !errors.Is(err, shm.ErrAlign) {
			t.Fatalf("At[%T](%d) misaligned: got %v", *new(T), off, err)
		}
		return
	}
	if inside != (err == nil) {
		t.Fatalf("At[%T](%d) on %d bytes: err %v", *new(T), off, n, err)
	}
	if err != nil {
		if !errors.Is(err, shm.ErrBounds) {
			t.Fatalf("At[%T](%d): %v", *new(T), off, err)
		}
		return
	}
	_ = *v
}

// checkSlice is checkAt for Slice[T](s, off, count).
func checkSlice[T any](t *testing.T, s *shm.Segment, off uint64, count int, size uint64) {
	t.Helper()
	v, err := shm.Slice[T](s, off, count)
	n := uint64(s.Len())
	var inside bool
	if count >= 0 {
		total, overflow := mulOverflows(size, uint64(count))
		inside = !overflow && off <= n && total <= n-off
	}
	align := min(size, 8) // anything of 8 bytes or more is 8-aligned
	if inside && off%align != 0 {
		if !errors.Is(err, shm.ErrAlign) {
			t.Fatalf("Slice[%T](%d, %d) misaligned: got %v", *new(T), off, count, err)
		}
		return
	}
	if inside != (err == nil) {
		t.Fatalf("Slice[%T](%d, %d) on %d bytes: err %v", *new(T), off, count, n, err)
	}
	if err != nil {
		if !errors.Is(err, shm.ErrBounds) {
			t.Fatalf("Slice[%T](%d, %d): %v", *new(T), off, count, err)
		}
		return
	}
	if len(v) != count {
		t.Fatalf("Slice[%T](%d, %d) has %d elements", *new(T), off, count, len(v))
	}
	if count > 0 {
		_, _ = v[0], v[count-1]
	}
}

func mulOverflows(a, b uint64) (uint64, bool) {
	if a == 0 || b == 0 {
		return 0, false
	}
	p := a * b
	return p, p/b != a
}

type seed struct {
	name   string
	data   []byte
	reseal bool
}

// segmentHeaderSeeds are the starting points of FuzzSegmentHeader: valid
// headers of every shape, and each way of being invalid.
func segmentHeaderSeeds() []seed {
	le := binary.LittleEndian
	valid := func(p shm.Params, extra int) []byte {
		mem := make([]byte, int(p.Size())+extra)
		if err := shm.Format(mem, p, 1000, 1000, 0o640, 1_700_000_000); err != nil {
			panic(err)
		}
		return mem
	}
	reseal := func(mem []byte) []byte {
		le.PutUint64(mem[72:], xxhash.Sum64(mem[:72]))
		return mem
	}
	edit := func(mem []byte, f func([]byte)) []byte {
		mem = append([]byte(nil), mem...)
		f(mem)
		return mem
	}
	sem := shm.Params{Kind: shm.KindSem, Namespace: 0xfeedface, Key: 42, Count: 3, CUID: 1000, CGID: 1000, Waiters: 4, BodySize: 64}
	msg := shm.Params{Kind: shm.KindMsg, Namespace: 0xfeedface, Key: -7, Capacity: 1024, MaxMsg: 512, Waiters: 2, BodySize: 1088}
	bare := shm.Params{Kind: shm.Kind(99)}
	semB, msgB, bareB := valid(sem, 0), valid(msg, 4096-int(msg.Size())), valid(bare, 0)
	return []seed{
		{"sem-valid", semB, false},
		{"sem-resealed", semB, true},
		{"msg-resealed-fields", edit(msgB, func(m []byte) {
			le.PutUint32(m[56:], 3) // one more waiter slot...
			le.PutUint64(m[16:], msg.Size()+64)
		}), true},
		{"msg-valid-page", msgB, false},
		{"bare-valid", bareB, false},
		{"sem-live-words", edit(semB, func(m []byte) {
			le.PutUint32(m[132:], 7)          // permSeq odd: a writer died mid-write
			le.PutUint32(m[192:], 1|1<<31)    // lock held by pid 1, waiters
			le.PutUint64(m[200:], 1<<32|1234) // its owner record
			le.PutUint32(m[256+4:], 3)        // an occupied waiter slot
		}), false},
		{"empty", nil, false},
		{"short", semB[:100], false},
		{"zeros", make([]byte, 512), false},
		{"truncated", semB[:len(semB)-8], false},
		{"version-next", reseal(edit(semB, func(m []byte) { le.PutUint32(m[4:], shm.LayoutVersion+1) })), false},
		{"bad-checksum", edit(semB, func(m []byte) { m[36] ^= 1 }), false},
		{"header-size", reseal(edit(semB, func(m []byte) { le.PutUint32(m[12:], 128) })), false},
		{"huge-waiters", reseal(edit(semB, func(m []byte) { le.PutUint32(m[56:], math.MaxUint32) })), false},
		{"huge-body", reseal(edit(msgB, func(m []byte) { le.PutUint64(m[64:], 1<<62) })), true},
		{"size-mismatch", reseal(edit(msgB, func(m []byte) { le.PutUint64(m[16:], 100) })), true},
		{"foreign-magic", reseal(edit(semB, func(m []byte) { copy(m, "SysV") })), false},
	}
}

// seedDir is where go test keeps FuzzSegmentHeader's committed corpus.
const seedDir = "testdata/fuzz/FuzzSegmentHeader"

// TestWriteSegmentHeaderSeeds regenerates the committed corpus from
// segmentHeaderSeeds when USYSV_WRITE_SEEDS=1; otherwise it checks that the
// committed corpus is exactly what the seeds say, so the two cannot drift.
func TestWriteSegmentHeaderSeeds(t *testing.T) {
	write := os.Getenv("USYSV_WRITE_SEEDS") == "1"
	for _, s := range segmentHeaderSeeds() {
		path := filepath.Join(seedDir, s.name)
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbool(%t)\n", s.data, s.reseal)
		if write {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("seed %s missing (USYSV_WRITE_SEEDS=1 go test -run TestWriteSegmentHeaderSeeds ./fuzz): %v", s.name, err)
		}
		if string(got) != want {
			t.Fatalf("seed %s differs from segmentHeaderSeeds: regenerate it", s.name)
		}
		data, reseal, err := parseSeed(string(got))
		if err != nil || !bytes.Equal(data, s.data) || reseal != s.reseal {
			t.Fatalf("seed %s does not parse back: %v", s.name, err)
		}
	}
}

// TestSegmentHeaderSeedsCoverBothOutcomes: the corpus holds headers that
// validate (so the accessor checks run) and ones that do not.
func TestSegmentHeaderSeedsCoverBothOutcomes(t *testing.T) {
	valid, invalid := 0, 0
	for _, s := range segmentHeaderSeeds() {
		if s.reseal {
			continue
		}
		if _, err := shm.FromBytes(append([]byte(nil), s.data...)); err == nil {
			valid++
		} else {
			invalid++
		}
		checkSegmentHeader(t, s.data)
	}
	if valid < 3 || invalid < 8 {
		t.Fatalf("%d valid and %d invalid seeds", valid, invalid)
	}
}

func parseSeed(file string) ([]byte, bool, error) {
	lines := strings.Split(file, "\n")
	if len(lines) != 4 || lines[0] != "go test fuzz v1" || lines[3] != "" {
		return nil, false, errors.New("not a ([]byte, bool) corpus entry")
	}
	body, ok := strings.CutPrefix(lines[1], "[]byte(")
	body, ok2 := strings.CutSuffix(body, ")")
	if !ok || !ok2 {
		return nil, false, errors.New("bad []byte line")
	}
	data, err := strconv.Unquote(body)
	if err != nil {
		return nil, false, err
	}
	reseal, err := strconv.ParseBool(strings.TrimSuffix(strings.TrimPrefix(lines[2], "bool("), ")"))
	return []byte(data), reseal, err
}
