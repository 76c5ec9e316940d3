//go:build faults

package faults

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdk "github.com/Azure/azure-storage-queue-go/azqueue"
	"github.com/golang/protobuf/proto"
	"github.com/micro/go-micro/v2/broker"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue"
	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
	"github.com/poc-go-micro/poc-go-micro/proto/example"
	"github.com/poc-go-micro/poc-go-micro/server/subscriber"
)

// Bounds of the waits. Generous, because they only matter when something
// is broken and a loaded CI machine must not turn slowness into failures;
// the assertions on timing that matter are separate and tighter.
const (
	startTimeout   = 60 * time.Second  // a server up, registered and subscribed
	clientTimeout  = 30 * time.Second  // one client run
	stopTimeout    = 60 * time.Second  // a graceful stop
	drainTimeout   = 180 * time.Second // thousands of events consumed
	requestTimeout = 10 * time.Second  // one request of the test's own SDK client
	pollEvery      = 50 * time.Millisecond
)

// stack is one test's etcd, Azurite, binaries and what its servers logged.
type stack struct {
	t       *testing.T
	etcd    *testenv.Etcd
	azurite *testenv.Azurite
	bin     string
	service string // the servers' registered name, unique per test
	events  *consumption
	// registry is the etcd endpoints the binaries use: the test's etcd,
	// or a cluster's members.
	registry string
	// connection is the connection string the binaries and the test's
	// publisher use: Azurite's, or its proxy's (throughProxy).
	connection string
	// proxy is the Azure-like network in front of Azurite, nil without one.
	proxy *testenv.StorageProxy
}

func newStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{
		t:       t,
		bin:     testenv.BuildBinaries(t),
		events:  newConsumption(t),
		etcd:    testenv.StartEtcd(t),
		azurite: testenv.StartAzurite(t),
		service: "poc.faults." + strings.ToLower(strings.NewReplacer("/", ".", "_", "-").Replace(t.Name())),
	}
	s.registry, s.connection = s.etcd.Endpoint(), s.azurite.ConnectionString()
	return s
}

// throughProxy puts an Azure-like network (testenv.StorageProxy) between
// Azurite and the binaries and publishers started from now on, and returns
// it; the test's own checks of the queues still go to Azurite directly.
func (s *stack) throughProxy() *testenv.StorageProxy {
	s.proxy = testenv.StartStorageProxy(s.t, s.azurite)
	s.proxy.Seed(1)
	s.connection = s.proxy.ConnectionString()
	return s.proxy
}

// env is what every binary gets: the test's queue service, plus extra
// settings such as AZQUEUE_* variables.
func (s *stack) env(extra ...string) []string {
	return append([]string{"AZURE_STORAGE_CONNECTION_STRING=" + s.connection}, extra...)
}

// args prefixes a binary's own arguments with the test's registry.
func (s *stack) args(own ...string) []string {
	return append([]string{"--registry=etcd", "--registry_address=" + s.registry}, own...)
}

// startServer starts a server process called name (for messages and the
// consumption records) on a free loopback port, with env added to the
// stack's, and waits until it has registered and subscribed.
func (s *stack) startServer(name string, env []string, own ...string) *testenv.Process {
	s.t.Helper()
	args := s.args(append([]string{"--server_name=" + s.service, "--server_address=127.0.0.1:0"}, own...)...)
	p := testenv.StartProcess(s.t, name, s.bin+"/server", args, s.env(env...))
	s.events.watch(name, p)
	p.WaitForOutput(s.t, "Subscribing to topic", startTimeout)
	return p
}

// start starts a client binary without waiting for it.
func (s *stack) start(binary string, env []string, own ...string) *testenv.Process {
	s.t.Helper()
	return testenv.StartProcess(s.t, binary, s.bin+"/"+binary, s.args(own...), s.env(env...))
}

// run runs a client binary to completion and returns it with its exit code.
func (s *stack) run(binary string, own ...string) (*testenv.Process, int) {
	s.t.Helper()
	p := s.start(binary, nil, own...)
	code, err := p.Wait(clientTimeout)
	if err != nil {
		s.t.Fatalf("%s %v: %v\n%s", binary, own, err, p.Output())
	}
	return p, code
}

// stopServer sends SIGTERM and waits for a clean exit.
func stopServer(t *testing.T, p *testenv.Process) {
	t.Helper()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(stopTimeout)
	if err != nil || code != 0 {
		t.Fatalf("server after SIGTERM: exit %d, %v\n%s", code, err, tailOf(p.Output(), 30))
	}
}

