package fuzz

import (
	"testing"

	"github.com/usysv/usysv/internal/testutil"
)

// TestMain is shared by every fuzz target in this package.
func TestMain(m *testing.M) { testutil.Main(m) }
