package testenv

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// StorageAudience is the token audience Azure Storage, and Azurite with
// `--oauth basic`, accept: a managed identity token for the resource
// "https://storage.azure.com" (scope "https://storage.azure.com/.default")
// carries it.
const StorageAudience = "https://storage.azure.com"

const (
	// identityTokenPath is where the stand-in serves tokens; App Service's
	// IDENTITY_ENDPOINT is a full URL, so any path would do.
	identityTokenPath = "/msi/token"
	// appServiceIdentityAPIVersion is the App Service managed identity API
	// version MSAL (under azidentity v1.13.1) asks for.
	appServiceIdentityAPIVersion = "2019-08-01"
	// identityTenantID, identityPrincipalID and identityAppID are the
	// made-up tenant and identity every stand-in token names.
	identityTenantID    = "5f0c2a8e-7d3b-4c1a-9e6f-2b8d4a7c1e90"
	identityPrincipalID = "a3e1c5d7-9b2f-4e6a-8c0d-1f3b5d7e9a2c"
	identityAppID       = "c7b9d1e3-5f7a-4b2c-9d4e-6a8c0e2f4b6d"
	// identityBackdate is how far before the request a token's iat and nbf
	// lie, as in Entra ID's tokens: Azurite checks nbf with no clock skew.
	identityBackdate = 5 * time.Minute
	// identityExpiredAgo is how long ago an expired token's exp lies.
	identityExpiredAgo = time.Minute
	// identityReadHeaderTimeout bounds a client's request headers.
	identityReadHeaderTimeout = 10 * time.Second
)

// identityIssuer is the iss of stand-in tokens: an Entra ID v1 issuer,
// the kind Azurite's token check requires.
var identityIssuer = "https://sts.windows.net/" + identityTenantID + "/"

// identityCredentialEnv lists the variables that would make azidentity
// pick another credential, another managed identity source or a
// user-assigned identity than the stand-in's system-assigned one.
var identityCredentialEnv = []string{
	"AZURE_TOKEN_CREDENTIALS",
	"AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID",
	"AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PASSWORD",
	"AZURE_USERNAME", "AZURE_PASSWORD",
	"AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST",
	"AZURE_ADDITIONALLY_ALLOWED_TENANTS",
	"IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT",
}

// IdentityEndpoint stands in for the managed identity endpoint of Azure
// App Service, so that code using azidentity's ManagedIdentityCredential
// (or DefaultAzureCredential) gets tokens Azurite accepts without any
// traffic leaving 127.0.0.1. It speaks the protocol as azidentity v1.13.1
// (through MSAL) uses it: GET IDENTITY_ENDPOINT?api-version=2019-08-01&
// resource=R with the X-IDENTITY-HEADER secret, answered with
// {"access_token", "expires_on" (Unix seconds as a string), "resource",
// "token_type", "client_id"}.
//
// Its tokens are well-formed but unsigned JWTs: Azurite's `--oauth basic`
// checks their lifetime, issuer and audience, never their signature.
// Tests steer it (SetAudience, SetExpired, FailFor) and inspect it
// (Issued, Requests, LastResource); it is safe for concurrent use.
type IdentityEndpoint struct {
	url      string
	header   string
	lifetime time.Duration
	server   *http.Server

	mu           sync.Mutex
	audience     string
	expired      bool
	failUntil    time.Time
	issued       []string
	requests     int
	lastResource string
}

