package azqueue

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/Azure/azure-storage-queue-go/azqueue"
	"github.com/google/uuid"
	"github.com/micro/go-micro/v2/broker"
	"github.com/micro/go-micro/v2/client"
	"github.com/micro/go-micro/v2/config/cmd"
	dlog "github.com/micro/go-micro/v2/debug/log"
	"github.com/micro/go-micro/v2/server"
	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage"
	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage/storagetest"
	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// The conformance suite proves the guarantees of the package documentation
// (doc.go), one case per guarantee, on every backend: the real service
// (Azurite, the truth) and the in-memory fake (fast, and able to inject
// faults). Every case uses its own topics, publishes uniquely identified
// messages and asserts on the set it receives; every wait polls a condition
// against a deadline.

// conformanceCase is one guarantee and the test that proves it.
type conformanceCase struct {
	name  string
	needs features
	// serial cases bound elapsed time from above, or set the process's
	// environment; they run alone, before the parallel ones, so that other
	// cases' load cannot distort them and their environment reaches no other
	// case.
	serial bool
	// long cases spend tens of seconds at default settings; -short skips them.
	long bool
	run  func(t *testing.T, e *env)
}

var conformanceCases = []conformanceCase{
	{name: "HeadersAndBodyRoundTripByteForByte", run: testHeadersAndBodyRoundTripByteForByte},
	{name: "CompetingConsumersInOneGroupShareTheMessages", run: testCompetingConsumersInOneGroupShareTheMessages},
	{name: "EveryGroupOfATopicReceivesEveryMessage", run: testEveryGroupOfATopicReceivesEveryMessage},
	{name: "TopicsSharingAQueuePrefixStayApart", run: testTopicsSharingAQueuePrefixStayApart},
	{name: "MessagesPublishedBeforeAnySubscriberAreKept", run: testMessagesPublishedBeforeAnySubscriberAreKept},
	{name: "PublishFindsNewGroupsAfterRefreshOrQueueCacheTTL", run: testPublishFindsNewGroupsAfterRefreshOrQueueCacheTTL},
	{name: "EventsPublishedBeforeAnyGroupGoToTheFirstGroup", run: testEventsPublishedBeforeAnyGroupGoToTheFirstGroup},
	{name: "ClaimedQueueKeepsReceivingWhileItsSubscribersAreStopped", run: testClaimedQueueKeepsReceivingWhileItsSubscribersAreStopped},
	{name: "RetiredGroupIsNotFedAndNotRecreated", run: testRetiredGroupIsNotFedAndNotRecreated},
	{name: "GroupStartingUnderPublishersWithWarmCachesLosesNothing", run: testGroupStartingUnderPublishersWithWarmCachesLosesNothing},
	{name: "MessageTTLSetsTheMessageLifetime", needs: features{realService: true}, serial: true, run: testMessageTTLSetsTheMessageLifetime},
	{name: "FailedHandlerMessageIsRedeliveredAfterRetryDelay", run: testFailedHandlerMessageIsRedeliveredAfterRetryDelay},
	{name: "ExplicitAckDeletesAndNoAckRedelivers", run: testExplicitAckDeletesAndNoAckRedelivers},
	{name: "NackedMessageIsRedeliveredNoEarlierThanTheDelay", run: testNackedMessageIsRedeliveredNoEarlierThanTheDelay},
	{name: "LongHandlerIsProcessedOnceWhileItsLeaseIsRenewed", serial: true, run: testLongHandlerIsProcessedOnceWhileItsLeaseIsRenewed},
	{name: "ExtendLengthensTheLease", run: testExtendLengthensTheLease},
	{name: "MessageMovesToPoisonQueueAfterMaxDequeueCount", run: testMessageMovesToPoisonQueueAfterMaxDequeueCount},
	{name: "PoisoningCopiesBeforeDeletingSoNothingIsLost", run: testPoisoningCopiesBeforeDeletingSoNothingIsLost},
	{name: "ForeignMessageIsDeliveredRawWithRawContentType", run: testForeignMessageIsDeliveredRawWithRawContentType},
	{name: "DamagedEnvelopeGoesToPoisonWithoutCallingTheHandler", run: testDamagedEnvelopeGoesToPoisonWithoutCallingTheHandler},
	{name: "UndecodableMessageIsPoisonedAtFirstDelivery", run: testUndecodableMessageIsPoisonedAtFirstDelivery},
	{name: "PermanentErrorIsPoisonedAtFirstDelivery", run: testPermanentErrorIsPoisonedAtFirstDelivery},
	{name: "GoMicroHandlerErrorsKeepTheirRetries", run: testGoMicroHandlerErrorsKeepTheirRetries},
	{name: "HandBacksDoNotCountTowardsMaxDequeueCount", run: testHandBacksDoNotCountTowardsMaxDequeueCount},
	{name: "PoisonRecordSaysWhyWhenNoHandlerFailed", run: testPoisonRecordSaysWhyWhenNoHandlerFailed},
	{name: "PoisonedMessagesAreReportedAndCanBeRequeued", run: testPoisonedMessagesAreReportedAndCanBeRequeued},
	{name: "OversizeMessageIsRejectedAndTheLargestFits", run: testOversizeMessageIsRejectedAndTheLargestFits},
	{name: "UnsubscribeUnderLoadLosesNothingAndStrandsNoLease", run: testUnsubscribeUnderLoadLosesNothingAndStrandsNoLease},
	{name: "UnsubscribeHandsBackAnInFlightDequeue", run: testUnsubscribeHandsBackAnInFlightDequeue},
	{name: "IdlePollingBacksOffWithinPollInterval", serial: true, run: testIdlePollingBacksOffWithinPollInterval},
	{name: "IdleSubscriptionAtDefaultsPollsAtMostSevenTimesAMinute", needs: features{realService: true}, long: true, run: testIdleSubscriptionAtDefaultsPollsAtMostSevenTimesAMinute},
	{name: "NotConnectedUntilConnectAndConnectIsIdempotent", run: testNotConnectedUntilConnectAndConnectIsIdempotent},
	{name: "ConnectSaysWhatIsWrongWithoutTheKey", needs: features{realService: true}, run: testConnectSaysWhatIsWrongWithoutTheKey},
	{name: "CredentialsComeFromOptionsThenEnvironment", needs: features{realService: true}, serial: true, run: testCredentialsComeFromOptionsThenEnvironment},
	{name: "LogsNeverShowCredentials", needs: features{realService: true}, serial: true, run: testLogsNeverShowCredentials},
	{name: "PublishHonoursTheContextDeadline", run: testPublishHonoursTheContextDeadline},
	{name: "OutOfRangeOptionsAreRejectedWithTheRange", serial: true, run: testOutOfRangeOptionsAreRejectedWithTheRange},
	{name: "OptionWinsOverEnvironmentWhichWinsOverDefault", serial: true, run: testOptionWinsOverEnvironmentWhichWinsOverDefault},
	{name: "ServerAndClientTwinsReachTheBroker", run: testServerAndClientTwinsReachTheBroker},
	{name: "AtMostConcurrencyPlusBatchSizeMessagesAreHeld", run: testAtMostConcurrencyPlusBatchSizeMessagesAreHeld},
	{name: "MessagesWaitingForAHandlerKeepTheirLease", run: testMessagesWaitingForAHandlerKeepTheirLease},
	{name: "FullAnswersOverlapDequeuesWithinTheRoom", run: testFullAnswersOverlapDequeuesWithinTheRoom},
	{name: "LocalPublishWakesAnIdlePoller", serial: true, run: testLocalPublishWakesAnIdlePoller},
	{name: "SubscriptionSurvivesTransportErrors", run: testSubscriptionSurvivesTransportErrors},
	{name: "PartialPublishFailureNamesTheFailedQueue", run: testPartialPublishFailureNamesTheFailedQueue},
	{name: "LostLeaseMakesAckReturnErrLeaseLost", run: testLostLeaseMakesAckReturnErrLeaseLost},
	{name: "StatsCountTheRoundTrip", run: testStatsCountTheRoundTrip},
	{name: "ObserverIsToldWhatStatsCount", run: testObserverIsToldWhatStatsCount},
	{name: "RenewalsThatFailOrAreSlowInsideTheLeaseNeverLoseIt", run: testRenewalsThatFailOrAreSlowInsideTheLeaseNeverLoseIt},
	{name: "MessageWhoseLeaseWasLostWhileWaitingIsNotHandled", serial: true, run: testMessageWhoseLeaseWasLostWhileWaitingIsNotHandled},
	{name: "DeleteWhoseAnswerWasLostIsNotAFailure", run: testDeleteWhoseAnswerWasLostIsNotAFailure},
	{name: "PublishWhoseAnswerWasLostMayDuplicateWithTheSameMicroID", run: testPublishWhoseAnswerWasLostMayDuplicateWithTheSameMicroID},
	{name: "SubscribeRacingDisconnectLeavesNoPoller", run: testSubscribeRacingDisconnectLeavesNoPoller},
	{name: "UnsubscribeTimeoutLeavesNoGoroutineBehind", run: testUnsubscribeTimeoutLeavesNoGoroutineBehind},
	{name: "FailedLocalPublishDoesNotWakeAFailingPoller", serial: true, run: testFailedLocalPublishDoesNotWakeAFailingPoller},
	{name: "ThrottlingMakesEveryRequestBackOffAndLosesNothing", serial: true, run: testThrottlingMakesEveryRequestBackOffAndLosesNothing},
}

func TestConformance(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			newEnv := be.start(t)
			for _, c := range conformanceCases {
				t.Run(c.name, func(t *testing.T) {
					if why := be.features.missing(c.needs); why != "" {
						t.Skip(why)
					}
					if c.long && testing.Short() {
						t.Skip("spends tens of seconds at default settings; skipped with -short")
					}
					if !c.serial {
						t.Parallel()
					}
					e := newEnv(t)
					e.fresh = newEnv
					c.run(t, e)
				})
			}
		})
	}
}

// fastPolls makes an idle subscription notice new messages within 100ms, so
// that cases measuring other delays are not dominated by polling.
var fastPolls = PollInterval(10*time.Millisecond, 100*time.Millisecond)

