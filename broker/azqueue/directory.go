package azqueue

import (
	"context"
	"fmt"
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

// queuesFor returns the names of the topic's group queues. A topic without
// any gets its default group's queue, created now, so that messages
// published before the first subscriber starts are kept.
func (d *queueDirectory) queuesFor(ctx context.Context, topic string) ([]groupQueue, error) {
	t := d.entry(topic)
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.queues) > 0 && time.Now().Before(t.expires) {
		return t.queues, nil
	}
	infos, err := d.svc.ListQueues(ctx, topicPrefix(topic))
	if err != nil {
		return nil, err
	}
	var queues []groupQueue
	for _, q := range infos {
		if recorded, ok := metadataValue(q.Metadata, metaTopic); ok && recorded == topic {
			group, _ := metadataValue(q.Metadata, metaGroup)
			queues = append(queues, groupQueue{name: q.Name, group: group})
		}
	}
	if len(queues) == 0 {
		name, err := d.ensureQueue(ctx, topic, DefaultGroup)
		if err != nil {
			return nil, err
		}
		queues = []groupQueue{{name: name, group: DefaultGroup}}
	}
	t.queues, t.expires = queues, time.Now().Add(d.ttl)
	return queues, nil
}

// ensureQueue creates the (topic, group) queue if it does not exist.
func (d *queueDirectory) ensureQueue(ctx context.Context, topic, group string) (string, error) {
	name, err := queueNameFor(topic, group)
	if err != nil {
		return "", err
	}
	if err := d.svc.Queue(name).Create(ctx, queueMetadata(topic, group)); err != nil {
		return "", fmt.Errorf("create queue for topic %q group %q: %w", topic, group, err)
	}
	return name, nil
}

// invalidate makes the next queuesFor list the topic's queues again.
func (d *queueDirectory) invalidate(topic string) {
	t := d.entry(topic)
	t.mu.Lock()
	t.expires = time.Time{}
	t.mu.Unlock()
}