// killServer sends SIGKILL and waits for the process to be gone.
func killServer(t *testing.T, p *testenv.Process) time.Time {
	t.Helper()
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	if _, err := p.Wait(stopTimeout); err != nil {
		t.Fatal(err)
	}
	return at
}

// assertClean fails if a process printed a panic or a stack trace.
func assertClean(t *testing.T, name string, p *testenv.Process) {
	t.Helper()
	for _, bad := range []string{"panic:", "goroutine ", "runtime error", "DATA RACE"} {
		if strings.Contains(p.Output(), bad) {
			t.Errorf("%s printed %q:\n%s", name, bad, tailOf(p.Output(), 40))
		}
	}
}

// tailOf returns the last n lines of s.
func tailOf(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// linesOf returns the lines of s containing substring.
func linesOf(s, substring string) []string {
	var found []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, substring) {
			found = append(found, line)
		}
	}
	return found
}

// --- what the servers handled --------------------------------------------

// handling is one event a server process logged as received.
type handling struct {
	say      string
	microID  string
	delivery int       // the broker's delivery count: 1, or more for a redelivery
	server   string    // the process's name
	at       time.Time // when the test read the line (within pollEvery)
}

// receivedLine matches the subscriber's log line, e.g.
//
//	received event "load #7" (#3, Micro-Id=4f0c…, Micro-Topic=example.events, Micro-From-Service=poc.faults)
var receivedLine = regexp.MustCompile(regexp.QuoteMeta(subscriber.ReceivedMarker) + ` ("(?:[^"\\]|\\.)*") \(#\d+(.*)\)\s*$`)

// microIDHeader picks the Micro-Id out of the headers part of receivedLine,
// and deliveryHeader the delivery count, which the line shows only for a
// redelivery.
var (
	microIDHeader  = regexp.MustCompile(`, Micro-Id=([^,]*)`)
	deliveryHeader = regexp.MustCompile(`, ` + regexp.QuoteMeta(subscriber.DeliveryHeader) + `=(\d+)`)
)

// consumption collects what the server processes of one test logged as
// received, timestamping each line as it appears.
type consumption struct {
	t    *testing.T
	stop chan struct{}
	wg   sync.WaitGroup

	mu        sync.Mutex
	handlings []handling
	lines     map[string][]timedLine // every line of every server, by server
}

// timedLine is one line of a process's output and when the test read it.
type timedLine struct {
	text string
	at   time.Time
}

func newConsumption(t *testing.T) *consumption {
	c := &consumption{t: t, stop: make(chan struct{}), lines: make(map[string][]timedLine)}
	t.Cleanup(func() {
		close(c.stop)
		c.wg.Wait()
	})
	return c
}

// watch follows p's output until it exits or the test ends.
func (c *consumption) watch(name string, p *testenv.Process) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ticker := time.NewTicker(pollEvery / 2)
		defer ticker.Stop()
		offset, partial := 0, ""
		for {
			exited := p.Exited()
			chunk := p.OutputFrom(offset)
			offset += len(chunk)
			lines := strings.Split(partial+chunk, "\n")
			partial = lines[len(lines)-1]
			if exited {
				lines, partial = append(lines, partial), ""
			} else {
				lines = lines[:len(lines)-1]
			}
			c.parse(name, lines, time.Now())
			if exited {
				return
			}
			select {
			case <-c.stop:
				return
			case <-ticker.C:
			}
		}
	}()
}

func (c *consumption) parse(server string, lines []string, at time.Time) {
	var found []handling
	timed := make([]timedLine, 0, len(lines))
	for _, line := range lines {
		timed = append(timed, timedLine{text: line, at: at})
		m := receivedLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		say, err := strconv.Unquote(m[1])
		if err != nil {
			continue
		}
		h := handling{say: say, server: server, at: at, delivery: 1}
		if id := microIDHeader.FindStringSubmatch(m[2]); id != nil {
			h.microID = id[1]
		}
		if d := deliveryHeader.FindStringSubmatch(m[2]); d != nil {
			h.delivery, _ = strconv.Atoi(d[1])
		}
		found = append(found, h)
	}
	c.mu.Lock()
	c.handlings = append(c.handlings, found...)
	c.lines[server] = append(c.lines[server], timed...)
	c.mu.Unlock()
}

// linesOf returns the lines of server's output containing substring, with
// the time each was read.
func (c *consumption) linesOf(server, substring string) []timedLine {
	c.mu.Lock()
	defer c.mu.Unlock()
	var found []timedLine
	for _, l := range c.lines[server] {
		if strings.Contains(l.text, substring) {
			found = append(found, l)
		}
	}
	return found
}

