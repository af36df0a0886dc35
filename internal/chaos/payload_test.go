package chaos

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A chaos message carries who sent it and a checksum, so that a receiver
// can tell a whole message from a torn one (half of it from a send that
// died, or a block reused under it):
//
//	off  size
//	  0    4  magic
//	  4    4  producer (an incarnation: a restarted producer has a new id)
//	  8    8  sequence number within the producer
//	 16    8  mtype it was sent with
//	 24    4  total length
//	 28    4  zero
//	 32  n-40 filler, a function of producer, sequence and offset
//	n-8    8  xxhash64 of bytes [0, n-8)
const (
	payloadMagic = 0xC4A05EED
	payloadMin   = 40
)

// msgType is the type producer prod gives its message seq: a fixed
// function, so that the checker knows it too.
func msgType(prod int, seq uint64, ntypes int) int64 {
	return 1 + int64((seq*7+uint64(prod))%uint64(ntypes))
}

// msgSize is the length of message seq of producer prod, in [lo, hi].
func msgSize(prod int, seq uint64, lo, hi int) int {
	if hi <= lo {
		return lo
	}
	h := xxhash.Sum64(binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, uint64(prod)), seq))
	// Mostly small, sometimes up to hi: both one-block and chained messages.
	if h&3 == 0 {
		return lo + int((h>>8)%uint64(hi-lo+1))
	}
	return lo + int((h>>8)%uint64(min(hi-lo+1, 64)))
}

func filler(prod int, seq uint64, i int) byte { return byte(i*31 + int(seq)*7 + prod*13) }

// encode builds message seq of producer prod into buf (reused) and returns it.
func encode(buf []byte, prod int, seq uint64, mtype int64, n int) []byte {
	if n < payloadMin {
		n = payloadMin
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	b := buf[:n]
	binary.LittleEndian.PutUint32(b[0:], payloadMagic)
	binary.LittleEndian.PutUint32(b[4:], uint32(prod))
	binary.LittleEndian.PutUint64(b[8:], seq)
	binary.LittleEndian.PutUint64(b[16:], uint64(mtype))
	binary.LittleEndian.PutUint32(b[24:], uint32(n))
	binary.LittleEndian.PutUint32(b[28:], 0)
	for i := 32; i < n-8; i++ {
		b[i] = filler(prod, seq, i)
	}
	binary.LittleEndian.PutUint64(b[n-8:], xxhash.Sum64(b[:n-8]))
	return b
}

// decode checks a received message (text b, received with type rtype) and
// returns its producer and sequence, or why it is torn.
func decode(b []byte, rtype int64) (prod int, seq uint64, err error) {
	if len(b) < payloadMin {
		return 0, 0, fmt.Errorf("short message: %d bytes", len(b))
	}
	if m := binary.LittleEndian.Uint32(b[0:]); m != payloadMagic {
		return 0, 0, fmt.Errorf("bad magic %#x", m)
	}
	prod = int(binary.LittleEndian.Uint32(b[4:]))
	seq = binary.LittleEndian.Uint64(b[8:])
	if n := binary.LittleEndian.Uint32(b[24:]); int(n) != len(b) {
		return prod, seq, fmt.Errorf("producer %d seq %d: length %d, says %d", prod, seq, len(b), n)
	}
	if sum := xxhash.Sum64(b[:len(b)-8]); sum != binary.LittleEndian.Uint64(b[len(b)-8:]) {
		return prod, seq, fmt.Errorf("producer %d seq %d: checksum mismatch", prod, seq)
	}
	for i := 32; i < len(b)-8; i++ {
		if b[i] != filler(prod, seq, i) {
			return prod, seq, fmt.Errorf("producer %d seq %d: filler byte %d", prod, seq, i)
		}
	}
	if mt := int64(binary.LittleEndian.Uint64(b[16:])); mt != rtype {
		return prod, seq, fmt.Errorf("producer %d seq %d: sent as type %d, received as %d", prod, seq, mt, rtype)
	}
	return prod, seq, nil
}

// The checker must be able to fail: every kind of damage is detected.
func TestPayload(t *testing.T) {
	for _, n := range []int{0, payloadMin, 41, 100, 3000} {
		b := encode(nil, 7, 42, 3, n)
		prod, seq, err := decode(b, 3)
		require.NoError(t, err)
		assert.Equal(t, 7, prod)
		assert.Equal(t, uint64(42), seq)
		_, _, err = decode(b, 2)
		assert.Error(t, err, "wrong type")
		_, _, err = decode(b[:len(b)-1], 3)
		assert.Error(t, err, "truncated")
		for _, i := range []int{0, 5, 12, 33, len(b) - 9, len(b) - 1} {
			if i >= len(b) {
				continue
			}
			c := append([]byte(nil), b...)
			c[i] ^= 0x40
			_, _, err = decode(c, 3)
			assert.Error(t, err, "byte %d flipped", i)
		}
	}
	// A message whose tail belongs to another message (a reused block).
	a, b := encode(nil, 1, 1, 1, 300), encode(nil, 2, 1, 1, 300)
	torn := append(append([]byte(nil), a[:150]...), b[150:]...)
	_, _, err := decode(torn, 1)
	assert.Error(t, err)
	for seq := uint64(0); seq < 1000; seq++ {
		n := msgSize(3, seq, payloadMin, 2000)
		require.True(t, n >= payloadMin && n <= 2000, "size %d", n)
		mt := msgType(3, seq, 3)
		require.True(t, mt >= 1 && mt <= 3)
	}
}
