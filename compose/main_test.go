//go:build docker

package compose

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/poc-go-micro/poc-go-micro/internal/composefile"
	"github.com/poc-go-micro/poc-go-micro/internal/dockerenv"
	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// Bounds of the waits below. Generous: they only matter when something is
// broken, and a cold build on two cores takes minutes.
const (
	buildTimeout   = 20 * time.Minute // docker-compose build of the four images
	upTimeout      = 3 * time.Minute  // docker-compose up -d, health checks included
	clientsTimeout = 3 * time.Minute  // every client container has exited (they wait up to 60s)
	logTimeout     = 90 * time.Second // a container logs what is awaited
	stopTimeout    = 2 * time.Minute  // docker-compose stop (the server's grace period is 50s)
	downTimeout    = 2 * time.Minute  // docker-compose down -v
	runTimeout     = 2 * time.Minute  // docker run of one image
	pollInterval   = 250 * time.Millisecond
)

// What the package's tests share, set up once by TestMain: the engine,
// the base images and the project's four images.
var (
	shared  = testenv.NewSession("compose")
	engine  *dockerenv.Engine
	root    string
	version string // stamped into the images (VERSION, else git describe)
	project composefile.File
)

func TestMain(m *testing.M) {
	code := 1
	if err := shared.Run(setUp); err != nil {
		fmt.Fprintf(os.Stderr, "compose: %v\n", err)
	} else {
		code = m.Run()
	}
	shared.Close()
	os.Exit(code)
}

// setUp finds or starts the engine, makes the base images available (once
// saying which are stand-ins) and builds the project's images the way the
// README's `docker-compose up` does, with the version stamped.
func setUp(tb testing.TB) {
	root = testenv.RepoRoot(tb)
	var err error
	if project, err = composefile.Load(root); err != nil {
		tb.Fatal(err)
	}
	engine = dockerenv.StartEngine(tb)
	bases, err := dockerenv.ProjectBaseImages(root)
	if err != nil {
		tb.Fatalf("find the base images: %v", err)
	}
	start := time.Now()
	report := engine.EnsureImages(tb, bases...)
	fmt.Println(report)
	tb.Logf("base images ready in %s", time.Since(start).Round(time.Second))

	version = buildVersion()
	start = time.Now()
	engine.Compose(tb, root, "poc-go-micro-build", "VERSION="+version).MustRun(tb, buildTimeout, "build")
	tb.Logf("built the images of the %d services built from the Dockerfile (version %s) in %s", len(project.BuiltServices()), version, time.Since(start).Round(time.Second))
}

// buildVersion is the version the images are stamped with: $VERSION (the
// Makefile passes git describe), else git describe, else "dev".
func buildVersion() string {
	if v := os.Getenv("VERSION"); v != "" {
		return v
	}
	out, err := exec.Command("git", "-C", root, "describe", "--always", "--dirty").Output()
	if v := strings.TrimSpace(string(out)); err == nil && v != "" {
		return v
	}
	return "dev"
}

// env returns the value docker-compose.yml gives variable name of service.
func env(tb testing.TB, service, name string) string {
	tb.Helper()
	v, err := project.Env(service, name)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// newProject returns the compose project name of one test, after removing
// whatever an earlier, interrupted run left of it. The test's cleanup
// shows the logs of every container if the test failed, then takes the
// project down.
func newProject(t *testing.T, name string) *dockerenv.Compose {
	t.Helper()
	c := engine.Compose(t, root, name)
	c.MustRun(t, downTimeout, "down", "--volumes", "--remove-orphans")
	t.Cleanup(func() {
		if t.Failed() {
			if out, err := c.Run(downTimeout, "logs", "--no-color", "--tail=100"); err == nil {
				t.Logf("logs of project %s:\n%s", name, out)
			}
		}
		if _, err := c.Run(downTimeout, "down", "--volumes", "--remove-orphans"); err != nil {
			t.Errorf("take project %s down: %v", name, err)
		}
	})
	return c
}

// waitForLogs waits until the logs of container id satisfy done, and
// returns them; after timeout it fails the test showing them.
func waitForLogs(t *testing.T, id, what string, timeout time.Duration, done func(logs string) bool) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		logs := engine.Logs(t, id)
		if done(logs) {
			return logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for container %.12s to log %s; its logs:\n%s", timeout, id, what, testenv.Tail(logs, 60))
		}
		time.Sleep(pollInterval)
	}
}

// waitForContainer waits until service has a container and returns its id.
func waitForContainer(t *testing.T, c *dockerenv.Compose, service string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if id := c.Container(t, service); id != "" {
			return id
		}
		if time.Now().After(deadline) {
			t.Fatalf("no container of service %s after %s", service, timeout)
		}
		time.Sleep(pollInterval)
	}
}

// waitForExit waits until container id of service has exited and returns
// its state; after timeout it fails the test showing its logs.
func waitForExit(t *testing.T, service, id string, timeout time.Duration) dockerenv.ContainerState {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if s := engine.State(t, id); s.Exited() {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is still running after %s; its logs:\n%s", service, timeout, testenv.Tail(engine.Logs(t, id), 60))
		}
		time.Sleep(pollInterval)
	}
}

// containsString returns a condition on logs: that they contain s.
func containsString(s string) func(logs string) bool {
	return func(logs string) bool { return strings.Contains(logs, s) }
}
