package azqueue

import (
	"context"
	"slices"
	"time"

	"github.com/micro/go-micro/v2/logger"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage"
)

// drainLease is how long a drainer holds the messages it is moving.
const drainLease = 30 * time.Second

// drainer moves the messages of an unclaimed queue of its subscription's
// topic (created by a publisher before any group subscribed) into the
// queues the topic's groups have claimed, copy first, then delete, and
// deletes the unclaimed queue once it is empty and no publisher can still
// be sending to it: grace after the claim, the time a publisher trusts its
// queue list (QueueCacheTTL) and takes for one publish (PublishTimeout).
// Every subscription of the topic that finds an unclaimed queue runs one;
// the queue's leases keep them from moving a message twice, except after a
// failure between copy and delete, which duplicates rather than loses it.
type drainer struct {
	s         *subscription
	svc       storage.Service
	directory *queueDirectory
	queue     storage.Queue
	grace     time.Duration
	ttl       time.Duration // of the copies: the broker's MessageTTL
}

// run drains until the queue is deleted, claimed by a group of its own, or
// the subscription stops.
func (d *drainer) run() {
	defer d.s.running.done()
	claimedAt := time.Now()
	moved := 0
	for !d.s.stopping() {
		ctx, cancel := context.WithTimeout(d.s.pollCtx, requestTimeout)
		done, n, wait := d.step(ctx, claimedAt)
		cancel()
		moved += n
		if done {
			if moved > 0 {
				logger.Infof("azqueue: topic %q: moved %d messages published before any group subscribed from %q to the groups' queues", d.s.topic, moved, d.queue.Name())
			}
			return
		}
		if wait > 0 && !d.pause(wait) {
			return
		}
	}
}

// step moves one batch, or deletes the queue once it has stayed empty past
// the grace. It reports whether draining is over, how many messages it
// moved and how long to wait before the next step.
func (d *drainer) step(ctx context.Context, claimedAt time.Time) (done bool, moved int, wait time.Duration) {
	msgs, err := d.queue.Dequeue(ctx, storage.MaxBatch, drainLease)
	switch {
	case storage.IsQueueNotFound(err):
		return true, 0, 0
	case err != nil:
		d.s.pollErrors.errorf("azqueue: topic %q: drain unclaimed queue %q: %v", d.s.topic, d.queue.Name(), err)
		return false, 0, time.Second
	case len(msgs) == 0:
		if left := d.grace - time.Since(claimedAt); left > 0 {
			return false, 0, min(left, time.Second)
		}
		if err := d.queue.DeleteQueue(ctx); err != nil && !storage.IsQueueNotFound(err) {
			d.s.pollErrors.errorf("azqueue: topic %q: delete emptied unclaimed queue %q: %v", d.s.topic, d.queue.Name(), err)
			return false, 0, time.Second
		}
		return true, 0, 0
	}
	targets, err := d.directory.queuesFor(ctx, d.s.topic)
	if err != nil {
		d.s.pollErrors.errorf("azqueue: topic %q: drain unclaimed queue %q: %v", d.s.topic, d.queue.Name(), err)
		return false, 0, time.Second
	}
	if slices.ContainsFunc(targets, func(q groupQueue) bool { return q.name == d.queue.Name() }) {
		// Its own group has claimed it since: it is no longer unclaimed.
		// The messages taken come back when their lease ends.
		return true, 0, 0
	}
	for _, m := range msgs {
		if d.move(ctx, m, targets) {
			moved++
		}
	}
	return false, moved, 0
}

// move copies m into every target, then deletes it; a message whose copy
// failed stays, and comes back when its lease ends.
func (d *drainer) move(ctx context.Context, m storage.Message, targets []groupQueue) bool {
	for _, t := range targets {
		if err := d.svc.Queue(t.name).Enqueue(ctx, m.Text, 0, d.ttl); err != nil {
			d.s.pollErrors.errorf("azqueue: topic %q: move message %s of unclaimed queue %q to %q: %v", d.s.topic, m.ID, d.queue.Name(), t.name, err)
			return false
		}
	}
	if err := d.queue.Delete(ctx, m.ID, m.Lease.PopReceipt); err != nil && !storage.IsMessageNotFound(err) {
		d.s.pollErrors.errorf("azqueue: topic %q: message %s was copied out of unclaimed queue %q but not deleted from it, it will be copied again: %v", d.s.topic, m.ID, d.queue.Name(), err)
		return false
	}
	return true
}

// pause waits for wait or until the subscription stops; it reports whether
// draining goes on.
func (d *drainer) pause(wait time.Duration) bool {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-d.s.stop:
		return false
	}
}
