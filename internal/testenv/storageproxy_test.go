package testenv

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-storage-queue-go/azqueue"
)

// proxyTestTimeout bounds every request of these tests that is not meant to
// time out.
const proxyTestTimeout = 10 * time.Second

func TestStorageProxyClassifiesEveryOperation(t *testing.T) {
	tests := []struct {
		method, target string
		wantOp         Op
		wantQueue      string
	}{
		{method: "GET", target: "/acct/q/messages?numofmessages=32&visibilitytimeout=30", wantOp: OpDequeue, wantQueue: "q"},
		{method: "GET", target: "/acct/q/messages?peekonly=true&numofmessages=1", wantOp: OpPeek, wantQueue: "q"},
		{method: "GET", target: "/acct/q/messages?peekonly=false", wantOp: OpDequeue, wantQueue: "q"},
		{method: "POST", target: "/acct/q/messages?visibilitytimeout=0", wantOp: OpPut, wantQueue: "q"},
		{method: "PUT", target: "/acct/q/messages/0f1e?popreceipt=AQ%3D%3D&visibilitytimeout=30", wantOp: OpUpdate, wantQueue: "q"},
		{method: "DELETE", target: "/acct/q/messages/0f1e?popreceipt=AQ%3D%3D", wantOp: OpDelete, wantQueue: "q"},
		{method: "DELETE", target: "/acct/q/messages", wantOp: OpClear, wantQueue: "q"},
		{method: "GET", target: "/acct?comp=list&prefix=a", wantOp: OpList},
		{method: "GET", target: "/acct/?comp=list", wantOp: OpList},
		{method: "PUT", target: "/acct/q", wantOp: OpCreate, wantQueue: "q"},
		{method: "PUT", target: "/acct/q?timeout=31", wantOp: OpCreate, wantQueue: "q"},
		{method: "DELETE", target: "/acct/q", wantOp: OpDeleteQueue, wantQueue: "q"},
		{method: "GET", target: "/acct/q?comp=metadata", wantOp: OpProperties, wantQueue: "q"},
		{method: "HEAD", target: "/acct/q?comp=metadata", wantOp: OpProperties, wantQueue: "q"},
		{method: "PUT", target: "/acct/q?comp=metadata", wantOp: OpProperties, wantQueue: "q"},
		{method: "GET", target: "/acct?restype=service&comp=properties", wantOp: OpProperties},
		{method: "PUT", target: "/acct/?restype=service&comp=properties", wantOp: OpProperties},
		{method: "GET", target: "/acct?restype=service&comp=stats", wantOp: OpProperties},
		// Requests it does not know are OpOther, still with their queue.
		{method: "GET", target: "/acct/q?comp=acl", wantOp: OpOther, wantQueue: "q"},
		{method: "PUT", target: "/acct/q/messages/0f1e", wantOp: OpOther, wantQueue: "q"},
		{method: "GET", target: "/acct/q/messages/0f1e?popreceipt=AQ", wantOp: OpOther, wantQueue: "q"},
		{method: "PATCH", target: "/acct/q/messages", wantOp: OpOther, wantQueue: "q"},
		{method: "GET", target: "/acct/q/letters", wantOp: OpOther, wantQueue: "q"},
		{method: "GET", target: "/acct/q/messages/0f1e/extra?popreceipt=AQ", wantOp: OpOther, wantQueue: "q"},
		{method: "GET", target: "/acct/q", wantOp: OpOther, wantQueue: "q"},
		{method: "GET", target: "/acct", wantOp: OpOther},
		{method: "DELETE", target: "/acct?comp=list", wantOp: OpOther},
		{method: "GET", target: "/", wantOp: OpOther},
		{method: "GET", target: "", wantOp: OpOther},
		{method: "GET", target: "//q/messages", wantOp: OpOther},
		{method: "GET", target: "/acct/q/messages?%zz=1;peekonly=true", wantOp: OpDequeue, wantQueue: "q"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			u, err := url.Parse(tt.target)
			if err != nil {
				t.Fatalf("parse %q: %v", tt.target, err)
			}
			op, queue := classify(tt.method, u)
			if op != tt.wantOp || queue != tt.wantQueue {
				t.Errorf("classify(%s %s) = %q, queue %q; want %q, queue %q", tt.method, tt.target, op, queue, tt.wantOp, tt.wantQueue)
			}
		})
	}
}