// all returns every handling so far, in the order seen.
func (c *consumption) all() []handling {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]handling(nil), c.handlings...)
}

// count returns how many handlings there were so far.
func (c *consumption) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.handlings)
}

// countBy returns how many handlings the process named server logged.
func (c *consumption) countBy(server string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, h := range c.handlings {
		if h.server == server {
			n++
		}
	}
	return n
}

// handledSay returns the first handling of say, if any.
func (c *consumption) handledSay(say string) (handling, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range c.handlings {
		if h.say == say {
			return h, true
		}
	}
	return handling{}, false
}

// waitForAll waits until every one of says was handled at least once and
// returns how long that took; it fails the test after timeout, naming a
// few missing events.
func (c *consumption) waitForAll(says []string, timeout time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		missing := c.tally(says).missing
		if len(missing) == 0 {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("after %s, %d of %d events were never handled, e.g. %q", timeout, len(missing), len(says), missing[:min(5, len(missing))])
		}
		time.Sleep(pollEvery)
	}
}

// waitForCount waits until at least n events were handled.
func (c *consumption) waitForCount(n int, timeout time.Duration) {
	c.t.Helper()
	testenv.WaitFor(c.t, timeout, fmt.Sprintf("%d events handled (so far %d)", n, c.count()), func() bool { return c.count() >= n })
}

// tally compares the handlings with the events published.
type tally struct {
	published   int
	handled     int            // handlings of published events, duplicates included
	unique      int            // published events handled at least once
	duplicates  int            // handled - unique: redeliveries of handled events
	idConflicts int            // events handled under more than one Micro-Id
	unexpected  []string       // handled events that were never published
	missing     []string       // published events never handled
	byServer    map[string]int // handlings per server process
	redelivered []string       // events handled more than once
	// lateDelivered are the handlings of events the broker had delivered
	// before (delivery count above 1): handled then, or leased and not
	// handled, by a process that died or stopped, or failed by a handler.
	lateDelivered []handling
	// lastFirst is, per server, the time of its last handling of a first
	// delivery.
	lastFirst map[string]time.Time
	bySay     map[string][]handling
}

func (c *consumption) tally(says []string) tally {
	published := make(map[string]bool, len(says))
	for _, s := range says {
		published[s] = true
	}
	ids := make(map[string]map[string]bool)
	seen := make(map[string]int)
	r := tally{published: len(says), byServer: make(map[string]int), lastFirst: make(map[string]time.Time), bySay: make(map[string][]handling)}
	for _, h := range c.all() {
		if !published[h.say] {
			r.unexpected = append(r.unexpected, h.say)
			continue
		}
		r.handled++
		r.byServer[h.server]++
		r.bySay[h.say] = append(r.bySay[h.say], h)
		if h.delivery > 1 {
			r.lateDelivered = append(r.lateDelivered, h)
		} else {
			r.lastFirst[h.server] = h.at
		}
		seen[h.say]++
		if ids[h.say] == nil {
			ids[h.say] = make(map[string]bool)
		}
		ids[h.say][h.microID] = true
	}
	for _, s := range says {
		switch n := seen[s]; {
		case n == 0:
			r.missing = append(r.missing, s)
		case n > 1:
			r.redelivered = append(r.redelivered, s)
		}
		if len(ids[s]) > 1 {
			r.idConflicts++
		}
	}
	r.unique = len(says) - len(r.missing)
	r.duplicates = r.handled - r.unique
	return r
}

// handlingsOf returns the handlings of say, in order.
func (r tally) handlingsOf(say string) []handling {
	return r.bySay[say]
}

// --- publishing ------------------------------------------------------------

// eventSays returns the texts client-azqueue-pub would send for say:
// "<say> #1" to "<say> #n".
func eventSays(say string, n int) []string {
	says := make([]string, n)
	for i := range says {
		says[i] = fmt.Sprintf("%s #%d", say, i+1)
	}
	return says
}

