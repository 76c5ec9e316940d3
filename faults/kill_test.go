//go:build faults

package faults

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
	"github.com/poc-go-micro/poc-go-micro/server/subscriber"
)

// Settings of the load scenarios (1, 2 and 5). A short visibility timeout
// makes "stranded no longer than one visibility timeout" quick to check; a
// short maximum poll pause makes a restarted consumer notice reappearing
// messages promptly once the backlog is gone.
const (
	loadEvents      = 2000
	loadConcurrency = 16
	loadBatchSize   = 16
	// loadHeld bounds the messages a subscription holds at once: those its
	// handlers run on and at most one batch fetched ahead.
	loadHeld       = loadConcurrency + loadBatchSize
	loadVisibility = 5 * time.Second
	loadPollMax    = time.Second
	// slack covers a poll, its request and the test's log polling.
	slack = 3 * time.Second
)

func loadEnv(visibility time.Duration) []string {
	return []string{
		fmt.Sprintf("AZQUEUE_VISIBILITY_TIMEOUT=%s", visibility),
		fmt.Sprintf("AZQUEUE_POLL_MAX=%s", loadPollMax),
		fmt.Sprintf("AZQUEUE_CONCURRENCY=%d", loadConcurrency),
		fmt.Sprintf("AZQUEUE_BATCH_SIZE=%d", loadBatchSize),
	}
}

// TestServerKilledMidConsumptionLosesNothing is scenario 1. 2,000 events
// wait in the queue; the server consumes them and is killed with SIGKILL
// when about a third are handled, in the middle of a batch (see
// waitMidBatch), then a new server process starts.
//
// Asserted: every event is handled at least once, under a single
// Micro-Id; the killed process held at most AZQUEUE_CONCURRENCY +
// AZQUEUE_BATCH_SIZE leases (the messages the new process gets as
// redeliveries) and duplicated at most AZQUEUE_CONCURRENCY events (those
// its handlers had run on); its leases ended with their visibility timeout:
// the new process took those messages no later than one visibility timeout
// after the kill, or, as the service serves the longest-visible messages
// first, right after the older backlog; and the queue ends empty, so
// nothing is left or stranded invisible.
func TestServerKilledMidConsumptionLosesNothing(t *testing.T) {
	s := newStack(t)
	says := s.publishEvents("kill", loadEvents)
	env := loadEnv(loadVisibility)

	first := s.startServer("server-1", env)
	waitMidBatch(t, first, loadEvents/3)
	killedAt := killServer(t, first)
	handledBeforeKill := waitLogged(s, first, "server-1")
	if handledBeforeKill >= loadEvents {
		t.Fatalf("the kill came after all %d events were handled: nothing was in flight", loadEvents)
	}

	second := s.startServer("server-2", env)
	readyAt := time.Now()
	d := s.drainAfterKill(says, "server-1", "server-2", second, killedAt)
	record(t, outcome{
		scenario: 1, title: "server killed (SIGKILL) while consuming 2,000 events, then restarted",
		published: loadEvents, handled: d.got.handled, duplicates: d.got.duplicates, poisoned: 0, lost: len(d.got.missing),
		notes: fmt.Sprintf("killed after %d handled, holding %d leases; new server subscribed %s after the kill; leased messages redelivered %s; all handled %s after the kill; queue empty (none invisible) %s later",
			handledBeforeKill, len(d.leased.handlings), seconds(readyAt.Sub(killedAt)), d.leased.describe(killedAt, loadVisibility), seconds(d.doneAt.Sub(killedAt)), seconds(d.emptyAfter)),
	})
}

