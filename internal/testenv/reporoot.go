package testenv

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ModulePath is the module path of the repository's root go.mod; RepoRoot
// looks for it.
const ModulePath = "github.com/poc-go-micro/poc-go-micro"

// maxDirDepth bounds the walk up the directory tree.
const maxDirDepth = 64

// RepoRoot returns the directory holding the go.mod of module ModulePath,
// found by walking up from the working directory (go test runs each test
// binary in its package's directory).
func RepoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("testenv: find repository root: get working directory: %v", err)
	}
	dir := wd
	for range maxDirDepth {
		if declaresModule(filepath.Join(dir, "go.mod"), ModulePath) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	t.Fatalf("testenv: find repository root: no go.mod of module %s in %s or its parents", ModulePath, wd)
	return ""
}

// declaresModule reports whether the go.mod at path declares module modulePath.
func declaresModule(path, modulePath string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) >= 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`) == modulePath
		}
	}
	return false
}