func testHeadersAndBodyRoundTripByteForByte(t *testing.T, e *env) {
	// Every byte value, in both directions, so that no encoding step can
	// drop, escape or reorder one unnoticed.
	binary := make([]byte, 0, 512)
	for i := 0; i < 256; i++ {
		binary = append(binary, byte(i))
	}
	for i := 255; i >= 0; i-- {
		binary = append(binary, byte(i))
	}
	tests := []struct {
		name      string
		publisher []broker.Option
		// envelope returns the envelope JSON of a text as stored.
		envelope func(text string) (string, error)
	}{
		{"envelope", nil, func(text string) (string, error) { return text, nil }},
		{"whole-message base64", []broker.Option{Base64Messages(true)}, func(text string) (string, error) {
			b, err := base64.StdEncoding.DecodeString(text)
			return string(b), err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e.in(t)
			topic := newTopic()
			pub := e.connected(tt.publisher...)

			// On the wire: an ASCII-only envelope, in the chosen encoding.
			wire := newTopic()
			if err := pub.Publish(wire, &broker.Message{Header: map[string]string{"Say": "héllo 😀"}, Body: binary}); err != nil {
				t.Fatal(err)
			}
			texts := e.texts(queueName(t, wire, DefaultGroup))
			if len(texts) != 1 {
				t.Fatalf("%d messages stored, want 1", len(texts))
			}
			envelope, err := tt.envelope(texts[0])
			if err != nil || !strings.HasPrefix(envelope, `{"azqueue":1,`) {
				t.Errorf("stored text %.80q is not an envelope in this encoding (%v)", texts[0], err)
			}
			for i := 0; i < len(texts[0]); i++ {
				if texts[0][i] >= 0x80 {
					t.Fatalf("stored text is not ASCII at byte %d: %.80q", i, texts[0][i:])
				}
			}

			sub := e.connected() // receiving accepts both encodings without being told
			r := newRecorder(t)
			e.subscribe(sub, topic, r.handler(nil), fastPolls)

			published := map[string]*broker.Message{
				"generated id": {Header: map[string]string{
					idHeader:       "generated id",
					"Content-Type": "application/grpc+proto",
					"Micro-Topic":  topic,
					"X-Custom":     `héllo <&> "q" \ / 😀 ` + "\x00\t\n",
				}, Body: binary},
				"given id": {Header: map[string]string{
					idHeader: "given id",
					HeaderID: "caller-id-" + newID(),
					"Empty":  "",
				}, Body: []byte{}},
			}
			before := time.Now()
			for _, m := range published {
				if err := pub.Publish(topic, m); err != nil {
					t.Fatalf("publish: %v", err)
				}
			}
			r.waitIDs(t, []string{"generated id", "given id"}, waitLong)

			for _, d := range r.all() {
				want := published[d.id]
				if d.topic != topic {
					t.Errorf("%s: topic %q, want %q", d.id, d.topic, topic)
				}
				if !bytes.Equal(d.body, want.Body) {
					t.Errorf("%s: body differs: got %d bytes %x, want %d bytes %x", d.id, len(d.body), d.body, len(want.Body), want.Body)
				}
				for k, v := range want.Header {
					if got, ok := d.header[k]; !ok || got != v {
						t.Errorf("%s: header %q = %q (present %v), want %q", d.id, k, got, ok, v)
					}
				}
				added := 4 // the Azqueue-* headers
				if given := want.Header[HeaderID]; given == "" {
					added++
					if _, err := uuid.Parse(d.header[HeaderID]); err != nil {
						t.Errorf("%s: Micro-Id %q added on publish is not a UUID: %v", d.id, d.header[HeaderID], err)
					}
				}
				if d.header[HeaderMessageID] == "" || d.header[HeaderMessageID] != d.msgID {
					t.Errorf("%s: %s = %q, want the event's MessageID %q", d.id, HeaderMessageID, d.header[HeaderMessageID], d.msgID)
				}
				if d.header[HeaderDequeueCount] != "1" || d.count != 1 {
					t.Errorf("%s: %s = %q, DequeueCount() = %d, want 1 on the first delivery", d.id, HeaderDequeueCount, d.header[HeaderDequeueCount], d.count)
				}
				inserted, err := time.Parse(time.RFC3339, d.header[HeaderInsertionTime])
				// The service keeps whole seconds, hence the second of slack.
				if err != nil || inserted.Before(before.Add(-time.Second)) || inserted.After(time.Now().Add(time.Second)) {
					t.Errorf("%s: %s = %q (%v), want an RFC 3339 time between publish and now", d.id, HeaderInsertionTime, d.header[HeaderInsertionTime], err)
				}
				if want := queueName(t, topic, DefaultGroup); d.header[HeaderQueue] != want {
					t.Errorf("%s: %s = %q, want %q", d.id, HeaderQueue, d.header[HeaderQueue], want)
				}
				if len(d.header) != len(want.Header)+added {
					t.Errorf("%s: %d headers %v, want the %d published plus %d", d.id, len(d.header), d.header, len(want.Header), added)
				}
			}
		})
	}
}

func testCompetingConsumersInOneGroupShareTheMessages(t *testing.T, e *env) {
	const n = 100
	topic := newTopic()
	queue := e.createQueue(topic, "g")
	// Two handler slots and a little work per message keep either consumer
	// from draining the queue before the other has polled, so both take part.
	opts := []broker.SubscribeOption{broker.Queue("g"), Concurrency(2), fastPolls}
	busy := func(Event, delivery) error { work(e, 20*time.Millisecond); return nil }
	consumers := []*Broker{e.connected(), e.connected()}
	recorders := []*recorder{newRecorder(t), newRecorder(t)}
	for i, b := range consumers {
		e.subscribe(b, topic, recorders[i].handler(busy), opts...)
	}
	ids := publishMessages(t, e.connected(), topic, n)

	union := func() map[string]int {
		all := map[string]int{}
		for _, r := range recorders {
			for id, k := range r.ids() {
				all[id] += k
			}
		}
		return all
	}
	eventually(t, waitLong, func() string {
		return fmt.Sprintf("%d of %d delivered, %d left in %s", len(union()), n, e.messages(queue), queue)
	},
		func() bool { return len(missing(union(), ids)) == 0 && e.messages(queue) == 0 })
	assertExactlyOnce(t, "union of both consumers", union(), ids)
	first, second := recorders[0].ids(), recorders[1].ids()
	for id := range first {
		if second[id] > 0 {
			t.Errorf("message %s delivered to both consumers of one group", id)
		}
	}
	if len(first) == 0 || len(second) == 0 {
		t.Errorf("consumers received %d and %d messages: both should compete for them", len(first), len(second))
	}
}

func testEveryGroupOfATopicReceivesEveryMessage(t *testing.T, e *env) {
	const n = 20
	topic := newTopic()
	groups := []string{"a", "b", "c"}
	recorders := make([]*recorder, len(groups))
	for i, g := range groups {
		recorders[i] = newRecorder(t)
		e.subscribe(e.connected(), topic, recorders[i].handler(nil), broker.Queue(g), fastPolls)
	}
	ids := publishMessages(t, e.connected(), topic, n)
	for i, g := range groups {
		queue := queueName(t, topic, g)
		eventually(t, waitLong, func() string { return fmt.Sprintf("group %s: %d of %d delivered", g, len(recorders[i].ids()), n) },
			func() bool { return len(missing(recorders[i].ids(), ids)) == 0 && e.messages(queue) == 0 })
		assertExactlyOnce(t, "group "+g, recorders[i].ids(), ids)
	}
}

func testTopicsSharingAQueuePrefixStayApart(t *testing.T, e *env) {
	// "x.<id>" and "x-<id>" sanitise to the same readable prefix: Publish
	// lists both topics' queues and must keep only its own by metadata.
	id := strings.ReplaceAll(newID(), "-", "")[:12]
	topics := []string{"x." + id, "x-" + id}
	if topicPrefix(topics[0]) != topicPrefix(topics[1]) {
		t.Fatalf("test premise: %q and %q should share a queue prefix", topics[0], topics[1])
	}
	if queueName(t, topics[0], DefaultGroup) == queueName(t, topics[1], DefaultGroup) {
		t.Fatalf("topics %q and %q map to one queue", topics[0], topics[1])
	}
	recorders := []*recorder{newRecorder(t), newRecorder(t)}
	for i, topic := range topics {
		e.subscribe(e.connected(), topic, recorders[i].handler(nil), fastPolls)
	}
	pub := e.connected()
	published := [][]string{publishMessages(t, pub, topics[0], 5), publishMessages(t, pub, topics[1], 5)}
	for i, topic := range topics {
		recorders[i].waitIDs(t, published[i], waitLong)
		eventually(t, waitLong, func() string { return "queue of " + topic + " not empty" },
			func() bool { return e.messages(queueName(t, topic, DefaultGroup)) == 0 })
		assertExactlyOnce(t, "topic "+topic, recorders[i].ids(), published[i])
	}
}

func testMessagesPublishedBeforeAnySubscriberAreKept(t *testing.T, e *env) {
	const n = 20
	topic := newTopic()
	ids := publishMessages(t, e.connected(), topic, n)
	queue := queueName(t, topic, DefaultGroup)
	if got := e.messages(queue); got != n {
		t.Fatalf("%d messages waiting in %s before any subscriber, want %d", got, queue, n)
	}
	r := newRecorder(t)
	e.subscribe(e.connected(), topic, r.handler(nil), fastPolls)
	r.waitIDs(t, ids, waitLong)
	eventually(t, waitLong, func() string { return queue + " not empty" }, func() bool { return e.messages(queue) == 0 })
	assertExactlyOnce(t, "late subscriber", r.ids(), ids)
}

func testFailedHandlerMessageIsRedeliveredAfterRetryDelay(t *testing.T, e *env) {
	// Whole seconds: the service's visibility granularity.
	const retryMin, retryMax = time.Second, 2 * time.Second
	tests := []struct {
		name string
		fail func(id string) error
	}{
		{"handler error", func(id string) error { return fmt.Errorf("conformance failure %s", id) }},
		{"handler panic", func(id string) error { panic("conformance panic " + id) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e.in(t)
			topic := newTopic()
			queue := queueName(t, topic, DefaultGroup)
			b := e.connected()
			r := newRecorder(t)
			e.subscribe(b, topic, r.handler(func(_ Event, d delivery) error {
				if d.count == 1 && d.id != "after" {
					return tt.fail(d.id)
				}
				return nil
			}), RetryDelay(retryMin, retryMax), fastPolls)
			ids := publishMessages(t, b, topic, 1)

			r.waitDeliveries(t, 1, waitLong)
			eventually(t, waitLong, func() string { return "first handler call has not returned" }, func() bool { return r.returnedCount() == 1 })
			if got := e.messages(queue); got != 1 {
				t.Fatalf("%d messages in %s after the handler failed, want the failed one kept", got, queue)
			}
			ds := r.waitDeliveries(t, 2, waitLong)
			first, second := ds[0], ds[1]
			if second.id != ids[0] || second.msgID != first.msgID || second.count != 2 {
				t.Fatalf("redelivery: id %q message %q count %d, want %q %q 2", second.id, second.msgID, second.count, ids[0], first.msgID)
			}
			if gap := second.started.Sub(first.returned); gap < retryMin {
				t.Errorf("redelivered %s after the failure, want no earlier than RetryDelay min %s", gap, retryMin)
			}
			eventually(t, waitLong, func() string { return queue + " not empty after the successful redelivery" },
				func() bool { return e.messages(queue) == 0 })
			if s := waitStats(t, b, "acked=1", func(s Stats) bool { return s.Acked == 1 }); s.Retried != 1 || s.Delivered != 2 {
				t.Errorf("stats %s: want retried=1 delivered=2 acked=1", s)
			}

			// The subscription keeps working after the failure.
			if err := b.Publish(topic, testMessage("after")); err != nil {
				t.Fatal(err)
			}
			r.waitIDs(t, []string{"after"}, waitLong)
			assertExactlyOnce(t, "after the failure", map[string]int{"after": r.ids()["after"]}, []string{"after"})
		})
	}
}