// TestGracefulStopMidConsumptionLosesAndDuplicatesNothing is scenario 2:
// as scenario 1, but the server gets SIGTERM, also in the middle of a
// batch. The visibility timeout is
// long (60s), so a message left leased by the stop would hold up the next
// consumer for a minute.
//
// Asserted: the stop ends with status 0 without an unfinished drain or a
// failed delete; every event is handled exactly once; the next server
// takes its first event within a poll of subscribing, the messages handed
// back by the stop right after the older backlog, and the whole remainder
// long before one visibility timeout has passed; the queue ends empty.
func TestGracefulStopMidConsumptionLosesAndDuplicatesNothing(t *testing.T) {
	s := newStack(t)
	const visibility = 60 * time.Second
	says := s.publishEvents("stop", loadEvents)
	env := loadEnv(visibility)

	first := s.startServer("server-1", env)
	waitMidBatch(t, first, loadEvents/3)
	stoppingAt := time.Now()
	stopServer(t, first)
	stoppedAt := time.Now()
	handledByFirst := waitLogged(s, first, "server-1")
	if handledByFirst >= loadEvents {
		t.Fatalf("the stop came after all %d events were handled: nothing was in flight", loadEvents)
	}
	if want := fmt.Sprintf("stopped: received %d events", handledByFirst); !strings.Contains(first.Output(), want) {
		t.Errorf("server-1 log lacks %q:\n%s", want, tailOf(first.Output(), 20))
	}
	for _, bad := range []string{"still running after", "could not be deleted", "was handled but not deleted", "level=error"} {
		if lines := linesOf(first.Output(), bad); len(lines) > 0 {
			t.Errorf("server-1's graceful stop logged %q: %q", bad, lines)
		}
	}

	second := s.startServer("server-2", env)
	readyAt := time.Now()
	testenv.WaitFor(t, 10*time.Second, "server-2 to take its first event", func() bool {
		return s.events.tally(says).byServer["server-2"] > 0
	})
	firstPickup := time.Since(readyAt)
	if firstPickup > loadPollMax+slack {
		t.Errorf("server-2 took its first event %s after subscribing; the remainder should be visible at once", firstPickup)
	}
	s.events.waitForAll(says, visibility)
	doneAt := time.Now()
	if d := doneAt.Sub(stoppedAt); d >= visibility {
		t.Errorf("the remainder took %s after the stop: as long as a lease, so some messages were stranded", d)
	}
	emptyAfter := s.waitEmpty(s.eventsQueue(), slack)

	got := s.events.tally(says)
	checkTally(t, got)
	if got.duplicates != 0 {
		t.Errorf("%d duplicates, e.g. %q; a graceful stop must cause none", got.duplicates, got.redelivered[:min(5, len(got.redelivered))])
	}
	// Messages fetched but not started at the stop were handed back: the
	// next server gets them as redeliveries, without waiting for a lease.
	handedBack := checkLeasesOfTheDead(t, got, "server-1", "server-2", stoppedAt, 0)

	stopServer(t, second)
	assertClean(t, "server-1", first)
	assertClean(t, "server-2", second)
	record(t, outcome{
		scenario: 2, title: "graceful stop (SIGTERM) while consuming 2,000 events, then a new server",
		published: loadEvents, handled: got.handled, duplicates: got.duplicates, poisoned: 0, lost: len(got.missing),
		notes: fmt.Sprintf("stopped after %d handled, in %s, handing back %d unstarted messages; next server took its first event %s after subscribing, the handed-back ones %s, the last %s after the stop (visibility timeout %s); queue empty %s later",
			handledByFirst, seconds(stoppedAt.Sub(stoppingAt)), len(handedBack.handlings), seconds(firstPickup), handedBack.describe(stoppedAt, 0), seconds(doneAt.Sub(stoppedAt)), visibility, seconds(emptyAfter)),
	})
}

