package storage

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-pipeline-go/pipeline"
	"github.com/Azure/azure-storage-queue-go/azqueue"
)

func TestWholeSecondsNeverShortensADuration(t *testing.T) {
	tests := []struct {
		in, want time.Duration
	}{
		{0, 0},
		{-time.Second, -time.Second}, // NeverExpire
		{time.Nanosecond, time.Second},
		{500 * time.Millisecond, time.Second},
		{time.Second, time.Second},
		{1500 * time.Millisecond, 2 * time.Second},
		{7 * 24 * time.Hour, 7 * 24 * time.Hour},
	}
	for _, tt := range tests {
		if got := WholeSeconds(tt.in); got != tt.want {
			t.Errorf("WholeSeconds(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestCallerDeadlineBoundsARequestWithoutCuttingIt(t *testing.T) {
	var requests atomic.Int64
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.URL.Query().Get("prefix") == "hang" {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
			return
		}
		w.Header().Set("Content-Type", "application/xml")
		fmt.Fprint(w, `<?xml version="1.0" encoding="utf-8"?><EnumerationResults><Queues /><NextMarker /></EnumerationResults>`)
	}))
	t.Cleanup(server.Close)
	u, err := url.Parse(server.URL + "/account")
	if err != nil {
		t.Fatal(err)
	}
	svc := NewService(*u, NewPipeline(PipelineConfig{Retry: azqueue.RetryOptions{MaxTries: 1}}))

	tests := []struct {
		name     string
		prefix   string
		deadline time.Duration // from now; 0: none
		wantErr  error
		requests int64
	}{
		{"no deadline", "", 0, nil, 1},
		{"900ms left is enough for a fast answer", "", 900 * time.Millisecond, nil, 1},
		{"a passed deadline sends nothing", "", -time.Second, context.DeadlineExceeded, 0},
		{"a silent server is given up on at the deadline", "hang", 300 * time.Millisecond, context.DeadlineExceeded, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.deadline != 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			before, start := requests.Load(), time.Now()
			_, err := svc.ListQueues(ctx, tt.prefix)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("ListQueues: %v, want %v", err, tt.wantErr)
			}
			if n := requests.Load() - before; n != tt.requests {
				t.Errorf("%d requests reached the server, want %d", n, tt.requests)
			}
			if took := time.Since(start); tt.deadline > 0 && took > tt.deadline+time.Second {
				t.Errorf("took %s with a deadline %s away", took, tt.deadline)
			}
		})
	}
}

func TestRequestPoliciesSeeARequestOncePoliciesEveryTry(t *testing.T) {
	var answers atomic.Int64
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if answers.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // retried by the SDK
			return
		}
		w.Header().Set("Content-Type", "application/xml")
		fmt.Fprint(w, `<?xml version="1.0" encoding="utf-8"?><EnumerationResults><Queues /><NextMarker /></EnumerationResults>`)
	}))
	t.Cleanup(server.Close)
	u, err := url.Parse(server.URL + "/account")
	if err != nil {
		t.Fatal(err)
	}
	var tries, requests atomic.Int64
	svc := NewService(*u, NewPipeline(PipelineConfig{
		Retry:           azqueue.RetryOptions{MaxTries: 3, RetryDelay: time.Millisecond, MaxRetryDelay: time.Millisecond},
		Policies:        []pipeline.Factory{counting(&tries)},
		RequestPolicies: []pipeline.Factory{counting(&requests)},
	}))
	if _, err := svc.ListQueues(context.Background(), ""); err != nil {
		t.Fatalf("ListQueues: %v", err)
	}
	if answers.Load() != 2 || tries.Load() != 2 || requests.Load() != 1 {
		t.Errorf("server answered %d times; Policies saw %d tries and RequestPolicies %d requests, want 2, 2 and 1", answers.Load(), tries.Load(), requests.Load())
	}
}

func counting(n *atomic.Int64) pipeline.Factory {
	return pipeline.FactoryFunc(func(next pipeline.Policy, _ *pipeline.PolicyOptions) pipeline.PolicyFunc {
		return func(ctx context.Context, r pipeline.Request) (pipeline.Response, error) {
			n.Add(1)
			return next.Do(ctx, r)
		}
	})
}

