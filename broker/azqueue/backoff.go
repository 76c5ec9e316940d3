package azqueue

import (
	"math/rand"
	"sync"
	"time"
)

// backoff produces randomized exponential pauses between min and max: a
// bound d doubles from min up to max, and each pause is drawn from
// [d/2, d] while d is below max, so that pollers drift apart instead of
// hitting the service in step, and from [0.9 max, max] at the cap, which
// keeps the idle cost predictable: at the default max of 10s a subscription
// polls at most 60/9 = 6.7 times a minute. No pause is below min.
type backoff struct {
	min, max time.Duration
	next     time.Duration
}

func newBackoff(min, max time.Duration) *backoff {
	return &backoff{min: min, max: max, next: min}
}

// pause returns the next pause and doubles the one after it.
func (b *backoff) pause() time.Duration {
	d := b.next
	if b.next < b.max {
		b.next *= 2
		if b.next > b.max {
			b.next = b.max
		}
	}
	lo := d / 2
	if d >= b.max {
		lo = d - d/10
	}
	if lo < b.min {
		lo = b.min
	}
	return jitterBetween(lo, d)
}

// reset starts again from min.
func (b *backoff) reset() { b.next = b.min }

// retryDelay is the pause before a message whose handler failed on its
// dequeueCount-th delivery is delivered again: min doubled per earlier
// delivery, capped at max, jittered, and never below min (the jitter alone
// would go down to half of it).
func retryDelay(dequeueCount int64, min, max time.Duration) time.Duration {
	d := min
	for i := int64(1); i < dequeueCount && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	lo := d / 2
	if lo < min {
		lo = min
	}
	return jitterBetween(lo, d)
}

var (
	jitterMu   sync.Mutex
	jitterRand = rand.New(rand.NewSource(time.Now().UnixNano()))
)

// jitterBetween draws a duration from [lo, hi]; lo >= hi gives hi.
func jitterBetween(lo, hi time.Duration) time.Duration {
	if lo >= hi {
		return hi
	}
	jitterMu.Lock()
	n := jitterRand.Int63n(int64(hi-lo) + 1)
	jitterMu.Unlock()
	return lo + time.Duration(n)
}
