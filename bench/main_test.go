package bench

import (
	"os"
	"os/exec"
	"testing"

	"github.com/usysv/usysv/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// helperName is the testutil helper that runs HelperMain in a re-executed
// test binary.
const helperName = "bench"

func init() { testutil.RegisterHelper(helperName, HelperMain) }

// testSpawn re-executes this test binary as the bench helper. testutil.Main
// runs the helper named by USYSV_TEST_HELPER instead of the tests.
func testSpawn(args []string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "USYSV_TEST_HELPER="+helperName)
	return cmd
}
