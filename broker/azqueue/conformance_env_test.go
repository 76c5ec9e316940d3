package azqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/Azure/azure-storage-queue-go/azqueue"
	"github.com/google/uuid"
	"github.com/micro/go-micro/v2/broker"
	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage"
	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage/storagetest"
	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// features says what a backend of the conformance suite can be made to do
// beyond the broker's ordinary work. A case that needs a feature the
// backend lacks is skipped there, with the reason.
type features struct {
	// realService: a real HTTP endpoint, with authentication, a network
	// that can refuse connections, requests counted by the broker's
	// pipeline, and time that is worth spending at default settings.
	realService bool
}

// missing names the first feature of need that have lacks, or "".
func (have features) missing(need features) string {
	if need.realService && !have.realService {
		return "needs the real queue service (authentication, network, request counting)"
	}
	return ""
}

// backend is one implementation of the queue service the suite runs on.
// start prepares whatever the backend shares between cases (one Azurite for
// all of them) and returns how to make each case's environment.
type backend struct {
	name     string
	features features
	start    func(t *testing.T) func(t *testing.T) *env
}

var backends = []backend{
	{name: "azurite", features: features{realService: true}, start: startAzuriteBackend},
	{name: "fake", start: startFakeBackend},
}

// env is one case's view of a backend: brokers connected to it, and direct
// access to its queues that bypasses the broker.
type env struct {
	t        *testing.T
	features features
	// connection returns the broker options that reach the backend.
	connection func() []broker.Option
	// raw reaches the queues without the broker, as another tool would.
	raw storage.Service
	// count returns how many messages a queue holds, invisible ones included.
	count func(ctx context.Context, queue string) (int, error)
	// lifetime returns, for each visible message of a queue, how long it
	// lives (expiry minus insertion); real service only.
	lifetime func(ctx context.Context, queue string) ([]time.Duration, error)
	// text returns the texts of a queue's messages as stored: all of them
	// on the fake, the visible ones on the real service.
	text func(ctx context.Context, queue string) ([]string, error)
	// visible returns the visible messages of a queue.
	visible func(ctx context.Context, queue string) ([]storagetest.Snapshot, error)
	// inject replaces the case's fault rules (none: no faults): on the
	// fake its own, on the real service those of the case's proxy in front
	// of Azurite (testenv.StorageProxy), through which its brokers connect.
	inject func(rules ...storagetest.Rule)
	// struck returns how many requests of op ("" all) the rules struck.
	struck func(op string) int
	// requests returns how many requests of op ("" all) reached the
	// service (the proxy, on the real service), struck ones included.
	requests func(op string) int
	// fresh returns an environment of its own for subtest t, on the same
	// backend: its own fake, or its own proxy in front of the same Azurite,
	// so that parallel subtests' fault rules stay apart.
	fresh func(t *testing.T) *env
	// fake is the in-memory service, nil on a real one.
	fake *storagetest.Service
	// azurite is the emulator, nil on the fake.
	azurite *testenv.Azurite

	// done is closed when the case ends, so that handlers still waiting for
	// the test give up and brokers can drain.
	done     chan struct{}
	doneOnce sync.Once
}

func newEnv(t *testing.T, f features) *env {
	e := &env{t: t, features: f, done: make(chan struct{})}
	t.Cleanup(e.finish)
	return e
}

func (e *env) finish() { e.doneOnce.Do(func() { close(e.done) }) }

func startFakeBackend(*testing.T) func(t *testing.T) *env {
	return func(t *testing.T) *env {
		fake := storagetest.NewService()
		e := newEnv(t, features{})
		e.fake, e.raw = fake, fake
		e.connection = func() []broker.Option { return []broker.Option{brokerValue(storageServiceKey, fake)} }
		e.count = func(_ context.Context, queue string) (int, error) { return len(fake.Messages(queue)), nil }
		e.text = func(_ context.Context, queue string) ([]string, error) {
			var texts []string
			for _, m := range fake.Messages(queue) {
				texts = append(texts, m.Text)
			}
			return texts, nil
		}
		e.visible = func(_ context.Context, queue string) ([]storagetest.Snapshot, error) {
			var visible []storagetest.Snapshot
			for _, m := range fake.Messages(queue) {
				if m.Visible {
					visible = append(visible, m)
				}
			}
			return visible, nil
		}
		e.inject, e.struck, e.requests = fake.SetRules, fake.Struck, fake.Requests
		return e
	}
}

