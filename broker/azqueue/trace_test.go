package azqueue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/micro/go-micro/v2/broker"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage/storagetest"
)

// installTracerProvider makes a TracerProvider of opts the global one (the
// broker's) for the rest of tb, then puts a no-op one back.
func installTracerProvider(tb testing.TB, opts ...sdktrace.TracerProviderOption) {
	provider := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(provider)
	tb.Cleanup(func() {
		otel.SetTracerProvider(noop.NewTracerProvider())
		_ = provider.Shutdown(context.Background())
	})
}

// recordSpans installs a TracerProvider that records every span, for the
// rest of the test.
func recordSpans(t *testing.T) *tracetest.SpanRecorder {
	recorder := tracetest.NewSpanRecorder()
	installTracerProvider(t, sdktrace.WithSpanProcessor(recorder))
	return recorder
}

// spansNamed returns the ended spans called name.
func spansNamed(r *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range r.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func hasEvent(s sdktrace.ReadOnlySpan, name string) bool {
	for _, e := range s.Events() {
		if e.Name == name {
			return true
		}
	}
	return false
}

// TestTraceContextTravelsThroughTheQueue: a publish under a span is a
// producer span of the same trace, its trace context travels in the
// envelope, each delivery is a consumer span that is the publish span's
// child, the handler's message carries the process span's context, and a
// retried then poisoned message shows both on its spans.
func TestTraceContextTravelsThroughTheQueue(t *testing.T) {
	recorder := recordSpans(t)
	b := NewBroker(brokerValue(storageServiceKey, storagetest.NewService())).(*Broker)
	if err := b.Connect(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Disconnect() })
	topic := newTopic()

	var mu sync.Mutex
	handlerContexts := map[string][]trace.SpanContext{}
	_, err := b.Subscribe(topic, func(e broker.Event) error {
		m := e.Message()
		sc := traceContext.Extract(context.Background(), headerCarrier(m.Header))
		mu.Lock()
		handlerContexts[string(m.Body)] = append(handlerContexts[string(m.Body)], trace.SpanContextFromContext(sc))
		mu.Unlock()
		if string(m.Body) == "fails" {
			return errors.New("database down")
		}
		return nil
	}, fastPolls, MaxDequeueCount(2), RetryDelay(time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}

	root, rootSpan := otel.Tracer("test").Start(context.Background(), "client")
	for _, body := range []string{"works", "fails"} {
		if err := b.Publish(topic, &broker.Message{Header: map[string]string{}, Body: []byte(body)}, broker.PublishContext(root)); err != nil {
			t.Fatal(err)
		}
	}
	rootSpan.End()
	eventually(t, waitLong, func() string { return fmt.Sprintf("%d process spans", len(spansNamed(recorder, topic+" process"))) },
		func() bool { return len(spansNamed(recorder, topic+" process")) == 4 }) // works once, fails twice, then poisoned

	publishes := spansNamed(recorder, topic+" publish")
	if len(publishes) != 2 {
		t.Fatalf("%d publish spans, want 2", len(publishes))
	}
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, p := range publishes {
		if p.SpanKind() != trace.SpanKindProducer || p.Parent().SpanID() != rootSpan.SpanContext().SpanID() || p.SpanContext().TraceID() != rootSpan.SpanContext().TraceID() {
			t.Errorf("publish span %s: kind %s, parent %s; want a producer child of the caller's span", p.Name(), p.SpanKind(), p.Parent().SpanID())
		}
		byID[p.SpanContext().SpanID()] = p
	}
	var retried, poisoned int
	for _, s := range spansNamed(recorder, topic+" process") {
		if s.SpanKind() != trace.SpanKindConsumer || s.SpanContext().TraceID() != rootSpan.SpanContext().TraceID() {
			t.Errorf("process span: kind %s, trace %s; want a consumer span of the publisher's trace", s.SpanKind(), s.SpanContext().TraceID())
		}
		if _, ok := byID[s.Parent().SpanID()]; !ok {
			t.Errorf("process span's parent %s is not a publish span", s.Parent().SpanID())
		}
		if hasEvent(s, eventRetry) {
			retried++
		}
		if hasEvent(s, eventPoisoned) {
			poisoned++
			if s.Status().Code != codes.Error {
				t.Errorf("the poisoned message's span has status %v, want Error", s.Status())
			}
		}
	}
	if retried != 2 || poisoned != 1 {
		t.Errorf("%d spans show a retry and %d a poisoning, want 2 and 1", retried, poisoned)
	}
	// The handler saw, as its message's trace context, its own delivery's
	// process span.
	processIDs := map[trace.SpanID]bool{}
	for _, s := range spansNamed(recorder, topic+" process") {
		processIDs[s.SpanContext().SpanID()] = true
	}
	mu.Lock()
	defer mu.Unlock()
	for body, contexts := range handlerContexts {
		for _, sc := range contexts {
			if !processIDs[sc.SpanID()] {
				t.Errorf("the handler of %q saw span %s in its message, not a process span", body, sc.SpanID())
			}
		}
	}
}

// TestPublishWithoutTracingLeavesTheHeadersAlone: with no TracerProvider
// installed, publishing adds nothing to the envelope and does not touch
// the caller's headers.
func TestPublishWithoutTracingLeavesTheHeadersAlone(t *testing.T) {
	fake := storagetest.NewService()
	b := NewBroker(brokerValue(storageServiceKey, fake)).(*Broker)
	if err := b.Connect(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Disconnect() })
	topic := newTopic()
	header := map[string]string{"A": "b"}
	if err := b.Publish(topic, &broker.Message{Header: header, Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if len(header) != 1 {
		t.Errorf("the caller's headers changed: %v", header)
	}
	msgs := fake.Messages(queueName(t, topic, DefaultGroup))
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	d, err := decodeMessage(msgs[0].Text, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Headers["traceparent"]; ok {
		t.Errorf("a traceparent was added without tracing: %v", d.Headers)
	}
}
