package kernel_test

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawImports are the packages only kernel/ may import: everything that
// reaches the kernel goes through package kernel.
var rawImports = map[string]bool{
	"syscall":               true,
	"golang.org/x/sys/unix": true,
}

// boundaryViolations parses every .go file of the module rooted at root
// (tests and every build tag included; testdata, hidden directories and
// nested modules excluded) and lists each import that breaks the boundary:
// syscall or x/sys/unix outside root/kernel, or cgo anywhere (usysv is pure Go).
// It also returns how many files it parsed.
func boundaryViolations(root string) ([]string, int, error) {
	kernelDir := filepath.Join(root, "kernel")
	var out []string
	files := 0
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			if path != root {
				if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
					return filepath.SkipDir // another module
				}
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		files++
		rel, _ := filepath.Rel(root, path)
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			switch {
			case p == "C":
				out = append(out, fmt.Sprintf("%s imports \"C\": usysv is pure Go", rel))
			case rawImports[p] && filepath.Dir(path) != kernelDir:
				out = append(out, fmt.Sprintf("%s imports %q: only package kernel may", rel, p))
			}
		}
		return nil
	})
	sort.Strings(out)
	return out, files, err
}

// moduleRoot is the directory holding this module's go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
			require.Contains(t, string(b), "module github.com/usysv/usysv\n")
			return dir
		}
		parent := filepath.Dir(dir)
		require.NotEqual(t, parent, dir, "no go.mod above the test's directory")
		dir = parent
	}
}

// TestImportBoundary fails when any package but kernel imports syscall or
// golang.org/x/sys/unix (DESIGN.md §3).
func TestImportBoundary(t *testing.T) {
	root := moduleRoot(t)
	bad, files, err := boundaryViolations(root)
	require.NoError(t, err)
	assert.Empty(t, bad, "the kernel boundary is broken")
	// The walk covered the module, not an empty directory.
	kernelFiles, err := filepath.Glob(filepath.Join(root, "kernel", "*.go"))
	require.NoError(t, err)
	shmFiles, err := filepath.Glob(filepath.Join(root, "shm", "*.go"))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, files, len(kernelFiles)+len(shmFiles))
}

func TestImportBoundaryCatchesViolations(t *testing.T) {
	root := t.TempDir()
	write := func(rel, src string) {
		p := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(src), 0o644))
	}
	write("go.mod", "module example.com/m\n")
	write("kernel/k.go", "package kernel\nimport (\n\"syscall\"\n_ \"golang.org/x/sys/unix\"\n)\nvar _ = syscall.Getpid\n")
	write("kernel/k_test.go", "package kernel_test\nimport \"syscall\"\nvar _ = syscall.Getpid\n")
	write("shm/s.go", "package shm\nimport \"golang.org/x/sys/unix\"\nvar _ = unix.Getpid\n")
	write("sem/s_test.go", "//go:build ignore\n\npackage sem\nimport sc \"syscall\"\nvar _ = sc.Getpid\n")
	write("msgq/m.go", "package msgq\n// #include <stdio.h>\nimport \"C\"\n")
	write("kernel/sub/x.go", "package sub\nimport \"syscall\"\nvar _ = syscall.Getpid\n")
	write("fuzz/testdata/x.go", "package x\nimport \"syscall\"\n")
	write(".hidden/x.go", "package x\nimport \"syscall\"\n")
	write("nested/go.mod", "module example.com/nested\n")
	write("nested/x.go", "package x\nimport \"syscall\"\n")

	bad, files, err := boundaryViolations(root)
	require.NoError(t, err)
	assert.Equal(t, 6, files, "testdata, hidden directories and nested modules are skipped")
	assert.Equal(t, []string{
		`kernel/sub/x.go imports "syscall": only package kernel may`,
		`msgq/m.go imports "C": usysv is pure Go`,
		`sem/s_test.go imports "syscall": only package kernel may`,
		`shm/s.go imports "golang.org/x/sys/unix": only package kernel may`,
	}, bad)

	write("broken/x.go", "package x\nimport (\n")
	_, _, err = boundaryViolations(root)
	require.Error(t, err, "a file that does not parse is an error, not a pass")
}
