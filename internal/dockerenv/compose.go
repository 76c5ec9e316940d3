package dockerenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// ComposeEnv names the environment variable that chooses the Compose
// command, as the Makefile's COMPOSE does: "docker-compose" (Debian's
// 1.29, the default when installed) or "docker compose" (the plugin).
const ComposeEnv = "COMPOSE"

// Compose runs docker-compose on one project: a compose file's folder
// under a project name of the test's, so that it cannot touch a demo a
// user runs from the same folder.
type Compose struct {
	engine  *Engine
	dir     string
	project string
	argv    []string // the compose command and its global options
	env     []string
}

// Compose returns the project named project of the docker-compose.yml in
// dir. env is added to the environment of every compose command, e.g.
// VERSION=... for the build.
func (e *Engine) Compose(tb testing.TB, dir, project string, env ...string) *Compose {
	tb.Helper()
	var argv []string
	if chosen := os.Getenv(ComposeEnv); chosen != "" {
		argv = strings.Fields(chosen)
	} else if _, err := exec.LookPath("docker-compose"); err == nil {
		argv = []string{"docker-compose"}
	} else {
		argv = []string{e.client, "compose"}
	}
	// Colours would end up in the logs the tests read.
	argv = append(argv, "--ansi", "never", "--project-name", project, "--file", filepath.Join(dir, "docker-compose.yml"))
	return &Compose{engine: e, dir: dir, project: project, argv: argv, env: append(append([]string{}, e.env...), env...)}
}

// Project returns the project name.
func (c *Compose) Project() string { return c.project }

// Run runs a compose command, bounded by timeout, and returns its output;
// a failure is an error that shows the end of that output (the failing
// step of a build).
func (c *Compose) Run(timeout time.Duration, args ...string) (string, error) {
	return command{argv: append(append([]string{}, c.argv...), args...), env: c.env, dir: c.dir, timeout: timeout}.run()
}

// MustRun is Run that fails tb on error.
func (c *Compose) MustRun(tb testing.TB, timeout time.Duration, args ...string) string {
	tb.Helper()
	out, err := c.Run(timeout, args...)
	if err != nil {
		tb.Fatalf("dockerenv: %v", err)
	}
	return out
}

// Start starts a compose command in the background, such as an attached
// `up` or `run`, as a process of the test named name.
func (c *Compose) Start(tb testing.TB, name string, args ...string) *testenv.Process {
	tb.Helper()
	return testenv.StartProcess(tb, name, c.argv[0], append(append([]string{}, c.argv[1:]...), args...), c.env)
}

// Container returns the id of the container of service (the first, if it
// is scaled), running or not; "" if there is none.
func (c *Compose) Container(tb testing.TB, service string) string {
	tb.Helper()
	out := c.MustRun(tb, dockerTimeout, "ps", "--all", "--quiet", service)
	return firstLine(out)
}

// ContainerState is what the tests read of a container's state.
type ContainerState struct {
	// Status is Docker's: created, running, restarting, exited, dead...
	Status     string
	ExitCode   int
	StartedAt  time.Time
	FinishedAt time.Time
}

// Exited reports whether the container ran and has ended.
func (s ContainerState) Exited() bool { return s.Status == "exited" || s.Status == "dead" }

// State returns the state of container id.
func (e *Engine) State(tb testing.TB, id string) ContainerState {
	tb.Helper()
	out := e.MustDocker(tb, "container", "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}} {{.State.StartedAt}} {{.State.FinishedAt}}", id)
	var s ContainerState
	var started, finished string
	if _, err := fmt.Sscanf(strings.TrimSpace(out), "%s %d %s %s", &s.Status, &s.ExitCode, &started, &finished); err != nil {
		tb.Fatalf("dockerenv: read the state of container %s from %q: %v", id, out, err)
	}
	s.StartedAt, _ = time.Parse(time.RFC3339Nano, started)
	s.FinishedAt, _ = time.Parse(time.RFC3339Nano, finished)
	return s
}

// Logs returns the output of container id so far, stdout and stderr.
func (e *Engine) Logs(tb testing.TB, id string) string {
	tb.Helper()
	return e.MustDocker(tb, "logs", id)
}

// Leftovers lists what of the project is still in the engine: its
// containers, networks and volumes, as "kind name" lines; and of the
// volumes in also, those that still exist (anonymous volumes of its
// containers carry no project label).
func (c *Compose) Leftovers(tb testing.TB, also ...string) []string {
	tb.Helper()
	filter := "label=com.docker.compose.project=" + c.project
	var left []string
	for _, list := range [][]string{
		{"container", "ls", "--all", "--format", "{{.Names}}"},
		{"network", "ls", "--format", "{{.Name}}"},
		{"volume", "ls", "--format", "{{.Name}}"},
	} {
		out := c.engine.MustDocker(tb, append(list, "--filter", filter)...)
		for _, name := range strings.Fields(out) {
			left = append(left, list[0]+" "+name)
		}
	}
	for _, volume := range also {
		if _, err := c.engine.Docker(dockerTimeout, "volume", "inspect", volume); err == nil {
			left = append(left, "volume "+volume)
		}
	}
	return left
}
