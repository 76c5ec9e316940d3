package dockerenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

const (
	// probeTimeout bounds one question to the engine or a client.
	probeTimeout = 15 * time.Second
	// dockerTimeout bounds a docker command that does not build or wait
	// for containers: inspect, create, rm, kill, logs.
	dockerTimeout = 2 * time.Minute
)

// installHint is what the one-line failures tell a user to do.
const installHint = "install Docker and start it (on Debian, as root: apt-get install -y docker.io iptables debootstrap, which `make deps` does), or set DOCKER_HOST to an engine that answers"

// Engine is the Docker engine the tests use, and the docker client they
// drive it with.
type Engine struct {
	// Host is the DOCKER_HOST every command uses; empty means the
	// client's default socket.
	Host string
	// Version is the engine's version, as it reports it.
	Version string

	client  string   // the docker client: builds with BuildKit
	env     []string // environment of every docker and compose command
	daemon  *testenv.Process
	dataDir string // the started daemon's data root; "" if none was started
}

// StartEngine returns the engine the tests use: the one that answers, or
// a dockerd it starts and stops when tb's cleanup runs (see the package
// documentation). When there is neither, it fails tb with one line that
// says why and what to install.
func StartEngine(tb testing.TB) *Engine {
	tb.Helper()
	m := realMachine{}
	p, err := planEngine(m)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	e := &Engine{client: p.client, Host: p.host, Version: p.version}
	if p.dockerd != "" {
		e.startDaemon(tb, p.dockerd)
	}
	e.env = e.commandEnv(tb)
	if e.daemon != nil {
		tb.Logf("dockerenv: no Docker engine answered, so this test started dockerd %s (socket %s, data root %s, kept for the next run) and stops it at the end", e.Version, strings.TrimPrefix(e.Host, "unix://"), e.dataDir)
	} else {
		tb.Logf("dockerenv: using the Docker engine %s at %s", e.Version, e.hostName())
	}
	return e
}

// Started reports whether StartEngine started the engine itself.
func (e *Engine) Started() bool { return e.daemon != nil }

// Env returns the environment every docker and compose command of the
// tests runs with: this process's, with the engine's DOCKER_HOST, BuildKit
// switched on for docker build and compose, and the BuildKit-capable
// client first in PATH, where docker-compose finds it.
func (e *Engine) Env() []string { return e.env }

// Docker runs the docker client with args, bounded by timeout, and returns
// its output; a failure is an error showing the end of the output.
func (e *Engine) Docker(timeout time.Duration, args ...string) (string, error) {
	return command{argv: append([]string{e.client}, args...), env: e.env, timeout: timeout}.run()
}

// MustDocker is Docker with dockerTimeout, failing tb on error.
func (e *Engine) MustDocker(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := e.Docker(dockerTimeout, args...)
	if err != nil {
		tb.Fatalf("dockerenv: %v", err)
	}
	return out
}

// hostName returns the engine's address for messages.
func (e *Engine) hostName() string {
	if e.Host == "" {
		return "the client's default socket"
	}
	return e.Host
}

// commandEnv builds Env: the client is linked as "docker" in a folder of
// its own put first in PATH, so that nothing else in the client's folder
// changes what PATH finds.
func (e *Engine) commandEnv(tb testing.TB) []string {
	tb.Helper()
	bin := tb.TempDir()
	if err := os.Symlink(e.client, filepath.Join(bin, "docker")); err != nil {
		tb.Fatalf("dockerenv: link the docker client: %v", err)
	}
	env := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "DOCKER_BUILDKIT=1", "COMPOSE_DOCKER_CLI_BUILD=1")
	if e.Host != "" {
		env = append(env, "DOCKER_HOST="+e.Host)
	}
	return env
}

// machine is what planEngine asks of the computer it runs on; the tests
// of its decisions give it a fake one.
type machine interface {
	getenv(key string) string
	isRoot() bool
	// executable reports whether path is an executable file.
	executable(path string) bool
	// output runs argv with env added to this process's environment,
	// bounded by probeTimeout.
	output(env []string, argv ...string) (string, error)
}

// enginePlan is what StartEngine is to do.
type enginePlan struct {
	client  string // the docker client to use
	host    string // DOCKER_HOST of the engine that answered; "" for the default
	version string // that engine's version
	dockerd string // when none answered: the dockerd to start
}

// planEngine finds a client that builds with BuildKit, asks the engine at
// DOCKER_HOST or the default socket for its version and, when none
// answers, checks that a dockerd can be started instead.
func planEngine(m machine) (enginePlan, error) {
	client, err := findClient(m)
	if err != nil {
		return enginePlan{}, err
	}
	host := m.getenv("DOCKER_HOST")
	version, probeErr := serverVersion(m, client, host)
	if probeErr == nil {
		return enginePlan{client: client, host: host, version: version}, nil
	}
	if host != "" {
		// Someone chose this engine: starting another would test against
		// something they did not ask for.
		return enginePlan{}, fmt.Errorf("dockerenv: the Docker engine at DOCKER_HOST=%s does not answer (%s); start it, or unset DOCKER_HOST so that this test may start one", host, probeErr)
	}
	dockerd, reason := daemonStartable(m)
	if reason != "" {
		return enginePlan{}, fmt.Errorf("dockerenv: no Docker engine answers (%s), and this test cannot start one: %s; %s", probeErr, reason, installHint)
	}
	return enginePlan{client: client, dockerd: dockerd}, nil
}