func startAzuriteBackend(t *testing.T) func(t *testing.T) *env {
	az := testenv.StartAzurite(t)
	endpoint, err := url.Parse(az.Endpoint())
	if err != nil {
		t.Fatalf("parse Azurite endpoint %q: %v", az.Endpoint(), err)
	}
	credential, err := sdk.NewSharedKeyCredential(testenv.DevAccountName, testenv.DevAccountKey)
	if err != nil {
		t.Fatalf("Azurite credential: %v", err)
	}
	pipeline := storage.NewPipeline(storage.PipelineConfig{Credential: credential})
	raw := storage.NewService(*endpoint, pipeline)
	service := sdk.NewServiceURL(*endpoint, pipeline)
	count := func(ctx context.Context, queue string) (int, error) {
		props, err := service.NewQueueURL(queue).GetProperties(ctx)
		if err != nil {
			return 0, fmt.Errorf("get properties of queue %q: %w", queue, err)
		}
		return int(props.ApproximateMessagesCount()), nil
	}
	peek := func(ctx context.Context, queue string) ([]storagetest.Snapshot, error) {
		resp, err := service.NewQueueURL(queue).NewMessagesURL().Peek(ctx, storage.MaxBatch)
		if err != nil {
			return nil, fmt.Errorf("peek into queue %q: %w", queue, err)
		}
		visible := make([]storagetest.Snapshot, 0, resp.NumMessages())
		for i := int32(0); i < resp.NumMessages(); i++ {
			m := resp.Message(i)
			visible = append(visible, storagetest.Snapshot{ID: string(m.ID), Text: m.Text, DequeueCount: m.DequeueCount, Visible: true})
		}
		return visible, nil
	}
	lifetime := func(ctx context.Context, queue string) ([]time.Duration, error) {
		resp, err := service.NewQueueURL(queue).NewMessagesURL().Peek(ctx, storage.MaxBatch)
		if err != nil {
			return nil, fmt.Errorf("peek into queue %q: %w", queue, err)
		}
		lives := make([]time.Duration, 0, resp.NumMessages())
		for i := int32(0); i < resp.NumMessages(); i++ {
			m := resp.Message(i)
			lives = append(lives, m.ExpirationTime.Sub(m.InsertionTime))
		}
		return lives, nil
	}
	text := func(ctx context.Context, queue string) ([]string, error) {
		visible, err := peek(ctx, queue)
		texts := make([]string, 0, len(visible))
		for _, m := range visible {
			texts = append(texts, m.Text)
		}
		return texts, err
	}
	return func(t *testing.T) *env {
		e := newEnv(t, features{realService: true})
		// Every case has a proxy of its own, so that its fault rules never
		// reach the cases running beside it.
		proxy := testenv.StartStorageProxy(t, az)
		e.azurite, e.raw, e.count, e.lifetime, e.text, e.visible = az, raw, count, lifetime, text, peek
		e.connection = func() []broker.Option { return []broker.Option{ConnectionString(proxy.ConnectionString())} }
		e.inject = func(rules ...storagetest.Rule) { proxy.SetRules(proxyRules(t, rules)...) }
		e.struck = func(op string) int { return proxy.Faults(proxyOp(t, op)) }
		e.requests = func(op string) int { return proxy.Requests(proxyOp(t, op)) }
		return e
	}
}

// proxyOps maps the fake's operations to the proxy's request kinds. Ping
// lists the queues.
var proxyOps = map[string]testenv.Op{
	"": "", "ping": testenv.OpList, "list": testenv.OpList, "create": testenv.OpCreate,
	"enqueue": testenv.OpPut, "dequeue": testenv.OpDequeue, "update": testenv.OpUpdate, "delete": testenv.OpDelete,
}

// proxyOutcomes maps the fake's outcomes to the proxy's faults.
var proxyOutcomes = map[storagetest.Outcome]testenv.Fault{
	storagetest.Unanswered: testenv.ConnectionReset,
	storagetest.Busy:       testenv.ServerBusy,
	storagetest.LostAnswer: testenv.LostResponse,
	storagetest.SlowAnswer: testenv.SlowResponse,
	storagetest.Hang:       testenv.LostRequest,
}

func proxyOp(t *testing.T, op string) testenv.Op {
	p, ok := proxyOps[op]
	if !ok {
		t.Fatalf("no proxy request kind for the fake's operation %q", op)
	}
	return p
}

