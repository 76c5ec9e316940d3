package azqueue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/micro/go-micro/v2/broker"
	"github.com/micro/go-micro/v2/logger"
	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage"
	"go.opentelemetry.io/otel/trace"
)

// Subscribe starts consuming topic's queue for the subscription's group
// (broker.Queue / server.SubscriberQueue; DefaultGroup without one),
// creating and claiming the queue if needed, and drains into the claimed
// queues any unclaimed queue of the topic. Subscribers of one group share
// its messages; each group receives every message published to the topic.
func (b *Broker) Subscribe(topic string, h broker.Handler, opts ...broker.SubscribeOption) (broker.Subscriber, error) {
	svc, directory, cfg, err := b.connected()
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("azqueue: subscribe to topic %q: nil handler", topic)
	}
	if topic == "" {
		return nil, errEmptyTopic
	}
	options := broker.NewSubscribeOptions(opts...)
	sc, err := resolveSubscribe(options.Context)
	if err != nil {
		return nil, err
	}
	group := options.Queue
	if group == "" {
		group = DefaultGroup
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	name, unclaimed, err := directory.claim(ctx, topic, group)
	if err != nil {
		return nil, fmt.Errorf("azqueue: subscribe to topic %q: %w", topic, err)
	}

	s := newSubscription(b, svc, topic, group, name, h, options, sc, cfg)
	if !b.track(s) {
		// Disconnect began while the queue was being made ready.
		return nil, ErrNotConnected
	}
	go s.poll()
	if _, none := s.meter.observer.(NoObserver); !none && cfg.depthEvery > 0 {
		s.running.start()
		go s.sampleDepth(cfg.depthEvery)
	}
	for _, u := range unclaimed {
		s.running.start()
		d := &drainer{s: s, svc: svc, directory: directory, queue: svc.Queue(u.name),
			grace: cfg.cacheTTL + cfg.publishTimeout, ttl: cfg.publish.ttl}
		go d.run()
	}
	return s, nil
}

// dequeueGrace is how long Unsubscribe lets an in-flight dequeue finish
// before cancelling it. Cancelling a dequeue the service has already served
// would strand its messages until their visibility timeout; letting it
// finish hands them straight back.
const dequeueGrace = 2 * time.Second

// failingPollMax is the least longest pause between failing polls, so that
// a subscription tuned to poll fast does not hammer a service that is down.
const failingPollMax = 10 * time.Second

// subscription is one (topic, group) consumer: a poll loop feeding up to
// cfg.concurrency handlers.
type subscription struct {
	b       *Broker
	topic   string
	group   string
	queue   storage.Queue
	poison  *poisonQueue
	handler broker.Handler
	// fromGoMicro is set when handler is go-micro's gRPC server's, whose
	// decoding errors poisonAtOnce recognises.
	fromGoMicro bool
	opts        broker.SubscribeOptions
	cfg         subscribeConfig
	base64      bool
	// onPoison is the broker's OnPoison callback, or nil.
	onPoison func(Poisoned)

	leased      chan struct{} // one token per message held: running or waiting for a handler
	handlers    chan struct{} // one token per running handler
	waiting     atomic.Int64  // messages fetched and waiting for a handler
	wakeup      chan struct{} // a local publish to our queue
	stop        chan struct{} // closed by Unsubscribe
	done        chan struct{} // closed when the poll loop has exited
	pollCtx     context.Context
	cancelPoll  context.CancelFunc
	running     activity        // workers: processing messages, or idle and waiting for the next
	work        chan dispatched // a message for an idle worker
	pollErrors  throttledLog
	renewErrors throttledLog
	ackErrors   throttledLog // acks and retries that failed: one line per message would flood an outage
	lastErrors  *errorMemory
	// meter records what happens to the queue's messages.
	meter meter

	unsubscribeOnce sync.Once
	unsubscribeErr  error
}

