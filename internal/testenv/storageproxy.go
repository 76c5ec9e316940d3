package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

const (
	// proxyDialTimeout bounds the connection to Azurite.
	proxyDialTimeout = 5 * time.Second
	// proxyForwardTimeout bounds one exchange with Azurite, from sending the
	// request to having read the whole answer. Queue operations answer in
	// milliseconds; this only stops a wedged Azurite from holding a handler.
	proxyForwardTimeout = 30 * time.Second
	// proxyReadTimeout bounds reading a request's headers, and then its body,
	// from the client.
	proxyReadTimeout = 10 * time.Second
	// proxyIdleTimeout closes client connections idle for longer.
	proxyIdleTimeout = 60 * time.Second
	// maxProxiedBodyBytes bounds a request or response body the proxy holds
	// in memory. The largest queue bodies are a 32-message dequeue or a
	// 5000-queue list, a few megabytes at most.
	maxProxiedBodyBytes = 64 << 20
	// defaultStorageVersion is the x-ms-version of the proxy's own error
	// answers to requests that sent none: the version the azqueue SDK speaks.
	defaultStorageVersion = "2018-03-28"
	// azureServerHeader is the Server header Azure's queue service sends.
	azureServerHeader = "Windows-Azure-Queue/1.0 Microsoft-HTTPAPI/2.0"
)

// Op is the kind of a queue service request, as StorageProxy classifies it
// from method, path and query (path style: /<account>/<queue>/messages/<id>).
type Op string

// The kinds of queue service request StorageProxy tells apart.
const (
	OpDequeue     Op = "dequeue"      // GET /acct/q/messages (not peekonly=true)
	OpPeek        Op = "peek"         // GET /acct/q/messages?peekonly=true
	OpPut         Op = "put"          // POST /acct/q/messages
	OpUpdate      Op = "update"       // PUT /acct/q/messages/<id>?popreceipt=...
	OpDelete      Op = "delete"       // DELETE /acct/q/messages/<id>?popreceipt=...
	OpClear       Op = "clear"        // DELETE /acct/q/messages
	OpList        Op = "list"         // GET /acct?comp=list
	OpCreate      Op = "create"       // PUT /acct/q (no comp)
	OpDeleteQueue Op = "delete-queue" // DELETE /acct/q
	OpProperties  Op = "properties"   // GET or HEAD /acct/q?comp=metadata, PUT /acct/q?comp=metadata, and service-level ?restype=service&comp=properties|stats
	OpOther       Op = "other"        // anything else
)

// Fault is what StorageProxy does to a request a Rule picks.
type Fault int

// The faults StorageProxy can inject. ServerBusy, OperationTimedOut,
// ConnectionReset and LostRequest never reach Azurite; LostResponse and
// SlowResponse do, so the request takes effect although the client may
// never learn it.
const (
	// NoFault: only the rule's latency applies.
	NoFault Fault = iota
	// ServerBusy answers 503 with Azure's ServerBusy error (XML body,
	// x-ms-error-code, x-ms-request-id, x-ms-version headers) without
	// forwarding the request: what a throttled storage account answers.
	ServerBusy
	// OperationTimedOut answers 500 with Azure's OperationTimedOut error,
	// likewise without forwarding the request.
	OperationTimedOut
	// LostResponse forwards the request, lets Azurite apply it, then resets
	// the client's TCP connection, so the client never learns the outcome.
	// Go's http.Transport resends an idempotent request (GET, HEAD) once
	// when a reused connection fails like this, so a dequeue or peek can be
	// answered by that second try: the first one's messages stay invisible,
	// as they would with real Azure.
	LostResponse
	// SlowResponse forwards the request, lets Azurite apply it, and holds
	// the answer for Rule.Hold (or until the client goes away) before
	// writing it: an answer that arrives after the client's timeout.
	SlowResponse
	// ConnectionReset resets the client's connection before anything is
	// forwarded, so the request is not applied. Like LostResponse, it makes
	// Go's http.Transport resend an idempotent request on a reused
	// connection once.
	ConnectionReset
	// LostRequest holds the request for Rule.Hold (or until the client
	// goes away) without forwarding it, then resets the connection: a
	// request lost on its way to the service, which the client can only
	// give up on.
	LostRequest
)