func TestStorageProxyIsTransparentWithoutRules(t *testing.T) {
	t.Parallel()
	env := startProxiedAzurite(t)
	ctx := proxyTestContext(t)
	const name = "transparent"
	// XML specials and non-ASCII text must arrive byte for byte.
	const text = `<order id="1">crème & brûlée</order>`
	queue := env.viaProxy.NewQueueURL(name)
	messages := queue.NewMessagesURL()

	if _, err := queue.Create(ctx, azqueue.Metadata{}); err != nil {
		t.Fatalf("create queue through the proxy: %v", err)
	}
	if _, err := queue.SetMetadata(ctx, azqueue.Metadata{"owner": "testenv"}); err != nil {
		t.Fatalf("set metadata through the proxy: %v", err)
	}
	props, err := queue.GetProperties(ctx)
	if err != nil {
		t.Fatalf("get queue properties through the proxy: %v", err)
	}
	if got := props.NewMetadata()["owner"]; got != "testenv" {
		t.Errorf("metadata owner = %q, want testenv", got)
	}
	if _, err := messages.Enqueue(ctx, text, 0, 0); err != nil {
		t.Fatalf("put through the proxy: %v", err)
	}
	peeked, err := messages.Peek(ctx, 1)
	if err != nil {
		t.Fatalf("peek through the proxy: %v", err)
	}
	if texts := peekedTexts(peeked); !slices.Equal(texts, []string{text}) {
		t.Fatalf("peek through the proxy = %q, want [%q]", texts, text)
	}
	dequeued, err := messages.Dequeue(ctx, 1, time.Minute)
	if err != nil || dequeued.NumMessages() != 1 || dequeued.Message(0).Text != text {
		t.Fatalf("dequeue through the proxy: %v; want the message %q", err, text)
	}
	msg := dequeued.Message(0)
	updated, err := messages.NewMessageIDURL(msg.ID).Update(ctx, msg.PopReceipt, time.Minute, text+" (updated)")
	if err != nil {
		t.Fatalf("update through the proxy: %v", err)
	}
	if _, err := messages.NewMessageIDURL(msg.ID).Delete(ctx, updated.PopReceipt); err != nil {
		t.Fatalf("delete message through the proxy: %v", err)
	}
	if _, err := messages.Enqueue(ctx, text, 0, 0); err != nil {
		t.Fatalf("second put through the proxy: %v", err)
	}
	if _, err := messages.Clear(ctx); err != nil {
		t.Fatalf("clear through the proxy: %v", err)
	}
	list, err := env.viaProxy.ListQueuesSegment(ctx, azqueue.Marker{}, azqueue.ListQueuesSegmentOptions{})
	if err != nil || len(list.QueueItems) != 1 || list.QueueItems[0].Name != name {
		t.Fatalf("list queues through the proxy: %v; want only %s", err, name)
	}
	if _, err := env.viaProxy.GetProperties(ctx); err != nil {
		t.Fatalf("get service properties through the proxy: %v", err)
	}
	if _, err := queue.Delete(ctx); err != nil {
		t.Fatalf("delete queue through the proxy: %v", err)
	}
	if _, err := env.direct.NewQueueURL(name).GetProperties(ctx); !isServiceCode(err, azqueue.ServiceCodeQueueNotFound) {
		t.Errorf("queue deleted through the proxy, read directly: err = %v, want QueueNotFound", err)
	}

	want := map[Op]int{
		OpCreate: 1, OpProperties: 3, OpPut: 2, OpPeek: 1, OpDequeue: 1, OpUpdate: 1,
		OpDelete: 1, OpClear: 1, OpList: 1, OpDeleteQueue: 1, OpOther: 0,
	}
	total := 0
	for op, n := range want {
		total += n
		if got := env.proxy.Requests(op); got != n {
			t.Errorf("Requests(%q) = %d, want %d", op, got, n)
		}
	}
	if got := env.proxy.Requests(""); got != total {
		t.Errorf(`Requests("") = %d, want %d`, got, total)
	}
	if got := env.proxy.Faults(""); got != 0 {
		t.Errorf(`Faults("") without rules = %d, want 0`, got)
	}
	env.proxy.ResetCounts()
	if got := env.proxy.Requests(""); got != 0 {
		t.Errorf(`Requests("") after ResetCounts = %d, want 0`, got)
	}
}

func TestStorageProxyForwardsAnswersAndUnknownRequestsUnchanged(t *testing.T) {
	t.Parallel()
	env := startProxiedAzurite(t)
	// Unsigned, so Azurite itself refuses them: the answers show what the
	// proxy does to Azurite's status, headers and body.
	targets := []string{
		"?comp=list",
		"/no/such/path/at/all",
		"/q/messages/not-a-message/at-all?popreceipt=x",
	}
	for _, target := range targets {
		t.Run(target, func(t *testing.T) {
			direct := rawGet(t, env.azurite.Endpoint()+target)
			proxied := rawGet(t, env.proxy.Endpoint()+target)
			if proxied.status != direct.status {
				t.Errorf("status through the proxy = %d, directly %d", proxied.status, direct.status)
			}
			for _, name := range []string{"Content-Type", "x-ms-error-code", "x-ms-version", "Server"} {
				if got, want := proxied.header.Get(name), direct.header.Get(name); got != want {
					t.Errorf("%s through the proxy = %q, directly %q", name, got, want)
				}
			}
			if proxied.header.Get("x-ms-request-id") == "" {
				t.Error("no x-ms-request-id through the proxy")
			}
			if got, want := proxied.header.Get("Content-Length"), fmt.Sprint(len(proxied.body)); got != want {
				t.Errorf("Content-Length through the proxy = %q, want %s (the body's length)", got, want)
			}
			if len(proxied.body) != len(direct.body) {
				t.Errorf("body through the proxy has %d bytes, directly %d:\n%s\n%s", len(proxied.body), len(direct.body), proxied.body, direct.body)
			}
		})
	}
	if got := env.proxy.Requests(OpOther); got != 2 {
		t.Errorf("Requests(OpOther) = %d, want 2 (the unknown paths)", got)
	}
}