func testExplicitAckDeletesAndNoAckRedelivers(t *testing.T, e *env) {
	t.Run("explicit Ack deletes the message", func(t *testing.T) {
		e := e.in(t)
		topic := newTopic()
		queue := queueName(t, topic, DefaultGroup)
		b := e.connected()
		r := newRecorder(t)
		var acks [2]error
		e.subscribe(b, topic, r.handler(func(ev Event, _ delivery) error {
			acks[0] = ev.Ack()
			acks[1] = ev.Ack()
			return nil
		}), broker.DisableAutoAck(), VisibilityTimeout(time.Second), fastPolls)
		publishMessages(t, b, topic, 1)
		r.waitDeliveries(t, 1, waitLong)
		eventually(t, waitLong, func() string { return queue + " not empty after Ack" }, func() bool { return e.messages(queue) == 0 })
		eventually(t, waitLong, func() string { return "handler has not returned" }, func() bool { return r.returnedCount() == 1 })
		if acks[0] != nil {
			t.Errorf("Ack: %v", acks[0])
		}
		if !errors.Is(acks[1], ErrSettled) {
			t.Errorf("second Ack: %v, want ErrSettled", acks[1])
		}
		if s := b.Stats(); s.Acked != 1 {
			t.Errorf("stats %s: want acked=1", s)
		}
	})

	t.Run("without Ack the message comes back after the visibility timeout", func(t *testing.T) {
		e := e.in(t)
		const visibility = 2 * time.Second
		topic := newTopic()
		queue := queueName(t, topic, DefaultGroup)
		b := e.connected()
		r := newRecorder(t)
		e.subscribe(b, topic, r.handler(func(ev Event, d delivery) error {
			if d.count == 1 {
				return nil // neither acked nor failed
			}
			return ev.Ack()
		}), broker.DisableAutoAck(), VisibilityTimeout(visibility), fastPolls)
		publishMessages(t, b, topic, 1)
		r.waitDeliveries(t, 1, waitLong)
		eventually(t, waitLong, func() string { return "handler has not returned" }, func() bool { return r.returnedCount() == 1 })
		if got := e.messages(queue); got != 1 {
			t.Fatalf("%d messages in %s after a handler returned without Ack, want 1", got, queue)
		}
		ds := r.waitDeliveries(t, 2, waitLong)
		if ds[1].msgID != ds[0].msgID || ds[1].count != 2 {
			t.Fatalf("second delivery: message %q count %d, want %q 2", ds[1].msgID, ds[1].count, ds[0].msgID)
		}
		// The lease began when the service answered the dequeue, a moment
		// before the handler started: allow that moment, no more.
		const answerToHandler = 250 * time.Millisecond
		if gap := ds[1].started.Sub(ds[0].started); gap < visibility-answerToHandler {
			t.Errorf("redelivered %s after the first delivery, want no earlier than the %s visibility timeout", gap, visibility)
		}
		eventually(t, waitLong, func() string { return queue + " not empty after Ack" }, func() bool { return e.messages(queue) == 0 })
	})

	t.Run("a handler's own Ack under AutoAck settles the message once", func(t *testing.T) {
		e := e.in(t)
		topic := newTopic()
		queue := queueName(t, topic, DefaultGroup)
		b := e.connected()
		r := newRecorder(t)
		var ackErr error
		sub := e.subscribe(b, topic, r.handler(func(ev Event, _ delivery) error {
			ackErr = ev.Ack()
			return nil
		}), fastPolls)
		publishMessages(t, b, topic, 1)
		r.waitDeliveries(t, 1, waitLong)
		// Unsubscribe waits for the handler and the broker's own ack attempt.
		if err := sub.Unsubscribe(); err != nil {
			t.Fatal(err)
		}
		if ackErr != nil {
			t.Errorf("handler's Ack: %v", ackErr)
		}
		if s := b.Stats(); s.Acked != 1 || s.Errors != 0 {
			t.Errorf("stats %s: want acked=1 errors=0", s)
		}
		if got := e.messages(queue); got != 0 {
			t.Errorf("%d messages left in %s", got, queue)
		}
	})
}

func testNackedMessageIsRedeliveredNoEarlierThanTheDelay(t *testing.T, e *env) {
	tests := []struct {
		name  string
		delay time.Duration
		// within bounds the redelivery from above: 0 means visible at once.
		within time.Duration
	}{
		{"Nack(0) makes the message visible at once", 0, time.Second},
		// Not a whole number of seconds, on purpose: the service counts
		// whole seconds, and a shorter delay would break the promise.
		{"Nack(1.5s) keeps it away for 1.5s", 1500 * time.Millisecond, waitLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e.in(t)
			topic := newTopic()
			queue := queueName(t, topic, DefaultGroup)
			b := e.connected()
			r := newRecorder(t)
			var mu sync.Mutex
			var nackedAt time.Time
			var nackErr error
			e.subscribe(b, topic, r.handler(func(ev Event, d delivery) error {
				if d.count > 1 {
					return ev.Ack()
				}
				mu.Lock()
				defer mu.Unlock()
				nackedAt = time.Now()
				nackErr = ev.Nack(tt.delay)
				return nil
			}), broker.DisableAutoAck(), fastPolls)
			publishMessages(t, b, topic, 1)
			ds := r.waitDeliveries(t, 2, waitLong)
			mu.Lock()
			defer mu.Unlock()
			if nackErr != nil {
				t.Fatalf("Nack(%s): %v", tt.delay, nackErr)
			}
			if ds[1].msgID != ds[0].msgID || ds[1].count != 2 {
				t.Fatalf("second delivery: message %q count %d, want %q 2", ds[1].msgID, ds[1].count, ds[0].msgID)
			}
			gap := ds[1].started.Sub(nackedAt)
			if gap < tt.delay {
				t.Errorf("redelivered %s after Nack(%s)", gap, tt.delay)
			}
			if gap > tt.within {
				t.Errorf("redelivered %s after Nack(%s), want within %s", gap, tt.delay, tt.within)
			}
			eventually(t, waitLong, func() string { return queue + " not empty after Ack" }, func() bool { return e.messages(queue) == 0 })
			if s := waitStats(t, b, "acked=1", func(s Stats) bool { return s.Acked == 1 }); s.Retried != 1 {
				t.Errorf("stats %s: want retried=1", s)
			}
		})
	}
}

func testLongHandlerIsProcessedOnceWhileItsLeaseIsRenewed(t *testing.T, e *env) {
	// The handler outlives three and a half leases; renewals at half-life
	// keep the message from anyone else. Free handler slots and fast polls
	// would redeliver it at once if a lease lapsed.
	const visibility, handling = time.Second, 3500 * time.Millisecond
	topic := newTopic()
	queue := queueName(t, topic, DefaultGroup)
	b := e.connected()
	r := newRecorder(t)
	e.subscribe(b, topic, r.handler(func(Event, delivery) error { work(e, handling); return nil }),
		VisibilityTimeout(visibility), Concurrency(4), fastPolls)
	ids := publishMessages(t, b, topic, 1)
	r.waitDeliveries(t, 1, waitLong)
	eventually(t, waitLong, func() string { return queue + " not empty after the long handler" },
		func() bool { return r.returnedCount() >= 1 && e.messages(queue) == 0 })
	assertExactlyOnce(t, "long handler", r.ids(), ids)
	if s := waitStats(t, b, "acked=1", func(s Stats) bool { return s.Acked == 1 }); s.Renewals < 3 || s.LeasesLost != 0 {
		t.Errorf("stats %s: want renewals>=3 leases_lost=0 acked=1", s)
	}
}

func testMessageMovesToPoisonQueueAfterMaxDequeueCount(t *testing.T, e *env) {
	tests := []struct {
		name    string
		foreign bool
	}{
		{"envelope", false},
		{"foreign text", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e.in(t)
			topic := newTopic()
			queue := queueName(t, topic, DefaultGroup)
			b := e.connected()
			r := newRecorder(t)
			failure := "conformance failure " + newID()
			e.subscribe(b, topic, r.handler(func(Event, delivery) error { return errors.New(failure) }),
				MaxDequeueCount(2), RetryDelay(0, 0), fastPolls)
			published := testMessage(newID())
			original := `{"say":"poison me"}`
			if tt.foreign {
				e.put(queue, original)
			} else if err := b.Publish(topic, published); err != nil {
				t.Fatal(err)
			}

			if e.lifetime != nil {
				// Poison records never expire: giving up must not become losing.
				var lives []time.Duration
				eventually(t, waitLong, func() string { return "no poison record to peek at" }, func() bool {
					ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
					defer cancel()
					var err error
					lives, err = e.lifetime(ctx, poisonQueueNameFor(queue))
					return err == nil && len(lives) > 0
				})
				if lives[0] < 100*365*day {
					t.Errorf("poison record lives %s, want it never to expire", lives[0])
				}
			}
			rec := e.poisonRecords(queue, 1)[0]
			eventually(t, waitLong, func() string { return queue + " not empty after poisoning" }, func() bool { return e.messages(queue) == 0 })
			ds := r.all()
			var counts []int64
			for _, d := range ds {
				counts = append(counts, d.count)
			}
			if len(ds) != 2 || ds[0].count != 1 || ds[1].count != 2 {
				t.Fatalf("handler saw deliveries with dequeue counts %v, want exactly 1 and 2", counts)
			}
			for _, want := range []string{failure, "MaxDequeueCount 2"} {
				if !strings.Contains(rec.Reason, want) {
					t.Errorf("poison reason %q does not contain %q", rec.Reason, want)
				}
			}
			if rec.Topic != topic || rec.Group != DefaultGroup || rec.Queue != queue || rec.MessageID != ds[0].msgID || rec.DequeueCount != 3 {
				t.Errorf("poison record topic %q group %q queue %q message %q dequeues %d, want %q %q %q %q 3",
					rec.Topic, rec.Group, rec.Queue, rec.MessageID, rec.DequeueCount, topic, DefaultGroup, queue, ds[0].msgID)
			}
			if tt.foreign {
				if rec.Original != original {
					t.Errorf("poison original %q, want the text as written %q", rec.Original, original)
				}
			} else {
				d, err := decodeMessage(rec.Original, false)
				if err != nil || d.foreign || !bytes.Equal(d.Body, published.Body) || d.Headers[idHeader] != published.Header[idHeader] || d.LastError != "" {
					t.Errorf("poison original %q is not the message as published (%v)", rec.Original, err)
				}
			}
			waitStats(t, b, "poisoned=1", func(s Stats) bool { return s.Poisoned == 1 })
		})
	}
}

func testForeignMessageIsDeliveredRawWithRawContentType(t *testing.T, e *env) {
	tests := []struct {
		name        string
		opts        []broker.SubscribeOption
		text        string
		contentType string
	}{
		{"JSON with the default content type", nil, `{"say":"hi"}`, "application/json"},
		{"plain text with RawContentType", []broker.SubscribeOption{RawContentType("text/plain; charset=utf-8")}, "plain text, not an envelope", "text/plain; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e.in(t)
			topic := newTopic()
			queue := queueName(t, topic, DefaultGroup)
			r := newRecorder(t)
			e.subscribe(e.connected(), topic, r.handler(nil), append(tt.opts, fastPolls)...)
			e.put(queue, tt.text)
			d := r.waitDeliveries(t, 1, waitLong)[0]
			if string(d.body) != tt.text {
				t.Errorf("body %q, want the text as written %q", d.body, tt.text)
			}
			if got := d.header[headerContentType]; got != tt.contentType {
				t.Errorf("Content-Type %q, want %q", got, tt.contentType)
			}
			if len(d.header) != 5 || d.header[HeaderQueue] != queue || d.header[HeaderMessageID] != d.msgID {
				t.Errorf("headers %v: want Content-Type and the four Azqueue-* headers", d.header)
			}
			eventually(t, waitLong, func() string { return queue + " not empty" }, func() bool { return e.messages(queue) == 0 })
		})
	}
}

