package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/Azure/azure-storage-queue-go/azqueue"
	"github.com/micro/go-micro/v2"
	"github.com/micro/go-micro/v2/broker"
	"github.com/micro/go-micro/v2/client"
	grpcclient "github.com/micro/go-micro/v2/client/grpc"
	"github.com/micro/go-micro/v2/metadata"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue"
	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
	"github.com/poc-go-micro/poc-go-micro/proto/example"
)

const (
	// payloadSize is the length of the Say text of every event: with its
	// proto framing the body is 1,027 bytes.
	payloadSize = 1024
	// consumeBacklog is the depth every consume case starts from. Azurite's
	// dequeue cost grows with depth, so both sides drain the same backlog.
	consumeBacklog = 1000
	// consumeWorkers is the total concurrency of both consumers: our
	// subscription's default Concurrency (= BatchSize 32), and the raw
	// loop's concurrent deletes.
	consumeWorkers = 32
	// formerBatch is the BatchSize (and so Concurrency) that was the
	// broker's default until the default became the service's most, 32:
	// a side of BenchmarkConsume shows what the change bought.
	formerBatch = 16
	// fillWorkers enqueue the backlog before a consume case.
	fillWorkers = 16
	// latencyMessages are published per latency series, latencyInterval
	// apart (50 per second: a steady, moderate rate).
	latencyMessages = 100
	latencyInterval = 20 * time.Millisecond
	// visibility is the lease both consumers take (our default).
	visibility = 30 * time.Second
	// brokerTimeout bounds one case's requests and waits.
	brokerTimeout = 2 * time.Minute
	// seqHeader carries a message's sequence number in the latency cases.
	seqHeader = "Bench-Seq"
)

// event is the message every broker case publishes.
var event = &example.Message{Say: strings.Repeat("x", payloadSize)}

// sdkEnv is the raw SDK's view of the shared Azurite: the SDK's own
// default pipeline (azqueue.NewPipeline with default options: telemetry,
// request id, retry, shared key, request log) and its default HTTP client
// (100 idle connections per host).
type sdkEnv struct {
	service sdk.ServiceURL
	az      *testenv.Azurite
}

var sharedSDK lazy[*sdkEnv]

func sdkFor(b *testing.B) *sdkEnv {
	az := azuriteFor(b)
	return sharedSDK.get(b, func(tb testing.TB) *sdkEnv {
		cred, err := sdk.NewSharedKeyCredential(testenv.DevAccountName, testenv.DevAccountKey)
		if err != nil {
			tb.Fatalf("SDK credential: %v", err)
		}
		u, err := url.Parse(az.Endpoint())
		if err != nil {
			tb.Fatalf("parse %s: %v", az.Endpoint(), err)
		}
		env := &sdkEnv{service: sdk.NewServiceURL(*u, sdk.NewPipeline(cred, sdk.PipelineOptions{})), az: az}
		env.warmUp(tb)
		return env
	})
}

// warmUpMessages go through a fresh Azurite on each side's path before
// any case measures it: Node's JIT makes a new Azurite several times slower
// for its first thousand or so requests of each kind, and the two sides'
// requests differ in small ways (ours sets messagettl, for one), so both
// paths are warmed alike.
const warmUpMessages = 1000