func TestStorageProxyErrorFaultsAreAzuresErrorsAndNeverReachTheService(t *testing.T) {
	t.Parallel()
	env := startProxiedAzurite(t)
	tests := []struct {
		fault           Fault
		retryAfter      time.Duration
		wantStatus      int
		wantCode        azqueue.ServiceCodeType
		wantRetryAfter  string
		wantDescription string
	}{
		{fault: ServerBusy, retryAfter: 1500 * time.Millisecond, wantStatus: http.StatusServiceUnavailable, wantCode: azqueue.ServiceCodeServerBusy, wantRetryAfter: "2", wantDescription: "unable to receive requests"},
		{fault: OperationTimedOut, wantStatus: http.StatusInternalServerError, wantCode: azqueue.ServiceCodeOperationTimedOut, wantRetryAfter: "", wantDescription: "within the permitted time"},
	}
	for _, tt := range tests {
		t.Run(tt.fault.String(), func(t *testing.T) {
			ctx := proxyTestContext(t)
			name := strings.ToLower(tt.fault.String())
			direct := createQueue(t, env.direct, name)
			env.proxy.ResetCounts()
			env.proxy.SetRules(Rule{Ops: []Op{OpPut}, Fault: tt.fault, Share: 1, RetryAfter: tt.retryAfter})
			defer env.proxy.SetRules()

			_, err := env.viaProxy.NewQueueURL(name).NewMessagesURL().Enqueue(ctx, "never stored", 0, 0)
			var storageErr azqueue.StorageError
			if !errors.As(err, &storageErr) {
				t.Fatalf("put with %v: err = %v, want an azqueue.StorageError", tt.fault, err)
			}
			if storageErr.ServiceCode() != tt.wantCode || storageErr.Response().StatusCode != tt.wantStatus {
				t.Errorf("put with %v: service code %q, status %d; want %q, %d", tt.fault, storageErr.ServiceCode(), storageErr.Response().StatusCode, tt.wantCode, tt.wantStatus)
			}
			if !strings.Contains(err.Error(), tt.wantDescription) {
				t.Errorf("put with %v: error %q lacks Azure's message %q", tt.fault, err, tt.wantDescription)
			}
			header := storageErr.Response().Header
			wantHeaders := map[string]string{"Content-Type": "application/xml", "x-ms-version": azqueue.ServiceVersion, "Retry-After": tt.wantRetryAfter}
			for name, want := range wantHeaders {
				if got := header.Get(name); got != want {
					t.Errorf("put with %v: header %s = %q, want %q", tt.fault, name, got, want)
				}
			}
			if header.Get("x-ms-request-id") == "" {
				t.Errorf("put with %v: no x-ms-request-id", tt.fault)
			}

			// The raw answer, to read the body the SDK consumed.
			resp, err := http.Post(env.proxy.Endpoint()+"/"+name+"/messages", "application/xml", strings.NewReader("<QueueMessage><MessageText>x</MessageText></QueueMessage>"))
			if err != nil {
				t.Fatalf("raw put with %v: %v", tt.fault, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("raw put with %v: read body: %v", tt.fault, err)
			}
			if resp.StatusCode != tt.wantStatus || resp.ContentLength != int64(len(body)) {
				t.Errorf("raw put with %v: status %d, Content-Length %d for %d bytes; want %d and the body's length", tt.fault, resp.StatusCode, resp.ContentLength, len(body), tt.wantStatus)
			}
			const xmlStart = `<?xml version="1.0" encoding="utf-8"?><Error>`
			var azureErr struct {
				Code    string `xml:"Code"`
				Message string `xml:"Message"`
			}
			if !strings.HasPrefix(string(body), xmlStart) || xml.Unmarshal(body, &azureErr) != nil {
				t.Fatalf("raw put with %v: body %q is not Azure's XML error", tt.fault, body)
			}
			requestID := resp.Header.Get("x-ms-request-id")
			if azureErr.Code != string(tt.wantCode) || resp.Header.Get("x-ms-error-code") != string(tt.wantCode) ||
				!strings.Contains(azureErr.Message, "\nRequestId:"+requestID+"\nTime:") {
				t.Errorf("raw put with %v: error code header %q, body code %q, message %q; want %s and a message ending in RequestId:%s and Time:", tt.fault, resp.Header.Get("x-ms-error-code"), azureErr.Code, azureErr.Message, tt.wantCode, requestID)
			}

			if texts := peekTexts(t, direct); len(texts) != 0 {
				t.Errorf("queue read directly after puts answered %v holds %q, want nothing", tt.fault, texts)
			}
			if got := env.proxy.Faults(OpPut); got != 2 {
				t.Errorf("Faults(OpPut) = %d, want 2", got)
			}
			if _, err := env.viaProxy.NewQueueURL(name).NewMessagesURL().Peek(ctx, 1); err != nil {
				t.Errorf("peek, which the rule does not match: %v", err)
			}
		})
	}
}

func TestStorageProxyLostResponseAppliesTheRequestAndConnectionResetDoesNot(t *testing.T) {
	t.Parallel()
	env := startProxiedAzurite(t)
	tests := []struct {
		fault       Fault
		wantApplied bool
	}{
		{fault: LostResponse, wantApplied: true},
		{fault: ConnectionReset, wantApplied: false},
	}
	for _, tt := range tests {
		t.Run(tt.fault.String(), func(t *testing.T) {
			name := strings.ToLower(tt.fault.String())
			direct := createQueue(t, env.direct, name)
			env.proxy.SetRules(Rule{Ops: []Op{OpPut}, Fault: tt.fault, Share: 1})
			defer env.proxy.SetRules()

			_, err := env.viaProxy.NewQueueURL(name).NewMessagesURL().Enqueue(proxyTestContext(t), "sent", 0, 0)
			if cause := rootCause(err); !errors.Is(cause, syscall.ECONNRESET) {
				t.Fatalf("put with %v: err = %v, want connection reset by peer", tt.fault, err)
			}
			texts := peekTexts(t, direct)
			if applied := slices.Equal(texts, []string{"sent"}); applied != tt.wantApplied {
				t.Errorf("put with %v: queue read directly holds %q; applied = %v, want %v", tt.fault, texts, applied, tt.wantApplied)
			}
		})
	}
}

func TestStorageProxyLostRequestIsHeldNeverAppliedThenReset(t *testing.T) {
	t.Parallel()
	env := startProxiedAzurite(t)
	const name = "lostrequest"
	direct := createQueue(t, env.direct, name)
	const hold = 400 * time.Millisecond
	env.proxy.SetRules(Rule{Ops: []Op{OpPut}, Fault: LostRequest, Share: 1, Hold: hold})
	defer env.proxy.SetRules()

	start := time.Now()
	_, err := env.viaProxy.NewQueueURL(name).NewMessagesURL().Enqueue(proxyTestContext(t), "never", 0, 0)
	if elapsed := time.Since(start); elapsed < hold {
		t.Errorf("put with LostRequest failed after %v, want it held for %v first", elapsed, hold)
	}
	if cause := rootCause(err); !errors.Is(cause, syscall.ECONNRESET) {
		t.Fatalf("put with LostRequest: err = %v, want connection reset by peer", err)
	}
	if texts := peekTexts(t, direct); len(texts) != 0 {
		t.Errorf("put with LostRequest: queue read directly holds %q, want nothing (never forwarded)", texts)
	}
}

func TestStorageProxySlowResponseOutlastsTheClientTimeout(t *testing.T) {
	t.Parallel()
	env := startProxiedAzurite(t)
	const name = "slow"
	direct := createQueue(t, env.direct, name)
	messages := env.viaProxy.NewQueueURL(name).NewMessagesURL()
	const hold = 5 * time.Second
	env.proxy.SetRules(Rule{Ops: []Op{OpPut}, Fault: SlowResponse, Share: 1, Hold: hold})

	// The SDK turns the context's time left into a per-try timeout in whole
	// seconds, rounded down: under 1 s it gives up before sending anything.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := messages.Enqueue(ctx, "late", 0, 0)
	elapsed := time.Since(start)
	if !errors.Is(rootCause(err), context.DeadlineExceeded) {
		t.Fatalf("put held %v with a 1.5 s context: err = %v after %v, want a deadline exceeded", hold, err, elapsed)
	}
	if elapsed >= hold {
		t.Errorf("put gave up after %v, want well before the %v hold", elapsed, hold)
	}
	if texts := peekTexts(t, direct); !slices.Equal(texts, []string{"late"}) {
		t.Errorf("queue read directly after the held put holds %q, want [late]", texts)
	}
	// The handler holding the answer ends with its client, not at Hold.
	WaitFor(t, 2*time.Second, "the proxy to stop handling the abandoned request", func() bool { return env.proxy.activeRequests() == 0 })

	// A client that waits gets the answer once Hold is over.
	const shortHold = 300 * time.Millisecond
	env.proxy.SetRules(Rule{Ops: []Op{OpPut}, Fault: SlowResponse, Share: 1, Hold: shortHold})
	start = time.Now()
	if _, err := messages.Enqueue(proxyTestContext(t), "patient", 0, 0); err != nil {
		t.Fatalf("put held %v without a deadline: %v", shortHold, err)
	}
	if elapsed := time.Since(start); elapsed < shortHold {
		t.Errorf("put held %v answered after %v", shortHold, elapsed)
	}
}

func TestStorageProxyNthRuleStrikesExactlyThoseRequests(t *testing.T) {
	t.Parallel()
	env := startProxiedAzurite(t)
	const name = "nth"
	direct := createQueue(t, env.direct, name)
	messages := env.viaProxy.NewQueueURL(name).NewMessagesURL()
	rules := []Rule{
		{Ops: []Op{OpPut}, Fault: ServerBusy, Nth: []int{2, 4}},
		// Counted apart: the peeks between the puts do not move the puts'
		// count, nor the puts this rule's.
		{Ops: []Op{OpPeek}, Fault: ServerBusy, Nth: []int{1}},
	}
	env.proxy.SetRules(rules...)

	put := func(text string) bool {
		t.Helper()
		ctx := proxyTestContext(t)
		_, err := messages.Enqueue(ctx, text, 0, 0)
		if err != nil && !isServiceCode(err, azqueue.ServiceCodeServerBusy) {
			t.Fatalf("put %s: %v", text, err)
		}
		_, peekErr := messages.Peek(ctx, 1)
		if peekErr != nil && !isServiceCode(peekErr, azqueue.ServiceCodeServerBusy) {
			t.Fatalf("peek after put %s: %v", text, peekErr)
		}
		return err != nil
	}
	var failed []int
	for i := 1; i <= 6; i++ {
		if put(fmt.Sprint("m", i)) {
			failed = append(failed, i)
		}
	}
	if !slices.Equal(failed, []int{2, 4}) {
		t.Errorf("puts that failed: %v, want [2 4]", failed)
	}
	if got := env.proxy.Faults(OpPeek); got != 1 {
		t.Errorf("Faults(OpPeek) = %d, want 1 (the first peek only)", got)
	}
	if texts := peekTexts(t, direct); !slices.Equal(texts, []string{"m1", "m3", "m5", "m6"}) {
		t.Errorf("queue read directly holds %q, want the puts that did not fail", texts)
	}

	env.proxy.SetRules(rules...)
	if put("m7") || !put("m8") {
		t.Error("after SetRules again, puts 1 and 2 did not fail as 2 only: Nth did not restart")
	}
}

func TestStorageProxyShareIsHonouredOverManyRequestsAndSeedRepeatsIt(t *testing.T) {
	t.Parallel()
	env := startProxiedAzurite(t)
	const name = "share"
	createQueue(t, env.direct, name)
	messages := env.viaProxy.NewQueueURL(name).NewMessagesURL()
	const requests = 200
	rule := Rule{Ops: []Op{OpPeek}, Fault: ServerBusy, Share: 0.3}

	peekFailures := func() []bool {
		t.Helper()
		env.proxy.Seed(7)
		env.proxy.SetRules(rule)
		failures := make([]bool, requests)
		for i := range failures {
			_, err := messages.Peek(proxyTestContext(t), 1)
			if err != nil && !isServiceCode(err, azqueue.ServiceCodeServerBusy) {
				t.Fatalf("peek %d: %v", i+1, err)
			}
			failures[i] = err != nil
		}
		return failures
	}
	first := peekFailures()
	failed := 0
	for _, f := range first {
		if f {
			failed++
		}
	}
	if failed < 40 || failed > 80 {
		t.Errorf("Share 0.3 failed %d of %d peeks, want 40..80", failed, requests)
	}
	if got := env.proxy.Faults(OpPeek); got != failed {
		t.Errorf("Faults(OpPeek) = %d, want the %d failed peeks", got, failed)
	}
	if second := peekFailures(); !slices.Equal(first, second) {
		t.Error("the same seed and the same requests failed different peeks")
	}
}

// Not parallel, so that the other tests' load does not blur the timings.
func TestStorageProxyLatencyDelaysEveryMatchingRequest(t *testing.T) {
	env := startProxiedAzurite(t)
	const name = "latency"
	createQueue(t, env.direct, name)
	messages := env.viaProxy.NewQueueURL(name).NewMessagesURL()
	const latency = 50 * time.Millisecond
	const rounds = 5
	timed := func(what string, op func(ctx context.Context) error) []time.Duration {
		t.Helper()
		durations := make([]time.Duration, rounds)
		for i := range durations {
			start := time.Now()
			if err := op(proxyTestContext(t)); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			durations[i] = time.Since(start)
		}
		return durations
	}
	put := func(ctx context.Context) error {
		_, err := messages.Enqueue(ctx, "x", 0, 0)
		return err
	}
	dequeue := func(ctx context.Context) error {
		_, err := messages.Dequeue(ctx, 1, time.Minute)
		return err
	}
	putsBefore := timed("put without rules", put)

	env.proxy.SetRules(Rule{Ops: []Op{OpDequeue}, Latency: latency})
	for i, d := range timed("dequeue with latency", dequeue) {
		if d < latency {
			t.Errorf("dequeue %d with %v latency took %v", i+1, latency, d)
		}
	}
	// The fastest of a few tries is what the rule would have to slow down:
	// robust to the odd slow request, and sure to show added latency.
	if before, after := slices.Min(putsBefore), slices.Min(timed("put with a dequeue latency", put)); after > before+40*time.Millisecond {
		t.Errorf("puts took at least %v with a latency rule on dequeues only, %v without rules", after, before)
	}

	// Every matching rule adds its latency.
	env.proxy.SetRules(Rule{Ops: []Op{OpDequeue}, Latency: latency}, Rule{Latency: latency})
	for i, d := range timed("dequeue with two latencies", dequeue) {
		if d < 2*latency {
			t.Errorf("dequeue %d with two rules of %v latency took %v", i+1, latency, d)
		}
	}

	// An answer the proxy makes up takes a round trip too.
	env.proxy.SetRules(Rule{Ops: []Op{OpPut}, Latency: latency, Fault: ServerBusy, Share: 1})
	start := time.Now()
	_, err := messages.Enqueue(proxyTestContext(t), "x", 0, 0)
	if elapsed := time.Since(start); !isServiceCode(err, azqueue.ServiceCodeServerBusy) || elapsed < latency {
		t.Errorf("put with %v latency and ServerBusy: err = %v after %v; want ServerBusy after the latency", latency, err, elapsed)
	}
}

func TestStorageProxyRulesMatchByQueue(t *testing.T) {
	t.Parallel()
	env := startProxiedAzurite(t)
	ctx := proxyTestContext(t)
	// A poison queue's name extends its queue's: the match must be exact.
	const queue, poison = "orders", "orders-poison"
	for _, name := range []string{queue, poison} {
		messages := createQueue(t, env.direct, name)
		for range 2 {
			if _, err := messages.Enqueue(ctx, "waiting", 0, 0); err != nil {
				t.Fatalf("put in %s directly: %v", name, err)
			}
		}
	}
	env.proxy.SetRules(Rule{Ops: []Op{OpPut, OpDelete, OpProperties, OpList}, Queue: queue, Fault: ServerBusy, Share: 1})

	messagesOf := func(name string) azqueue.MessagesURL { return env.viaProxy.NewQueueURL(name).NewMessagesURL() }
	dequeueAndDelete := func(name string) error {
		dequeued, err := messagesOf(name).Dequeue(ctx, 1, time.Minute)
		if err != nil {
			t.Fatalf("dequeue from %s, which the rule does not match: %v", name, err)
		}
		msg := dequeued.Message(0)
		_, err = messagesOf(name).NewMessageIDURL(msg.ID).Delete(ctx, msg.PopReceipt)
		return err
	}
	tests := []struct {
		name     string
		do       func() error
		wantBusy bool
	}{
		{name: "put in orders", wantBusy: true, do: func() error { _, err := messagesOf(queue).Enqueue(ctx, "x", 0, 0); return err }},
		{name: "put in orders-poison", wantBusy: false, do: func() error { _, err := messagesOf(poison).Enqueue(ctx, "x", 0, 0); return err }},
		{name: "delete a message of orders", wantBusy: true, do: func() error { return dequeueAndDelete(queue) }},
		{name: "delete a message of orders-poison", wantBusy: false, do: func() error { return dequeueAndDelete(poison) }},
		{name: "properties of orders", wantBusy: true, do: func() error { _, err := env.viaProxy.NewQueueURL(queue).GetProperties(ctx); return err }},
		{name: "properties of orders-poison", wantBusy: false, do: func() error { _, err := env.viaProxy.NewQueueURL(poison).GetProperties(ctx); return err }},
		{name: "list, addressed to no queue", wantBusy: false, do: func() error {
			_, err := env.viaProxy.ListQueuesSegment(ctx, azqueue.Marker{}, azqueue.ListQueuesSegmentOptions{})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			if busy := isServiceCode(err, azqueue.ServiceCodeServerBusy); busy != tt.wantBusy || (!busy && err != nil) {
				t.Errorf("%s: err = %v; want ServerBusy: %v", tt.name, err, tt.wantBusy)
			}
		})
	}
}

func TestStorageProxyStopClosesTheListenerAndEveryConnection(t *testing.T) {
	t.Parallel()
	azurite := StartAzurite(t)
	const name = "stop"
	createQueue(t, serviceURL(t, azurite.Endpoint()), name)
	var proxy *StorageProxy
	result := make(chan error, 1)
	t.Run("held request", func(t *testing.T) {
		proxy = StartStorageProxy(t, azurite)
		proxy.SetRules(Rule{Ops: []Op{OpPut}, Fault: SlowResponse, Share: 1, Hold: time.Minute})
		messages := serviceURL(t, proxy.Endpoint()).NewQueueURL(name).NewMessagesURL()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := messages.Enqueue(ctx, "held", 0, 0)
			result <- err
		}()
		WaitFor(t, proxyTestTimeout, "the put to reach the proxy", func() bool { return proxy.Requests(OpPut) == 1 })
	}) // the subtest's cleanup stops the proxy

	select {
	case err := <-result:
		if err == nil {
			t.Error("put held by a stopped proxy succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("put held by the proxy still waiting 5 s after the proxy stopped")
	}
	if got := proxy.activeRequests(); got != 0 {
		t.Errorf("%d requests still being handled after the proxy stopped", got)
	}
	address := strings.TrimPrefix(strings.TrimSuffix(proxy.Endpoint(), "/"+DevAccountName), "http://")
	if conn, err := net.DialTimeout("tcp", address, time.Second); err == nil {
		conn.Close()
		t.Errorf("the stopped proxy still accepts connections on %s", address)
	}
}

func TestStorageProxyPlanSumsLatenciesAndTheFirstStrikingRuleDecides(t *testing.T) {
	p := newStorageProxy(t)
	p.SetRules(
		Rule{Ops: []Op{OpPut}, Latency: 10 * time.Millisecond, Fault: ServerBusy, Nth: []int{2}},
		Rule{Ops: []Op{OpPut, OpPeek}, Latency: 5 * time.Millisecond, Fault: ConnectionReset, Nth: []int{1, 2, 3}},
		Rule{Queue: "slow", Latency: time.Second},
	)
	steps := []struct {
		op        Op
		queue     string
		wantDelay time.Duration
		wantFault Fault
	}{
		{op: OpPut, queue: "q", wantDelay: 15 * time.Millisecond, wantFault: ConnectionReset}, // rule 1's 1st, rule 2's 1st
		{op: OpPut, queue: "q", wantDelay: 15 * time.Millisecond, wantFault: ServerBusy},      // both strike: rule 1 is first
		{op: OpPeek, queue: "q", wantDelay: 5 * time.Millisecond, wantFault: ConnectionReset}, // rule 2's 3rd
		{op: OpPut, queue: "q", wantDelay: 15 * time.Millisecond, wantFault: NoFault},         // rule 1's 3rd, rule 2's 4th
		{op: OpPut, queue: "slow", wantDelay: 1015 * time.Millisecond, wantFault: NoFault},
		{op: OpList, queue: "", wantDelay: 0, wantFault: NoFault},
	}
	for i, s := range steps {
		delay, rule := p.plan(s.op, s.queue, "")
		if delay != s.wantDelay || rule.Fault != s.wantFault {
			t.Errorf("request %d (%s to %q): delay %v, fault %v; want %v, %v", i+1, s.op, s.queue, delay, rule.Fault, s.wantDelay, s.wantFault)
		}
	}
	if p.Requests("") != len(steps) || p.Faults(OpPut) != 2 || p.Faults(OpPeek) != 1 || p.Faults("") != 3 {
		t.Errorf("Requests %d, Faults put %d, peek %d, all %d; want %d, 2, 1, 3", p.Requests(""), p.Faults(OpPut), p.Faults(OpPeek), p.Faults(""), len(steps))
	}
}

func TestStorageProxyPerMessageNthCountsEachMessageApart(t *testing.T) {
	p := newStorageProxy(t)
	p.SetRules(Rule{Ops: []Op{OpUpdate}, Fault: ServerBusy, Nth: []int{1, 2}, PerMessage: true})
	var struck []string
	for _, message := range []string{"a", "b", "a", "a", "b", "c", "b"} {
		if _, rule := p.plan(OpUpdate, "q", message); rule.Fault == ServerBusy {
			struck = append(struck, message)
		}
	}
	if want := []string{"a", "b", "a", "b", "c"}; !slices.Equal(struck, want) {
		t.Errorf("PerMessage Nth [1 2] struck the updates of %q, want %q (each message's first two)", struck, want)
	}
	u, err := url.Parse("http://127.0.0.1:1/devstoreaccount1/q/messages/1f6e-id?popreceipt=x&visibilitytimeout=30")
	if err != nil {
		t.Fatal(err)
	}
	if got := messageOf(OpUpdate, u); got != "1f6e-id" {
		t.Errorf("messageOf(update of %s) = %q, want 1f6e-id", u, got)
	}
}

func TestStorageProxyJitterStaysWithinItsBoundAndSeedRepeatsIt(t *testing.T) {
	p := newStorageProxy(t)
	const latency, jitter = 10 * time.Millisecond, 5 * time.Millisecond
	delays := func() []time.Duration {
		p.Seed(42)
		p.SetRules(Rule{Latency: latency, Jitter: jitter})
		out := make([]time.Duration, 1000)
		for i := range out {
			out[i], _ = p.plan(OpDequeue, "q", "")
		}
		return out
	}
	first := delays()
	if lo, hi := slices.Min(first), slices.Max(first); lo < latency || hi >= latency+jitter || hi-lo < jitter/2 {
		t.Errorf("delays range over [%v, %v], want spread over [%v, %v)", lo, hi, latency, latency+jitter)
	}
	if !slices.Equal(first, delays()) {
		t.Error("the same seed gave different delays")
	}
}

func TestStorageProxySetRulesReportsRulesThatCannotDoWhatTheySay(t *testing.T) {
	tests := []struct {
		name        string
		rule        Rule
		wantProblem string
	}{
		{name: "fault that never strikes", rule: Rule{Fault: ServerBusy}, wantProblem: "never strikes"},
		{name: "share over 1", rule: Rule{Fault: ServerBusy, Share: 1.5}, wantProblem: "not a probability"},
		{name: "negative latency", rule: Rule{Latency: -time.Second}, wantProblem: "negative duration"},
		{name: "request 0", rule: Rule{Fault: LostResponse, Nth: []int{0}}, wantProblem: "counted from 1"},
		{name: "share without fault", rule: Rule{Share: 0.5}, wantProblem: "without a Fault"},
		{name: "slow response without hold", rule: Rule{Fault: SlowResponse, Share: 1}, wantProblem: "without Hold"},
		{name: "unknown fault", rule: Rule{Fault: Fault(99), Share: 1}, wantProblem: "Fault(99)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &errorRecorder{TB: t}
			newStorageProxy(rec).SetRules(Rule{Ops: []Op{OpPut}, Latency: time.Millisecond}, tt.rule)
			if len(rec.errors) != 1 || !strings.Contains(rec.errors[0], "rule 2: ") || !strings.Contains(rec.errors[0], tt.wantProblem) {
				t.Errorf("SetRules(a valid rule, %+v) reported %q, want one problem of rule 2 mentioning %q", tt.rule, rec.errors, tt.wantProblem)
			}
		})
	}
}

// errorRecorder is a testing.TB that records Errorf instead of failing.
type errorRecorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *errorRecorder) Helper() {}

