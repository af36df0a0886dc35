package chaos

import (
	"flag"
	"testing"
	"time"

	"github.com/usysv/usysv/internal/testutil"
)

// duration is the fault-injection time of the long run (make chaos
// DURATION=60s), shared out among TestChaos's scenarios. Zero: the short
// run of `go test ./...`, a few seconds per scenario.
var duration = flag.Duration("chaos.duration", 0, "fault-injection time of the long run, shared out among the TestChaos scenarios (0: the short run)")

func TestMain(m *testing.M) { testutil.Main(m) }

// long reports whether this is the long run.
func long() bool { return *duration > 0 }

// share is a scenario's part of the run: frac of -chaos.duration in the
// long run, short in the short run.
func share(frac float64, short time.Duration) time.Duration {
	if !long() {
		return short
	}
	return time.Duration(float64(*duration) * frac)
}

// hangAfter is how long nothing may progress before a run counts as hung.
const hangAfter = 30 * time.Second
