package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/Azure/azure-pipeline-go/pipeline"
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
	// cert is the certificate Azurite serves HTTPS with; nil for plain HTTP.
	cert *selfSignedCert
	// probe is the HTTP client of readiness probes; it trusts cert.
	probe *http.Client
}

// StartAzurite starts the Azurite queue service installed in tools/ and
// waits until it answers HTTP. The test's cleanup kills it. A missing
// Azurite or a failed start fails the test.
func StartAzurite(t testing.TB) *Azurite {
	t.Helper()
	return startAzurite(t, nil)
}

// StartAzuriteWithOAuth is StartAzurite for tests of Microsoft Entra ID
// (bearer token) authentication: Azurite checks bearer tokens only over
// HTTPS, so this one serves HTTPS with a self-signed certificate made for
// the test (see CertFile and HTTPClient) and runs with `--oauth basic`,
// which checks a token's lifetime, issuer and audience but not its
// signature. Shared-key requests keep working on it.
func StartAzuriteWithOAuth(t testing.TB) *Azurite {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "azurite-tls")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("testenv: start Azurite with OAuth: create certificate folder: %v", err)
	}
	cert, err := writeSelfSignedCert(dir)
	if err != nil {
		t.Fatalf("testenv: start Azurite with OAuth: %v", err)
	}
	return startAzurite(t, cert)
}

// startAzurite starts Azurite, serving HTTPS with cert unless it is nil,
// retrying on new ports when the one FreePort gave was taken meanwhile.
func startAzurite(t testing.TB, cert *selfSignedCert) *Azurite {
	t.Helper()
	binary := filepath.Join(RepoRoot(t), azuriteQueueBin)
	if _, err := os.Stat(binary); err != nil {
		t.Fatalf("testenv: start Azurite: %v; run `make deps` to install it", err)
	}
	a := &Azurite{t: t, binary: binary, dataDir: filepath.Join(t.TempDir(), "azurite"), cert: cert, probe: probeClient}
	if cert != nil {
		a.probe = &http.Client{Timeout: probeTimeout, Transport: cert.transport()}
		t.Cleanup(a.probe.CloseIdleConnections)
	}
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
// "http://127.0.0.1:PORT/devstoreaccount1", or "https://…" for an instance
// of StartAzuriteWithOAuth.
func (a *Azurite) Endpoint() string {
	return a.scheme() + "://127.0.0.1:" + strconv.Itoa(a.port) + "/" + DevAccountName
}

// scheme is the URL scheme Azurite serves.
func (a *Azurite) scheme() string {
	if a.cert != nil {
		return "https"
	}
	return "http"
}

// ConnectionString returns an Azure Storage connection string for this
// instance with the emulator's account and key.
func (a *Azurite) ConnectionString() string {
	return fmt.Sprintf("DefaultEndpointsProtocol=%s;AccountName=%s;AccountKey=%s;QueueEndpoint=%s;", a.scheme(), DevAccountName, DevAccountKey, a.Endpoint())
}

// CertFile returns the PEM file of the certificate an instance of
// StartAzuriteWithOAuth serves, "" for a plain one. A child process trusts
// it, and nothing else, with SSL_CERT_FILE=<CertFile()> in its environment.
func (a *Azurite) CertFile() string {
	if a.cert == nil {
		return ""
	}
	return a.cert.certFile
}

// HTTPClient returns a new HTTP client for in-process clients of this
// instance: for StartAzuriteWithOAuth its transport trusts the instance's
// certificate (and only it) and uses no proxy. It has no timeout: bound
// requests with their context.
func (a *Azurite) HTTPClient() *http.Client {
	if a.cert == nil {
		return &http.Client{}
	}
	return &http.Client{Transport: a.cert.transport()}
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
	if a.cert == nil {
		return sdk.NewServiceURL(*u, sdk.NewPipeline(cred, opts))
	}
	client := a.HTTPClient()
	tb.Cleanup(client.CloseIdleConnections)
	return sdk.NewServiceURL(*u, newPipelineWithClient(cred, opts, client))
}

// newPipelineWithClient is sdk.NewPipeline sending through client: the
// SDK's own always uses a package-wide client, which trusts only the
// machine's roots and so fails on a self-signed certificate.
func newPipelineWithClient(cred sdk.Credential, o sdk.PipelineOptions, client *http.Client) pipeline.Pipeline {
	factories := []pipeline.Factory{
		sdk.NewTelemetryPolicyFactory(o.Telemetry),
		sdk.NewUniqueRequestIDPolicyFactory(),
		sdk.NewRetryPolicyFactory(o.Retry),
		cred,
		sdk.NewRequestLogPolicyFactory(o.RequestLog),
		pipeline.MethodFactoryMarker(),
	}
	return pipeline.NewPipeline(factories, pipeline.Options{HTTPSender: clientSender(client), Log: o.Log})
}

// clientSender is the last policy of a pipeline: it sends the request
// with client and, like the SDK's own sender, wraps a failure in a
// pipeline error, which the SDK's retry policy knows how to retry.
func clientSender(client *http.Client) pipeline.Factory {
	return pipeline.FactoryFunc(func(_ pipeline.Policy, _ *pipeline.PolicyOptions) pipeline.PolicyFunc {
		return func(ctx context.Context, request pipeline.Request) (pipeline.Response, error) {
			resp, err := client.Do(request.WithContext(ctx))
			if err != nil {
				err = pipeline.NewError(err, "HTTP request failed")
			}
			return pipeline.NewHTTPResponse(resp), err
		}
	})
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
	if a.cert != nil {
		args = append(args, "--oauth", "basic", "--cert", a.cert.certFile, "--key", a.cert.keyFile)
	}
	a.proc = StartProcess(a.t, "azurite", a.binary, args, nil)
	if err := waitReady(a.proc, a.answers); err != nil {
		a.proc.Kill()
		return fmt.Errorf("wait for Azurite on %s to answer: %w\nAzurite output:\n%s", a.Endpoint(), err, Tail(a.proc.Output(), logTailLines))
	}
	return nil
}

// answers probes the List Queues URL: any HTTP answer, including 403 for
// the missing signature, means the service is up. Over HTTPS the probe
// also proves Azurite serves the certificate clients are told to trust.
func (a *Azurite) answers() error {
	resp, err := a.probe.Get(a.Endpoint() + "?comp=list")
	if err != nil {
		return fmt.Errorf("probe Azurite: %w", err)
	}
	return resp.Body.Close()
}
