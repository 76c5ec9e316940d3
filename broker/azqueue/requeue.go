package azqueue

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage"
)

// RequeueReport says what RequeuePoisoned did.
type RequeueReport struct {
	PoisonQueue string // the queue the records were taken from
	Queue       string // the queue the messages went back to
	Moved       int    // messages back in Queue, their records deleted
	// Skipped lists the records left in the poison queue, each as
	// "<message id>: <why>".
	Skipped []string
}

// requeueLease is how long RequeuePoisoned keeps a record it is moving, or
// has skipped, out of sight of another run.
const requeueLease = 5 * time.Minute

// RequeuePoisoned moves up to max records (0: all of them) from the poison
// queue of topic's group (DefaultGroup when group is empty) back to the
// group's queue, once the cause of their poisoning is fixed. Each message's
// original text, as it was published, is enqueued again as a new message:
// its deliveries count from 1 again and it lives for the broker's
// MessageTTL. Only then is its record deleted, so a failure in between
// duplicates a message rather than losing it. A record the broker cannot
// read, or one that belongs to another queue, stays in the poison queue and
// is listed in Skipped. A topic without a poison queue moves nothing. The
// broker must be connected.
func (b *Broker) RequeuePoisoned(ctx context.Context, topic, group string, max int) (RequeueReport, error) {
	svc, _, cfg, err := b.connected()
	if err != nil {
		return RequeueReport{}, err
	}
	if group == "" {
		group = DefaultGroup
	}
	if max < 0 {
		return RequeueReport{}, fmt.Errorf("azqueue: requeue: max %d is negative", max)
	}
	name, err := queueNameFor(topic, group)
	if err != nil {
		return RequeueReport{}, err
	}
	r := requeuer{
		poison: svc.Queue(poisonQueueNameFor(name)), target: svc.Queue(name), ttl: cfg.publish.ttl,
		seen: make(map[string]bool),
	}
	r.report = RequeueReport{PoisonQueue: r.poison.Name(), Queue: name}
	err = r.run(ctx, max)
	return r.report, err
}

// requeuer is one RequeuePoisoned run.
type requeuer struct {
	poison, target storage.Queue
	ttl            time.Duration
	report         RequeueReport
	seen           map[string]bool // records taken, so that one coming back ends the run
}

func (r *requeuer) run(ctx context.Context, max int) error {
	for max == 0 || r.taken() < max {
		n := storage.MaxBatch
		if max > 0 {
			n = min(n, max-r.taken())
		}
		msgs, err := r.poison.Dequeue(ctx, n, requeueLease)
		if storage.IsQueueNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("azqueue: requeue from %q: %w", r.poison.Name(), err)
		}
		fresh := 0
		for _, m := range msgs {
			if r.seen[m.ID] {
				continue
			}
			r.seen[m.ID] = true
			fresh++
			if err := r.move(ctx, m); err != nil {
				return err
			}
		}
		if fresh == 0 {
			return nil
		}
	}
	return nil
}

func (r *requeuer) taken() int { return len(r.seen) }

// move puts the original of poison record m back into the target queue,
// then deletes m, or skips m.
func (r *requeuer) move(ctx context.Context, m storage.Message) error {
	original, why := r.originalOf(m.Text)
	if why != "" {
		r.report.Skipped = append(r.report.Skipped, m.ID+": "+why)
		return nil
	}
	if err := r.target.Enqueue(ctx, original, 0, r.ttl); err != nil {
		return fmt.Errorf("azqueue: requeue record %s of %q: %w", m.ID, r.poison.Name(), err)
	}
	if err := r.poison.Delete(ctx, m.ID, m.Lease.PopReceipt); err != nil && !storage.IsMessageNotFound(err) {
		return fmt.Errorf("azqueue: requeue record %s: its message is back in %q, but the record could not be deleted from %q and will be requeued again by the next run: %w",
			m.ID, r.target.Name(), r.poison.Name(), err)
	}
	r.report.Moved++
	return nil
}

// originalOf returns the text to enqueue for a poison queue's text: a
// PoisonRecord's original, or the text itself when the broker wrote the
// original alone (too large for a record, see PoisonRecord); or why not.
func (r *requeuer) originalOf(text string) (original, why string) {
	if !strings.HasPrefix(text, `{"azqueuePoison":`) {
		return text, ""
	}
	var rec PoisonRecord
	if err := json.Unmarshal([]byte(text), &rec); err != nil || rec.Version != 1 {
		return "", fmt.Sprintf("not a poison record this broker can read (version %d, %v)", rec.Version, err)
	}
	if rec.Queue != r.target.Name() {
		return "", fmt.Sprintf("the record is of queue %q, not %q", rec.Queue, r.target.Name())
	}
	return rec.Original, ""
}
