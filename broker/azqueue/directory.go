package azqueue

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage"
)

// queueDirectory knows which group queues each topic has, so Publish can
// fan out to all of them. It lists the queues whose names start with the
// topic's prefix and keeps those whose metadata records the topic, and
// trusts the answer for ttl.
type queueDirectory struct {
	svc storage.Service
	ttl time.Duration

	mu     sync.Mutex
	topics map[string]*topicQueues
}

// topicQueues is one topic's cached queue list. Its own lock makes
// concurrent publishers to an expired topic wait for one listing.
type topicQueues struct {
	mu      sync.Mutex
	queues  []groupQueue
	expires time.Time
}

// groupQueue is one group's queue of a topic.
type groupQueue struct {
	name  string
	group string
}

func newQueueDirectory(svc storage.Service, ttl time.Duration) *queueDirectory {
	return &queueDirectory{svc: svc, ttl: ttl, topics: make(map[string]*topicQueues)}
}

func (d *queueDirectory) entry(topic string) *topicQueues {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.topics[topic]
	if !ok {
		t = &topicQueues{}
		d.topics[topic] = t
	}
	return t
}

// queuesFor returns the queues a message published to topic goes to: the
// queues its groups have claimed (see claim). Until a group claims one, it
// is the topic's unclaimed queues, and a topic without any queue gets its
// default group's queue, created now, unclaimed: messages published before
// the first subscriber starts are kept there, for the first group that
// subscribes (see drainer). Once a group has claimed a queue, unclaimed
// ones receive no more copies.
func (d *queueDirectory) queuesFor(ctx context.Context, topic string) ([]groupQueue, error) {
	t := d.entry(topic)
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.queues) > 0 && time.Now().Before(t.expires) {
		return t.queues, nil
	}
	claimed, unclaimed, err := d.list(ctx, topic)
	if err != nil {
		return nil, err
	}
	queues := claimed
	if len(queues) == 0 {
		queues = unclaimed
	}
	if len(queues) == 0 {
		name, err := d.ensureQueue(ctx, topic, DefaultGroup, queueMetadata(topic, DefaultGroup))
		if err != nil {
			return nil, err
		}
		queues = []groupQueue{{name: name, group: DefaultGroup}}
	}
	t.queues, t.expires = queues, time.Now().Add(d.ttl)
	return queues, nil
}

// list returns the topic's group queues, claimed and unclaimed.
func (d *queueDirectory) list(ctx context.Context, topic string) (claimed, unclaimed []groupQueue, err error) {
	infos, err := d.svc.ListQueues(ctx, topicPrefix(topic))
	if err != nil {
		return nil, nil, err
	}
	for _, q := range infos {
		if recorded, ok := metadataValue(q.Metadata, metaTopic); ok && recorded == topic {
			group, _ := metadataValue(q.Metadata, metaGroup)
			gq := groupQueue{name: q.Name, group: group}
			if _, ok := metadataValue(q.Metadata, metaClaimed); ok {
				claimed = append(claimed, gq)
			} else {
				unclaimed = append(unclaimed, gq)
			}
		}
	}
	return claimed, unclaimed, nil
}

// ensureQueue creates the (topic, group) queue with metadata if it does not
// exist.
func (d *queueDirectory) ensureQueue(ctx context.Context, topic, group string, metadata map[string]string) (string, error) {
	name, err := queueNameFor(topic, group)
	if err != nil {
		return "", err
	}
	if err := d.svc.Queue(name).Create(ctx, metadata); err != nil {
		return "", fmt.Errorf("create queue for topic %q group %q: %w", topic, group, err)
	}
	return name, nil
}

// claim makes the (topic, group) queue exist and marks it claimed: a
// subscriber's group receives a copy of every message published to the
// topic from now on, whether or not its subscribers run, until the group
// is retired (RetireGroup). A queue created unclaimed by a publisher is
// claimed in place. It returns the queue's name and the topic's other
// queues that are still unclaimed, for the subscription to drain.
func (d *queueDirectory) claim(ctx context.Context, topic, group string) (name string, unclaimed []groupQueue, err error) {
	claimed := claimedMetadata(topic, group)
	if name, err = d.ensureQueue(ctx, topic, group, claimed); err != nil {
		return "", nil, err
	}
	// Create leaves an existing queue's metadata as it was.
	_, unclaimed, err = d.list(ctx, topic)
	if err != nil {
		return "", nil, fmt.Errorf("claim queue %q: %w", name, err)
	}
	if i := slices.IndexFunc(unclaimed, func(q groupQueue) bool { return q.name == name }); i >= 0 {
		if err := d.svc.Queue(name).SetMetadata(ctx, claimed); err != nil {
			return "", nil, fmt.Errorf("claim queue %q: %w", name, err)
		}
		unclaimed = slices.Delete(unclaimed, i, i+1)
	}
	d.invalidate(topic)
	return name, unclaimed, nil
}

// invalidate makes the next queuesFor list the topic's queues again.
func (d *queueDirectory) invalidate(topic string) {
	t := d.entry(topic)
	t.mu.Lock()
	t.expires = time.Time{}
	t.mu.Unlock()
}