// proxyRules turns the fake's rules into the proxy's.
func proxyRules(t *testing.T, rules []storagetest.Rule) []testenv.Rule {
	out := make([]testenv.Rule, 0, len(rules))
	for _, r := range rules {
		pr := testenv.Rule{Queue: r.Queue, Fault: proxyOutcomes[r.Outcome], Nth: r.Nth, Hold: r.Hold, RetryAfter: r.RetryAfter}
		if r.Op != "" {
			pr.Ops = []testenv.Op{proxyOp(t, r.Op)}
		}
		if r.Nth == nil {
			pr.Share = 1
		}
		out = append(out, pr)
	}
	return out
}

// broker returns a broker of the backend, not connected, disconnected when
// the case ends.
func (e *env) broker(opts ...broker.Option) *Broker {
	e.t.Helper()
	b := NewBroker(append(e.connection(), opts...)...).(*Broker)
	e.t.Cleanup(func() {
		e.finish()
		if err := b.Disconnect(); err != nil {
			e.t.Errorf("disconnect broker at cleanup: %v", err)
		}
	})
	return b
}

// connected returns a connected broker of the backend.
func (e *env) connected(opts ...broker.Option) *Broker {
	e.t.Helper()
	b := e.broker(opts...)
	if err := b.Connect(); err != nil {
		e.t.Fatalf("connect broker: %v", err)
	}
	return b
}

// subscribe subscribes h and fails the case on error; the subscription ends
// with its broker.
func (e *env) subscribe(b *Broker, topic string, h broker.Handler, opts ...broker.SubscribeOption) broker.Subscriber {
	e.t.Helper()
	sub, err := b.Subscribe(topic, h, opts...)
	if err != nil {
		e.t.Fatalf("subscribe to %q: %v", topic, err)
	}
	return sub
}

// messages returns how many messages queue holds, invisible ones included.
func (e *env) messages(queue string) int {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	n, err := e.count(ctx, queue)
	if err != nil {
		e.t.Fatalf("count messages: %v", err)
	}
	return n
}

// visibleMessages returns the visible messages of queue.
func (e *env) visibleMessages(queue string) []storagetest.Snapshot {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	visible, err := e.visible(ctx, queue)
	if err != nil {
		e.t.Fatal(err)
	}
	return visible
}

// faults injects rules for the rest of the case (see env.inject).
func (e *env) faults(rules ...storagetest.Rule) {
	e.inject(rules...)
	e.t.Cleanup(func() { e.inject() })
}

// lifetimes returns how long each visible message of queue lives.
func (e *env) lifetimes(queue string) []time.Duration {
	e.t.Helper()
	if e.lifetime == nil {
		e.t.Fatal("message lifetimes need the real service")
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	lives, err := e.lifetime(ctx, queue)
	if err != nil {
		e.t.Fatal(err)
	}
	return lives
}

// texts returns the texts stored in queue.
func (e *env) texts(queue string) []string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	texts, err := e.text(ctx, queue)
	if err != nil {
		e.t.Fatal(err)
	}
	return texts
}

// put writes text straight into queue, as another tool would.
func (e *env) put(queue, text string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := e.raw.Queue(queue).Enqueue(ctx, text, 0, 0); err != nil {
		e.t.Fatalf("put a message into %q: %v", queue, err)
	}
}

// createQueue creates the (topic, group) queue the way the broker does, and
// returns its name.
func (e *env) createQueue(topic, group string) string {
	e.t.Helper()
	name := queueName(e.t, topic, group)
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := e.raw.Queue(name).Create(ctx, queueMetadata(topic, group)); err != nil {
		e.t.Fatalf("create queue %q: %v", name, err)
	}
	return name
}

