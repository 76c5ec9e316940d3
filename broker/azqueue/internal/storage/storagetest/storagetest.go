// Package storagetest is an in-memory storage.Service with the queue
// service's semantics (leases, pop receipts, dequeue counts, visibility
// delays, size and batch limits) and rules that inject the failures of a
// real service and network (see Rule), for fast tests of the broker's
// logic.
package storagetest

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage"
)

// Outcome is what a Rule does to the requests it strikes, as the real
// service and network can.
type Outcome int

const (
	// Unanswered fails a request before the service applies it, as a
	// refused or reset connection would: a transport error, no status.
	Unanswered Outcome = iota + 1
	// Busy refuses a request without applying it: 503 ServerBusy, the
	// answer of a queue or account past its scalability targets.
	Busy
	// LostAnswer applies a request, then fails it with a transport error,
	// as when the connection breaks after the service acted: the caller
	// cannot know that it was applied.
	LostAnswer
	// SlowAnswer applies a request and answers it after Rule.Hold, or
	// fails it with the caller's context error if the caller gives up
	// first (the request stays applied).
	SlowAnswer
	// Hang holds a request for Rule.Hold without applying it, then fails
	// it with a transport error, or with the caller's context error if the
	// caller gives up first: a request lost on its way to the service.
	Hang
)

// Rule makes some requests slow or fail. The first rule that matches a
// request and strikes decides what happens to it.
type Rule struct {
	// Op is the operation: "ping", "list", "create", "metadata",
	// "delete queue", "enqueue", "dequeue", "update" or "delete"; empty
	// matches every operation.
	Op string
	// Queue matches requests to this queue only; empty matches every queue.
	Queue   string
	Outcome Outcome
	// Nth strikes only these requests among those the rule matches,
	// counted from 1 since SetRules; nil strikes every one.
	Nth []int
	// Hold is how long SlowAnswer holds the answer back, and Hang the
	// request.
	Hold time.Duration
	// RetryAfter is the pause Busy asks for (the Retry-After header); 0
	// asks for none.
	RetryAfter time.Duration
}

// rule is a Rule with its count of matched requests.
type rule struct {
	Rule
	matched int
}

// Service is the in-memory queue service.
type Service struct {
	mu       sync.Mutex
	queues   map[string]*queue
	requests map[string]int
	struck   map[string]int
	rules    []*rule
	maxAsked map[string]int // largest Dequeue max per queue
}

// NewService returns an empty service.
func NewService() *Service {
	return &Service{queues: make(map[string]*queue), requests: make(map[string]int), struck: make(map[string]int), maxAsked: make(map[string]int)}
}

// SetRules replaces the rules (none: every request is served) and starts
// their Nth counts afresh.
func (s *Service) SetRules(rules ...Rule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = s.rules[:0]
	for _, r := range rules {
		s.rules = append(s.rules, &rule{Rule: r})
	}
}

// Struck returns how many requests of op a rule struck (all ops for "").
func (s *Service) Struck(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return count(s.struck, op)
}

// Requests returns how many requests of op were made (all ops for "").
func (s *Service) Requests(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return count(s.requests, op)
}

// count returns counts[op], or the sum of counts for "".
func count(counts map[string]int, op string) int {
	if op != "" {
		return counts[op]
	}
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}

// MaxDequeueAsked returns the largest batch a Dequeue on the queue asked for.
func (s *Service) MaxDequeueAsked(queue string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxAsked[queue]
}

// Queues returns the names of the existing queues, sorted.
func (s *Service) Queues() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.queues))
	for n := range s.queues {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Snapshot describes a stored message.
type Snapshot struct {
	ID           string
	Text         string
	DequeueCount int64
	Visible      bool
}

// Messages returns the messages stored in a queue, visible or not.
func (s *Service) Messages(queue string) []Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, ok := s.queues[queue]
	if !ok {
		return nil
	}
	now := time.Now()
	out := make([]Snapshot, 0, len(q.messages))
	for _, m := range q.messages {
		out = append(out, Snapshot{ID: m.id, Text: m.text, DequeueCount: m.dequeueCount, Visible: !now.Before(m.visibleAt)})
	}
	return out
}

// Put adds a message straight into a queue, creating the queue, as another
// tool writing to it would.
func (s *Service) Put(queue, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.ensure(queue, nil)
	q.add(text, 0, 0)
}

