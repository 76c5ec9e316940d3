package azqueue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage"
)

// subscribeConfig is a subscription's resolved, validated tunables.
type subscribeConfig struct {
	batchSize      int
	concurrency    int
	visibility     time.Duration
	maxDequeue     int
	pollMin        time.Duration
	pollMax        time.Duration
	retryMin       time.Duration
	retryMax       time.Duration
	drain          time.Duration
	rawContentType string
}

// brokerConfig is the broker's resolved, validated tunables.
type brokerConfig struct {
	cacheTTL       time.Duration
	base64         bool
	publishTimeout time.Duration
	connectTimeout time.Duration
	// depthEvery is how often a subscription samples its queue's depth
	// for the Observer (0: never).
	depthEvery time.Duration
	// publish is what a publish without options of its own uses.
	publish publishConfig
	// onPoison is the OnPoison callback, or nil.
	onPoison func(Poisoned)
}

// publishConfig is one publish's resolved, validated tunables.
type publishConfig struct {
	ttl   time.Duration
	delay time.Duration
}

// resolver collects the first error while resolving several tunables.
type resolver struct {
	ctx  context.Context
	errs []error
}

func resolve[T any](r *resolver, k tunable[T]) T {
	v, err := k.value(r.ctx, os.Getenv)
	if err != nil {
		r.errs = append(r.errs, err)
	}
	return v
}

// resolveOver is resolve over a value resolved before instead of the
// environment and the default.
func resolveOver[T any](r *resolver, k tunable[T], base T) T {
	v, err := k.over(r.ctx, base, "broker")
	if err != nil {
		r.errs = append(r.errs, err)
	}
	return v
}

func (r *resolver) check(ok bool, format string, args ...interface{}) {
	if !ok {
		r.errs = append(r.errs, fmt.Errorf("azqueue: "+format, args...))
	}
}

func (r *resolver) err() error { return errors.Join(r.errs...) }

func resolveSubscribe(ctx context.Context) (subscribeConfig, error) {
	r := &resolver{ctx: ctx}
	c := subscribeConfig{
		batchSize:      resolve(r, batchSizeTunable),
		concurrency:    resolve(r, concurrencyTunable),
		visibility:     resolve(r, visibilityTunable),
		maxDequeue:     resolve(r, maxDequeueTunable),
		pollMin:        resolve(r, pollMinTunable),
		pollMax:        resolve(r, pollMaxTunable),
		retryMin:       resolve(r, retryMinTunable),
		retryMax:       resolve(r, retryMaxTunable),
		drain:          resolve(r, drainTunable),
		rawContentType: resolve(r, rawContentTypeTunable),
	}
	if c.concurrency == 0 {
		c.concurrency = c.batchSize
	}
	r.check(c.pollMin <= c.pollMax, "PollInterval min %s is above max %s", c.pollMin, c.pollMax)
	r.check(c.retryMin <= c.retryMax, "RetryDelay min %s is above max %s", c.retryMin, c.retryMax)
	return c, r.err()
}

func resolveBroker(ctx context.Context) (brokerConfig, error) {
	r := &resolver{ctx: ctx}
	c := brokerConfig{
		cacheTTL:       resolve(r, cacheTTLTunable),
		base64:         resolve(r, base64Tunable),
		publishTimeout: resolve(r, publishTimeoutTunable),
		connectTimeout: resolve(r, connectTimeoutTunable),
		depthEvery:     resolve(r, depthSampleTunable),
		publish:        publishConfig{ttl: resolve(r, ttlTunable), delay: resolve(r, delayTunable)},
	}
	c.publish.check(r)
	if ctx != nil {
		c.onPoison, _ = ctx.Value(onPoisonKey).(func(Poisoned))
	}
	return c, r.err()
}

// resolvePublish returns one publish's tunables: the options in ctx over
// the broker's. Publishing is the hot path, so the environment is read once,
// at Connect, and a publish without options of its own costs nothing here.
func resolvePublish(ctx context.Context, broker publishConfig) (publishConfig, error) {
	if ctx == nil || ctx.Value(ttlTunable.key) == nil && ctx.Value(delayTunable.key) == nil {
		return broker, nil
	}
	r := &resolver{ctx: ctx}
	c := publishConfig{ttl: resolveOver(r, ttlTunable, broker.ttl), delay: resolveOver(r, delayTunable, broker.delay)}
	c.check(r)
	return c, r.err()
}

// check records in r a delay the service would refuse for the TTL.
func (c publishConfig) check(r *resolver) {
	// Compared as sent: in whole seconds, rounded up.
	if c.ttl != NeverExpire && storage.WholeSeconds(c.delay) >= storage.WholeSeconds(c.ttl) {
		r.check(false, "Delay %s is not below MessageTTL %s in whole seconds, the service's unit", formatDuration(c.delay), formatDuration(c.ttl))
	}
}
