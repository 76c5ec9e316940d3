package testenv

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-storage-queue-go/azqueue"
)

// oauthTestTimeout bounds one request to Azurite.
const oauthTestTimeout = 10 * time.Second

func TestOAuthAzuriteChecksBearerTokens(t *testing.T) {
	azurite := StartAzuriteWithOAuth(t)
	endpoint, cred := managedIdentity(t)
	bearer := func(setup func()) func(t *testing.T) string {
		return func(t *testing.T) string {
			setup()
			defer endpoint.SetAudience(StorageAudience)
			defer endpoint.SetExpired(false)
			return "Bearer " + getToken(t, cred, storageScope).Token
		}
	}
	tests := []struct {
		name          string
		authorization func(t *testing.T) string // "" sends no Authorization
		wantStatus    int
		wantCode      string
		wantDetail    string
	}{
		{name: "storage token", authorization: bearer(func() {}), wantStatus: http.StatusOK},
		{
			name:          "wrong audience",
			authorization: bearer(func() { endpoint.SetAudience("https://vault.azure.net") }),
			wantStatus:    http.StatusForbidden, wantCode: "AuthenticationFailed", wantDetail: "Invalid token audience.",
		},
		{
			name:          "expired token",
			authorization: bearer(func() { endpoint.SetExpired(true) }),
			wantStatus:    http.StatusForbidden, wantCode: "AuthenticationFailed", wantDetail: "Lifetime validation failed. The token is expired.",
		},
		{
			name:          "not a JWT",
			authorization: func(*testing.T) string { return "Bearer not-a-jwt" },
			wantStatus:    http.StatusForbidden, wantCode: "AuthenticationFailed", wantDetail: "Authentication scheme Bearer is not supported.",
		},
		{
			name:          "no token",
			authorization: func(*testing.T) string { return "" },
			wantStatus:    http.StatusForbidden, wantCode: "AuthenticationFailed",
		},
	}
	client := azurite.HTTPClient()
	t.Cleanup(client.CloseIdleConnections)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer := listQueuesAs(t, client, azurite.Endpoint(), tt.authorization(t))
			if answer.status != tt.wantStatus || answer.Code != tt.wantCode || answer.AuthenticationErrorDetail != tt.wantDetail {
				t.Errorf("List Queues answered %d %q %q, want %d %q %q", answer.status, answer.Code, answer.AuthenticationErrorDetail, tt.wantStatus, tt.wantCode, tt.wantDetail)
			}
		})
	}
}

func TestPlainAzuriteRefusesBearerTokens(t *testing.T) {
	azurite := StartAzurite(t)
	endpoint := StartIdentityEndpoint(t, identityTestLifetime)
	token := identityGet(t, endpoint, http.MethodGet, endpoint.url, endpoint.Header(), identityQuery(StorageAudience))
	var resp struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(token.body, &resp); err != nil || resp.AccessToken == "" {
		t.Fatalf("token response %s: %v", token.body, err)
	}
	if got := azurite.CertFile(); got != "" {
		t.Errorf("CertFile() of a plain Azurite = %q, want \"\"", got)
	}
	// Azurite checks bearer tokens only with --oauth, which needs HTTPS:
	// over HTTP a token is no credential, and the request fails as
	// unsigned.
	answer := listQueuesAs(t, azurite.HTTPClient(), azurite.Endpoint(), "Bearer "+resp.AccessToken)
	if answer.status != http.StatusForbidden || answer.Code != "AuthenticationFailed" {
		t.Errorf("a valid token over HTTP got %d %q %q, want 403 AuthenticationFailed", answer.status, answer.Code, answer.AuthenticationErrorDetail)
	}
}