// do serves one request of op to queue: it counts it, lets a rule strike
// it, and runs apply under the lock unless the rule refuses the request
// first. A lost or slow answer is produced after the lock is released.
func (s *Service) do(ctx context.Context, op, queue string, apply func() error) error {
	s.mu.Lock()
	s.requests[op]++
	if err := ctx.Err(); err != nil {
		s.mu.Unlock()
		return &storage.Error{Op: op, Queue: queue, Err: err}
	}
	r := s.strike(op, queue)
	if r != nil {
		switch r.Outcome {
		case Unanswered:
			s.mu.Unlock()
			return TransportError(op, queue)
		case Hang:
			s.mu.Unlock()
			if !wait(ctx, r.Hold) {
				return &storage.Error{Op: op, Queue: queue, Err: ctx.Err()}
			}
			return TransportError(op, queue)
		case Busy:
			s.mu.Unlock()
			return &storage.Error{Op: op, Queue: queue, StatusCode: http.StatusServiceUnavailable, Code: storage.CodeServerBusy, RetryAfter: r.RetryAfter}
		}
	}
	err := apply()
	s.mu.Unlock()
	if r == nil {
		return err
	}
	switch r.Outcome {
	case LostAnswer:
		return TransportError(op, queue)
	case SlowAnswer:
		if !wait(ctx, r.Hold) {
			return &storage.Error{Op: op, Queue: queue, Err: ctx.Err()}
		}
	}
	return err
}

