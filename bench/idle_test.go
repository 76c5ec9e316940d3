package bench

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/micro/go-micro/v2/broker"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue"
)

// Environment variables that size BenchmarkIdle; scripts/bench.sh sets
// them to fit its time budget.
const (
	// IdleWindowEnv is how long the idle subscriptions' requests are
	// counted (default 60s).
	IdleWindowEnv = "POC_BENCH_IDLE_WINDOW"
	// IdleWarmUpEnv is how long subscriptions idle before being counted,
	// and before each first-message sample (default 25s): the default
	// backoff (pauses from 100ms doubling to 10s, each at most d) reaches
	// its maximum pause after at most 12.7s.
	IdleWarmUpEnv = "POC_BENCH_IDLE_WARMUP"
)

// idleSubscriptions idle side by side: their requests are averaged, and
// each gives one first-message sample, its poller at a random point of
// its pause.
const idleSubscriptions = 4

// BenchmarkIdle measures what an idle subscription costs and how soon it
// notices a message, at default settings (it runs for minutes; one op is
// the whole observation):
//
//   - req/min: HTTP requests per minute per idle subscription, counted by
//     the broker's request counter (retries included) over the window;
//   - first-*-ns: publish-to-handler latency of the first message after the
//     subscriptions idled long enough to reach their longest pause, the
//     message published by another broker instance (as from another
//     process, which cannot wake the poller);
//   - wake-*-ns: the same, published by the subscriber's own broker, whose
//     publish wakes the poller at once.
func BenchmarkIdle(b *testing.B) {
	env := sdkFor(b)
	warmUp := durationFromEnv(b, IdleWarmUpEnv, 25*time.Second)
	window := durationFromEnv(b, IdleWindowEnv, 60*time.Second)
	pub := newBroker(b, env)
	var first, wake latencies
	var requests, polls float64
	for range b.N {
		sub := newBroker(b, env)
		arrivals := make(chan arrival, idleSubscriptions)
		topics := make([]string, idleSubscriptions)
		subs := make([]broker.Subscriber, idleSubscriptions)
		for i := range topics {
			topics[i] = uniqueName("idle")
			s, err := sub.Subscribe(topics[i], func(e broker.Event) error {
				arrivals <- arrival{topic: e.Topic(), at: time.Now()}
				return nil
			})
			if err != nil {
				b.Fatalf("subscribe: %v", err)
			}
			subs[i] = s
		}

		time.Sleep(warmUp) // the idle time is what is measured
		before := sub.Stats()
		time.Sleep(window)
		after := sub.Stats()
		minutes := window.Minutes() * idleSubscriptions
		requests += float64(after.Requests-before.Requests) / minutes
		polls += float64(after.Polls-before.Polls) / minutes

		// Another instance publishes: the pollers find out when they
		// next poll.
		publishAndTime(b, pub, topics, arrivals, &first)
		// Idle again, then the subscriber's own broker publishes.
		time.Sleep(warmUp)
		publishAndTime(b, sub, topics, arrivals, &wake)

		for i, s := range subs {
			if err := s.Unsubscribe(); err != nil {
				b.Errorf("unsubscribe: %v", err)
			}
			env.deleteQueues(b, queueFor(topics[i]))
		}
	}
	b.ReportMetric(requests/float64(b.N), "req/min")
	b.ReportMetric(polls/float64(b.N), "polls/min")
	b.ReportMetric(float64(first.percentile(50)), "first-p50-ns")
	b.ReportMetric(float64(first.percentile(100)), "first-max-ns")
	b.ReportMetric(float64(wake.percentile(50)), "wake-p50-ns")
	b.ReportMetric(float64(wake.percentile(100)), "wake-max-ns")
}

type arrival struct {
	topic string
	at    time.Time
}

// publishAndTime publishes one event to each topic through pub, all at
// once, and records the latency of each until its handler ran.
func publishAndTime(b *testing.B, pub *azqueue.Broker, topics []string, arrivals <-chan arrival, lat *latencies) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	sent := make(map[string]time.Time, len(topics))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, topic := range topics {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			sent[topic] = time.Now()
			mu.Unlock()
			if err := publisher(topic, pub).Publish(ctx, event); err != nil {
				b.Errorf("publish to %s: %v", topic, err)
			}
		}()
	}
	wg.Wait()
	for range topics {
		select {
		case a := <-arrivals:
			mu.Lock()
			lat.add(a.at.Sub(sent[a.topic]))
			mu.Unlock()
		case <-ctx.Done():
			b.Fatalf("not every first message arrived within %s", brokerTimeout)
		}
	}
}

func durationFromEnv(b *testing.B, name string, def time.Duration) time.Duration {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		b.Fatalf("%s=%q: %v", name, v, fmt.Errorf("want a positive duration such as 60s"))
	}
	return d
}
