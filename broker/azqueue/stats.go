package azqueue

import (
	"fmt"
	"sync/atomic"
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
