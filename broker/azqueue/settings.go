package azqueue

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/micro/go-micro/v2/broker"
	"github.com/micro/go-micro/v2/client"
	"github.com/micro/go-micro/v2/server"
)

// EnvPrefix is the prefix of every environment variable the broker reads
// for its tunables, such as AZQUEUE_BATCH_SIZE.
const EnvPrefix = "AZQUEUE_"

// Setting documents one tunable: the option that sets it, the environment
// variable that sets it process-wide, its default and its valid range. An
// option given in code wins over the environment, which wins over the
// default. The README's configuration table is checked against Settings.
type Setting struct {
	Option  string // the broker option, e.g. "BatchSize"
	Twin    string // the server.SubscriberOption or client.PublishOption twin, if any
	Env     string // e.g. "AZQUEUE_BATCH_SIZE"
	Default string
	Range   string
	Doc     string
}

// optionKey is the context key under which an option stores its value; its
// text is the option's name, which error messages use.
type optionKey string

// tunable is one configurable value of type T: its option, environment
// variable, default and range.
type tunable[T any] struct {
	key   optionKey
	twin  string
	env   string
	def   T
	rng   string
	doc   string
	parse func(string) (T, error)
	valid func(T) bool
	show  func(T) string
}

// value resolves the tunable: an option stored in ctx, else the environment,
// else the default; then checks the range.
func (k tunable[T]) value(ctx context.Context, getenv func(string) string) (T, error) {
	v, from := k.def, "default"
	if s := strings.TrimSpace(getenv(k.env)); s != "" {
		parsed, err := k.parse(s)
		if err != nil {
			return v, fmt.Errorf("azqueue: %s=%q: %v", k.env, s, err)
		}
		v, from = parsed, k.env
	}
	return k.over(ctx, v, from)
}

// over resolves the tunable over base, a value resolved before (whose origin
// from names): an option stored in ctx, else base; then checks the range.
func (k tunable[T]) over(ctx context.Context, v T, from string) (T, error) {
	if ctx != nil {
		if opt, ok := ctx.Value(k.key).(T); ok {
			v, from = opt, string(k.key)
		}
	}
	if k.valid != nil && !k.valid(v) {
		return v, fmt.Errorf("azqueue: %s %s (from %s) is out of range: %s", k.key, k.format(v), from, k.rng)
	}
	return v, nil
}

func (k tunable[T]) format(v T) string {
	if k.show != nil {
		return k.show(v)
	}
	return fmt.Sprint(v)
}

func (k tunable[T]) setting() Setting {
	return Setting{Option: string(k.key), Twin: k.twin, Env: k.env, Default: k.format(k.def), Range: k.rng, Doc: k.doc}
}

func intTunable(key optionKey, twin, env string, def, min, max int, doc string) tunable[int] {
	return tunable[int]{
		key: key, twin: twin, env: env, def: def, doc: doc,
		rng:   fmt.Sprintf("%d..%d", min, max),
		parse: strconv.Atoi,
		valid: func(v int) bool { return v >= min && v <= max },
	}
}

func durationTunable(key optionKey, twin, env string, def, min, max time.Duration, doc string) tunable[time.Duration] {
	return tunable[time.Duration]{
		key: key, twin: twin, env: env, def: def, doc: doc,
		rng:   fmt.Sprintf("%s..%s", formatDuration(min), formatDuration(max)),
		parse: parseDuration,
		valid: func(v time.Duration) bool { return v >= min && v <= max },
		show:  formatDuration,
	}
}

// parseDuration is time.ParseDuration that also accepts whole days, "7d",
// as formatDuration prints them.
func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil {
			return time.Duration(n) * day, nil
		}
	}
	return time.ParseDuration(s)
}

// formatDuration prints whole days, hours and minutes as "7d", "1h" and
// "5m" rather than time.Duration's "168h0m0s", "1h0m0s" and "5m0s".
func formatDuration(d time.Duration) string {
	for _, unit := range []struct {
		size time.Duration
		name string
	}{{day, "d"}, {time.Hour, "h"}, {time.Minute, "m"}} {
		if d >= unit.size && d%unit.size == 0 {
			return fmt.Sprintf("%d%s", d/unit.size, unit.name)
		}
	}
	return d.String()
}

const day = 24 * time.Hour