func newSubscription(b *Broker, svc storage.Service, topic, group, queue string, h broker.Handler, opts broker.SubscribeOptions, cfg subscribeConfig, bc brokerConfig) *subscription {
	ctx, cancel := context.WithCancel(context.Background())
	return &subscription{
		b: b, topic: topic, group: group, handler: h, opts: opts, cfg: cfg, base64: bc.base64, onPoison: bc.onPoison,
		fromGoMicro: isGoMicroSubscriber(h),
		queue:       svc.Queue(queue),
		poison:      &poisonQueue{queue: svc.Queue(poisonQueueNameFor(queue)), source: queue},
		leased:      make(chan struct{}, cfg.concurrency+cfg.batchSize),
		handlers:    make(chan struct{}, cfg.concurrency),
		wakeup:      make(chan struct{}, 1),
		work:        make(chan dispatched),
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
		pollCtx:     ctx,
		cancelPoll:  cancel,
		pollErrors:  throttledLog{interval: 30 * time.Second},
		renewErrors: throttledLog{interval: 30 * time.Second},
		ackErrors:   throttledLog{interval: 30 * time.Second},
		lastErrors:  newErrorMemory(1024),
		meter:       meter{stats: &b.stats, observer: b.observer, queue: Queue{Topic: topic, Group: group, Name: queue}},
	}
}

// Options returns the subscription's options.
func (s *subscription) Options() broker.SubscribeOptions { return s.opts }

// Topic returns the subscribed topic.
func (s *subscription) Topic() string { return s.topic }

// notify makes a sleeping poll loop poll now.
func (s *subscription) notify() {
	select {
	case s.wakeup <- struct{}{}:
	default:
	}
}

// Unsubscribe stops polling, hands messages fetched but not started back to
// the queue at once, and waits up to the drain timeout for running handlers,
// whose leases are renewed until they return. It is idempotent and safe to
// call while handlers run.
//
// A subscription holds at most Concurrency + BatchSize messages: the ones
// its handlers run on, and at most one batch fetched ahead, waiting for a
// free handler with their leases renewed, so that the next dequeue can ask
// for a whole batch while the handlers work instead of one message per
// handler that finishes.
func (s *subscription) Unsubscribe() error {
	s.unsubscribeOnce.Do(func() {
		close(s.stop)
		select {
		case <-s.done:
		case <-time.After(dequeueGrace):
			s.cancelPoll()
			<-s.done
		}
		s.cancelPoll()
		if !s.running.wait(s.cfg.drain) {
			s.unsubscribeErr = fmt.Errorf("azqueue: unsubscribe from queue %q: handlers still running after the %s drain timeout; their messages will be delivered again when their leases end",
				s.queue.Name(), s.cfg.drain)
		}
		s.b.forget(s)
	})
	return s.unsubscribeErr
}

// poll is the subscription's loop: reserve room for up to a batch of
// messages, dequeue at most that many, start processing each, and pause
// when the queue had less than asked for.
//
// While dequeues come back full it does not wait for one answer before
// sending the next dequeue: another goes out whenever room for a whole
// batch is free. With a round trip of tens of milliseconds one dequeue at
// a time would cap a subscription at one batch per round trip however many
// handlers it has; this way the room, Concurrency + BatchSize messages,
// is what bounds it. Only full answers start overlapping dequeues, so an
// idle or slow queue is still polled one dequeue at a time, with pauses.
func (s *subscription) poll() {
	defer close(s.done)
	idle := newBackoff(s.cfg.pollMin, s.cfg.pollMax)
	// A failing poll backs off from ten times the shortest pause to the
	// longest, or failingPollMax if that is longer: at defaults a service
	// that is down or refusing is polled no more often than an idle queue,
	// and found again within one longest pause of its return.
	failingMax := max(s.cfg.pollMax, failingPollMax)
	failing := newBackoff(min(s.cfg.pollMin*10, failingMax), failingMax)

	// Every dequeue in flight holds room for at least one message, so
	// there are never more answers than room.
	answers := make(chan dequeueAnswer, cap(s.leased))
	inFlight := 0    // dequeues sent and not answered yet
	room := 0        // room reserved for the next dequeue
	full := false    // the latest answer was a whole batch: more are probably waiting
	var failed error // the latest failed dequeue since the last pause
	for {
		if s.stopping() {
			s.stopPolling(answers, inFlight, room)
			return
		}
		// Another dequeue may go out when none is in flight, or alongside
		// those in flight while the queue answers whole batches.
		asking := inFlight == 0 || full
		if asking {
			atLeast := s.lowWater()
			if inFlight > 0 {
				atLeast = s.cfg.batchSize
			}
			if room >= atLeast {
				room += s.reserveUpTo(s.cfg.batchSize - room)
				inFlight++
				go s.dequeueInto(answers, room)
				room = 0
				continue
			}
		}
		var more chan<- struct{} // nil, which never sends, unless a dequeue may go out
		if asking {
			more = s.leased
		}
		var a dequeueAnswer
		select {
		case more <- struct{}{}:
			room++
			continue
		case <-s.stop:
			continue
		case a = <-answers:
		}
		inFlight--
		s.unreserve(a.want - len(a.msgs))
		if s.stopping() {
			s.handBack(a.msgs, a.sent)
			s.unreserve(len(a.msgs))
			continue
		}
		if a.err != nil {
			s.meter.failed()
			if !storage.IsServerBusy(a.err) { // the throttle watch reports those
				s.pollErrors.errorf("azqueue: poll queue %q for topic %q: %v; retrying with backoff", s.queue.Name(), s.topic, a.err)
			}
			if storage.IsQueueNotFound(a.err) {
				s.recreateQueue()
			}
			failed, full = a.err, false
		} else {
			failing.reset()
			s.pollErrors.recovered("azqueue: polling queue %q works again", s.queue.Name())
			for _, m := range a.msgs {
				s.dispatch(m, a.sent)
			}
			full = len(a.msgs) == a.want
			if len(a.msgs) > 0 {
				idle.reset()
			}
		}
		if inFlight > 0 || (full && failed == nil) {
			continue // full: more are probably waiting
		}
		pause := idle.pause()
		if failed != nil {
			pause = max(failing.pause(), retryAfter(failed))
		}
		failed, full = nil, false
		s.unreserve(room)
		room = 0
		if !s.sleep(pause, idle) {
			return
		}
	}
}

