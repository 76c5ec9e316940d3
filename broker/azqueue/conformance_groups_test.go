package azqueue

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/micro/go-micro/v2/broker"
)

// exists reports whether the backend has the named queue.
func (e *env) exists(queue string) bool {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	infos, err := e.raw.ListQueues(ctx, queue)
	if err != nil {
		e.t.Fatalf("list queues: %v", err)
	}
	for _, q := range infos {
		if q.Name == queue {
			return true
		}
	}
	return false
}

// drainingBroker is a connected broker whose subscriptions delete an
// emptied unclaimed queue a second after they claimed theirs (grace:
// QueueCacheTTL 0 + PublishTimeout 1s), not a minute after.
func (e *env) drainingBroker() *Broker {
	return e.connected(QueueCacheTTL(0), PublishTimeout(time.Second))
}

func testEventsPublishedBeforeAnyGroupGoToTheFirstGroup(t *testing.T, e *env) {
	topic := newTopic()
	unclaimed := queueName(t, topic, DefaultGroup)
	pub := e.connected(QueueCacheTTL(0))
	early := publishMessages(t, pub, topic, 10)
	if !e.exists(unclaimed) {
		t.Fatalf("no queue %s keeps the messages published before any group subscribed", unclaimed)
	}
	r := newRecorder(t)
	e.subscribe(e.drainingBroker(), topic, r.handler(nil), broker.Queue("billing"), fastPolls)
	r.waitIDs(t, early, waitLong)
	eventually(t, waitLong, func() string { return unclaimed + " still exists after it was emptied into the first group" },
		func() bool { return !e.exists(unclaimed) })

	late := publishMessages(t, pub, topic, 5)
	all := append(early, late...)
	r.waitIDs(t, all, waitLong)
	assertExactlyOnce(t, "the first group", r.ids(), all)
	if e.exists(unclaimed) {
		t.Errorf("%s was created again although a group has claimed a queue of the topic", unclaimed)
	}
}

func testClaimedQueueKeepsReceivingWhileItsSubscribersAreStopped(t *testing.T, e *env) {
	topic := newTopic()
	sub := e.subscribe(e.connected(), topic, newRecorder(t).handler(nil), broker.Queue("billing"))
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	publishMessages(t, e.connected(), topic, 5)
	if n := e.messages(queueName(t, topic, "billing")); n != 5 {
		t.Errorf("%d messages in the stopped group's queue, want all 5", n)
	}
	if e.exists(queueName(t, topic, DefaultGroup)) {
		t.Errorf("an unclaimed default queue was created although a group had claimed one")
	}
}

func testRetiredGroupIsNotFedAndNotRecreated(t *testing.T, e *env) {
	topic := newTopic()
	for _, g := range []string{"kept", "retired"} {
		sub := e.subscribe(e.connected(), topic, newRecorder(t).handler(nil), broker.Queue(g))
		if err := sub.Unsubscribe(); err != nil {
			t.Fatal(err)
		}
	}
	kept, retired := queueName(t, topic, "kept"), queueName(t, topic, "retired")
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := e.raw.Queue(poisonQueueNameFor(retired)).Create(ctx, map[string]string{metaPoisonOf: retired}); err != nil {
		t.Fatal(err)
	}
	// A publisher whose list of the topic's queues stays warm for an hour.
	pub := e.connected(QueueCacheTTL(time.Hour))
	publishMessages(t, pub, topic, 1)

	b := e.connected()
	if err := b.RetireGroup(ctx, topic, "retired", false); err != nil {
		t.Fatalf("RetireGroup: %v", err)
	}
	if e.exists(retired) || !e.exists(poisonQueueNameFor(retired)) {
		t.Errorf("after RetireGroup without its poison queue: queue exists %v, poison queue exists %v; want false, true",
			e.exists(retired), e.exists(poisonQueueNameFor(retired)))
	}
	publishMessages(t, pub, topic, 1) // through the stale list
	if e.exists(retired) {
		t.Errorf("a publisher with a stale list re-created the retired group's queue")
	}
	if n := e.messages(kept); n != 2 {
		t.Errorf("%d messages in the kept group's queue, want both", n)
	}
	if err := b.RetireGroup(ctx, topic, "retired", true); err != nil || e.exists(poisonQueueNameFor(retired)) {
		t.Errorf("RetireGroup with its poison queue: %v; poison queue exists %v", err, e.exists(poisonQueueNameFor(retired)))
	}
	if err := b.RetireGroup(ctx, topic, "never-was", true); err != nil {
		t.Errorf("RetireGroup of a group without a queue: %v", err)
	}
}

func testGroupStartingUnderPublishersWithWarmCachesLosesNothing(t *testing.T, e *env) {
	const publishers, each, subscribers = 3, 20, 2
	topic := newTopic()
	unclaimed := queueName(t, topic, DefaultGroup)
	var mu sync.Mutex
	var ids []string
	record := func(more []string) {
		mu.Lock()
		ids = append(ids, more...)
		mu.Unlock()
	}
	pubs := make([]*Broker, publishers)
	for i := range pubs {
		// Each lists the topic once (only the unclaimed queue) and trusts
		// that list for longer than the group takes to start.
		pubs[i] = e.connected(QueueCacheTTL(2 * time.Second))
		record(publishMessages(t, pubs[i], topic, 1))
	}
	r := newRecorder(t)
	var wg sync.WaitGroup
	for _, pub := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				record(publishMessages(t, pub, topic, 1))
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	for range subscribers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.subscribe(e.connected(QueueCacheTTL(2*time.Second), PublishTimeout(time.Second)), topic, r.handler(nil), broker.Queue("billing"), fastPolls)
		}()
	}
	wg.Wait()
	r.waitIDs(t, ids, waitLong)
	if lost := missing(r.ids(), ids); len(lost) > 0 {
		t.Fatalf("%d of %d messages lost", len(lost), len(ids))
	}
	eventually(t, waitLong, func() string { return fmt.Sprintf("%s still exists", unclaimed) }, func() bool { return !e.exists(unclaimed) })
	if extra := len(r.all()) - len(ids); extra > 0 {
		t.Logf("%d duplicates of %d messages (at least once)", extra, len(ids))
	}
}