// Subscription tunables.
var (
	batchSizeTunable = intTunable("BatchSize", "SubscriberBatchSize", EnvPrefix+"BATCH_SIZE", 32, 1, 32,
		"Messages asked for per dequeue request; a subscription holds at most Concurrency + BatchSize.")
	concurrencyTunable = intTunable("Concurrency", "SubscriberConcurrency", EnvPrefix+"CONCURRENCY", 0, 0, 1024,
		"Handlers running at once per subscription; 0 means equal to BatchSize.")
	visibilityTunable = durationTunable("VisibilityTimeout", "SubscriberVisibilityTimeout", EnvPrefix+"VISIBILITY_TIMEOUT", 30*time.Second, time.Second, 7*day,
		"Lease taken on a dequeued message; renewed at half-life while the subscription holds it.")
	maxDequeueTunable = intTunable("MaxDequeueCount", "SubscriberMaxDequeueCount", EnvPrefix+"MAX_DEQUEUE_COUNT", 5, 1, 1000,
		"Deliveries before a message moves to the <queue>-poison queue instead of its handler.")
	pollMinTunable = durationTunable("PollInterval (min)", "SubscriberPollInterval", EnvPrefix+"POLL_MIN", 100*time.Millisecond, 10*time.Millisecond, time.Hour,
		"Shortest pause between polls of a queue that is not full.")
	pollMaxTunable = durationTunable("PollInterval (max)", "SubscriberPollInterval", EnvPrefix+"POLL_MAX", 10*time.Second, 10*time.Millisecond, time.Hour,
		"Longest pause between polls of an idle queue (randomized exponential backoff).")
	retryMinTunable = durationTunable("RetryDelay (min)", "SubscriberRetryDelay", EnvPrefix+"RETRY_MIN", time.Second, 0, 7*day,
		"Delay before the first redelivery of a message whose handler failed.")
	retryMaxTunable = durationTunable("RetryDelay (max)", "SubscriberRetryDelay", EnvPrefix+"RETRY_MAX", 5*time.Minute, 0, 7*day,
		"Cap of the exponential, jittered redelivery delay.")
	drainTunable = durationTunable("DrainTimeout", "SubscriberDrainTimeout", EnvPrefix+"DRAIN_TIMEOUT", 30*time.Second, 0, time.Hour,
		"How long Unsubscribe/Disconnect wait for running handlers.")
	rawContentTypeTunable = tunable[string]{
		key: "RawContentType", twin: "SubscriberRawContentType", env: EnvPrefix + "RAW_CONTENT_TYPE", def: "application/json",
		rng: "a MIME type", doc: "Content-Type given to messages that are not in the broker's envelope (written by other tools).",
		parse: func(s string) (string, error) { return s, nil },
		valid: func(s string) bool { return strings.Contains(s, "/") },
	}
)

// Broker-wide and publish tunables.
var (
	cacheTTLTunable = durationTunable("QueueCacheTTL", "", EnvPrefix+"QUEUE_CACHE_TTL", 30*time.Second, 0, time.Hour,
		"How long Publish trusts its list of a topic's group queues.")
	base64Tunable = tunable[bool]{
		key: "Base64Messages", env: EnvPrefix + "BASE64", def: false, rng: "true or false",
		doc:   "Base64-encode whole messages on publish (Azure Functions' default encoding); receiving accepts both.",
		parse: strconv.ParseBool,
	}
	publishTimeoutTunable = durationTunable("PublishTimeout", "", EnvPrefix+"PUBLISH_TIMEOUT", 30*time.Second, time.Second, time.Hour,
		"Bound on one Publish when its context has no deadline.")
	connectTimeoutTunable = durationTunable("ConnectTimeout", "", EnvPrefix+"CONNECT_TIMEOUT", 10*time.Second, time.Second, 10*time.Minute,
		"Bound on Connect's authenticated check.")
	depthSampleTunable = durationTunable("DepthSampleInterval", "", EnvPrefix+"DEPTH_SAMPLE_INTERVAL", 30*time.Second, 0, time.Hour,
		"How often each subscription samples its queue's approximate depth for the Observer: one request per sample; 0, or no Observer, samples never.")
	ttlTunable = tunable[time.Duration]{
		key: "MessageTTL", twin: "ClientMessageTTL", env: EnvPrefix + "MESSAGE_TTL", def: 7 * day,
		rng: "1s..7d, or -1s (NeverExpire)", doc: "Time to live of published messages.",
		parse: parseDuration, show: formatDuration,
		valid: func(d time.Duration) bool { return d == NeverExpire || (d >= time.Second && d <= 7*day) },
	}
	delayTunable = durationTunable("Delay", "ClientDelay", EnvPrefix+"DELAY", 0, 0, 7*day,
		"Initial invisibility of published messages; must be below MessageTTL.")
)

// NeverExpire is the MessageTTL of messages that never expire.
const NeverExpire = -time.Second

// Settings lists every tunable with its option, environment variable,
// default and range: the single source of the configuration table.
func Settings() []Setting {
	return []Setting{
		batchSizeTunable.setting(), concurrencyTunable.setting(), visibilityTunable.setting(), maxDequeueTunable.setting(),
		pollMinTunable.setting(), pollMaxTunable.setting(), retryMinTunable.setting(), retryMaxTunable.setting(),
		drainTunable.setting(), rawContentTypeTunable.setting(),
		cacheTTLTunable.setting(), base64Tunable.setting(), publishTimeoutTunable.setting(), connectTimeoutTunable.setting(), depthSampleTunable.setting(),
		ttlTunable.setting(), delayTunable.setting(),
	}
}

// withValue returns ctx (or a new background context) carrying v under k.
func withValue(ctx context.Context, k optionKey, v interface{}) context.Context {
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithValue(ctx, k, v)
}

func brokerValue(k optionKey, v interface{}) broker.Option {
	return func(o *broker.Options) { o.Context = withValue(o.Context, k, v) }
}

func subscribeValue(k optionKey, v interface{}) broker.SubscribeOption {
	return func(o *broker.SubscribeOptions) { o.Context = withValue(o.Context, k, v) }
}

func subscriberValue(k optionKey, v interface{}) server.SubscriberOption {
	return func(o *server.SubscriberOptions) { o.Context = withValue(o.Context, k, v) }
}

func publishValue(k optionKey, v interface{}) broker.PublishOption {
	return func(o *broker.PublishOptions) { o.Context = withValue(o.Context, k, v) }
}

func clientPublishValue(k optionKey, v interface{}) client.PublishOption {
	return func(o *client.PublishOptions) { o.Context = withValue(o.Context, k, v) }
}
