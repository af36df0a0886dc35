package registry

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// deadlineSetters are the net.Conn methods that arm a timer in Go's
// network poller.
var deadlineSetters = map[string]bool{"SetDeadline": true, "SetReadDeadline": true, "SetWriteDeadline": true}

// No registry connection ever has a net deadline armed (docs/INTERNALS.md,
// "Waiting on sockets"): a deadline is a runtime timer
// that keeps an idle thread in the network poller until it passes, and
// each time.Sleep of the process then wakes that thread through the
// poller's eventfd (in a scratch probe, about 1,950 writes to it in 2,000
// round trips of a sleeping sem ping-pong with the registry's host on one
// side; now about 10). Reads and writes wait in poll(2) with their own
// deadline instead (kernel.ReadBlockingUntil, WriteBlockingUntil). A
// process's timers cannot be seen from a test, so this one reads the
// package's source: any call of a deadline setter fails it. The search is
// first shown to find the calls in testdata/deadlines.
func TestNoNetDeadlineOnConnections(t *testing.T) {
	sample := netDeadlineCalls(t, "testdata/deadlines")
	assert.Len(t, sample["(*conn).hello"], 2, "the search finds both calls of the sample's method")
	assert.Len(t, sample["(package level)"], 1, "and that of its package-level function literal")
	require.Len(t, sample, 2, "and nothing else: %v", sample)
	for fn, calls := range netDeadlineCalls(t, ".") {
		t.Errorf("%s sets a net deadline (%s): wait in poll(2) instead (kernel.ReadBlockingUntil, WriteBlockingUntil)", fn, strings.Join(calls, ", "))
	}
}

// netDeadlineCalls returns, for each function of the package's non-test
// files in dir (and for their package-level declarations together), the
// positions of its calls of a deadline setter.
func netDeadlineCalls(t *testing.T, dir string) map[string][]string {
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	fset := token.NewFileSet()
	found := map[string][]string{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, 0)
		require.NoError(t, err)
		for _, d := range f.Decls {
			fn := "(package level)" // a function literal in a var's value
			if fd, ok := d.(*ast.FuncDecl); ok {
				fn = funcName(fd)
			}
			ast.Inspect(d, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				if sel, ok := call.Fun.(*ast.SelectorExpr); ok && deadlineSetters[sel.Sel.Name] {
					found[fn] = append(found[fn], fset.Position(call.Pos()).String())
				}
				return true
			})
		}
	}
	return found
}

// funcName is fd's name as a stack trace gives it: "f" or "(*T).m".
func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	typ := fd.Recv.List[0].Type
	star := ""
	if s, ok := typ.(*ast.StarExpr); ok {
		star, typ = "*", s.X
	}
	if id, ok := typ.(*ast.Ident); ok {
		return "(" + star + id.Name + ")." + fd.Name.Name
	}
	return fd.Name.Name
}
