//go:build faults

package faults

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/protobuf/proto"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue"
	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
	"github.com/poc-go-micro/poc-go-micro/proto/example"
)

// retryLine matches the broker's warning for a failed delivery, e.g.
//
//	azqueue: topic "example.events": handler failed on message 5e1… (delivery 2 of 4), retrying in 1.732s: subscriber error: …
var retryLine = regexp.MustCompile(`handler failed on message (\S+) \(delivery (\d+) of (\d+)\), retrying in (\S+): (.*)$`)

// TestAlwaysFailingHandlerEndsInThePoisonQueue is scenario 6. The server
// runs with --fail_events_matching, its documented fault-injection switch,
// so its subscriber fails every "poison pill" event; three of them are
// published among 20 healthy events, with AZQUEUE_MAX_DEQUEUE_COUNT=4 and
// retry delays from 1s to 10s.
//
// Asserted: each pill fails on deliveries 1 to 4, each retry announced
// with a delay inside the documented window (RetryDelay doubling per
// delivery, jittered down to half) that never shrinks and grows overall,
// and each redelivery comes no earlier than announced and no later than a
// poll after; on its fifth delivery it moves to the poison queue as a
// PoisonRecord with the reason, the handler's last error and the original
// envelope; no pill is ever handled, every healthy event is handled once,
// the queue ends empty, and Example.Call, probed every 200 ms throughout,
// never fails.
func TestAlwaysFailingHandlerEndsInThePoisonQueue(t *testing.T) {
	s := newStack(t)
	const (
		maxDequeue = 4
		retryMin   = time.Second
		retryMax   = 10 * time.Second
		pollMax    = 500 * time.Millisecond
		pill       = "poison pill"
	)
	server := s.startServer("server", []string{
		fmt.Sprintf("AZQUEUE_MAX_DEQUEUE_COUNT=%d", maxDequeue),
		fmt.Sprintf("AZQUEUE_RETRY_MIN=%s", retryMin), fmt.Sprintf("AZQUEUE_RETRY_MAX=%s", retryMax),
		fmt.Sprintf("AZQUEUE_POLL_MAX=%s", pollMax),
	}, "--fail_events_matching="+pill)
	probe := startProber(t, dial(t, serverAddress(t, server)), 200*time.Millisecond, 2*time.Second)

	p, code := s.run("client-azqueue-pub", "--say="+pill, "--count=3", "--interval=0")
	if code != 0 {
		t.Fatalf("publish the pills: exit %d\n%s", code, p.Output())
	}
	pills := publishedSays(t, p.Stdout())
	publishedAt := time.Now()
	p, code = s.run("client-azqueue-pub", "--say=healthy", "--count=20", "--interval=0")
	if code != 0 {
		t.Fatalf("publish the healthy events: exit %d\n%s", code, p.Output())
	}
	healthy := publishedSays(t, p.Stdout())

	// 1 + 2 + 4 + 8 s of retry delays at most, plus polls.
	var records []poisonEntry
	testenv.WaitFor(t, 60*time.Second, "three records in the poison queue", func() bool {
		records = s.poisonRecords()
		return len(records) >= len(pills)
	})
	poisonedAfter := time.Since(publishedAt)
	s.events.waitForAll(healthy, drainTimeout)
	emptyAfter := s.waitEmpty(s.eventsQueue(), 10*time.Second)
	calls, slowest := probe.check(t, "while the pills failed and were poisoned")

	got := s.events.tally(healthy)
	checkTally(t, got)
	if got.duplicates != 0 {
		t.Errorf("%d healthy events were handled more than once", got.duplicates)
	}
	for _, say := range pills {
		if h, ok := s.events.handledSay(say); ok {
			t.Errorf("pill %q was logged as handled: %+v", say, h)
		}
	}

	if len(records) != len(pills) {
		t.Fatalf("the poison queue holds %d records, want %d", len(records), len(pills))
	}
	var delays []string
	for _, r := range records {
		say := checkPoisonRecord(t, s, r, pill, maxDequeue)
		announced := checkRetries(t, s, r.MessageID, say, maxDequeue, retryMin, retryMax, pollMax)
		delays = append(delays, fmt.Sprintf("%q: %s", say, strings.Join(announced, ", ")))
		// The broker logs the move once the record is written: the test
		// may see the record first.
		moved := "moved message " + r.MessageID + " to poison queue"
		testenv.WaitFor(t, 10*time.Second, fmt.Sprintf("the server to log the move of %q", say), func() bool { return len(s.events.linesOf("server", moved)) > 0 })
		if lines := s.events.linesOf("server", moved); len(lines) != 1 {
			t.Errorf("the server logged the move of %s (%q) to the poison queue %d times, want once", r.MessageID, say, len(lines))
		}
	}

	stopServer(t, server)
	if want := fmt.Sprintf("failed %d deliveries on purpose", len(pills)*maxDequeue); !strings.Contains(server.Output(), want) {
		t.Errorf("the server's stop summary lacks %q:\n%s", want, tailOf(server.Output(), 5))
	}
	assertClean(t, "server", server)
	slices.Sort(delays)
	record(t, outcome{
		scenario: 6, title: "a handler that always fails (--fail_events_matching), among healthy events",
		published: len(pills) + len(healthy), handled: got.handled, duplicates: got.duplicates, poisoned: len(records), lost: len(got.missing),
		notes: fmt.Sprintf("MaxDequeueCount %d, RetryDelay %s..%s: each pill failed %d times, the announced retry delays growing (%s), then was poisoned with its last error; all 3 poisoned %s after publishing; queue empty %s later; %d Example.Call probes all answered, slowest %s",
			maxDequeue, retryMin, retryMax, maxDequeue, strings.Join(delays, "; "), seconds(poisonedAfter), seconds(emptyAfter), calls, slowest.Round(time.Millisecond)),
	})
}

