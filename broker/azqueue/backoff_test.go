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
