package azqueue

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// scriptedCredential answers GetToken with its script, one step per call,
// repeating the last step once the script is used up.
type scriptedCredential struct {
	mu     sync.Mutex
	script []scriptedToken
	calls  int
	scopes [][]string
}

type scriptedToken struct {
	token azcore.AccessToken
	err   error
}

func (c *scriptedCredential) GetToken(_ context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	step := c.script[min(c.calls, len(c.script)-1)]
	c.calls++
	c.scopes = append(c.scopes, opts.Scopes)
	return step.token, step.err
}

func (c *scriptedCredential) callCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

func TestRenewAfterRenewsAheadOfExpiry(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name  string
		token azcore.AccessToken
		want  time.Duration
	}{
		{"an hour-long token is renewed five minutes before it expires", azcore.AccessToken{ExpiresOn: now.Add(time.Hour)}, 55 * time.Minute},
		{"a short token is renewed halfway through its life", azcore.AccessToken{ExpiresOn: now.Add(20 * time.Second)}, 10 * time.Second},
		{"an earlier RefreshOn wins", azcore.AccessToken{ExpiresOn: now.Add(24 * time.Hour), RefreshOn: now.Add(12 * time.Hour)}, 12 * time.Hour},
		{"a later RefreshOn does not delay the renewal", azcore.AccessToken{ExpiresOn: now.Add(time.Hour), RefreshOn: now.Add(59 * time.Minute)}, 55 * time.Minute},
		{"an expired token is renewed after a pause, not in a spin", azcore.AccessToken{ExpiresOn: now.Add(-time.Minute)}, renewRetryMin},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := renewAfter(c.token, now); got != c.want {
				t.Errorf("renewAfter = %s, want %s", got, c.want)
			}
		})
	}
}

// TestTokenRenewerKeepsItsTokenThroughFailedRenewals drives the renewals by
// hand (the first token lives two hours, so the SDK's own timer stays
// idle): a failing source leaves the current token in use and retries
// after growing pauses; its recovery puts the new token in place.
func TestTokenRenewerKeepsItsTokenThroughFailedRenewals(t *testing.T) {
	long := time.Now().Add(2 * time.Hour)
	outage := errors.New("identity endpoint down")
	source := &scriptedCredential{script: []scriptedToken{
		{token: azcore.AccessToken{Token: "first", ExpiresOn: long}},
		{err: outage}, {err: outage}, {err: outage},
		{token: azcore.AccessToken{Token: "second", ExpiresOn: time.Now().Add(time.Hour)}},
	}}
	r := newTokenRenewer(source, time.Second)
	defer r.stop()
	cred, err := r.start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if cred.Token() != "first" || source.callCount() != 1 {
		t.Fatalf("after start: token %q after %d fetches, want \"first\" after 1 (the SDK's first call must not fetch again)", cred.Token(), source.callCount())
	}
	var pauses []time.Duration
	for range 3 {
		pauses = append(pauses, r.renew(cred))
		if cred.Token() != "first" {
			t.Fatalf("a failed renewal replaced the token with %q", cred.Token())
		}
	}
	for i, p := range pauses {
		if p < renewRetryMin || p > renewRetryMax {
			t.Errorf("pause %d after a failure = %s, want within [%s, %s]", i+1, p, renewRetryMin, renewRetryMax)
		}
	}
	if pauses[2] <= pauses[0]/2 {
		t.Errorf("pauses %v do not grow", pauses)
	}
	next := r.renew(cred)
	if cred.Token() != "second" {
		t.Fatalf("after the source recovered the token is %q, want \"second\"", cred.Token())
	}
	if next < 50*time.Minute || next > 55*time.Minute {
		t.Errorf("after recovery the next renewal is in %s, want 55m for an hour-long token", next)
	}
	for i, scopes := range source.scopes {
		if len(scopes) != 1 || scopes[0] != StorageScope {
			t.Errorf("fetch %d asked for scopes %v, want [%s]", i+1, scopes, StorageScope)
		}
	}
}

func TestTokenRenewerStopsRenewingOnceStopped(t *testing.T) {
	source := &scriptedCredential{script: []scriptedToken{{token: azcore.AccessToken{Token: "t", ExpiresOn: time.Now().Add(2 * time.Hour)}}}}
	r := newTokenRenewer(source, time.Second)
	cred, err := r.start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r.stop()
	if wait := r.renew(cred); wait != 0 {
		t.Errorf("renew after stop asked to be called again in %s; want 0, which ends the SDK's renewals", wait)
	}
	if n := source.callCount(); n != 1 {
		t.Errorf("renew after stop fetched a token: %d fetches, want 1", n)
	}
}

func TestOneLineFlattensBoundsAndHidesTokens(t *testing.T) {
	jwt := "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL3N0b3JhZ2UuYXp1cmUuY29tIn0.c2lnbmF0dXJl"
	got := oneLine(errors.New("ManagedIdentityCredential authentication failed\nRESPONSE 500\n  body: " + jwt + "\n" + strings.Repeat("x", 1000)))
	if strings.Contains(got, "\n") {
		t.Errorf("not one line: %q", got)
	}
	if strings.Contains(got, "eyJ") || !strings.Contains(got, "<token>") {
		t.Errorf("the token is not blanked out: %q", got)
	}
	if !strings.HasPrefix(got, "ManagedIdentityCredential authentication failed RESPONSE 500") {
		t.Errorf("the cause is lost: %q", got)
	}
	withQuery := oneLine(errors.New(`Get "http://127.0.0.1:1/msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fstorage.azure.com": refused`))
	if want := `Get "http://127.0.0.1:1/msi/token": refused`; withQuery != want {
		t.Errorf("oneLine kept a URL query (go-micro's client would mangle its %%-escapes): got %q, want %q", withQuery, want)
	}
	if len(got) > maxIdentityDetail+len("…") {
		t.Errorf("%d bytes, want at most %d", len(got), maxIdentityDetail+len("…"))
	}
}