// String returns the fault's Go name, for test messages.
func (f Fault) String() string {
	switch f {
	case NoFault:
		return "NoFault"
	case ServerBusy:
		return "ServerBusy"
	case OperationTimedOut:
		return "OperationTimedOut"
	case LostResponse:
		return "LostResponse"
	case SlowResponse:
		return "SlowResponse"
	case ConnectionReset:
		return "ConnectionReset"
	case LostRequest:
		return "LostRequest"
	}
	return "Fault(" + strconv.Itoa(int(f)) + ")"
}

// Rule says what StorageProxy does to the requests it matches.
type Rule struct {
	Ops        []Op          // kinds it matches; empty matches all
	Queue      string        // matches only requests to this queue (exact name; its messages included); "" matches all
	Latency    time.Duration // added before the request is forwarded (or answered)
	Jitter     time.Duration // a uniform random extra in [0, Jitter)
	Fault      Fault
	Share      float64       // probability that Fault strikes a matching request (0..1)
	Nth        []int         // Fault strikes exactly these matching requests, counted from 1 from when the rule was set (with Share 0)
	PerMessage bool          // Nth counts the requests about each message apart (by the message id of update and delete paths), e.g. the first 3 renewals of every message
	Hold       time.Duration // SlowResponse: how long the response is held
	RetryAfter time.Duration // ServerBusy and OperationTimedOut: sent as Retry-After, in whole seconds rounded up (0 sends none)
}

// matches reports whether the rule applies to a request of kind op to queue
// ("" for a request to the account).
func (r Rule) matches(op Op, queue string) bool {
	return (len(r.Ops) == 0 || slices.Contains(r.Ops, op)) && (r.Queue == "" || r.Queue == queue)
}

// problems returns what makes the rule not do what it seems to say; a rule
// whose fault can never strike is almost certainly a mistake in the test.
func (r Rule) problems() []string {
	var found []string
	if r.Fault < NoFault || r.Fault > LostRequest {
		found = append(found, "unknown fault "+r.Fault.String())
	}
	if math.IsNaN(r.Share) || r.Share < 0 || r.Share > 1 {
		found = append(found, fmt.Sprintf("Share %v is not a probability in [0, 1]", r.Share))
	}
	if r.Latency < 0 || r.Jitter < 0 || r.Hold < 0 || r.RetryAfter < 0 {
		found = append(found, "negative duration")
	}
	for _, n := range r.Nth {
		if n < 1 {
			found = append(found, fmt.Sprintf("Nth %d: requests are counted from 1", n))
		}
	}
	if r.Fault != NoFault && r.Share == 0 && len(r.Nth) == 0 {
		found = append(found, r.Fault.String()+" with neither Share nor Nth never strikes")
	}
	if r.Fault == NoFault && (r.Share != 0 || len(r.Nth) != 0) {
		found = append(found, "Share or Nth without a Fault does nothing")
	}
	if (r.Fault == SlowResponse || r.Fault == LostRequest) && r.Hold == 0 {
		found = append(found, r.Fault.String()+" without Hold does not hold anything")
	}
	return found
}

// ruleState is a rule with the number of requests it matched since it was
// set, which its Nth counts: in all, or per message with PerMessage.
type ruleState struct {
	Rule
	matched   int
	byMessage map[string]int
}

// count counts a matching request about message (empty for requests about
// none) and returns its number for Nth.
func (r *ruleState) count(message string) int {
	r.matched++
	if !r.PerMessage {
		return r.matched
	}
	if r.byMessage == nil {
		r.byMessage = make(map[string]int)
	}
	r.byMessage[message]++
	return r.byMessage[message]
}

// StorageProxy is an HTTP reverse proxy between a queue client and an
// Azurite that adds real Azure's latency and failures, as its rules say,
// and counts requests by kind. It forwards paths, queries, headers and
// bodies unchanged, so SharedKey signatures, which cover the path and
// headers but not the host, stay valid.
type StorageProxy struct {
	tb       testing.TB
	target   string // Azurite's host:port
	endpoint string
	connStr  string

	server    *http.Server
	transport *http.Transport
	served    chan struct{} // closed when server.Serve has returned

	// stopped is cancelled when the proxy stops, releasing every wait.
	stopped context.Context
	stop    context.CancelFunc
	// handlers counts the requests being handled, so stopping can wait for
	// them; Add happens only under mu while closed is false.
	handlers sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	active   int
	rules    []ruleState
	rng      *rand.Rand
	requests map[Op]int
	faults   map[Op]int
}

