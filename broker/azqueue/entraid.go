package azqueue

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-storage-queue-go/azqueue"
	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage"
)

// StorageScope is the Microsoft Entra ID scope of Azure Storage, for which
// the broker asks its token credential for tokens.
const StorageScope = "https://storage.azure.com/.default"

// DataRole is the Azure role an Entra ID identity needs on the storage
// account (or on the queues' scope) to publish and to subscribe: both list,
// create and set the metadata of queues, which the narrower queue roles
// (Message Sender, Message Processor, Reader) do not all allow.
const DataRole = storage.DataRole

// Renewal timing. A token is renewed halfway through its life, but no
// earlier than renewMargin before it expires, so that an hour-long token
// is renewed five minutes ahead and a short one with half its life left.
// A failed renewal is retried after a pause doubling from renewRetryMin
// to renewRetryMax, until it succeeds or the broker disconnects.
const (
	renewMargin   = 5 * time.Minute
	renewRetryMin = time.Second
	renewRetryMax = 30 * time.Second
)

// identityRetries are the retries azidentity makes of one token request,
// fewer than azcore's default (three, with pauses from 0.8s doubling): the
// renewer retries failed renewals itself, and Connect, bounded by
// ConnectTimeout, should report a failing identity endpoint's answer
// rather than run out of time retrying it.
var identityRetries = policy.RetryOptions{MaxRetries: 1, RetryDelay: 500 * time.Millisecond, MaxRetryDelay: 2 * time.Second}

// tokenRenewer keeps the bearer token of a connection current. Connect
// fetches the first token itself, so that a missing credential or a
// failing identity endpoint fails Connect; afterwards the SDK's token
// credential calls renew from a timer goroutine, one call at a time, and
// waits the duration renew returns before calling it again.
type tokenRenewer struct {
	source  azcore.TokenCredential
	timeout time.Duration      // bounds one GetToken
	ctx     context.Context    // ends the renewals when done
	stop    context.CancelFunc // cancels ctx
	now     func() time.Time

	// firstWait is what renew returns on its first call, which the SDK
	// makes at once with the token Connect fetched.
	firstWait time.Duration
	started   bool
	failures  int
	retry     *backoff
	log       throttledLog
}

// newTokenRenewer returns a renewer of tokens from source, each fetch
// bounded by timeout.
func newTokenRenewer(source azcore.TokenCredential, timeout time.Duration) *tokenRenewer {
	r := &tokenRenewer{
		source:  source,
		timeout: timeout,
		now:     time.Now,
		retry:   newBackoff(renewRetryMin, renewRetryMax),
		log:     throttledLog{interval: time.Minute},
	}
	r.ctx, r.stop = context.WithCancel(context.Background())
	return r
}

// start fetches the first token within ctx and returns the SDK credential
// that carries it and renews it until r.stop is called.
func (r *tokenRenewer) start(ctx context.Context) (azqueue.TokenCredential, error) {
	first, err := r.fetch(ctx)
	if err != nil {
		return nil, err
	}
	r.firstWait = renewAfter(first, r.now())
	return azqueue.NewTokenCredential(first.Token, r.renew), nil
}

// fetch asks the source for a token of the storage scope.
func (r *tokenRenewer) fetch(ctx context.Context) (azcore.AccessToken, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	token, err := r.source.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{StorageScope}})
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// azidentity's chains rewrap the context's error as text, which
		// hides it from errors.Is.
		err = fmt.Errorf("%w: %s", context.DeadlineExceeded, lastAttempt(err))
	}
	return token, err
}

// renew is the SDK's TokenRefresher: it sets a fresh token and returns when
// to renew it next, or 0, which ends the renewals, once stopped.
func (r *tokenRenewer) renew(c azqueue.TokenCredential) time.Duration {
	if r.ctx.Err() != nil {
		return 0
	}
	if !r.started {
		r.started = true
		return r.firstWait
	}
	token, err := r.fetch(r.ctx)
	if err != nil {
		if r.ctx.Err() != nil {
			return 0
		}
		r.failures++
		wait := r.retry.pause()
		// The current token stays in use: it may well outlive the outage.
		r.log.errorf("azqueue: renew the Entra ID token (attempt %d): %s; retrying in %s", r.failures, describeIdentityFailure(err), wait.Round(time.Second))
		return wait
	}
	c.SetToken(token.Token)
	if r.failures > 0 {
		r.log.recovered("azqueue: Entra ID token renewed after %d failed attempts", r.failures)
	}
	r.failures = 0
	r.retry.reset()
	return renewAfter(token, r.now())
}

// renewAfter returns how long to use token before renewing it: until
// halfway through its remaining life or renewMargin before it expires,
// whichever is later, and no later than the RefreshOn the credential
// suggests. It is at least renewRetryMin, so that a token that is already
// expired does not make the renewals spin.
func renewAfter(token azcore.AccessToken, now time.Time) time.Duration {
	left := token.ExpiresOn.Sub(now)
	wait := left - min(left/2, renewMargin)
	if !token.RefreshOn.IsZero() {
		wait = min(wait, token.RefreshOn.Sub(now))
	}
	return max(wait, renewRetryMin)
}

