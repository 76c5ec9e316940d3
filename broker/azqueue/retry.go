package azqueue

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/micro/go-micro/v2/logger"
	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage"
)

// Retries of failed requests. The SDK's own retry policy is switched off
// (one try per request): it retries a 503 ServerBusy within 200 ms, twice,
// which multiplies the load on a service that is shedding it, and it knows
// nothing of Retry-After or of what the broker does next. The broker
// retries here instead, after a jittered pause that doubles from
// firstRetryPause up to maxRetryPause and is never shorter than the
// service's Retry-After, within the request's deadline, at most maxTries
// times in all. Only failures the service or network may recover from are
// retried: no answer, and 5xx answers (503 ServerBusy, 500
// OperationTimedOut). The poll loop and lease renewals retry on their own
// terms and are tried once here.
const (
	maxTries        = 5
	firstRetryPause = 100 * time.Millisecond
	maxRetryPause   = 2 * time.Second
)

// noRetryKey marks a context whose request is tried once.
type noRetryKey struct{}

// withoutRetries returns ctx marked so that its request is tried once.
func withoutRetries(ctx context.Context) context.Context {
	return context.WithValue(ctx, noRetryKey{}, true)
}

// retrier sends failed requests again and tells the throttle watch how
// every answer went.
type retrier struct {
	stats    *counters
	throttle *throttleWatch
}

// do runs request until it succeeds, fails for good, runs out of tries or
// would outlast ctx's deadline, and returns its last error.
func (r *retrier) do(ctx context.Context, request func() error) error {
	for try := 1; ; try++ {
		err := request()
		r.throttle.observe(err)
		if err == nil || try == maxTries || ctx.Value(noRetryKey{}) != nil || !storage.IsTransport(err) || ctx.Err() != nil {
			return err
		}
		pause := max(retryPause(try), retryAfter(err))
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < pause {
			return err
		}
		timer := time.NewTimer(pause)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return err
		}
		r.stats.retries.Add(1)
	}
}

// retryPause is the pause after the try-th failed try.
func retryPause(try int) time.Duration {
	d := firstRetryPause
	for i := 1; i < try && d < maxRetryPause; i++ {
		d *= 2
	}
	d = min(d, maxRetryPause)
	return jitterBetween(d/2, d)
}

// retryAfter returns the pause the service asked for with err, or 0.
func retryAfter(err error) time.Duration {
	var e *storage.Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// retryingService is a storage.Service whose requests go through a retrier.
type retryingService struct {
	svc storage.Service
	r   *retrier
}

// withRetries returns svc with its requests retried by r.
func withRetries(svc storage.Service, r *retrier) storage.Service {
	return retryingService{svc: svc, r: r}
}

func (s retryingService) Ping(ctx context.Context) error {
	return s.r.do(ctx, func() error { return s.svc.Ping(ctx) })
}

func (s retryingService) ListQueues(ctx context.Context, prefix string) ([]storage.QueueInfo, error) {
	var queues []storage.QueueInfo
	err := s.r.do(ctx, func() (err error) {
		queues, err = s.svc.ListQueues(ctx, prefix)
		return err
	})
	return queues, err
}

func (s retryingService) Queue(name string) storage.Queue {
	return retryingQueue{q: s.svc.Queue(name), r: s.r}
}

// retryingQueue is a storage.Queue whose requests go through a retrier.
type retryingQueue struct {
	q storage.Queue
	r *retrier
}

func (q retryingQueue) Name() string { return q.q.Name() }

func (q retryingQueue) Create(ctx context.Context, metadata map[string]string) error {
	return q.r.do(ctx, func() error { return q.q.Create(ctx, metadata) })
}

func (q retryingQueue) SetMetadata(ctx context.Context, metadata map[string]string) error {
	return q.r.do(ctx, func() error { return q.q.SetMetadata(ctx, metadata) })
}

func (q retryingQueue) ApproximateCount(ctx context.Context) (int64, error) {
	var n int64
	err := q.r.do(ctx, func() (err error) {
		n, err = q.q.ApproximateCount(ctx)
		return err
	})
	return n, err
}

func (q retryingQueue) DeleteQueue(ctx context.Context) error {
	return q.r.do(ctx, func() error { return q.q.DeleteQueue(ctx) })
}

// Enqueue is retried after a failure even though the failed try may have
// been applied (its answer lost): the message is then enqueued twice, with
// the same text and so the same Micro-Id. At least once, never lost.
func (q retryingQueue) Enqueue(ctx context.Context, text string, delay, ttl time.Duration) error {
	return q.r.do(ctx, func() error { return q.q.Enqueue(ctx, text, delay, ttl) })
}

// Dequeue is tried once: the poll loop backs off and polls again.
func (q retryingQueue) Dequeue(ctx context.Context, max int, visibility time.Duration) ([]storage.Message, error) {
	var msgs []storage.Message
	err := q.r.do(withoutRetries(ctx), func() (err error) {
		msgs, err = q.q.Dequeue(ctx, max, visibility)
		return err
	})
	return msgs, err
}

func (q retryingQueue) Update(ctx context.Context, id, popReceipt, text string, visibility time.Duration) (storage.Lease, error) {
	var lease storage.Lease
	err := q.r.do(ctx, func() (err error) {
		lease, err = q.q.Update(ctx, id, popReceipt, text, visibility)
		return err
	})
	return lease, err
}

func (q retryingQueue) Delete(ctx context.Context, id, popReceipt string) error {
	return q.r.do(ctx, func() error { return q.q.Delete(ctx, id, popReceipt) })
}

// throttleQuiet is how long without a 503 ServerBusy ends a throttling
// episode, at the next request that succeeds.
const throttleQuiet = 10 * time.Second

// throttleWatch says once per episode that the service is throttling (503
// ServerBusy: a queue or account past its scalability targets), and once
// that it stopped, instead of one error line per refused request.
type throttleWatch struct {
	stats *counters

	// throttling is set during an episode, so that the answers of a
	// service that does not throttle pass without taking mu.
	throttling atomic.Bool

	mu      sync.Mutex
	since   time.Time // first refusal of the episode; zero outside one
	last    time.Time // latest refusal
	refused int
}

// observe takes the outcome of one request.
func (w *throttleWatch) observe(err error) {
	busy := storage.IsServerBusy(err)
	if busy {
		w.stats.throttled.Add(1)
	}
	if !busy && (err != nil || !w.throttling.Load()) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	switch {
	case busy && w.since.IsZero():
		w.since, w.last, w.refused = now, now, 1
		w.throttling.Store(true)
		logger.Warnf("azqueue: the queue service is throttling (%v); every request backs off, honouring its Retry-After, until it stops", err)
	case busy:
		w.last = now
		w.refused++
	case !w.since.IsZero() && now.Sub(w.last) > throttleQuiet:
		logger.Infof("azqueue: the queue service stopped throttling: %d requests refused with 503 ServerBusy in %s", w.refused, w.last.Sub(w.since).Round(time.Second))
		w.since = time.Time{}
		w.throttling.Store(false)
	}
}
