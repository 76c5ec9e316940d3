package clientcmd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/micro/go-micro/v2/broker"
	"github.com/micro/go-micro/v2/registry"
)

// fastBackoff makes the waits of a test pause for milliseconds.
func fastBackoff(t *testing.T) {
	t.Helper()
	saved := defaultBackoff
	defaultBackoff = backoff{first: time.Millisecond, max: 4 * time.Millisecond}
	t.Cleanup(func() { defaultBackoff = saved })
}

// lines collects what a wait prints.
type lines []string

func (l *lines) logf(format string, args ...interface{}) {
	*l = append(*l, fmt.Sprintf(format, args...))
}

// scriptedRegistry answers GetService with its script, one entry per
// look-up, repeating the last entry once the script is used up.
type scriptedRegistry struct {
	registry.Registry // only GetService and String are called
	script            []lookUpResult
	lookUps           int
}

type lookUpResult struct {
	services []*registry.Service
	err      error
}

func (r *scriptedRegistry) GetService(string, ...registry.GetOption) ([]*registry.Service, error) {
	res := r.script[min(r.lookUps, len(r.script)-1)]
	r.lookUps++
	return res.services, res.err
}

func (r *scriptedRegistry) String() string { return "scripted" }

var (
	found       = lookUpResult{services: []*registry.Service{{Name: "poc.test", Nodes: []*registry.Node{{Id: "n1", Address: "127.0.0.1:1"}}}}}
	notFound    = lookUpResult{err: registry.ErrNotFound}
	noNodes     = lookUpResult{services: []*registry.Service{{Name: "poc.test"}}}
	errEtcdDown = errors.New("context deadline exceeded")
	etcdDown    = lookUpResult{err: errEtcdDown}
)

func TestBackoffPauseDoublesUpToTheMaximumWithJitter(t *testing.T) {
	b := backoff{first: 100 * time.Millisecond, max: 2 * time.Second}
	for attempt, want := range []time.Duration{100, 200, 400, 800, 1600, 2000, 2000, 2000} {
		want *= time.Millisecond
		for range 50 {
			got := b.pause(attempt)
			if got < want*4/5 || got > want*6/5 {
				t.Fatalf("pause(%d) = %s, want %s ±20%%", attempt, got, want)
			}
		}
	}
}