// StartStorageProxy starts a proxy on a free port of 127.0.0.1 in front of
// az and returns it; tb's cleanup stops it (closing every connection). It
// starts transparent: see SetRules.
func StartStorageProxy(tb testing.TB, az *Azurite) *StorageProxy {
	tb.Helper()
	azurite, err := url.Parse(az.Endpoint())
	if err != nil {
		tb.Fatalf("testenv: start storage proxy: parse Azurite endpoint %q: %v", az.Endpoint(), err)
	}
	// Listening on port 0 and keeping the listener leaves no window in which
	// another process could take the port, so FreePort is not needed.
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testenv: start storage proxy: listen on 127.0.0.1:0: %v", err)
	}
	p := newStorageProxy(tb)
	p.target = azurite.Host
	p.endpoint = "http://" + listener.Addr().String() + azurite.Path
	p.connStr = strings.Replace(az.ConnectionString(), "QueueEndpoint="+az.Endpoint(), "QueueEndpoint="+p.endpoint, 1)
	p.transport = &http.Transport{
		Proxy:                 nil, // an HTTP_PROXY of the environment must not see test traffic
		DialContext:           (&net.Dialer{Timeout: proxyDialTimeout}).DialContext,
		ResponseHeaderTimeout: proxyForwardTimeout,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       proxyIdleTimeout,
		// Decompressing would change the body and drop Content-Encoding
		// and Content-Length: the client must get Azurite's bytes.
		DisableCompression: true,
	}
	p.server = &http.Server{
		Handler:           http.HandlerFunc(p.handle),
		ReadHeaderTimeout: proxyReadTimeout,
		// No ReadTimeout or WriteTimeout: they would cut a SlowResponse
		// hold short. Stopping the proxy closes every connection instead.
		IdleTimeout: proxyIdleTimeout,
		ErrorLog:    log.New(proxyLog{p}, "", 0),
	}
	p.served = make(chan struct{})
	go func() {
		defer close(p.served)
		if err := p.server.Serve(listener); !errors.Is(err, http.ErrServerClosed) {
			p.logf("testenv: storage proxy on %s stopped serving: %v", p.endpoint, err)
		}
	}()
	tb.Cleanup(p.shutdown)
	return p
}

// newStorageProxy returns a proxy's rules and counters, not serving yet.
func newStorageProxy(tb testing.TB) *StorageProxy {
	stopped, stop := context.WithCancel(context.Background())
	return &StorageProxy{
		tb:       tb,
		stopped:  stopped,
		stop:     stop,
		rng:      rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		requests: map[Op]int{},
		faults:   map[Op]int{},
	}
}

// Endpoint returns the proxy's queue service URL of DevAccountName,
// "http://127.0.0.1:PORT/devstoreaccount1" (the path of Azurite's Endpoint).
func (p *StorageProxy) Endpoint() string { return p.endpoint }

// ConnectionString returns Azurite's connection string with QueueEndpoint
// set to the proxy's Endpoint.
func (p *StorageProxy) ConnectionString() string { return p.connStr }

// SetRules replaces the rules (none: a transparent proxy) and restarts their
// Nth counts. It is safe to call while requests flow: a request in flight
// keeps what the rules decided when it arrived. A rule that cannot do what
// it seems to say (a fault with neither Share nor Nth, a Share outside
// [0, 1], a SlowResponse without Hold) fails the test, and is set anyway.
func (p *StorageProxy) SetRules(rules ...Rule) {
	p.tb.Helper()
	states := make([]ruleState, len(rules))
	for i, r := range rules {
		for _, problem := range r.problems() {
			p.tb.Errorf("testenv: storage proxy: rule %d: %s", i+1, problem)
		}
		// Copies, so the caller reusing its slices cannot race with requests.
		r.Ops, r.Nth = slices.Clone(r.Ops), slices.Clone(r.Nth)
		states[i] = ruleState{Rule: r}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = states
}

// Requests returns how many requests of kind op reached the proxy since it
// started or since the last ResetCounts (of all kinds for ""), faulted ones
// included.
func (p *StorageProxy) Requests(op Op) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return countOf(p.requests, op)
}

// Faults returns how many requests of kind op (of all kinds for "") a Fault
// struck since the proxy started or since the last ResetCounts.
func (p *StorageProxy) Faults(op Op) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return countOf(p.faults, op)
}

// ResetCounts sets Requests and Faults back to zero. The rules' Nth counts
// are not touched: SetRules restarts them.
func (p *StorageProxy) ResetCounts() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.requests)
	clear(p.faults)
}

// Seed makes the random choices (Share, Jitter) repeatable: the same seed
// and the same sequence of requests give the same faults and delays.
func (p *StorageProxy) Seed(seed int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rng = rand.New(rand.NewPCG(uint64(seed), 0))
}

