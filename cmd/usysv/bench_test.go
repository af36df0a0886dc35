package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

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
	// bench.Command in a process of its own, as the verb runs it, then a
	// line with the helpers it left running. (Run in the test binary, it
	// would leave USYSV_SOCKET and the process's registry client on the
	// run's private socket, removed at its end, for the tests after it.)
	testutil.RegisterHelper("bench-command", func(args []string) int {
		code := bench.Command(args, os.Stdout, os.Stderr, testBenchSpawn)
		fmt.Printf("outstanding %d\n", bench.Outstanding())
		return code
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
	p := testutil.Start(t, "bench-command", append(args, "-json"))
	lines := p.Rest(2 * time.Minute)
	require.Equal(t, 0, p.Wait(time.Minute), "its stderr is the test's")
	require.NotEmpty(t, lines)
	assert.Equal(t, "outstanding 0", lines[len(lines)-1], "every helper reaped")
	out := strings.Join(lines[:len(lines)-1], "\n")
	require.NoError(t, bench.Validate([]byte(out)), out)
	var rep bench.Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	require.Len(t, rep.Results, 3)
	for _, res := range rep.Results {
		for impl, ir := range res.Impls {
			assert.Empty(t, ir.Error, "%s on %s", res.Case, impl)
		}
		assert.NotNil(t, res.Speedup, res.Case)
	}

	code := benchVerb([]string{"-list"})
	assert.Equal(t, 0, code)
	assert.Equal(t, 2, benchVerb([]string{"-nosuchflag"}))
}
