//go:build faults

package faults

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	sdk "github.com/Azure/azure-storage-queue-go/azqueue"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// Distinctive credentials, so that any trace of them in an output is
// unmistakable. The key is valid base64, as a real key is, so that it gets
// past parsing into requests; the SAS is a well-formed account SAS with a
// signature no service accepts.
var (
	secretKey = base64.StdEncoding.EncodeToString([]byte("DISTINCTIVE-KEY-6f1e2d3c4b5a-poc-go-micro-fault-suite-never-print"))
	secretSig = "DISTINCTIVESIG6f1e2d3c4b5aNeverPrint0123456789"
	secretSAS = "sv=2020-08-04&ss=q&srt=sco&sp=rwdlacup&se=2099-01-01T00:00:00Z&sig=" + secretSig
)

// leaks returns the forms of secret that must not appear in an output:
// the secret, its URL-escaped form, and, for long ones, any 16-character
// piece of it (a cut or wrapped secret is still a leak).
func leaks(secrets ...string) []string {
	var forms []string
	for _, s := range secrets {
		forms = append(forms, s, url.QueryEscape(s))
		for i := 0; i+16 <= len(s); i += 8 {
			forms = append(forms, s[i:i+16])
		}
	}
	return forms
}

// checkNoLeak fails the test if output shows any form of the secrets.
func checkNoLeak(t *testing.T, what, output string, secrets ...string) {
	t.Helper()
	for _, form := range leaks(secrets...) {
		if i := strings.Index(output, form); i >= 0 {
			line := output[strings.LastIndex(output[:i], "\n")+1:]
			if end := strings.Index(line, "\n"); end >= 0 {
				line = line[:end]
			}
			t.Errorf("%s printed a secret (%q) in: %s", what, form, line)
			return
		}
	}
}

// validSAS returns an account SAS for the test's Azurite, signed with the
// emulator's key: a credential that works, and whose signature must not be
// printed either.
func (s *stack) validSAS() (sas, sig string) {
	s.t.Helper()
	cred, err := sdk.NewSharedKeyCredential(testenv.DevAccountName, testenv.DevAccountKey)
	if err != nil {
		s.t.Fatal(err)
	}
	q, err := sdk.AccountSASSignatureValues{
		Protocol:      sdk.SASProtocolHTTPSandHTTP,
		ExpiryTime:    time.Now().UTC().Add(time.Hour),
		Permissions:   sdk.AccountSASPermissions{Read: true, Write: true, Delete: true, List: true, Add: true, Create: true, Update: true, Process: true}.String(),
		Services:      sdk.AccountSASServices{Queue: true}.String(),
		ResourceTypes: sdk.AccountSASResourceTypes{Service: true, Container: true, Object: true}.String(),
	}.NewSASQueryParameters(cred)
	if err != nil {
		s.t.Fatal(err)
	}
	return q.Encode(), q.Signature()
}

// secretRun is one run of a binary with secrets in its environment.
type secretRun struct {
	name   string
	binary string
	env    []string
	args   []string
	// want is what the output must say, so that the run is known to have
	// taken the error path it is meant to; empty for --help.
	want string
	// ok: the run is expected to succeed (--help).
	ok bool
	// setup, if set, runs just before the binary: it puts the identity
	// endpoint into the state the run is about.
	setup func()
}

// dumpGoroutines makes server print every goroutine's stack and exit
// (SIGABRT, with GOTRACEBACK=all in its environment), so that the test
// can look for secrets in the dump.
func dumpGoroutines(t *testing.T, server *testenv.Process) {
	t.Helper()
	if err := server.Signal(syscall.SIGABRT); err != nil {
		t.Fatal(err)
	}
	code, err := server.Wait(stopTimeout)
	if err != nil || code == 0 {
		t.Fatalf("server after SIGABRT: exit %d, %v", code, err)
	}
	if !strings.Contains(server.Output(), "SIGABRT") || !strings.Contains(server.Output(), "goroutine ") {
		t.Errorf("no goroutine dump after SIGABRT:\n%s", tailOf(server.Output(), 10))
	}
}

