package bench

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	sdk "github.com/Azure/azure-storage-queue-go/azqueue"
	"github.com/micro/go-micro/v2/broker"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue"
	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// The round trips of the cases at real latency: Azure Storage from a
// client in the same region answers in about 10 ms, from another region
// in 30 ms or more. Each is added to every request by a StorageProxy rule,
// on top of what Azurite itself takes.
const (
	sameRegionRTT  = 10 * time.Millisecond
	otherRegionRTT = 30 * time.Millisecond
	// azqueueBatch is the broker's default BatchSize.
	azqueueBatch = 32
)

// proxyEnv is a StorageProxy in front of the shared Azurite, and the raw
// SDK's view of the proxy: the SDK's default pipeline, as for sdkEnv, with
// the proxy's endpoint. Both sides of a case at real latency send every
// request through it, so both pay the same added round trip.
type proxyEnv struct {
	proxy   *testenv.StorageProxy
	service sdk.ServiceURL
}

var sharedProxy lazy[*proxyEnv]

func proxyFor(b *testing.B, env *sdkEnv) *proxyEnv {
	return sharedProxy.get(b, func(tb testing.TB) *proxyEnv {
		p := testenv.StartStorageProxy(tb, env.az)
		cred, err := sdk.NewSharedKeyCredential(testenv.DevAccountName, testenv.DevAccountKey)
		if err != nil {
			tb.Fatalf("SDK credential: %v", err)
		}
		u, err := url.Parse(p.Endpoint())
		if err != nil {
			tb.Fatalf("parse %s: %v", p.Endpoint(), err)
		}
		return &proxyEnv{proxy: p, service: sdk.NewServiceURL(*u, sdk.NewPipeline(cred, sdk.PipelineOptions{}))}
	})
}

// addRTT makes the proxy hold every request for rtt before forwarding it
// (no jitter, no faults) until b ends.
func (p *proxyEnv) addRTT(b *testing.B, rtt time.Duration) {
	p.proxy.SetRules(testenv.Rule{Latency: rtt})
	b.Cleanup(func() { p.proxy.SetRules() })
}

// countRequests makes s count the requests the proxy sees during its
// slices (everything the side sends: dequeues, deletes, enqueues, and the
// queue creation of a Subscribe) and returns the count. The sides of a case
// never run at the same time, so each count is the side's own.
func (p *proxyEnv) countRequests(s *side) *int64 {
	n := new(int64)
	slice := s.slice
	s.slice = func(b *testing.B) int {
		before := p.proxy.Requests("")
		ops := slice(b)
		*n += int64(p.proxy.Requests("") - before)
		return ops
	}
	return n
}

// reportRequests reports a side's requests per operation as
// "<name>-req/msg".
func reportRequests(b *testing.B, s *side, requests *int64) {
	if s.ops > 0 {
		b.ReportMetric(float64(*requests)/float64(s.ops), s.name+"-req/msg")
	}
}

