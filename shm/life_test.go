package shm_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/shm"
)

func lifeParams() shm.Params {
	p := testParams()
	p.Waiters = 8
	return p
}

// dead lists the slots whose Life says their holder died.
func dead(s *shm.Segment) string {
	out := ""
	for i := range s.Waiters() {
		if s.Waiters()[i].Life.Dead() {
			out += fmt.Sprint(i)
		}
	}
	return out
}

// A holder's death marks exactly the Lives it held, by the time the death
// can be seen (here: the helper reaped), whether it was killed or exited;
// Lives released, or in a segment it closed, are left alone.
func TestLifeMarksDeath(t *testing.T) {
	for _, kill := range []bool{true, false} {
		t.Run(fmt.Sprintf("kill=%v", kill), func(t *testing.T) {
			s := newSegment(t, lifeParams())
			other := newSegment(t, lifeParams())
			third := newSegment(t, lifeParams())
			p := lockHelper(t, s)
			for _, c := range []string{"hold 0", "hold 1", "hold 2", "hold 5", "release 1", "hold 2", "release 7"} {
				mustCall(t, p, "%s", c)
			}
			// A second segment, held and then closed, and a third, held
			// and then retired: their Lives are unlinked before their
			// pages go (else the kernel's walk, newest first, would stop
			// there and miss the first segment's).
			mustCall(t, p, "map %d %d", other.ID(), other.Params().Kind)
			mustCall(t, p, "hold 3")
			mustCall(t, p, "close")
			mustCall(t, p, "map %d %d", third.ID(), third.Params().Kind)
			mustCall(t, p, "hold 4")
			mustCall(t, p, "retire")
			assert.Empty(t, dead(s), "nobody has died yet")
			if kill {
				p.Kill()
			} else {
				p.Send("exit 0")
				p.Wait(10 * time.Second)
			}
			assert.Equal(t, "025", dead(s), "the held Lives, at once")
		})
	}
}

// Any order of holds and releases keeps the kernel's list whole: the
// Lives held at the death, and only those, are marked.
func TestLifeListOrder(t *testing.T) {
	for round := 0; round < 5; round++ {
		s := newSegment(t, lifeParams())
		p := lockHelper(t, s)
		held := map[int]bool{}
		for k := 0; k < 40; k++ {
			i := rand.IntN(8)
			if rand.IntN(2) == 0 {
				mustCall(t, p, "hold %d", i)
				held[i] = true
			} else {
				mustCall(t, p, "release %d", i)
				delete(held, i)
			}
		}
		p.Kill()
		want := ""
		for i := 0; i < 8; i++ {
			if held[i] {
				want += fmt.Sprint(i)
			}
		}
		require.Equal(t, want, dead(s), "round %d", round)
	}
}

// In this process: Hold clears an earlier holder's mark and is
// idempotent; Abandon marks; Close and Retire unlink the segment's Lives,
// and a retired segment's zeros take none.
func TestLifeInProcess(t *testing.T) {
	n0 := shm.LivesHeld()
	s, err := shm.FromBytes(formatted(t, lifeParams()))
	require.NoError(t, err)
	l := &s.Waiters()[0].Life
	l.Abandon()
	assert.True(t, l.Dead(), "abandoned")
	l.Hold()
	l.Hold()
	assert.False(t, l.Dead(), "held again: the mark is gone")
	assert.Equal(t, n0+1, shm.LivesHeld(), "linked once")
	l.Release()
	l.Release()
	assert.Equal(t, n0, shm.LivesHeld())
	l.Hold()
	s.Waiters()[1].Life.Hold()
	require.NoError(t, s.Close())
	assert.Equal(t, n0, shm.LivesHeld(), "Close unlinks them")

	r := newSegment(t, lifeParams())
	r.Waiters()[0].Life.Hold()
	require.Equal(t, n0+1, shm.LivesHeld())
	require.NoError(t, r.Retire())
	assert.Equal(t, n0, shm.LivesHeld(), "Retire unlinks them")
	r.Waiters()[1].Life.Hold() // (on the zeros a goroutine may still touch)
	assert.Equal(t, n0, shm.LivesHeld(), "nor links one on its zeros")
}
