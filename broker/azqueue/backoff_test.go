package azqueue

import (
	"testing"
	"time"
)

func TestRetryDelayStaysWithinRetryDelayBounds(t *testing.T) {
	tests := []struct {
		name     string
		min, max time.Duration
		count    int64
		lo, hi   time.Duration // every draw must fall in [lo, hi]
	}{
		{"first retry waits exactly min", time.Second, 5 * time.Minute, 1, time.Second, time.Second},
		{"second retry doubles, jittered down to min", time.Second, 5 * time.Minute, 2, time.Second, 2 * time.Second},
		{"fourth retry", time.Second, 5 * time.Minute, 4, 4 * time.Second, 8 * time.Second},
		{"capped at max", time.Second, 3 * time.Second, 10, 1500 * time.Millisecond, 3 * time.Second},
		{"zero means at once", 0, 0, 3, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := 0; i < 1000; i++ {
				if d := retryDelay(tt.count, tt.min, tt.max); d < tt.lo || d > tt.hi {
					t.Fatalf("retryDelay(%d, %s, %s) = %s, want within [%s, %s]", tt.count, tt.min, tt.max, d, tt.lo, tt.hi)
				}
			}
		})
	}
}

func TestPollBackoffDoublesWithinItsBand(t *testing.T) {
	b := newBackoff(100*time.Millisecond, 10*time.Second)
	bounds := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond, 10 * time.Second, 10 * time.Second}
	for i, d := range bounds {
		lo := d / 2
		if d == 10*time.Second {
			lo = 9 * time.Second
		}
		if lo < 100*time.Millisecond {
			lo = 100 * time.Millisecond
		}
		if got := b.pause(); got < lo || got > d {
			t.Fatalf("pause %d = %s, want within [%s, %s]", i+1, got, lo, d)
		}
	}
	// At the maximum, no pause is below 9s: at most 60/9 polls a minute.
	for i := 0; i < 1000; i++ {
		if got := b.pause(); got < 9*time.Second || got > 10*time.Second {
			t.Fatalf("steady pause = %s, want within [9s, 10s]", got)
		}
	}
	b.reset()
	if got := b.pause(); got != 100*time.Millisecond {
		t.Fatalf("pause after reset = %s, want the minimum", got)
	}
}