func testDamagedEnvelopeGoesToPoisonWithoutCallingTheHandler(t *testing.T, e *env) {
	const damaged = `{"azqueue":1,"hea`
	topic := newTopic()
	queue := queueName(t, topic, DefaultGroup)
	r := newRecorder(t)
	b := e.connected()
	e.subscribe(b, topic, r.handler(nil), fastPolls)
	e.put(queue, damaged)
	rec := e.poisonRecords(queue, 1)[0]
	eventually(t, waitLong, func() string { return queue + " not empty" }, func() bool { return e.messages(queue) == 0 })
	if !strings.Contains(rec.Reason, "unreadable envelope") || rec.Original != damaged || rec.DequeueCount != 1 {
		t.Errorf("poison record reason %q original %q dequeues %d, want an unreadable envelope, the text as written, 1", rec.Reason, rec.Original, rec.DequeueCount)
	}
	if n := r.len(); n != 0 {
		t.Errorf("handler called %d times for a damaged envelope", n)
	}
	if s := waitStats(t, b, "poisoned=1", func(s Stats) bool { return s.Poisoned == 1 }); s.Delivered != 0 {
		t.Errorf("stats %s: want poisoned=1 delivered=0", s)
	}
}

// largestMessage returns a message whose envelope is exactly the service's
// size limit.
func largestMessage(t *testing.T) *broker.Message {
	t.Helper()
	m := &broker.Message{Header: map[string]string{HeaderID: newID(), idHeader: "largest", "Pad": ""}}
	size := func(body int) int {
		m.Body = make([]byte, body)
		for i := range m.Body {
			m.Body[i] = byte(i * 7)
		}
		text, _, err := encodeMessage(m, false)
		if err != nil && !errors.Is(err, ErrMessageTooLarge) {
			t.Fatal(err)
		}
		if err != nil {
			return storage.MaxMessageSize + 1
		}
		return len(text)
	}
	// Binary search of the largest body that fits, then pad a header to
	// fill the last bytes that base64's 4-byte steps leave.
	lo, hi := 0, storage.MaxMessageSize
	for i := 0; i < 32 && lo < hi; i++ {
		mid := (lo + hi + 1) / 2
		if size(mid) <= storage.MaxMessageSize {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	m.Header["Pad"] = strings.Repeat("p", storage.MaxMessageSize-size(lo))
	if got := size(lo); got != storage.MaxMessageSize {
		t.Fatalf("largest message encodes to %d bytes, want %d", got, storage.MaxMessageSize)
	}
	return m
}

func testOversizeMessageIsRejectedAndTheLargestFits(t *testing.T, e *env) {
	topic := newTopic()
	queue := e.createQueue(topic, DefaultGroup)
	b := e.connected()
	largest := largestMessage(t)
	over := &broker.Message{Header: map[string]string{}, Body: largest.Body}
	for k, v := range largest.Header {
		over.Header[k] = v
	}
	over.Header["Pad"] += "p"

	err := b.Publish(topic, over)
	if !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("publish of a message one byte over the limit: %v, want ErrMessageTooLarge", err)
	}
	for _, want := range []string{fmt.Sprint(storage.MaxMessageSize + 1), fmt.Sprint(storage.MaxMessageSize)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not give the size %s", err, want)
		}
	}
	if got := e.messages(queue); got != 0 {
		t.Fatalf("%d messages enqueued by a rejected publish", got)
	}

	if err := b.Publish(topic, largest); err != nil {
		t.Fatalf("publish of a message exactly at the limit: %v", err)
	}
	if got := e.messages(queue); got != 1 {
		t.Fatalf("%d messages after publishing the largest, want 1", got)
	}
	r := newRecorder(t)
	e.subscribe(b, topic, r.handler(nil), fastPolls)
	d := r.waitDeliveries(t, 1, waitLong)[0]
	if !bytes.Equal(d.body, largest.Body) || d.header["Pad"] != largest.Header["Pad"] {
		t.Errorf("the largest message did not round-trip: body %d bytes, pad %d bytes", len(d.body), len(d.header["Pad"]))
	}
}

func testUnsubscribeUnderLoadLosesNothingAndStrandsNoLease(t *testing.T, e *env) {
	// A minute-long lease: a message stranded by the first subscription
	// would not reach the second one for a minute, far beyond the wait.
	const n, visibility, allowed = 40, time.Minute, 15 * time.Second
	tests := []struct {
		name string
		stop func(b *Broker, sub broker.Subscriber) error
	}{
		{"Unsubscribe", func(_ *Broker, sub broker.Subscriber) error { return sub.Unsubscribe() }},
		{"Disconnect", func(b *Broker, _ broker.Subscriber) error { return b.Disconnect() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e.in(t)
			topic := newTopic()
			queue := e.createQueue(topic, "g")
			ids := publishMessages(t, e.connected(), topic, n)
			opts := []broker.SubscribeOption{broker.Queue("g"), Concurrency(4), VisibilityTimeout(visibility), fastPolls}
			busy := func(Event, delivery) error { work(e, 200*time.Millisecond); return nil }

			first := e.connected()
			r1 := newRecorder(t)
			sub := e.subscribe(first, topic, r1.handler(busy), opts...)
			r1.waitDeliveries(t, 8, waitLong)
			if err := tt.stop(first, sub); err != nil {
				t.Fatalf("%s under load: %v", tt.name, err)
			}
			started := r1.len()
			if returned := r1.returnedCount(); returned != started {
				t.Fatalf("%s returned with %d of %d handlers still running", tt.name, started-returned, started)
			}
			if s := first.Stats(); s.Acked != int64(started) {
				t.Fatalf("stats %s: want all %d started messages acked", s, started)
			}
			if started == n {
				t.Fatalf("test premise: the first subscription took all %d messages before %s", n, tt.name)
			}

			second := e.connected()
			r2 := newRecorder(t)
			e.subscribe(second, topic, r2.handler(busy), opts...)
			union := func() map[string]int {
				all := r1.ids()
				for id, k := range r2.ids() {
					all[id] += k
				}
				return all
			}
			eventually(t, allowed, func() string {
				return fmt.Sprintf("%d of %d delivered; %d left in %s", len(union()), n, e.messages(queue), queue)
			}, func() bool { return len(missing(union(), ids)) == 0 && e.messages(queue) == 0 })
			if r1.len() != started {
				t.Errorf("first subscription got %d messages after %s returned", r1.len()-started, tt.name)
			}
			for id := range r2.ids() {
				if r1.ids()[id] > 0 {
					t.Errorf("message %s delivered to both subscriptions", id)
				}
			}
			assertExactlyOnce(t, "both subscriptions", union(), ids)
		})
	}
}

func testUnsubscribeHandsBackAnInFlightDequeue(t *testing.T, e *env) {
	const visibility = time.Minute
	topic := newTopic()
	queue := queueName(t, topic, DefaultGroup)
	ids := publishMessages(t, e.connected(), topic, 3)

	// The subscription's first dequeue is served, but its answer is held
	// back: Unsubscribe begins while it is in flight, as on a slow network.
	const hold = time.Second // below dequeueGrace
	e.faults(storagetest.Rule{Op: "dequeue", Queue: queue, Outcome: storagetest.SlowAnswer, Nth: []int{1}, Hold: hold})

	r1 := newRecorder(t)
	sub := e.subscribe(e.connected(), topic, r1.handler(nil), VisibilityTimeout(visibility))
	eventually(t, waitLong, func() string { return "the first dequeue did not arrive" }, func() bool { return e.struck("dequeue") == 1 })
	start := time.Now()
	if err := sub.Unsubscribe(); err != nil {
		t.Fatalf("unsubscribe: %v", err)
	}
	if waited := time.Since(start); waited > hold+dequeueGrace {
		t.Errorf("Unsubscribe took %s, more than the held answer (%s) and the grace (%s)", waited, hold, dequeueGrace)
	}
	if n := r1.len(); n != 0 {
		t.Fatalf("handler called %d times after Unsubscribe began", n)
	}
	visible := e.visibleMessages(queue)
	if len(visible) != len(ids) {
		t.Errorf("%d of %d messages visible after Unsubscribe, want all handed back", len(visible), len(ids))
	}
	for _, m := range visible {
		if m.DequeueCount != 1 {
			t.Errorf("message %s after Unsubscribe: dequeued %d times, want once (handed back, never handled)", m.ID, m.DequeueCount)
		}
	}
	r2 := newRecorder(t)
	e.subscribe(e.connected(), topic, r2.handler(nil), fastPolls)
	r2.waitIDs(t, ids, 5*time.Second) // far below the minute-long lease
	assertExactlyOnce(t, "after hand-back", r2.ids(), ids)
}

func testIdlePollingBacksOffWithinPollInterval(t *testing.T, e *env) {
	// Pauses are drawn from [d/2, d], d doubling from min to max, and from
	// [0.9 max, max] once d has reached max (after 50, 100, 200ms: the 5th
	// poll); from then on every pause is in [360ms, 400ms].
	const min, max, window = 50 * time.Millisecond, 400 * time.Millisecond, 2 * time.Second
	b := e.connected()
	e.subscribe(b, newTopic(), newRecorder(t).handler(nil), PollInterval(min, max))
	eventually(t, waitLong, func() string { return fmt.Sprintf("%d polls", b.Stats().Polls) }, func() bool { return b.Stats().Polls >= 5 })
	start := b.Stats()
	// No pause is shorter than 0.9 max: at most window/(0.9 max) polls,
	// plus one at the window's start.
	upper := int64(window/(max-max/10)) + 1
	polls := func() int64 { return b.Stats().Polls - start.Polls }
	holds(t, window, func() string { return fmt.Sprintf("%d polls, want at most %d", polls(), upper) },
		func() bool { return polls() <= upper })
	// No pause is longer than max: a healthy poller polls window/max = 5
	// times; demand one per second, which a stuck poller cannot meet and a
	// loaded machine always does.
	lower := int64(window / time.Second)
	if got := polls(); got < lower {
		t.Errorf("%d polls in %s idle with PollInterval(%s, %s), want at least %d", got, window, min, max, lower)
	}
	if s := b.Stats(); s.Polls != s.EmptyPolls {
		t.Errorf("stats %s: an idle subscription's polls should all be empty", s)
	}
}

func testIdleSubscriptionAtDefaultsPollsAtMostSevenTimesAMinute(t *testing.T, e *env) {
	// At defaults d doubles 100ms, 200ms, ... 6.4s, 10s: from the 8th poll
	// on, every pause is in [9s, 10s], so a steady idle subscription makes
	// at most 60/9 = 6.7 requests a minute.
	const window = 25 * time.Second
	b := e.connected()
	e.subscribe(b, newTopic(), newRecorder(t).handler(nil))
	eventually(t, waitLong, func() string { return fmt.Sprintf("%d polls", b.Stats().Polls) }, func() bool { return b.Stats().Polls >= 8 })
	start := b.Stats()
	upper := int64(window/(9*time.Second)) + 1 // plus one at the window's start
	requests := func() int64 { return b.Stats().Requests - start.Requests }
	holds(t, window, func() string { return fmt.Sprintf("%d requests, want at most %d", requests(), upper) },
		func() bool { return requests() <= upper })
	// Pauses are at most 10s: at least 2 polls in 25s.
	if got := requests(); got < 2 {
		t.Errorf("%d requests in %s, want at least 2 (pauses are at most 10s)", got, window)
	}
	// Nothing but polls runs: every request is a poll, or the SDK's retry
	// of one whose try failed (rare, but a loaded machine sees it).
	if s := b.Stats(); s.Requests-start.Requests != s.Polls-start.Polls+s.RequestRetries-start.RequestRetries {
		t.Errorf("stats %s: %d requests for %d polls and %d retries, want one each", s, s.Requests-start.Requests, s.Polls-start.Polls, s.RequestRetries-start.RequestRetries)
	}
}

