// Package monitor serves what an orchestrator and a metrics scraper ask of
// the server over plain HTTP: /metrics (Prometheus), /healthz (the process
// is alive) and /readyz (registered in the registry, broker connected, not
// stopping), and probes such an endpoint for a container health check.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/micro/go-micro/v2/registry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Paths served.
const (
	PathMetrics = "/metrics"
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
)

// Readiness says whether the server can take work: registered in the
// registry (see Registry), its broker connected, and not stopping.
type Readiness struct {
	// Connected reports whether the broker is connected; nil means it
	// always is (a broker that has no such notion).
	Connected func() bool

	mu         sync.Mutex
	registered bool
	stopping   bool
}

// Registry returns reg with the registrations it makes recorded: the
// server is registered once a Register succeeded, and no longer once
// Deregister is called.
func (r *Readiness) Registry(reg registry.Registry) registry.Registry {
	return &recordingRegistry{Registry: reg, r: r}
}

// Stopping marks the server as stopping: not ready from now on.
func (r *Readiness) Stopping() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopping = true
}

// Ready reports whether the server is ready and, when it is not, why.
func (r *Readiness) Ready() (bool, string) {
	r.mu.Lock()
	registered, stopping := r.registered, r.stopping
	r.mu.Unlock()
	switch {
	case stopping:
		return false, "stopping"
	case !registered:
		return false, "not registered in the registry"
	case r.Connected != nil && !r.Connected():
		return false, "broker not connected"
	}
	return true, ""
}

func (r *Readiness) setRegistered(registered bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.registered = registered
}

// recordingRegistry is a registry.Registry that tells a Readiness how its
// registrations went.
type recordingRegistry struct {
	registry.Registry
	r *Readiness
}

func (g *recordingRegistry) Register(s *registry.Service, opts ...registry.RegisterOption) error {
	if err := g.Registry.Register(s, opts...); err != nil {
		return err
	}
	g.r.setRegistered(true)
	return nil
}

func (g *recordingRegistry) Deregister(s *registry.Service, opts ...registry.DeregisterOption) error {
	g.r.setRegistered(false)
	return g.Registry.Deregister(s, opts...)
}

// Handler returns the mux of the three paths: metrics from gatherer,
// readiness from ready.
func Handler(gatherer prometheus.Gatherer, ready *Readiness) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(PathMetrics, promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc(PathHealthz, func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc(PathReadyz, func(w http.ResponseWriter, _ *http.Request) {
		if ok, why := ready.Ready(); !ok {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// Server is the monitoring HTTP server.
type Server struct {
	srv      *http.Server
	listener net.Listener
	served   chan error
}

// Listen starts serving handler on addr (host:port; port 0 picks one).
// An address that cannot be listened on is an error naming it.
func Listen(addr string, handler http.Handler) (*Server, error) {
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("monitor: listen on %q: %w", addr, err)
	}
	s := &Server{
		srv:      &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second},
		listener: listener,
		served:   make(chan error, 1),
	}
	go func() { s.served <- s.srv.Serve(listener) }()
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Close stops the server within timeout, letting requests under way end.
func (s *Server) Close(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("monitor: stop: %w", err)
	}
	if err := <-s.served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("monitor: serve: %w", err)
	}
	return nil
}

// Probe asks url (such as http://127.0.0.1:9100/readyz) within timeout and
// returns nil if it answered 200, else an error saying what it answered.
func Probe(url string, timeout time.Duration) error {
	client := &http.Client{Timeout: timeout}
	resp, err := client.Get(url)
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe %s: %s", url, resp.Status)
	}
	return nil
}