// countOf returns counts[op], or the sum of all counts for "".
func countOf(counts map[Op]int, op Op) int {
	if op != "" {
		return counts[op]
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	return total
}

// plan counts a request of kind op to queue and decides what happens to it:
// the delay is the sum of every matching rule's latency and jitter, and the
// first matching rule whose fault strikes decides the fault (a zero Rule if
// none does). Every matching rule counts the request and draws its Share,
// whatever an earlier rule decided, so that one rule's Nth and a seeded
// sequence do not depend on the other rules' outcomes.
func (p *StorageProxy) plan(op Op, queue, message string) (delay time.Duration, decided Rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests[op]++
	struck := false
	for i := range p.rules {
		r := &p.rules[i]
		if !r.matches(op, queue) {
			continue
		}
		n := r.count(message)
		delay += r.Latency
		if r.Jitter > 0 {
			delay += time.Duration(p.rng.Int64N(int64(r.Jitter)))
		}
		strikes := slices.Contains(r.Nth, n)
		if r.Share > 0 && p.rng.Float64() < r.Share {
			strikes = true
		}
		if strikes && r.Fault != NoFault && !struck {
			struck, decided = true, r.Rule
		}
	}
	if struck {
		p.faults[op]++
	}
	return delay, decided
}

// messageOf returns the message id an update or delete of kind op at u
// addresses, or "".
func messageOf(op Op, u *url.URL) string {
	if op != OpUpdate && op != OpDelete {
		return ""
	}
	return u.Path[strings.LastIndex(u.Path, "/")+1:]
}

// classify returns the kind of a queue service request and the queue it
// addresses ("" for requests to the account). Paths are path style,
// /<account>[/<queue>[/messages[/<id>]]]; anything it does not recognise is
// OpOther.
func classify(method string, u *url.URL) (Op, string) {
	path := strings.TrimPrefix(u.Path, "/")
	path = strings.TrimSuffix(path, "/")
	segments := strings.Split(path, "/")
	if segments[0] == "" {
		return OpOther, ""
	}
	query := u.Query()
	comp := query.Get("comp")
	switch len(segments) {
	case 1:
		switch {
		case comp == "list" && method == http.MethodGet:
			return OpList, ""
		case query.Get("restype") == "service" && comp == "properties" && (method == http.MethodGet || method == http.MethodPut):
			return OpProperties, ""
		case query.Get("restype") == "service" && comp == "stats" && method == http.MethodGet:
			return OpProperties, ""
		}
		return OpOther, ""
	case 2:
		queue := segments[1]
		switch {
		case !query.Has("comp") && method == http.MethodPut:
			return OpCreate, queue
		case !query.Has("comp") && method == http.MethodDelete:
			return OpDeleteQueue, queue
		case comp == "metadata" && (method == http.MethodGet || method == http.MethodHead || method == http.MethodPut):
			return OpProperties, queue
		}
		return OpOther, queue
	case 3:
		queue := segments[1]
		if segments[2] != "messages" {
			return OpOther, queue
		}
		switch method {
		case http.MethodGet:
			if strings.EqualFold(query.Get("peekonly"), "true") {
				return OpPeek, queue
			}
			return OpDequeue, queue
		case http.MethodPost:
			return OpPut, queue
		case http.MethodDelete:
			return OpClear, queue
		}
		return OpOther, queue
	case 4:
		queue := segments[1]
		if segments[2] != "messages" || segments[3] == "" || !query.Has("popreceipt") {
			return OpOther, queue
		}
		switch method {
		case http.MethodPut:
			return OpUpdate, queue
		case http.MethodDelete:
			return OpDelete, queue
		}
		return OpOther, queue
	}
	return OpOther, segments[1]
}

// handle handles one client request: count and classify it, wait the
// rules' latency, then fault it or forward it to Azurite.
func (p *StorageProxy) handle(w http.ResponseWriter, r *http.Request) {
	if !p.enter() {
		p.resetConnection(w)
		return
	}
	defer p.leave()
	op, queue := classify(r.Method, r.URL)
	delay, rule := p.plan(op, queue, messageOf(op, r.URL))

	// The request ends when the client goes away or the proxy stops.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(p.stopped, cancel)()

	// Reading the body before waiting also lets net/http notice a client
	// that hangs up during the wait: it watches the connection only once
	// the body is consumed.
	body, err := readRequestBody(w, r)
	if errors.Is(err, errBodyTooLarge) {
		http.Error(w, "testenv: storage proxy: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	if err != nil {
		// The client broke off its own request; the reset only makes sure
		// nothing half-read stays on the connection.
		p.resetConnection(w)
		return
	}
	// Returning without an answer would make net/http send an empty 200,
	// so a request given up (the client gone, the proxy stopping) ends
	// with a reset, as the connection would end if it broke.
	if !wait(ctx, delay) {
		p.resetConnection(w)
		return
	}
	switch rule.Fault {
	case ServerBusy:
		writeAzureError(w, r, http.StatusServiceUnavailable, "ServerBusy", "The server is currently unable to receive requests. Please retry your request.", rule.RetryAfter)
		return
	case OperationTimedOut:
		writeAzureError(w, r, http.StatusInternalServerError, "OperationTimedOut", "The operation could not be completed within the permitted time.", rule.RetryAfter)
		return
	case ConnectionReset:
		p.resetConnection(w)
		return
	case LostRequest:
		wait(ctx, rule.Hold)
		p.resetConnection(w)
		return
	}

	answer, err := p.forward(ctx, r, body)
	if err != nil {
		// To the client, an Azurite it cannot reach through the proxy must
		// look like one it cannot reach directly: a network failure, not an
		// HTTP answer its retry policy would judge differently.
		if ctx.Err() == nil {
			p.logf("testenv: storage proxy: %s %s: %v; resetting the client's connection", r.Method, r.URL.Path, err)
		}
		p.resetConnection(w)
		return
	}
	switch rule.Fault {
	case LostResponse:
		p.resetConnection(w)
		return
	case SlowResponse:
		if !wait(ctx, rule.Hold) {
			p.resetConnection(w)
			return
		}
	}
	answer.writeTo(w, r.Method)
}

// enter registers a request being handled; it returns false once the proxy
// is stopping.
func (p *StorageProxy) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.handlers.Add(1)
	p.active++
	return true
}

// leave marks the end of a request enter registered.
func (p *StorageProxy) leave() {
	p.mu.Lock()
	p.active--
	p.mu.Unlock()
	p.handlers.Done()
}

// activeRequests returns how many requests are being handled right now, so
// tests can prove a handler ends with its client.
func (p *StorageProxy) activeRequests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.active
}