func testNotConnectedUntilConnectAndConnectIsIdempotent(t *testing.T, e *env) {
	if newBroker, ok := cmd.DefaultBrokers["azqueue"]; !ok {
		t.Error(`importing the package does not register "azqueue" in go-micro's broker table`)
	} else if _, ok := newBroker().(*Broker); !ok {
		t.Error(`go-micro's "azqueue" broker is not this package's`)
	}
	topic := newTopic()
	b := e.broker()
	r := newRecorder(t)
	if err := b.Publish(topic, testMessage("early")); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Publish before Connect: %v, want ErrNotConnected", err)
	}
	if _, err := b.Subscribe(topic, r.handler(nil)); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Subscribe before Connect: %v, want ErrNotConnected", err)
	}
	for i := 0; i < 2; i++ {
		if err := b.Disconnect(); err != nil {
			t.Errorf("Disconnect %d before Connect: %v", i+1, err)
		}
	}
	for i := 0; i < 2; i++ {
		if err := b.Connect(); err != nil {
			t.Fatalf("Connect %d: %v", i+1, err)
		}
		// One authenticated request, and none for connecting again.
		if n := b.Stats().Requests; e.features.realService && n != 1 {
			t.Errorf("%d requests after Connect %d, want 1", n, i+1)
		}
	}
	e.subscribe(b, topic, r.handler(nil), fastPolls)
	ids := publishMessages(t, b, topic, 3)
	r.waitIDs(t, ids, waitLong)
	for i := 0; i < 2; i++ {
		if err := b.Disconnect(); err != nil {
			t.Errorf("Disconnect %d: %v", i+1, err)
		}
	}
	if err := b.Publish(topic, testMessage("late")); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Publish after Disconnect: %v, want ErrNotConnected", err)
	}
	// Connecting again works, and Disconnect ended the old subscription.
	if err := b.Connect(); err != nil {
		t.Fatalf("Connect after Disconnect: %v", err)
	}
	r2 := newRecorder(t)
	e.subscribe(b, topic, r2.handler(nil), fastPolls)
	more := publishMessages(t, b, topic, 3)
	r2.waitIDs(t, more, waitLong)
	assertExactlyOnce(t, "first subscription", r.ids(), ids)
	assertExactlyOnce(t, "second subscription", r2.ids(), more)
}

func testConnectSaysWhatIsWrongWithoutTheKey(t *testing.T, e *env) {
	closedPort := fmt.Sprintf("http://127.0.0.1:%d/%s", testenv.FreePort(t), testenv.DevAccountName)
	silent := fmt.Sprintf("http://%s/%s", silentListener(t), testenv.DevAccountName)
	tests := []struct {
		name, endpoint, key, want string
	}{
		{"closed port", closedPort, testenv.DevAccountKey, "unreachable"},
		{"endpoint that never answers", silent, testenv.DevAccountKey, "no answer in time"},
		{"wrong key", e.azurite.Endpoint(), wrongKey, "authentication failed"},
	}
	// The shortest ConnectTimeout allowed: enough for any answer from a local
	// service. A refused connection is tried three times, about a second in
	// all, so that row gets the default.
	timeouts := map[string]time.Duration{"closed port": 10 * time.Second}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;QueueEndpoint=%s;", testenv.DevAccountName, tt.key, tt.endpoint)
			timeout := time.Second
			if d, ok := timeouts[tt.name]; ok {
				timeout = d
			}
			b := NewBroker(ConnectionString(cs), ConnectTimeout(timeout))
			err := b.Connect()
			if err == nil {
				b.Disconnect()
				t.Fatal("Connect succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Connect: %q, want it to say %q", err, tt.want)
			}
			for _, secret := range []string{tt.key, tt.key[:20], url64(tt.key)} {
				if strings.Contains(err.Error(), secret) || strings.Contains(b.Address(), secret) {
					t.Errorf("error %q or address %q contains (part of) the key", err, b.Address())
				}
			}
			if err := b.Publish(newTopic(), testMessage("x")); !errors.Is(err, ErrNotConnected) {
				t.Errorf("Publish after a failed Connect: %v, want ErrNotConnected", err)
			}
		})
	}
}

// wrongKey is a well-formed account key that no account has.
const wrongKey = "d3JvbmcgYnV0IHdlbGwtZm9ybWVkIGtleSwgNjQgYnl0ZXMgbG9uZyBmb3IgdGhlIHRlc3Qgb2YgYXV0aCEh"

// silentListener accepts connections on 127.0.0.1 and never answers, like
// an endpoint behind a black hole; it returns its address.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	go func() {
		for i := 0; i < 100; i++ { // a Connect makes a few tries, not a hundred
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String()
}

// url64 is s as it would appear URL-escaped.
func url64(s string) string {
	return strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(s)
}

