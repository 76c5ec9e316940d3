package storage

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
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
