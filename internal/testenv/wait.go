package testenv

import (
	"testing"
	"time"
)

// waitPoll is how often WaitFor checks its condition.
const waitPoll = 20 * time.Millisecond

// WaitFor polls cond until it holds and returns how long that took; after
// timeout it fails the test with a message saying it was waiting for what.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(waitPoll)
	}
	return time.Since(start)
}
