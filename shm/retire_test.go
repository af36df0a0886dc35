package shm_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// TestRetire: a retired segment is detached at once (a removed one is freed
// by the kernel), yet pointers into it stay readable, as zeros: the header
// no longer says live, so users see a removed object, not a fault.
func TestRetire(t *testing.T) {
	s := newSegment(t, testParams())
	id := s.ID()
	requireNattch(t, id, 1, "newSegment's map")
	w, err := shm.At[uint64](s, s.Params().BodyOffset())
	require.NoError(t, err)
	*w = 42
	require.False(t, s.Removed())

	require.NoError(t, s.Retire())
	requireNattch(t, id, 0, "Retire detached the segment")
	assert.True(t, s.Removed(), "a retired segment reads as not live")
	assert.Zero(t, *w, "the old addresses read zeros")
	*w = 7 // and take writes without faulting
	require.NoError(t, s.Retire(), "idempotent")
	require.NoError(t, s.Close(), "Close after Retire is a no-op")

	// Removed and retired: the kernel frees the segment.
	require.NoError(t, kernel.ShmctlRemove(id))
	testutil.RequireShmGone(t, id, "no attach left: the segment is gone")
}

// TestRetireWaitsForSleepers: while a goroutine sleeps on the segment
// (BeginSleep..EndSleep) Retire leaves the attach in place, and the last
// EndSleep carries it out; once retiring, BeginSleep says not to sleep.
func TestRetireWaitsForSleepers(t *testing.T) {
	s := newSegment(t, testParams())
	id := s.ID()
	requireNattch(t, id, 1, "newSegment's map")
	w, err := shm.At[uint64](s, s.Params().BodyOffset())
	require.NoError(t, err)
	*w = 42

	require.True(t, s.BeginSleep(), "a live segment may be slept on")
	require.True(t, s.BeginSleep(), "by several goroutines")
	require.NoError(t, s.Retire())
	assert.Equal(t, uint64(42), *w, "not replaced while someone sleeps on it")
	assert.False(t, s.BeginSleep(), "no new sleeper once retiring")
	s.EndSleep() // that refused sleeper
	s.EndSleep()
	assert.Equal(t, uint64(42), *w, "one sleeper left")
	s.EndSleep()
	requireNattch(t, id, 0, "the last sleeper's EndSleep detached it")
	assert.Zero(t, *w, "the old addresses read zeros")
	require.NoError(t, s.Retire(), "idempotent")
}