// runForSecrets runs r in a subtest and checks that it took its path and
// that its output shows none of secrets(), asked for once the run is over
// (an identity endpoint's tokens are known only then).
func (s *stack) runForSecrets(t *testing.T, r secretRun, secrets func() []string) {
	t.Run(r.name, func(t *testing.T) {
		if r.setup != nil {
			r.setup()
		}
		p := testenv.StartProcess(t, r.binary, s.bin+"/"+r.binary, s.args(r.args...), r.env)
		code, err := p.Wait(clientTimeout)
		if err != nil {
			t.Fatalf("%s: %v\n%s", r.name, err, tailOf(p.Output(), 10))
		}
		if r.ok != (code == 0) {
			t.Errorf("%s: exit %d\n%s", r.name, code, tailOf(p.Output(), 10))
		}
		if r.want != "" && !strings.Contains(p.Output(), r.want) {
			t.Errorf("%s: the output does not say %q, so the run did not take its error path:\n%s", r.name, r.want, tailOf(p.Output(), 10))
		}
		checkNoLeak(t, r.name, p.Output(), secrets()...)
		assertClean(t, r.name, p)
	})
}

// TestSecretsAreNeverPrinted is scenario 9. The server and
// client-azqueue-pub run with a distinctive account key and SAS in the
// environment (AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY,
// AZURE_STORAGE_SAS_TOKEN) and are driven down every error path that
// involves them: --help (also with an Azure "SAS URL" in
// MICRO_BROKER_ADDRESS, whose value --help shows), an unreachable
// endpoint, a refused key, a refused SAS, malformed connection strings
// with the key inside (a part without '=', the key pasted as a part, a bad
// key, a duplicate key, a bad SAS, credentials in the endpoint URL or in
// --broker_address, a bad protocol), and, with a valid SAS, an oversize
// publish, a queue-service outage under a running server, and a SIGABRT
// goroutine dump.
//
// Then the same with Microsoft Entra ID secrets (see entraIDSecretRuns).
//
// Asserted: each run takes the error path it is meant to (its output says
// so) and none of the secrets appears in its stdout or stderr, whole,
// URL-escaped or in any 16-character piece.
func TestSecretsAreNeverPrinted(t *testing.T) {
	s := newStack(t)
	closed := fmt.Sprintf("http://127.0.0.1:%d/%s", testenv.FreePort(t), testenv.DevAccountName)
	azurite := s.azurite.Endpoint()
	keyString := func(endpoint string) string {
		return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;QueueEndpoint=%s", testenv.DevAccountName, secretKey, endpoint)
	}
	sasString := func(endpoint string) string {
		return fmt.Sprintf("AccountName=%s;SharedAccessSignature=%s;QueueEndpoint=%s", testenv.DevAccountName, secretSAS, endpoint)
	}
	// Every run also has the key and SAS in the Azure CLI's variables.
	cliVars := []string{"AZURE_STORAGE_ACCOUNT=" + testenv.DevAccountName, "AZURE_STORAGE_KEY=" + secretKey, "AZURE_STORAGE_SAS_TOKEN=" + secretSAS}
	withString := func(cs string) []string {
		return append([]string{"AZURE_STORAGE_CONNECTION_STRING=" + cs}, cliVars...)
	}
	short := []string{"--timeout=5s"}
	serverArgs := []string{"--server_name=" + s.service, "--server_address=127.0.0.1:0"}

	runs := []secretRun{
		{name: "server --help", binary: "server", env: withString(keyString(azurite)), args: []string{"--help"}, ok: true},
		{name: "publisher --help", binary: "client-azqueue-pub", env: withString(keyString(azurite)), args: []string{"--help"}, ok: true},
		// A "SAS URL", as the Azure portal hands them out, given as the
		// broker address: --help shows every flag's value from the
		// environment.
		{name: "server --help, SAS URL in MICRO_BROKER_ADDRESS", binary: "server", env: append(withString(keyString(azurite)), "MICRO_BROKER_ADDRESS="+azurite+"/?"+secretSAS), args: []string{"--help"}, ok: true},
		{name: "publisher --help, SAS URL in MICRO_BROKER_ADDRESS", binary: "client-azqueue-pub", env: append(withString(keyString(azurite)), "MICRO_BROKER_ADDRESS="+azurite+"/?"+secretSAS), args: []string{"--help"}, ok: true},
		{name: "server, SAS URL in MICRO_BROKER_ADDRESS", binary: "server", env: append(withString(keyString(azurite)), "MICRO_BROKER_ADDRESS="+azurite+"/?"+secretSAS), args: serverArgs, want: "must not carry a query or user info"},
		{name: "server, unreachable endpoint", binary: "server", env: withString(keyString(closed)), args: serverArgs, want: "endpoint unreachable"},
		{name: "server, unreachable --broker_address", binary: "server", env: withString(keyString(azurite)), args: append([]string{"--broker_address=" + closed}, serverArgs...), want: "endpoint unreachable"},
		{name: "server, refused key", binary: "server", env: withString(keyString(azurite)), args: serverArgs, want: "authentication failed"},
		{name: "server, refused SAS", binary: "server", env: withString(sasString(azurite)), args: serverArgs, want: "authentication failed"},
		{name: "server, key from AZURE_STORAGE_KEY refused", binary: "server", env: cliVars, args: append([]string{"--broker_address=" + azurite}, serverArgs...), want: "authentication failed"},
		{name: "publisher, refused key", binary: "client-azqueue-pub", env: withString(keyString(azurite)), args: append([]string{"--count=1"}, short...), want: "authentication failed"},
		{name: "publisher, refused SAS from AZURE_STORAGE_SAS_TOKEN", binary: "client-azqueue-pub", env: []string{"AZURE_STORAGE_ACCOUNT=" + testenv.DevAccountName, "AZURE_STORAGE_SAS_TOKEN=" + secretSAS}, args: append([]string{"--count=1", "--broker_address=" + azurite}, short...), want: "authentication failed"},
		{name: "publisher, unreachable endpoint", binary: "client-azqueue-pub", env: withString(keyString(closed)), args: append([]string{"--count=1"}, short...), want: "endpoint unreachable"},
		{name: "requeue-poison --help, SAS URL in MICRO_BROKER_ADDRESS", binary: "requeue-poison", env: append(withString(keyString(azurite)), "MICRO_BROKER_ADDRESS="+azurite+"/?"+secretSAS), args: []string{"--help"}, ok: true},
		{name: "requeue-poison, refused key", binary: "requeue-poison", env: withString(keyString(azurite)), args: short, want: "authentication failed"},
		{name: "requeue-poison, refused SAS from AZURE_STORAGE_SAS_TOKEN", binary: "requeue-poison", env: []string{"AZURE_STORAGE_ACCOUNT=" + testenv.DevAccountName, "AZURE_STORAGE_SAS_TOKEN=" + secretSAS}, args: append([]string{"--broker_address=" + azurite}, short...), want: "authentication failed"},
		{name: "server, part without '='", binary: "server", env: withString(fmt.Sprintf("AccountName=%s;AccountKey=%s;QueueEndpoint=%s;%s", testenv.DevAccountName, secretKey, azurite, secretKey[:20])), args: serverArgs, want: "is not of the form Key=Value"},
		{name: "server, the key pasted as a part", binary: "server", env: withString(fmt.Sprintf("AccountName=%s;%s;QueueEndpoint=%s", testenv.DevAccountName, secretKey, azurite)), args: serverArgs, want: "has an unknown name"},
		{name: "server, key not base64", binary: "server", env: withString(fmt.Sprintf("AccountName=%s;AccountKey=%s!!;QueueEndpoint=%s", testenv.DevAccountName, secretKey, azurite)), args: serverArgs, want: "AccountKey is not valid base64"},
		{name: "server, key given twice", binary: "server", env: withString(fmt.Sprintf("AccountName=%s;AccountKey=%s;AccountKey=%s;QueueEndpoint=%s", testenv.DevAccountName, secretKey, secretKey, azurite)), args: serverArgs, want: "AccountKey is given twice"},
		{name: "server, SAS not a query", binary: "server", env: withString(fmt.Sprintf("AccountName=%s;SharedAccessSignature=%s%%zz;QueueEndpoint=%s", testenv.DevAccountName, secretSAS, azurite)), args: serverArgs, want: "SharedAccessSignature is not a valid query string"},
		{name: "server, SAS in the endpoint URL", binary: "server", env: withString(fmt.Sprintf("AccountName=%s;AccountKey=%s;QueueEndpoint=%s?%s", testenv.DevAccountName, secretKey, azurite, secretSAS)), args: serverArgs, want: "must not carry a query or user info"},
		{name: "server, key in the endpoint's user info", binary: "server", env: withString(fmt.Sprintf("AccountName=%s;AccountKey=%s;QueueEndpoint=http://%s:%s@127.0.0.1:1/x", testenv.DevAccountName, secretKey, testenv.DevAccountName, url.PathEscape(secretKey))), args: serverArgs, want: "must not carry a query or user info"},
		{name: "server, SAS in --broker_address", binary: "server", env: withString(keyString(azurite)), args: append([]string{"--broker_address=" + azurite + "?" + secretSAS}, serverArgs...), want: "must not carry a query or user info"},
		{name: "server, bad protocol", binary: "server", env: withString(fmt.Sprintf("DefaultEndpointsProtocol=ftp;AccountName=acct1;AccountKey=%s", secretKey)), args: serverArgs, want: "DefaultEndpointsProtocol must be http or https"},
	}
	for _, r := range runs {
		s.runForSecrets(t, r, func() []string { return []string{secretKey, secretSig} })
	}

	// With a SAS that works: an oversize publish, a running server through
	// a queue-service outage, and a goroutine dump.
	sas, sig := s.validSAS()
	good := []string{"AZURE_STORAGE_CONNECTION_STRING=" + fmt.Sprintf("AccountName=%s;SharedAccessSignature=%s;QueueEndpoint=%s", testenv.DevAccountName, sas, azurite)}
	t.Run("publisher, oversize event with a valid SAS", func(t *testing.T) {
		p := testenv.StartProcess(t, "client-azqueue-pub", s.bin+"/client-azqueue-pub", s.args("--count=1", "--say="+strings.Repeat("x", 70<<10)), good)
		if code, err := p.Wait(clientTimeout); err != nil || code == 0 {
			t.Fatalf("exit %d, %v\n%s", code, err, tailOf(p.Output(), 5))
		}
		if !strings.Contains(p.Stderr(), "message too large") {
			t.Errorf("the publisher does not say the event is too large:\n%s", tailOf(p.Stderr(), 5))
		}
		checkNoLeak(t, "publisher", p.Output(), sig, secretKey, secretSig)
	})
	t.Run("server with a valid SAS, through an outage and a goroutine dump", func(t *testing.T) {
		server := testenv.StartProcess(t, "server", s.bin+"/server", s.args(serverArgs...), append(good, "GOTRACEBACK=all", "AZQUEUE_POLL_MAX=200ms"))
		server.WaitForOutput(t, "Subscribing to topic", startTimeout)
		pub := testenv.StartProcess(t, "client-azqueue-pub", s.bin+"/client-azqueue-pub", s.args("--count=3", "--interval=0", "--say=with a SAS"), good)
		if code, err := pub.Wait(clientTimeout); err != nil || code != 0 {
			t.Fatalf("publish with a valid SAS: exit %d, %v\n%s", code, err, pub.Output())
		}
		server.WaitForOutput(t, `received event "with a SAS #3"`, 30*time.Second)
		logBefore := len(server.Output())
		s.azurite.Stop()
		server.WaitForOutput(t, "azqueue: poll queue", 30*time.Second)
		s.azurite.Start()
		server.WaitForOutput(t, "works again", 60*time.Second)
		if !strings.Contains(server.Output()[logBefore:], "connection refused") {
			t.Errorf("the server did not log the outage's transport error:\n%s", tailOf(server.Output(), 10))
		}
		dumpGoroutines(t, server)
		checkNoLeak(t, "server", server.Output(), sig, secretKey, secretSig)
		checkNoLeak(t, "publisher", pub.Output(), sig, secretKey, secretSig)
	})
	entraRuns := s.entraIDSecretRuns(t)

	if !t.Failed() {
		record(t, outcome{
			scenario: 9, title: "secrets: distinctive key, SAS and Entra ID secrets in the environment, every error path",
			published: notApplicable, handled: notApplicable, duplicates: notApplicable, poisoned: notApplicable, lost: notApplicable,
			notes: fmt.Sprintf("%d runs of the server, client-azqueue-pub and requeue-poison: --help (also with a SAS URL in MICRO_BROKER_ADDRESS), unreachable endpoints, refused keys and SASs, malformed connection strings and endpoints with the secrets inside; then, with a valid SAS, an oversize publish, a queue-service outage under a running server and a SIGABRT goroutine dump. "+
				"Then %d runs with Microsoft Entra ID: a client secret, a federated token and a managed identity's IDENTITY_HEADER in the environment, --help, unreachable token endpoints, a failing identity endpoint, a token Azurite refuses, and a server consuming through token renewals, an identity-endpoint outage and a SIGABRT goroutine dump. "+
				"No key, SAS signature, client secret, federated token, IDENTITY_HEADER or issued token appeared in any output, whole, URL-escaped or in any 16-character piece",
				len(runs)+2, entraRuns),
		})
	}
}

