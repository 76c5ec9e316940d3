//go:build faults

package faults

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// Scenarios 10 to 13 run the real binaries through an Azure-like network:
// a testenv.StorageProxy between them and Azurite that adds latency and
// refuses, loses or resets requests as real Azure Storage does.

// consumerRequests returns the requests the proxy received from consumers
// (every kind but publishes) per handling.
func consumerRequests(p *testenv.StorageProxy, handled int) float64 {
	if handled == 0 {
		return 0
	}
	return float64(p.Requests("")-p.Requests(testenv.OpPut)) / float64(handled)
}

// faultCounts describes what the proxy injected, by kind, for the report.
func faultCounts(p *testenv.StorageProxy, ops ...testenv.Op) string {
	var parts []string
	for _, op := range ops {
		parts = append(parts, fmt.Sprintf("%d of %d %ss", p.Faults(op), p.Requests(op), op))
	}
	return strings.Join(parts, ", ")
}

// TestAzureLikeNetworkLosesNothing is scenario 10: 20 ms of latency (with
// 5 ms of jitter) on every request, and on puts, deletes and updates 5%
// answered 503 ServerBusy and 2% applied but their answer lost; two
// servers share the queue while two client-azqueue-pub processes publish
// 1,000 events each. Each handling takes networkHandling against a
// networkVisibility lease, so that every message is renewed (an update)
// while it waits for a handler or runs.
//
// Asserted: both publishers exit 0 (their broker retried what failed);
// every event is handled at least once, under a single Micro-Id (a put
// retried after a lost answer enqueues a second copy, with the same
// Micro-Id; a renewal whose answer was lost leaves the server with an old
// receipt, so that message comes back: those are the duplicates); none is
// poisoned; at least one update per event reached the proxy; the queue
// ends empty.
func TestAzureLikeNetworkLosesNothing(t *testing.T) {
	s := newStack(t)
	proxy := s.throughProxy()
	writes := []testenv.Op{testenv.OpPut, testenv.OpDelete, testenv.OpUpdate}
	proxy.SetRules(
		testenv.Rule{Latency: 20 * time.Millisecond, Jitter: 5 * time.Millisecond},
		testenv.Rule{Ops: writes, Fault: testenv.ServerBusy, Share: 0.05},
		testenv.Rule{Ops: writes, Fault: testenv.LostResponse, Share: 0.02},
	)
	const perPublisher = 1000
	const networkVisibility, networkHandling = 2 * time.Second, 1200 * time.Millisecond
	env := loadEnv(networkVisibility)
	s.startServer("server-a", env, "--handle_delay="+networkHandling.String())
	s.startServer("server-b", env, "--handle_delay="+networkHandling.String())

	start := time.Now()
	var says []string
	var publishers []*testenv.Process
	for _, name := range []string{"pub-a", "pub-b"} {
		publishers = append(publishers, s.start("client-azqueue-pub", nil, fmt.Sprintf("--count=%d", perPublisher), "--interval=0", "--say="+name))
		says = append(says, eventSays(name, perPublisher)...)
	}
	for _, p := range publishers {
		if code, err := p.Wait(drainTimeout); err != nil || code != 0 {
			t.Fatalf("client-azqueue-pub: exit %d, %v\n%s", code, err, tailOf(p.Output(), 10))
		}
	}
	published := time.Since(start)
	took := s.events.waitForAll(says, drainTimeout)
	emptyAfter := s.waitEmpty(s.eventsQueue(), drainTimeout)
	got := s.events.tally(says)
	if got.idConflicts > 0 {
		t.Errorf("%d events were handled under more than one Micro-Id: a retried put must carry the same one", got.idConflicts)
	}
	if records := s.poisonRecords(); len(records) > 0 {
		t.Errorf("%d events were poisoned", len(records))
	}
	if updates := proxy.Requests(testenv.OpUpdate); updates < len(says) {
		t.Errorf("%d updates for %d events: the scenario means every message to be renewed at least once (handling %s, visibility %s)", updates, len(says), networkHandling, networkVisibility)
	}
	record(t, outcome{
		scenario: 10, title: "Azure-like network: 20 ms latency, 5% 503 ServerBusy and 2% lost answers on puts, deletes and updates (renewals); two servers handling for 1.2 s against a 2 s lease, two publishers, 2,000 events",
		published: len(says), handled: got.handled, duplicates: got.duplicates, poisoned: 0, lost: len(got.missing),
		requestsPerHandled: consumerRequests(proxy, got.handled),
		notes: fmt.Sprintf("published in %s; all handled %s after the publishers finished (server-a %d, server-b %d); queue empty %s later; faults injected: %s",
			seconds(published), seconds(took), got.byServer["server-a"], got.byServer["server-b"], seconds(emptyAfter), faultCounts(proxy, writes...)),
	})
}