// dequeueAnswer is what one dequeue brought: its messages or its error,
// the room it had reserved, and when it was sent, from which the messages'
// leases run.
type dequeueAnswer struct {
	msgs []storage.Message
	err  error
	want int
	sent time.Time
}

// dequeueInto dequeues up to want messages and sends the answer.
func (s *subscription) dequeueInto(answers chan<- dequeueAnswer, want int) {
	sent := time.Now()
	msgs, err := s.dequeue(want)
	answers <- dequeueAnswer{msgs: msgs, err: err, want: want, sent: sent}
}

// stopPolling ends the poll loop: it frees the room reserved for no
// dequeue and hands back the messages of the dequeues still in flight as
// their answers arrive (Unsubscribe cancels them after dequeueGrace).
func (s *subscription) stopPolling(answers <-chan dequeueAnswer, inFlight, room int) {
	s.unreserve(room)
	for ; inFlight > 0; inFlight-- {
		a := <-answers
		s.unreserve(a.want - len(a.msgs))
		s.handBack(a.msgs, a.sent)
		s.unreserve(len(a.msgs))
	}
}

// lowWater is how many messages a dequeue sent while none is in flight
// must have room for: one while nothing waits for a handler, so a quiet
// subscription polls at once; half a batch while messages wait, so that a
// busy one asks for batches rather than one message per handler that
// finishes.
func (s *subscription) lowWater() int {
	if s.waiting.Load() > 0 {
		return (s.cfg.batchSize + 1) / 2
	}
	return 1
}

// reserveUpTo takes room for up to n more messages without waiting and
// returns how much it took.
func (s *subscription) reserveUpTo(n int) int {
	for i := 0; i < n; i++ {
		select {
		case s.leased <- struct{}{}:
		default:
			return i
		}
	}
	return n
}

func (s *subscription) unreserve(n int) {
	for i := 0; i < n; i++ {
		<-s.leased
	}
}

// startHandler waits for a free handler, renewing the message's lease
// meanwhile. It returns false when the subscription stops first, having
// handed the message (decoded as d) back to the queue, or when the lease
// was lost while the message waited: that message is not handed to a
// handler, since another consumer may have it.
func (s *subscription) startHandler(l *lease, d decoded) bool {
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	select {
	case s.handlers <- struct{}{}:
		if !s.stopping() {
			if l.held() {
				return true
			}
			<-s.handlers
			l.stopRenewing()
			return false
		}
		<-s.handlers
	case <-s.stop:
	}
	l.stopRenewing()
	s.handBackOne(l, d.withHandBack())
	return false
}

func (s *subscription) stopping() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// sleep pauses for d, or until a local publish wakes the subscription
// (which also resets the idle backoff). It returns false when the
// subscription stops.
func (s *subscription) sleep(d time.Duration, idle *backoff) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-s.wakeup:
		idle.reset()
		return true
	case <-s.stop:
		return false
	}
}

