package shm_test

import (
	"math"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/shm"
)

// accessSegment is an in-memory segment of 576 bytes: header, 2 waiter
// slots, a 64-byte body.
func accessSegment(t *testing.T) *shm.Segment {
	t.Helper()
	p := testParams()
	p.Waiters = 2
	s, err := shm.FromBytes(formatted(t, p))
	require.NoError(t, err)
	require.Equal(t, 576, s.Len())
	return s
}

func TestAtInBounds(t *testing.T) {
	s := accessSegment(t)
	body := s.Params().BodyOffset()

	u64, err := shm.At[atomic.Uint64](s, body)
	require.NoError(t, err)
	u64.Store(0x0102030405060708)
	b, err := s.Bytes(body, 8)
	require.NoError(t, err)
	assert.Equal(t, []byte{8, 7, 6, 5, 4, 3, 2, 1}, b, "At and Bytes see the same memory")

	last, err := shm.At[uint64](s, uint64(s.Len())-8)
	require.NoError(t, err, "the last 8 bytes")
	*last = 1

	arr, err := shm.At[[4]atomic.Uint32](s, body+8)
	require.NoError(t, err)
	arr[3].Store(9)

	u8, err := shm.At[uint8](s, body+63)
	require.NoError(t, err, "a byte needs no alignment")
	*u8 = 5

	type pair struct {
		A atomic.Uint32
		B int32
		C [2]uint16
		D bool
	}
	_, err = shm.At[pair](s, body+16)
	require.NoError(t, err, "structs of fixed-width fields are allowed")

	xs, err := shm.Slice[atomic.Uint64](s, body, 8)
	require.NoError(t, err)
	require.Len(t, xs, 8)
	assert.Equal(t, uint64(0x0102030405060708), xs[0].Load())

	empty, err := shm.Slice[uint64](s, uint64(s.Len()), 0)
	require.NoError(t, err, "an empty slice at the end")
	assert.Empty(t, empty)

	whole, err := s.Bytes(0, uint64(s.Len()))
	require.NoError(t, err)
	assert.Len(t, whole, s.Len())
	assert.Equal(t, s.Len(), cap(whole), "Bytes caps the slice: appending cannot reach past it")
	end, err := s.Bytes(uint64(s.Len()), 0)
	require.NoError(t, err)
	assert.Empty(t, end)
}

func TestAtOutOfBounds(t *testing.T) {
	s := accessSegment(t)
	size := uint64(s.Len())
	for _, off := range []uint64{size, size - 4, size + 8, 1 << 40, math.MaxUint64 - 7, math.MaxUint64} {
		_, err := shm.At[uint64](s, off)
		require.ErrorIs(t, err, shm.ErrBounds, "At[uint64](%d)", off)
		require.ErrorIs(t, err, shm.ErrCorrupt, "bounds errors are corruption")
	}
	_, err := shm.At[[1024]byte](s, 0)
	require.ErrorIs(t, err, shm.ErrBounds, "a type bigger than the segment")
	_, err = shm.At[uint8](s, size)
	require.ErrorIs(t, err, shm.ErrBounds)

	_, err = shm.Slice[uint64](s, size-8, 2)
	require.ErrorIs(t, err, shm.ErrBounds)
	_, err = shm.Slice[uint64](s, 0, -1)
	require.ErrorIs(t, err, shm.ErrBounds, "negative count")
	_, err = shm.Slice[uint64](s, size+8, 0)
	require.ErrorIs(t, err, shm.ErrBounds, "even an empty slice must start inside")

	for _, off := range []uint64{size + 1, math.MaxUint64} {
		_, err = s.Bytes(off, 0)
		require.ErrorIs(t, err, shm.ErrBounds, "Bytes(%d, 0)", off)
	}
	_, err = s.Bytes(1, size)
	require.ErrorIs(t, err, shm.ErrBounds)
	_, err = s.Bytes(8, math.MaxUint64-4)
	require.ErrorIs(t, err, shm.ErrBounds, "off+n overflows")
}

