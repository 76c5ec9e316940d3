package monitor

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/micro/go-micro/v2/registry"
	"github.com/micro/go-micro/v2/registry/memory"
	"github.com/prometheus/client_golang/prometheus"
)

// failingRegistry refuses every registration.
type failingRegistry struct{ registry.Registry }

func (failingRegistry) Register(*registry.Service, ...registry.RegisterOption) error {
	return errors.New("etcd down")
}

func TestReadinessFollowsRegistrationBrokerAndStop(t *testing.T) {
	svc := &registry.Service{Name: "poc.test", Nodes: []*registry.Node{{Id: "n1", Address: "127.0.0.1:1"}}}
	connected := true
	r := &Readiness{Connected: func() bool { return connected }}
	reg := r.Registry(memory.NewRegistry())
	failing := (&Readiness{}).Registry(failingRegistry{memory.NewRegistry()})

	check := func(step string, wantReady bool, wantWhy string) {
		t.Helper()
		ready, why := r.Ready()
		if ready != wantReady || !strings.Contains(why, wantWhy) {
			t.Errorf("%s: ready %v (%q), want %v (%q)", step, ready, why, wantReady, wantWhy)
		}
	}
	check("before registering", false, "not registered")
	if err := failing.Register(svc); err == nil {
		t.Fatal("the failing registry registered")
	}
	if err := reg.Register(svc); err != nil {
		t.Fatal(err)
	}
	check("registered", true, "")
	connected = false
	check("broker disconnected", false, "broker not connected")
	connected = true
	if err := reg.Deregister(svc); err != nil {
		t.Fatal(err)
	}
	check("deregistered", false, "not registered")
	if err := reg.Register(svc); err != nil {
		t.Fatal(err)
	}
	r.Stopping()
	check("stopping", false, "stopping")
}

func TestEndpointsAnswerProbesAndScrapes(t *testing.T) {
	reg := prometheus.NewRegistry()
	counter := prometheus.NewCounter(prometheus.CounterOpts{Name: "poc_test_total", Help: "A test counter."})
	reg.MustRegister(counter)
	counter.Add(3)
	ready := &Readiness{}
	srv, err := Listen("127.0.0.1:0", Handler(reg, ready))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(time.Second)
	base := "http://" + srv.Addr()

	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := get(PathHealthz); code != http.StatusOK {
		t.Errorf("/healthz: %d, want 200", code)
	}
	if code, body := get(PathReadyz); code != http.StatusServiceUnavailable || !strings.Contains(body, "not registered") {
		t.Errorf("/readyz before registering: %d %q, want 503 saying why", code, body)
	}
	if err := Probe(base+PathReadyz, time.Second); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("Probe of a 503: %v, want an error naming it", err)
	}
	ready.setRegistered(true)
	if err := Probe(base+PathReadyz, time.Second); err != nil {
		t.Errorf("Probe of a ready server: %v", err)
	}
	if code, body := get(PathMetrics); code != http.StatusOK || !strings.Contains(body, "poc_test_total 3") {
		t.Errorf("/metrics: %d, want 200 with the counter:\n%s", code, body)
	}
	if _, err := Listen(srv.Addr(), Handler(reg, ready)); err == nil || !strings.HasPrefix(err.Error(), "monitor: listen on") {
		t.Errorf("Listen on a taken address: %v, want an error naming it", err)
	}
}
