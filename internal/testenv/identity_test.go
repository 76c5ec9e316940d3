package testenv

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azlog "github.com/Azure/azure-sdk-for-go/sdk/azcore/log"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

const (
	// identityTestLifetime is short enough (at most 5 minutes) that MSAL's
	// process-wide cache never serves a token: every GetToken of these
	// tests reaches the endpoint of the test that calls it.
	identityTestLifetime = 2 * time.Minute
	// identityTestTimeout bounds one GetToken or raw request.
	identityTestTimeout = 10 * time.Second
	// storageScope is the scope a storage client asks azidentity for.
	storageScope = StorageAudience + "/.default"
)

func TestIdentityEndpointServesAzidentityCredentials(t *testing.T) {
	tests := []struct {
		name string
		new  func() (azcore.TokenCredential, error)
	}{
		{name: "ManagedIdentityCredential", new: func() (azcore.TokenCredential, error) { return azidentity.NewManagedIdentityCredential(nil) }},
		{name: "DefaultAzureCredential", new: func() (azcore.TokenCredential, error) { return azidentity.NewDefaultAzureCredential(nil) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			endpoint := StartIdentityEndpoint(t, identityTestLifetime)
			endpoint.Setenv(t)
			onlyLoopbackRequests(t)
			cred, err := tt.new()
			if err != nil {
				t.Fatalf("new credential: %v", err)
			}
			for i := 1; i <= 2; i++ {
				before := time.Now()
				token := getToken(t, cred, storageScope)
				issued := endpoint.Issued()
				if len(issued) != i || token.Token != issued[i-1] {
					t.Fatalf("GetToken #%d returned a token that is not the endpoint's newest; issued %d tokens", i, len(issued))
				}
				if got := endpoint.Requests(); got != i {
					t.Errorf("after GetToken #%d the endpoint got %d requests, want %d", i, got, i)
				}
				if got := endpoint.LastResource(); got != StorageAudience {
					t.Errorf("resource asked for = %q, want %q", got, StorageAudience)
				}
				// expires_on has whole seconds.
				earliest, latest := before.Add(identityTestLifetime-time.Second), time.Now().Add(identityTestLifetime)
				if token.ExpiresOn.Before(earliest) || token.ExpiresOn.After(latest) {
					t.Errorf("ExpiresOn = %v, want between %v and %v", token.ExpiresOn, earliest, latest)
				}
			}
			if issued := endpoint.Issued(); issued[0] == issued[1] {
				t.Errorf("two GetToken calls got the same token %q", issued[0])
			}
		})
	}
}

