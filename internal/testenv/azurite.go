package testenv

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	sdk "github.com/Azure/azure-storage-queue-go/azqueue"
)

// DevAccountName is the storage account every Azurite instance serves.
const DevAccountName = "devstoreaccount1"

// DevAccountKey is the well-known, public key of DevAccountName; it is the
// emulator's key (the one "UseDevelopmentStorage=true" stands for), not a
// secret.
const DevAccountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

// azuriteQueueBin is where `make deps` (npm ci in tools/) installs Azurite's
// queue service, relative to the repository root.
var azuriteQueueBin = filepath.Join("tools", "node_modules", ".bin", "azurite-queue")

// Azurite is an Azurite queue service started for one test, listening on a
// free port of 127.0.0.1 with its data in the test's temporary directory.
// It can be stopped and started again on the same port with the same data.
type Azurite struct {
	t       testing.TB
	binary  string
	dataDir string
	port    int
	proc    *Process
}

// StartAzurite starts the Azurite queue service installed in tools/ and
// waits until it answers HTTP. The test's cleanup kills it. A missing
// Azurite or a failed start fails the test.
func StartAzurite(t testing.TB) *Azurite {
	t.Helper()
	binary := filepath.Join(RepoRoot(t), azuriteQueueBin)
	if _, err := os.Stat(binary); err != nil {
		t.Fatalf("testenv: start Azurite: %v; run `make deps` to install it", err)
	}
	a := &Azurite{t: t, binary: binary, dataDir: filepath.Join(t.TempDir(), "azurite")}
	if err := os.Mkdir(a.dataDir, 0o755); err != nil {
		t.Fatalf("testenv: start Azurite: create data folder: %v", err)
	}
	for attempt := 1; ; attempt++ {
		a.port = FreePort(t)
		err := a.start()
		if err == nil {
			return a
		}
		if !errors.Is(err, errPortInUse) || attempt == maxPortAttempts {
			t.Fatalf("testenv: start Azurite: %v", err)
		}
		t.Logf("testenv: start Azurite: %v; retrying on another port", err)
	}
}

// Endpoint returns the queue service URL of DevAccountName,
// "http://127.0.0.1:PORT/devstoreaccount1".
func (a *Azurite) Endpoint() string {
	return "http://127.0.0.1:" + strconv.Itoa(a.port) + "/" + DevAccountName
}

// ConnectionString returns an Azure Storage connection string for this
// instance with the emulator's account and key.
func (a *Azurite) ConnectionString() string {
	return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;QueueEndpoint=%s;", DevAccountName, DevAccountKey, a.Endpoint())
}

// Service returns the raw SDK's view of this instance's queue service:
// DevAccountName's shared key and a pipeline of opts.
func (a *Azurite) Service(tb testing.TB, opts sdk.PipelineOptions) sdk.ServiceURL {
	tb.Helper()
	cred, err := sdk.NewSharedKeyCredential(DevAccountName, DevAccountKey)
	if err != nil {
		tb.Fatalf("testenv: Azurite credential: %v", err)
	}
	u, err := url.Parse(a.Endpoint())
	if err != nil {
		tb.Fatalf("testenv: parse %s: %v", a.Endpoint(), err)
	}
	return sdk.NewServiceURL(*u, sdk.NewPipeline(cred, opts))
}

// Stop stops Azurite: SIGTERM, which makes it save its data, then SIGKILL
// if it has not exited after a bounded wait. Stopping a stopped Azurite
// does nothing.
func (a *Azurite) Stop() {
	a.t.Helper()
	stopGracefully(a.t, a.proc)
}

// Start starts a stopped Azurite again on the same port with the same data
// and waits until it answers; it does nothing if Azurite is running. Like
// Stop, it reports to the test that called StartAzurite, so call it from
// that test's goroutine.
func (a *Azurite) Start() {
	a.t.Helper()
	if !a.proc.Exited() {
		return
	}
	if err := a.start(); err != nil {
		a.t.Fatalf("testenv: restart Azurite on %s: %v", a.Endpoint(), err)
	}
}

// start runs Azurite and waits for it to answer; on failure it kills it and
// returns an error showing the end of Azurite's output.
func (a *Azurite) start() error {
	args := []string{
		"--queueHost", "127.0.0.1",
		"--queuePort", strconv.Itoa(a.port),
		"--location", a.dataDir,
		"--skipApiVersionCheck",
		"--disableTelemetry",
		"--silent",
	}
	a.proc = StartProcess(a.t, "azurite", a.binary, args, nil)
	if err := waitReady(a.proc, a.answers); err != nil {
		a.proc.Kill()
		return fmt.Errorf("wait for Azurite on %s to answer: %w\nAzurite output:\n%s", a.Endpoint(), err, Tail(a.proc.Output(), logTailLines))
	}
	return nil
}

// answers probes the List Queues URL: any HTTP answer, including 403 for
// the missing signature, means the service is up.
func (a *Azurite) answers() error {
	resp, err := probeClient.Get(a.Endpoint() + "?comp=list")
	if err != nil {
		return fmt.Errorf("probe Azurite: %w", err)
	}
	return resp.Body.Close()
}