// TestRenewalsFailingThreeTimesInARowKeepEveryLease is scenario 11: the
// server's handler takes 6 s over every event (--handle_delay) with a 4 s
// visibility timeout, and the first three renewals of every message are
// refused with 503 ServerBusy; 40 events.
//
// Asserted: every event is handled exactly once (no lease was lost, so no
// message went to another consumer or came back); the server reports no
// lost lease; exactly three renewals of each message were refused; the
// queue ends empty.
func TestRenewalsFailingThreeTimesInARowKeepEveryLease(t *testing.T) {
	s := newStack(t)
	proxy := s.throughProxy()
	proxy.SetRules(testenv.Rule{Ops: []testenv.Op{testenv.OpUpdate}, Fault: testenv.ServerBusy, Nth: []int{1, 2, 3}, PerMessage: true})
	const events, visibility, handling = 40, 4 * time.Second, 6 * time.Second
	says := s.publishEvents("slow", events)
	server := s.startServer("server", []string{"AZQUEUE_VISIBILITY_TIMEOUT=" + visibility.String()}, "--handle_delay="+handling.String())
	took := s.events.waitForAll(says, drainTimeout)
	emptyAfter := s.waitEmpty(s.eventsQueue(), drainTimeout)
	got := s.events.tally(says)
	if got.duplicates > 0 {
		t.Errorf("%d events were handled twice: a lease was lost", got.duplicates)
	}
	if n := proxy.Faults(testenv.OpUpdate); n != 3*events {
		t.Errorf("%d renewals were refused, want 3 for each of the %d messages", n, events)
	}
	stopServer(t, server)
	if !strings.Contains(server.Output(), "leases_lost=0") {
		t.Errorf("the server's stats do not say leases_lost=0:\n%s", tailOf(server.Output(), 5))
	}
	record(t, outcome{
		scenario: 11, title: "renewals refused 3 times in a row for every message, held by a slow handler (6 s, visibility timeout 4 s), 40 events",
		published: events, handled: got.handled, duplicates: got.duplicates, poisoned: 0, lost: len(got.missing),
		requestsPerHandled: consumerRequests(proxy, got.handled),
		notes: fmt.Sprintf("%d renewals refused, %d renewed in all, no lease lost; all handled %s after the server started; queue empty %s later",
			proxy.Faults(testenv.OpUpdate), proxy.Requests(testenv.OpUpdate)-proxy.Faults(testenv.OpUpdate), seconds(took), seconds(emptyAfter)),
	})
}

