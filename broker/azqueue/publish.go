package azqueue

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/micro/go-micro/v2/broker"
	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage"
)

// Publish enqueues m into every group queue of topic (creating the default
// group's queue when the topic has none yet). The message is encoded in the
// broker's envelope, with a Micro-Id header when it has none, and must fit
// the service's 64 KiB limit (ErrMessageTooLarge). The publish context's
// deadline is honoured; without one, PublishTimeout bounds the call. When
// some queues fail, the error names them.
func (b *Broker) Publish(topic string, m *broker.Message, opts ...broker.PublishOption) error {
	svc, directory, cfg, err := b.connected()
	if err != nil {
		return err
	}
	var options broker.PublishOptions
	for _, o := range opts {
		o(&options)
	}
	pub, err := resolvePublish(options.Context, cfg.publish)
	if err != nil {
		return err
	}
	if m == nil {
		return fmt.Errorf("azqueue: publish to topic %q: nil message", topic)
	}
	if topic == "" {
		return errEmptyTopic
	}
	text, _, err := encodeMessage(m, cfg.base64)
	if errors.Is(err, ErrMessageTooLarge) {
		return fmt.Errorf("%w (publishing to topic %q)", err, topic) // prefixed already
	}
	if err != nil {
		return fmt.Errorf("azqueue: publish to topic %q: %w", topic, err)
	}

	ctx := options.Context
	if ctx == nil {
		ctx = context.Background()
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.publishTimeout)
		defer cancel()
	}

	queues, err := directory.queuesFor(ctx, topic)
	if err != nil {
		b.stats.errors.Add(1)
		return fmt.Errorf("azqueue: publish to topic %q: %w", topic, err)
	}
	errs := b.enqueueAll(ctx, svc, directory, topic, queues, text, pub)
	// Only queues that received the message wake their pollers: waking one
	// for a failed publish would cut short the backoff of a poller whose
	// polls fail for the same reason.
	var failed []error
	var received []groupQueue
	for i, err := range errs {
		if err != nil {
			failed = append(failed, err)
		} else {
			received = append(received, queues[i])
		}
	}
	b.wake(received)
	if len(failed) > 0 {
		return fmt.Errorf("azqueue: publish to topic %q: %d of %d queues failed: %w", topic, len(failed), len(queues), errors.Join(failed...))
	}
	return nil
}

// enqueueAll enqueues text into every queue, in parallel when there are
// several, and returns each queue's error (nil where it succeeded).
func (b *Broker) enqueueAll(ctx context.Context, svc storage.Service, directory *queueDirectory, topic string, queues []groupQueue, text string, pub publishConfig) []error {
	errs := make([]error, len(queues))
	if len(queues) == 1 {
		errs[0] = b.enqueue(ctx, svc, directory, topic, queues[0], text, pub)
		return errs
	}
	var wg sync.WaitGroup
	for i, q := range queues {
		wg.Add(1)
		go func(i int, q groupQueue) {
			defer wg.Done()
			errs[i] = b.enqueue(ctx, svc, directory, topic, q, text, pub)
		}(i, q)
	}
	wg.Wait()
	return errs
}

// enqueue adds text to one group queue. A queue deleted since it was listed
// is recreated once and retried.
func (b *Broker) enqueue(ctx context.Context, svc storage.Service, directory *queueDirectory, topic string, gq groupQueue, text string, pub publishConfig) error {
	q := svc.Queue(gq.name)
	err := q.Enqueue(ctx, text, pub.delay, pub.ttl)
	if storage.IsQueueNotFound(err) {
		directory.invalidate(topic)
		if cerr := q.Create(ctx, queueMetadata(topic, gq.group)); cerr != nil {
			b.stats.errors.Add(1)
			return cerr
		}
		err = q.Enqueue(ctx, text, pub.delay, pub.ttl)
	}
	if err != nil {
		b.stats.errors.Add(1)
		return err
	}
	b.stats.published.Add(1)
	return nil
}