func testOutOfRangeOptionsAreRejectedWithTheRange(t *testing.T, e *env) {
	subscribe := func(opts ...broker.SubscribeOption) func(*env, *Broker, string) error {
		return func(_ *env, b *Broker, topic string) error {
			_, err := b.Subscribe(topic, func(broker.Event) error { return nil }, opts...)
			return err
		}
	}
	publish := func(opts ...broker.PublishOption) func(*env, *Broker, string) error {
		return func(_ *env, b *Broker, topic string) error { return b.Publish(topic, testMessage("x"), opts...) }
	}
	// Errors must give the range Settings documents (and the README shows).
	rangeOf := func(option string) string {
		for _, s := range Settings() {
			if s.Option == option {
				return s.Range
			}
		}
		t.Fatalf("no setting %q", option)
		return ""
	}
	show := formatDuration
	connect := func(e *env, _ *Broker, _ string) error { return e.broker().Connect() }
	tests := []struct {
		name string
		env  map[string]string
		call func(e *env, b *Broker, topic string) error
		want []string
	}{
		{"BatchSize(0)", nil, subscribe(BatchSize(0)), []string{"BatchSize 0", rangeOf("BatchSize")}},
		{"BatchSize(33)", nil, subscribe(BatchSize(33)), []string{"BatchSize 33", rangeOf("BatchSize")}},
		{"Concurrency(-1)", nil, subscribe(Concurrency(-1)), []string{"Concurrency -1", rangeOf("Concurrency")}},
		{"VisibilityTimeout(500ms)", nil, subscribe(VisibilityTimeout(500 * time.Millisecond)), []string{"VisibilityTimeout 500ms", rangeOf("VisibilityTimeout")}},
		{"VisibilityTimeout(8 days)", nil, subscribe(VisibilityTimeout(8 * day)), []string{"VisibilityTimeout " + show(8*day), rangeOf("VisibilityTimeout")}},
		{"MaxDequeueCount(0)", nil, subscribe(MaxDequeueCount(0)), []string{"MaxDequeueCount 0", rangeOf("MaxDequeueCount")}},
		{"PollInterval(2s, 1s)", nil, subscribe(PollInterval(2*time.Second, time.Second)), []string{"PollInterval min 2s is above max 1s"}},
		{"PollInterval(1ms, 1s)", nil, subscribe(PollInterval(time.Millisecond, time.Second)), []string{"PollInterval (min) 1ms", rangeOf("PollInterval (min)")}},
		{"RetryDelay(2s, 1s)", nil, subscribe(RetryDelay(2*time.Second, time.Second)), []string{"RetryDelay min 2s is above max 1s"}},
		{"RawContentType without a slash", nil, subscribe(RawContentType("json")), []string{"RawContentType json", rangeOf("RawContentType")}},
		{"AZQUEUE_BATCH_SIZE=40", map[string]string{"AZQUEUE_BATCH_SIZE": "40"}, subscribe(), []string{"BatchSize 40 (from AZQUEUE_BATCH_SIZE)", rangeOf("BatchSize")}},
		{"AZQUEUE_VISIBILITY_TIMEOUT=soon", map[string]string{"AZQUEUE_VISIBILITY_TIMEOUT": "soon"}, subscribe(), []string{"AZQUEUE_VISIBILITY_TIMEOUT", "soon"}},
		{"MessageTTL(0)", nil, publish(MessageTTL(0)), []string{"MessageTTL 0s", rangeOf("MessageTTL")}},
		{"MessageTTL(8 days)", nil, publish(MessageTTL(8 * day)), []string{"MessageTTL " + show(8*day), rangeOf("MessageTTL")}},
		{"Delay equal to MessageTTL", nil, publish(Delay(time.Hour), MessageTTL(time.Hour)), []string{fmt.Sprintf("Delay %s is not below MessageTTL %s", show(time.Hour), show(time.Hour))}},
		// The service counts whole seconds: 1.5s and 2s are both 2s there.
		{"Delay(1.5s) with MessageTTL(2s)", nil, publish(Delay(1500*time.Millisecond), MessageTTL(2*time.Second)), []string{fmt.Sprintf("Delay %s is not below MessageTTL %s", show(1500*time.Millisecond), show(2*time.Second))}},
		{"Delay(8 days)", nil, publish(Delay(8*day), MessageTTL(NeverExpire)), []string{"Delay " + show(8*day), rangeOf("Delay")}},
		// The broker reads the publish settings' environment at Connect.
		{"AZQUEUE_MESSAGE_TTL=0s", map[string]string{"AZQUEUE_MESSAGE_TTL": "0s"}, connect, []string{"MessageTTL 0s (from AZQUEUE_MESSAGE_TTL)", rangeOf("MessageTTL")}},
		{"AZQUEUE_DELAY equal to AZQUEUE_MESSAGE_TTL", map[string]string{"AZQUEUE_DELAY": "1h", "AZQUEUE_MESSAGE_TTL": "1h"}, connect, []string{fmt.Sprintf("Delay %s is not below MessageTTL %s", show(time.Hour), show(time.Hour))}},
		{"Delay(1h) over AZQUEUE_MESSAGE_TTL=1h", map[string]string{"AZQUEUE_MESSAGE_TTL": "1h"}, func(e *env, _ *Broker, topic string) error {
			return e.connected().Publish(topic, testMessage("x"), Delay(time.Hour))
		}, []string{fmt.Sprintf("Delay %s is not below MessageTTL %s", show(time.Hour), show(time.Hour))}},
		// Init keeps the options it was given: use a broker of its own.
		{"QueueCacheTTL(2h) on Init", nil, func(e *env, _ *Broker, _ string) error { return e.broker().Init(QueueCacheTTL(2 * time.Hour)) }, []string{"QueueCacheTTL " + show(2*time.Hour), rangeOf("QueueCacheTTL")}},
	}
	b := e.connected()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e.in(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			topic := newTopic()
			err := tt.call(e, b, topic)
			if err == nil {
				t.Fatalf("accepted, want an error containing %q", tt.want)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if len(b.subs) != 0 {
		t.Errorf("%d subscriptions started by rejected calls", len(b.subs))
	}
}

// subscribeAsServer subscribes the way go-micro's gRPC server does for a
// subscriber registered with server options: the queue, the options'
// context and AutoAck become broker options.
func subscribeAsServer(e *env, b *Broker, topic string, h broker.Handler, opts ...server.SubscriberOption) broker.Subscriber {
	e.t.Helper()
	so := server.NewSubscriberOptions(opts...)
	var bo []broker.SubscribeOption
	if so.Queue != "" {
		bo = append(bo, broker.Queue(so.Queue))
	}
	if so.Context != nil {
		bo = append(bo, broker.SubscribeContext(so.Context))
	}
	if !so.AutoAck {
		bo = append(bo, broker.DisableAutoAck())
	}
	return e.subscribe(b, topic, h, bo...)
}

// publishAsClient publishes the way go-micro's gRPC client does: the
// publish options' context becomes the broker's publish context.
func publishAsClient(b *Broker, topic string, m *broker.Message, opts ...client.PublishOption) error {
	co := client.PublishOptions{Context: context.Background()}
	for _, o := range opts {
		o(&co)
	}
	return b.Publish(topic, m, broker.PublishContext(co.Context))
}

func testServerAndClientTwinsReachTheBroker(t *testing.T, e *env) {
	fastServerPolls := SubscriberPollInterval(10*time.Millisecond, 100*time.Millisecond)

	t.Run("SubscriberQueue and SubscriberBatchSize", func(t *testing.T) {
		e := e.in(t)
		topic := newTopic()
		queue := e.createQueue(topic, "g")
		ids := publishMessages(t, e.connected(), topic, 10)
		r := newRecorder(t)
		hold := make(gate)
		subscribeAsServer(e, e.connected(), topic, r.handler(func(Event, delivery) error { hold.wait(e); return nil }),
			server.SubscriberQueue("g"), SubscriberBatchSize(3), fastServerPolls)
		// Concurrency defaults to the batch size: three handlers, no more.
		eventually(t, waitLong, func() string { running, _ := r.concurrency(); return fmt.Sprintf("%d handlers running", running) },
			func() bool { running, _ := r.concurrency(); return running >= 3 })
		holds(t, 300*time.Millisecond, func() string { _, max := r.concurrency(); return fmt.Sprintf("%d handlers ran at once, want 3", max) },
			func() bool { _, max := r.concurrency(); return max <= 3 })
		hold.open()
		r.waitIDs(t, ids, waitLong)
		if e.fake != nil {
			if asked := e.fake.MaxDequeueAsked(queue); asked != 3 {
				t.Errorf("largest dequeue asked for %d messages, want 3", asked)
			}
		}
	})

	t.Run("SubscriberConcurrency", func(t *testing.T) {
		e := e.in(t)
		topic := newTopic()
		e.createQueue(topic, DefaultGroup)
		ids := publishMessages(t, e.connected(), topic, 5)
		r := newRecorder(t)
		subscribeAsServer(e, e.connected(), topic, r.handler(func(Event, delivery) error { work(e, 50*time.Millisecond); return nil }),
			SubscriberConcurrency(1), fastServerPolls)
		r.waitIDs(t, ids, waitLong)
		if _, max := r.concurrency(); max != 1 {
			t.Errorf("%d handlers ran at once, want 1", max)
		}
	})

	t.Run("SubscriberMaxDequeueCount and SubscriberRetryDelay", func(t *testing.T) {
		e := e.in(t)
		topic := newTopic()
		queue := queueName(t, topic, DefaultGroup)
		b := e.connected()
		r := newRecorder(t)
		subscribeAsServer(e, b, topic, r.handler(func(Event, delivery) error { return errors.New("always fails") }),
			SubscriberMaxDequeueCount(1), SubscriberRetryDelay(0, 0), fastServerPolls)
		publishMessages(t, b, topic, 1)
		rec := e.poisonRecords(queue, 1)[0]
		if n := r.len(); n != 1 {
			t.Errorf("handler called %d times, want 1 before poisoning", n)
		}
		if !strings.Contains(rec.Reason, "MaxDequeueCount 1") {
			t.Errorf("poison reason %q, want MaxDequeueCount 1", rec.Reason)
		}
	})

	t.Run("SubscriberVisibilityTimeout", func(t *testing.T) {
		e := e.in(t)
		// Without an ack, the message returns after the 1s lease rather
		// than the default 30s.
		topic := newTopic()
		b := e.connected()
		r := newRecorder(t)
		subscribeAsServer(e, b, topic, r.handler(func(ev Event, d delivery) error {
			if d.count == 1 {
				return nil
			}
			return ev.Ack()
		}), server.DisableAutoAck(), SubscriberVisibilityTimeout(time.Second), fastServerPolls)
		publishMessages(t, b, topic, 1)
		r.waitDeliveries(t, 2, 10*time.Second)
	})

	t.Run("SubscriberPollInterval", func(t *testing.T) {
		e := e.in(t)
		// Idle with a 50ms maximum pause: many polls a second, where the
		// default (10s) would make at most one or two.
		const window = time.Second
		b := e.connected()
		subscribeAsServer(e, b, newTopic(), newRecorder(t).handler(nil), SubscriberPollInterval(10*time.Millisecond, 50*time.Millisecond))
		eventually(t, waitLong, func() string { return "fewer than 5 polls" }, func() bool { return b.Stats().Polls >= 5 })
		start := b.Stats().Polls
		work(e, window)
		if got := b.Stats().Polls - start; got < 5 {
			t.Errorf("%d polls in %s with SubscriberPollInterval(10ms, 50ms), want at least 5", got, window)
		}
	})

	t.Run("SubscriberDrainTimeout", func(t *testing.T) {
		e := e.in(t)
		const drain = 300 * time.Millisecond
		topic := newTopic()
		b := e.connected()
		r := newRecorder(t)
		hold := make(gate)
		t.Cleanup(hold.open)
		sub := subscribeAsServer(e, b, topic, r.handler(func(Event, delivery) error { hold.wait(e); return nil }),
			SubscriberDrainTimeout(drain), fastServerPolls)
		publishMessages(t, b, topic, 1)
		r.waitDeliveries(t, 1, waitLong)
		began := time.Now()
		err := sub.Unsubscribe()
		took := time.Since(began)
		if err == nil || !strings.Contains(err.Error(), "drain timeout") {
			t.Errorf("Unsubscribe with a handler still running: %v, want a drain timeout error", err)
		}
		if took > 5*time.Second {
			t.Errorf("Unsubscribe took %s with a %s drain timeout", took, drain)
		}
	})

	t.Run("SubscriberRawContentType", func(t *testing.T) {
		e := e.in(t)
		topic := newTopic()
		queue := queueName(t, topic, DefaultGroup)
		r := newRecorder(t)
		subscribeAsServer(e, e.connected(), topic, r.handler(nil), SubscriberRawContentType("text/csv"), fastServerPolls)
		e.put(queue, "a,b,c")
		if d := r.waitDeliveries(t, 1, waitLong)[0]; d.header[headerContentType] != "text/csv" || string(d.body) != "a,b,c" {
			t.Errorf("Content-Type %q body %q, want text/csv a,b,c", d.header[headerContentType], d.body)
		}
	})

	t.Run("ClientDelay", func(t *testing.T) {
		e := e.in(t)
		const delay = 1500 * time.Millisecond // not whole seconds, on purpose
		topic := newTopic()
		b := e.connected()
		r := newRecorder(t)
		e.subscribe(b, topic, r.handler(nil), fastPolls)
		published := time.Now()
		if err := publishAsClient(b, topic, testMessage("delayed"), ClientDelay(delay)); err != nil {
			t.Fatal(err)
		}
		d := r.waitDeliveries(t, 1, waitLong)[0]
		if gap := d.started.Sub(published); gap < delay {
			t.Errorf("delivered %s after publishing with ClientDelay(%s)", gap, delay)
		}
	})

	t.Run("ClientMessageTTL", func(t *testing.T) {
		e := e.in(t)
		err := publishAsClient(e.connected(), newTopic(), testMessage("x"), ClientMessageTTL(0))
		if err == nil || !strings.Contains(err.Error(), "MessageTTL 0s") {
			t.Errorf("publish with ClientMessageTTL(0): %v, want the MessageTTL range error", err)
		}
	})
}

func testAtMostConcurrencyPlusBatchSizeMessagesAreHeld(t *testing.T, e *env) {
	const concurrency, batch = 2, 4
	topic := newTopic()
	queue := e.createQueue(topic, DefaultGroup)
	ids := publishMessages(t, e.connected(), topic, 20)
	// On the fake, sample how many messages are leased (invisible) while
	// the subscription works through the backlog.
	var held atomic.Int64
	if e.fake != nil {
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for i := 0; i < 10000; i++ {
				n := int64(0)
				for _, m := range e.fake.Messages(queue) {
					if !m.Visible {
						n++
					}
				}
				if n > held.Load() {
					held.Store(n)
				}
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
			}
		}()
		defer func() { close(stop); <-sampled }()
	}
	r := newRecorder(t)
	e.subscribe(e.connected(), topic, r.handler(func(Event, delivery) error { work(e, 100*time.Millisecond); return nil }),
		Concurrency(concurrency), BatchSize(batch), fastPolls)
	r.waitIDs(t, ids, waitLong)
	eventually(t, waitLong, func() string { return queue + " not empty" }, func() bool { return e.messages(queue) == 0 })
	assertExactlyOnce(t, "Concurrency(2) BatchSize(4)", r.ids(), ids)
	if _, max := r.concurrency(); max != concurrency {
		t.Errorf("%d handlers ran at once, want %d", max, concurrency)
	}
	if e.fake != nil {
		if asked := e.fake.MaxDequeueAsked(queue); asked > batch {
			t.Errorf("largest dequeue asked for %d messages, want at most BatchSize %d", asked, batch)
		}
		if max := held.Load(); max > concurrency+batch || max < concurrency+1 {
			t.Errorf("at most %d messages leased at once, want between %d (a batch fetched ahead) and Concurrency+BatchSize = %d",
				max, concurrency+1, concurrency+batch)
		}
	}
}

func testFullAnswersOverlapDequeuesWithinTheRoom(t *testing.T, e *env) {
	// Every dequeue is answered after hold, as over a long round trip. One
	// dequeue at a time would hand out the backlog one batch per hold: the
	// last batch's handlers would start at least (batches-1)·hold after the
	// first's. With Concurrency(8) and BatchSize(4) the room is 12 messages,
	// so while answers come back full up to three dequeues are in flight.
	const hold = 300 * time.Millisecond
	const concurrency, batch, batches = 8, 4, 6
	topic := newTopic()
	queue := e.createQueue(topic, DefaultGroup)
	ids := publishMessages(t, e.connected(), topic, batch*batches)
	e.faults(storagetest.Rule{Op: "dequeue", Queue: queue, Outcome: storagetest.SlowAnswer, Hold: hold})
	r := newRecorder(t)
	e.subscribe(e.connected(), topic, r.handler(nil), Concurrency(concurrency), BatchSize(batch), fastPolls)
	r.waitIDs(t, ids, waitLong)
	assertExactlyOnce(t, "dequeues answered after "+hold.String(), r.ids(), ids)
	first, last := time.Time{}, time.Time{}
	for _, d := range r.all() {
		if first.IsZero() || d.started.Before(first) {
			first = d.started
		}
		if d.started.After(last) {
			last = d.started
		}
	}
	// Overlapping, the six batches come in three waves, two holds apart;
	// one at a time they would take five.
	if span, sequential := last.Sub(first), time.Duration(batches-1)*hold; span >= sequential-hold {
		t.Errorf("%d batches handed out over %s, want well under the %s of one dequeue at a time", batches, span.Round(time.Millisecond), sequential)
	}
}

func testMessagesWaitingForAHandlerKeepTheirLease(t *testing.T, e *env) {
	// One handler of 400ms and batches of 4 with a 1s lease: the last
	// message of a batch waits 1.2s for the handler, longer than its lease,
	// which must be renewed meanwhile or it would be delivered twice.
	topic := newTopic()
	ids := publishMessages(t, e.connected(), topic, 8)
	r := newRecorder(t)
	b := e.connected()
	e.subscribe(b, topic, r.handler(func(Event, delivery) error { work(e, 400*time.Millisecond); return nil }),
		Concurrency(1), BatchSize(4), VisibilityTimeout(time.Second), fastPolls)
	r.waitIDs(t, ids, waitLong)
	waitStats(t, b, "acked=8", func(s Stats) bool { return s.Acked == 8 })
	assertExactlyOnce(t, "waiting messages", r.ids(), ids)
	for _, d := range r.all() {
		if d.count != 1 {
			t.Errorf("message %s delivered with dequeue count %d, want 1: its lease ran out while it waited", d.id, d.count)
		}
	}
	if s := b.Stats(); s.Renewals == 0 {
		t.Errorf("stats %s: no lease was renewed", s)
	}
}

func testLocalPublishWakesAnIdlePoller(t *testing.T, e *env) {
	// After the 7th poll the pause is drawn from [1.6s, 3.2s] (d: 50ms
	// doubling): without the wake-up a message would wait at least 1.6s.
	const wakeWithin = time.Second
	topic := newTopic()
	b := e.connected()
	r := newRecorder(t)
	e.subscribe(b, topic, r.handler(nil), PollInterval(50*time.Millisecond, 5*time.Second))
	eventually(t, waitLong, func() string { return fmt.Sprintf("%d polls", b.Stats().Polls) }, func() bool { return b.Stats().Polls >= 7 })
	published := time.Now()
	if err := b.Publish(topic, testMessage("wake")); err != nil {
		t.Fatal(err)
	}
	d := r.waitDeliveries(t, 1, waitLong)[0]
	if gap := d.started.Sub(published); gap > wakeWithin {
		t.Errorf("idle subscription received a local publish after %s, want within %s", gap, wakeWithin)
	}
}

func testSubscriptionSurvivesTransportErrors(t *testing.T, e *env) {
	topic := newTopic()
	queue := queueName(t, topic, DefaultGroup)
	e.faults(storagetest.Rule{Op: "dequeue", Queue: queue, Outcome: storagetest.Unanswered})
	b := e.connected()
	r := newRecorder(t)
	sub := e.subscribe(b, topic, r.handler(nil), fastPolls)
	// Failing polls back off on their own, from 10 × PollInterval's min
	// (100ms) doubling, each pause in [d/2, d]: polls at 0 and no earlier
	// than 50, 150, 350, 750ms, 1.55s, so at most 5 in 1.5s where the idle
	// backoff (10ms..100ms) would poll about 20 times.
	const window = 1500 * time.Millisecond
	holds(t, window, func() string { return fmt.Sprintf("stats %s: want at most 5 failed polls", b.Stats()) },
		func() bool { return b.Stats().Errors <= 5 })
	ids := publishMessages(t, e.connected(), topic, 3)
	eventually(t, waitLong, func() string { return fmt.Sprintf("stats %s", b.Stats()) }, func() bool { return b.Stats().Errors >= 3 })
	select {
	case <-sub.(*subscription).done:
		t.Fatal("the poll loop stopped on transport errors")
	default:
	}
	e.inject()
	r.waitIDs(t, ids, waitLong)
	assertExactlyOnce(t, "after the outage", r.ids(), ids)
}

func testPartialPublishFailureNamesTheFailedQueue(t *testing.T, e *env) {
	topic := newTopic()
	healthy, broken := e.createQueue(topic, "a"), e.createQueue(topic, "b")
	e.faults(storagetest.Rule{Op: "enqueue", Queue: broken, Outcome: storagetest.Unanswered})
	err := e.connected().Publish(topic, testMessage("partial"))
	if err == nil || !strings.Contains(err.Error(), broken) || strings.Contains(err.Error(), healthy) || !strings.Contains(err.Error(), "1 of 2 queues failed") {
		t.Fatalf("publish with one of two queues failing: %v, want an error naming %q only", err, broken)
	}
	if got := e.messages(healthy); got != 1 {
		t.Errorf("%d messages in the healthy queue %s, want 1", got, healthy)
	}
	if got := e.messages(broken); got != 0 {
		t.Errorf("%d messages in the failing queue %s, want 0", got, broken)
	}
}

func testLostLeaseMakesAckReturnErrLeaseLost(t *testing.T, e *env) {
	topic := newTopic()
	queue := queueName(t, topic, DefaultGroup)
	b := e.connected()
	r := newRecorder(t)
	stolen := make(gate)
	acked := make(chan error, 1)
	e.subscribe(b, topic, r.handler(func(ev Event, _ delivery) error {
		stolen.wait(e)
		acked <- ev.Ack()
		return nil
	}), broker.DisableAutoAck(), VisibilityTimeout(time.Second), Concurrency(1), fastPolls)
	publishMessages(t, b, topic, 1)
	r.waitDeliveries(t, 1, waitLong)

	// Renewals fail, so the 1s lease runs out while the handler runs; then
	// another consumer takes the message. The subscription's own poller,
	// which has room for a batch fetched ahead, may take it first: that
	// copy's lease runs out too while renewals fail, so the other consumer
	// tries again until it has the message.
	e.faults(storagetest.Rule{Op: "update", Queue: queue, Outcome: storagetest.Unanswered})
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	eventually(t, waitLong, func() string { return "no other consumer could take the message after its lease ran out" }, func() bool {
		if len(e.visibleMessages(queue)) != 1 {
			return false
		}
		taken, err := e.raw.Queue(queue).Dequeue(ctx, 1, time.Minute)
		if err != nil {
			t.Fatalf("another consumer's dequeue: %v", err)
		}
		return len(taken) == 1
	})
	e.inject()
	stolen.open()
	select {
	case err := <-acked:
		if !errors.Is(err, ErrLeaseLost) {
			t.Errorf("Ack after the lease was taken: %v, want ErrLeaseLost", err)
		}
	case <-time.After(waitLong):
		t.Fatal("handler did not ack")
	}
	if got := e.messages(queue); got != 1 {
		t.Errorf("%d messages in %s: the stale Ack must not delete the other consumer's message", got, queue)
	}
	if s := b.Stats(); s.LeasesLost < 1 || s.Acked != 0 {
		t.Errorf("stats %s: want leases_lost>=1 acked=0", s)
	}
}

func testStatsCountTheRoundTrip(t *testing.T, e *env) {
	const n = 5
	topic := newTopic()
	queue := queueName(t, topic, DefaultGroup)
	sub := e.connected()
	r := newRecorder(t)
	e.subscribe(sub, topic, r.handler(nil), fastPolls)
	pub := e.connected()
	ids := publishMessages(t, pub, topic, n)
	r.waitIDs(t, ids, waitLong)
	waitStats(t, sub, fmt.Sprintf("acked=%d", n), func(s Stats) bool { return s.Acked == n })
	if got := e.messages(queue); got != 0 {
		t.Errorf("%d messages left in %s", got, queue)
	}
	p, s := pub.Stats(), sub.Stats()
	if p.Published != n || p.Errors != 0 {
		t.Errorf("publisher stats %s: want published=%d errors=0", p, n)
	}
	if s.Delivered != n || s.Acked != n || s.Retried != 0 || s.Poisoned != 0 || s.Errors != 0 || s.Polls < 1 || s.Published != 0 {
		t.Errorf("subscriber stats %s: want delivered=%d acked=%d, nothing retried, poisoned or failed, some polls", s, n, n)
	}
	if e.features.realService && (p.Requests < n || s.Requests < s.Polls+n) {
		t.Errorf("requests: publisher %d for %d messages, subscriber %d for %d polls and %d deletes", p.Requests, n, s.Requests, s.Polls, n)
	}
}

func testPublishFindsNewGroupsAfterRefreshOrQueueCacheTTL(t *testing.T, e *env) {
	tests := []struct {
		name string
		// publisherTTL is the publisher's QueueCacheTTL.
		publisherTTL time.Duration
		// samePublisher subscribes the new group through the publisher's
		// own broker, which refreshes its list.
		samePublisher bool
		// reached says whether the second message must reach the new group.
		reached bool
	}{
		{"a Subscribe in the same process refreshes the list", 30 * time.Second, true, true},
		{"another process's new group is seen once the list expires", 0, false, true},
		{"another process's new group is not seen while the list is cached", 30 * time.Second, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e.in(t)
			topic := newTopic()
			pub := e.connected(QueueCacheTTL(tt.publisherTTL))
			firstGroup := newRecorder(t)
			e.subscribe(e.connected(), topic, firstGroup.handler(nil), broker.Queue("first"), fastPolls)
			first := publishMessages(t, pub, topic, 1) // lists the topic: only the group "first"
			subscriber := e.connected()
			if tt.samePublisher {
				subscriber = pub
			}
			r := newRecorder(t)
			e.subscribe(subscriber, topic, r.handler(nil), broker.Queue("new"), fastPolls)
			second := publishMessages(t, pub, topic, 1)
			if !tt.reached {
				// Publish has returned: a message sent to the new group is in
				// its queue, or was already handled.
				if n := e.messages(queueName(t, topic, "new")); n != 0 || r.len() != 0 {
					t.Fatalf("the new group got the message (%d queued, %d handled) although the publisher's list was cached", n, r.len())
				}
				return
			}
			r.waitIDs(t, second, waitLong)
			assertExactlyOnce(t, "new group", r.ids(), second)
			firstGroup.waitIDs(t, append(first, second...), waitLong)
			assertExactlyOnce(t, "first group", firstGroup.ids(), append(first, second...))
		})
	}
}

