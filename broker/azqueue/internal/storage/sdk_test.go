package storage

import (
	"testing"
	"time"
)

func TestWholeSecondsNeverShortensADuration(t *testing.T) {
	tests := []struct {
		in, want time.Duration
	}{
		{0, 0},
		{-time.Second, -time.Second}, // NeverExpire
		{time.Nanosecond, time.Second},
		{500 * time.Millisecond, time.Second},
		{time.Second, time.Second},
		{1500 * time.Millisecond, 2 * time.Second},
		{7 * 24 * time.Hour, 7 * 24 * time.Hour},
	}
	for _, tt := range tests {
		if got := wholeSeconds(tt.in); got != tt.want {
			t.Errorf("wholeSeconds(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