// StartIdentityEndpoint starts the stand-in on a free port of 127.0.0.1;
// tb's cleanup stops it. Its tokens expire lifetime after they are issued
// (both expires_on and the JWT's exp).
//
// MSAL, under azidentity, caches managed identity tokens in one cache per
// process, keyed by resource and not by endpoint, and serves a cached
// token while it has more than 5 minutes left. A lifetime of 5 minutes or
// less therefore makes every GetToken reach this endpoint, and keeps one
// test's tokens from being served to the next test in the same process;
// a longer lifetime lets the first token be reused by every later
// credential of the process.
func StartIdentityEndpoint(tb testing.TB, lifetime time.Duration) *IdentityEndpoint {
	tb.Helper()
	if lifetime <= 0 {
		tb.Fatalf("testenv: start identity endpoint: lifetime %v is not positive", lifetime)
	}
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		tb.Fatalf("testenv: start identity endpoint: make IDENTITY_HEADER: %v", err)
	}
	// Listening on port 0 and keeping the listener leaves no window in
	// which another process could take the port.
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testenv: start identity endpoint: listen on 127.0.0.1:0: %v", err)
	}
	e := &IdentityEndpoint{
		url:      "http://" + listener.Addr().String() + identityTokenPath,
		header:   hex.EncodeToString(secret),
		lifetime: lifetime,
		audience: StorageAudience,
	}
	e.server = &http.Server{
		Handler:           http.HandlerFunc(e.serve),
		ReadHeaderTimeout: identityReadHeaderTimeout,
		ErrorLog:          log.New(testLogWriter{tb}, "testenv: identity endpoint: ", 0),
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := e.server.Serve(listener); !errors.Is(err, http.ErrServerClosed) {
			tb.Logf("testenv: identity endpoint on %s stopped serving: %v", e.url, err)
		}
	}()
	tb.Cleanup(func() {
		if err := e.server.Close(); err != nil {
			tb.Logf("testenv: stop identity endpoint on %s: %v", e.url, err)
		}
		<-served
	})
	return e
}

// Env returns the variables that point azidentity at this endpoint, in the
// form of os.Environ, for a child process's environment. The child must
// not also have the variables Setenv clears.
func (e *IdentityEndpoint) Env() []string {
	return []string{"IDENTITY_ENDPOINT=" + e.url, "IDENTITY_HEADER=" + e.header}
}

// Setenv points azidentity in this process at the endpoint for the rest
// of tb: it sets Env's variables and unsets, until tb ends, every variable
// that would make ManagedIdentityCredential or DefaultAzureCredential use
// something else (a client secret, workload identity, IMDS, a
// user-assigned identity). Like tb.Setenv, it cannot be used in parallel
// tests.
func (e *IdentityEndpoint) Setenv(tb testing.TB) {
	tb.Helper()
	for _, name := range identityCredentialEnv {
		tb.Setenv(name, "") // restores the old value when tb ends
		if err := os.Unsetenv(name); err != nil {
			tb.Fatalf("testenv: unset %s: %v", name, err)
		}
	}
	for _, kv := range e.Env() {
		name, value, _ := strings.Cut(kv, "=")
		tb.Setenv(name, value)
	}
}

// Header returns the IDENTITY_HEADER secret, so tests can check that no
// log or error ever shows it.
func (e *IdentityEndpoint) Header() string { return e.header }

// SetAudience sets the aud of the tokens issued from now on
// (StorageAudience until then), whatever resource was asked for: another
// audience makes tokens Azurite rejects as "Invalid token audience".
func (e *IdentityEndpoint) SetAudience(aud string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.audience = aud
}

// SetExpired makes the tokens issued from now on, if expired is true,
// already expired inside (the JWT's exp lies in the past) while expires_on
// still says the lifetime: the client believes the token good, and Azurite
// rejects it, as it would a token of a skewed or lying endpoint.
func (e *IdentityEndpoint) SetExpired(expired bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expired = expired
}

// FailFor makes the endpoint answer every request with 500 and an
// App Service-like JSON error for d from now, as during an outage of the
// identity service; FailFor(0) ends the failure at once.
func (e *IdentityEndpoint) FailFor(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failUntil = time.Time{}
	if d > 0 {
		e.failUntil = time.Now().Add(d)
	}
}

// Issued returns every access token issued so far, oldest first: the
// secrets a leak check looks for, and how many times a client refreshed.
func (e *IdentityEndpoint) Issued() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.issued)
}

// Requests returns how many requests the endpoint received, the ones it
// failed or refused included: what a test of retries and backoff counts.
func (e *IdentityEndpoint) Requests() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.requests
}

// LastResource returns the resource query parameter of the last token
// request ("" before any): a client asking for anything but
// StorageAudience still gets a token, so a test must look here to catch a
// wrong scope.
func (e *IdentityEndpoint) LastResource() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastResource
}

// identityTokenResponse is App Service's answer to a token request.
type identityTokenResponse struct {
	AccessToken string `json:"access_token"`
	ExpiresOn   string `json:"expires_on"` // Unix seconds, as a string
	Resource    string `json:"resource"`
	TokenType   string `json:"token_type"`
	ClientID    string `json:"client_id"`
}