func testMessageTTLSetsTheMessageLifetime(t *testing.T, e *env) {
	// "Never" is the year 9999 on the wire, which time.Duration saturates.
	const never, saturated = 100 * 365 * day, time.Duration(1<<63 - 1)
	tests := []struct {
		name    string
		publish func(b *Broker, topic string) error
		// The service keeps whole seconds: the lifetime is the TTL rounded
		// up, never cut short.
		atLeast, atMost time.Duration
		// envTTL, when set, is AZQUEUE_MESSAGE_TTL, which the broker reads
		// at Connect.
		envTTL string
	}{
		{"default: 7 days", func(b *Broker, topic string) error { return b.Publish(topic, testMessage("x")) }, 7 * day, 7 * day, ""},
		{"MessageTTL(90s)", func(b *Broker, topic string) error {
			return b.Publish(topic, testMessage("x"), MessageTTL(90*time.Second))
		}, 90 * time.Second, 90 * time.Second, ""},
		{"MessageTTL(1.5s)", func(b *Broker, topic string) error {
			return b.Publish(topic, testMessage("x"), MessageTTL(1500*time.Millisecond))
		}, 1500 * time.Millisecond, 2 * time.Second, ""},
		{"NeverExpire", func(b *Broker, topic string) error {
			return b.Publish(topic, testMessage("x"), MessageTTL(NeverExpire))
		}, never, saturated, ""},
		{"ClientMessageTTL(60s)", func(b *Broker, topic string) error {
			return publishAsClient(b, topic, testMessage("x"), ClientMessageTTL(time.Minute))
		}, time.Minute, time.Minute, ""},
		{"AZQUEUE_MESSAGE_TTL=2m", func(b *Broker, topic string) error { return b.Publish(topic, testMessage("x")) }, 2 * time.Minute, 2 * time.Minute, "2m"},
		{"MessageTTL(90s) over AZQUEUE_MESSAGE_TTL=2m", func(b *Broker, topic string) error {
			return b.Publish(topic, testMessage("x"), MessageTTL(90*time.Second))
		}, 90 * time.Second, 90 * time.Second, "2m"},
	}
	b := e.connected()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e.in(t)
			topic := newTopic()
			b := b
			if tt.envTTL != "" {
				t.Setenv(EnvPrefix+"MESSAGE_TTL", tt.envTTL)
				b = e.connected()
			}
			if err := tt.publish(b, topic); err != nil {
				t.Fatal(err)
			}
			lives := e.lifetimes(queueName(t, topic, DefaultGroup))
			if len(lives) != 1 || lives[0] < tt.atLeast || lives[0] > tt.atMost {
				t.Errorf("message lifetimes %v, want one in [%s, %s]", lives, tt.atLeast, tt.atMost)
			}
		})
	}
}

