package dockerenv

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// fakeMachine answers planEngine's questions from tables.
type fakeMachine struct {
	env     map[string]string
	root    bool
	files   []string          // executable files
	answers map[string]string // "argv..." (with DOCKER_HOST=... first if set) → output; missing: the command fails
}

func (m fakeMachine) getenv(key string) string { return m.env[key] }
func (m fakeMachine) isRoot() bool             { return m.root }

func (m fakeMachine) executable(path string) bool { return slices.Contains(m.files, path) }

func (m fakeMachine) output(env []string, argv ...string) (string, error) {
	key := strings.Join(append(append([]string{}, env...), argv...), " ")
	if out, ok := m.answers[key]; ok {
		return out, nil
	}
	return "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?", errors.New("exit status 1")
}

// Answers of the clients this kind of machine has: Docker's 28.x client
// without buildx in /usr/local/bin, Debian's 20.10 in /usr/bin.
var (
	newClientVersion = map[string]string{"/usr/local/bin/docker --version": "Docker version 28.2.2, build e6534b4"}
	oldClientVersion = map[string]string{"/usr/bin/docker --version": "Docker version 20.10.24+dfsg1, build 297e128"}
	bothClients      = []string{"/usr/local/bin/docker", "/usr/bin/docker"}
	daemonBinaries   = []string{"/usr/sbin/dockerd", "/usr/sbin/iptables"}
)

func answers(tables ...map[string]string) map[string]string {
	all := make(map[string]string)
	for _, t := range tables {
		for k, v := range t {
			all[k] = v
		}
	}
	return all
}

func TestPlanEngineUsesAnEngineThatAnswersAndStartsOneOnlyWhenItMay(t *testing.T) {
	path := map[string]string{"PATH": "/usr/local/bin:/usr/bin"}
	tests := []struct {
		name    string
		machine fakeMachine
		want    enginePlan
		wantErr []string // substrings of the one-line error
	}{
		{
			name: "an engine that answers is used as it is",
			machine: fakeMachine{env: path, files: bothClients, answers: answers(
				map[string]string{"/usr/local/bin/docker buildx version": "github.com/docker/buildx v0.24.0"},
				map[string]string{"/usr/local/bin/docker version --format {{.Server.Version}}": "28.2.2\n"})},
			want: enginePlan{client: "/usr/local/bin/docker", version: "28.2.2"},
		},
		{
			name: "a client without buildx is passed over for Debian's 20.10 client",
			machine: fakeMachine{env: path, files: bothClients, answers: answers(newClientVersion, oldClientVersion,
				map[string]string{"/usr/bin/docker version --format {{.Server.Version}}": "20.10.24+dfsg1\n"})},
			want: enginePlan{client: "/usr/bin/docker", version: "20.10.24+dfsg1"},
		},
		{
			name:    "no engine, as root with dockerd and iptables: start dockerd",
			machine: fakeMachine{env: path, root: true, files: append(bothClients, daemonBinaries...), answers: answers(newClientVersion, oldClientVersion)},
			want:    enginePlan{client: "/usr/bin/docker", dockerd: "/usr/sbin/dockerd"},
		},
		{
			name:    "no engine, not root: say so and what to install",
			machine: fakeMachine{env: path, files: append(bothClients, daemonBinaries...), answers: answers(newClientVersion, oldClientVersion)},
			wantErr: []string{"no Docker engine answers (Cannot connect to the Docker daemon", "not running as root", "apt-get install -y docker.io iptables"},
		},
		{
			name:    "no engine, root without dockerd",
			machine: fakeMachine{env: path, root: true, files: bothClients, answers: answers(newClientVersion, oldClientVersion)},
			wantErr: []string{"dockerd is not installed", "apt-get install -y docker.io"},
		},
		{
			name:    "no engine, root with dockerd but no iptables",
			machine: fakeMachine{env: path, root: true, files: append(bothClients, "/usr/sbin/dockerd"), answers: answers(newClientVersion, oldClientVersion)},
			wantErr: []string{"iptables", "is not installed", "apt-get install -y docker.io iptables"},
		},
		{
			name: "a DOCKER_HOST that does not answer is not replaced by a started dockerd",
			machine: fakeMachine{env: map[string]string{"PATH": "/usr/bin", "DOCKER_HOST": "tcp://127.0.0.1:2375"}, root: true,
				files: append(bothClients, daemonBinaries...), answers: answers(oldClientVersion)},
			wantErr: []string{"DOCKER_HOST=tcp://127.0.0.1:2375 does not answer", "unset DOCKER_HOST"},
		},
		{
			name:    "no docker client at all",
			machine: fakeMachine{env: path, root: true, files: daemonBinaries},
			wantErr: []string{"no docker client found", "apt-get install -y docker.io"},
		},
		{
			name:    "only a client that cannot build with BuildKit",
			machine: fakeMachine{env: path, root: true, files: append([]string{"/usr/local/bin/docker"}, daemonBinaries...), answers: answers(newClientVersion)},
			wantErr: []string{"no docker client here builds with BuildKit", "/usr/local/bin/docker: 28.2.2 without the buildx plugin", "apt-get install -y docker.io"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := planEngine(tt.machine)
			if tt.wantErr == nil {
				if err != nil || got != tt.want {
					t.Fatalf("planEngine = %+v, %v; want %+v", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("planEngine = %+v; want an error", got)
			}
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "dockerenv: ") {
				t.Errorf("error %q: want one line starting with dockerenv:", msg)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// helperEnv makes the test binary run TestHelperStartEngine's body.
const helperEnv = "POC_DOCKERENV_HELPER"

// TestHelperStartEngine is not a test: run by
// TestNoEngineFailsWithOneLineAndExitStatus1 in a child process, it calls
// StartEngine the way the compose tests' TestMain does and exits 1 with
// the failure on stderr.
func TestHelperStartEngine(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		return
	}
	session := testenv.NewSession("helper")
	err := session.Run(func(tb testing.TB) { StartEngine(tb) })
	session.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestNoEngineFailsWithOneLineAndExitStatus1 runs StartEngine for real, as
// a user who can reach no engine and may not start one (nobody, when the
// test runs as root), and checks what the user sees: exit status 1 and
// one line that says why and what to install.
func TestNoEngineFailsWithOneLineAndExitStatus1(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A folder anyone may read, for a copy of this binary (go test's own
	// folder is root's alone) and as the docker client's home.
	dir, err := os.MkdirTemp("", "dockerenv-helper-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	argv := []string{self, "-test.run=^TestHelperStartEngine$"}
	if os.Geteuid() == 0 {
		copied := filepath.Join(dir, "dockerenv.test")
		if err := copyExecutable(self, copied); err != nil {
			t.Fatal(err)
		}
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Fatalf("setpriv (util-linux) is needed to run the check as nobody: %v", err)
		}
		argv = []string{setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", copied, "-test.run=^TestHelperStartEngine$"}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = testenv.RepoRoot(t)
	// No DOCKER_HOST: the client's default socket, which nobody may not use.
	cmd.Env = append(environWithout("DOCKER_HOST"), helperEnv+"=1", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("StartEngine with no engine: %v, want exit status 1; output:\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "dockerenv: ") || !strings.Contains(lines[0], "apt-get install -y docker.io") {
		t.Errorf("StartEngine with no engine printed:\n%s\nwant one line starting with dockerenv: and saying what to install", out)
	}
}

// copyExecutable copies the file at from to a new executable at to.
func copyExecutable(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// environWithout returns this process's environment without key.
func environWithout(key string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, key+"=") {
			env = append(env, kv)
		}
	}
	return env
}
