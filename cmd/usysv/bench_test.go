package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/bench"
	"github.com/usysv/usysv/internal/testutil"
)

// In a test, "this binary" is the test binary: the helper "usysv-verb" runs a
// verb as main would, so that benchSpawn's re-execution (verb bench with
// USYSV_BENCH_HELPER set) goes through the same wiring as in usysv.
func init() {
	testutil.RegisterHelper("usysv-verb", func(args []string) int {
		if len(args) == 0 || verbs[args[0]] == nil {
			return 2
		}
		return verbs[args[0]](args[1:])
	})
}

func testBenchSpawn(args []string) *exec.Cmd {
	cmd := benchSpawn(args)
	cmd.Env = append(cmd.Env, "USYSV_TEST_HELPER=usysv-verb")
	return cmd
}

func TestBenchVerb(t *testing.T) {
	require.NotNil(t, verbs["bench"])
	assert.Contains(t, summaries["bench"], "-quick")

	// A short run of a same-process and two cross-process cases on usysv
	// and the kernel, through the verb's helper mode.
	args := []string{"-quick", "-budget", "30ms", "-rounds", "1", "-impl", "usysv,kernel",
		"-case", "sem/uncontended,sem/pingpong,msg/stream"}
	var out, errb strings.Builder
	code := bench.Command(append(args, "-json"), &out, &errb, testBenchSpawn)
	require.Equal(t, 0, code, "stderr: %s", errb.String())
	require.NoError(t, bench.Validate([]byte(out.String())), out.String())
	var rep bench.Report
	require.NoError(t, json.Unmarshal([]byte(out.String()), &rep))
	require.Len(t, rep.Results, 3)
	for _, res := range rep.Results {
		for impl, ir := range res.Impls {
			assert.Empty(t, ir.Error, "%s on %s", res.Case, impl)
		}
		assert.NotNil(t, res.Speedup, res.Case)
	}
	assert.Zero(t, bench.Outstanding())

	code = benchVerb([]string{"-list"})
	assert.Equal(t, 0, code)
	assert.Equal(t, 2, benchVerb([]string{"-nosuchflag"}))
}
