package clientcmd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/micro/go-micro/v2"
	"github.com/micro/go-micro/v2/broker"
	"github.com/micro/go-micro/v2/registry"

	"github.com/poc-go-micro/poc-go-micro/proto/example"
)

// DefaultWait is how long a client waits for what it needs before its
// first operation unless --wait says otherwise: not at all, so that a
// client run by hand without its server fails at once.
const DefaultWait time.Duration = 0

// Pauses between the attempts of a wait: the first is firstPause, each
// next one twice as long, at most maxPause. maxPause bounds how late a
// client notices the server it waits for.
const (
	firstPause = 100 * time.Millisecond
	maxPause   = 2 * time.Second
)

// Logf prints one progress line, as log.Logger.Printf does.
type Logf func(format string, args ...interface{})

// backoff is the schedule of a wait's retries.
type backoff struct {
	first, max time.Duration
}

// defaultBackoff is the schedule of WaitForService and WaitForBroker.
var defaultBackoff = backoff{first: firstPause, max: maxPause}

// pause returns the pause after the given failed attempt (0 for the first),
// doubled per attempt up to b.max and then randomised by ±20%, so that
// clients started together do not poll in lock-step.
func (b backoff) pause(attempt int) time.Duration {
	d := b.first
	for i := 0; i < attempt && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	if d <= 0 {
		return 0
	}
	return d*4/5 + rand.N(d*2/5+1)
}

// retry calls attempt until it returns nil, wait has passed since the
// first call, or ctx is done, pausing between calls as b says. It calls
// failed after each failed attempt that will be retried. It returns
// whether it had to retry, how long it waited, and nil, the last
// attempt's error, or ctx's error. With wait 0 it calls attempt once.
func (b backoff) retry(ctx context.Context, wait time.Duration, attempt func() error, failed func(error)) (retried bool, waited time.Duration, err error) {
	start := time.Now()
	deadline := start.Add(wait)
	for n := 0; ; n++ {
		lastErr := attempt()
		if lastErr == nil {
			return n > 0, time.Since(start), nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return n > 0, time.Since(start), lastErr
		}
		if failed != nil {
			failed(lastErr)
		}
		t := time.NewTimer(min(b.pause(n), left))
		select {
		case <-ctx.Done():
			t.Stop()
			return true, time.Since(start), ctx.Err()
		case <-t.C:
		}
	}
}

// reporter returns the failed callback of a wait: it prints the first
// failure and every failure that differs from the one before, so that a
// wait shows what it waits for without a line per attempt.
func reporter(logf Logf, what string, wait time.Duration) func(error) {
	var last string
	return func(err error) {
		if logf == nil || err.Error() == last {
			return
		}
		if last == "" {
			logf("waiting up to %s (--wait) for %s: %v", wait, what, err)
		} else {
			logf("still waiting for %s: %v", what, err)
		}
		last = err.Error()
	}
}

// WaitForService waits, for at most s.Wait, until reg has a node of
// s.Service: the server has started and registered. It retries look-ups
// that find nothing or fail (the registry itself may still be starting),
// pausing with randomised exponential backoff from 100ms up to 2s between
// them, and prints progress through logf (nil prints nothing). With s.Wait
// 0 it returns nil at once, and the client's first call reports a missing
// server as it would without waiting.
//
// Call it before a client's first call: a client started together with
// its server, as docker-compose starts them, then waits for it instead of
// failing.
func (s *Settings) WaitForService(ctx context.Context, reg registry.Registry, logf Logf) error {
	if s.Wait <= 0 {
		return nil
	}
	what := fmt.Sprintf("service %q to register", s.Service)
	retried, waited, err := defaultBackoff.retry(ctx, s.Wait, func() error {
		return lookUp(reg, s.Service)
	}, reporter(logf, what, s.Wait))
	switch {
	case err == nil:
		if retried && logf != nil {
			logf("service %q registered after %s", s.Service, waited.Round(time.Millisecond))
		}
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("wait for service %q: %w", s.Service, err)
	case errors.Is(err, registry.ErrNotFound):
		return fmt.Errorf("service %q is still not registered after waiting %s (is the server running and using the same registry?)", s.Service, s.Wait)
	default:
		return fmt.Errorf("cannot look up service %q in the registry after waiting %s: %w (is the registry reachable? see --registry and --registry_address)", s.Service, s.Wait, err)
	}
}

// lookUp returns nil if reg has a node of service, registry.ErrNotFound
// if it has none, or the look-up's error.
func lookUp(reg registry.Registry, service string) error {
	services, err := reg.GetService(service)
	if err != nil {
		return err
	}
	for _, s := range services {
		if len(s.Nodes) > 0 {
			return nil
		}
	}
	return registry.ErrNotFound
}

// ExampleClient returns the client of the Example service named by
// --service, after waiting for it to register as --wait says: a client
// started together with its server, as docker-compose starts them, waits
// for it instead of failing.
func (s *Settings) ExampleClient(service micro.Service, logf Logf) (example.ExampleService, error) {
	if err := s.WaitForService(context.Background(), service.Options().Registry, logf); err != nil {
		return nil, err
	}
	return example.NewExampleService(s.Service, service.Client()), nil
}

// WaitForBroker connects b, retrying failed connects for at most s.Wait
// with the backoff of WaitForService and printing progress through logf
// (nil prints nothing). With s.Wait 0 it returns nil at once and leaves
// connecting to the first publish, which reports a failure as it would
// without waiting.
//
// Call it before a publisher's first publish: go-micro's client connects
// its broker once, on the first publish, and fails that publish if the
// broker's backend is not reachable yet.
func (s *Settings) WaitForBroker(ctx context.Context, b broker.Broker, logf Logf) error {
	if s.Wait <= 0 {
		return nil
	}
	what := fmt.Sprintf("broker %s to connect", b.String())
	retried, waited, err := defaultBackoff.retry(ctx, s.Wait, b.Connect, reporter(logf, what, s.Wait))
	switch {
	case err == nil:
		if retried && logf != nil {
			logf("broker %s connected after %s", b.String(), waited.Round(time.Millisecond))
		}
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("wait for broker %s to connect: %w", b.String(), err)
	default:
		return fmt.Errorf("connect broker %s (waited %s): %w", b.String(), s.Wait, err)
	}
}