func (s *subscription) dequeue(n int) ([]storage.Message, error) {
	msgs, err := s.queue.Dequeue(s.pollCtx, n, s.cfg.visibility)
	s.meter.polled(len(msgs), err)
	return msgs, err
}

// sampleDepth tells the observer the queue's approximate depth every
// interval until the subscription stops.
func (s *subscription) sampleDepth(interval time.Duration) {
	defer s.running.done()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		ctx, cancel := context.WithTimeout(s.pollCtx, requestTimeout)
		n, err := s.queue.ApproximateCount(withoutRetries(ctx))
		cancel()
		if err == nil {
			s.meter.observer.Depth(s.meter.queue, n)
		}
		select {
		case <-ticker.C:
		case <-s.stop:
			return
		}
	}
}

// recreateQueue creates the subscription's queue again after someone
// deleted it.
func (s *subscription) recreateQueue() {
	ctx, cancel := context.WithTimeout(s.pollCtx, requestTimeout)
	defer cancel()
	if err := s.queue.Create(ctx, claimedMetadata(s.topic, s.group)); err != nil {
		s.pollErrors.errorf("azqueue: recreate queue %q: %v", s.queue.Name(), err)
	}
}

// handBack makes messages fetched after Unsubscribe (by a dequeue sent at
// sent) visible again at once, rather than leaving them invisible for the
// visibility timeout.
func (s *subscription) handBack(msgs []storage.Message, sent time.Time) {
	var wg sync.WaitGroup
	for _, m := range msgs {
		wg.Add(1)
		go func(m storage.Message) {
			defer wg.Done()
			// A damaged envelope is handed back as it is; its next
			// delivery poisons it.
			text := ""
			if d, err := decodeMessage(m.Text, s.base64); err == nil {
				text = d.withHandBack()
			}
			s.handBackOne(s.lease(m, sent), text)
		}(m)
	}
	wg.Wait()
}

// handBackOne makes a message no handler has seen visible again at once,
// with text: its envelope counting one more hand-back (withHandBack), so
// that rolling restarts do not push healthy messages towards the poison
// queue; or "", keeping the text, for a foreign text, which has nowhere to
// count it.
func (s *subscription) handBackOne(l *lease, text string) {
	err := l.release(0, text)
	switch {
	case err == nil:
		s.meter.handedBack()
	case !errors.Is(err, ErrLeaseLost):
		logger.Warnf("azqueue: hand back message %s to queue %q: %v", l.id, s.queue.Name(), err)
	}
}

// exhausted is the poison reason of a message delivered more than
// MaxDequeueCount times, not counting hand-backs: its last handler error,
// or, when no handler failed, how its deliveries ended.
func (s *subscription) exhausted(d decoded, m storage.Message, deliveries int64) string {
	last := d.LastError
	if d.foreign {
		last = s.lastErrors.get(m.ID)
	}
	if last == "" {
		last = "none: no handler failed; each delivery ended without an answer (its lease was lost: a handler slower than the lease could be renewed, or a consumer that stopped without handing it back)"
	}
	counted := fmt.Sprintf("delivered %d times", deliveries)
	if d.HandBacks > 0 {
		counted = fmt.Sprintf("delivered %d times, not counting %d hand-backs at graceful stops", deliveries, d.HandBacks)
	}
	return fmt.Sprintf("%s, more than MaxDequeueCount %d; last error: %s", counted, s.cfg.maxDequeue, last)
}

// workerIdle is how long a worker waits for another message before it
// exits.
const workerIdle = 10 * time.Second

// dispatched is a message for a worker, dequeued by a request sent at sent.
type dispatched struct {
	m    storage.Message
	sent time.Time
}

// dispatch hands a message to an idle worker, or starts a worker for it.
// Workers stay for the next message rather than one goroutine running per
// message: a new goroutine starts with a small stack and grows it, copying
// it, in the SDK's deep call chain of the delete, which cost a consumer
// more CPU per message than decoding the envelope.
func (s *subscription) dispatch(m storage.Message, sent time.Time) {
	select {
	case s.work <- dispatched{m: m, sent: sent}:
	default:
		s.running.start()
		go s.worker(dispatched{m: m, sent: sent})
	}
}