// poisonRecords waits until the poison queue of queue holds want records,
// takes them (leasing them for a minute) and returns them decoded.
func (e *env) poisonRecords(queue string, want int) []PoisonRecord {
	e.t.Helper()
	poison := e.raw.Queue(poisonQueueNameFor(queue))
	var records []PoisonRecord
	var lastErr error
	eventually(e.t, waitLong, func() string {
		return fmt.Sprintf("%d poison records in %q, want %d (last error: %v)", len(records), poison.Name(), want, lastErr)
	}, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		msgs, err := poison.Dequeue(ctx, storage.MaxBatch, time.Minute)
		if err != nil {
			lastErr = err // the poison queue does not exist until the first record
			return false
		}
		for _, m := range msgs {
			var r PoisonRecord
			if err := json.Unmarshal([]byte(m.Text), &r); err != nil {
				e.t.Fatalf("poison message %q is not a PoisonRecord: %v", m.Text, err)
			}
			records = append(records, r)
		}
		return len(records) >= want
	})
	if len(records) != want {
		e.t.Fatalf("poison queue %q holds %d records, want %d: %+v", poison.Name(), len(records), want, records)
	}
	return records
}

// Waits. Every wait of the suite polls a condition until a deadline.
const (
	waitLong  = 20 * time.Second      // for anything that must happen eventually
	pollEvery = 10 * time.Millisecond // how often a condition is checked
)

// eventually checks cond every pollEvery until it holds, and fails the test
// with describe() if it does not within timeout.
func eventually(t testing.TB, timeout time.Duration, describe func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(pollEvery)
	defer ticker.Stop()
	for i := 0; i <= int(timeout/pollEvery); i++ {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		<-ticker.C
	}
	if cond() {
		return
	}
	t.Fatalf("not within %s: %s", timeout, describe())
}

// holds checks cond every pollEvery for the whole window and fails the test
// with describe() the first time it does not hold.
func holds(t testing.TB, window time.Duration, describe func() string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(window)
	ticker := time.NewTicker(pollEvery)
	defer ticker.Stop()
	for i := 0; i <= int(window/pollEvery); i++ {
		if !cond() {
			t.Fatalf("within %s: %s", window, describe())
		}
		if time.Now().After(end) {
			return
		}
		<-ticker.C
	}
}

// Naming: every case gets topics no other case uses, so cases share one
// Azurite and can run in parallel.

// newTopic returns a fresh topic that maps to the queue "<topic>-<group>".
func newTopic() string { return "c" + strings.ReplaceAll(uuid.New().String(), "-", "")[:14] }

func newID() string { return uuid.New().String() }

func queueName(t testing.TB, topic, group string) string {
	t.Helper()
	name, err := queueNameFor(topic, group)
	if err != nil {
		t.Fatalf("queue name for (%q, %q): %v", topic, group, err)
	}
	return name
}

// idHeader carries each test message's unique id.
const idHeader = "Conformance-Id"

func testMessage(id string) *broker.Message {
	return &broker.Message{Header: map[string]string{idHeader: id}, Body: []byte("body of " + id)}
}

// publishMessages publishes n uniquely identified messages and returns
// their ids.
func publishMessages(t testing.TB, b broker.Broker, topic string, n int, opts ...broker.PublishOption) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%03d-%s", i, newID())
		if err := b.Publish(topic, testMessage(ids[i]), opts...); err != nil {
			t.Fatalf("publish message %d of %d to %q: %v", i+1, n, topic, err)
		}
	}
	return ids
}

// delivery is one call of a handler.
type delivery struct {
	id       string // the idHeader of the message
	topic    string
	header   map[string]string
	body     []byte
	msgID    string // Event.MessageID
	count    int64  // Event.DequeueCount
	started  time.Time
	returned time.Time // zero while the handler runs
}

// recorder is a handler that records every delivery, then reacts to it.
type recorder struct {
	mu         sync.Mutex
	deliveries []delivery
	problems   []string
	running    int
	maxRunning int
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{}
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, p := range r.problems {
			t.Errorf("handler: %s", p)
		}
	})
	return r
}

// handler returns a broker.Handler that records each delivery and then
// returns react's result (nil react: succeed). react may panic.
func (r *recorder) handler(react func(ev Event, d delivery) error) broker.Handler {
	return func(e broker.Event) error {
		ev, ok := e.(Event)
		if !ok {
			r.problem("event %T is not an azqueue.Event", e)
			return errors.New("not an azqueue.Event")
		}
		m := ev.Message()
		d := delivery{
			id: m.Header[idHeader], topic: ev.Topic(), header: make(map[string]string, len(m.Header)),
			body: append([]byte(nil), m.Body...), msgID: ev.MessageID(), count: ev.DequeueCount(), started: time.Now(),
		}
		for k, v := range m.Header {
			d.header[k] = v
		}
		i := r.begin(d)
		defer r.end(i) // also when react panics
		if react == nil {
			return nil
		}
		return react(ev, d)
	}
}