// BenchmarkConsumeAtRTT is BenchmarkConsume with a round trip added to
// every request: the same backlog of consumeBacklog messages filled
// straight into Azurite before each drain, ours (a subscription connected
// through the proxy) against the raw loop (the SDK's pipeline pointed at
// the proxy) at the same concurrency: Concurrency handlers at once in ours,
// as many concurrent deletes in the raw loop, whose one dequeuer asks for
// 32 at a time and never waits for deletes (so it may lease up to 96
// messages at once, against a subscription's 64). held=64 bounds the raw
// loop as a subscription is bounded: dequeues of 32, at most 64 leased, a
// dequeue only when room for a whole batch is free. conc=32 is our default
// (BatchSize 32, Concurrency 32); conc=64 is Concurrency(64), the setting
// that lets one subscription keep more messages in flight.
func BenchmarkConsumeAtRTT(b *testing.B) {
	env := sdkFor(b)
	w := wireFor(b, env)
	p := proxyFor(b, env)
	for _, c := range []struct {
		rtt  time.Duration
		conc int
		// held bounds the raw loop's leased messages as a subscription
		// bounds its own (Concurrency + BatchSize), with dequeues of
		// BatchSize; 0 leaves it unbounded.
		held int
	}{
		{sameRegionRTT, consumeWorkers, 0},
		{otherRegionRTT, consumeWorkers, 0},
		{otherRegionRTT, consumeWorkers, consumeWorkers + azqueueBatch},
		{otherRegionRTT, 64, 0},
	} {
		name := fmt.Sprintf("rtt=%s/conc=%d", c.rtt, c.conc)
		if c.held > 0 {
			name += fmt.Sprintf("/held=%d", c.held)
		}
		b.Run(name, func(b *testing.B) {
			p.addRTT(b, c.rtt)
			var opts []broker.SubscribeOption
			if c.conc != consumeWorkers {
				opts = append(opts, azqueue.Concurrency(c.conc))
			}
			ours, ourPolls := consumerSide(env, w, "azqueue", p.proxy.ConnectionString(), opts...)
			ourRequests := p.countRequests(ours)

			base, dequeues := rawConsumerSide(env, w, "rawrtt", p.service, func(q sdk.MessagesURL, record func(*sdk.DequeuedMessage)) (int64, error) {
				if c.held > 0 {
					return rawDrainHolding(q, consumeBacklog, c.conc, azqueueBatch, c.held, record)
				}
				return rawDrain(q, consumeBacklog, c.conc, record)
			})
			rawRequests := p.countRequests(base)

			alternateTimes(b, b.N*consumeDrains, "msgs/s", ours, base)
			reportRequests(b, ours, ourRequests)
			reportRequests(b, base, rawRequests)
			b.ReportMetric(float64(ours.ops)/float64(*ourPolls), "azqueue-msgs/dequeue")
			b.ReportMetric(float64(base.ops)/float64(*dequeues), "sdk-msgs/dequeue")
		})
	}
}

// BenchmarkPublishAtRTT is BenchmarkPublish (one group, 16 publishers)
// with a round trip added to every request: ours publishes through a
// broker connected to the proxy, the raw side enqueues the same text
// through the SDK's pipeline pointed at the proxy.
func BenchmarkPublishAtRTT(b *testing.B) {
	env := sdkFor(b)
	w := wireFor(b, env)
	p := proxyFor(b, env)
	pub := azqueue.NewBroker(azqueue.ConnectionString(p.proxy.ConnectionString())).(*azqueue.Broker)
	if err := pub.Connect(); err != nil {
		b.Fatalf("connect the publisher: %v", err)
	}
	defer pub.Disconnect()
	const workers = 16
	for _, rtt := range []time.Duration{sameRegionRTT, otherRegionRTT} {
		b.Run(fmt.Sprintf("rtt=%s/conc=%d", rtt, workers), func(b *testing.B) {
			p.addRTT(b, rtt)
			ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
			defer cancel()

			topic := uniqueName("pubrtt")
			queues := makeGroups(b, env, topic, 1)
			defer env.deleteQueues(b, queues...)
			ev := publisher(topic, pub)
			// As in BenchmarkPublish: the topic's queues are listed before
			// the clock starts.
			if err := ev.Publish(ctx, event); err != nil {
				b.Fatalf("first publish: %v", err)
			}
			ours := &side{name: "azqueue"}
			ours.slice = func(b *testing.B) int {
				return runFor(b, publishSlice, workers, timed(&ours.lat, func() error { return ev.Publish(ctx, event) }))
			}
			ourRequests := p.countRequests(ours)

			rawName := uniqueName("rawpubrtt")
			env.createQueue(b, rawName)
			defer env.deleteQueues(b, rawName)
			raw := []sdk.MessagesURL{p.service.NewQueueURL(rawName).NewMessagesURL()}
			base := &side{name: "sdk"}
			base.slice = func(b *testing.B) int {
				return runFor(b, publishSlice, workers, timed(&base.lat, func() error { return enqueueAll(ctx, raw, w.text) }))
			}
			rawRequests := p.countRequests(base)

			b.ResetTimer()
			alternateTimes(b, b.N*publishSlices, "msgs/s", ours, base)
			reportRequests(b, ours, ourRequests)
			reportRequests(b, base, rawRequests)
		})
	}
}