// worker processes d, then the messages dispatch hands it, until the
// subscription stops or no message comes for workerIdle.
func (s *subscription) worker(d dispatched) {
	defer s.running.done()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		s.process(d.m, d.sent)
		idle.Reset(workerIdle)
		select {
		case d = <-s.work:
		case <-idle.C:
			return
		case <-s.stop:
			return
		}
	}
}

// lease returns the lease of m, dequeued by a request sent at sent.
func (s *subscription) lease(m storage.Message, sent time.Time) *lease {
	return newLease(s.queue, m, s.cfg.visibility, sent, &s.meter, &s.renewErrors)
}

// process handles one leased message, dequeued by a request sent at sent:
// poison it if it has been delivered too often or cannot be read, else wait
// for a free handler and run it, renewing the lease all the while, then ack
// (AutoAck) or schedule a retry.
func (s *subscription) process(m storage.Message, sent time.Time) {
	defer s.unreserve(1)

	// The lease is renewed from the start, poisoning included: moving a
	// message to the poison queue can take retries longer than a short
	// lease, and a lease that ran out meanwhile would let a second delivery
	// poison the message again.
	l := s.lease(m, sent)
	l.startRenewing()
	defer l.stopRenewing()
	d, err := decodeMessage(m.Text, s.base64)
	span := startProcessSpan(s.meter.queue, d.Headers, m.ID, m.DequeueCount)
	defer span.End()
	if err != nil {
		s.poisonMessage(l, span, m, m.Text, PoisonUnreadable, err.Error())
		return
	}
	if deliveries := d.deliveries(m.DequeueCount); deliveries > int64(s.cfg.maxDequeue) {
		s.poisonMessage(l, span, m, d.publishedText(m.Text), PoisonMaxDeliveries, s.exhausted(d, m, deliveries))
		return
	}

	ev := &event{topic: s.topic, message: s.messageFor(d, m, span), lease: l, dequeueCount: m.DequeueCount, meter: &s.meter}
	if !s.startHandler(l, d) {
		return
	}
	err = s.invoke(ev, m.InsertionTime)
	// The handler is done: its slot goes to the next message now, not after
	// the delete or the retry below, which at a real service's round trip
	// would keep a slot idle for as long again as a quick handler runs.
	// The message still counts towards the room until process returns.
	<-s.handlers

	if err != nil {
		if code, reason, now := poisonAtOnce(err, s.fromGoMicro, ev.message.Header[headerContentType]); now {
			// Still renewed: poisoning takes requests of its own. A handler
			// that settled the message itself has had its say.
			if l.settledOrLost() == nil {
				s.poisonMessage(l, span, m, d.publishedText(m.Text), code, reason)
			}
			return
		}
		l.stopRenewing()
		s.retry(l, span, d, m, err)
		return
	}
	l.stopRenewing()
	if s.opts.AutoAck {
		// A lost lease was logged when it was found.
		if err := ev.Ack(); err != nil && !errors.Is(err, ErrSettled) && !errors.Is(err, ErrLeaseLost) {
			s.ackErrors.errorf("azqueue: topic %q: message %s was handled but not deleted, it will be delivered again: %v", s.topic, m.ID, err)
		}
	}
}

// invoke runs the handler, turning a panic into an error, and records the
// delivery of a message first enqueued at inserted.
func (s *subscription) invoke(ev *event, inserted time.Time) (err error) {
	start := time.Now()
	s.meter.delivered(start.Sub(inserted), ev.dequeueCount)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
		s.meter.handled(time.Since(start), err)
	}()
	return s.handler(ev)
}

// messageFor builds the go-micro message a handler sees: the envelope's
// headers and body (or a foreign text with RawContentType), plus the
// Azqueue-* headers describing the delivery, and the trace context of its
// process span.
func (s *subscription) messageFor(d decoded, m storage.Message, span trace.Span) *broker.Message {
	headers := make(map[string]string, len(d.Headers)+5)
	for k, v := range d.Headers {
		headers[k] = v
	}
	if d.foreign {
		headers[headerContentType] = s.cfg.rawContentType
	}
	headers[HeaderMessageID] = m.ID
	headers[HeaderDequeueCount] = strconv.FormatInt(m.DequeueCount, 10)
	headers[HeaderInsertionTime] = m.InsertionTime.UTC().Format(time.RFC3339Nano)
	headers[HeaderQueue] = s.queue.Name()
	carryTraceContext(span, headers)
	return &broker.Message{Header: headers, Body: d.Body}
}