func (r *recorder) begin(d delivery) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deliveries = append(r.deliveries, d)
	r.running++
	if r.running > r.maxRunning {
		r.maxRunning = r.running
	}
	return len(r.deliveries) - 1
}

func (r *recorder) end(i int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deliveries[i].returned = time.Now()
	r.running--
}

func (r *recorder) problem(format string, args ...interface{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

func (r *recorder) all() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.deliveries...)
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.deliveries)
}

// returnedCount is how many handler calls have returned.
func (r *recorder) returnedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, d := range r.deliveries {
		if !d.returned.IsZero() {
			n++
		}
	}
	return n
}

func (r *recorder) concurrency() (running, max int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running, r.maxRunning
}

// ids counts deliveries per message id.
func (r *recorder) ids() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make(map[string]int, len(r.deliveries))
	for _, d := range r.deliveries {
		ids[d.id]++
	}
	return ids
}

// waitDeliveries waits until the handler was called at least n times.
func (r *recorder) waitDeliveries(t testing.TB, n int, timeout time.Duration) []delivery {
	t.Helper()
	eventually(t, timeout, func() string { return fmt.Sprintf("%d deliveries, want %d", r.len(), n) },
		func() bool { return r.len() >= n })
	return r.all()
}

// waitIDs waits until every id was delivered at least once.
func (r *recorder) waitIDs(t testing.TB, ids []string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() string {
		return fmt.Sprintf("%d of %d messages delivered; missing %v", len(ids)-len(missing(r.ids(), ids)), len(ids), abbreviate(missing(r.ids(), ids)))
	}, func() bool { return len(missing(r.ids(), ids)) == 0 })
}

// missing returns the ids of want that got does not hold.
func missing(got map[string]int, want []string) []string {
	var out []string
	for _, id := range want {
		if got[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

// assertExactlyOnce fails unless got holds every id of want exactly once
// and nothing else.
func assertExactlyOnce(t testing.TB, what string, got map[string]int, want []string) {
	t.Helper()
	wanted := make(map[string]bool, len(want))
	for _, id := range want {
		wanted[id] = true
	}
	var lost, extra, twice []string
	for _, id := range want {
		if got[id] == 0 {
			lost = append(lost, id)
		}
	}
	for id, n := range got {
		switch {
		case !wanted[id]:
			extra = append(extra, id)
		case n > 1:
			twice = append(twice, fmt.Sprintf("%s×%d", id, n))
		}
	}
	if len(lost)+len(extra)+len(twice) > 0 {
		sort.Strings(extra)
		sort.Strings(twice)
		t.Fatalf("%s: want each of %d messages exactly once; lost %d %v, unexpected %d %v, duplicated %d %v",
			what, len(want), len(lost), abbreviate(lost), len(extra), abbreviate(extra), len(twice), abbreviate(twice))
	}
}

func abbreviate(ids []string) []string {
	if len(ids) > 5 {
		return append(ids[:5:5], fmt.Sprintf("… %d more", len(ids)-5))
	}
	return ids
}

// gate blocks a handler until the test opens it or the case ends.
type gate chan struct{}

func (g gate) open() { close(g) }

func (g gate) wait(e *env) {
	select {
	case <-g:
	case <-e.done:
	}
}

// work keeps a handler busy for d, as real work would (or until the case
// ends).
func work(e *env, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-e.done:
	}
}

// waitStats waits until b's counters satisfy cond: a counter moves just
// after the request it counts, so the queue can show the effect first.
func waitStats(t testing.TB, b *Broker, want string, cond func(Stats) bool) Stats {
	t.Helper()
	eventually(t, waitLong, func() string { return fmt.Sprintf("stats %s, want %s", b.Stats(), want) },
		func() bool { return cond(b.Stats()) })
	return b.Stats()
}

// in returns the environment for a subtest t: the same backend, with
// brokers and waiting handlers cleaned up when t ends.
func (e *env) in(t *testing.T) *env {
	sub := &env{
		t: t, features: e.features, connection: e.connection, raw: e.raw, count: e.count,
		lifetime: e.lifetime, text: e.text, visible: e.visible, inject: e.inject, struck: e.struck, requests: e.requests,
		fresh: e.fresh, fake: e.fake, azurite: e.azurite, done: make(chan struct{}),
	}
	t.Cleanup(sub.finish)
	return sub
}
