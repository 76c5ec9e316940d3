package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// TestBinariesAuthenticateWithEntraIDFromTheEnvironmentAlone runs the real
// server and client-azqueue-pub configured the way App Service configures
// a managed identity, with nothing but environment variables: the account
// name alone (AZURE_STORAGE_ACCOUNT), the queue endpoint
// (MICRO_BROKER_ADDRESS), the identity endpoint (IDENTITY_ENDPOINT,
// IDENTITY_HEADER) and the certificate to trust (SSL_CERT_FILE). Azurite
// checks every request's bearer token. Tokens live 8s, so the server
// consumes through several renewals: events published before and after
// them all arrive, each once.
func TestBinariesAuthenticateWithEntraIDFromTheEnvironmentAlone(t *testing.T) {
	const lifetime = 8 * time.Second
	identity := testenv.StartIdentityEndpoint(t, lifetime)
	s := newStackOn(t, testenv.StartAzuriteWithOAuth(t))
	s.environment = append([]string{
		"AZURE_STORAGE_ACCOUNT=" + testenv.DevAccountName,
		"MICRO_BROKER_ADDRESS=" + s.azurite.Endpoint(),
		"SSL_CERT_FILE=" + s.azurite.CertFile(),
	}, identity.Env()...)
	say := "entra " + t.Name()

	server := s.startServer()
	start := time.Now()
	publish := func(say string) {
		t.Helper()
		p, code := s.run("client-azqueue-pub", "--count=5", "--interval=0", "--say="+say)
		if code != 0 {
			t.Fatalf("publisher exited %d:\n%s", code, p.Output())
		}
	}
	publish(say)
	waitReceived(t, server, say, 5)
	// Outlive three of the server's tokens, then publish again.
	time.Sleep(time.Until(start.Add(3 * lifetime)))
	publish(say + " late")
	waitReceived(t, server, say+" late", 5)
	stopServer(t, server, 10)
	// The server renews at half-life: over 3 lifetimes at least 5 tokens;
	// the two publishers got one each.
	if issued := len(identity.Issued()); issued < 7 {
		t.Errorf("%d tokens issued, want at least 7 (the server's renewals and one per publisher run)", issued)
	}
	if identity.LastResource() != testenv.StorageAudience {
		t.Errorf("tokens were asked for %q, want %s", identity.LastResource(), testenv.StorageAudience)
	}
	for _, token := range identity.Issued() {
		if strings.Contains(server.Output(), token[len(token)-40:]) {
			t.Errorf("the server's output shows a token")
			break
		}
	}
}