func TestIdentityEndpointIssuesDistinctEntraLikeJWTs(t *testing.T) {
	const otherAudience = "https://vault.azure.net"
	tests := []struct {
		name        string
		setup       func(*IdentityEndpoint)
		wantAud     string
		wantExpired bool
	}{
		{name: "default", setup: func(*IdentityEndpoint) {}, wantAud: StorageAudience},
		{name: "other audience", setup: func(e *IdentityEndpoint) { e.SetAudience(otherAudience) }, wantAud: otherAudience},
		{name: "expired inside", setup: func(e *IdentityEndpoint) { e.SetExpired(true) }, wantAud: StorageAudience, wantExpired: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			endpoint := StartIdentityEndpoint(t, identityTestLifetime)
			tt.setup(endpoint)
			seen := map[string]bool{}
			for range 3 {
				before := time.Now().Unix()
				answer := identityGet(t, endpoint, http.MethodGet, endpoint.url, endpoint.Header(), identityQuery(StorageAudience))
				after := time.Now().Unix()
				if answer.status != http.StatusOK {
					t.Fatalf("token request answered %d %s", answer.status, answer.body)
				}
				var resp struct {
					AccessToken string `json:"access_token"`
					ExpiresOn   string `json:"expires_on"`
					Resource    string `json:"resource"`
					TokenType   string `json:"token_type"`
				}
				if err := json.Unmarshal(answer.body, &resp); err != nil {
					t.Fatalf("token response %s: %v", answer.body, err)
				}
				expiresOn, err := strconv.ParseInt(resp.ExpiresOn, 10, 64)
				if err != nil {
					t.Errorf("expires_on = %q, want Unix seconds as a string as App Service sends", resp.ExpiresOn)
				}
				lifetime := int64(identityTestLifetime / time.Second)
				if expiresOn < before+lifetime || expiresOn > after+lifetime {
					t.Errorf("expires_on = %d, want the lifetime ahead, [%d, %d], expired inside or not", expiresOn, before+lifetime, after+lifetime)
				}
				if resp.Resource != StorageAudience || resp.TokenType != "Bearer" {
					t.Errorf("resource, token_type = %q, %q, want %q, Bearer", resp.Resource, resp.TokenType, StorageAudience)
				}
				if seen[resp.AccessToken] {
					t.Fatalf("token issued twice: %s", resp.AccessToken)
				}
				seen[resp.AccessToken] = true

				header, claims := decodeJWT(t, resp.AccessToken)
				if header["alg"] != "RS256" || header["typ"] != "JWT" {
					t.Errorf("JWT header = %v, want alg RS256, typ JWT", header)
				}
				if claims.Aud != tt.wantAud {
					t.Errorf("aud = %q, want %q", claims.Aud, tt.wantAud)
				}
				if !strings.HasPrefix(claims.Iss, "https://sts.windows.net/") || claims.Iss != "https://sts.windows.net/"+claims.Tid+"/" {
					t.Errorf("iss = %q with tid %q, want https://sts.windows.net/<tid>/", claims.Iss, claims.Tid)
				}
				if claims.Oid == "" || claims.Sub == "" || claims.AppID == "" || claims.Uti == "" {
					t.Errorf("claims %+v lack oid, sub, appid or uti", claims)
				}
				if claims.Nbf > before || claims.Iat > before {
					t.Errorf("nbf, iat = %d, %d, want at most %d: Azurite allows no clock skew", claims.Nbf, claims.Iat, before)
				}
				if expired := claims.Exp < before; expired != tt.wantExpired {
					t.Errorf("exp = %d at %d: expired = %v, want %v", claims.Exp, before, expired, tt.wantExpired)
				}
				if !tt.wantExpired && claims.Exp != expiresOn {
					t.Errorf("exp = %d, want expires_on %d", claims.Exp, expiresOn)
				}
			}
			if got := len(endpoint.Issued()); got != 3 {
				t.Errorf("Issued() has %d tokens, want 3", got)
			}
		})
	}
}

func TestIdentityEndpointRefusesBadRequestsAndCountsEach(t *testing.T) {
	endpoint := StartIdentityEndpoint(t, identityTestLifetime)
	tests := []struct {
		name       string
		method     string
		path       string
		header     string
		query      url.Values
		wantStatus int
	}{
		{name: "no identity header", method: http.MethodGet, path: identityTokenPath, query: identityQuery(StorageAudience), wantStatus: http.StatusUnauthorized},
		{name: "wrong identity header", method: http.MethodGet, path: identityTokenPath, header: "wrong", query: identityQuery(StorageAudience), wantStatus: http.StatusUnauthorized},
		{name: "POST", method: http.MethodPost, path: identityTokenPath, header: endpoint.Header(), query: identityQuery(StorageAudience), wantStatus: http.StatusMethodNotAllowed},
		{name: "other path", method: http.MethodGet, path: "/metadata/identity/oauth2/token", header: endpoint.Header(), query: identityQuery(StorageAudience), wantStatus: http.StatusNotFound},
		{name: "other api-version", method: http.MethodGet, path: identityTokenPath, header: endpoint.Header(), query: url.Values{"api-version": {"2017-09-01"}, "resource": {StorageAudience}}, wantStatus: http.StatusBadRequest},
		{name: "no resource", method: http.MethodGet, path: identityTokenPath, header: endpoint.Header(), query: url.Values{"api-version": {appServiceIdentityAPIVersion}}, wantStatus: http.StatusBadRequest},
	}
	base := strings.TrimSuffix(endpoint.url, identityTokenPath)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer := identityGet(t, endpoint, tt.method, base+tt.path, tt.header, tt.query)
			if answer.status != tt.wantStatus {
				t.Errorf("answered %d %s, want %d", answer.status, answer.body, tt.wantStatus)
			}
			var body struct {
				StatusCode int    `json:"statusCode"`
				Message    string `json:"message"`
			}
			if err := json.Unmarshal(answer.body, &body); err != nil || body.StatusCode != answer.status || body.Message == "" {
				t.Errorf("error body %s (%v), want App Service's JSON error with statusCode %d", answer.body, err, answer.status)
			}
			if got := endpoint.Requests(); got != i+1 {
				t.Errorf("Requests() = %d, want %d: refused requests count too", got, i+1)
			}
			if got := len(endpoint.Issued()); got != 0 {
				t.Errorf("Issued() has %d tokens after refused requests, want 0", got)
			}
		})
	}
}

