package kernel

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestMoveOffCPU(t *testing.T) {
	runtime.LockOSThread() // the masks below are this thread's
	defer runtime.UnlockOSThread()
	var mask unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &mask))
	defer func() { require.NoError(t, unix.SchedSetaffinity(0, &mask)) }()

	if mask.Count() >= 2 {
		// The thread may move between two looks at its CPU (to the CPU
		// it was asked to leave, too, once the mask is restored): a few
		// tries, one of which must see the move.
		moved := false
		for try := 0; try < 5 && !moved; try++ {
			cpu := Getcpu()
			moved = MoveOffCPU(cpu) && Getcpu() != cpu
		}
		assert.True(t, moved, "moved off its CPU")
		var after unix.CPUSet
		require.NoError(t, unix.SchedGetaffinity(0, &after))
		assert.Equal(t, mask, after, "the mask is as it was")
	} else {
		t.Log("one CPU: only the cases that do not move")
	}

	// A thread allowed one CPU stays there, its mask unchanged; so does a
	// thread asked to leave a CPU it is not on.
	cpu := Getcpu()
	var one unix.CPUSet
	one.Set(cpu)
	require.NoError(t, unix.SchedSetaffinity(0, &one))
	assert.False(t, MoveOffCPU(cpu), "nowhere else to go")
	assert.Equal(t, cpu, Getcpu())
	assert.False(t, MoveOffCPU(cpu+1), "not on that CPU, not allowed it")
	var after unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &after))
	assert.Equal(t, one, after)
}
