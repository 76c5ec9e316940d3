package azqueue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/micro/go-micro/v2/logger"
	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage"
)

// ErrLeaseLost is returned by Ack, Nack and Extend when the message's lease
// is gone: its visibility timeout ran out (or renewing failed) and another
// consumer may have taken it, or it was deleted. The message will be, or
// has been, delivered again.
var ErrLeaseLost = errors.New("azqueue: lease lost")

// ErrSettled is returned by Ack, Nack and Extend after the message was
// already acked, nacked or moved to the poison queue.
var ErrSettled = errors.New("azqueue: message already settled")

// requestTimeout bounds each lease operation, so a hung connection cannot
// stall a handler's acknowledgement forever.
const requestTimeout = 30 * time.Second

// lease is one dequeued message's hold on the queue. Every operation that
// presents the pop receipt goes through it, under its lock, so the newest
// receipt is always the one used.
type lease struct {
	queue storage.Queue
	id    string
	stats *counters

	mu       sync.Mutex
	receipt  string
	text     string        // current message text: Update replaces it, so renewals resend it
	period   time.Duration // visibility each renewal asks for
	lost     error         // why the lease was lost, if it was
	settled  bool
	stopRenw chan struct{} // closed to stop the renewer
	renwDone chan struct{} // closed when the renewer has exited
}

func newLease(q storage.Queue, m storage.Message, period time.Duration, stats *counters) *lease {
	return &lease{queue: q, id: m.ID, receipt: m.Lease.PopReceipt, text: m.Text, period: period, stats: stats}
}

// startRenewing keeps the message invisible while its handler runs by
// renewing the lease at half its life, until stopRenewing.
func (l *lease) startRenewing() {
	l.stopRenw = make(chan struct{})
	l.renwDone = make(chan struct{})
	go l.renewLoop()
}

// stopRenewing stops the renewer and waits for it to exit. Stopping a
// stopped renewer does nothing.
func (l *lease) stopRenewing() {
	if l.stopRenw == nil {
		return
	}
	close(l.stopRenw)
	<-l.renwDone
	l.stopRenw = nil
}

func (l *lease) renewLoop() {
	defer close(l.renwDone)
	for {
		l.mu.Lock()
		half := l.period / 2
		l.mu.Unlock()
		timer := time.NewTimer(half)
		select {
		case <-l.stopRenw:
			timer.Stop()
			return
		case <-timer.C:
		}
		if err := l.renew(); err != nil {
			if errors.Is(err, ErrSettled) {
				return
			}
			if errors.Is(err, ErrLeaseLost) {
				logger.Warnf("%v; its handler is still running and the message may be handled twice", err)
				return
			}
			// A passing failure: the next tick, at half of what is left,
			// tries again before the lease runs out.
			logger.Warnf("azqueue: renew lease of message %s in queue %q: %v", l.id, l.queue.Name(), err)
		}
	}
}

// renew extends the lease by one period.
func (l *lease) renew() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if err := l.update(l.text, l.period); err != nil {
		return err
	}
	l.stats.renewals.Add(1)
	return nil
}

// extend sets the lease to d from now and makes later renewals ask for d.
func (l *lease) extend(d time.Duration) error {
	if d < time.Second || d > storage.MaxVisibility {
		return fmt.Errorf("azqueue: extend by %s: out of range 1s..7d", d)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if err := l.update(l.text, d); err != nil {
		return err
	}
	l.period = d
	return nil
}

// release makes the message visible again after delay, optionally with a new
// text (empty keeps the current one), and settles the lease.
func (l *lease) release(delay time.Duration, text string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if text == "" {
		text = l.text
	}
	if err := l.update(text, delay); err != nil {
		return err
	}
	l.settled = true
	return nil
}

// remove deletes the message and settles the lease.
func (l *lease) remove() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := l.queue.Delete(ctx, l.id, l.receipt); err != nil {
		return l.failed("delete", err)
	}
	l.settled = true
	return nil
}

// usable reports why the lease cannot be used, if it cannot. Called with
// l.mu held.
func (l *lease) usable() error {
	if l.settled {
		return ErrSettled
	}
	return l.lost
}

// update sends an Update Message with the newest receipt and keeps the new
// one. Called with l.mu held.
func (l *lease) update(text string, visibility time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	next, err := l.queue.Update(ctx, l.id, l.receipt, text, visibility)
	if err != nil {
		return l.failed("update", err)
	}
	l.receipt, l.text = next.PopReceipt, text
	return nil
}

// failed records a lost lease, or passes other errors on. Called with l.mu
// held.
func (l *lease) failed(op string, err error) error {
	if storage.IsLeaseLost(err) {
		l.lost = fmt.Errorf("%w: message %s in queue %q (%s: %v)", ErrLeaseLost, l.id, l.queue.Name(), op, err)
		l.stats.leasesLost.Add(1)
		return l.lost
	}
	l.stats.errors.Add(1)
	return fmt.Errorf("azqueue: %w", err)
}
