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

// Renewal timing. A renewal is due at half of the time the lease has left;
// one that fails is tried again after a pause of a quarter of what is left,
// at most maxRenewalPause and at least minRenewalPause (jittered between
// half of that and all of it), so that several failures in a row still fit
// in the lease's life. Each attempt is bounded by the time the lease has
// left, less a reserve for one more try (a quarter of what is left, at
// least renewalReserve): a request lost on its way is given up while
// there is still time to send it again. Once less than that is left, an
// attempt gets lateRenewalTimeout.
const (
	minRenewalPause    = 50 * time.Millisecond
	maxRenewalPause    = 2 * time.Second
	renewalReserve     = 500 * time.Millisecond
	lateRenewalTimeout = time.Second
)

// lease is one dequeued message's hold on the queue. Every operation that
// presents the pop receipt goes through it, under its lock, so the newest
// receipt is always the one used.
type lease struct {
	queue       storage.Queue
	id          string
	meter       *meter
	renewErrors *throttledLog // failed renewals of the subscription's messages

	mu      sync.Mutex
	receipt string
	text    string        // current message text: Update replaces it, so renewals resend it
	period  time.Duration // visibility each renewal asks for
	// until is when the lease surely still holds: the send time of the
	// request that set it plus the visibility it asked for. The service's
	// next-visible time is not used for this: it is on the service's
	// clock, and has one-second resolution.
	until   time.Time
	lost    error // why the lease was lost, if it was; logged once, when found
	settled bool

	// The renewer is a timer whose callback renews, not a goroutine: a
	// goroutine per message, parked for a lease's half-life that most
	// messages never reach, cost a consumer more CPU per message than
	// decoding it. renewMu is held while a renewal runs, so stopRenewing
	// waits for one in progress.
	renewMu    sync.Mutex
	renewTimer *time.Timer
	renewing   bool
}

// newLease returns the lease of m, dequeued for period by a request sent at
// sent. renewErrors reports failed renewals.
func newLease(q storage.Queue, m storage.Message, period time.Duration, sent time.Time, meter *meter, renewErrors *throttledLog) *lease {
	return &lease{queue: q, id: m.ID, receipt: m.Lease.PopReceipt, text: m.Text, period: period, until: sent.Add(period), meter: meter, renewErrors: renewErrors}
}

// startRenewing keeps the message invisible while it waits for a handler
// and while the handler runs, until stopRenewing. It is called at most
// once per lease.
func (l *lease) startRenewing() {
	l.renewMu.Lock()
	defer l.renewMu.Unlock()
	l.renewing = true
	l.renewTimer = time.AfterFunc(time.Until(l.renewalDue()), l.renewWhenDue)
}

// stopRenewing stops the renewer, waiting for a renewal in progress to end.
// Stopping a stopped renewer does nothing.
func (l *lease) stopRenewing() {
	l.renewMu.Lock()
	defer l.renewMu.Unlock()
	if l.renewing {
		l.renewing = false
		l.renewTimer.Stop()
	}
}

// renewWhenDue is the renewal timer's callback: renew, then set the timer
// for the next renewal (see nextRenewal) unless the renewer was stopped
// meanwhile or the lease is settled or lost.
func (l *lease) renewWhenDue() {
	l.renewMu.Lock()
	defer l.renewMu.Unlock()
	if !l.renewing {
		return
	}
	next, again := l.nextRenewal(l.renew())
	if !again {
		l.renewing = false
		return
	}
	l.renewTimer.Reset(time.Until(next))
}

// nextRenewal returns when to renew after a renewal that returned err, or
// false when renewing is over. A renewal that worked is followed by the
// next at half of what is left; a failed one is tried again soon
// (renewalPause) rather than half a life later. A failure is not a loss:
// only the service can say that the lease is gone (another consumer has
// the message, or it was deleted), so renewing goes on, even past the
// lease's end, until the service either renews or refuses.
func (l *lease) nextRenewal(err error) (time.Time, bool) {
	switch {
	case err == nil:
		l.renewErrors.recovered("azqueue: renewing leases in queue %q works again", l.queue.Name())
		return l.renewalDue(), true
	case errors.Is(err, ErrSettled), errors.Is(err, ErrLeaseLost):
		return time.Time{}, false
	}
	left := l.timeLeft()
	if !storage.IsServerBusy(err) { // the throttle watch reports those
		l.renewErrors.errorf("azqueue: renew lease of message %s in queue %q (%s left): %v; trying again", l.id, l.queue.Name(), left.Round(time.Millisecond), err)
	}
	// The service's Retry-After is honoured as far as the lease allows:
	// waiting longer than half of what is left would give the message away.
	return time.Now().Add(max(renewalPause(left), min(retryAfter(err), left/2))), true
}

