package azqueue

import (
	"fmt"
	"time"

	"github.com/micro/go-micro/v2/broker"
	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage"
)

// Event is the broker.Event the azqueue broker passes to handlers. Handlers
// given to Broker.Subscribe directly can type-assert to it:
//
//	if ev, ok := e.(azqueue.Event); ok && ev.DequeueCount() > 1 { ... }
type Event interface {
	broker.Event
	// Nack gives the message up for now: it becomes visible again after
	// delay (0..7d) and is not deleted.
	Nack(delay time.Duration) error
	// Extend sets the message's lease to d (1s..7d) from now; renewals while
	// the handler runs then extend by d too.
	Extend(d time.Duration) error
	// MessageID is the id the queue service gave the message.
	MessageID() string
	// DequeueCount is how many times the message has been delivered,
	// this delivery included.
	DequeueCount() int64
}

type event struct {
	topic        string
	message      *broker.Message
	lease        *lease
	dequeueCount int64
	meter        *meter
}

func (e *event) Topic() string                { return e.topic }
func (e *event) Message() *broker.Message     { return e.message }
func (e *event) Error() error                 { return nil }
func (e *event) MessageID() string            { return e.lease.id }
func (e *event) DequeueCount() int64          { return e.dequeueCount }
func (e *event) Extend(d time.Duration) error { return e.lease.extend(d) }

// Ack deletes the message: it has been handled. The lease's errors
// (ErrSettled, ErrLeaseLost, a failed delete) are returned as they are:
// each already names the package, the operation and the message.
func (e *event) Ack() error {
	if err := e.lease.remove(); err != nil {
		return err
	}
	e.meter.acked()
	return nil
}

func (e *event) Nack(delay time.Duration) error {
	if delay < 0 || delay > storage.MaxVisibility {
		return fmt.Errorf("azqueue: nack with delay %s: out of range 0s..7d", delay)
	}
	if err := e.lease.release(delay, ""); err != nil {
		return err // named as Ack's are
	}
	e.meter.retried()
	return nil
}