// TestTwoServersShareTheLoadAndTheSurvivorDrains is scenario 5: two server
// processes in the same (default) group consume 2,000 events; when one has
// handled about a fifth of them, it is killed with SIGKILL, in the middle
// of a batch.
//
// Asserted: both handled events before the kill; the survivor handles the
// rest, including the killed one's leased messages once their visibility
// timeout ends; every event is handled, duplicates are at most the killed
// process's handler slots, and the queue ends empty.
func TestTwoServersShareTheLoadAndTheSurvivorDrains(t *testing.T) {
	s := newStack(t)
	says := s.publishEvents("shared", loadEvents)
	env := loadEnv(loadVisibility)
	a := s.startServer("server-a", env)
	b := s.startServer("server-b", env)

	waitMidBatch(t, a, loadEvents/5)
	killedAt := killServer(t, a)
	waitLogged(s, a, "server-a")
	before := s.events.tally(says)
	if before.byServer["server-a"] == 0 || before.byServer["server-b"] == 0 {
		t.Errorf("before the kill the servers handled %d and %d events: both should share the load", before.byServer["server-a"], before.byServer["server-b"])
	}
	if before.unique >= loadEvents {
		t.Fatalf("the kill came after all %d events were handled", loadEvents)
	}

	d := s.drainAfterKill(says, "server-a", "server-b", b, killedAt)
	record(t, outcome{
		scenario: 5, title: "two servers in one group; one killed (SIGKILL) mid-way, the other drains",
		published: loadEvents, handled: d.got.handled, duplicates: d.got.duplicates, poisoned: 0, lost: len(d.got.missing),
		notes: fmt.Sprintf("before the kill server-a handled %d and server-b %d; in all %d and %d; the killed one held %d leases, redelivered %s; survivor finished %s after the kill; queue empty %s later",
			before.byServer["server-a"], before.byServer["server-b"], d.got.byServer["server-a"], d.got.byServer["server-b"], len(d.leased.handlings), d.leased.describe(killedAt, loadVisibility), seconds(d.doneAt.Sub(killedAt)), seconds(d.emptyAfter)),
	})
}

// drained is what drainAfterKill measured.
type drained struct {
	got        tally
	leased     leases        // the messages the killed server held
	doneAt     time.Time     // when every event had been handled
	emptyAfter time.Duration // from doneAt until the queue was empty
}

// drainAfterKill waits for the server heir to handle every event of says
// after the server gone was killed at killedAt, then checks the tally
// (nothing lost, one Micro-Id per event), the leases gone held and the
// duplicates: a kill can only duplicate the events whose handlers were
// running, at most loadConcurrency. Last it stops heir and checks its
// output.
func (s *stack) drainAfterKill(says []string, gone, heir string, heirProcess *testenv.Process, killedAt time.Time) drained {
	t := s.t
	t.Helper()
	var d drained
	s.events.waitForAll(says, drainTimeout)
	d.doneAt = time.Now()
	d.emptyAfter = s.waitEmpty(s.eventsQueue(), loadVisibility+slack)

	d.got = s.events.tally(says)
	checkTally(t, d.got)
	d.leased = checkLeasesOfTheDead(t, d.got, gone, heir, killedAt, loadVisibility)
	if d.got.duplicates > loadConcurrency {
		t.Errorf("%d duplicates; a kill can only duplicate the events whose handlers were running, at most %d", d.got.duplicates, loadConcurrency)
	}
	stopServer(t, heirProcess)
	assertClean(t, heir, heirProcess)
	return d
}

