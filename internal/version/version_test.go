package version

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// marker tells the test this package's import path.
type marker struct{}

// TestBuildFilesStampVersion checks that the builds which stamp the
// version name this variable: `-X` with a wrong path is silently ignored,
// and the binaries would report "dev".
func TestBuildFilesStampVersion(t *testing.T) {
	stamp := "-X " + reflect.TypeOf(marker{}).PkgPath() + ".Version="
	for _, file := range []string{"Makefile", "Dockerfile"} {
		raw, err := os.ReadFile(filepath.Join("..", "..", file))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(raw), stamp) {
			t.Errorf("%s does not stamp the version with %q", file, stamp)
		}
	}
}
