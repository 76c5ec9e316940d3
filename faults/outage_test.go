//go:build faults

package faults

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// publishedLine matches client-azqueue-pub's line for each event it
// published, and publisherTotal its summary.
var (
	publishedLine  = regexp.MustCompile(`(?m)^published ("(?:[^"\\]|\\.)*")$`)
	publisherTotal = regexp.MustCompile(`(?m)^total: (\d+) events published to `)
)

// publishedSays returns the events a client-azqueue-pub run says it
// published, checking its summary agrees.
func publishedSays(t *testing.T, stdout string) []string {
	t.Helper()
	var says []string
	for _, m := range publishedLine.FindAllStringSubmatch(stdout, -1) {
		say, err := strconv.Unquote(m[1])
		if err != nil {
			t.Fatalf("client-azqueue-pub printed an unreadable line: %v", err)
		}
		says = append(says, say)
	}
	m := publisherTotal.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("client-azqueue-pub printed no summary:\n%s", tailOf(stdout, 10))
	}
	if total, _ := strconv.Atoi(m[1]); total != len(says) {
		t.Errorf("client-azqueue-pub's summary says %d events, it printed %d", total, len(says))
	}
	return says
}

// TestAzuriteOutageDuringConsumptionAndPublishing is scenario 3. The
// server consumes a backlog of 1,500 events while client-azqueue-pub
// publishes one every 20 ms; then Azurite is stopped for 15 s and started
// again on the same port with the same data.
//
// Asserted: the server keeps running through the outage and logs it in a
// bounded number of lines (the poll loop's throttled report, plus at most
// one line per message it held and could not settle), not one per poll; it
// recovers without help, within its failing-poll backoff's longest pause
// (10s at defaults); the publisher exits with a non-zero status and one
// clear line naming the event it could not publish and why, and every
// event it reported published is handled; a publisher started after the
// outage succeeds; nothing is lost and the queue ends empty.
func TestAzuriteOutageDuringConsumptionAndPublishing(t *testing.T) {
	s := newStack(t)
	const (
		outage     = 15 * time.Second
		visibility = 10 * time.Second
		backlog    = 1500
		// recoveryBound is the failing-poll backoff's longest pause (the
		// default PollInterval maximum, 10s) plus a poll's SDK retries and
		// the handling: the latest an event can be handled after the
		// outage.
		recoveryBound = 10*time.Second + 5*time.Second
	)
	backlogSays := s.publishEvents("backlog", backlog)
	server := s.startServer("server", []string{fmt.Sprintf("AZQUEUE_VISIBILITY_TIMEOUT=%s", visibility)})
	publisher := s.start("client-azqueue-pub", nil, "--say=live", "--interval=20ms", "--count=100000", "--timeout=10s")
	s.events.waitForCount(backlog/5, drainTimeout)
	testenv.WaitFor(t, clientTimeout, "the publisher to publish", func() bool { return strings.Count(publisher.Stdout(), "\npublished ") >= 20 })

	logBefore := len(server.Output())
	handledBefore := s.events.count()
	stoppedAt := time.Now()
	s.azurite.Stop()

	// The publisher gives up on the event it was publishing, with a clear
	// error and a non-zero status, within its --timeout.
	publisherCode, err := publisher.Wait(10*time.Second + slack)
	if err != nil {
		t.Fatalf("the publisher did not exit during the outage: %v\n%s", err, tailOf(publisher.Output(), 10))
	}
	publisherExit := time.Since(stoppedAt)
	if publisherCode == 0 {
		t.Errorf("the publisher exited with status 0 during the outage:\n%s", tailOf(publisher.Output(), 10))
	}
	stderr := strings.TrimSpace(publisher.Stderr())
	if strings.Count(stderr, "\n") != 0 || !regexp.MustCompile(`^client-azqueue-pub: publish "live #\d+" to "example.events": .*(unreachable|connection refused|connection reset|EOF|no answer|deadline exceeded|timed out)`).MatchString(stderr) {
		t.Errorf("the publisher's error should be one line naming the event and why it failed, got:\n%s", stderr)
	}
	liveSays := publishedSays(t, publisher.Stdout())
	assertClean(t, "client-azqueue-pub", publisher)

	// The outage itself: its length is the scenario, not a wait for a
	// condition.
	time.Sleep(time.Until(stoppedAt.Add(outage)))
	if server.Exited() {
		t.Fatalf("the server exited during the outage:\n%s", tailOf(server.Output(), 30))
	}
	handledDuring := s.events.count() - handledBefore
	startedAt := time.Now()
	s.azurite.Start()
	outageLog := server.Output()[logBefore:]

	var recovery time.Duration
	testenv.WaitFor(t, recoveryBound, "the server to handle an event after the outage", func() bool {
		for _, h := range s.events.all() {
			if h.at.After(startedAt) {
				recovery = h.at.Sub(startedAt)
				return true
			}
		}
		return false
	})

	after, code := s.run("client-azqueue-pub", "--say=after", "--interval=0", "--count=100")
	if code != 0 {
		t.Fatalf("a publisher started after the outage failed:\n%s", after.Output())
	}
	afterSays := publishedSays(t, after.Stdout())

	says := append(append(append([]string(nil), backlogSays...), liveSays...), afterSays...)
	s.events.waitForAll(says, drainTimeout)
	emptyAfter := s.waitEmpty(s.eventsQueue(), visibility+slack)

	// The event the publisher gave up on may have reached the queue before
	// the outage cut the answer off: handling it is allowed, not required.
	var gaveUp []string
	if m := regexp.MustCompile(`publish "(live #\d+)"`).FindStringSubmatch(stderr); m != nil {
		gaveUp = append(gaveUp, m[1])
	}
	got := s.events.tally(says)
	checkTally(t, got, gaveUp...)

	outageLines := loggedProblems(outageLog)
	t.Logf("problems the server logged during the outage:\n%s", strings.Join(outageLines, "\n"))
	pollReports := len(linesOf(outageLog, "azqueue: poll queue"))
	if pollReports > 2 {
		t.Errorf("the poll loop reported the outage %d times in %s; it should report it at most every 30 s:\n%s", pollReports, outage, strings.Join(outageLines, "\n"))
	}
	// At the defaults (BatchSize 32, Concurrency = BatchSize) a
	// subscription holds at most 64 messages; each may log once that it
	// was handled but could not be deleted.
	const held = 64
	if len(outageLines) > pollReports+held+2 {
		t.Errorf("the server logged %d problem lines during the %s outage; want at most the poll loop's %d plus one per message held:\n%s", len(outageLines), outage, pollReports, strings.Join(outageLines, "\n"))
	}
	if !strings.Contains(server.Output()[logBefore:], "works again") {
		t.Errorf("the server did not log that polling works again")
	}

	stopServer(t, server)
	assertClean(t, "server", server)
	record(t, outcome{
		scenario: 3, title: "Azurite stopped for 15 s during consumption and publishing, then restarted (same port, same data)",
		published: len(backlogSays) + len(liveSays) + len(afterSays), handled: got.handled, duplicates: got.duplicates, poisoned: 0, lost: len(got.missing),
		notes: fmt.Sprintf("server kept running and logged %d warning or error lines during the outage (%d from the poll loop); first event handled %s after Azurite was back; publisher exited with status %d %s into the outage after %d events (%s); a new publisher then published %d; all handled, queue empty %s later; %d events were handled during the outage (fetched before it)",
			len(outageLines), pollReports, seconds(recovery), publisherCode, seconds(publisherExit), len(liveSays), oneLine(stderr), len(afterSays), seconds(emptyAfter), handledDuring),
	})
}

// loggedProblems returns the warning and error lines of a server log.
func loggedProblems(log string) []string {
	var lines []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "level=error") || strings.Contains(line, "level=warn") || strings.Contains(line, "level=fatal") {
			lines = append(lines, line)
		}
	}
	return lines
}

// oneLine shortens a message for the report.
func oneLine(s string) string {
	s = strings.ReplaceAll(strings.TrimSpace(s), "\n", " ")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return `"` + s + `"`
}
