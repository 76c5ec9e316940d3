package azqueue

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-pipeline-go/pipeline"
	"github.com/micro/go-micro/v2/logger"
)

// Stats counts what a broker has done since it was created.
type Stats struct {
	Published  int64 // messages enqueued (one per group queue)
	Delivered  int64 // messages passed to a handler
	Acked      int64 // messages deleted after handling
	Retried    int64 // messages made visible again after a handler error or Nack
	Poisoned   int64 // messages moved to a poison queue
	Renewals   int64 // lease renewals
	LeasesLost int64 // leases found lost on renewal or ack
	Polls      int64 // dequeue requests
	EmptyPolls int64 // dequeue requests that returned nothing
	Errors     int64 // failed requests and handler errors
	Requests   int64 // HTTP requests sent, retries included
	// RequestRetries counts the requests of Requests that the broker sent
	// again after a failed try (no answer, a 5xx or 503 answer).
	RequestRetries int64
	// Throttled counts the requests the service refused with 503
	// ServerBusy.
	Throttled int64
}

// String formats the counters on one line.
func (s Stats) String() string {
	return fmt.Sprintf("published=%d delivered=%d acked=%d retried=%d poisoned=%d renewals=%d leases_lost=%d polls=%d empty_polls=%d errors=%d requests=%d request_retries=%d throttled=%d",
		s.Published, s.Delivered, s.Acked, s.Retried, s.Poisoned, s.Renewals, s.LeasesLost, s.Polls, s.EmptyPolls, s.Errors, s.Requests, s.RequestRetries, s.Throttled)
}

// counters is the live, atomically updated form of Stats.
type counters struct {
	published, delivered, acked, retried, poisoned atomic.Int64
	renewals, leasesLost, polls, emptyPolls        atomic.Int64
	errors, requests, retries, throttled           atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Published: c.published.Load(), Delivered: c.delivered.Load(), Acked: c.acked.Load(),
		Retried: c.retried.Load(), Poisoned: c.poisoned.Load(), Renewals: c.renewals.Load(),
		LeasesLost: c.leasesLost.Load(), Polls: c.polls.Load(), EmptyPolls: c.emptyPolls.Load(),
		Errors: c.errors.Load(), Requests: c.requests.Load(), RequestRetries: c.retries.Load(),
		Throttled: c.throttled.Load(),
	}
}

// requestCounter is a pipeline policy counting the requests it sees.
func requestCounter(n *atomic.Int64) pipeline.Factory {
	return pipeline.FactoryFunc(func(next pipeline.Policy, _ *pipeline.PolicyOptions) pipeline.PolicyFunc {
		return func(ctx context.Context, r pipeline.Request) (pipeline.Response, error) {
			n.Add(1)
			return next.Do(ctx, r)
		}
	})
}

// throttledLog logs a recurring error at most once per interval, saying how
// many were suppressed in between, so an outage produces a few lines rather
// than one per poll.
type throttledLog struct {
	interval time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (t *throttledLog) errorf(format string, args ...interface{}) {
	t.mu.Lock()
	now := time.Now()
	if !t.last.IsZero() && now.Sub(t.last) < t.interval {
		t.suppressed++
		t.mu.Unlock()
		return
	}
	suppressed := t.suppressed
	t.last, t.suppressed = now, 0
	t.mu.Unlock()

	msg := fmt.Sprintf(format, args...)
	if suppressed > 0 {
		msg += fmt.Sprintf(" (%d similar errors since the last report)", suppressed)
	}
	logger.Error(msg)
}

// recovered logs, once, that the condition behind the errors has passed.
func (t *throttledLog) recovered(format string, args ...interface{}) {
	t.mu.Lock()
	wasFailing := !t.last.IsZero()
	t.last, t.suppressed = time.Time{}, 0
	t.mu.Unlock()
	if wasFailing {
		logger.Infof(format, args...)
	}
}