func (r *errorRecorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

// proxiedAzurite is an Azurite with a StorageProxy in front of it and a
// queue service client of each, both without retries so that every fault
// reaches the test.
type proxiedAzurite struct {
	azurite  *Azurite
	proxy    *StorageProxy
	viaProxy azqueue.ServiceURL
	direct   azqueue.ServiceURL
}

// startProxiedAzurite starts an Azurite and a proxy for the test.
func startProxiedAzurite(t *testing.T) proxiedAzurite {
	t.Helper()
	azurite := StartAzurite(t)
	proxy := StartStorageProxy(t, azurite)
	if want := strings.Replace(azurite.ConnectionString(), azurite.Endpoint(), proxy.Endpoint(), 1); proxy.ConnectionString() != want {
		t.Fatalf("ConnectionString() = %q, want %q", proxy.ConnectionString(), want)
	}
	return proxiedAzurite{
		azurite:  azurite,
		proxy:    proxy,
		viaProxy: serviceURL(t, proxy.Endpoint()),
		direct:   serviceURL(t, azurite.Endpoint()),
	}
}

// serviceURL returns a client of the queue service at endpoint, signed with
// the development account key, that tries every request once.
func serviceURL(t *testing.T, endpoint string) azqueue.ServiceURL {
	t.Helper()
	credential, err := azqueue.NewSharedKeyCredential(DevAccountName, DevAccountKey)
	if err != nil {
		t.Fatalf("development account credential: %v", err)
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatalf("parse endpoint %q: %v", endpoint, err)
	}
	return azqueue.NewServiceURL(*u, azqueue.NewPipeline(credential, azqueue.PipelineOptions{Retry: azqueue.RetryOptions{MaxTries: 1}}))
}

// createQueue creates queue name through svc and returns its messages.
func createQueue(t *testing.T, svc azqueue.ServiceURL, name string) azqueue.MessagesURL {
	t.Helper()
	queue := svc.NewQueueURL(name)
	if _, err := queue.Create(proxyTestContext(t), azqueue.Metadata{}); err != nil {
		t.Fatalf("create queue %s: %v", name, err)
	}
	return queue.NewMessagesURL()
}

// peekTexts returns the texts of the visible messages, up to 32.
func peekTexts(t *testing.T, messages azqueue.MessagesURL) []string {
	t.Helper()
	peeked, err := messages.Peek(proxyTestContext(t), 32)
	if err != nil {
		t.Fatalf("peek: %v", err)
	}
	return peekedTexts(peeked)
}

// peekedTexts returns the texts of peeked messages.
func peekedTexts(peeked *azqueue.PeekedMessagesResponse) []string {
	var texts []string
	for i := range peeked.NumMessages() {
		texts = append(texts, peeked.Message(i).Text)
	}
	return texts
}

// proxyTestContext returns a context that ends after proxyTestTimeout or
// with the test.
func proxyTestContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), proxyTestTimeout)
	t.Cleanup(cancel)
	return ctx
}

// isServiceCode reports whether err is a storage error with code.
func isServiceCode(err error, code azqueue.ServiceCodeType) bool {
	var storageErr azqueue.StorageError
	return errors.As(err, &storageErr) && storageErr.ServiceCode() == code
}

// rootCause follows the azure-pipeline-go error chain, which has Cause
// instead of Unwrap, down to the error net/http returned.
func rootCause(err error) error {
	for {
		causer, ok := err.(interface{ Cause() error })
		if !ok || causer.Cause() == nil {
			return err
		}
		err = causer.Cause()
	}
}

// rawAnswer is an HTTP answer read whole.
type rawAnswer struct {
	status int
	header http.Header
	body   []byte
}

// rawGet sends an unsigned GET to target and reads the whole answer.
func rawGet(t *testing.T, target string) rawAnswer {
	t.Helper()
	resp, err := probeClient.Get(target)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", target, err)
	}
	return rawAnswer{status: resp.StatusCode, header: resp.Header, body: body}
}