func TestWaitForService(t *testing.T) {
	tests := []struct {
		name        string
		wait        time.Duration
		script      []lookUpResult
		wantLookUps int      // exact; 0 with wantErr means "more than one"
		wantErr     string   // empty: success
		wantLines   []string // substrings, in order, of what it prints
	}{
		{name: "no wait, no look-up", wait: 0, script: []lookUpResult{notFound}, wantLookUps: 0},
		{name: "registered already", wait: time.Minute, script: []lookUpResult{found}, wantLookUps: 1},
		{
			name: "registers on the third look-up", wait: time.Minute,
			script:      []lookUpResult{notFound, notFound, found},
			wantLookUps: 3,
			wantLines:   []string{`waiting up to 1m0s (--wait) for service "poc.test" to register: service not found`, `service "poc.test" registered after `},
		},
		{
			name: "registry still starting, then the service registers", wait: time.Minute,
			script:      []lookUpResult{etcdDown, etcdDown, notFound, found},
			wantLookUps: 4,
			wantLines: []string{
				`waiting up to 1m0s (--wait) for service "poc.test" to register: context deadline exceeded`,
				`still waiting for service "poc.test" to register: service not found`,
				`service "poc.test" registered after `,
			},
		},
		{name: "a service without nodes is not registered", wait: time.Minute, script: []lookUpResult{noNodes, found}, wantLookUps: 2},
		{
			name: "never registers", wait: 30 * time.Millisecond, script: []lookUpResult{notFound},
			wantErr: `service "poc.test" is still not registered after waiting 30ms (is the server running and using the same registry?)`,
		},
		{
			name: "registry unreachable", wait: 30 * time.Millisecond, script: []lookUpResult{etcdDown},
			wantErr: `cannot look up service "poc.test" in the registry after waiting 30ms: context deadline exceeded (is the registry reachable? see --registry and --registry_address)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fastBackoff(t)
			reg := &scriptedRegistry{script: tt.script}
			var printed lines
			s := Settings{Service: "poc.test", Wait: tt.wait}
			err := s.WaitForService(context.Background(), reg, printed.logf)

			if tt.wantErr == "" && err != nil {
				t.Fatalf("WaitForService: %v", err)
			}
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("WaitForService error\n got %v\nwant %s", err, tt.wantErr)
				}
				if reg.lookUps < 2 {
					t.Errorf("gave up after %d look-ups, want retries until --wait passed", reg.lookUps)
				}
			} else if reg.lookUps != tt.wantLookUps {
				t.Errorf("%d look-ups, want %d", reg.lookUps, tt.wantLookUps)
			}
			if tt.wantLines != nil {
				if len(printed) != len(tt.wantLines) {
					t.Fatalf("printed %d lines, want %d:\n%s", len(printed), len(tt.wantLines), strings.Join(printed, "\n"))
				}
				for i, want := range tt.wantLines {
					if !strings.Contains(printed[i], want) {
						t.Errorf("line %d = %q, want it to contain %q", i, printed[i], want)
					}
				}
			}
		})
	}
}

func TestWaitForServiceKeepsTheRegistryError(t *testing.T) {
	fastBackoff(t)
	s := Settings{Service: "poc.test", Wait: 10 * time.Millisecond}
	err := s.WaitForService(context.Background(), &scriptedRegistry{script: []lookUpResult{etcdDown}}, nil)
	if !errors.Is(err, errEtcdDown) {
		t.Errorf("error %v does not wrap the registry's %v", err, errEtcdDown)
	}
}

func TestWaitForServiceStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	reg := &scriptedRegistry{script: []lookUpResult{notFound}}
	s := Settings{Service: "poc.test", Wait: time.Hour}
	var printed lines
	// Cancel once the first look-up failed: the wait is in its pause then.
	err := s.WaitForService(ctx, reg, func(format string, args ...interface{}) {
		printed.logf(format, args...)
		cancel()
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitForService after cancel: %v, want context.Canceled", err)
	}
	if reg.lookUps != 1 {
		t.Errorf("%d look-ups after cancel, want 1", reg.lookUps)
	}
}

// flakyBroker fails the first b.failures calls of Connect.
type flakyBroker struct {
	broker.Broker // only Connect and String are called
	failures      int
	connects      int
}

var errQueueServiceDown = errors.New("azqueue: connect to http://azurite:10001/devstoreaccount1: endpoint unreachable")

func (b *flakyBroker) Connect() error {
	b.connects++
	if b.connects <= b.failures {
		return errQueueServiceDown
	}
	return nil
}

func (b *flakyBroker) String() string { return "flaky" }

func TestWaitForBroker(t *testing.T) {
	tests := []struct {
		name         string
		wait         time.Duration
		failures     int
		wantConnects int // exact; 0 with wantErr means "more than one"
		wantErr      bool
		wantLines    int
	}{
		{name: "no wait: connecting is left to the first publish", wait: 0, failures: 5, wantConnects: 0},
		{name: "connects at once", wait: time.Minute, failures: 0, wantConnects: 1},
		{name: "connects on the third try", wait: time.Minute, failures: 2, wantConnects: 3, wantLines: 2},
		{name: "never connects", wait: 30 * time.Millisecond, failures: 1 << 30, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fastBackoff(t)
			b := &flakyBroker{failures: tt.failures}
			var printed lines
			s := Settings{Wait: tt.wait}
			err := s.WaitForBroker(context.Background(), b, printed.logf)
			switch {
			case tt.wantErr:
				if !errors.Is(err, errQueueServiceDown) || !strings.Contains(err.Error(), "connect broker flaky (waited 30ms)") {
					t.Fatalf("WaitForBroker error %v, want the last connect error, with how long it waited", err)
				}
				if b.connects < 2 {
					t.Errorf("gave up after %d connects, want retries until --wait passed", b.connects)
				}
			case err != nil:
				t.Fatalf("WaitForBroker: %v", err)
			case b.connects != tt.wantConnects:
				t.Errorf("%d connects, want %d", b.connects, tt.wantConnects)
			}
			if !tt.wantErr && len(printed) != tt.wantLines {
				t.Errorf("printed %d lines, want %d:\n%s", len(printed), tt.wantLines, strings.Join(printed, "\n"))
			}
		})
	}
}