// publishEvents publishes n example.Message events "<say> #i" to the
// events topic through the real broker, from the test process and in
// parallel, with the headers go-micro's client sets, and returns their
// texts. It is the bulk publisher of the load scenarios; client-azqueue-pub
// publishes one event at a time.
func (s *stack) publishEvents(say string, n int) []string {
	s.t.Helper()
	b := azqueue.NewBroker(azqueue.ConnectionString(s.connection))
	if err := b.Connect(); err != nil {
		s.t.Fatalf("connect the test's publisher: %v", err)
	}
	defer b.Disconnect()

	says := eventSays(say, n)
	const workers = 8
	next := make(chan string)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for text := range next {
				if err := publishOne(b, text); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for _, text := range says {
		select {
		case next <- text:
		case err := <-errs:
			close(next)
			wg.Wait()
			s.t.Fatalf("publish the test's events: %v", err)
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		s.t.Fatalf("publish the test's events: %v", err)
	default:
	}
	return says
}

// publishOne publishes one event as go-micro's gRPC client does.
func publishOne(b broker.Broker, say string) error {
	body, err := proto.Marshal(&example.Message{Say: say})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	return b.Publish(example.EventsTopic, &broker.Message{
		Header: map[string]string{
			"Content-Type":       "application/grpc+proto",
			"Micro-Topic":        example.EventsTopic,
			"Micro-From-Service": "poc.faults",
		},
		Body: body,
	}, broker.PublishContext(ctx))
}

// --- the queues, seen through the raw SDK -----------------------------------

// queueService returns the test Azurite's queue service, for the raw SDK.
func (s *stack) queueService() sdk.ServiceURL {
	s.t.Helper()
	return s.azurite.Service(s.t, sdk.PipelineOptions{Retry: sdk.RetryOptions{MaxTries: 2, TryTimeout: requestTimeout}})
}

// eventsQueue returns the queue of the events topic's default group: the
// queue whose metadata names the topic and the group.
func (s *stack) eventsQueue() sdk.QueueURL {
	s.t.Helper()
	svc := s.queueService()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	resp, err := svc.ListQueuesSegment(ctx, sdk.Marker{}, sdk.ListQueuesSegmentOptions{
		Prefix: "example-events-", Detail: sdk.ListQueuesSegmentDetails{Metadata: true},
	})
	if err != nil {
		s.t.Fatalf("list the queues of topic %q: %v", example.EventsTopic, err)
	}
	var names []string
	for _, q := range resp.QueueItems {
		if q.Metadata["azqueuetopic"] == url.PathEscape(example.EventsTopic) && q.Metadata["azqueuegroup"] == azqueue.DefaultGroup {
			names = append(names, q.Name)
		}
	}
	if len(names) != 1 {
		s.t.Fatalf("want one queue of topic %q group %q, found %v", example.EventsTopic, azqueue.DefaultGroup, names)
	}
	return svc.NewQueueURL(names[0])
}

// poisonQueue returns the events queue's poison queue.
func (s *stack) poisonQueue() sdk.QueueURL {
	s.t.Helper()
	q := s.eventsQueue()
	u := q.URL()
	return s.queueService().NewQueueURL(strings.TrimPrefix(u.Path, "/"+testenv.DevAccountName+"/") + "-poison")
}

// depth returns the queue's approximate message count, which includes
// invisible (leased) messages: 0 means nothing is left and nothing is
// stranded. A queue that does not exist has depth 0.
func (s *stack) depth(q sdk.QueueURL) int {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	props, err := q.GetProperties(ctx)
	if se, ok := err.(sdk.StorageError); ok && se.ServiceCode() == sdk.ServiceCodeQueueNotFound {
		return 0
	}
	if err != nil {
		s.t.Fatalf("get the properties of queue %s: %v", q.String(), err)
	}
	return int(props.ApproximateMessagesCount())
}

// waitEmpty waits until q holds no message, visible or not, and returns how
// long that took.
func (s *stack) waitEmpty(q sdk.QueueURL, timeout time.Duration) time.Duration {
	s.t.Helper()
	return testenv.WaitFor(s.t, timeout, "the events queue to be empty (no message left, none invisible)", func() bool { return s.depth(q) == 0 })
}

// poisonRecords returns the records in the events queue's poison queue
// (at most 32, which the scenarios stay under), without removing them.
func (s *stack) poisonRecords() []poisonEntry {
	s.t.Helper()
	q := s.poisonQueue()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	resp, err := q.NewMessagesURL().Peek(ctx, 32)
	if se, ok := err.(sdk.StorageError); ok && se.ServiceCode() == sdk.ServiceCodeQueueNotFound {
		return nil
	}
	if err != nil {
		s.t.Fatalf("peek the poison queue: %v", err)
	}
	var records []poisonEntry
	for i := int32(0); i < resp.NumMessages(); i++ {
		records = append(records, decodePoison(resp.Message(i).Text))
	}
	sort.Slice(records, func(i, j int) bool { return records[i].MessageID < records[j].MessageID })
	return records
}
