// Package storage is the slice of the Azure Storage Queues service that the
// azqueue broker uses, behind two small interfaces so that the broker's logic
// can be unit-tested on a fake and the retired SDK stays in one file.
//
// Errors returned by implementations are *Error values: they name the
// operation and the queue, carry the HTTP status and the service's error code,
// and never contain a URL, a key or a SAS token.
package storage

import (
	"context"
	"time"
)

// MaxMessageSize is the largest message text, in bytes, that the service
// accepts (64 KiB).
const MaxMessageSize = 64 * 1024

// MaxBatch is the largest number of messages one Dequeue returns.
const MaxBatch = 32

// MaxVisibility is the longest visibility timeout the service accepts.
const MaxVisibility = 7 * 24 * time.Hour

// Service is a storage account's queue service.
type Service interface {
	// Ping makes one cheap authenticated request, proving that the endpoint
	// is reachable and the credentials are accepted.
	Ping(ctx context.Context) error
	// ListQueues returns every queue whose name starts with prefix, with its
	// metadata.
	ListQueues(ctx context.Context, prefix string) ([]QueueInfo, error)
	// Queue returns a handle on the named queue. It makes no request.
	Queue(name string) Queue
}

// QueueInfo describes one queue returned by ListQueues.
type QueueInfo struct {
	Name     string
	Metadata map[string]string
}

// Queue is one queue of a Service.
type Queue interface {
	// Name returns the queue's name.
	Name() string
	// Create creates the queue with the given metadata. A queue that already
	// exists is not an error.
	Create(ctx context.Context, metadata map[string]string) error
	// Enqueue adds a message that becomes visible after delay and expires
	// after ttl (0: the service default of 7 days; negative: never).
	Enqueue(ctx context.Context, text string, delay, ttl time.Duration) error
	// Dequeue leases up to max messages (1..32) for visibility.
	Dequeue(ctx context.Context, max int, visibility time.Duration) ([]Message, error)
	// Update replaces a leased message's text and makes it visible again
	// after visibility, returning its new lease. The pop receipt must be the
	// newest one.
	Update(ctx context.Context, id, popReceipt, text string, visibility time.Duration) (Lease, error)
	// Delete removes a leased message. The pop receipt must be the newest one.
	Delete(ctx context.Context, id, popReceipt string) error
	// SetMetadata replaces the queue's metadata.
	SetMetadata(ctx context.Context, metadata map[string]string) error
	// DeleteQueue removes the queue and every message in it.
	DeleteQueue(ctx context.Context) error
	// ApproximateCount returns the service's estimate of the messages in
	// the queue, invisible ones included (Get Queue Metadata).
	ApproximateCount(ctx context.Context) (int64, error)
}

// Message is a message leased by Dequeue.
type Message struct {
	ID            string
	Text          string
	DequeueCount  int64
	InsertionTime time.Time
	Lease         Lease
}

// Lease is the proof of a message's current lease: the pop receipt the next
// Update or Delete must present, and when the message becomes visible again.
type Lease struct {
	PopReceipt      string
	NextVisibleTime time.Time
}