func testOptionWinsOverEnvironmentWhichWinsOverDefault(t *testing.T, e *env) {
	t.Setenv(EnvPrefix+"RAW_CONTENT_TYPE", "text/from-environment")
	tests := []struct {
		name string
		opts []broker.SubscribeOption
		want string
	}{
		{"environment over default", nil, "text/from-environment"},
		{"option over environment", []broker.SubscribeOption{RawContentType("text/from-option")}, "text/from-option"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e.in(t)
			topic := newTopic()
			r := newRecorder(t)
			e.subscribe(e.connected(), topic, r.handler(nil), append(tt.opts, fastPolls)...)
			e.put(queueName(t, topic, DefaultGroup), "a foreign text")
			if got := r.waitDeliveries(t, 1, waitLong)[0].header[headerContentType]; got != tt.want {
				t.Errorf("Content-Type %q, want %q", got, tt.want)
			}
		})
	}
}

func testCredentialsComeFromOptionsThenEnvironment(t *testing.T, e *env) {
	endpoint := e.azurite.Endpoint()
	closed := fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;QueueEndpoint=http://127.0.0.1:%d/%s;",
		testenv.DevAccountName, testenv.DevAccountKey, testenv.FreePort(t), testenv.DevAccountName)
	dev, addr := testenv.DevAccountName, broker.Addrs(endpoint)
	sas := accountSAS(t, sdk.AccountSASPermissions{Read: true, Write: true, Delete: true, List: true, Add: true, Create: true, Update: true, Process: true})

	tests := []struct {
		name string
		env  map[string]string
		opts []broker.Option
	}{
		{"AZURE_STORAGE_CONNECTION_STRING", map[string]string{EnvConnectionString: e.azurite.ConnectionString()}, nil},
		{"AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY, endpoint from broker.Addrs", map[string]string{EnvAccount: dev, EnvKey: testenv.DevAccountKey}, []broker.Option{addr}},
		{"AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_SAS_TOKEN, endpoint from broker.Addrs", map[string]string{EnvAccount: dev, EnvSASToken: sas}, []broker.Option{addr}},
		{"UseDevelopmentStorage=true, endpoint from broker.Addrs", nil, []broker.Option{ConnectionString("UseDevelopmentStorage=true"), addr}},
		{"SharedKey, endpoint from broker.Addrs", nil, []broker.Option{SharedKey(dev, testenv.DevAccountKey), addr}},
		{"SASToken, endpoint from broker.Addrs", nil, []broker.Option{SASToken(dev, "?"+sas), addr}},
		{"an option wins over the environment", map[string]string{EnvConnectionString: closed}, []broker.Option{ConnectionString(e.azurite.ConnectionString())}},
		{"the last credential option wins", nil, []broker.Option{SharedKey(dev, wrongKey), ConnectionString(e.azurite.ConnectionString())}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e.in(t)
			for _, k := range []string{EnvConnectionString, EnvAccount, EnvKey, EnvSASToken} {
				t.Setenv(k, tt.env[k])
			}
			b := NewBroker(tt.opts...).(*Broker)
			t.Cleanup(func() { b.Disconnect() })
			if err := b.Connect(); err != nil {
				t.Fatalf("Connect: %v", err)
			}
			// The message must land in this test's Azurite, not in whatever
			// else listens where a wrong endpoint points.
			topic := newTopic()
			if err := b.Publish(topic, testMessage("where")); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			if n := e.messages(queueName(t, topic, DefaultGroup)); n != 1 {
				t.Errorf("%d messages in this Azurite, want the one published", n)
			}
		})
	}
}

func testPublishHonoursTheContextDeadline(t *testing.T, e *env) {
	tests := []struct {
		name     string
		deadline time.Duration // from now
		wantErr  error
	}{
		{"a deadline already passed fails the publish", -time.Second, context.DeadlineExceeded},
		// A local service answers in milliseconds: 900ms is plenty, and
		// must not be cut to nothing.
		{"a deadline under a second away is enough", 900 * time.Millisecond, nil},
		{"a deadline 1.9s away is enough", 1900 * time.Millisecond, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e.in(t)
			topic := newTopic()
			queue := queueName(t, topic, DefaultGroup)
			b := e.connected()
			publishMessages(t, b, topic, 1) // the topic's queue list is now cached
			ctx, cancel := context.WithTimeout(context.Background(), tt.deadline)
			defer cancel()
			err := b.Publish(topic, testMessage("with deadline"), broker.PublishContext(ctx))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("publish with a deadline %s away: %v, want %v", tt.deadline, err, tt.wantErr)
			}
			want := 2
			if tt.wantErr != nil {
				want = 1
			}
			if n := e.messages(queue); n != want {
				t.Errorf("%d messages in %s, want %d", n, queue, want)
			}
		})
	}
}

func testExtendLengthensTheLease(t *testing.T, e *env) {
	const visibility, extended = time.Second, 3 * time.Second
	topic := newTopic()
	b := e.connected()
	r := newRecorder(t)
	var mu sync.Mutex
	var tooShort, extend, afterAck error
	var extendedAt time.Time
	e.subscribe(b, topic, r.handler(func(ev Event, d delivery) error {
		mu.Lock()
		defer mu.Unlock()
		if d.count > 1 {
			err := ev.Ack()
			afterAck = ev.Extend(extended)
			return err
		}
		tooShort = ev.Extend(500 * time.Millisecond)
		extendedAt = time.Now()
		extend = ev.Extend(extended)
		return nil // no Ack: the message comes back when the lease ends
	}), broker.DisableAutoAck(), VisibilityTimeout(visibility), fastPolls)
	publishMessages(t, b, topic, 1)
	ds := r.waitDeliveries(t, 2, waitLong)
	eventually(t, waitLong, func() string { return "second handler call has not returned" }, func() bool { return r.returnedCount() == 2 })
	mu.Lock()
	defer mu.Unlock()
	if tooShort == nil || !strings.Contains(tooShort.Error(), "1s..7d") {
		t.Errorf("Extend(500ms): %v, want the range error", tooShort)
	}
	if extend != nil {
		t.Fatalf("Extend(%s): %v", extended, extend)
	}
	if gap := ds[1].started.Sub(extendedAt); gap < extended {
		t.Errorf("redelivered %s after Extend(%s), want no earlier", gap, extended)
	}
	if !errors.Is(afterAck, ErrSettled) {
		t.Errorf("Extend after Ack: %v, want ErrSettled", afterAck)
	}
}

func testPoisoningCopiesBeforeDeletingSoNothingIsLost(t *testing.T, e *env) {
	tests := []struct {
		name string
		// faultOp fails on the source queue ("delete") or the poison queue
		// ("enqueue") while the fault is set.
		faultOp  string
		onPoison bool
		// records is how many poison records exist once the fault is
		// cleared: a failed delete leaves the message to be poisoned again
		// (at least twice); a failed copy leaves nothing to duplicate.
		records int
		exactly bool
		// failed says the fault has struck; the handler's one failure is
		// one of the errors.
		failed func(Stats) bool
	}{
		{"the delete fails after the copy: duplicated, not lost", "delete", false, 2, false,
			func(s Stats) bool { return s.Poisoned >= 1 && s.Errors >= 2 }},
		{"the copy fails: nothing deleted, tried again later", "enqueue", true, 1, true,
			func(s Stats) bool { return s.Poisoned == 0 && s.Errors >= 3 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e.in(t)
			topic := newTopic()
			queue := queueName(t, topic, DefaultGroup)
			poison := poisonQueueNameFor(queue)
			faulty := queue
			if tt.onPoison {
				faulty = poison
			}
			e.faults(storagetest.Rule{Op: tt.faultOp, Queue: faulty, Outcome: storagetest.Unanswered})
			b := e.connected()
			r := newRecorder(t)
			e.subscribe(b, topic, r.handler(func(Event, delivery) error { return errors.New("always fails") }),
				MaxDequeueCount(1), RetryDelay(0, 0), VisibilityTimeout(time.Second), fastPolls)
			publishMessages(t, b, topic, 1)

			// While the fault lasts, the message is in its queue, whatever
			// reached the poison queue.
			waitStats(t, b, "the fault to strike", tt.failed)
			if n := e.messages(queue); n != 1 {
				t.Fatalf("%d messages in %s while poisoning fails, want the message kept", n, queue)
			}
			e.inject()
			eventually(t, waitLong, func() string {
				return fmt.Sprintf("%d poison records, %d left in %s", e.messages(poison), e.messages(queue), queue)
			}, func() bool { return e.messages(poison) >= tt.records && e.messages(queue) == 0 })
			if n := e.messages(poison); tt.exactly && n != tt.records {
				t.Errorf("%d poison records, want %d", n, tt.records)
			}
			if n := r.len(); n != 1 {
				t.Errorf("handler called %d times, want once (MaxDequeueCount 1)", n)
			}
		})
	}
}

// accountSAS returns an account SAS for the emulator's queue service with the
// given permissions, as a query string.
func accountSAS(t *testing.T, perms sdk.AccountSASPermissions) string {
	t.Helper()
	key, err := sdk.NewSharedKeyCredential(testenv.DevAccountName, testenv.DevAccountKey)
	if err != nil {
		t.Fatal(err)
	}
	sas, err := sdk.AccountSASSignatureValues{
		Protocol:      sdk.SASProtocolHTTPSandHTTP,
		ExpiryTime:    time.Now().UTC().Add(time.Hour),
		Permissions:   perms.String(),
		Services:      sdk.AccountSASServices{Queue: true}.String(),
		ResourceTypes: sdk.AccountSASResourceTypes{Service: true, Container: true, Object: true}.String(),
	}.NewSASQueryParameters(key)
	if err != nil {
		t.Fatal(err)
	}
	return sas.Encode()
}

func testLogsNeverShowCredentials(t *testing.T, e *env) {
	// A SAS that may list, create and add but not process: Connect,
	// Subscribe and Publish work, every poll is refused and logged, with the
	// request's URL (which carries the SAS) at hand for a careless log line.
	sas := accountSAS(t, sdk.AccountSASPermissions{List: true, Create: true, Add: true})
	query, err := url.ParseQuery(sas)
	if err != nil || query.Get("sig") == "" {
		t.Fatalf("SAS %q has no signature (%v)", sas, err)
	}
	topic := newTopic()
	b := NewBroker(SASToken(testenv.DevAccountName, sas), broker.Addrs(e.azurite.Endpoint())).(*Broker)
	if err := b.Connect(); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { b.Disconnect() })
	e.subscribe(b, topic, newRecorder(t).handler(nil), fastPolls)
	waitStats(t, b, "a refused poll", func(s Stats) bool { return s.Errors >= 1 })
	if err := b.Disconnect(); err != nil {
		t.Errorf("Disconnect: %v", err)
	}

	// The go-micro logger keeps its last 100 records in memory.
	records, err := dlog.DefaultLog.Read()
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{query.Get("sig"), url.QueryEscape(query.Get("sig")), sas, testenv.DevAccountKey, url.QueryEscape(testenv.DevAccountKey)}
	seen := 0
	for _, r := range records {
		line := fmt.Sprint(r.Message, r.Metadata)
		if strings.Contains(line, topic) || strings.Contains(line, "disconnected from") {
			seen++
		}
		for _, secret := range secrets {
			if strings.Contains(line, secret) {
				t.Errorf("log line shows a credential: %s", line)
			}
		}
	}
	if seen < 2 {
		t.Fatalf("found %d log lines about the refused polls and the disconnect among %d records: the check saw nothing to check", seen, len(records))
	}
}
