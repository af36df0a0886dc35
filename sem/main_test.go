package sem

import (
	"testing"

	"github.com/usysv/usysv/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }
