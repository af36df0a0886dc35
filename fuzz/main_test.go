package fuzz

import (
	"flag"
	"testing"

	"github.com/usysv/usysv/internal/testutil"
)

// TestMain is shared by every fuzz target in this package.
//
// It lowers the fuzzing engine's default -fuzzminimizetime from 60s to 5s
// (an explicit flag still wins): the program-driven targets run goroutines,
// so their coverage varies from one execution to the next, the engine keeps
// finding "new" inputs, and with the default it spends most of a
// `make fuzz` minute minimizing them instead of fuzzing.
func TestMain(m *testing.M) {
	if f := flag.Lookup("test.fuzzminimizetime"); f != nil {
		_ = f.Value.Set("5s")
	}
	testutil.Main(m)
}