// warmUp sends warmUpMessages through the raw SDK (enqueue, dequeue,
// delete) and as many through our broker (publish, subscribe, ack), with
// the concurrency of the cases.
func (e *sdkEnv) warmUp(tb testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	q := e.service.NewQueueURL(uniqueName("warmup"))
	if _, err := q.Create(ctx, sdk.Metadata{}); err != nil {
		tb.Fatalf("warm Azurite up: create queue: %v", err)
	}
	defer q.Delete(ctx)
	m := q.NewMessagesURL()
	text := strings.Repeat("w", 1500)

	br := azqueue.NewBroker(azqueue.ConnectionString(e.az.ConnectionString())).(*azqueue.Broker)
	if err := br.Connect(); err != nil {
		tb.Fatalf("warm Azurite up: connect the broker: %v", err)
	}
	defer br.Disconnect()
	topic := uniqueName("warmup")
	ev := publisher(topic, br)
	defer e.service.NewQueueURL(queueFor(topic)).Delete(ctx)

	err := inParallel(2*warmUpMessages, fillWorkers, func(i int) error {
		if i%2 == 0 {
			_, err := m.Enqueue(ctx, text, 0, 0)
			return err
		}
		return ev.Publish(ctx, event)
	})
	if err != nil {
		tb.Fatalf("warm Azurite up: %v", err)
	}
	s, err := br.Subscribe(topic, func(broker.Event) error { return nil })
	if err != nil {
		tb.Fatalf("warm Azurite up: subscribe: %v", err)
	}
	defer s.Unsubscribe()
	if _, err := rawDrain(m, warmUpMessages, consumeWorkers, func(*sdk.DequeuedMessage) {}); err != nil {
		tb.Fatalf("warm Azurite up: raw drain: %v", err)
	}
	for br.Stats().Acked < warmUpMessages {
		if ctx.Err() != nil {
			tb.Fatalf("warm Azurite up: %d of %d messages consumed by our subscriber", br.Stats().Acked, warmUpMessages)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// newBroker returns one of our brokers, connected to the shared Azurite
// with default settings; b's cleanup disconnects it.
func newBroker(b *testing.B, env *sdkEnv) *azqueue.Broker {
	b.Helper()
	br := azqueue.NewBroker(azqueue.ConnectionString(env.az.ConnectionString())).(*azqueue.Broker)
	if err := br.Connect(); err != nil {
		b.Fatalf("connect the broker: %v", err)
	}
	b.Cleanup(func() {
		if err := br.Disconnect(); err != nil {
			b.Errorf("disconnect the broker: %v", err)
		}
	})
	return br
}

// publisher returns micro.NewEvent over a go-micro gRPC client whose
// broker is br: the path a service's publish takes.
func publisher(topic string, br broker.Broker) micro.Event {
	return micro.NewEvent(topic, grpcclient.NewClient(client.Broker(br)))
}

// queueFor returns the queue our broker uses for topic's default group:
// "<topic>-default" for the plain topic names the benchmarks use.
func queueFor(topic string) string { return topic + "-" + azqueue.DefaultGroup }

// deleteQueues removes the queues of a finished case, so Azurite does
// not carry them into the next ones.
func (e *sdkEnv) deleteQueues(b *testing.B, names ...string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	for _, name := range names {
		if _, err := e.service.NewQueueURL(name).Delete(ctx); err != nil {
			b.Errorf("delete queue %s: %v", name, err)
		}
	}
}

// createQueue creates a queue for the raw side.
func (e *sdkEnv) createQueue(b *testing.B, name string) sdk.MessagesURL {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	q := e.service.NewQueueURL(name)
	if _, err := q.Create(ctx, sdk.Metadata{}); err != nil {
		b.Fatalf("create queue %s: %v", name, err)
	}
	return q.NewMessagesURL()
}

// wire is the exact text our broker enqueues for event: its JSON envelope
// (headers, base64 body). The raw side enqueues this same text, so the
// ratios measure our overhead, not a payload difference.
type wire struct {
	text string
	id   string // its Micro-Id, replaced to make unique texts
}

var sharedWire lazy[wire]

func wireFor(b *testing.B, env *sdkEnv) wire {
	return sharedWire.get(b, func(tb testing.TB) wire {
		br := azqueue.NewBroker(azqueue.ConnectionString(env.az.ConnectionString()))
		if err := br.Connect(); err != nil {
			tb.Fatalf("connect the broker: %v", err)
		}
		defer br.Disconnect()
		ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
		defer cancel()
		topic := uniqueName("capture")
		if err := publisher(topic, br).Publish(ctx, event); err != nil {
			tb.Fatalf("publish the message to capture: %v", err)
		}
		q := env.service.NewQueueURL(queueFor(topic))
		defer q.Delete(ctx)
		peeked, err := q.NewMessagesURL().Peek(ctx, 1)
		if err != nil || peeked.NumMessages() != 1 {
			tb.Fatalf("peek the captured message: %v", err)
		}
		text := peeked.Message(0).Text
		var env struct {
			Headers map[string]string `json:"headers"`
		}
		if err := json.Unmarshal([]byte(text), &env); err != nil || env.Headers[azqueue.HeaderID] == "" {
			tb.Fatalf("captured text is not an envelope with a %s (%v): %.200s", azqueue.HeaderID, err, text)
		}
		return wire{text: text, id: env.Headers[azqueue.HeaderID]}
	})
}

// uniqueIDPrefix starts the Micro-Id of the texts unique makes; twelve
// digits of the sequence number follow.
const uniqueIDPrefix = "00000000-0000-4000-8000-"

// unique returns the envelope with its Micro-Id replaced by one made of
// i, of the same length.
func (w wire) unique(i int) (text, id string) {
	id = fmt.Sprintf("%s%012d", uniqueIDPrefix, i)
	return strings.Replace(w.text, w.id, id, 1), id
}

// seq returns the sequence number of a text made by unique.
func (w wire) seq(text string) (int, bool) {
	at := strings.Index(text, uniqueIDPrefix)
	if at < 0 || len(text) < at+len(uniqueIDPrefix)+12 {
		return 0, false
	}
	at += len(uniqueIDPrefix)
	i, err := strconv.Atoi(text[at : at+12])
	return i, err == nil && i >= 0
}

// sendTimes records when each message of a latency series was sent; the
// receiving goroutines read it.
type sendTimes [latencyMessages]atomic.Int64

func (s *sendTimes) mark(i int) { s[i].Store(time.Now().UnixNano()) }

func (s *sendTimes) since(i int, now time.Time) time.Duration {
	return time.Duration(now.UnixNano() - s[i].Load())
}

// publishSlice is how long each side publishes before the other's turn,
// and publishSlices how many turns each side takes in a round. Many short
// turns spread Azurite's pauses (Node's garbage collections stall every
// request for tens of ms) over both sides alike: with 3 turns of 250 ms the
// ratio of one round ranged from 0.88 to 1.08 between rounds, with 20 of
// 100 ms from 0.94 to 1.01.
const (
	publishSlice  = 100 * time.Millisecond
	publishSlices = 20
)

// BenchmarkPublish measures publish throughput (and the latency of single
// publishes): micro.NewEvent(...).Publish through our broker against the
// raw SDK's Enqueue of the same text, at 1 and 16 publishers, to a topic
// with 1, 2 and 4 groups (a publish enqueues once per group; the raw side
// enqueues into as many queues, in parallel as ours does).
func BenchmarkPublish(b *testing.B) {
	env := sdkFor(b)
	w := wireFor(b, env)
	pub := newBroker(b, env)
	for _, c := range []struct{ groups, workers int }{{1, 1}, {1, 16}, {2, 16}, {4, 16}} {
		b.Run(fmt.Sprintf("groups=%d/conc=%d", c.groups, c.workers), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
			defer cancel()

			topic := uniqueName("pub")
			queues := makeGroups(b, env, topic, c.groups)
			defer env.deleteQueues(b, queues...)
			ev := publisher(topic, pub)
			// One publish before the clock starts lists the topic's queues,
			// as a running service would have done long before.
			if err := ev.Publish(ctx, event); err != nil {
				b.Fatalf("first publish: %v", err)
			}
			ours := &side{name: "azqueue"}
			ours.slice = func(b *testing.B) int {
				return runFor(b, publishSlice, c.workers, timed(&ours.lat, func() error { return ev.Publish(ctx, event) }))
			}

			raw := make([]sdk.MessagesURL, c.groups)
			names := make([]string, c.groups)
			for g := range raw {
				names[g] = fmt.Sprintf("%s-g%d", uniqueName("raw"), g)
				raw[g] = env.createQueue(b, names[g])
			}
			defer env.deleteQueues(b, names...)
			base := &side{name: "sdk"}
			base.slice = func(b *testing.B) int {
				return runFor(b, publishSlice, c.workers, timed(&base.lat, func() error { return enqueueAll(ctx, raw, w.text) }))
			}

			before := pub.Stats()
			b.ResetTimer()
			alternateTimes(b, b.N*publishSlices, "msgs/s", ours, base)
			after := pub.Stats()
			if got, want := after.Published-before.Published, int64(ours.ops*c.groups); got != want {
				b.Fatalf("broker counted %d enqueues for %d publishes to %d groups, want %d", got, ours.ops, c.groups, want)
			}
			b.ReportMetric(float64(after.Requests-before.Requests)/float64(ours.ops), "azqueue-req/msg")
		})
	}
}

// enqueueAll is the raw side's publish: the text into every queue, in
// parallel when there are several.
func enqueueAll(ctx context.Context, queues []sdk.MessagesURL, text string) error {
	if len(queues) == 1 {
		_, err := queues[0].Enqueue(ctx, text, 0, 0)
		return err
	}
	errs := make([]error, len(queues))
	var wg sync.WaitGroup
	for g, q := range queues {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[g] = q.Enqueue(ctx, text, 0, 0)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// makeGroups makes groups subscriber groups of topic exist (each
// subscribes once with another broker and unsubscribes at once, leaving
// its queue) and returns their queue names.
func makeGroups(b *testing.B, env *sdkEnv, topic string, groups int) []string {
	b.Helper()
	sub := azqueue.NewBroker(azqueue.ConnectionString(env.az.ConnectionString()))
	if err := sub.Connect(); err != nil {
		b.Fatalf("connect the group maker: %v", err)
	}
	defer sub.Disconnect()
	var names []string
	for g := range groups {
		group := fmt.Sprintf("g%d", g)
		s, err := sub.Subscribe(topic, func(broker.Event) error { return nil }, broker.Queue(group))
		if err != nil {
			b.Fatalf("subscribe group %s: %v", group, err)
		}
		if err := s.Unsubscribe(); err != nil {
			b.Fatalf("unsubscribe group %s: %v", group, err)
		}
		names = append(names, topic+"-"+group)
	}
	return names
}

// consumeDrains is the number of drains of each side per op: one drain
// takes seconds, and a single pair of them is at the mercy of whatever else
// the machine does in those seconds.
const consumeDrains = 2

// BenchmarkConsume measures draining a backlog of consumeBacklog messages
// (one slice is one whole drain, the backlog being filled before it; an op
// is consumeDrains slices of each side, alternating): our subscription
// with default settings (BatchSize 32, Concurrency 32, AutoAck) and a
// no-op handler, against the best raw loop we could write at the same
// concurrency (one dequeuer asking for 32 at a time and never waiting for
// deletes, 32 concurrent deletes). A third side is ours at the former
// default, BatchSize(16) (and so Concurrency 16): what asking for half as
// many per request costs. Every side must see every message exactly
// once.
func BenchmarkConsume(b *testing.B) {
	env := sdkFor(b)
	w := wireFor(b, env)

	direct := env.az.ConnectionString()
	ours, ourPolls := consumerSide(env, w, "azqueue", direct)
	batch16, batch16Polls := consumerSide(env, w, "batch16", direct, azqueue.BatchSize(formerBatch))

	base, dequeues := rawConsumerSide(env, w, "rawcons", env.service, func(q sdk.MessagesURL, record func(*sdk.DequeuedMessage)) (int64, error) {
		return rawDrain(q, consumeBacklog, consumeWorkers, record)
	})

	alternateTimes(b, b.N*consumeDrains, "msgs/s", ours, base, batch16)
	b.ReportMetric(float64(ours.ops)/float64(*ourPolls), "azqueue-msgs/dequeue")
	b.ReportMetric(float64(batch16.ops)/float64(*batch16Polls), "batch16-msgs/dequeue")
	b.ReportMetric(float64(base.ops)/float64(*dequeues), "sdk-msgs/dequeue")
	if base.rate() > 0 {
		b.ReportMetric(batch16.rate()/base.rate(), "batch16-rate-ratio")
	}
}

// consumerSide is a side of a consume benchmark that drains the backlog
// with our broker's subscription, connected with connStr and subscribed
// with opts; polls counts its dequeue requests. The backlog is filled
// straight into the shared Azurite, whatever connStr points at.
func consumerSide(env *sdkEnv, w wire, name, connStr string, opts ...broker.SubscribeOption) (s *side, polls *int64) {
	var topic string
	var sub *azqueue.Broker
	var got exactlyOnce
	polls = new(int64)
	s = &side{name: name}
	s.prepare = func(b *testing.B) {
		topic = uniqueName("cons")
		fill(b, env.createQueue(b, queueFor(topic)), w)
		sub = azqueue.NewBroker(azqueue.ConnectionString(connStr)).(*azqueue.Broker)
		if err := sub.Connect(); err != nil {
			b.Fatalf("connect the subscriber: %v", err)
		}
		got = exactlyOnce{}
	}
	s.slice = func(b *testing.B) int {
		allHandled := make(chan struct{})
		subscription, err := sub.Subscribe(topic, func(e broker.Event) error {
			if got.add(e.Message().Header[azqueue.HeaderID]) == consumeBacklog {
				close(allHandled)
			}
			return nil
		}, opts...)
		if err != nil {
			b.Fatalf("subscribe: %v", err)
		}
		// Done when every message is deleted, not just handled. Waiting
		// on the handler first keeps the wait from costing CPU (polling
		// Stats every millisecond for the whole drain took 5-10% of this
		// side's CPU); the deletes of the last handlings are then polled.
		deadline := time.Now().Add(brokerTimeout)
		select {
		case <-allHandled:
		case <-time.After(brokerTimeout):
			b.Fatalf("after %s: %d of %d messages handled (%s)", brokerTimeout, got.distinct(), consumeBacklog, sub.Stats())
		}
		for sub.Stats().Acked < consumeBacklog {
			if time.Now().After(deadline) {
				b.Fatalf("after %s: %d of %d messages acked (%s)", brokerTimeout, sub.Stats().Acked, consumeBacklog, sub.Stats())
			}
			time.Sleep(time.Millisecond)
		}
		b.StopTimer() // Unsubscribe's drain is no part of the throughput
		if err := subscription.Unsubscribe(); err != nil {
			b.Fatalf("unsubscribe: %v", err)
		}
		b.StartTimer()
		return consumeBacklog
	}
	s.finish = func(b *testing.B) {
		*polls += sub.Stats().Polls
		if err := sub.Disconnect(); err != nil {
			b.Fatalf("disconnect: %v", err)
		}
		got.check(b, consumeBacklog)
		env.deleteQueues(b, queueFor(topic))
	}
	return s, polls
}

// rawConsumerSide is the raw loop's side of a consume benchmark, the
// counterpart of consumerSide: before each drain it fills a new queue (its
// name starting with prefix) straight into the shared Azurite, then drain
// empties it through via (the raw SDK's view of Azurite itself, or of a
// proxy in front of it), recording every message; dequeues counts drain's
// dequeue requests.
func rawConsumerSide(env *sdkEnv, w wire, prefix string, via sdk.ServiceURL, drain func(q sdk.MessagesURL, record func(*sdk.DequeuedMessage)) (int64, error)) (s *side, dequeues *int64) {
	var name string
	var q sdk.MessagesURL
	var got exactlyOnce
	dequeues = new(int64)
	s = &side{name: "sdk"}
	s.prepare = func(b *testing.B) {
		name = uniqueName(prefix)
		fill(b, env.createQueue(b, name), w)
		q = via.NewQueueURL(name).NewMessagesURL()
		got = exactlyOnce{}
	}
	s.slice = func(b *testing.B) int {
		n, err := drain(q, func(m *sdk.DequeuedMessage) { got.add(string(m.ID)) })
		if err != nil {
			b.Fatalf("raw drain: %v", err)
		}
		*dequeues += n
		return consumeBacklog
	}
	s.finish = func(b *testing.B) {
		got.check(b, consumeBacklog)
		env.deleteQueues(b, name)
	}
	return s, dequeues
}

// fill enqueues consumeBacklog unique envelopes into the queue.
func fill(b *testing.B, q sdk.MessagesURL, w wire) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	err := inParallel(consumeBacklog, fillWorkers, func(i int) error {
		text, _ := w.unique(i)
		_, err := q.Enqueue(ctx, text, 0, 0)
		return err
	})
	if err != nil {
		b.Fatalf("fill the backlog: %v", err)
	}
}

// inParallel runs job(0) to job(n-1) on the given number of goroutines and
// returns the first error of each goroutine, joined; a goroutine stops at
// its first error.
func inParallel(n, workers int, job func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for k := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if err := job(i); err != nil {
					errs[k] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// exactlyOnce records deliveries by id and checks every id came once.
type exactlyOnce struct {
	mu   sync.Mutex
	seen map[string]int
}

// add records a delivery of id and returns the number of distinct ids
// seen so far.
func (e *exactlyOnce) add(id string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.seen == nil {
		e.seen = make(map[string]int)
	}
	e.seen[id]++
	return len(e.seen)
}

func (e *exactlyOnce) distinct() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.seen)
}

func (e *exactlyOnce) check(b *testing.B, want int) {
	b.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	dups := 0
	for _, n := range e.seen {
		dups += n - 1
	}
	if len(e.seen) != want || dups != 0 {
		b.Fatalf("consumed %d distinct messages with %d duplicates, want %d exactly once", len(e.seen), dups, want)
	}
}

// rawDrain is the raw consumer: one goroutine dequeues up to 32 messages
// at a time, never waiting for deletes, and workers goroutines handle and
// delete them as they come (the concurrency our subscription's Concurrency
// sets). It stops after want deletes and returns the number of dequeue
// requests.
func rawDrain(q sdk.MessagesURL, want, workers int, handle func(*sdk.DequeuedMessage)) (int64, error) {
	return rawDrainHolding(q, want, workers, sdk.QueueMaxMessagesDequeue, 0, handle)
}

// rawDrainHolding is rawDrain with dequeues of batch messages and, when
// held is positive, at most held messages leased at once: the dequeuer
// waits until room for a whole batch is free (a worker frees a message's
// room once it is deleted), which is the bound a subscription keeps
// (Concurrency + BatchSize).
func rawDrainHolding(q sdk.MessagesURL, want, workers, batch, held int, handle func(*sdk.DequeuedMessage)) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	msgs := make(chan *sdk.DequeuedMessage, sdk.QueueMaxMessagesDequeue)
	var room chan struct{} // one token per message leased; nil: unbounded
	if held > 0 {
		room = make(chan struct{}, held)
	}
	var dequeues int64
	var fetchErr error
	go func() {
		defer close(msgs)
		for fetched := 0; fetched < want; {
			if room != nil {
				for range batch {
					select {
					case room <- struct{}{}:
					case <-ctx.Done():
						return
					}
				}
			}
			resp, err := q.Dequeue(ctx, int32(batch), visibility)
			dequeues++
			if err != nil {
				fetchErr = err
				return
			}
			n := int(resp.NumMessages())
			if room != nil {
				for range batch - n {
					<-room
				}
			}
			for i := 0; i < n; i++ {
				msgs <- resp.Message(int32(i))
				fetched++
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for k := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range msgs {
				handle(m)
				if _, err := q.NewMessageIDURL(m.ID).Delete(ctx, m.PopReceipt); err != nil && errs[k] == nil {
					errs[k] = err
					cancel()
				}
				if room != nil {
					<-room
				}
			}
		}()
	}
	wg.Wait()
	return dequeues, errors.Join(append(errs, fetchErr)...)
}

// BenchmarkLatency measures publish-to-handler latency at a steady 50
// messages per second (one slice is a series of latencyMessages): our
// subscription with default settings fed by another broker instance (as
// from another process), against the raw baseline: Enqueue, and a loop
// that dequeues again as soon as an answer arrives (the lowest latency
// there is, at the price of a request per round trip even when the queue
// is empty). Two more sides show the settings: azqueuewake publishes with the
// subscriber's own broker, whose publish wakes the poller at once, and
// azqueuefast subscribes with PollInterval(fastPollMin, default max).
func BenchmarkLatency(b *testing.B) {
	env := sdkFor(b)
	w := wireFor(b, env)
	pub := newBroker(b, env)
	ours := &side{name: "azqueue"}
	ours.slice = func(b *testing.B) int { return latencyOurs(b, env, pub, &ours.lat) }
	wake := &side{name: "azqueuewake"}
	wake.slice = func(b *testing.B) int { return latencyOurs(b, env, nil, &wake.lat) }
	fast := &side{name: "azqueuefast"}
	fast.slice = func(b *testing.B) int {
		return latencyOurs(b, env, pub, &fast.lat, azqueue.PollInterval(fastPollMin, defaultPollMax))
	}
	base := &side{name: "sdk"}
	base.slice = func(b *testing.B) int { return latencyRaw(b, env, w, &base.lat) }
	alternate(b, "", ours, base, wake, fast)
}

// fastPollMin is the shortest poll pause of BenchmarkLatency's azqueuefast
// side; defaultPollMax is the broker's default longest pause.
const (
	fastPollMin    = 10 * time.Millisecond
	defaultPollMax = 10 * time.Second
)

// latencyOurs publishes a series through pub (nil: the subscriber's own
// broker) to a fresh topic and records each message's latency from the
// call to Publish to its handler.
func latencyOurs(b *testing.B, env *sdkEnv, pub *azqueue.Broker, lat *latencies, opts ...broker.SubscribeOption) int {
	b.StopTimer()
	topic := uniqueName("lat")
	sub := azqueue.NewBroker(azqueue.ConnectionString(env.az.ConnectionString()))
	if err := sub.Connect(); err != nil {
		b.Fatalf("connect the subscriber: %v", err)
	}
	defer sub.Disconnect()
	if pub == nil {
		pub = sub.(*azqueue.Broker)
	}
	var sent sendTimes
	var got exactlyOnce
	var received sync.WaitGroup
	received.Add(latencyMessages)
	handler := func(e broker.Event) error {
		now := time.Now()
		seq, err := strconv.Atoi(e.Message().Header[seqHeader])
		if err != nil || seq < 0 || seq >= latencyMessages {
			return fmt.Errorf("bad %s header %q", seqHeader, e.Message().Header[seqHeader])
		}
		got.add(strconv.Itoa(seq))
		lat.add(sent.since(seq, now))
		received.Done()
		return nil
	}
	s, err := sub.Subscribe(topic, handler, opts...)
	if err != nil {
		b.Fatalf("subscribe: %v", err)
	}
	ev := publisher(topic, pub)
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	b.StartTimer()
	ticker := time.NewTicker(latencyInterval)
	for i := range latencyMessages {
		<-ticker.C
		sent.mark(i)
		mctx := metadata.NewContext(ctx, metadata.Metadata{seqHeader: strconv.Itoa(i)})
		if err := ev.Publish(mctx, event); err != nil {
			b.Fatalf("publish %d: %v", i, err)
		}
	}
	ticker.Stop()
	waitGroupWithin(b, &received, brokerTimeout)
	b.StopTimer()
	if err := s.Unsubscribe(); err != nil {
		b.Fatalf("unsubscribe: %v", err)
	}
	got.check(b, latencyMessages)
	env.deleteQueues(b, queueFor(topic))
	b.StartTimer()
	return latencyMessages
}

// latencyRaw is latencyOurs for the raw baseline.
func latencyRaw(b *testing.B, env *sdkEnv, w wire, lat *latencies) int {
	b.StopTimer()
	name := uniqueName("rawlat")
	q := env.createQueue(b, name)
	var sent sendTimes
	texts := make([]string, latencyMessages)
	for i := range texts {
		texts[i], _ = w.unique(i)
	}
	var got exactlyOnce
	drained := make(chan error, 1)
	b.StartTimer()
	go func() {
		_, err := rawDrain(q, latencyMessages, consumeWorkers, func(m *sdk.DequeuedMessage) {
			now := time.Now()
			i, ok := w.seq(m.Text)
			if !ok || i >= latencyMessages {
				return // reported by the exactly-once check
			}
			got.add(strconv.Itoa(i))
			lat.add(sent.since(i, now))
		})
		drained <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	ticker := time.NewTicker(latencyInterval)
	for i := range latencyMessages {
		<-ticker.C
		sent.mark(i)
		if _, err := q.Enqueue(ctx, texts[i], 0, 0); err != nil {
			b.Fatalf("enqueue %d: %v", i, err)
		}
	}
	ticker.Stop()
	if err := <-drained; err != nil {
		b.Fatalf("raw consumer: %v", err)
	}
	b.StopTimer()
	got.check(b, latencyMessages)
	env.deleteQueues(b, name)
	b.StartTimer()
	return latencyMessages
}

// waitGroupWithin waits for wg, failing b after d.
func waitGroupWithin(b *testing.B, wg *sync.WaitGroup, d time.Duration) {
	b.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		b.Fatalf("not every message arrived within %s", d)
	}
}