// retry gives a failed message back to the queue after an exponential,
// jittered delay, recording the error in the envelope (or, for a foreign
// text, in memory) for the poison queue's sake. A handler that settled the
// message itself is left alone.
func (s *subscription) retry(l *lease, span trace.Span, d decoded, m storage.Message, cause error) {
	s.meter.failed()
	delay := retryDelay(d.deliveries(m.DequeueCount), s.cfg.retryMin, s.cfg.retryMax)
	reason := cause.Error()
	if d.foreign {
		s.lastErrors.put(m.ID, reason)
	}
	err := l.release(delay, d.withLastError(reason))
	switch {
	case errors.Is(err, ErrSettled), errors.Is(err, ErrLeaseLost):
		// Settled by the handler itself; or lost, which was logged when
		// found, and the message comes back anyway.
		spanFailed(span, cause)
		return
	case err != nil:
		spanFailed(span, cause)
		s.ackErrors.errorf("azqueue: topic %q: handler failed on message %s (delivery %d of %d) and the retry could not be scheduled, it will be delivered again when its lease ends: %v; handler error: %v",
			s.topic, m.ID, m.DequeueCount, s.cfg.maxDequeue, err, cause)
	default:
		s.meter.retried()
		spanRetried(span, delay, cause)
		logger.Warnf("azqueue: topic %q: handler failed on message %s (delivery %d of %d), retrying in %s: %v",
			s.topic, m.ID, m.DequeueCount, s.cfg.maxDequeue, delay.Round(time.Millisecond), cause)
	}
}

// poisonMessage moves a message to the poison queue: copy first, then
// delete, so a crash in between duplicates it rather than losing it. If the
// copy fails, the message is left to be tried again after a delay.
func (s *subscription) poisonMessage(l *lease, span trace.Span, m storage.Message, original string, code PoisonReason, reason string) {
	if err := s.poison.put(m, original, s.topic, s.group, reason); err != nil {
		s.meter.failed()
		logger.Errorf("azqueue: topic %q: message %s should move to poison queue %q (%s) but could not: %v",
			s.topic, m.ID, s.poison.queue.Name(), reason, err)
		_ = l.release(retryDelay(m.DequeueCount, s.cfg.retryMin, s.cfg.retryMax), "")
		return
	}
	s.meter.poisoned(code)
	spanPoisoned(span, code, reason)
	logger.Errorf("azqueue: topic %q: moved message %s to poison queue %q: %s", s.topic, m.ID, s.poison.queue.Name(), reason)
	s.notifyPoisoned(Poisoned{
		Topic: s.topic, Group: s.group, Queue: s.queue.Name(), PoisonQueue: s.poison.queue.Name(),
		MessageID: m.ID, DequeueCount: m.DequeueCount, Code: code, Reason: reason,
	})
	if err := l.remove(); err != nil {
		logger.Warnf("azqueue: topic %q: message %s is in poison queue %q but could not be deleted from %q (it may appear there twice): %v",
			s.topic, m.ID, s.poison.queue.Name(), s.queue.Name(), err)
	}
}

// notifyPoisoned calls the broker's OnPoison callback, if any, with p.
func (s *subscription) notifyPoisoned(p Poisoned) {
	if s.onPoison == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			logger.Errorf("azqueue: topic %q: the OnPoison callback panicked on message %s: %v", s.topic, p.MessageID, r)
		}
	}()
	s.onPoison(p)
}

// activity counts running goroutines and can be waited on with a
// timeout. A sync.WaitGroup cannot: waiting on one with a timeout takes a
// goroutine that stays blocked after the timeout for as long as the
// goroutines it waits for, forever for a handler that never returns.
type activity struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0; nil while n is 0
}

// start counts one more goroutine.
func (a *activity) start() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == 0 {
		a.idle = make(chan struct{})
	}
	a.n++
}

// done counts one goroutine less.
func (a *activity) done() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n--
	if a.n == 0 {
		close(a.idle)
		a.idle = nil
	}
}

// wait waits up to d for every counted goroutine to be done, reporting
// whether they were.
func (a *activity) wait(d time.Duration) bool {
	a.mu.Lock()
	idle := a.idle
	a.mu.Unlock()
	if idle == nil {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-idle:
		return true
	case <-timer.C:
		return false
	}
}
