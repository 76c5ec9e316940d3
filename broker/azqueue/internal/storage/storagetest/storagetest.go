// Package storagetest is an in-memory storage.Service with the queue
// service's semantics (leases, pop receipts, dequeue counts, visibility
// delays, size and batch limits) and hooks to inject failures, for fast unit
// tests of the broker's logic.
package storagetest

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage"
)

// Fault decides whether a request fails: it gets the operation ("ping",
// "list", "create", "enqueue", "dequeue", "update", "delete") and the queue
// name, and returns the error to fail with, or nil.
type Fault func(op, queue string) error

// Service is the in-memory queue service.
type Service struct {
	mu       sync.Mutex
	queues   map[string]*queue
	requests map[string]int
	fault    Fault
	maxAsked map[string]int // largest Dequeue max per queue
}

// NewService returns an empty service.
func NewService() *Service {
	return &Service{queues: make(map[string]*queue), requests: make(map[string]int), maxAsked: make(map[string]int)}
}

// SetFault installs f (nil removes it).
func (s *Service) SetFault(f Fault) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// Requests returns how many requests of op were made (all ops for "").
func (s *Service) Requests(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if op != "" {
		return s.requests[op]
	}
	n := 0
	for _, c := range s.requests {
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

// begin counts a request and applies the fault hook. Called with s.mu held.
func (s *Service) begin(ctx context.Context, op, queue string) error {
	s.requests[op]++
	if err := ctx.Err(); err != nil {
		return &storage.Error{Op: op, Queue: queue, Err: err}
	}
	if s.fault != nil {
		return s.fault(op, queue)
	}
	return nil
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
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.begin(ctx, "ping", "")
}

// ListQueues implements storage.Service.
func (s *Service) ListQueues(ctx context.Context, prefix string) ([]storage.QueueInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin(ctx, "list", ""); err != nil {
		return nil, err
	}
	var out []storage.QueueInfo
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
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if err := h.s.begin(ctx, "create", h.name); err != nil {
		return err
	}
	h.s.ensure(h.name, metadata)
	return nil
}

func (h queueHandle) Enqueue(ctx context.Context, text string, delay, ttl time.Duration) error {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if err := h.s.begin(ctx, "enqueue", h.name); err != nil {
		return err
	}
	if len(text) > storage.MaxMessageSize {
		return &storage.Error{Op: "enqueue", Queue: h.name, StatusCode: http.StatusRequestEntityTooLarge, Code: "RequestBodyTooLarge"}
	}
	q, err := h.lookup("enqueue")
	if err != nil {
		return err
	}
	q.add(text, delay, ttl)
	return nil
}

func (h queueHandle) Dequeue(ctx context.Context, max int, visibility time.Duration) ([]storage.Message, error) {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if err := h.s.begin(ctx, "dequeue", h.name); err != nil {
		return nil, err
	}
	if max < 1 || max > storage.MaxBatch {
		return nil, &storage.Error{Op: "dequeue", Queue: h.name, StatusCode: http.StatusBadRequest, Code: "OutOfRangeQueryParameterValue"}
	}
	if max > h.s.maxAsked[h.name] {
		h.s.maxAsked[h.name] = max
	}
	q, err := h.lookup("dequeue")
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []storage.Message
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
	return out, nil
}

func (h queueHandle) Update(ctx context.Context, id, popReceipt, text string, visibility time.Duration) (storage.Lease, error) {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if err := h.s.begin(ctx, "update", h.name); err != nil {
		return storage.Lease{}, err
	}
	q, err := h.lookup("update")
	if err != nil {
		return storage.Lease{}, err
	}
	m, _, err := q.find(id, popReceipt)
	if err != nil {
		return storage.Lease{}, withOp(err, "update", h.name)
	}
	m.text = text
	m.receipt = uuid.New().String()
	m.visibleAt = time.Now().Add(visibility)
	return storage.Lease{PopReceipt: m.receipt, NextVisibleTime: m.visibleAt}, nil
}

func (h queueHandle) Delete(ctx context.Context, id, popReceipt string) error {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if err := h.s.begin(ctx, "delete", h.name); err != nil {
		return err
	}
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
}

func withOp(err error, op, queue string) error {
	if e, ok := err.(*storage.Error); ok {
		e.Op, e.Queue = op, queue
	}
	return err
}

// TransportError is a ready Fault result: no answer from the service.
func TransportError(op, queue string) error {
	return &storage.Error{Op: op, Queue: queue, Err: fmt.Errorf("connection refused (injected)")}
}
