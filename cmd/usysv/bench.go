package main

import (
	"os"
	"os/exec"

	"github.com/usysv/usysv/bench"
)

// benchHelperEnv marks a process that the bench verb started as one of its
// helpers (a producer, consumer, pinger or ponger): it runs that part and
// exits, instead of the benchmark.
const benchHelperEnv = "USYSV_BENCH_HELPER"

func init() {
	verbs["bench"] = benchVerb
	summaries["bench"] = "bench [-quick] [-json] [-case LIST] [-impl LIST]   usysv against the kernel, side by side"
}

// benchVerb is `usysv bench`; see bench.Command for the flags.
func benchVerb(args []string) int {
	if os.Getenv(benchHelperEnv) == "1" {
		return bench.HelperMain(args)
	}
	return bench.Command(args, os.Stdout, os.Stderr, benchSpawn)
}

// benchSpawn re-executes this binary as a bench helper.
func benchSpawn(args []string) *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	cmd := exec.Command(self, append([]string{"bench"}, args...)...)
	cmd.Env = append(os.Environ(), benchHelperEnv+"=1")
	return cmd
}
