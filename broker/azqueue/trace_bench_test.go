package azqueue

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/micro/go-micro/v2/broker"
	"github.com/micro/go-micro/v2/logger"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage/storagetest"
)

// traced installs, for the rest of the benchmark, a TracerProvider that
// records every span and drops it when it ends: what tracing costs the
// broker, exporting aside.
func traced(b *testing.B) {
	installTracerProvider(b, sdktrace.WithSampler(sdktrace.AlwaysSample()))
}

// BenchmarkPublishTraced is BenchmarkPublish with every span recorded,
// under a caller's span: the cost of tracing on.
func BenchmarkPublishTraced(b *testing.B) {
	traced(b)
	br := NewBroker(brokerValue(storageServiceKey, storagetest.NewService()))
	if err := br.Connect(); err != nil {
		b.Fatal(err)
	}
	defer br.Disconnect()
	ctx, span := otel.Tracer("bench").Start(context.Background(), "caller")
	defer span.End()
	m := benchMessage()
	b.ReportAllocs()
	for b.Loop() {
		if err := br.Publish("bench", m, broker.PublishContext(ctx)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConsume measures a subscription taking b.N waiting messages
// through its whole path (dequeue, decode, handler, ack) on the in-memory
// fake: everything consuming costs outside the SDK. "traced" records a
// process span per message, whose envelope carries a publish span's
// context.
func BenchmarkConsume(b *testing.B) {
	// The broker logs its counters at Disconnect, which would land inside
	// the benchmark's result line.
	previous := logger.DefaultLogger
	logger.DefaultLogger = logger.NewHelper(logger.NewLogger(logger.WithLevel(logger.WarnLevel)))
	b.Cleanup(func() { logger.DefaultLogger = previous })
	for _, tracing := range []bool{false, true} {
		name := "tracing=off"
		if tracing {
			name = "tracing=on"
		}
		b.Run(name, func(b *testing.B) {
			if tracing {
				traced(b)
			}
			fake := storagetest.NewService()
			br := NewBroker(brokerValue(storageServiceKey, fake))
			if err := br.Connect(); err != nil {
				b.Fatal(err)
			}
			defer br.Disconnect()
			topic := newTopic()
			// The messages are published once, outside the timing, and
			// each run consumes its b.N from the waiting backlog.
			ctx, span := otel.Tracer("bench").Start(context.Background(), "caller")
			for i := 0; i < b.N; i++ {
				if err := br.Publish(topic, benchMessage(), broker.PublishContext(ctx)); err != nil {
					b.Fatal(err)
				}
			}
			span.End()
			var handled atomic.Int64
			done := make(chan struct{})
			b.ReportAllocs()
			b.ResetTimer()
			sub, err := br.Subscribe(topic, func(broker.Event) error {
				if handled.Add(1) == int64(b.N) {
					close(done)
				}
				return nil
			}, fastPolls)
			if err != nil {
				b.Fatal(err)
			}
			select {
			case <-done:
			case <-time.After(time.Minute):
				b.Fatalf("%d of %d messages handled within a minute", handled.Load(), b.N)
			}
			b.StopTimer()
			_ = sub.Unsubscribe()
		})
	}
}
