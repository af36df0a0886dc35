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