// managedIdentity starts an identity endpoint, points this process's
// azidentity at it, and returns it with a ManagedIdentityCredential.
func managedIdentity(t *testing.T) (*IdentityEndpoint, *azidentity.ManagedIdentityCredential) {
	t.Helper()
	endpoint := StartIdentityEndpoint(t, identityTestLifetime)
	endpoint.Setenv(t)
	onlyLoopbackRequests(t)
	cred, err := azidentity.NewManagedIdentityCredential(nil)
	if err != nil {
		t.Fatalf("new credential: %v", err)
	}
	return endpoint, cred
}

func TestIdentityEndpointAnswersOtherResourcesAndRecordsThem(t *testing.T) {
	endpoint, cred := managedIdentity(t)
	for _, scope := range []string{"https://vault.azure.net/.default", storageScope, "https://management.azure.com"} {
		getToken(t, cred, scope)
		if want := strings.TrimSuffix(scope, "/.default"); endpoint.LastResource() != want {
			t.Errorf("after GetToken(%q) LastResource() = %q, want %q", scope, endpoint.LastResource(), want)
		}
	}
}

func TestIdentityEndpointFailForFailsGetTokenUntilItEnds(t *testing.T) {
	endpoint := StartIdentityEndpoint(t, identityTestLifetime)
	endpoint.Setenv(t)
	onlyLoopbackRequests(t)
	noRetry, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
		ClientOptions: azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}},
	})
	if err != nil {
		t.Fatalf("new credential: %v", err)
	}

	endpoint.FailFor(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), identityTestTimeout)
	defer cancel()
	_, err = noRetry.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{storageScope}})
	if err == nil {
		t.Fatal("GetToken succeeded while the endpoint fails")
	}
	if !strings.Contains(err.Error(), "500") {
		t.Errorf("GetToken error %q does not show the endpoint's 500", err)
	}
	if strings.Contains(err.Error(), endpoint.Header()) {
		t.Errorf("GetToken error shows the IDENTITY_HEADER secret: %q", err)
	}
	if got, issued := endpoint.Requests(), len(endpoint.Issued()); got != 1 || issued != 0 {
		t.Errorf("after a failed GetToken without retries: %d requests, %d tokens issued, want 1, 0", got, issued)
	}

	endpoint.FailFor(0)
	token := getToken(t, noRetry, storageScope)
	if issued := endpoint.Issued(); len(issued) != 1 || token.Token != issued[0] {
		t.Errorf("GetToken after FailFor(0) did not return the endpoint's one token (issued %d)", len(issued))
	}

	// azcore retries a 500 after about 0.8 s by default: an outage shorter
	// than that costs one retry, not an error.
	withRetry, err := azidentity.NewManagedIdentityCredential(nil)
	if err != nil {
		t.Fatalf("new credential: %v", err)
	}
	requestsBefore := endpoint.Requests()
	endpoint.FailFor(300 * time.Millisecond)
	token = getToken(t, withRetry, storageScope)
	if issued := endpoint.Issued(); token.Token != issued[len(issued)-1] {
		t.Errorf("GetToken through a short outage did not return the endpoint's newest token")
	}
	if got := endpoint.Requests() - requestsBefore; got < 2 {
		t.Errorf("GetToken through a short outage sent %d requests, want a failed one and a retry", got)
	}
}

