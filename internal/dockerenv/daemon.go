package dockerenv

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// DataRootEnv names the environment variable that sets where a dockerd
// started by StartEngine keeps its images, containers and BuildKit's
// caches. By default that is poc-go-micro/dockerd in the user's cache
// folder (~/.cache), kept between runs; delete it for a cold start.
const DataRootEnv = "POC_DOCKERD_DATA_ROOT"

// daemonRunDir holds the started dockerd's socket and pid file, and its
// exec root with containerd's sockets: a short path, because a socket's
// path has at most 107 bytes.
const daemonRunDir = "/run/poc-go-micro-dockerd"

const (
	// daemonStartTimeout bounds the wait for a started dockerd to answer.
	daemonStartTimeout = 60 * time.Second
	// daemonStopTimeout bounds its graceful stop, in which it gives
	// running containers 15 s to stop.
	daemonStopTimeout = 45 * time.Second
	// daemonPoll is how often the start is checked on.
	daemonPoll = 200 * time.Millisecond
)

// startDaemon starts dockerd for the tests and waits until it answers;
// tb's cleanup stops it with SIGTERM (and kills its process group if that
// does not work within daemonStopTimeout).
func (e *Engine) startDaemon(tb testing.TB, dockerd string) {
	tb.Helper()
	e.dataDir = dataRoot(tb)
	execRoot := filepath.Join(daemonRunDir, "exec")
	socket := filepath.Join(daemonRunDir, "docker.sock")
	pidFile := filepath.Join(daemonRunDir, "docker.pid")
	for _, dir := range []string{e.dataDir, execRoot} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			tb.Fatalf("dockerenv: start dockerd: %v", err)
		}
	}
	stopStaleDaemon(tb, pidFile)

	e.Host = "unix://" + socket
	e.daemon = testenv.StartProcess(tb, "dockerd", dockerd, []string{
		"--data-root", e.dataDir,
		"--exec-root", execRoot,
		"--host", e.Host,
		"--pidfile", pidFile,
	}, nil)
	// Registered after StartProcess's cleanup, so it runs first.
	tb.Cleanup(func() {
		e.trimDataRoot(tb)
		stopDaemon(tb, e.daemon)
	})

	deadline := time.Now().Add(daemonStartTimeout)
	for {
		version, err := serverVersion(realMachine{}, e.client, e.Host)
		switch {
		case err == nil:
			e.Version = version
			return
		case e.daemon.Exited():
			tb.Fatalf("dockerenv: dockerd %s exited before it answered; its output ended with:\n%s", dockerd, testenv.Tail(e.daemon.Output(), failureTailLines))
		case time.Now().After(deadline):
			tb.Fatalf("dockerenv: dockerd %s did not answer within %s (%v); its output ended with:\n%s", dockerd, daemonStartTimeout, err, testenv.Tail(e.daemon.Output(), failureTailLines))
		}
		time.Sleep(daemonPoll)
	}
}

// keptBuildCache bounds BuildKit's cache in the started dockerd's data
// root, which is kept between runs: it holds the Go module and build
// caches of the project's builds (1.9 GB after a first run), and every
// run's changed layers would otherwise pile up.
const keptBuildCache = "4GB"

// trimDataRoot removes what the runs leave behind in the data root of the
// dockerd StartEngine started: images no tag names any more (those of
// earlier versions of the project) and build cache beyond keptBuildCache.
// A user's own engine is left alone.
func (e *Engine) trimDataRoot(tb testing.TB) {
	if e.daemon == nil || e.daemon.Exited() {
		return
	}
	for _, args := range [][]string{
		{"image", "prune", "--force"},
		{"builder", "prune", "--force", "--keep-storage", keptBuildCache},
	} {
		if _, err := e.Docker(dockerTimeout, args...); err != nil {
			tb.Logf("dockerenv: trim the data root: %v", err)
		}
	}
}

// dataRoot returns the started dockerd's data root (see DataRootEnv).
func dataRoot(tb testing.TB) string {
	tb.Helper()
	if dir := os.Getenv(DataRootEnv); dir != "" {
		return dir
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		tb.Fatalf("dockerenv: choose dockerd's data root: %v; set %s", err, DataRootEnv)
	}
	return filepath.Join(cache, "poc-go-micro", "dockerd")
}

// stopDaemon stops a dockerd started by startDaemon: SIGTERM, so that it
// stops its containers and containerd, then a bounded wait.
func stopDaemon(tb testing.TB, p *testenv.Process) {
	if p.Exited() {
		return
	}
	if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		tb.Errorf("dockerenv: stop dockerd: %v", err)
		return
	}
	if _, err := p.Wait(daemonStopTimeout); err != nil {
		tb.Errorf("dockerenv: stop dockerd: %v; killing it", err)
	}
}

// stopStaleDaemon stops a dockerd that an earlier run started and did not
// stop (a killed test binary): its pid file would make the new one refuse
// to start.
func stopStaleDaemon(tb testing.TB, pidFile string) {
	tb.Helper()
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 {
		return
	}
	comm, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	if err != nil || strings.TrimSpace(string(comm)) != "dockerd" {
		return // that process is gone; dockerd replaces a stale pid file itself
	}
	tb.Logf("dockerenv: stopping dockerd (pid %d) left running by an earlier run", pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(daemonStopTimeout)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			break
		}
		time.Sleep(daemonPoll)
	}
}