// TestRefusedRequestsKeepTheServiceReasonAndNameTheRole: the service's
// AuthenticationErrorDetail, which the SDK's error parser loses, reaches
// Error.Detail (first line, unescaped), and a missing data role is named
// wherever the error ends up.
func TestRefusedRequestsKeepTheServiceReasonAndNameTheRole(t *testing.T) {
	tests := []struct {
		name, code, body string
		wantDetail       string
		wantText         string
	}{
		{"expired token", "AuthenticationFailed",
			"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Error>\n  <Code>AuthenticationFailed</Code>\n  <Message>Server failed to authenticate the request.\nRequestId:1</Message>\n  <AuthenticationErrorDetail>Lifetime validation failed. The token is expired.</AuthenticationErrorDetail>\n</Error>",
			"Lifetime validation failed. The token is expired.", "403 Forbidden (AuthenticationFailed)"},
		{"multi-line, escaped detail keeps its first line", "AuthenticationFailed",
			"<Error><Code>AuthenticationFailed</Code><AuthenticationErrorDetail>Signature did not match. String to sign used was r&amp;w\nsecond line</AuthenticationErrorDetail></Error>",
			"Signature did not match. String to sign used was r&w", "(AuthenticationFailed)"},
		{"missing data role", "AuthorizationPermissionMismatch",
			"<Error><Code>AuthorizationPermissionMismatch</Code><Message>This request is not authorized to perform this operation using this permission.</Message></Error>",
			"", "(AuthorizationPermissionMismatch: the identity needs the Storage Queue Data Contributor role)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("x-ms-error-code", tt.code)
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusForbidden)
				fmt.Fprint(w, tt.body)
			}))
			t.Cleanup(server.Close)
			u, err := url.Parse(server.URL + "/account")
			if err != nil {
				t.Fatal(err)
			}
			svc := NewService(*u, NewPipeline(PipelineConfig{Retry: azqueue.RetryOptions{MaxTries: 1}}))
			_, err = svc.ListQueues(context.Background(), "")
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("ListQueues: %v, want an *Error", err)
			}
			if e.Detail != tt.wantDetail {
				t.Errorf("Detail = %q, want %q", e.Detail, tt.wantDetail)
			}
			if !IsAuth(err) || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q, want an auth error saying %q", err, tt.wantText)
			}
		})
	}
}

func TestRequestOpNamesEveryOperationWhateverTheAccountPath(t *testing.T) {
	tests := []struct {
		method, path, query, want string
	}{
		{http.MethodGet, "", "comp=list&maxresults=1", OpListQueues},
		{http.MethodPut, "/q", "", OpCreateQueue},
		{http.MethodDelete, "/q", "", OpDeleteQueue},
		{http.MethodGet, "/q", "comp=metadata", OpGetProperties},
		{http.MethodPut, "/q", "comp=metadata", OpSetMetadata},
		{http.MethodPost, "/q/messages", "messagettl=60", OpEnqueue},
		{http.MethodGet, "/q/messages", "numofmessages=32", OpDequeue},
		{http.MethodGet, "/q/messages", "peekonly=true", OpPeek},
		{http.MethodDelete, "/q/messages", "", OpClear},
		{http.MethodPut, "/q/messages/id-1", "popreceipt=r&visibilitytimeout=30", OpUpdate},
		{http.MethodDelete, "/q/messages/id-1", "popreceipt=r", OpDelete},
	}
	for _, base := range []string{"https://acct.queue.core.windows.net", "http://127.0.0.1:10001/devstoreaccount1"} {
		for _, tt := range tests {
			u, err := url.Parse(base + tt.path + "?" + tt.query)
			if err != nil {
				t.Fatal(err)
			}
			if got := requestOp(tt.method, u); got != tt.want {
				t.Errorf("%s %s = %q, want %q", tt.method, u, got, tt.want)
			}
		}
	}
}
