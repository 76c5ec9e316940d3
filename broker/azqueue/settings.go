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

// knobKey is the context key under which an option stores its value; its
// text is the option's name, which error messages use.
type knobKey string

// knob is one tunable of type T.
type knob[T any] struct {
	key   knobKey
	twin  string
	env   string
	def   T
	rng   string
	doc   string
	parse func(string) (T, error)
	valid func(T) bool
	show  func(T) string
}

// value resolves the knob: an option stored in ctx, else the environment,
// else the default; then checks the range.
func (k knob[T]) value(ctx context.Context, getenv func(string) string) (T, error) {
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

// over resolves the knob over base, a value resolved before (whose origin
// from names): an option stored in ctx, else base; then checks the range.
func (k knob[T]) over(ctx context.Context, v T, from string) (T, error) {
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

func (k knob[T]) format(v T) string {
	if k.show != nil {
		return k.show(v)
	}
	return fmt.Sprint(v)
}

func (k knob[T]) setting() Setting {
	return Setting{Option: string(k.key), Twin: k.twin, Env: k.env, Default: k.format(k.def), Range: k.rng, Doc: k.doc}
}

func intKnob(key knobKey, twin, env string, def, min, max int, doc string) knob[int] {
	return knob[int]{
		key: key, twin: twin, env: env, def: def, doc: doc,
		rng:   fmt.Sprintf("%d..%d", min, max),
		parse: strconv.Atoi,
		valid: func(v int) bool { return v >= min && v <= max },
	}
}

func durationKnob(key knobKey, twin, env string, def, min, max time.Duration, doc string) knob[time.Duration] {
	return knob[time.Duration]{
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
	batchSizeKnob = intKnob("BatchSize", "SubscriberBatchSize", EnvPrefix+"BATCH_SIZE", 32, 1, 32,
		"Messages asked for per dequeue request; a subscription holds at most Concurrency + BatchSize.")
	concurrencyKnob = intKnob("Concurrency", "SubscriberConcurrency", EnvPrefix+"CONCURRENCY", 0, 0, 1024,
		"Handlers running at once per subscription; 0 means equal to BatchSize.")
	visibilityKnob = durationKnob("VisibilityTimeout", "SubscriberVisibilityTimeout", EnvPrefix+"VISIBILITY_TIMEOUT", 30*time.Second, time.Second, 7*day,
		"Lease taken on a dequeued message; renewed at half-life while the subscription holds it.")
	maxDequeueKnob = intKnob("MaxDequeueCount", "SubscriberMaxDequeueCount", EnvPrefix+"MAX_DEQUEUE_COUNT", 5, 1, 1000,
		"Deliveries before a message moves to the <queue>-poison queue instead of its handler.")
	pollMinKnob = durationKnob("PollInterval (min)", "SubscriberPollInterval", EnvPrefix+"POLL_MIN", 100*time.Millisecond, 10*time.Millisecond, time.Hour,
		"Shortest pause between polls of a queue that is not full.")
	pollMaxKnob = durationKnob("PollInterval (max)", "SubscriberPollInterval", EnvPrefix+"POLL_MAX", 10*time.Second, 10*time.Millisecond, time.Hour,
		"Longest pause between polls of an idle queue (randomized exponential backoff).")
	retryMinKnob = durationKnob("RetryDelay (min)", "SubscriberRetryDelay", EnvPrefix+"RETRY_MIN", time.Second, 0, 7*day,
		"Delay before the first redelivery of a message whose handler failed.")
	retryMaxKnob = durationKnob("RetryDelay (max)", "SubscriberRetryDelay", EnvPrefix+"RETRY_MAX", 5*time.Minute, 0, 7*day,
		"Cap of the exponential, jittered redelivery delay.")
	drainKnob = durationKnob("DrainTimeout", "SubscriberDrainTimeout", EnvPrefix+"DRAIN_TIMEOUT", 30*time.Second, 0, time.Hour,
		"How long Unsubscribe/Disconnect wait for running handlers.")
	rawContentTypeKnob = knob[string]{
		key: "RawContentType", twin: "SubscriberRawContentType", env: EnvPrefix + "RAW_CONTENT_TYPE", def: "application/json",
		rng: "a MIME type", doc: "Content-Type given to messages that are not in the broker's envelope (written by other tools).",
		parse: func(s string) (string, error) { return s, nil },
		valid: func(s string) bool { return strings.Contains(s, "/") },
	}
)

// Broker-wide and publish tunables.
var (
	cacheTTLKnob = durationKnob("QueueCacheTTL", "", EnvPrefix+"QUEUE_CACHE_TTL", 30*time.Second, 0, time.Hour,
		"How long Publish trusts its list of a topic's group queues.")
	base64Knob = knob[bool]{
		key: "Base64Messages", env: EnvPrefix + "BASE64", def: false, rng: "true or false",
		doc:   "Base64-encode whole messages on publish (Azure Functions' default encoding); receiving accepts both.",
		parse: strconv.ParseBool,
	}
	publishTimeoutKnob = durationKnob("PublishTimeout", "", EnvPrefix+"PUBLISH_TIMEOUT", 30*time.Second, time.Second, time.Hour,
		"Bound on one Publish when its context has no deadline.")
	connectTimeoutKnob = durationKnob("ConnectTimeout", "", EnvPrefix+"CONNECT_TIMEOUT", 10*time.Second, time.Second, 10*time.Minute,
		"Bound on Connect's authenticated check.")
	ttlKnob = knob[time.Duration]{
		key: "MessageTTL", twin: "ClientMessageTTL", env: EnvPrefix + "MESSAGE_TTL", def: 7 * day,
		rng: "1s..7d, or -1s (NeverExpire)", doc: "Time to live of published messages.",
		parse: parseDuration, show: formatDuration,
		valid: func(d time.Duration) bool { return d == NeverExpire || (d >= time.Second && d <= 7*day) },
	}
	delayKnob = durationKnob("Delay", "ClientDelay", EnvPrefix+"DELAY", 0, 0, 7*day,
		"Initial invisibility of published messages; must be below MessageTTL.")
)

// NeverExpire is the MessageTTL of messages that never expire.
const NeverExpire = -time.Second

// Settings lists every tunable with its option, environment variable,
// default and range: the single source of the configuration table.
func Settings() []Setting {
	return []Setting{
		batchSizeKnob.setting(), concurrencyKnob.setting(), visibilityKnob.setting(), maxDequeueKnob.setting(),
		pollMinKnob.setting(), pollMaxKnob.setting(), retryMinKnob.setting(), retryMaxKnob.setting(),
		drainKnob.setting(), rawContentTypeKnob.setting(),
		cacheTTLKnob.setting(), base64Knob.setting(), publishTimeoutKnob.setting(), connectTimeoutKnob.setting(),
		ttlKnob.setting(), delayKnob.setting(),
	}
}

// withValue returns ctx (or a new background context) carrying v under k.
func withValue(ctx context.Context, k knobKey, v interface{}) context.Context {
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithValue(ctx, k, v)
}

func brokerValue(k knobKey, v interface{}) broker.Option {
	return func(o *broker.Options) { o.Context = withValue(o.Context, k, v) }
}

func subscribeValue(k knobKey, v interface{}) broker.SubscribeOption {
	return func(o *broker.SubscribeOptions) { o.Context = withValue(o.Context, k, v) }
}

func subscriberValue(k knobKey, v interface{}) server.SubscriberOption {
	return func(o *server.SubscriberOptions) { o.Context = withValue(o.Context, k, v) }
}

func publishValue(k knobKey, v interface{}) broker.PublishOption {
	return func(o *broker.PublishOptions) { o.Context = withValue(o.Context, k, v) }
}

func clientPublishValue(k knobKey, v interface{}) client.PublishOption {
	return func(o *client.PublishOptions) { o.Context = withValue(o.Context, k, v) }
}
