package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-storage-queue-go/azqueue"
	"github.com/coreos/etcd/clientv3"
)

func TestRepoRootFindsModuleRoot(t *testing.T) {
	root := RepoRoot(t)
	if !declaresModule(filepath.Join(root, "go.mod"), ModulePath) {
		t.Fatalf("RepoRoot() = %s, whose go.mod does not declare %s", root, ModulePath)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "testenv")); err != nil {
		t.Fatalf("RepoRoot() = %s, which does not hold internal/testenv: %v", root, err)
	}
}

func TestFreePortReturnsDistinctBindablePorts(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		port := FreePort(t)
		if seen[port] {
			t.Fatalf("FreePort returned %d twice", port)
		}
		seen[port] = true
	}
}

func TestProcessReportsOutputAndExitCode(t *testing.T) {
	tests := []struct {
		name                string
		script              string
		wantStdout, wantErr string
		wantExitCode        int
	}{
		{name: "exit 0", script: "echo hi", wantStdout: "hi\n", wantExitCode: 0},
		{name: "exit 3 with stderr", script: "echo hi; echo err 1>&2; exit 3", wantStdout: "hi\n", wantErr: "err\n", wantExitCode: 3},
		{name: "killed by signal", script: "echo bye; kill -KILL $$", wantStdout: "bye\n", wantExitCode: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := StartProcess(t, "sh", "/bin/sh", []string{"-c", tt.script}, nil)
			code, err := p.Wait(10 * time.Second)
			if err != nil {
				t.Fatalf("Wait: %v", err)
			}
			if code != tt.wantExitCode {
				t.Errorf("exit code = %d, want %d", code, tt.wantExitCode)
			}
			if got := p.Stdout(); got != tt.wantStdout {
				t.Errorf("Stdout() = %q, want %q", got, tt.wantStdout)
			}
			if got := p.Stderr(); got != tt.wantErr {
				t.Errorf("Stderr() = %q, want %q", got, tt.wantErr)
			}
			if got := p.Output(); len(got) != len(tt.wantStdout)+len(tt.wantErr) || !strings.Contains(got, tt.wantStdout) || !strings.Contains(got, tt.wantErr) {
				t.Errorf("Output() = %q, want stdout %q and stderr %q", got, tt.wantStdout, tt.wantErr)
			}
		})
	}
}

func TestProcessPassesEnvironment(t *testing.T) {
	p := StartProcess(t, "sh", "/bin/sh", []string{"-c", `echo "$TESTENV_GREETING"`}, []string{"TESTENV_GREETING=first", "TESTENV_GREETING=last"})
	if _, err := p.Wait(10 * time.Second); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if got := p.Stdout(); got != "last\n" {
		t.Errorf("Stdout() = %q, want the last value of the variable", got)
	}
}