// checkPoisonRecord checks a pill's poison record and returns the pill's
// text, read from the original envelope the record carries.
func checkPoisonRecord(t *testing.T, s *stack, r poisonEntry, pill string, maxDequeue int) string {
	t.Helper()
	if r.raw != "" {
		t.Errorf("the poison queue holds a text that is not a PoisonRecord: %.200q", r.raw)
		return ""
	}
	var original struct {
		Version   int               `json:"azqueue"`
		Headers   map[string]string `json:"headers"`
		Body      []byte            `json:"body"`
		LastError *string           `json:"lastError"`
	}
	if err := json.Unmarshal([]byte(r.Original), &original); err != nil || original.Version != 1 {
		t.Errorf("the record of %s does not carry the original envelope: %v: %.200q", r.MessageID, err, r.Original)
		return ""
	}
	var msg example.Message
	if err := proto.Unmarshal(original.Body, &msg); err != nil {
		t.Errorf("the original body of %s is not an example.Message: %v", r.MessageID, err)
	}
	say := msg.GetSay()
	if original.LastError != nil {
		t.Errorf("the original envelope of %q carries the broker's lastError: it should be the text as published", say)
	}
	if original.Headers["Micro-Id"] == "" || original.Headers["Content-Type"] != "application/grpc+proto" {
		t.Errorf("the original envelope of %q lost its go-micro headers: %v", say, original.Headers)
	}
	wantReason := fmt.Sprintf("delivered %d times, more than MaxDequeueCount %d; last error: ", maxDequeue+1, maxDequeue)
	if !strings.HasPrefix(r.Reason, wantReason) || !strings.Contains(r.Reason, fmt.Sprintf("fault injection: event %q contains %q", say, pill)) {
		t.Errorf("the record of %q gives the reason %q; want %q followed by the handler's error", say, r.Reason, wantReason)
	}
	queue := s.eventsQueue().URL()
	if r.Topic != example.EventsTopic || r.Group != azqueue.DefaultGroup || !strings.HasSuffix(queue.Path, "/"+r.Queue) || r.DequeueCount != int64(maxDequeue+1) {
		t.Errorf("the record of %q names topic %q, group %q, queue %q, dequeue count %d", say, r.Topic, r.Group, r.Queue, r.DequeueCount)
	}
	return say
}

// checkRetries checks the broker's retry warnings for one message: one per
// delivery 1..maxDequeue, each announcing a delay within the documented
// window that never shrinks and grows overall, each redelivery no earlier
// than announced and at most a poll later. It returns the announced delays.
func checkRetries(t *testing.T, s *stack, id, say string, maxDequeue int, retryMin, retryMax, pollMax time.Duration) []string {
	t.Helper()
	lines := s.events.linesOf("server", "handler failed on message "+id+" ")
	if len(lines) != maxDequeue {
		t.Errorf("%q failed %d times, want %d", say, len(lines), maxDequeue)
		return nil
	}
	var announced []string
	var previous time.Duration
	for i, l := range lines {
		m := retryLine.FindStringSubmatch(l.text)
		if m == nil {
			t.Errorf("unreadable retry warning: %s", l.text)
			return nil
		}
		delivery, _ := strconv.Atoi(m[2])
		delay, err := time.ParseDuration(m[4])
		if err != nil || delivery != i+1 || m[3] != strconv.Itoa(maxDequeue) {
			t.Errorf("retry warning %d of %q: %s", i+1, say, l.text)
			return nil
		}
		if !strings.Contains(m[5], "fault injection") {
			t.Errorf("retry warning %d of %q does not give the handler's error: %s", i+1, say, l.text)
		}
		// The documented window: RetryDelay's minimum doubled per earlier
		// delivery, capped, jittered down to half (never below the minimum).
		hi := min(retryMin<<(delivery-1), retryMax)
		lo := max(hi/2, retryMin)
		if delay < lo-time.Millisecond || delay > hi+time.Millisecond {
			t.Errorf("delivery %d of %q: retry in %s, outside the documented %s..%s", delivery, say, delay, lo, hi)
		}
		if delay < previous {
			t.Errorf("delivery %d of %q: retry in %s, shorter than the %s before", delivery, say, delay, previous)
		}
		if i+1 < len(lines) {
			gap := lines[i+1].at.Sub(l.at)
			if gap < delay-250*time.Millisecond || gap > delay+pollMax+slack {
				t.Errorf("delivery %d of %q was retried %s later, announced %s", delivery, say, gap.Round(time.Millisecond), delay)
			}
		}
		previous = delay
		announced = append(announced, delay.Round(100*time.Millisecond).String())
	}
	first, _ := time.ParseDuration(retryLine.FindStringSubmatch(lines[0].text)[4])
	if previous <= first {
		t.Errorf("the retry delays of %q did not grow: %v", say, announced)
	}
	return announced
}