// renewalDue returns when the next renewal is due: at half of what is left.
func (l *lease) renewalDue() time.Time {
	left := l.timeLeft()
	return time.Now().Add(left / 2)
}

// timeLeft returns how long the lease surely lasts from now (negative once
// it may have ended).
func (l *lease) timeLeft() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Until(l.until)
}

// renewalBound bounds a renewal attempt made with left of the lease's
// time (see Renewal timing).
func renewalBound(left time.Duration) time.Duration {
	bound := left - max(left/4, renewalReserve)
	if bound < minRenewalPause {
		return lateRenewalTimeout
	}
	return bound
}

// renewalPause is the pause before trying a failed renewal again, with
// left of the lease's time.
func renewalPause(left time.Duration) time.Duration {
	d := min(max(left/4, minRenewalPause), maxRenewalPause)
	return jitterBetween(d/2, d)
}

// renew extends the lease by one period, bounded by renewalBound.
func (l *lease) renew() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.settledOrLostLocked(); err != nil {
		return err
	}
	bound := renewalBound(time.Until(l.until))
	ctx, cancel := context.WithTimeout(withoutRetries(context.Background()), bound)
	defer cancel()
	if err := l.update(ctx, l.text, l.period); err != nil {
		return err
	}
	l.meter.renewed()
	return nil
}

// held reports whether the lease is still held, so that its message may be
// given to a handler. A lease whose time is up (its renewals failed while
// the message waited) is renewed first: the service then says whether
// another consumer may have the message. One that cannot be renewed is
// marked lost (counted and logged once): its message is not handled here.
func (l *lease) held() bool {
	if l.timeLeft() > 0 {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.lost == nil
	}
	err := l.renew()
	if err == nil {
		return true
	}
	if !errors.Is(err, ErrLeaseLost) {
		l.mu.Lock()
		l.markLost(fmt.Errorf("its lease ran out while it waited for a handler and could not be renewed: %w", err))
		l.mu.Unlock()
	}
	return false
}

// extend sets the lease to d from now and makes later renewals ask for d.
func (l *lease) extend(d time.Duration) error {
	if d < time.Second || d > storage.MaxVisibility {
		return fmt.Errorf("azqueue: extend by %s: out of range 1s..7d", d)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.settledOrLostLocked(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := l.update(ctx, l.text, d); err != nil {
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
	if err := l.settledOrLostLocked(); err != nil {
		return err
	}
	if text == "" {
		text = l.text
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := l.update(ctx, text, delay); err != nil {
		return err
	}
	l.settled = true
	return nil
}

// remove deletes the message and settles the lease. A delete answered
// "message not found" counts as done: the answer to an earlier try of it
// was lost and the SDK's retry found the message gone, or someone else
// deleted it; either way nobody will receive it again, and calling that a
// lost lease would be a false alarm.
func (l *lease) remove() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.settledOrLostLocked(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := l.queue.Delete(ctx, l.id, l.receipt); err != nil && !storage.IsMessageNotFound(err) {
		return l.recordFailure("delete", err)
	}
	l.settled = true
	return nil
}

// settledOrLost returns ErrSettled or the loss when the lease can no longer
// be used, else nil.
func (l *lease) settledOrLost() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.settledOrLostLocked()
}

// settledOrLostLocked is settledOrLost, called with l.mu held.
func (l *lease) settledOrLostLocked() error {
	if l.settled {
		return ErrSettled
	}
	return l.lost
}

// update sends an Update Message with the newest receipt and keeps the new
// receipt and how long it holds. Called with l.mu held.
func (l *lease) update(ctx context.Context, text string, visibility time.Duration) error {
	sent := time.Now()
	next, err := l.queue.Update(ctx, l.id, l.receipt, text, visibility)
	if err != nil {
		return l.recordFailure("update", err)
	}
	l.receipt, l.text, l.until = next.PopReceipt, text, sent.Add(visibility)
	return nil
}

// recordFailure records a lost lease, or counts and passes on any other
// error of op. Called with l.mu held.
func (l *lease) recordFailure(op string, err error) error {
	if storage.IsLeaseLost(err) {
		return l.markLost(fmt.Errorf("%s: %w", op, err))
	}
	l.meter.failed()
	return fmt.Errorf("azqueue: %w", err)
}

// markLost records that the lease is gone because of cause, counts it and
// logs it: once, since every later use of the lease returns the same
// error. Called with l.mu held.
func (l *lease) markLost(cause error) error {
	if l.lost != nil {
		return l.lost
	}
	l.lost = fmt.Errorf("%w: message %s in queue %q: %v", ErrLeaseLost, l.id, l.queue.Name(), cause)
	l.meter.lostLease()
	logger.Warnf("%v; it will be delivered again, and a handler that was running on it may have its work done twice", l.lost)
	return l.lost
}