func TestProcessWaitsForOutputAndSignal(t *testing.T) {
	p := StartProcess(t, "sh", "/bin/sh", []string{"-c", "trap 'echo stopping; exit 0' TERM; echo ready; while :; do sleep 0.1; done"}, nil)
	p.WaitForOutput(t, "ready", 10*time.Second)

	if _, err := p.Wait(50 * time.Millisecond); !errors.Is(err, ErrStillRunning) {
		t.Fatalf("Wait on a running process: err = %v, want ErrStillRunning", err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	code, err := p.Wait(10 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("Wait after SIGTERM = %d, %v; want 0, nil; output:\n%s", code, err, p.Output())
	}
	if !strings.Contains(p.Output(), "stopping") {
		t.Errorf("output %q lacks the trap's message", p.Output())
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Signal after exit: err = %v, want os.ErrProcessDone", err)
	}
}

func TestProcessKillEndsWholeGroup(t *testing.T) {
	p := StartProcess(t, "sh", "/bin/sh", []string{"-c", "sleep 300 & echo child=$!; wait"}, nil)
	p.WaitForOutput(t, "child=", 10*time.Second)
	// echo writes "child=PID\n" in one write, so the number is complete.
	line, _, _ := strings.Cut(strings.SplitAfter(p.Stdout(), "child=")[1], "\n")
	childPid, _ := strconv.Atoi(line)
	if childPid == 0 {
		t.Fatalf("no child pid in output %q", p.Stdout())
	}

	p.Kill()

	if !p.Exited() {
		t.Fatal("process still running after Kill")
	}
	WaitFor(t, 10*time.Second, "the background child to die with its group", func() bool { return !alive(childPid) })
}

func TestEtcdKeepsDataAcrossRestart(t *testing.T) {
	t.Parallel()
	etcd := StartEtcd(t)
	const prefix = "/testenv/"

	if keys := etcd.Keys(t, prefix); len(keys) != 0 {
		t.Fatalf("Keys(%q) on a new etcd = %q, want none", prefix, keys)
	}
	putKey(t, etcd.Endpoint(), prefix+"b", "2")
	putKey(t, etcd.Endpoint(), prefix+"a", "1")
	putKey(t, etcd.Endpoint(), "/elsewhere", "3")
	want := []string{prefix + "a", prefix + "b"}
	if keys := etcd.Keys(t, prefix); !slices.Equal(keys, want) {
		t.Fatalf("Keys(%q) = %q, want %q", prefix, keys, want)
	}

	endpoint := etcd.Endpoint()
	etcd.Stop()
	if _, err := http.Get("http://" + endpoint + "/health"); err == nil {
		t.Fatalf("etcd still answers on %s after Stop", endpoint)
	}
	etcd.Start()

	if etcd.Endpoint() != endpoint {
		t.Errorf("Endpoint() after restart = %s, want %s", etcd.Endpoint(), endpoint)
	}
	if keys := etcd.Keys(t, prefix); !slices.Equal(keys, want) {
		t.Fatalf("Keys(%q) after restart = %q, want %q", prefix, keys, want)
	}
}

func TestStartEtcdIgnoresEtcdVariables(t *testing.T) {
	// etcd would refuse to start: the variable duplicates its --data-dir flag.
	t.Setenv("ETCD_DATA_DIR", t.TempDir())
	etcd := StartEtcd(t)
	if keys := etcd.Keys(t, ""); len(keys) != 0 {
		t.Errorf("Keys of a new etcd = %q, want none", keys)
	}
}

func TestStartEtcdWithoutBinaryTellsToRunMakeDeps(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	msg := fatalMessage(t, func(tb testing.TB) { StartEtcd(tb) })
	if !strings.Contains(msg, "make deps") {
		t.Errorf("StartEtcd without etcd in PATH failed with %q, want it to mention `make deps`", msg)
	}
}

func TestAzuriteKeepsDataAcrossRestart(t *testing.T) {
	t.Parallel()
	azurite := StartAzurite(t)
	wantConn := "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + DevAccountKey + ";QueueEndpoint=" + azurite.Endpoint() + ";"
	if got := azurite.ConnectionString(); got != wantConn {
		t.Errorf("ConnectionString() = %q, want %q", got, wantConn)
	}
	if status := listQueuesStatus(t, azurite.Endpoint()); status != http.StatusForbidden {
		t.Fatalf("unsigned List Queues answered %d, want 403", status)
	}
	queue := queueURL(t, azurite.Endpoint(), "testenv-restart")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := queue.Create(ctx, azqueue.Metadata{}); err != nil {
		t.Fatalf("create queue with the development account key: %v", err)
	}

	endpoint := azurite.Endpoint()
	azurite.Stop()
	if resp, err := http.Get(endpoint + "?comp=list"); err == nil {
		resp.Body.Close()
		t.Fatalf("Azurite still answers on %s after Stop", endpoint)
	}
	azurite.Start()

	if azurite.Endpoint() != endpoint {
		t.Errorf("Endpoint() after restart = %s, want %s", azurite.Endpoint(), endpoint)
	}
	if status := listQueuesStatus(t, azurite.Endpoint()); status != http.StatusForbidden {
		t.Fatalf("unsigned List Queues after restart answered %d, want 403", status)
	}
	if _, err := queue.GetProperties(ctx); err != nil {
		t.Fatalf("queue created before the restart: %v", err)
	}
}

func TestBuild(t *testing.T) {
	root := RepoRoot(t)
	tests := []struct {
		name      string
		pkg       string
		wantError string
	}{
		{name: "main package", pkg: "./internal/testenv/testdata/hello"},
		{name: "missing package", pkg: "./internal/testenv/testdata/missing", wantError: "testdata/missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, err := build(root, []string{tt.pkg})
			if tt.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantError) {
					t.Fatalf("build(%s) error = %v, want one mentioning %q", tt.pkg, err, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatalf("build(%s): %v", tt.pkg, err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			p := StartProcess(t, "hello", filepath.Join(dir, filepath.Base(tt.pkg)), nil, nil)
			if code, err := p.Wait(10 * time.Second); err != nil || code != 0 || p.Stdout() != "hello\n" {
				t.Fatalf("built binary: exit %d, err %v, stdout %q", code, err, p.Stdout())
			}
		})
	}
}

func TestBuildBinariesUsesPrebuiltDir(t *testing.T) {
	dir := t.TempDir()
	for _, pkg := range commands {
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(pkg)), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(BinDirEnv, dir)
	if got := BuildBinaries(t); got != dir {
		t.Errorf("BuildBinaries() = %s, want %s from %s", got, dir, BinDirEnv)
	}

	if err := os.Remove(filepath.Join(dir, filepath.Base(Binaries[0]))); err != nil {
		t.Fatal(err)
	}
	msg := fatalMessage(t, func(tb testing.TB) { BuildBinaries(tb) })
	if !strings.Contains(msg, filepath.Base(Binaries[0])) {
		t.Errorf("BuildBinaries with %s missing failed with %q, want it to name the binary", Binaries[0], msg)
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the message and ends
// only the goroutine, so a test can check what a helper fails with.
type fatalRecorder struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.msg = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

// fatalMessage runs f with a fatalRecorder and returns what f failed with;
// it fails the test if f returns without failing.
func fatalMessage(t *testing.T, f func(testing.TB)) string {
	t.Helper()
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("helper neither returned nor failed within 30s")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.msg == "" {
		t.Fatal("helper returned without failing")
	}
	return r.msg
}

// putKey writes key=value to the etcd at endpoint.
func putKey(t *testing.T, endpoint, key, value string) {
	t.Helper()
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("connect to etcd at %s: %v", endpoint, err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := client.Put(ctx, key, value); err != nil {
		t.Fatalf("put %s in etcd at %s: %v", key, endpoint, err)
	}
}

// listQueuesStatus returns the HTTP status of an unsigned List Queues request.
func listQueuesStatus(t *testing.T, endpoint string) int {
	t.Helper()
	resp, err := probeClient.Get(endpoint + "?comp=list")
	if err != nil {
		t.Fatalf("list queues at %s: %v", endpoint, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// queueURL returns the URL of queue name at endpoint, signed with the
// development account key.
func queueURL(t *testing.T, endpoint, name string) azqueue.QueueURL {
	t.Helper()
	credential, err := azqueue.NewSharedKeyCredential(DevAccountName, DevAccountKey)
	if err != nil {
		t.Fatalf("development account credential: %v", err)
	}
	u, err := url.Parse(endpoint + "/" + name)
	if err != nil {
		t.Fatalf("parse queue URL: %v", err)
	}
	return azqueue.NewQueueURL(*u, azqueue.NewPipeline(credential, azqueue.PipelineOptions{}))
}

// alive reports whether pid is a live process; a zombie counts as dead.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	_, afterName, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(afterName, "Z")
}

func TestWaitReadyRecognisesPortInUse(t *testing.T) {
	tests := []struct {
		name      string
		output    string
		wantInUse bool
	}{
		{name: "etcd", output: `{"level":"fatal","msg":"discovery failed","error":"listen tcp 127.0.0.1:1: bind: address already in use"}`, wantInUse: true},
		{name: "Azurite", output: "Exit due to unhandled error: listen EADDRINUSE: address already in use 127.0.0.1:1", wantInUse: true},
		{name: "other failure", output: "permission denied", wantInUse: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := StartProcess(t, "server", "/bin/sh", []string{"-c", `echo "$OUTPUT" 1>&2; exit 1`}, []string{"OUTPUT=" + tt.output})
			err := waitReady(p, func() error { return errors.New("not answering") })
			if err == nil {
				t.Fatal("waitReady succeeded for a process that exited")
			}
			if got := errors.Is(err, errPortInUse); got != tt.wantInUse {
				t.Errorf("waitReady error %q: port in use = %v, want %v", err, got, tt.wantInUse)
			}
		})
	}
}