func TestSliceOverflow(t *testing.T) {
	s := accessSegment(t)
	// Counts whose byte size overflows 64 bits, or wraps to something small.
	_, err := shm.Slice[uint64](s, 0, math.MaxInt)
	require.ErrorIs(t, err, shm.ErrBounds)
	_, err = shm.Slice[atomic.Uint64](s, 8, math.MaxInt/4)
	require.ErrorIs(t, err, shm.ErrBounds)
	if strconv.IntSize == 64 {
		shift := 52 // not a constant: it would overflow int on 32-bit platforms
		_, err = shm.Slice[[4096]byte](s, 0, 1<<shift)
		require.ErrorIs(t, err, shm.ErrBounds, "4096 × 2^52 wraps to 0")
		shift = 44
		_, err = shm.Slice[[1 << 20]byte](s, 0, 1<<shift+1)
		require.ErrorIs(t, err, shm.ErrBounds, "wraps to 1 MiB")
	}
}

func TestAtMisaligned(t *testing.T) {
	s := accessSegment(t)
	body := s.Params().BodyOffset()
	for _, off := range []uint64{1, 2, 4, 6, 7} {
		_, err := shm.At[atomic.Uint64](s, body+off)
		require.ErrorIs(t, err, shm.ErrAlign, "At[atomic.Uint64](body+%d)", off)
		require.ErrorIs(t, err, shm.ErrCorrupt)
	}
	_, err := shm.At[atomic.Uint32](s, body+2)
	require.ErrorIs(t, err, shm.ErrAlign)
	_, err = shm.At[uint16](s, body+1)
	require.ErrorIs(t, err, shm.ErrAlign)
	_, err = shm.At[[16]byte](s, body+4)
	require.ErrorIs(t, err, shm.ErrAlign, "anything of 8 bytes or more is 8-aligned, on every GOARCH")
	_, err = shm.Slice[atomic.Uint32](s, body+1, 2)
	require.ErrorIs(t, err, shm.ErrAlign)
	_, err = shm.At[atomic.Uint32](s, body+4)
	require.NoError(t, err)

	// A segment whose memory itself sits at a misaligned address is caught
	// when its header words are mapped.
	good := formatted(t, testParams())
	buf := make([]byte, len(good)+8)
	copy(buf[4:], good)
	_, err = shm.FromBytes(buf[4 : 4+len(good)])
	require.ErrorIs(t, err, shm.ErrAlign)
}

func TestAtRejectsPointerTypes(t *testing.T) {
	s := accessSegment(t)
	body := s.Params().BodyOffset()
	check := func(name string, err error) {
		t.Helper()
		require.ErrorIs(t, err, shm.ErrType, name)
		require.NotErrorIs(t, err, shm.ErrCorrupt, "%s: a bad type is the caller's bug, not corruption", name)
	}
	var err error
	_, err = shm.At[*uint64](s, body)
	check("pointer", err)
	_, err = shm.At[[]byte](s, body)
	check("slice", err)
	_, err = shm.At[string](s, body)
	check("string", err)
	_, err = shm.At[map[int]int](s, body)
	check("map", err)
	_, err = shm.At[any](s, body)
	check("interface", err)
	_, err = shm.At[func()](s, body)
	check("func", err)
	_, err = shm.At[chan int](s, body)
	check("chan", err)
	_, err = shm.At[uintptr](s, body)
	check("uintptr", err)
	_, err = shm.At[int](s, body)
	check("int (platform width)", err)
	_, err = shm.At[float64](s, body)
	check("float64", err)
	_, err = shm.At[atomic.Pointer[int]](s, body)
	check("atomic.Pointer", err)
	_, err = shm.At[struct {
		A uint64
		B [2]struct{ P *int }
	}](s, body)
	check("pointer nested in a struct", err)
	_, err = shm.At[struct{}](s, uint64(s.Len()))
	check("zero-size type", err)
	_, err = shm.Slice[*uint32](s, body, 0)
	check("empty slice of pointers", err)
	// Checked again (cached) with the same answer.
	_, err = shm.At[*uint64](s, body)
	check("pointer, cached", err)
}