// identityErrorResponse is App Service's error body.
type identityErrorResponse struct {
	StatusCode    int    `json:"statusCode"`
	Message       string `json:"message"`
	CorrelationID string `json:"correlationId"`
}

// serve answers one request; the answer is made under the lock and
// written outside it, so a slow client holds up no other.
func (e *IdentityEndpoint) serve(w http.ResponseWriter, r *http.Request) {
	status, body := e.answer(r)
	data, err := json.Marshal(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

// answer returns the status and JSON body for r. The checks run in the
// order App Service's would, and every request counts, refused ones too.
func (e *IdentityEndpoint) answer(r *http.Request) (int, any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.requests++
	now := time.Now()
	switch {
	case r.URL.Path != identityTokenPath:
		return identityError(http.StatusNotFound, "no such path "+r.URL.Path)
	case r.Method != http.MethodGet:
		return identityError(http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed")
	case subtle.ConstantTimeCompare([]byte(r.Header.Get("X-IDENTITY-HEADER")), []byte(e.header)) != 1:
		return identityError(http.StatusUnauthorized, "missing or wrong X-IDENTITY-HEADER")
	case now.Before(e.failUntil):
		return identityError(http.StatusInternalServerError, "identity endpoint failing on purpose (FailFor)")
	}
	query := r.URL.Query()
	if v := query.Get("api-version"); v != appServiceIdentityAPIVersion {
		return identityError(http.StatusBadRequest, "api-version "+strconv.Quote(v)+" is not "+appServiceIdentityAPIVersion)
	}
	resource := query.Get("resource")
	e.lastResource = resource
	if resource == "" {
		return identityError(http.StatusBadRequest, "missing resource")
	}
	expiresOn := now.Add(e.lifetime)
	token, err := e.newToken(now, expiresOn)
	if err != nil {
		return identityError(http.StatusInternalServerError, "make token: "+err.Error())
	}
	e.issued = append(e.issued, token)
	return http.StatusOK, identityTokenResponse{
		AccessToken: token,
		ExpiresOn:   strconv.FormatInt(expiresOn.Unix(), 10),
		Resource:    resource,
		TokenType:   "Bearer",
		ClientID:    identityAppID,
	}
}

// identityError returns status with App Service's error body.
func identityError(status int, message string) (int, any) {
	return status, identityErrorResponse{StatusCode: status, Message: message, CorrelationID: uuid.NewString()}
}

// newToken returns an unsigned JWT with the claims of an Entra ID v1 app
// token, valid until expiresOn unless the endpoint issues expired tokens.
// The caller holds e.mu.
func (e *IdentityEndpoint) newToken(now, expiresOn time.Time) (string, error) {
	notBefore, exp := now.Add(-identityBackdate), expiresOn
	if e.expired {
		exp = now.Add(-identityExpiredAgo)
		notBefore = exp.Add(-e.lifetime)
	}
	uti := make([]byte, 16)
	if _, err := rand.Read(uti); err != nil {
		return "", err
	}
	signature := make([]byte, 64)
	if _, err := rand.Read(signature); err != nil {
		return "", err
	}
	header, err := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT"})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(map[string]any{
		"aud":      e.audience,
		"iss":      identityIssuer,
		"iat":      notBefore.Unix(),
		"nbf":      notBefore.Unix(),
		"exp":      exp.Unix(),
		"aio":      "testenv",
		"appid":    identityAppID,
		"appidacr": "2",
		"idp":      identityIssuer,
		"idtyp":    "app",
		"oid":      identityPrincipalID,
		"sub":      identityPrincipalID,
		"tid":      identityTenantID,
		"uti":      base64.RawURLEncoding.EncodeToString(uti),
		"ver":      "1.0",
	})
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(header) + "." + enc.EncodeToString(payload) + "." + enc.EncodeToString(signature), nil
}

// testLogWriter sends an http.Server's error log to a test's log.
type testLogWriter struct{ tb testing.TB }

// Write logs p, one server message, as one line of the test's log.
func (w testLogWriter) Write(p []byte) (int, error) {
	w.tb.Logf("%s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
