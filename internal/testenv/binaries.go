package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Binaries lists the repository's main packages that have an image and a
// service in the compose demo, as paths relative to the repository root;
// each binary is named after the last element of its path.
var Binaries = []string{
	"./server",
	"./client-pingpong",
	"./client-stream",
	"./client-azqueue-pub",
}

// Tools lists the main packages run by hand, without an image:
// requeue-poison.
var Tools = []string{"./requeue-poison"}

// commands are the main packages BuildBinaries builds: Binaries and Tools.
var commands = append(append([]string(nil), Binaries...), Tools...)

// BinDirEnv names the environment variable that points BuildBinaries at
// prebuilt binaries instead of building them.
const BinDirEnv = "POC_TEST_BIN_DIR"

// buildTimeout bounds `go build` of all commands; a cold build of go-micro
// takes minutes on two cores.
const buildTimeout = 10 * time.Minute

// built is the outcome of the one build of commands per test process.
var built struct {
	once sync.Once
	dir  string
	err  error
}

// BuildBinaries returns a directory holding every binary of Binaries and
// Tools. If POC_TEST_BIN_DIR is set it returns that directory, after
// checking that every binary is there. Otherwise it builds them, once per
// test process, into a new directory under os.TempDir; Main removes that
// directory when the tests finish (without Main it stays behind). A failed
// build fails the test with go build's output.
func BuildBinaries(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv(BinDirEnv); dir != "" {
		for _, pkg := range commands {
			bin := filepath.Join(dir, filepath.Base(pkg))
			if info, err := os.Stat(bin); err != nil || info.Mode()&0o111 == 0 {
				t.Fatalf("testenv: %s=%s lacks the executable %s (built from %s); rebuild the test binaries or unset %s", BinDirEnv, dir, filepath.Base(pkg), pkg, BinDirEnv)
			}
		}
		return dir
	}
	root := RepoRoot(t)
	built.once.Do(func() { built.dir, built.err = build(root, commands) })
	if built.err != nil {
		t.Fatalf("testenv: build test binaries: %v", built.err)
	}
	return built.dir
}

// build builds pkgs, relative to root, into a new temporary directory and
// returns it. Not with the race detector: go-micro v2.9.1's auth token
// refresher races with its auth handler in every served process, so a -race
// server reports that race and exits 66 instead of 0. Our own code is
// race-checked by the unit and in-process tests, which run with -race.
func build(root string, pkgs []string) (string, error) {
	dir, err := os.MkdirTemp("", "poc-go-micro-testbin-")
	if err != nil {
		return "", fmt.Errorf("create output directory: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	args := append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("go %s (in %s): %w\n%s", strings.Join(args, " "), root, err, out)
	}
	return dir, nil
}

// Main runs the tests of a package that uses BuildBinaries and then
// removes the binaries it built; call it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// Each of after, if any, is called once the tests have run, with m.Run's
// exit code (0: every test passed), for work such as writing a report.
func Main(m *testing.M, after ...func(code int)) {
	code := m.Run()
	for _, f := range after {
		f(code)
	}
	if built.dir != "" {
		if err := os.RemoveAll(built.dir); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: remove test binaries: %v\n", err)
		}
	}
	os.Exit(code)
}
