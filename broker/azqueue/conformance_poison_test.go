package azqueue

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/micro/go-micro/v2/broker"
	"github.com/micro/go-micro/v2/registry/memory"
	"github.com/micro/go-micro/v2/server"
	grpcserver "github.com/micro/go-micro/v2/server/grpc"

	"github.com/poc-go-micro/poc-go-micro/proto/example"
)

// serveSubscriber registers fn with micro.RegisterSubscriber's server, go-micro's
// gRPC server on loopback with an in-memory registry, over b: the way the
// example server subscribes.
func serveSubscriber(e *env, b *Broker, topic string, fn func(context.Context, *example.Message) error, opts ...server.SubscriberOption) {
	e.t.Helper()
	srv := grpcserver.NewServer(server.Name("conformance"), server.Address("127.0.0.1:0"),
		server.Broker(b), server.Registry(memory.NewRegistry()))
	if err := srv.Subscribe(srv.NewSubscriber(topic, fn, opts...)); err != nil {
		e.t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			e.t.Errorf("stop the go-micro server: %v", err)
		}
	})
}

// fastSubscriberPolls is fastPolls for go-micro subscribers.
var fastSubscriberPolls = SubscriberPollInterval(10*time.Millisecond, 100*time.Millisecond)

func testUndecodableMessageIsPoisonedAtFirstDelivery(t *testing.T, e *env) {
	valid := []byte("\n\x02hi") // example.Message{Say: "hi"} in proto
	tests := []struct {
		name        string
		contentType string
		body        []byte
		reason      string
	}{
		{"random bytes labelled proto", "application/grpc+proto", []byte("\xff\xff\xff\xff"), "go-micro could not decode the message as application/grpc+proto"},
		{"a proto body labelled JSON", "application/json", valid, "go-micro could not decode the message as application/json"},
		{"an unsupported Content-Type", "text/x-unknown", valid, "Unsupported Content-Type: text/x-unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e.in(t)
			topic := newTopic()
			queue := queueName(t, topic, DefaultGroup)
			b := e.connected()
			var handled atomic.Int32
			serveSubscriber(e, b, topic, func(context.Context, *example.Message) error {
				handled.Add(1)
				return nil
			}, SubscriberMaxDequeueCount(5), fastSubscriberPolls)
			if err := b.Publish(topic, &broker.Message{Header: map[string]string{headerContentType: tt.contentType}, Body: tt.body}); err != nil {
				t.Fatal(err)
			}
			rec := e.poisonRecords(queue, 1)[0]
			if rec.DequeueCount != 1 || !strings.Contains(rec.Reason, tt.reason) {
				t.Errorf("poison record after %d deliveries, reason %q; want 1 delivery and a reason with %q", rec.DequeueCount, rec.Reason, tt.reason)
			}
			eventually(t, waitLong, func() string { return queue + " not empty after poisoning" }, func() bool { return e.messages(queue) == 0 })
			if s := waitStats(t, b, "poisoned=1", func(s Stats) bool { return s.Poisoned == 1 }); s.Retried != 0 || handled.Load() != 0 {
				t.Errorf("stats %s, handler ran %d times: want no retry and no handler", s, handled.Load())
			}
		})
	}
}

func testPermanentErrorIsPoisonedAtFirstDelivery(t *testing.T, e *env) {
	failure := errors.New("unknown customer")
	tests := []struct {
		name      string
		subscribe func(e *env, b *Broker, topic string)
	}{
		{"a broker handler", func(e *env, b *Broker, topic string) {
			r := newRecorder(e.t)
			e.subscribe(b, topic, r.handler(func(Event, delivery) error { return Permanent(failure) }), MaxDequeueCount(5), fastPolls)
		}},
		{"a go-micro subscriber", func(e *env, b *Broker, topic string) {
			serveSubscriber(e, b, topic, func(context.Context, *example.Message) error { return Permanent(failure) },
				SubscriberMaxDequeueCount(5), fastSubscriberPolls)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e.in(t)
			topic := newTopic()
			queue := queueName(t, topic, DefaultGroup)
			b := e.connected()
			tt.subscribe(e, b, topic)
			if err := b.Publish(topic, &broker.Message{Header: map[string]string{headerContentType: "application/grpc+proto"}, Body: []byte("\n\x02hi")}); err != nil {
				t.Fatal(err)
			}
			rec := e.poisonRecords(queue, 1)[0]
			if rec.DequeueCount != 1 || !strings.Contains(rec.Reason, "permanent error: "+failure.Error()) {
				t.Errorf("poison record after %d deliveries, reason %q; want 1 delivery and the handler's permanent error", rec.DequeueCount, rec.Reason)
			}
			eventually(t, waitLong, func() string { return queue + " not empty after poisoning" }, func() bool { return e.messages(queue) == 0 })
			if s := waitStats(t, b, "poisoned=1", func(s Stats) bool { return s.Poisoned == 1 }); s.Retried != 0 {
				t.Errorf("stats %s: want no retry", s)
			}
		})
	}
}

func testGoMicroHandlerErrorsKeepTheirRetries(t *testing.T, e *env) {
	topic := newTopic()
	queue := queueName(t, topic, DefaultGroup)
	b := e.connected()
	var calls atomic.Int32
	serveSubscriber(e, b, topic, func(context.Context, *example.Message) error {
		calls.Add(1)
		return errors.New("database down")
	}, SubscriberMaxDequeueCount(2), SubscriberRetryDelay(0, 0), fastSubscriberPolls)
	if err := b.Publish(topic, &broker.Message{Header: map[string]string{headerContentType: "application/grpc+proto"}, Body: []byte("\n\x02hi")}); err != nil {
		t.Fatal(err)
	}
	rec := e.poisonRecords(queue, 1)[0]
	if rec.DequeueCount != 3 || !strings.Contains(rec.Reason, "database down") || !strings.Contains(rec.Reason, "MaxDequeueCount 2") {
		t.Errorf("poison record after %d deliveries, reason %q; want 3 (MaxDequeueCount 2, then poisoned) with the handler's error", rec.DequeueCount, rec.Reason)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("handler ran %d times, want 2", n)
	}
}
