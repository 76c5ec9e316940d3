package azqueue

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/micro/go-micro/v2/broker"
	dlog "github.com/micro/go-micro/v2/debug/log"
	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage/storagetest"
)

// Cases of the conformance suite about Azure's real network: refused,
// lost, slow and hung requests, injected by the fake's rules or by the
// proxy in front of Azurite (env.inject). Each proves one guarantee of the
// package documentation.

// rival dequeues queue directly (not through the broker, as another
// consumer would) every 50ms until the case ends, and counts the messages
// it got: each one is a message the broker let a second consumer see.
func rival(t *testing.T, e *env, queue string) *atomic.Int64 {
	var seen atomic.Int64
	go func() {
		ticker := time.NewTicker(50 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-e.done:
				return
			case <-ticker.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			msgs, err := e.raw.Queue(queue).Dequeue(ctx, 1, time.Minute)
			cancel()
			if err == nil {
				seen.Add(int64(len(msgs)))
			}
		}
	}()
	return &seen
}

func testRenewalsThatFailOrAreSlowInsideTheLeaseNeverLoseIt(t *testing.T, e *env) {
	// A 4s lease is renewed when 2s are left; the failures below all fit in
	// those 2s, and the rival must never get the message. The handler
	// outlives the first lease.
	const visibility, handling = 4 * time.Second, 5 * time.Second
	tests := []struct {
		name string
		rule storagetest.Rule
	}{
		{"one renewal refused with 503 ServerBusy", storagetest.Rule{Op: "update", Outcome: storagetest.Busy, Nth: []int{1}}},
		{"three renewals in a row refused", storagetest.Rule{Op: "update", Outcome: storagetest.Busy, Nth: []int{1, 2, 3}}},
		{"one renewal unanswered", storagetest.Rule{Op: "update", Outcome: storagetest.Unanswered, Nth: []int{1}}},
		{"one renewal answered 1.2s late", storagetest.Rule{Op: "update", Outcome: storagetest.SlowAnswer, Nth: []int{1}, Hold: 1200 * time.Millisecond}},
		{"one renewal lost on its way, given up when the lease is due", storagetest.Rule{Op: "update", Outcome: storagetest.Hang, Nth: []int{1}, Hold: time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := e.fresh(t)
			topic := newTopic()
			queue := queueName(t, topic, DefaultGroup)
			rule := tt.rule
			rule.Queue = queue
			e.faults(rule)
			b := e.connected()
			r := newRecorder(t)
			e.subscribe(b, topic, r.handler(func(Event, delivery) error { work(e, handling); return nil }),
				VisibilityTimeout(visibility), fastPolls)
			ids := publishMessages(t, b, topic, 1)
			r.waitDeliveries(t, 1, waitLong)
			seen := rival(t, e, queue)

			waitStats(t, b, "acked=1", func(s Stats) bool { return s.Acked == 1 })
			if n := seen.Load(); n != 0 {
				t.Errorf("a second consumer got the message %d times while its handler ran", n)
			}
			if s := b.Stats(); s.LeasesLost != 0 || s.Renewals < 1 {
				t.Errorf("stats %s: want leases_lost=0 and renewals>=1", s)
			}
			if n := e.struck("update"); n != len(rule.Nth) {
				t.Errorf("%d renewals were struck, want %d: the case did not test what it says", n, len(rule.Nth))
			}
			assertExactlyOnce(t, tt.name, r.ids(), ids)
		})
	}
}

