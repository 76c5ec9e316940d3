package azqueue

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/micro/go-micro/v2/broker"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// TestEntraID runs the broker against an Azurite that checks bearer tokens
// (--oauth basic, over HTTPS with a certificate the test makes), with
// tokens from a stand-in for App Service's managed identity endpoint,
// which azidentity's ManagedIdentityCredential really calls, through
// DefaultAzureCredential as production does. The cases set the process
// environment, so they run one after another.
func TestEntraID(t *testing.T) {
	az := testenv.StartAzuriteWithOAuth(t)
	cases := []struct {
		name string
		run  func(*testing.T, *testenv.Azurite)
	}{
		{"AccountAloneSelectsEntraIDThroughDefaultAzureCredential", testAccountAloneSelectsEntraIDThroughDefaultAzureCredential},
		{"TokenCredentialOptionTakesAnyAzcoreCredential", testTokenCredentialOptionTakesAnyAzcoreCredential},
		{"SubscriptionKeepsConsumingAcrossTokenRenewals", testSubscriptionKeepsConsumingAcrossTokenRenewals},
		{"FailingIdentityEndpointIsRetriedAndNothingIsLost", testFailingIdentityEndpointIsRetriedAndNothingIsLost},
		{"DisconnectStopsTheRenewals", testDisconnectStopsTheRenewals},
		{"ConnectNamesTheEntraIDFailureInOneLine", testConnectNamesTheEntraIDFailureInOneLine},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, az) })
	}
}

// entraEnv leaves AZURE_STORAGE_ACCOUNT as the only storage credential
// variable, set to account ("" unsets it too), and points azidentity at
// identity (nil: at nothing).
func entraEnv(t *testing.T, account string, identity *testenv.IdentityEndpoint) {
	for _, k := range []string{EnvConnectionString, EnvKey, EnvSASToken} {
		t.Setenv(k, "")
	}
	t.Setenv(EnvAccount, account)
	if identity != nil {
		identity.Setenv(t)
	}
}

// entraBroker returns a broker for az's HTTPS endpoint that trusts its
// certificate, disconnected by the test's cleanup.
func entraBroker(t *testing.T, az *testenv.Azurite, opts ...broker.Option) *Broker {
	b := NewBroker(append([]broker.Option{broker.Addrs(az.Endpoint()), HTTPClient(az.HTTPClient())}, opts...)...).(*Broker)
	t.Cleanup(func() { b.Disconnect() })
	return b
}

// connectAndSubscribe connects b and subscribes to a new topic, whose
// deliveries the returned recorder collects.
func connectAndSubscribe(t *testing.T, b *Broker) (string, *recorder) {
	t.Helper()
	if err := b.Connect(); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	topic := newTopic()
	got := newRecorder(t)
	if _, err := b.Subscribe(topic, got.handler(nil), fastPolls); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	return topic, got
}

// roundTrip connects b, subscribes, publishes n messages and waits for
// them all.
func roundTrip(t *testing.T, b *Broker, n int) {
	t.Helper()
	topic, got := connectAndSubscribe(t, b)
	got.waitIDs(t, publishMessages(t, b, topic, n), waitLong)
}

func testAccountAloneSelectsEntraIDThroughDefaultAzureCredential(t *testing.T, az *testenv.Azurite) {
	identity := testenv.StartIdentityEndpoint(t, 2*time.Minute)
	entraEnv(t, testenv.DevAccountName, identity)
	b := entraBroker(t, az)
	creds, err := b.credentials()
	if err != nil {
		t.Fatalf("credentials: %v", err)
	}
	if _, ok := creds.Token.(*azidentity.DefaultAzureCredential); !ok {
		t.Fatalf("AZURE_STORAGE_ACCOUNT alone gave %s with a %T, want an Entra ID token from a DefaultAzureCredential", creds, creds.Token)
	}
	roundTrip(t, b, 3)
	if identity.Requests() == 0 || identity.LastResource() != testenv.StorageAudience {
		t.Errorf("the identity endpoint had %d requests, the last for %q; want tokens for %s", identity.Requests(), identity.LastResource(), testenv.StorageAudience)
	}
}