// Distinctive Entra ID secrets: a client secret in Entra's format, and a
// federated token (the JWT Kubernetes projects into a workload identity's
// pod), both never accepted anywhere.
var (
	secretClientSecret = "DISTINCTIVE~ClientSecret~6f1e2d3c4b5a~poc~never~print"
	secretFederated    = "eyJhbGciOiJSUzI1NiIsImtpZCI6IkRJU1RJTkNUSVZFIn0." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"aud":"api://AzureADTokenExchange","iss":"https://oidc.example.invalid/DISTINCTIVE-FEDERATED","sub":"system:serviceaccount:poc:server"}`)) +
		".DISTINCTIVEFederatedSignature6f1e2d3c4b5aNeverPrint"
)

// entraIDSecretRuns drives the server, client-azqueue-pub and
// requeue-poison down the Entra ID paths with a client secret, a federated
// token and a managed identity in their environment, and a server through
// renewals, an identity-endpoint outage and a goroutine dump; it returns
// how many runs it made.
//
// No request leaves the machine: azidentity's service-principal
// credentials ask login.microsoftonline.com for instance metadata whatever
// the authority host, so every run sends its HTTPS requests to other hosts
// through a proxy on a closed loopback port, and the authority host is a
// closed loopback port too.
func (s *stack) entraIDSecretRuns(t *testing.T) int {
	const lifetime = 6 * time.Second
	oauth := testenv.StartAzuriteWithOAuth(t)
	identity := testenv.StartIdentityEndpoint(t, lifetime)
	federatedFile := filepath.Join(t.TempDir(), "azure-identity-token")
	if err := os.WriteFile(federatedFile, []byte(secretFederated), 0o600); err != nil {
		t.Fatal(err)
	}
	secrets := func() []string {
		return append([]string{secretClientSecret, secretFederated, identity.Header()}, identity.Issued()...)
	}
	closed := func() string { return fmt.Sprintf("https://127.0.0.1:%d/", testenv.FreePort(t)) }
	base := []string{
		"AZURE_STORAGE_ACCOUNT=" + testenv.DevAccountName,
		"MICRO_BROKER_ADDRESS=" + oauth.Endpoint(),
		"SSL_CERT_FILE=" + oauth.CertFile(),
		"HTTPS_PROXY=" + strings.Replace(closed(), "https", "http", 1), "NO_PROXY=127.0.0.1",
		"AZURE_AUTHORITY_HOST=" + closed(),
		"AZURE_TENANT_ID=72f988bf-86f1-41af-91ab-2d7cd011db47", "AZURE_CLIENT_ID=0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
	}
	with := func(extra ...string) []string { return append(append([]string{}, base...), extra...) }
	clientSecret := with("AZURE_CLIENT_SECRET="+secretClientSecret, "AZURE_TOKEN_CREDENTIALS=EnvironmentCredential")
	workload := with("AZURE_FEDERATED_TOKEN_FILE="+federatedFile, "AZURE_TOKEN_CREDENTIALS=WorkloadIdentityCredential")
	// Managed identity: App Service's variables; AZURE_CLIENT_ID would ask
	// for a user-assigned identity, which the stand-in does not tell apart.
	managed := append(with("AZURE_TOKEN_CREDENTIALS=ManagedIdentityCredential", "AZURE_CLIENT_SECRET="+secretClientSecret, "AZURE_FEDERATED_TOKEN_FILE="+federatedFile), identity.Env()...)
	short := []string{"--timeout=5s"}
	serverArgs := []string{"--server_name=" + s.service, "--server_address=127.0.0.1:0"}
	refusing := func() { identity.SetAudience("https://vault.azure.net") }
	healthy := func() { identity.SetAudience(testenv.StorageAudience); identity.FailFor(0) }

	runs := []secretRun{
		{name: "server --help, every Entra ID secret in the environment", binary: "server", env: managed, args: []string{"--help"}, ok: true},
		{name: "publisher --help, every Entra ID secret in the environment", binary: "client-azqueue-pub", env: managed, args: []string{"--help"}, ok: true},
		{name: "requeue-poison --help, every Entra ID secret in the environment", binary: "requeue-poison", env: managed, args: []string{"--help"}, ok: true},
		{name: "server, client secret, token endpoint unreachable", binary: "server", env: clientSecret, args: serverArgs, want: "get an Entra ID token: the identity endpoint failed"},
		{name: "publisher, client secret, token endpoint unreachable", binary: "client-azqueue-pub", env: clientSecret, args: append([]string{"--count=1"}, short...), want: "get an Entra ID token: the identity endpoint failed"},
		{name: "server, federated token, token endpoint unreachable", binary: "server", env: workload, args: serverArgs, want: "get an Entra ID token: the identity endpoint failed"},
		{name: "requeue-poison, federated token, token endpoint unreachable", binary: "requeue-poison", env: workload, args: short, want: "get an Entra ID token: the identity endpoint failed"},
		{name: "server, managed identity endpoint failing", binary: "server", env: managed, args: serverArgs, want: "the identity endpoint failed (HTTP 500)", setup: func() { identity.FailFor(time.Minute) }},
		{name: "server, token refused", binary: "server", env: managed, args: serverArgs, want: "the service refused the Entra ID token", setup: func() { identity.FailFor(0); refusing() }},
		{name: "publisher, token refused", binary: "client-azqueue-pub", env: managed, args: append([]string{"--count=1"}, short...), want: "the service refused the Entra ID token", setup: refusing},
	}
	for _, r := range runs {
		s.runForSecrets(t, r, secrets)
	}

	t.Run("server with a managed identity, through renewals, an identity outage and a goroutine dump", func(t *testing.T) {
		healthy()
		server := testenv.StartProcess(t, "server", s.bin+"/server", s.args(serverArgs...), append(managed, "GOTRACEBACK=all", "AZQUEUE_POLL_MAX=200ms"))
		server.WaitForOutput(t, "Subscribing to topic", startTimeout)
		pub := testenv.StartProcess(t, "client-azqueue-pub", s.bin+"/client-azqueue-pub", s.args("--count=3", "--interval=0", "--say=with a token"), managed)
		if code, err := pub.Wait(clientTimeout); err != nil || code != 0 {
			t.Fatalf("publish with a managed identity: exit %d, %v\n%s", code, err, pub.Output())
		}
		server.WaitForOutput(t, `received event "with a token #3"`, 30*time.Second)
		identity.FailFor(2 * lifetime)
		server.WaitForOutput(t, "azqueue: renew the Entra ID token", 30*time.Second)
		server.WaitForOutput(t, "Entra ID token renewed after", 60*time.Second)
		dumpGoroutines(t, server)
		if n := len(identity.Issued()); n < 4 {
			t.Errorf("%d tokens issued, want renewals before and after the outage (at least 4)", n)
		}
		checkNoLeak(t, "server", server.Output(), secrets()...)
		checkNoLeak(t, "publisher", pub.Output(), secrets()...)
	})
	return len(runs) + 1
}