// identityError is a failure to get a token: Error is one line, for logs
// and for Connect's message, and Unwrap gives azidentity's full error.
type identityError struct {
	line string
	err  error
}

func (e *identityError) Error() string { return e.line }
func (e *identityError) Unwrap() error { return e.err }

// describeTokenFetchError says why Connect could not get its first token.
func describeTokenFetchError(endpoint string, err error) error {
	return &identityError{line: fmt.Sprintf("azqueue: connect to %s: get an Entra ID token: %s", endpoint, describeIdentityFailure(err)), err: err}
}

// describeIdentityFailure names the cause of a failed GetToken in one line:
// no credential configured, an identity endpoint that answered with an
// error or not at all, or one that did not answer in time.
func describeIdentityFailure(err error) string {
	var refused *azidentity.AuthenticationFailedError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "the identity endpoint did not answer in time (" + oneLine(err) + ")"
	case errors.As(err, &refused):
		status := "no response"
		if refused.RawResponse != nil {
			status = fmt.Sprintf("HTTP %d", refused.RawResponse.StatusCode)
		}
		return fmt.Sprintf("the identity endpoint failed (%s): %s", status, lastAttempt(err))
	default:
		return "no Entra ID credential found (" + oneLine(err) + "); configure one (environment credentials " +
			"AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, workload identity, managed identity or " +
			"`az login`), or give " + EnvKey + ", " + EnvSASToken + " or " + EnvConnectionString
	}
}

// maxIdentityDetail bounds how much of azidentity's error text a message
// keeps.
const maxIdentityDetail = 400

var (
	// jwtLike matches a JSON Web Token, the form every Entra ID access
	// token and federated token has.
	jwtLike = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)
	// dumpNoise matches what azidentity's error text has for a reader of
	// a terminal: rules between the request and the response, and the
	// troubleshooting link.
	dumpNoise = regexp.MustCompile(`-{5,}|To troubleshoot, visit \S+`)
	// urlQuery matches the query of a URL azidentity's text quotes: noise
	// for a reader, and its %-escapes are mangled by go-micro's client,
	// which uses a Connect error's text as a format string.
	urlQuery = regexp.MustCompile(`(https?://[^\s"?]+)\?[^\s"]*`)
	// attempt matches where the account of one credential of a chain
	// begins, as in "ManagedIdentityCredential: ..." or
	// "ManagedIdentityCredential authentication failed".
	attempt = regexp.MustCompile(`[A-Za-z]+Credential[: ]`)
)

// oneLine flattens azidentity's multi-line error text into one bounded
// line without its terminal rules, links and URL queries, and with
// anything shaped like a token blanked out: the text quotes the identity endpoint's answer,
// which is not ours to trust.
func oneLine(err error) string { return bounded(flatten(err)) }

// lastAttempt is oneLine for the error of a chain of credentials, such as
// DefaultAzureCredential's, which lists every credential it tried: it
// keeps the account of the last one, the one that failed.
func lastAttempt(err error) string {
	line := flatten(err)
	if found := attempt.FindAllStringIndex(line, -1); len(found) > 0 {
		line = line[found[len(found)-1][0]:]
	}
	return bounded(line)
}

func flatten(err error) string {
	s := jwtLike.ReplaceAllString(err.Error(), "<token>")
	s = urlQuery.ReplaceAllString(s, "$1")
	return strings.Join(strings.Fields(dumpNoise.ReplaceAllString(s, " ")), " ")
}

func bounded(s string) string {
	if len(s) > maxIdentityDetail {
		s = strings.ToValidUTF8(s[:maxIdentityDetail], "") + "…"
	}
	return s
}

// Service error codes of a request whose bearer token was refused.
const (
	codeAuthenticationFailed      = "AuthenticationFailed"
	codeInvalidAuthenticationInfo = "InvalidAuthenticationInfo"
)

// describeTokenRefusal says why the queue service refused a request that
// carried an Entra ID token: the token itself (audience, issuer, lifetime),
// or the identity's missing data role.
func describeTokenRefusal(endpoint string, err error) error {
	var e *storage.Error
	errors.As(err, &e)
	switch {
	case e.Code == storage.CodeAuthorizationPermissionMismatch:
		return fmt.Errorf("azqueue: connect to %s: the Entra ID identity has no data role here: assign it %q on the storage account "+
			"(publishing lists, creates and writes to queues; subscribing also claims queues and receives, renews and deletes messages): %w",
			endpoint, DataRole, err)
	case e.Code == codeAuthenticationFailed || e.Code == codeInvalidAuthenticationInfo:
		detail := ""
		if e.Detail != "" {
			detail = " (" + e.Detail + ")"
		}
		return fmt.Errorf("azqueue: connect to %s: the service refused the Entra ID token%s: it must be issued for %s by the account's tenant and be valid now: %w",
			endpoint, detail, strings.TrimSuffix(StorageScope, "/.default"), err)
	default:
		return fmt.Errorf("azqueue: connect to %s: the service refused the Entra ID request (a firewall, or an account that disallows this access?): %w", endpoint, err)
	}
}