// TestThrottlingStormOf30sBacksOffAndLosesNothing is scenario 12: a server
// drains a backlog of 2,000 events (handler 200 ms, so that the backlog
// lasts); 5 s in, every request is refused with 503 ServerBusy
// (Retry-After: 1) for 30 s.
//
// Asserted: the requests per second during the storm are fewer than before
// it (everything backs off, nothing spins); the server says once that the
// service is throttling and once that it stopped, and logs at most a few
// other warning or error lines in all; after the storm the backlog drains:
// every event handled, none poisoned, the queue empty.
func TestThrottlingStormOf30sBacksOffAndLosesNothing(t *testing.T) {
	s := newStack(t)
	proxy := s.throughProxy()
	const (
		events = 2000
		before = 5 * time.Second
		storm  = 30 * time.Second
	)
	says := s.publishEvents("storm", events)
	server := s.startServer("server", loadEnv(loadVisibility), "--handle_delay=200ms")
	s.events.waitForCount(1, startTimeout)

	mark, at := proxy.Requests(""), time.Now()
	time.Sleep(before) // the rate is measured over a fixed window
	rateBefore := float64(proxy.Requests("")-mark) / time.Since(at).Seconds()
	handledBefore := s.events.count()

	logBefore := len(server.Output())
	proxy.SetRules(testenv.Rule{Fault: testenv.ServerBusy, Share: 1, RetryAfter: time.Second})
	mark, at = proxy.Requests(""), time.Now()
	time.Sleep(storm) // the storm itself
	rateDuring := float64(proxy.Requests("")-mark) / time.Since(at).Seconds()
	refused := proxy.Faults("")
	proxy.SetRules()

	if rateDuring >= rateBefore {
		t.Errorf("%.1f requests/s during the storm, %.1f before it: want fewer", rateDuring, rateBefore)
	}
	took := s.events.waitForAll(says, drainTimeout)
	emptyAfter := s.waitEmpty(s.eventsQueue(), drainTimeout)
	got := s.events.tally(says)
	if records := s.poisonRecords(); len(records) > 0 {
		t.Errorf("%d events were poisoned", len(records))
	}
	testenv.WaitFor(t, 30*time.Second, "the server to say the storm is over", func() bool {
		return strings.Contains(server.Output()[logBefore:], "stopped throttling")
	})
	stormLog := server.Output()[logBefore:]
	if n := len(linesOf(stormLog, "the queue service is throttling")); n != 1 {
		t.Errorf("the server said %d times that the service is throttling, want once", n)
	}
	noisy := len(linesOf(stormLog, "level=warn")) + len(linesOf(stormLog, "level=error"))
	if noisy > 10 {
		t.Errorf("the server logged %d warning and error lines during and after the storm, want a few:\n%s", noisy, tailOf(stormLog, 20))
	}
	record(t, outcome{
		scenario: 12, title: "throttling storm: every request refused with 503 ServerBusy (Retry-After: 1) for 30 s while a server drains 2,000 events",
		published: events, handled: got.handled, duplicates: got.duplicates, poisoned: 0, lost: len(got.missing),
		requestsPerHandled: consumerRequests(proxy, got.handled),
		notes: fmt.Sprintf("%.1f requests/s before the storm, %.1f during it (%d refused); %d handled before it; the server logged %d warning or error lines for it (one saying it throttles, one that it stopped); all handled %s after the storm, queue empty %s later",
			rateBefore, rateDuring, refused, handledBefore, noisy, seconds(took), seconds(emptyAfter)),
	})
}

// TestConnectionsResetMidDequeueLoseNothing is scenario 13: 10% of the
// dequeues are applied by the service but their connection is reset
// before the answer arrives, so the messages they leased are stranded
// until their visibility timeout (5 s) ends; 1,000 events. (At 30%, one
// message in 400 would be stranded on all of its MaxDequeueCount
// deliveries and poisoned.)
//
// Asserted: every event is handled exactly once (a stranded message was
// never handled, so it comes back once, not twice); none is poisoned; the
// queue ends empty.
func TestConnectionsResetMidDequeueLoseNothing(t *testing.T) {
	s := newStack(t)
	proxy := s.throughProxy()
	proxy.SetRules(testenv.Rule{Ops: []testenv.Op{testenv.OpDequeue}, Fault: testenv.LostResponse, Share: 0.1})
	const events = 1000
	says := s.publishEvents("reset", events)
	s.startServer("server", loadEnv(loadVisibility))
	took := s.events.waitForAll(says, drainTimeout)
	emptyAfter := s.waitEmpty(s.eventsQueue(), drainTimeout)
	got := s.events.tally(says)
	if got.duplicates > 0 {
		t.Errorf("%d events were handled twice", got.duplicates)
	}
	record(t, outcome{
		scenario: 13, title: "connections reset mid-dequeue: 10% of dequeues applied but their answer lost, 1,000 events",
		published: events, handled: got.handled, duplicates: got.duplicates, poisoned: 0, lost: len(got.missing),
		requestsPerHandled: consumerRequests(proxy, got.handled),
		notes: fmt.Sprintf("%d of %d dequeues lost their answer; %d events came back after their 5 s visibility timeout (delivery 2 or more); all handled %s after the server started, queue empty %s later",
			proxy.Faults(testenv.OpDequeue), proxy.Requests(testenv.OpDequeue), len(got.lateDelivered), seconds(took), seconds(emptyAfter)),
	})
}
