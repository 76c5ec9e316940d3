//go:build faults

package faults

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang/protobuf/proto"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
	"github.com/poc-go-micro/poc-go-micro/proto/example"
)

// maxMessageText is the service's limit on a message text, in bytes.
const maxMessageText = 64 * 1024

// hostileMessage is a text written straight into the events queue, and
// what the broker's contract says becomes of it.
type hostileMessage struct {
	name string
	text string
	// say is the event text the server must log as received, once, when
	// the message is to be delivered; empty when it is to be poisoned.
	say     string
	deliver bool
	// reason is what the poison record's reason must contain.
	reason string
	// immediately: poisoned on its first delivery, without the handler (a
	// damaged envelope, or a message go-micro cannot decode), rather than
	// after MaxDequeueCount deliveries.
	immediately bool

	id string // the service's message id, once enqueued
}

// envelopeText builds a broker envelope as the broker writes it.
func envelopeText(t *testing.T, headers map[string]string, body []byte) string {
	t.Helper()
	b, err := json.Marshal(struct {
		Version int               `json:"azqueue"`
		Headers map[string]string `json:"headers"`
		Body    []byte            `json:"body"`
	}{1, headers, body})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func protoBody(t *testing.T, say string) []byte {
	t.Helper()
	b, err := proto.Marshal(&example.Message{Say: say})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func protoHeaders(id string) map[string]string {
	return map[string]string{"Content-Type": "application/grpc+proto", "Micro-Id": id, "Micro-Topic": example.EventsTopic}
}

// maxSizeEnvelope returns a valid envelope of exactly maxMessageText bytes
// whose event text starts with say.
func maxSizeEnvelope(t *testing.T, say string) (text, fullSay string) {
	t.Helper()
	pad := maxMessageText * 3 / 4
	for range 64 {
		fullSay = say + strings.Repeat("x", pad)
		text = envelopeText(t, protoHeaders("hostile-max-size"), protoBody(t, fullSay))
		switch {
		case len(text) == maxMessageText:
			return text, fullSay
		case len(text) > maxMessageText:
			pad -= (len(text) - maxMessageText + 3) * 3 / 4
		default:
			pad += max(1, (maxMessageText-len(text))*3/4)
		}
	}
	t.Fatalf("could not build an envelope of exactly %d bytes (last %d)", maxMessageText, len(text))
	return "", ""
}

// hostileMessages returns the scenario's texts.
func hostileMessages(t *testing.T) []*hostileMessage {
	rng := rand.New(rand.NewSource(7))
	random := make([]byte, 512)
	rng.Read(random)
	good := envelopeText(t, protoHeaders("hostile-truncated"), protoBody(t, "truncated envelope"))
	huge := protoHeaders("hostile-huge-headers")
	for i := 0; len(huge) < 2000; i++ {
		huge[fmt.Sprintf("X-Hostile-%04d", i)] = strings.Repeat("h", 8)
	}
	maxText, maxSay := maxSizeEnvelope(t, "maximum size ")
	jsonHeaders := protoHeaders("hostile-wrong-type")
	jsonHeaders["Content-Type"] = "application/json"
	unknownType := protoHeaders("hostile-unknown-type")
	unknownType["Content-Type"] = "text/x-hostile"

	return []*hostileMessage{
		{name: "random bytes", text: string(random), reason: "go-micro could not decode the message as application/json", immediately: true},
		{name: "invalid base64", text: "eyJhenF1ZXVlIjoxLCJoZWFkZXJzIjp7fX0=!!not*base64", reason: "go-micro could not decode the message as application/json", immediately: true},
		{name: "base64 of a truncated envelope", text: base64.StdEncoding.EncodeToString([]byte(good[:len(good)/2])), reason: "unreadable envelope", immediately: true},
		{name: "truncated JSON envelope", text: good[:len(good)/2], reason: "unreadable envelope", immediately: true},
		{name: "envelope of an unknown version", text: strings.Replace(good, `{"azqueue":1`, `{"azqueue":9`, 1), reason: "unsupported version 9", immediately: true},
		{name: "envelope with a huge header map (2,000 headers)", text: envelopeText(t, huge, protoBody(t, "huge header map")), say: "huge header map", deliver: true},
		{name: "proto body labelled application/json", text: envelopeText(t, jsonHeaders, protoBody(t, "wrong content type")), reason: "go-micro could not decode the message as application/json", immediately: true},
		{name: "unknown content type", text: envelopeText(t, unknownType, protoBody(t, "unknown content type")), reason: "Unsupported Content-Type", immediately: true},
		{name: "envelope with a body that is not a proto", text: envelopeText(t, protoHeaders("hostile-bad-proto"), random[:64]), reason: "go-micro could not decode the message as application/grpc+proto", immediately: true},
		{name: "maximum-size envelope (64 KiB)", text: maxText, say: maxSay, deliver: true},
		{name: "empty message", text: "", say: "", deliver: true},
		{name: "JSON written by another tool", text: `{"say":"written by another tool"}`, say: "written by another tool", deliver: true},
		{name: "non-ASCII JSON written by another tool", text: `{"say":"héllo wörld 😀"}`, say: "héllo wörld 😀", deliver: true},
	}
}

// TestHostileQueueContentIsDeliveredOrPoisoned is scenario 7: texts no
// publisher of ours writes are put straight into the events queue with the
// raw SDK while the server consumes it, with AZQUEUE_MAX_DEQUEUE_COUNT=2.
//
// Asserted, per text, what the broker's contract says: a text that is not
// an envelope is delivered raw as application/json (JSON the server can
// decode is handled; anything else fails in the server's decoder and is
// poisoned at once with that error, as is an envelope the server cannot
// decode for its Content-Type); a damaged envelope is poisoned at once
// without reaching the handler; valid envelopes, however large their
// header map or text, are handled. Every text ends handled
// exactly once or in the poison queue with a reason and its original text;
// none vanishes, the server neither crashes nor stops answering
// Example.Call, and an ordinary event published afterwards is handled.
func TestHostileQueueContentIsDeliveredOrPoisoned(t *testing.T) {
	s := newStack(t)
	const maxDequeue = 2
	server := s.startServer("server", []string{
		fmt.Sprintf("AZQUEUE_MAX_DEQUEUE_COUNT=%d", maxDequeue),
		"AZQUEUE_RETRY_MIN=200ms", "AZQUEUE_RETRY_MAX=1s", "AZQUEUE_POLL_MAX=500ms",
	})
	probe := startProber(t, dial(t, serverAddress(t, server)), 200*time.Millisecond, 2*time.Second)

	messages := hostileMessages(t)
	queue := s.eventsQueue().NewMessagesURL()
	for _, m := range messages {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		resp, err := queue.Enqueue(ctx, m.text, 0, 0)
		cancel()
		if err != nil {
			t.Fatalf("enqueue %s (%d bytes): %v", m.name, len(m.text), err)
		}
		m.id = string(resp.MessageID)
	}
	writtenAt := time.Now()

	// Every text reaches its end: handled, or in the poison queue.
	var records map[string]poisonEntry
	settled := func(m *hostileMessage) bool {
		if m.deliver {
			_, ok := s.events.handledSay(m.say)
			return ok
		}
		_, ok := records[m.id]
		return ok
	}
	testenv.WaitFor(t, 60*time.Second, "every hostile message to be handled or poisoned", func() bool {
		records = make(map[string]poisonEntry)
		for _, r := range s.poisonRecords() {
			records[r.MessageID] = r
		}
		for _, m := range messages {
			if !settled(m) {
				return false
			}
		}
		return true
	})
	settledAfter := time.Since(writtenAt)

	// The queue is not blocked: an ordinary event still gets through.
	after := s.publishEvents("after the hostile messages", 1)
	s.events.waitForAll(after, 30*time.Second)
	emptyAfter := s.waitEmpty(s.eventsQueue(), 10*time.Second)
	calls, slowest := probe.check(t, "while hostile messages were consumed")

	handled, poisoned := 0, 0
	var outcomes []string
	for _, m := range messages {
		hs := s.events.tally([]string{m.say}).handled
		r, isPoisoned := records[m.id]
		switch {
		case m.deliver:
			handled++
			if hs != 1 || isPoisoned {
				t.Errorf("%s: handled %d times, poisoned %v; want handled once", m.name, hs, isPoisoned)
			}
			outcomes = append(outcomes, m.name+": handled")
		default:
			poisoned++
			if !isPoisoned {
				t.Errorf("%s: not in the poison queue", m.name)
				continue
			}
			if !strings.Contains(r.Reason, m.reason) {
				t.Errorf("%s: poisoned with the reason %q, want it to contain %q", m.name, r.Reason, m.reason)
			}
			if m.immediately && r.DequeueCount != 1 {
				t.Errorf("%s: poisoned on delivery %d, want at once (no retry can decode it)", m.name, r.DequeueCount)
			}
			if !m.immediately && (r.DequeueCount != maxDequeue+1 || !strings.HasPrefix(r.Reason, fmt.Sprintf("delivered %d times", maxDequeue+1))) {
				t.Errorf("%s: poisoned on delivery %d with %q, want after MaxDequeueCount %d deliveries", m.name, r.DequeueCount, r.Reason, maxDequeue)
			}
			if utf8.ValidString(m.text) && r.Original != m.text {
				t.Errorf("%s: the record's original text differs from the text written:\n got %.120q\nwant %.120q", m.name, r.Original, m.text)
			}
			if r.Original == "" {
				t.Errorf("%s: the record has no original text", m.name)
			}
			outcomes = append(outcomes, fmt.Sprintf("%s: poisoned on delivery %d (%s)", m.name, r.DequeueCount, shortReason(r.Reason)))
		}
	}
	if len(records) != poisoned {
		t.Errorf("the poison queue holds %d records, want %d", len(records), poisoned)
	}
	if server.Exited() {
		t.Fatalf("the server exited:\n%s", tailOf(server.Output(), 30))
	}
	stopServer(t, server)
	assertClean(t, "server", server)
	record(t, outcome{
		scenario: 7, title: "hostile queue content written with the raw SDK (13 kinds), then an ordinary event",
		published: len(messages) + len(after), handled: handled + len(after), duplicates: 0, poisoned: poisoned, lost: 0,
		notes: fmt.Sprintf("all settled %s after writing, the ordinary event then handled, queue empty %s later; %d Example.Call probes all answered, slowest %s. %s",
			seconds(settledAfter), seconds(emptyAfter), calls, slowest.Round(time.Millisecond), strings.Join(outcomes, "; ")),
	})
}

// shortReason keeps the informative end of a poison reason for the report.
func shortReason(reason string) string {
	if i := strings.Index(reason, "last error: "); i >= 0 {
		reason = reason[i+len("last error: "):]
	}
	reason = strings.TrimPrefix(reason, "subscriber error: ")
	reason = strings.TrimPrefix(reason, "go-micro could not decode the message as ")
	if len(reason) > 70 {
		reason = reason[:70] + "…"
	}
	return reason
}
