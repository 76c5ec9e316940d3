package azqueue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/micro/go-micro/v2/broker"
	"github.com/micro/go-micro/v2/registry/memory"
	"github.com/micro/go-micro/v2/server"
	grpcserver "github.com/micro/go-micro/v2/server/grpc"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage/storagetest"
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

// protoHi is example.Message{Say: "hi"} in proto.
var protoHi = []byte("\n\x02hi")

// publishRaw publishes body with Content-Type contentType to topic.
func publishRaw(t *testing.T, b *Broker, topic, contentType string, body []byte) {
	t.Helper()
	if err := b.Publish(topic, &broker.Message{Header: map[string]string{headerContentType: contentType}, Body: body}); err != nil {
		t.Fatal(err)
	}
}

// poisonedAtFirstDelivery waits for queue's one message to be in its poison
// queue after one delivery, with reason in the record, and the queue
// empty; it returns b's stats once they count the move.
func poisonedAtFirstDelivery(t *testing.T, e *env, b *Broker, queue, reason string) Stats {
	t.Helper()
	rec := e.poisonRecords(queue, 1)[0]
	if rec.DequeueCount != 1 || !strings.Contains(rec.Reason, reason) {
		t.Errorf("poison record after %d deliveries, reason %q; want 1 delivery and a reason with %q", rec.DequeueCount, rec.Reason, reason)
	}
	eventually(t, waitLong, func() string { return queue + " not empty after poisoning" }, func() bool { return e.messages(queue) == 0 })
	return waitStats(t, b, "poisoned=1", func(s Stats) bool { return s.Poisoned == 1 })
}