// getToken gets a token for scope from cred within identityTestTimeout.
func getToken(t *testing.T, cred azcore.TokenCredential, scope string) azcore.AccessToken {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), identityTestTimeout)
	defer cancel()
	token, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
	if err != nil {
		t.Fatalf("GetToken(%q): %v", scope, err)
	}
	return token
}

// onlyLoopbackRequests fails the test if azcore, which carries every
// request of azidentity, sends one to anything but 127.0.0.1 (IMDS at
// 169.254.169.254, Entra ID, a proxy) while the test runs. azcore's log
// is process-wide: tests that use this must not run in parallel.
func onlyLoopbackRequests(t *testing.T) {
	t.Helper()
	var mu sync.Mutex
	var targets []string
	azlog.SetEvents(azlog.EventRequest)
	azlog.SetListener(func(_ azlog.Event, msg string) {
		// The message's second line is "   METHOD URL".
		lines := strings.SplitN(msg, "\n", 3)
		if len(lines) < 2 {
			return
		}
		if fields := strings.Fields(lines[1]); len(fields) == 2 {
			mu.Lock()
			targets = append(targets, fields[1])
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		azlog.SetListener(nil)
		azlog.SetEvents()
		mu.Lock()
		defer mu.Unlock()
		if len(targets) == 0 {
			t.Errorf("azcore logged no request: the check of where requests go saw nothing")
		}
		for _, target := range targets {
			u, err := url.Parse(target)
			if err != nil || u.Hostname() != "127.0.0.1" {
				t.Errorf("azidentity sent a request to %s, want only 127.0.0.1", target)
			}
		}
	})
}

// identityQuery is the query azidentity sends for resource.
func identityQuery(resource string) url.Values {
	return url.Values{"api-version": {appServiceIdentityAPIVersion}, "resource": {resource}}
}

// identityGet sends a request to the stand-in with header as
// X-IDENTITY-HEADER ("" for none) and reads the whole answer.
func identityGet(t *testing.T, e *IdentityEndpoint, method, target, header string, query url.Values) rawAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), identityTestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, target+"?"+query.Encode(), nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if header != "" {
		req.Header.Set("X-IDENTITY-HEADER", header)
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return rawAnswer{status: resp.StatusCode, header: resp.Header, body: body}
}

// jwtClaims are the claims of a stand-in token the tests look at.
type jwtClaims struct {
	Aud   string `json:"aud"`
	Iss   string `json:"iss"`
	Tid   string `json:"tid"`
	Oid   string `json:"oid"`
	Sub   string `json:"sub"`
	AppID string `json:"appid"`
	Uti   string `json:"uti"`
	Iat   int64  `json:"iat"`
	Nbf   int64  `json:"nbf"`
	Exp   int64  `json:"exp"`
}

// decodeJWT splits token into its three base64url segments and decodes
// the header and the claims, failing the test if it is not a JWT.
func decodeJWT(t *testing.T, token string) (map[string]string, jwtClaims) {
	t.Helper()
	segments := strings.Split(token, ".")
	if len(segments) != 3 {
		t.Fatalf("token has %d segments, want 3: %s", len(segments), token)
	}
	var decoded [3][]byte
	for i, segment := range segments {
		b, err := base64.RawURLEncoding.DecodeString(segment)
		if err != nil || len(b) == 0 {
			t.Fatalf("token segment %d %q is not base64url (%v)", i, segment, err)
		}
		decoded[i] = b
	}
	var header map[string]string
	if err := json.Unmarshal(decoded[0], &header); err != nil {
		t.Fatalf("JWT header %s: %v", decoded[0], err)
	}
	var claims jwtClaims
	if err := json.Unmarshal(decoded[1], &claims); err != nil {
		t.Fatalf("JWT claims %s: %v", decoded[1], err)
	}
	return header, claims
}