// waitMidBatch returns once p has logged at least target events, at a
// moment when it has logged part of a batch of loadBatchSize: some
// handlers have just run and their messages may not be deleted yet, which
// is when a kill costs duplicates and a graceful stop has work to finish.
// Handlers that only log finish a batch within milliseconds, so a signal
// timed by the test's usual log polling lands between batches. If no such
// moment comes within a few seconds, it returns anyway.
func waitMidBatch(t *testing.T, p *testenv.Process, target int) {
	t.Helper()
	deadline := time.Now().Add(drainTimeout)
	var anyMoment time.Time // after target, any moment will do from then on
	offset, logged, partial := 0, 0, ""
	for {
		chunk := p.OutputFrom(offset)
		offset += len(chunk)
		lines := strings.Split(partial+chunk, "\n")
		partial = lines[len(lines)-1]
		for _, line := range lines[:len(lines)-1] {
			if strings.Contains(line, subscriber.ReceivedMarker+" ") {
				logged++
			}
		}
		if logged >= target {
			if anyMoment.IsZero() {
				anyMoment = time.Now().Add(3 * time.Second)
			}
			if logged%loadBatchSize != 0 || time.Now().After(anyMoment) {
				return
			}
		}
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("the server logged %d events, not the %d to act at (exited: %v)", logged, target, p.Exited())
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// waitLogged waits until the consumption records hold every event the
// process named server logged before it exited, and returns their number.
func waitLogged(s *stack, p *testenv.Process, server string) int {
	s.t.Helper()
	want := strings.Count(p.Output(), subscriber.ReceivedMarker+" ")
	testenv.WaitFor(s.t, 5*time.Second, "the killed server's log to be read", func() bool {
		return s.events.countBy(server) >= want
	})
	return want
}

// leases are the redeliveries a surviving or next server got of messages
// a server process had leased when it died or stopped.
type leases struct {
	handlings []handling
}

// describe says when the redeliveries came, relative to the end of the
// process that held the leases.
func (l leases) describe(end time.Time, visibility time.Duration) string {
	if len(l.handlings) == 0 {
		return "(none)"
	}
	first, last := l.handlings[0].at, l.handlings[0].at
	for _, h := range l.handlings {
		first, last = earlierOf(first, h.at), laterOf(last, h.at)
	}
	bound := "no lease to wait for"
	if visibility > 0 {
		bound = fmt.Sprintf("visibility timeout %s", visibility)
	}
	if seconds(first.Sub(end)) == seconds(last.Sub(end)) {
		return fmt.Sprintf("%s after it (%s)", seconds(first.Sub(end)), bound)
	}
	return fmt.Sprintf("%s to %s after it (%s)", seconds(first.Sub(end)), seconds(last.Sub(end)), bound)
}

// checkLeasesOfTheDead checks the redeliveries of the messages that
// process gone held when it ended at end: at most loadHeld of them, all
// taken by heir, none before the lease
// could have ended (end + visibility, 0 when the leases were handed back),
// and each no later than one poll after both its lease had ended and heir
// had gone through the older messages, which the service serves first. A
// duplicate must have been handled by gone and then redelivered to heir.
func checkLeasesOfTheDead(t *testing.T, got tally, gone, heir string, end time.Time, visibility time.Duration) leases {
	t.Helper()
	var l leases
	for _, h := range got.lateDelivered {
		if h.server != heir {
			t.Errorf("event %q was redelivered to %s, not to %s, which took over from %s", h.say, h.server, heir, gone)
			continue
		}
		l.handlings = append(l.handlings, h)
	}
	if len(l.handlings) > loadHeld {
		t.Errorf("%d messages held by %s came back; a subscription holds at most %d (Concurrency + BatchSize)", len(l.handlings), gone, loadHeld)
	}
	latest := laterOf(end.Add(visibility), got.lastFirst[heir]).Add(loadPollMax + slack)
	for _, h := range l.handlings {
		if h.at.After(latest) {
			t.Errorf("event %q held by %s was redelivered %s after it ended, later than its lease (%s) and the older messages allow", h.say, gone, h.at.Sub(end).Round(time.Millisecond), visibility)
		}
	}
	for _, say := range got.redelivered {
		hs := got.handlingsOf(say)
		if len(hs) != 2 || hs[0].server != gone || hs[1].server != heir || hs[1].delivery < 2 {
			t.Errorf("event %q was handled more than once, but not once by %s and then redelivered to %s: %+v", say, gone, heir, hs)
		}
	}
	return l
}

// checkTally fails the test for what no scenario may show: a published
// event never handled, an event handled that was never published (except
// those in maybe, whose publish failed after it may have reached the
// queue), or an event handled under two Micro-Ids (the publisher sent it
// twice).
func checkTally(t *testing.T, got tally, maybe ...string) {
	t.Helper()
	if len(got.missing) > 0 {
		t.Errorf("%d events lost, e.g. %q", len(got.missing), got.missing[:min(5, len(got.missing))])
	}
	var unexpected []string
	for _, say := range got.unexpected {
		if !slices.Contains(maybe, say) {
			unexpected = append(unexpected, say)
		}
	}
	if len(unexpected) > 0 {
		t.Errorf("%d handled events were never published, e.g. %q", len(unexpected), unexpected[:min(5, len(unexpected))])
	}
	if got.idConflicts > 0 {
		t.Errorf("%d events were handled under more than one Micro-Id", got.idConflicts)
	}
}

func laterOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlierOf(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
