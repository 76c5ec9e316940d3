package azqueue

import (
	"context"
	"fmt"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage"
)

// RetireGroup deletes the queue of topic's group (DefaultGroup when group
// is empty) and the messages in it, and its poison queue too when
// withPoison is set. A group's queue stays, receiving a copy of every
// message published to the topic, for as long as it is not retired, whether
// or not its subscribers run; retire a group once its subscribers are
// stopped for good (a running subscriber would create its queue again).
// This broker stops publishing to the queue at once; other processes do
// within their QueueCacheTTL, and a publish that meets the deleted queue
// before then lists the topic's queues again rather than re-creating it.
// Retiring a group that has no queue is not an error. The broker must be
// connected.
func (b *Broker) RetireGroup(ctx context.Context, topic, group string, withPoison bool) error {
	svc, directory, _, err := b.connected()
	if err != nil {
		return err
	}
	if group == "" {
		group = DefaultGroup
	}
	name, err := queueNameFor(topic, group)
	if err != nil {
		return err
	}
	names := []string{name}
	if withPoison {
		names = append(names, poisonQueueNameFor(name))
	}
	for _, n := range names {
		if err := svc.Queue(n).DeleteQueue(ctx); err != nil && !storage.IsQueueNotFound(err) {
			return fmt.Errorf("azqueue: retire group %q of topic %q: %w", group, topic, err)
		}
	}
	directory.invalidate(topic)
	return nil
}