func testMessageWhoseLeaseWasLostWhileWaitingIsNotHandled(t *testing.T, e *env) {
	// One handler, two messages: the second waits while the first's
	// handler is held. Every renewal fails, both leases run out and a rival
	// takes both messages. The first handler's Ack then finds its lease
	// lost; the second message is never handed to a handler. BatchSize(1)
	// makes the room (Concurrency + BatchSize) exactly those two messages,
	// so the subscription cannot dequeue them again once they are visible.
	const visibility = 2 * time.Second
	started := time.Now()
	topic := newTopic()
	queue := queueName(t, topic, DefaultGroup)
	b := e.connected()
	r := newRecorder(t)
	held := make(gate)
	acked := make(chan error, 2)
	e.subscribe(b, topic, r.handler(func(ev Event, _ delivery) error {
		held.wait(e)
		acked <- ev.Ack()
		return nil
	}), broker.DisableAutoAck(), VisibilityTimeout(visibility), Concurrency(1), BatchSize(1), fastPolls)
	e.faults(storagetest.Rule{Op: "update", Queue: queue, Outcome: storagetest.Unanswered})
	ids := publishMessages(t, b, topic, 2)
	r.waitDeliveries(t, 1, waitLong)

	eventually(t, waitLong, func() string { return "the leases did not run out" }, func() bool { return len(e.visibleMessages(queue)) == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	taken, err := e.raw.Queue(queue).Dequeue(ctx, 2, time.Minute)
	if err != nil || len(taken) != 2 {
		t.Fatalf("the rival's dequeue: %d messages, %v; want both", len(taken), err)
	}
	e.inject()
	held.open()
	select {
	case err := <-acked:
		if !errors.Is(err, ErrLeaseLost) {
			t.Errorf("Ack after the rival took the message: %v, want ErrLeaseLost", err)
		}
	case <-time.After(waitLong):
		t.Fatal("the held handler did not ack")
	}
	waitStats(t, b, "leases_lost=2", func(s Stats) bool { return s.LeasesLost == 2 })
	holds(t, time.Second, func() string {
		return fmt.Sprintf("%d deliveries: the message whose lease was lost was handled", r.len())
	},
		func() bool { return r.len() == 1 })

	// Each loss is logged once.
	for _, m := range taken {
		if n := loggedSince(t, started, m.ID, "lease lost"); n != 1 {
			t.Errorf("the lost lease of message %s was logged %d times, want once", m.ID, n)
		}
	}
	if got := r.ids(); len(got) != 1 || got[ids[0]]+got[ids[1]] != 1 {
		t.Errorf("deliveries %v: want exactly one of %v, once", got, ids)
	}
}

func testDeleteWhoseAnswerWasLostIsNotAFailure(t *testing.T, e *env) {
	topic := newTopic()
	queue := queueName(t, topic, DefaultGroup)
	e.faults(storagetest.Rule{Op: "delete", Queue: queue, Outcome: storagetest.LostAnswer, Nth: []int{1}})
	b := e.connected()
	r := newRecorder(t)
	e.subscribe(b, topic, r.handler(nil), fastPolls)
	ids := publishMessages(t, b, topic, 1)
	s := waitStats(t, b, "acked=1", func(s Stats) bool { return s.Acked == 1 })
	if s.LeasesLost != 0 {
		t.Errorf("stats %s: a delete whose answer was lost was taken for a lost lease", s)
	}
	if n := e.struck("delete"); n != 1 {
		t.Errorf("%d deletes were struck, want 1", n)
	}
	if n := e.messages(queue); n != 0 {
		t.Errorf("%d messages left in %s, want none", n, queue)
	}
	holds(t, time.Second, func() string { return "the deleted message came back" }, func() bool { return r.len() == 1 })
	assertExactlyOnce(t, "after a lost delete answer", r.ids(), ids)
}

func testPublishWhoseAnswerWasLostMayDuplicateWithTheSameMicroID(t *testing.T, e *env) {
	topic := newTopic()
	queue := e.createQueue(topic, DefaultGroup)
	e.faults(storagetest.Rule{Op: "enqueue", Queue: queue, Outcome: storagetest.LostAnswer, Nth: []int{1}})
	b := e.connected()
	if err := b.Publish(topic, testMessage("twice")); err != nil {
		t.Fatalf("publish whose first answer was lost: %v, want it retried", err)
	}
	r := newRecorder(t)
	e.subscribe(b, topic, r.handler(nil), fastPolls)
	deliveries := r.waitDeliveries(t, 2, waitLong)
	first, second := deliveries[0].header["Micro-Id"], deliveries[1].header["Micro-Id"]
	if first == "" || first != second {
		t.Errorf("the two copies carry Micro-Id %q and %q, want the same one", first, second)
	}
	if deliveries[0].msgID == deliveries[1].msgID {
		t.Errorf("both deliveries are of queue message %s: want two copies", deliveries[0].msgID)
	}
}

func testSubscribeRacingDisconnectLeavesNoPoller(t *testing.T, e *env) {
	// Subscribe is still creating its queue (its answer held back) when
	// Disconnect takes its snapshot of the subscriptions.
	topic := newTopic()
	queue := queueName(t, topic, DefaultGroup)
	e.faults(storagetest.Rule{Op: "create", Queue: queue, Outcome: storagetest.SlowAnswer, Nth: []int{1}, Hold: 500 * time.Millisecond})
	b := e.connected()
	subscribed := make(chan error, 1)
	go func() {
		_, err := b.Subscribe(topic, newRecorder(t).handler(nil), fastPolls)
		subscribed <- err
	}()
	eventually(t, waitLong, func() string { return "Subscribe did not create its queue" }, func() bool { return e.struck("create") == 1 })
	if err := b.Disconnect(); err != nil {
		t.Fatalf("Disconnect: %v", err)
	}
	select {
	case err := <-subscribed:
		if !errors.Is(err, ErrNotConnected) {
			t.Errorf("Subscribe racing Disconnect: %v, want ErrNotConnected", err)
		}
	case <-time.After(waitLong):
		t.Fatal("Subscribe did not return")
	}
	polls := b.Stats().Polls
	holds(t, time.Second, func() string { return fmt.Sprintf("stats %s: a subscription polls after Disconnect", b.Stats()) },
		func() bool { return b.Stats().Polls == polls })
}

func testUnsubscribeTimeoutLeavesNoGoroutineBehind(t *testing.T, e *env) {
	// The handler never returns (until the case ends): Unsubscribe gives
	// up after the drain timeout. Nothing it started may outlive it.
	topic := newTopic()
	b := e.connected()
	r := newRecorder(t)
	sub := e.subscribe(b, topic, r.handler(func(Event, delivery) error { <-e.done; return nil }), DrainTimeout(100*time.Millisecond), fastPolls)
	publishMessages(t, b, topic, 1)
	r.waitDeliveries(t, 1, waitLong)
	if err := sub.Unsubscribe(); err == nil || !strings.Contains(err.Error(), "drain timeout") {
		t.Fatalf("Unsubscribe with a stuck handler: %v, want the drain timeout", err)
	}
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, g := range strings.Split(stacks, "\n\n") {
		if strings.Contains(g, "created by github.com/poc-go-micro/poc-go-micro/broker/azqueue.(*subscription).Unsubscribe") ||
			strings.Contains(g, "azqueue.waitTimeout") {
			t.Errorf("a goroutine Unsubscribe started outlives it:\n%s", g)
		}
	}
}

func testFailedLocalPublishDoesNotWakeAFailingPoller(t *testing.T, e *env) {
	// Polls fail, so the poller backs off (from 100ms, doubling: at most
	// 5 polls in 1.5s). Publishes to its queue fail too; were each to wake
	// it, it would poll once per publish.
	topic := newTopic()
	queue := e.createQueue(topic, DefaultGroup)
	e.faults(
		storagetest.Rule{Op: "dequeue", Queue: queue, Outcome: storagetest.Unanswered},
		storagetest.Rule{Op: "enqueue", Queue: queue, Outcome: storagetest.Unanswered},
	)
	b := e.connected()
	e.subscribe(b, topic, newRecorder(t).handler(nil), fastPolls)
	var wg sync.WaitGroup
	wg.Add(1)
	stop := make(chan struct{})
	go func() {
		defer wg.Done()
		ticker := time.NewTicker(20 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ticker.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			if err := b.Publish(topic, testMessage(newID()), broker.PublishContext(ctx)); err == nil {
				t.Error("a publish to a failing queue succeeded")
			}
			cancel()
		}
	}()
	const window = 1500 * time.Millisecond
	holds(t, window, func() string { return fmt.Sprintf("stats %s: want at most 5 polls", b.Stats()) },
		func() bool { return b.Stats().Polls <= 5 })
	close(stop)
	wg.Wait()
	if n := e.struck("enqueue"); n < 20 {
		t.Errorf("only %d publishes were refused in %s: the case did not test what it says", n, window)
	}
}

func testThrottlingMakesEveryRequestBackOffAndLosesNothing(t *testing.T, e *env) {
	// A subscription drains a backlog with slow handlers; then every
	// request to its queue is refused with 503 ServerBusy (Retry-After: 1s)
	// for 3s. Polls, deletes and renewals must back off: fewer requests
	// per second during the storm than before it. Afterwards every message
	// is handled, none poisoned, and the log said once that the service
	// throttles.
	const storm, retryAfter = 3 * time.Second, time.Second
	started := time.Now()
	topic := newTopic()
	queue := e.createQueue(topic, DefaultGroup)
	b := e.connected()
	ids := publishMessages(t, b, topic, 200)
	r := newRecorder(t)
	e.subscribe(b, topic, r.handler(func(Event, delivery) error { work(e, 20*time.Millisecond); return nil }),
		Concurrency(4), BatchSize(4), VisibilityTimeout(5*time.Second), fastPolls)
	r.waitDeliveries(t, 10, waitLong)

	before, start := e.requests(""), time.Now()
	time.Sleep(time.Second) // measuring a rate over a fixed window, not waiting for a condition
	rateBefore := float64(e.requests("")-before) / time.Since(start).Seconds()

	e.faults(storagetest.Rule{Queue: queue, Outcome: storagetest.Busy, RetryAfter: retryAfter})
	during, start := e.requests(""), time.Now()
	time.Sleep(storm) // the storm's length, likewise
	rateDuring := float64(e.requests("")-during) / time.Since(start).Seconds()
	e.inject()
	if rateDuring >= rateBefore {
		t.Errorf("%.1f requests/s during the storm, %.1f before it: want fewer", rateDuring, rateBefore)
	}
	if n := e.struck(""); n == 0 {
		t.Fatal("no request was refused: the case did not test what it says")
	}

	r.waitIDs(t, ids, waitLong)
	if s := b.Stats(); s.Poisoned != 0 || s.Throttled == 0 {
		t.Errorf("stats %s: want poisoned=0 and throttled>0", s)
	}
	if said := loggedSince(t, started, "the queue service is throttling"); said != 1 {
		t.Errorf("the log said %d times that the service throttles, want once", said)
	}
	t.Logf("%.1f requests/s before the storm, %.1f during it (%d refused)", rateBefore, rateDuring, e.struck(""))
}

// loggedSince counts the log records since start that contain every one
// of parts. The go-micro logger keeps its last 100 records in memory, so
// cases that count lines run serially.
func loggedSince(t *testing.T, start time.Time, parts ...string) int {
	t.Helper()
	records, err := dlog.DefaultLog.Read()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, rec := range records {
		line := fmt.Sprint(rec.Message)
		matches := !rec.Timestamp.Before(start)
		for _, p := range parts {
			matches = matches && strings.Contains(line, p)
		}
		if matches {
			n++
		}
	}
	return n
}
