package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// zipkinSpan is what the test reads of a span in Zipkin's JSON v2 format.
type zipkinSpan struct {
	TraceID       string            `json:"traceId"`
	ID            string            `json:"id"`
	ParentID      string            `json:"parentId"`
	Name          string            `json:"name"`
	Kind          string            `json:"kind"`
	Tags          map[string]string `json:"tags"`
	LocalEndpoint struct {
		ServiceName string `json:"serviceName"`
	} `json:"localEndpoint"`
	Annotations []struct {
		Value string `json:"value"`
	} `json:"annotations"`
}

// zipkinReceiver is a local Zipkin collector: it keeps every span posted to
// /api/v2/spans.
type zipkinReceiver struct {
	url   string
	mu    sync.Mutex
	spans []zipkinSpan
}

func startZipkinReceiver(t *testing.T) *zipkinReceiver {
	r := &zipkinReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/api/v2/spans" {
			http.Error(w, "not a span upload", http.StatusNotFound)
			return
		}
		var spans []zipkinSpan
		if err := json.NewDecoder(req.Body).Decode(&spans); err != nil {
			t.Errorf("zipkin receiver: undecodable upload: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.spans = append(r.spans, spans...)
		r.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/api/v2/spans"
	return r
}

// find returns the spans of service called name (Zipkin lower-cases span
// names).
func (r *zipkinReceiver) find(service, name string) []zipkinSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []zipkinSpan
	for _, s := range r.spans {
		if s.LocalEndpoint.ServiceName == service && strings.EqualFold(s.Name, name) {
			out = append(out, s)
		}
	}
	return out
}

// waitFor waits until service has exported n spans called name.
func (r *zipkinReceiver) waitFor(t *testing.T, service, name string, n int) []zipkinSpan {
	t.Helper()
	deadline := time.Now().Add(eventTimeout)
	for len(r.find(service, name)) < n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := r.find(service, name); len(got) < n {
		t.Fatalf("%d %q spans from %s within %s, want %d; received: %s", len(got), name, service, eventTimeout, n, r.summary())
	}
	return r.find(service, name)
}

// annotated reports whether the span has an event called name (Zipkin's
// annotation is the name, then the event's attributes).
// summary lists the spans received as "service/name" pairs.
func (r *zipkinReceiver) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, len(r.spans))
	for i, s := range r.spans {
		names[i] = s.LocalEndpoint.ServiceName + "/" + s.Name
	}
	return strings.Join(names, ", ")
}

func (s zipkinSpan) annotated(name string) bool {
	return slices.ContainsFunc(s.Annotations, func(a struct {
		Value string `json:"value"`
	}) bool {
		return a.Value == name || strings.HasPrefix(a.Value, name+": ")
	})
}

// TestTracesFollowEventsAndCallsAcrossProcesses runs the real server,
// client-azqueue-pub and client-pingpong with one shared OTEL_*
// environment pointing at a local Zipkin receiver. The server's processing
// span of an event is in the publisher's trace, the child of the
// publisher's publish span; a failing event's spans show the retry and the
// poisoning; and an RPC's server span is the child of the client's span,
// through gRPC metadata.
func TestTracesFollowEventsAndCallsAcrossProcesses(t *testing.T) {
	receiver := startZipkinReceiver(t)
	s := newStack(t)
	s.environment = append(s.environment,
		"OTEL_TRACES_EXPORTER=zipkin",
		"OTEL_EXPORTER_ZIPKIN_ENDPOINT="+receiver.url,
		"OTEL_BSP_SCHEDULE_DELAY=100",
		"AZQUEUE_MAX_DEQUEUE_COUNT=2", "AZQUEUE_RETRY_MIN=100ms", "AZQUEUE_RETRY_MAX=200ms",
	)
	server := s.startServer("--fail_events_matching=poison")
	const publisher, topic = "poc.client-azqueue-pub", "example.events"

	if p, code := s.run("client-azqueue-pub", "--count=1", "--say=traced"); code != 0 {
		t.Fatalf("publisher exited %d:\n%s", code, p.Output())
	}
	waitReceived(t, server, "traced", 1)
	publish := receiver.waitFor(t, publisher, topic+" publish", 1)[0]
	process := receiver.waitFor(t, s.service, topic+" process", 1)[0]
	if process.TraceID != publish.TraceID || process.ParentID != publish.ID {
		t.Errorf("process span: trace %s parent %s; want the publish span's trace %s and the publish span %s as parent", process.TraceID, process.ParentID, publish.TraceID, publish.ID)
	}
	if publish.Kind != "PRODUCER" || process.Kind != "CONSUMER" {
		t.Errorf("kinds: publish %s, process %s; want PRODUCER and CONSUMER", publish.Kind, process.Kind)
	}
	for key, want := range map[string]string{
		"messaging.system": "azure_storage_queue", "messaging.destination.name": topic,
		"messaging.operation.type": "process", "messaging.azure_storage_queue.message.dequeue_count": "1",
	} {
		if got := process.Tags[key]; got != want {
			t.Errorf("process span tag %s = %q, want %q (tags %v)", key, got, want, process.Tags)
		}
	}
	if process.Tags["messaging.message.id"] == "" || publish.Tags["messaging.operation.type"] != "send" {
		t.Errorf("tags: process %v, publish %v; want a message id and a send operation", process.Tags, publish.Tags)
	}

	// A failing event: two deliveries retried, then poisoned.
	before := len(receiver.find(s.service, topic+" process"))
	if p, code := s.run("client-azqueue-pub", "--count=1", "--say=poison"); code != 0 {
		t.Fatalf("publisher exited %d:\n%s", code, p.Output())
	}
	server.WaitForOutput(t, "moved message", eventTimeout)
	spans := receiver.waitFor(t, s.service, topic+" process", before+3)[before:]
	var retried, poisoned int
	for _, span := range spans {
		if span.annotated("retry scheduled") && span.Tags["otel.status_code"] == "ERROR" {
			retried++
		}
		if span.annotated("moved to the poison queue") && span.Tags["otel.status_code"] == "ERROR" {
			poisoned++
		}
	}
	if retried != 2 || poisoned != 1 {
		t.Errorf("the failing event's process spans show %d retries and %d poisonings with an error status, want 2 and 1: %+v", retried, poisoned, spans)
	}

	// An RPC: the server's span is the client's child.
	if p, code := s.run("client-pingpong", "--service="+s.service, "--rounds=0"); code != 0 {
		t.Fatalf("client-pingpong exited %d:\n%s", code, p.Output())
	}
	call := receiver.waitFor(t, "poc.client-pingpong", "Example.Call", 1)[0]
	handled := receiver.waitFor(t, s.service, "Example.Call", 1)[0]
	if handled.TraceID != call.TraceID || handled.ParentID != call.ID || call.Kind != "CLIENT" || handled.Kind != "SERVER" {
		t.Errorf("RPC spans: client %+v, server %+v; want the server span a SERVER child of the CLIENT span", call, handled)
	}
	stopServer(t, server, 1)
}
