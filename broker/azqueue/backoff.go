package azqueue

import (
	"math/rand"
	"sync"
	"time"
)

// backoff produces randomized exponential pauses between min and max: each
// pause is drawn from [d/2, d] where d doubles from min up to max, so that
// many idle pollers spread out instead of hitting the service in step.
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
	return jitter(d)
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
	if j := jitter(d); j > min {
		return j
	}
	return min
}

var (
	jitterMu   sync.Mutex
	jitterRand = rand.New(rand.NewSource(time.Now().UnixNano()))
)

// jitter draws a duration from [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := int64(d / 2)
	jitterMu.Lock()
	n := jitterRand.Int63n(half + 1)
	jitterMu.Unlock()
	return time.Duration(half + n)
}