func testUndecodableMessageIsPoisonedAtFirstDelivery(t *testing.T, e *env) {
	tests := []struct {
		name        string
		contentType string
		body        []byte
		reason      string
	}{
		{"random bytes labelled proto", "application/grpc+proto", []byte("\xff\xff\xff\xff"), "go-micro could not decode the message as application/grpc+proto"},
		{"a proto body labelled JSON", "application/json", protoHi, "go-micro could not decode the message as application/json"},
		{"an unsupported Content-Type", "text/x-unknown", protoHi, "Unsupported Content-Type: text/x-unknown"},
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
			publishRaw(t, b, topic, tt.contentType, tt.body)
			if s := poisonedAtFirstDelivery(t, e, b, queue, tt.reason); s.Retried != 0 || handled.Load() != 0 {
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
			publishRaw(t, b, topic, "application/grpc+proto", protoHi)
			if s := poisonedAtFirstDelivery(t, e, b, queue, "permanent error: "+failure.Error()); s.Retried != 0 {
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
	publishRaw(t, b, topic, "application/grpc+proto", protoHi)
	rec := e.poisonRecords(queue, 1)[0]
	if rec.DequeueCount != 3 || !strings.Contains(rec.Reason, "database down") || !strings.Contains(rec.Reason, "MaxDequeueCount 2") {
		t.Errorf("poison record after %d deliveries, reason %q; want 3 (MaxDequeueCount 2, then poisoned) with the handler's error", rec.DequeueCount, rec.Reason)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("handler ran %d times, want 2", n)
	}
}

func testHandBacksDoNotCountTowardsMaxDequeueCount(t *testing.T, e *env) {
	const maxDequeue, stops = 1, 3
	topic := newTopic()
	queue := queueName(t, topic, DefaultGroup)
	ids := publishMessages(t, e.connected(), topic, 1)
	b := e.connected()
	r := newRecorder(t)
	// Each stop begins while the subscription's first dequeue is in
	// flight, so the message comes back after Unsubscribe and is handed
	// back without reaching a handler: a rolling restart, three times.
	for i := 1; i <= stops; i++ {
		before := e.struck("dequeue")
		e.faults(storagetest.Rule{Op: "dequeue", Queue: queue, Outcome: storagetest.SlowAnswer, Nth: []int{1}, Hold: time.Second})
		sub := e.subscribe(b, topic, r.handler(nil), MaxDequeueCount(maxDequeue), VisibilityTimeout(time.Minute))
		eventually(t, waitLong, func() string { return fmt.Sprintf("stop %d: the dequeue did not arrive", i) }, func() bool { return e.struck("dequeue") > before })
		if err := sub.Unsubscribe(); err != nil {
			t.Fatalf("stop %d: unsubscribe: %v", i, err)
		}
		eventually(t, waitLong, func() string { return fmt.Sprintf("stop %d: the message was not handed back", i) }, func() bool {
			v := e.visibleMessages(queue)
			return len(v) == 1 && v[0].DequeueCount == int64(i)
		})
	}
	e.faults()
	e.subscribe(b, topic, r.handler(nil), MaxDequeueCount(maxDequeue), fastPolls)
	r.waitIDs(t, ids, waitLong)
	if ds := r.all(); len(ds) != 1 || ds[0].count != stops+1 {
		t.Errorf("%d deliveries to a handler, want 1 (dequeue %d, after %d hand-backs)", len(ds), stops+1, stops)
	}
	if s := b.Stats(); s.Poisoned != 0 {
		t.Errorf("stats %s: a message handed back at every stop was poisoned", s)
	}
}

func testPoisonRecordSaysWhyWhenNoHandlerFailed(t *testing.T, e *env) {
	const maxDequeue = 2
	topic := newTopic()
	queue := queueName(t, topic, DefaultGroup)
	b := e.connected()
	publishMessages(t, b, topic, 1)
	// Two consumers take the message and vanish without an answer, as
	// killed processes do: their leases run out.
	for i := 1; i <= maxDequeue; i++ {
		eventually(t, waitLong, func() string { return fmt.Sprintf("take %d: the message did not come back", i) }, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			defer cancel()
			msgs, err := e.raw.Queue(queue).Dequeue(ctx, 1, time.Second)
			return err == nil && len(msgs) == 1
		})
	}
	r := newRecorder(t)
	e.subscribe(b, topic, r.handler(nil), MaxDequeueCount(maxDequeue), fastPolls)
	rec := e.poisonRecords(queue, 1)[0]
	if rec.DequeueCount != maxDequeue+1 || !strings.Contains(rec.Reason, "no handler failed") || !strings.Contains(rec.Reason, "lease was lost") {
		t.Errorf("poison record after %d deliveries, reason %q; want %d and why no handler error is known", rec.DequeueCount, rec.Reason, maxDequeue+1)
	}
	if n := r.len(); n != 0 {
		t.Errorf("handler called %d times", n)
	}
}

func testPoisonedMessagesAreReportedAndCanBeRequeued(t *testing.T, e *env) {
	const n = 3
	topic := newTopic()
	queue := queueName(t, topic, DefaultGroup)
	var mu sync.Mutex
	var reported []Poisoned
	b := e.connected(OnPoison(func(p Poisoned) {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, p)
	}))
	var broken atomic.Bool
	broken.Store(true)
	r := newRecorder(t)
	e.subscribe(b, topic, r.handler(func(Event, delivery) error {
		if broken.Load() {
			return Permanent(errors.New("the customer database is gone"))
		}
		return nil
	}), fastPolls)
	ids := publishMessages(t, b, topic, n)
	waitStats(t, b, fmt.Sprintf("poisoned=%d", n), func(s Stats) bool { return s.Poisoned == n })

	mu.Lock()
	got := append([]Poisoned(nil), reported...)
	mu.Unlock()
	if len(got) != n {
		t.Fatalf("OnPoison called %d times for %d poisoned messages", len(got), n)
	}
	seen := make(map[string]bool)
	for _, p := range got {
		seen[p.MessageID] = true
		if p.Topic != topic || p.Group != DefaultGroup || p.Queue != queue || p.PoisonQueue != poisonQueueNameFor(queue) ||
			p.DequeueCount != 1 || !strings.Contains(p.Reason, "the customer database is gone") {
			t.Errorf("OnPoison got %+v, want topic %q, group %q, queue %q, its poison queue, delivery 1 and the handler's error", p, topic, DefaultGroup, queue)
		}
	}
	if len(seen) != n {
		t.Errorf("OnPoison reported %d distinct message ids, want %d", len(seen), n)
	}

	// A record the broker cannot read stays where it is.
	e.put(poisonQueueNameFor(queue), `{"azqueuePoison":9}`)
	broken.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	report, err := b.RequeuePoisoned(ctx, topic, "", 0)
	if err != nil {
		t.Fatalf("RequeuePoisoned: %v", err)
	}
	if report.Moved != n || len(report.Skipped) != 1 || report.Queue != queue || report.PoisonQueue != poisonQueueNameFor(queue) {
		t.Errorf("RequeuePoisoned reported %+v, want %d moved and the unreadable record skipped", report, n)
	}
	r.waitIDs(t, ids, waitLong)
	eventually(t, waitLong, func() string { return "the requeued messages were not all handled" }, func() bool {
		return len(r.all()) == 2*n && e.messages(queue) == 0
	})
	for _, d := range r.all()[n:] {
		if d.count != 1 {
			t.Errorf("requeued message %s delivered with dequeue count %d, want 1 (a new message)", d.id, d.count)
		}
	}
	if left := e.messages(poisonQueueNameFor(queue)); left != 1 {
		t.Errorf("%d records left in the poison queue, want only the unreadable one", left)
	}

	// A topic that never poisoned anything has nothing to requeue.
	if report, err := b.RequeuePoisoned(ctx, newTopic(), "", 0); err != nil || report.Moved != 0 {
		t.Errorf("RequeuePoisoned of a topic without a poison queue: %+v, %v; want nothing moved and no error", report, err)
	}
}
