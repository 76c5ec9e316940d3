//go:build faults

package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// TestRollingRestartsPoisonNoHealthyMessage is scenario 15: a backlog of
// 100 events waits while the server is stopped gracefully (SIGTERM) and
// started again five times, each stop soon after the new process took its
// first events. AZQUEUE_MAX_DEQUEUE_COUNT=2, 4 handlers of 200 ms
// (--handle_delay) and batches of 32: each process fetches most of the
// backlog at once, so every stop hands back most of it unstarted, and the
// same messages are handed back again and again.
//
// Asserted: nothing goes to the poison queue although messages were
// delivered more often than MaxDequeueCount (hand-backs do not count
// towards it); every event is handled exactly once (a graceful stop
// duplicates nothing); the queue ends empty.
func TestRollingRestartsPoisonNoHealthyMessage(t *testing.T) {
	const (
		events     = 100
		restarts   = 5
		maxDequeue = 2
	)
	s := newStack(t)
	says := s.publishEvents("restart", events)
	env := []string{
		fmt.Sprintf("AZQUEUE_MAX_DEQUEUE_COUNT=%d", maxDequeue),
		"AZQUEUE_CONCURRENCY=4", "AZQUEUE_BATCH_SIZE=32", "AZQUEUE_POLL_MAX=500ms",
	}
	handleDelay := "--handle_delay=200ms"

	start := time.Now()
	for i := 1; i <= restarts; i++ {
		name := fmt.Sprintf("server-%d", i)
		before := s.events.tally(says).handled
		p := s.startServer(name, env, handleDelay)
		testenv.WaitFor(t, 30*time.Second, name+" to handle its first events", func() bool {
			return s.events.tally(says).byServer[name] >= 4
		})
		stopServer(t, p)
		assertClean(t, name, p)
		if s.events.tally(says).handled <= before {
			t.Fatalf("%s handled nothing before its stop", name)
		}
	}
	last := s.startServer("server-last", env, handleDelay)
	s.events.waitForAll(says, 60*time.Second)
	took := time.Since(start)
	emptyAfter := s.waitEmpty(s.eventsQueue(), slack)

	got := s.events.tally(says)
	checkTally(t, got)
	if got.duplicates != 0 {
		t.Errorf("%d duplicates, e.g. %q; graceful stops must cause none", got.duplicates, got.redelivered[:min(5, len(got.redelivered))])
	}
	maxDelivery, beyond := 0, 0
	for _, h := range got.lateDelivered {
		maxDelivery = max(maxDelivery, h.delivery)
		if h.delivery > maxDequeue {
			beyond++
		}
	}
	if beyond == 0 {
		t.Errorf("no event was delivered more than MaxDequeueCount %d times (the most: %d): the restarts did not hand the same messages back often enough to test anything", maxDequeue, maxDelivery)
	}
	if records := s.poisonRecords(); len(records) != 0 {
		t.Errorf("%d healthy messages poisoned, e.g. %q", len(records), records[0].Reason)
	}
	stopServer(t, last)
	assertClean(t, "server-last", last)
	record(t, outcome{
		scenario: 15, title: "five graceful restarts (SIGTERM) while a backlog of 100 events waits, MaxDequeueCount 2",
		published: events, handled: got.handled, duplicates: got.duplicates, poisoned: 0, lost: len(got.missing),
		notes: fmt.Sprintf("%d events handed back at least once (redelivered), %d of them delivered more than MaxDequeueCount (the most: delivery %d), none poisoned; all handled %s after the first start, queue empty %s later",
			len(got.lateDelivered), beyond, maxDelivery, seconds(took), seconds(emptyAfter)),
	})
}