func TestOAuthAzuriteServesHTTPSAndSharedKeyAcrossRestart(t *testing.T) {
	azurite := StartAzuriteWithOAuth(t)
	endpoint := azurite.Endpoint()
	if !strings.HasPrefix(endpoint, "https://127.0.0.1:") || !strings.HasSuffix(endpoint, "/"+DevAccountName) {
		t.Fatalf("Endpoint() = %q, want https://127.0.0.1:PORT/%s", endpoint, DevAccountName)
	}
	wantConn := "DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey=" + DevAccountKey + ";QueueEndpoint=" + endpoint + ";"
	if got := azurite.ConnectionString(); got != wantConn {
		t.Errorf("ConnectionString() = %q, want %q", got, wantConn)
	}
	checkTestCertificate(t, azurite.CertFile())

	// A client with the machine's roots must refuse the certificate: the
	// instance really serves TLS, with a certificate only its clients trust.
	untrusting := &http.Client{Timeout: oauthTestTimeout, Transport: &http.Transport{}}
	t.Cleanup(untrusting.CloseIdleConnections)
	if resp, err := untrusting.Get(endpoint + "?comp=list"); err == nil {
		resp.Body.Close()
		t.Errorf("a client without the test certificate reached %s", endpoint)
	} else if !errors.As(err, new(x509.UnknownAuthorityError)) {
		t.Errorf("a client without the test certificate failed with %v, want an unknown authority", err)
	}

	svc := azurite.Service(t, azqueue.PipelineOptions{Retry: azqueue.RetryOptions{MaxTries: 1}})
	messages := createQueue(t, svc, "testenv-oauth")
	ctx, cancel := context.WithTimeout(context.Background(), oauthTestTimeout)
	defer cancel()
	if _, err := messages.Enqueue(ctx, "kept", 0, 0); err != nil {
		t.Fatalf("enqueue with the shared key: %v", err)
	}

	azurite.Stop()
	if _, err := svc.ListQueuesSegment(ctx, azqueue.Marker{}, azqueue.ListQueuesSegmentOptions{}); err == nil {
		t.Fatalf("List Queues succeeded with Azurite stopped")
	}
	azurite.Start()
	if got := azurite.Endpoint(); got != endpoint {
		t.Errorf("Endpoint() after restart = %q, want %q", got, endpoint)
	}
	if texts := peekTexts(t, messages); len(texts) != 1 || texts[0] != "kept" {
		t.Errorf("messages after restart = %q, want [kept]", texts)
	}
}

func TestOAuthAzuriteCertFileIsTrustedByChildrenThroughSSLCertFile(t *testing.T) {
	azurite := StartAzuriteWithOAuth(t)
	tests := []struct {
		name        string
		sslCertFile string
		wantOutput  string
	}{
		{name: "SSL_CERT_FILE is CertFile", sslCertFile: azurite.CertFile(), wantOutput: "status 403"},
		{name: "machine roots", sslCertFile: "", wantOutput: "certificate signed by unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			child := StartProcess(t, "https child", os.Args[0], []string{"-test.run=^TestHelperProcessGetsURL$"}, []string{
				"SSL_CERT_FILE=" + tt.sslCertFile,
				helperGetURLEnv + "=" + azurite.Endpoint() + "?comp=list",
			})
			if _, err := child.Wait(oauthTestTimeout); err != nil {
				t.Fatalf("child: %v", err)
			}
			if out := child.Output(); !strings.Contains(out, tt.wantOutput) {
				t.Errorf("child printed %q, want %q", out, tt.wantOutput)
			}
		})
	}
}

// helperGetURLEnv names the URL TestHelperProcessGetsURL gets.
const helperGetURLEnv = "TESTENV_HELPER_GET_URL"

// TestHelperProcessGetsURL is not a test: run as a child of the test binary
// with helperGetURLEnv set, it GETs that URL with Go's default client, as a
// project binary would, and prints the status or the error.
func TestHelperProcessGetsURL(t *testing.T) {
	target := os.Getenv(helperGetURLEnv)
	if target == "" {
		return
	}
	resp, err := (&http.Client{Timeout: oauthTestTimeout}).Get(target)
	if err != nil {
		fmt.Println("GET failed:", err)
		os.Exit(1)
	}
	resp.Body.Close()
	fmt.Println("status", resp.StatusCode)
	os.Exit(0)
}

// checkTestCertificate checks that file holds one PEM certificate for
// 127.0.0.1 and localhost, valid now, that is its own root.
func checkTestCertificate(t *testing.T, file string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("CertFile() = %q: %v", file, err)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" || len(strings.TrimSpace(string(rest))) != 0 {
		t.Fatalf("CertFile() %s does not hold exactly one PEM certificate", file)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("parse CertFile() %s: %v", file, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	for _, host := range []string{"127.0.0.1", "localhost"} {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: host, Roots: roots}); err != nil {
			t.Errorf("certificate does not verify for %s against itself: %v", host, err)
		}
	}
}

// storageErrorAnswer is an answer of Azurite with its XML error fields.
type storageErrorAnswer struct {
	status                    int
	Code                      string `xml:"Code"`
	AuthenticationErrorDetail string `xml:"AuthenticationErrorDetail"`
}

// listQueuesAs sends List Queues with authorization as the Authorization
// header ("" for none) and returns the status and error fields.
func listQueuesAs(t *testing.T, client *http.Client, endpoint, authorization string) storageErrorAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), oauthTestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"?comp=list", nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.Header.Set("x-ms-version", "2020-10-02")
	req.Header.Set("x-ms-date", time.Now().UTC().Format(http.TimeFormat))
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("List Queues at %s: %v", endpoint, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("List Queues at %s: read body: %v", endpoint, err)
	}
	answer := storageErrorAnswer{status: resp.StatusCode}
	if resp.StatusCode != http.StatusOK {
		if err := xml.Unmarshal(body, &answer); err != nil {
			t.Fatalf("List Queues answered %d with %q, not a storage error: %v", resp.StatusCode, body, err)
		}
	}
	return answer
}
