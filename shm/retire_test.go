package shm_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// TestRetire: a retired segment is detached at once (a removed one is freed
// by the kernel), yet pointers into it stay readable, as zeros: the header
// no longer says live, so users see a removed object, not a fault.
func TestRetire(t *testing.T) {
	s := newSegment(t, testParams())
	id := s.ID()
	ds, err := kernel.ShmctlStat(id)
	require.NoError(t, err)
	before := ds.Nattch
	w, err := shm.At[uint64](s, s.Params().BodyOffset())
	require.NoError(t, err)
	*w = 42
	require.False(t, s.Removed())

	require.NoError(t, s.Retire())
	ds, err = kernel.ShmctlStat(id)
	require.NoError(t, err)
	assert.Equal(t, before-1, ds.Nattch, "Retire detached the segment")
	assert.True(t, s.Removed(), "a retired segment reads as not live")
	assert.Zero(t, *w, "the old addresses read zeros")
	*w = 7 // and take writes without faulting
	require.NoError(t, s.Retire(), "idempotent")
	require.NoError(t, s.Close(), "Close after Retire is a no-op")

	// Removed and retired: the kernel frees the segment.
	require.NoError(t, kernel.ShmctlRemove(id))
	_, err = kernel.ShmctlStat(id)
	assert.ErrorIs(t, err, kernel.EINVAL, "no attach left: the segment is gone")
}
