package killat

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestParse(t *testing.T) {
	steps := map[string]uint8{"a": 1, "b": 2}
	const env = "USYSV_KILLAT_TEST"
	for v, want := range map[string][2]int64{
		"":    {0, 0},
		"a":   {1, 1},
		"b:3": {2, 3},
		"b:0": {0, 0}, // invalid count: ignored
		"b:x": {0, 0},
		"c":   {0, 0}, // unknown step: ignored
	} {
		t.Setenv(env, v)
		s, n := Parse("test", env, steps)
		assert.Equal(t, want, [2]int64{int64(s), n}, "%q", v)
	}
}

// Arm takes what Parse reads; At on another step, or with nothing armed,
// does nothing. (The kill itself is exercised by the crash tests of msgq,
// shm and registry in internal/chaos.)
func TestPointsArm(t *testing.T) {
	steps := map[string]uint8{"a": 1, "b": 2}
	const env = "USYSV_KILLAT_TEST"
	var p Points[uint8]
	t.Setenv(env, "b:3")
	p.Arm("test", env, steps)
	assert.Equal(t, uint8(2), p.at)
	assert.Equal(t, int64(3), p.left.Load())
	p.At(1) // another step: not counted
	assert.Equal(t, int64(3), p.left.Load())
	p.At(2)
	p.At(2) // counted down, not yet the n-th
	assert.Equal(t, int64(1), p.left.Load())

	var r Points[uint8]
	t.Setenv(env, "stop:a:2")
	r.Arm("test", env, steps)
	assert.Equal(t, [3]any{uint8(1), int64(2), true}, [3]any{r.at, r.left.Load(), r.stop})

	var q Points[uint8]
	t.Setenv(env, "")
	q.Arm("test", env, steps)
	q.At(1)
	q.At(2)
	assert.Equal(t, int64(0), q.left.Load())
}

// PanicAt makes the n-th arrival at its step panic with its value, in
// this process; Disarm leaves nothing armed.
func TestPanicAt(t *testing.T) {
	var p Points[uint8]
	p.PanicAt(2, 2, "injected")
	p.At(1)
	p.At(2) // the first arrival: counted
	assert.PanicsWithValue(t, "injected", func() { p.At(2) })
	p.Disarm()
	assert.NotPanics(t, func() { p.At(2); p.At(0) })
}