// shutdown stops the proxy: no new requests, every wait released, the listener
// and every connection closed. It waits, bounded, for the handlers and the
// server to finish.
func (p *StorageProxy) shutdown() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.stop()
	if err := p.server.Close(); err != nil {
		p.tb.Errorf("testenv: stop storage proxy on %s: %v", p.endpoint, err)
	}
	finished := make(chan struct{})
	go func() {
		p.handlers.Wait()
		<-p.served
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(stopTimeout):
		p.tb.Errorf("testenv: stop storage proxy on %s: %d requests still being handled after %v", p.endpoint, p.activeRequests(), stopTimeout)
	}
	p.transport.CloseIdleConnections()
}

// logf logs to the test unless the proxy has stopped: testing.T panics on a
// log call after its test ended, and a connection's goroutine can outlive it.
func (p *StorageProxy) logf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.tb.Logf(format, args...)
	}
}

// errorf is logf failing the test.
func (p *StorageProxy) errorf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.tb.Errorf(format, args...)
	}
}

// proxyLog sends net/http's own complaints about the proxy's connections to
// the test log.
type proxyLog struct{ p *StorageProxy }

// Write logs one message of the server's error log.
func (l proxyLog) Write(b []byte) (int, error) {
	l.p.logf("testenv: storage proxy: %s", strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// errBodyTooLarge marks a body over maxProxiedBodyBytes.
var errBodyTooLarge = fmt.Errorf("body over %d bytes", maxProxiedBodyBytes)

// readRequestBody reads the whole request body, bounded in size and time.
func readRequestBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rc := http.NewResponseController(w)
	// Errors are ignored: they only mean the connection cannot take a
	// deadline, and the body is then read without one.
	_ = rc.SetReadDeadline(time.Now().Add(proxyReadTimeout))
	body, err := io.ReadAll(io.LimitReader(r.Body, maxProxiedBodyBytes+1))
	// No deadline while the handler waits: net/http's watch for a client
	// hanging up would take it for one.
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	if len(body) > maxProxiedBodyBytes {
		return nil, fmt.Errorf("read request body: %w", errBodyTooLarge)
	}
	return body, nil
}

// wait waits for d and reports whether ctx is still live afterwards.
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// hopByHopHeaders describe one connection, not the message, so a proxy
// must not pass them on (RFC 9110, section 7.6.1).
var hopByHopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// endToEndHeaders returns a copy of h without its hop-by-hop headers.
func endToEndHeaders(h http.Header) http.Header {
	out := h.Clone()
	if out == nil {
		out = http.Header{}
	}
	for _, field := range h.Values("Connection") {
		for name := range strings.SplitSeq(field, ",") {
			out.Del(strings.TrimSpace(name))
		}
	}
	for _, name := range hopByHopHeaders {
		out.Del(name)
	}
	return out
}

// azuriteAnswer is Azurite's whole answer to a forwarded request, read
// before anything is written so that a fault can still withhold it.
type azuriteAnswer struct {
	status int
	header http.Header
	body   []byte
}

// forward sends the request to Azurite with path, query, headers and body
// unchanged and reads its whole answer. net/http's Transport, unlike its
// Client, follows no redirects.
func (p *StorageProxy) forward(ctx context.Context, r *http.Request, body []byte) (*azuriteAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, proxyForwardTimeout)
	defer cancel()
	target := &url.URL{Scheme: "http", Host: p.target, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	out, err := http.NewRequestWithContext(ctx, r.Method, target.String(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("forward to Azurite: %w", err)
	}
	out.Header = endToEndHeaders(r.Header)
	if _, ok := out.Header["User-Agent"]; !ok {
		// An empty value keeps the Transport from adding its own.
		out.Header.Set("User-Agent", "")
	}
	// The client's Host, so Azurite describes itself (in a List Queues
	// answer, say) as the client sees it.
	out.Host = r.Host
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		return nil, fmt.Errorf("forward to Azurite: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxProxiedBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("forward to Azurite: read answer: %w", err)
	}
	if len(answer) > maxProxiedBodyBytes {
		return nil, fmt.Errorf("forward to Azurite: answer %w", errBodyTooLarge)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 999 {
		// http.ResponseWriter panics on a status it cannot write.
		return nil, fmt.Errorf("forward to Azurite: answer with status %d cannot be relayed", resp.StatusCode)
	}
	header := endToEndHeaders(resp.Header)
	if resp.ContentLength >= 0 && header.Get("Content-Length") == "" {
		header.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	return &azuriteAnswer{status: resp.StatusCode, header: header, body: answer}, nil
}

// writeTo writes the answer to the client as Azurite gave it.
func (a *azuriteAnswer) writeTo(w http.ResponseWriter, method string) {
	for name, values := range a.header {
		w.Header()[name] = values
	}
	w.WriteHeader(a.status)
	if method != http.MethodHead {
		// An error here means the client went away; nothing is left to do.
		_, _ = w.Write(a.body)
	}
}

// writeAzureError answers like Azure's queue service when it fails a
// request itself: status, error code header and XML error body.
func writeAzureError(w http.ResponseWriter, r *http.Request, status int, code, message string, retryAfter time.Duration) {
	requestID := uuid.New().String()
	version := r.Header.Get("x-ms-version")
	if version == "" {
		version = defaultStorageVersion
	}
	// code, message and requestID hold no XML special characters, and the
	// newlines in Message are Azure's own.
	body := fmt.Sprintf(`<?xml version="1.0" encoding="utf-8"?><Error><Code>%s</Code><Message>%s`+"\nRequestId:%s\nTime:%s</Message></Error>",
		code, message, requestID, time.Now().UTC().Format("2006-01-02T15:04:05.0000000Z"))
	h := w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Server", azureServerHeader)
	h.Set("x-ms-error-code", code)
	h.Set("x-ms-request-id", requestID)
	h.Set("x-ms-version", version)
	if id := r.Header.Get("x-ms-client-request-id"); id != "" {
		h.Set("x-ms-client-request-id", id)
	}
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64(math.Ceil(retryAfter.Seconds())), 10))
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, body)
	}
}

// resetConnection resets the client's TCP connection: with SO_LINGER 0,
// close sends RST instead of FIN, so the client's next read fails with
// "connection reset by peer" whatever it had sent.
func (p *StorageProxy) resetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Only an HTTP/2 connection or an answer already begun refuses; the
		// proxy serves neither, so this is a bug in the proxy.
		p.errorf("testenv: storage proxy: reset the client's connection: %v", err)
		http.Error(w, "testenv: storage proxy: cannot reset the connection", http.StatusBadGateway)
		return
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = conn.Close()
}
