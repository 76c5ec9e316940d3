package azqueue

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	ctx := options.Context
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, span, m := startPublishSpan(ctx, topic, m)
	defer span.End()
	if err := b.publish(ctx, svc, directory, cfg, pub, topic, m); err != nil {
		spanFailed(span, err)
		return err
	}
	return nil
}

// publish is Publish once the message is checked and its span started.
func (b *Broker) publish(ctx context.Context, svc storage.Service, directory *queueDirectory, cfg brokerConfig, pub publishConfig, topic string, m *broker.Message) error {
	text, _, err := encodeMessage(m, cfg.base64)
	if errors.Is(err, ErrMessageTooLarge) {
		return fmt.Errorf("%w (publishing to topic %q)", err, topic) // prefixed already
	}
	if err != nil {
		return fmt.Errorf("azqueue: publish to topic %q: %w", topic, err)
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
	received, failed, gone := b.enqueueAll(ctx, svc, topic, queues, text, pub)
	if gone {
		// A queue was deleted since it was listed: its group was retired,
		// or it was an unclaimed queue emptied into the first group. The
		// topic's queues are listed again and the message goes to those it
		// has not reached; the deleted queue is not re-created.
		directory.invalidate(topic)
		fresh, err := directory.queuesFor(ctx, topic)
		if err != nil {
			failed = append(failed, err)
		} else {
			more, moreFailed, goneAgain := b.enqueueAll(ctx, svc, topic, without(fresh, received), text, pub)
			received, failed, queues = append(received, more...), append(failed, moreFailed...), fresh
			if goneAgain {
				b.stats.errors.Add(1)
				failed = append(failed, errQueueDeletedWhilePublishing)
			}
		}
	}
	// Only queues that received the message wake their pollers: waking one
	// for a failed publish would cut short the backoff of a poller whose
	// polls fail for the same reason.
	b.wake(received)
	if len(failed) > 0 {
		return fmt.Errorf("azqueue: publish to topic %q: %d of %d queues failed: %w", topic, len(failed), len(queues), errors.Join(failed...))
	}
	return nil
}

// errQueueDeletedWhilePublishing is the error of a publish whose queue
// was deleted between two listings and the enqueue.
var errQueueDeletedWhilePublishing = errors.New("a queue of the topic was deleted while the message was being published to it")

// enqueueAll enqueues text into every queue, in parallel when there are
// several, and returns the queues that received it, the errors of the
// others, and whether one of those no longer exists.
func (b *Broker) enqueueAll(ctx context.Context, svc storage.Service, topic string, queues []groupQueue, text string, pub publishConfig) (received []groupQueue, failed []error, gone bool) {
	errs := make([]error, len(queues))
	if len(queues) == 1 {
		errs[0] = b.enqueue(ctx, svc, topic, queues[0], text, pub)
	} else {
		var wg sync.WaitGroup
		for i, q := range queues {
			wg.Add(1)
			go func(i int, q groupQueue) {
				defer wg.Done()
				errs[i] = b.enqueue(ctx, svc, topic, q, text, pub)
			}(i, q)
		}
		wg.Wait()
	}
	for i, err := range errs {
		switch {
		case err == nil:
			received = append(received, queues[i])
		case storage.IsQueueNotFound(err):
			gone = true
		default:
			failed = append(failed, err)
		}
	}
	return received, failed, gone
}

// enqueue adds text to one group queue.
func (b *Broker) enqueue(ctx context.Context, svc storage.Service, topic string, gq groupQueue, text string, pub publishConfig) error {
	err := svc.Queue(gq.name).Enqueue(ctx, text, pub.delay, pub.ttl)
	if err != nil {
		if !storage.IsQueueNotFound(err) {
			b.stats.errors.Add(1)
		}
		return err
	}
	b.stats.published.Add(1)
	b.observer.Published(Queue{Topic: topic, Group: gq.group, Name: gq.name})
	return nil
}

// without returns the queues of all that are not in some.
func without(all, some []groupQueue) []groupQueue {
	var rest []groupQueue
	for _, q := range all {
		if !slices.Contains(some, q) {
			rest = append(rest, q)
		}
	}
	return rest
}