// clientCandidates are the docker clients findClient tries after those in
// PATH: where Debian's docker.io puts its client.
var clientCandidates = []string{"/usr/bin/docker"}

// findClient returns the first docker client, in PATH order and then
// clientCandidates, that builds with BuildKit.
func findClient(m machine) (string, error) {
	var seen []string
	var rejected []string
	candidates := filepath.SplitList(m.getenv("PATH"))
	for i, dir := range candidates {
		candidates[i] = filepath.Join(dir, "docker")
	}
	for _, path := range append(candidates, clientCandidates...) {
		if !filepath.IsAbs(path) || !m.executable(path) || slices.Contains(seen, path) {
			continue
		}
		seen = append(seen, path)
		ok, why := buildsWithBuildKit(m, path)
		if ok {
			return path, nil
		}
		rejected = append(rejected, path+": "+why)
	}
	if len(rejected) == 0 {
		return "", fmt.Errorf("dockerenv: no docker client found in PATH or at %s; %s", strings.Join(clientCandidates, ", "), installHint)
	}
	return "", fmt.Errorf("dockerenv: no docker client here builds with BuildKit (%s); install the buildx plugin, or Debian's docker.io, whose 20.10 client at /usr/bin/docker drives BuildKit itself: %s", strings.Join(rejected, "; "), installHint)
}

// buildKitClientMajor is the first Docker release whose client needs the
// buildx plugin to build with BuildKit; older clients drive the engine's
// built-in BuildKit themselves when DOCKER_BUILDKIT=1.
const buildKitClientMajor = 23

// clientVersion matches `docker --version`: "Docker version 20.10.24+dfsg1, build 297e128".
var clientVersion = regexp.MustCompile(`Docker version (\d+)\.(\d+)[^,\s]*`)

// buildsWithBuildKit reports whether the docker client at path can build
// with BuildKit, and if not, why.
func buildsWithBuildKit(m machine, path string) (bool, string) {
	if _, err := m.output(nil, path, "buildx", "version"); err == nil {
		return true, ""
	}
	out, err := m.output(nil, path, "--version")
	if err != nil {
		return false, fmt.Sprintf("--version failed: %s", firstLine(out))
	}
	v := clientVersion.FindStringSubmatch(out)
	if v == nil {
		return false, fmt.Sprintf("unrecognised version %q", firstLine(out))
	}
	major, _ := strconv.Atoi(v[1])
	if major < buildKitClientMajor {
		return true, ""
	}
	return false, fmt.Sprintf("%s without the buildx plugin", strings.TrimPrefix(v[0], "Docker version "))
}

// serverVersion asks the engine at host (the client's default when "")
// for its version.
func serverVersion(m machine, client, host string) (string, error) {
	var env []string
	if host != "" {
		env = []string{"DOCKER_HOST=" + host}
	}
	out, err := m.output(env, client, "version", "--format", "{{.Server.Version}}")
	if version := strings.TrimSpace(out); err == nil && version != "" {
		return version, nil
	}
	// The server's error is the last line; the client's version comes first.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return "", errors.New(strings.TrimSpace(lines[len(lines)-1]))
}

// dockerdCandidates are where daemonStartable looks for dockerd besides
// PATH: where Debian's docker.io installs it (sbin is not in every PATH).
var dockerdCandidates = []string{"/usr/sbin/dockerd", "/usr/bin/dockerd"}

// daemonStartable returns the dockerd to start, or why none can be.
func daemonStartable(m machine) (dockerd, reason string) {
	if !m.isRoot() {
		return "", "it is not running as root, and dockerd needs root"
	}
	for _, path := range append(pathCandidates(m, "dockerd"), dockerdCandidates...) {
		if m.executable(path) {
			dockerd = path
			break
		}
	}
	if dockerd == "" {
		return "", "dockerd is not installed"
	}
	if !anyExecutable(m, append(pathCandidates(m, "iptables"), "/usr/sbin/iptables", "/sbin/iptables")) {
		return "", "iptables, which dockerd needs for its networks, is not installed"
	}
	return dockerd, ""
}

// pathCandidates returns name in every folder of PATH.
func pathCandidates(m machine, name string) []string {
	var paths []string
	for _, dir := range filepath.SplitList(m.getenv("PATH")) {
		if filepath.IsAbs(dir) {
			paths = append(paths, filepath.Join(dir, name))
		}
	}
	return paths
}

// anyExecutable reports whether one of paths is an executable file.
func anyExecutable(m machine, paths []string) bool {
	for _, path := range paths {
		if m.executable(path) {
			return true
		}
	}
	return false
}

// realMachine is the computer the tests run on.
type realMachine struct{}

func (realMachine) getenv(key string) string { return os.Getenv(key) }

func (realMachine) isRoot() bool { return os.Geteuid() == 0 }

func (realMachine) executable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0
}

func (realMachine) output(env []string, argv ...string) (string, error) {
	if _, err := exec.LookPath(argv[0]); err != nil {
		return "", err
	}
	return command{argv: argv, env: append(os.Environ(), env...), timeout: probeTimeout}.run()
}