func testTokenCredentialOptionTakesAnyAzcoreCredential(t *testing.T, az *testenv.Azurite) {
	identity := testenv.StartIdentityEndpoint(t, 2*time.Minute)
	entraEnv(t, "", identity)
	cred, err := azidentity.NewManagedIdentityCredential(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := entraBroker(t, az, TokenCredential(testenv.DevAccountName, cred))
	roundTrip(t, b, 2)
}

// tokenLifetime is short enough for a case to outlive several tokens in
// seconds: the broker renews at half-life, and Azurite refuses a token
// from the second its exp has passed.
const tokenLifetime = 6 * time.Second

func testSubscriptionKeepsConsumingAcrossTokenRenewals(t *testing.T, az *testenv.Azurite) {
	identity := testenv.StartIdentityEndpoint(t, tokenLifetime)
	entraEnv(t, testenv.DevAccountName, identity)
	b := entraBroker(t, az)
	topic, got := connectAndSubscribe(t, b)
	firstExpiry := time.Now().Add(tokenLifetime)
	// Publish through four token lifetimes, a message every 500ms.
	var want []string
	for time.Now().Before(firstExpiry.Add(3 * tokenLifetime)) {
		want = append(want, publishMessages(t, b, topic, 1)...)
		time.Sleep(500 * time.Millisecond)
	}
	got.waitIDs(t, want, waitLong)
	if issued := len(identity.Issued()); issued < 6 {
		t.Errorf("%d tokens issued over four lifetimes, want at least 6 (renewals at half-life)", issued)
	}
	if s := b.Stats(); s.Errors != 0 {
		t.Errorf("%d failed requests across the renewals, want none: %s", s.Errors, s)
	}
}

func testFailingIdentityEndpointIsRetriedAndNothingIsLost(t *testing.T, az *testenv.Azurite) {
	identity := testenv.StartIdentityEndpoint(t, tokenLifetime)
	entraEnv(t, testenv.DevAccountName, identity)
	b := entraBroker(t, az)
	topic, got := connectAndSubscribe(t, b)
	want := publishMessages(t, b, topic, 2)
	got.waitIDs(t, want, waitLong)

	// An outage longer than a token's life: the current token expires
	// during it, so the subscription's polls are refused until the
	// renewals get through again. Meanwhile a publisher with the shared
	// key keeps publishing.
	outage := 2 * tokenLifetime
	issuedBefore, requestsBefore := len(identity.Issued()), identity.Requests()
	identity.FailFor(outage)
	outageEnd := time.Now().Add(outage)
	keyed := entraBroker(t, az, ConnectionString(az.ConnectionString()))
	if err := keyed.Connect(); err != nil {
		t.Fatalf("Connect with the shared key: %v", err)
	}
	for time.Now().Before(outageEnd) {
		want = append(want, publishMessages(t, keyed, topic, 1)...)
		time.Sleep(time.Second)
	}
	failed := identity.Requests() - requestsBefore - (len(identity.Issued()) - issuedBefore)
	if failed < 2 {
		t.Errorf("%d renewal attempts failed during a %s outage, want retries (at least 2)", failed, outage)
	}
	got.waitIDs(t, want, waitLong)
	want = append(want, publishMessages(t, b, topic, 1)...)
	got.waitIDs(t, want, waitLong)
	if s := b.Stats(); s.Errors == 0 {
		t.Errorf("no request failed while the token was expired: the case did not outlast the token (%s)", s)
	}
}

func testDisconnectStopsTheRenewals(t *testing.T, az *testenv.Azurite) {
	identity := testenv.StartIdentityEndpoint(t, 2*time.Second)
	entraEnv(t, testenv.DevAccountName, identity)
	b := entraBroker(t, az)
	if err := b.Connect(); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	eventually(t, waitLong, func() string { return fmt.Sprintf("%d requests", identity.Requests()) },
		func() bool { return identity.Requests() >= 2 })
	if err := b.Disconnect(); err != nil {
		t.Fatal(err)
	}
	after := identity.Requests()
	time.Sleep(3 * time.Second) // three renewal periods of a 2s token
	if n := identity.Requests(); n > after+1 {
		t.Errorf("%d token requests after Disconnect, want at most the one that may have been under way", n-after)
	}
}

// roleMissing is an HTTPS stand-in for a storage account where the
// identity holds no data role: Azure answers every request that carries a
// valid token with 403 AuthorizationPermissionMismatch. It records whether
// the requests carried a bearer token.
func roleMissing(t *testing.T) (endpoint string, client *http.Client, bearer *atomic.Int32) {
	bearer = new(atomic.Int32)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ey") {
			bearer.Add(1)
		}
		w.Header().Set("x-ms-error-code", storageCodeAuthorizationPermissionMismatch)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthorizationPermissionMismatch</Code><Message>This request is not authorized to perform this operation using this permission.</Message></Error>`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/" + testenv.DevAccountName, srv.Client(), bearer
}

// storageCodeAuthorizationPermissionMismatch is Azure's code for a missing
// data role, spelt out here so that the test does not take it from the
// code under test.
const storageCodeAuthorizationPermissionMismatch = "AuthorizationPermissionMismatch"

func testConnectNamesTheEntraIDFailureInOneLine(t *testing.T, az *testenv.Azurite) {
	noRoleEndpoint, noRoleClient, bearer := roleMissing(t)
	tests := []struct {
		name string
		// setup arranges the identity and returns extra broker options.
		setup func(t *testing.T, identity *testenv.IdentityEndpoint) []broker.Option
		want  string
	}{
		{"no credential anywhere", func(t *testing.T, _ *testenv.IdentityEndpoint) []broker.Option {
			entraEnv(t, testenv.DevAccountName, nil)
			// Only the developer tools' credentials, and none of their
			// commands on the PATH: nothing is found, and nothing is
			// asked of the network (managed identity would probe IMDS).
			t.Setenv("AZURE_TOKEN_CREDENTIALS", "dev")
			t.Setenv("PATH", t.TempDir())
			return nil
		}, "get an Entra ID token: no Entra ID credential found"},
		{"identity endpoint failing", func(t *testing.T, identity *testenv.IdentityEndpoint) []broker.Option {
			identity.FailFor(time.Minute)
			return nil
		}, "the identity endpoint failed (HTTP 500)"},
		{"identity endpoint unreachable", func(t *testing.T, identity *testenv.IdentityEndpoint) []broker.Option {
			t.Setenv("IDENTITY_ENDPOINT", fmt.Sprintf("http://127.0.0.1:%d/msi/token", testenv.FreePort(t)))
			return nil
		}, "the identity endpoint failed (no response)"},
		{"token for another audience", func(t *testing.T, identity *testenv.IdentityEndpoint) []broker.Option {
			identity.SetAudience("https://vault.azure.net")
			return nil
		}, "the service refused the Entra ID token (Invalid token audience.)"},
		{"expired token", func(t *testing.T, identity *testenv.IdentityEndpoint) []broker.Option {
			identity.SetExpired(true)
			return nil
		}, "the service refused the Entra ID token (Lifetime validation failed. The token is expired.)"},
		{"identity without the data role", func(t *testing.T, _ *testenv.IdentityEndpoint) []broker.Option {
			return []broker.Option{broker.Addrs(noRoleEndpoint), HTTPClient(noRoleClient)}
		}, `has no data role here: assign it "Storage Queue Data Contributor"`},
		{"plain-HTTP endpoint", func(t *testing.T, _ *testenv.IdentityEndpoint) []broker.Option {
			return []broker.Option{broker.Addrs(fmt.Sprintf("http://127.0.0.1:%d/%s", testenv.FreePort(t), testenv.DevAccountName))}
		}, "Entra ID tokens are sent over HTTPS only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			identity := testenv.StartIdentityEndpoint(t, 2*time.Minute)
			entraEnv(t, testenv.DevAccountName, identity)
			b := entraBroker(t, az, tt.setup(t, identity)...)
			err := b.Connect()
			if err == nil {
				t.Fatalf("Connect succeeded, want an error saying %q", tt.want)
			}
			t.Logf("Connect: %v", err)
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("Connect: %v\nwant it to say %q", err, tt.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("Connect's error is not one line: %q", msg)
			}
			for _, token := range identity.Issued() {
				if strings.Contains(msg, token) || strings.Contains(msg, token[:40]) {
					t.Errorf("Connect's error shows a token: %v", err)
				}
			}
			if strings.Contains(msg, identity.Header()) {
				t.Errorf("Connect's error shows IDENTITY_HEADER: %v", err)
			}
		})
	}
	if bearer.Load() == 0 {
		t.Errorf("the role-less stand-in saw no bearer token: its case did not test the Entra ID path")
	}
}
