// Package projectpath finds files of this repository from tests, wherever `go test` runs them.
package projectpath

import (
	"os"
	"path/filepath"
	"testing"
)

// Root walks up from the working directory to the folder holding the root go.mod.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("find project root: %v", err)
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && isRootModule(data) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("find project root: no go.mod of github.com/modelship/modelship above the working directory")
		}
		dir = parent
	}
}

// Join returns the absolute path of a project-relative path.
func Join(t testing.TB, rel string) string {
	t.Helper()
	return filepath.Join(Root(t), filepath.FromSlash(rel))
}

func isRootModule(gomod []byte) bool {
	const want = "module github.com/modelship/modelship\n"
	return len(gomod) >= len(want) && string(gomod[:len(want)]) == want
}
