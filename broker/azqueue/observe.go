package azqueue

import (
	"time"

	"github.com/micro/go-micro/v2/broker"
)

// Queue identifies the queue of one (topic, group): the labels of what an
// Observer is told.
type Queue struct {
	Topic string
	Group string
	// Name is the Azure queue's name.
	Name string
}

// Observer is told what a broker does, so that an exporter can turn it into
// metrics without the broker depending on a metrics library: the server of
// this repository implements it with Prometheus. Methods are called on the
// broker's own goroutines, often several at once, while the message waits:
// they must be safe for concurrent use and quick (update a counter, never
// block on I/O). Embed NoObserver to implement only some of them.
type Observer interface {
	// Published: a message was enqueued into q (one call per group queue
	// of the topic).
	Published(q Queue)
	// Delivered: a message is given to a handler, age after it was first
	// enqueued (the queue's lag), at its dequeueCount-th dequeue.
	Delivered(q Queue, age time.Duration, dequeueCount int64)
	// Handled: a handler returned after took, with err (nil on success).
	Handled(q Queue, took time.Duration, err error)
	// Acked: a handled message was deleted.
	Acked(q Queue)
	// Retried: a message was made visible again for a later delivery,
	// after a handler error or a Nack.
	Retried(q Queue)
	// Poisoned: a message moved to q's poison queue, for reason, one of
	// the PoisonReason codes.
	Poisoned(q Queue, reason PoisonReason)
	// HandedBack: a stopping subscription made a message no handler had
	// started visible again at once.
	HandedBack(q Queue)
	// LeaseRenewed and LeaseLost: a message's lease was extended, or found
	// gone (another consumer may have the message).
	LeaseRenewed(q Queue)
	LeaseLost(q Queue)
	// Polled: a dequeue request of q's subscription returned messages
	// (0: an empty poll).
	Polled(q Queue, messages int)
	// Requested: one HTTP request was sent for operation op (RequestOps);
	// status is its answer's HTTP status (0: no answer) and code the
	// service's error code ("" on success), so that throttling (503
	// ServerBusy) and refusals show.
	Requested(op string, status int, code string)
	// Depth: the approximate number of messages in q, sampled by a
	// subscription every DepthSampleInterval (one request per sample).
	Depth(q Queue, messages int64)
}

// PoisonReason says why a message went to its poison queue.
type PoisonReason string

// The reasons a message is poisoned.
const (
	// PoisonMaxDeliveries: delivered more than MaxDequeueCount times.
	PoisonMaxDeliveries PoisonReason = "max_deliveries"
	// PoisonUnreadable: its text is not an envelope of this broker nor
	// a message it can deliver raw.
	PoisonUnreadable PoisonReason = "unreadable"
	// PoisonPermanent: its handler returned a Permanent error.
	PoisonPermanent PoisonReason = "permanent"
	// PoisonUndecodable: go-micro's subscriber could not decode its body.
	PoisonUndecodable PoisonReason = "undecodable"
)

// NoObserver does nothing with what it is told: embed it in an Observer
// that needs only some of the methods.
type NoObserver struct{}

func (NoObserver) Published(Queue)                       {}
func (NoObserver) Delivered(Queue, time.Duration, int64) {}
func (NoObserver) Handled(Queue, time.Duration, error)   {}
func (NoObserver) Acked(Queue)                           {}
func (NoObserver) Retried(Queue)                         {}
func (NoObserver) Poisoned(Queue, PoisonReason)          {}
func (NoObserver) HandedBack(Queue)                      {}
func (NoObserver) LeaseRenewed(Queue)                    {}
func (NoObserver) LeaseLost(Queue)                       {}
func (NoObserver) Polled(Queue, int)                     {}
func (NoObserver) Requested(string, int, string)         {}
func (NoObserver) Depth(Queue, int64)                    {}

const observerKey optionKey = "Observer"

// WithObserver makes the broker tell o what it does (see Observer). Without
// it, only Stats counts.
func WithObserver(o Observer) broker.Option { return brokerValue(observerKey, o) }

// observerOf returns the broker's Observer, or NoObserver.
func observerOf(opts broker.Options) Observer {
	if o, ok := opts.Context.Value(observerKey).(Observer); ok && o != nil {
		return o
	}
	return NoObserver{}
}

// meter records what happens to one queue's messages: in the broker's
// Stats, and with the Observer, labelled with the queue.
type meter struct {
	stats    *counters
	observer Observer
	queue    Queue
}

func (m *meter) published()  { m.stats.published.Add(1); m.observer.Published(m.queue) }
func (m *meter) acked()      { m.stats.acked.Add(1); m.observer.Acked(m.queue) }
func (m *meter) retried()    { m.stats.retried.Add(1); m.observer.Retried(m.queue) }
func (m *meter) renewed()    { m.stats.renewals.Add(1); m.observer.LeaseRenewed(m.queue) }
func (m *meter) lostLease()  { m.stats.leasesLost.Add(1); m.observer.LeaseLost(m.queue) }
func (m *meter) failed()     { m.stats.errors.Add(1) }
func (m *meter) handedBack() { m.observer.HandedBack(m.queue) }

func (m *meter) poisoned(reason PoisonReason) {
	m.stats.poisoned.Add(1)
	m.observer.Poisoned(m.queue, reason)
}

func (m *meter) delivered(age time.Duration, dequeueCount int64) {
	m.stats.delivered.Add(1)
	m.observer.Delivered(m.queue, age, dequeueCount)
}

// polled counts a dequeue request, which err says failed (its failure is
// counted where it is handled) or returned messages.
func (m *meter) polled(messages int, err error) {
	m.stats.polls.Add(1)
	if err != nil {
		return
	}
	if messages == 0 {
		m.stats.emptyPolls.Add(1)
	}
	m.observer.Polled(m.queue, messages)
}

func (m *meter) handled(took time.Duration, err error) { m.observer.Handled(m.queue, took, err) }