// wait waits for d, or until ctx is done, reporting whether d passed.
func wait(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// strike returns the first rule that matches a request of op to queue and
// strikes it, counting the request for every rule it matches. Called with
// s.mu held.
func (s *Service) strike(op, queue string) *rule {
	var struck *rule
	for _, r := range s.rules {
		if (r.Op != "" && r.Op != op) || (r.Queue != "" && r.Queue != queue) {
			continue
		}
		r.matched++
		if struck == nil && (r.Nth == nil || slices.Contains(r.Nth, r.matched)) {
			struck = r
		}
	}
	if struck != nil {
		s.struck[op]++
	}
	return struck
}

func (s *Service) ensure(name string, md map[string]string) *queue {
	q, ok := s.queues[name]
	if !ok {
		q = &queue{metadata: md}
		s.queues[name] = q
	}
	return q
}

// Ping implements storage.Service.
func (s *Service) Ping(ctx context.Context) error {
	return s.do(ctx, "ping", "", func() error { return nil })
}

// ListQueues implements storage.Service.
func (s *Service) ListQueues(ctx context.Context, prefix string) ([]storage.QueueInfo, error) {
	var out []storage.QueueInfo
	err := s.do(ctx, "list", "", func() error {
		for name, q := range s.queues {
			if strings.HasPrefix(name, prefix) {
				md := make(map[string]string, len(q.metadata))
				for k, v := range q.metadata {
					md[k] = v
				}
				out = append(out, storage.QueueInfo{Name: name, Metadata: md})
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Queue implements storage.Service.
func (s *Service) Queue(name string) storage.Queue { return queueHandle{s: s, name: name} }

type queue struct {
	metadata map[string]string
	messages []*message
}

type message struct {
	id           string
	text         string
	receipt      string
	dequeueCount int64
	inserted     time.Time
	visibleAt    time.Time
	expiresAt    time.Time // zero: never
}

func (q *queue) add(text string, delay, ttl time.Duration) {
	now := time.Now()
	m := &message{id: uuid.New().String(), text: text, inserted: now, visibleAt: now.Add(delay)}
	switch {
	case ttl == 0:
		m.expiresAt = now.Add(7 * 24 * time.Hour)
	case ttl > 0:
		m.expiresAt = now.Add(ttl)
	}
	q.messages = append(q.messages, m)
}

func (q *queue) find(id, receipt string) (*message, int, error) {
	for i, m := range q.messages {
		if m.id != id {
			continue
		}
		if m.receipt != receipt {
			return nil, 0, &storage.Error{StatusCode: http.StatusBadRequest, Code: storage.CodePopReceiptMismatch}
		}
		return m, i, nil
	}
	return nil, 0, &storage.Error{StatusCode: http.StatusNotFound, Code: storage.CodeMessageNotFound}
}

type queueHandle struct {
	s    *Service
	name string
}

func (h queueHandle) Name() string { return h.name }

// lookup returns the queue, or a QueueNotFound error. Called with s.mu held.
func (h queueHandle) lookup(op string) (*queue, error) {
	q, ok := h.s.queues[h.name]
	if !ok {
		return nil, &storage.Error{Op: op, Queue: h.name, StatusCode: http.StatusNotFound, Code: storage.CodeQueueNotFound}
	}
	return q, nil
}

func (h queueHandle) Create(ctx context.Context, metadata map[string]string) error {
	return h.s.do(ctx, "create", h.name, func() error {
		h.s.ensure(h.name, metadata)
		return nil
	})
}

func (h queueHandle) SetMetadata(ctx context.Context, metadata map[string]string) error {
	return h.s.do(ctx, "metadata", h.name, func() error {
		q, err := h.lookup("set metadata of")
		if err != nil {
			return err
		}
		q.metadata = maps.Clone(metadata)
		return nil
	})
}

func (h queueHandle) ApproximateCount(ctx context.Context) (int64, error) {
	var n int64
	err := h.s.do(ctx, "properties", h.name, func() error {
		q, err := h.lookup("get properties of")
		if err != nil {
			return err
		}
		n = int64(len(q.messages))
		return nil
	})
	return n, err
}

func (h queueHandle) DeleteQueue(ctx context.Context) error {
	return h.s.do(ctx, "delete queue", h.name, func() error {
		if _, err := h.lookup("delete"); err != nil {
			return err
		}
		delete(h.s.queues, h.name)
		return nil
	})
}

func (h queueHandle) Enqueue(ctx context.Context, text string, delay, ttl time.Duration) error {
	return h.s.do(ctx, "enqueue", h.name, func() error {
		if len(text) > storage.MaxMessageSize {
			return &storage.Error{Op: "enqueue", Queue: h.name, StatusCode: http.StatusRequestEntityTooLarge, Code: "RequestBodyTooLarge"}
		}
		q, err := h.lookup("enqueue")
		if err != nil {
			return err
		}
		q.add(text, delay, ttl)
		return nil
	})
}

func (h queueHandle) Dequeue(ctx context.Context, max int, visibility time.Duration) ([]storage.Message, error) {
	var out []storage.Message
	err := h.s.do(ctx, "dequeue", h.name, func() error {
		if max < 1 || max > storage.MaxBatch {
			return &storage.Error{Op: "dequeue", Queue: h.name, StatusCode: http.StatusBadRequest, Code: "OutOfRangeQueryParameterValue"}
		}
		if max > h.s.maxAsked[h.name] {
			h.s.maxAsked[h.name] = max
		}
		q, err := h.lookup("dequeue")
		if err != nil {
			return err
		}
		now := time.Now()
		kept := q.messages[:0]
		for _, m := range q.messages {
			if !m.expiresAt.IsZero() && now.After(m.expiresAt) {
				continue
			}
			kept = append(kept, m)
			if len(out) == max || now.Before(m.visibleAt) {
				continue
			}
			m.dequeueCount++
			m.receipt = uuid.New().String()
			m.visibleAt = now.Add(visibility)
			out = append(out, storage.Message{
				ID: m.id, Text: m.text, DequeueCount: m.dequeueCount, InsertionTime: m.inserted,
				Lease: storage.Lease{PopReceipt: m.receipt, NextVisibleTime: m.visibleAt},
			})
		}
		q.messages = kept
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (h queueHandle) Update(ctx context.Context, id, popReceipt, text string, visibility time.Duration) (storage.Lease, error) {
	var lease storage.Lease
	err := h.s.do(ctx, "update", h.name, func() error {
		q, err := h.lookup("update")
		if err != nil {
			return err
		}
		m, _, err := q.find(id, popReceipt)
		if err != nil {
			return withOp(err, "update", h.name)
		}
		m.text = text
		m.receipt = uuid.New().String()
		m.visibleAt = time.Now().Add(visibility)
		lease = storage.Lease{PopReceipt: m.receipt, NextVisibleTime: m.visibleAt}
		return nil
	})
	if err != nil {
		return storage.Lease{}, err
	}
	return lease, nil
}

func (h queueHandle) Delete(ctx context.Context, id, popReceipt string) error {
	return h.s.do(ctx, "delete", h.name, func() error {
		q, err := h.lookup("delete")
		if err != nil {
			return err
		}
		_, i, err := q.find(id, popReceipt)
		if err != nil {
			return withOp(err, "delete", h.name)
		}
		q.messages = append(q.messages[:i], q.messages[i+1:]...)
		return nil
	})
}

func withOp(err error, op, queue string) error {
	if e, ok := err.(*storage.Error); ok {
		e.Op, e.Queue = op, queue
	}
	return err
}

// TransportError is the error of a request that got no answer.
func TransportError(op, queue string) error {
	return &storage.Error{Op: op, Queue: queue, Err: fmt.Errorf("connection refused (injected)")}
}
