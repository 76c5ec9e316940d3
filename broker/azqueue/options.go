package azqueue

import (
	"context"
	"net/http"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/micro/go-micro/v2/broker"
	"github.com/micro/go-micro/v2/client"
	"github.com/micro/go-micro/v2/server"
)

// Credential options. Among ConnectionString, SharedKey, SASToken and
// TokenCredential the last one given wins; any of them wins over the
// environment (AZURE_STORAGE_CONNECTION_STRING, then AZURE_STORAGE_ACCOUNT
// with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN, or alone for
// Microsoft Entra ID). broker.Addrs (--broker_address) replaces the queue
// endpoint of any of them.

const (
	credentialsKey optionKey = "credentials"
	httpClientKey  optionKey = "HTTPClient"
	onPoisonKey    optionKey = "OnPoison"
)

// credentialSource produces credentials when the broker connects, so that a
// bad connection string is reported by Init/Connect, not lost in an option.
type credentialSource func() (Credentials, error)

// ConnectionString sets the storage connection string, for example
// "UseDevelopmentStorage=true" or
// "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=k;EndpointSuffix=core.windows.net".
func ConnectionString(s string) broker.Option {
	return brokerValue(credentialsKey, credentialSource(func() (Credentials, error) {
		return ParseConnectionString(s)
	}))
}

// SharedKey authenticates with a storage account name and key, at
// https://<account>.queue.core.windows.net unless an endpoint is given.
func SharedKey(account, key string) broker.Option {
	return brokerValue(credentialsKey, credentialSource(func() (Credentials, error) {
		return buildCredentials("SharedKey", map[string]string{csAccountName: account, csAccountKey: key})
	}))
}

// SASToken authenticates with a shared access signature for the account,
// at https://<account>.queue.core.windows.net unless an endpoint is given.
func SASToken(account, sas string) broker.Option {
	return brokerValue(credentialsKey, credentialSource(func() (Credentials, error) {
		return buildCredentials("SASToken", map[string]string{csAccountName: account, csSAS: sas})
	}))
}

// TokenCredential authenticates as the storage account with Microsoft
// Entra ID tokens for StorageScope from cred: any azcore.TokenCredential,
// such as azidentity's managed identity, workload identity, client secret
// or Azure CLI credentials. Requests go to
// https://<account>.queue.core.windows.net unless an endpoint is given;
// tokens are sent over HTTPS only. Connect fetches the first token, and
// the broker renews it ahead of its expiry for as long as it is connected.
// The identity needs the DataRole on the account.
func TokenCredential(account string, cred azcore.TokenCredential) broker.Option {
	return brokerValue(credentialsKey, credentialSource(func() (Credentials, error) {
		return tokenCredentials("TokenCredential", account, cred)
	}))
}

// HTTPClient sets the HTTP client requests are sent with: its transport
// is where a proxy, TLS settings or request logging go.
func HTTPClient(c *http.Client) broker.Option {
	return brokerValue(httpClientKey, c)
}

// OnPoison calls f for every message a subscription of this broker moves to
// a poison queue, once the poison record is written and before the message
// is deleted from its queue; Stats().Poisoned counts the same moves. f runs
// on the goroutine that moved the message, which holds a handler's place in
// the subscription's room until f returns: keep it quick (count, alert,
// hand off to a channel). A panic in f is recovered and logged.
func OnPoison(f func(Poisoned)) broker.Option { return brokerValue(onPoisonKey, f) }

// QueueCacheTTL sets how long Publish trusts its list of a topic's group
// queues before listing them again (0 lists on every publish).
func QueueCacheTTL(d time.Duration) broker.Option { return brokerValue(cacheTTLTunable.key, d) }

// Base64Messages base64-encodes whole messages on publish, the encoding
// Azure Functions' queue trigger expects by default. Receiving accepts both.
func Base64Messages(on bool) broker.Option { return brokerValue(base64Tunable.key, on) }

// PublishTimeout bounds one Publish whose context has no deadline.
func PublishTimeout(d time.Duration) broker.Option { return brokerValue(publishTimeoutTunable.key, d) }

// DepthSampleInterval sets how often each subscription asks the service
// for its queue's approximate depth and tells the Observer (WithObserver):
// one request per sample and subscription. 0 samples never; without an
// Observer, nothing is sampled.
func DepthSampleInterval(d time.Duration) broker.Option {
	return brokerValue(depthSampleTunable.key, d)
}

// ConnectTimeout bounds Connect's authenticated check.
func ConnectTimeout(d time.Duration) broker.Option { return brokerValue(connectTimeoutTunable.key, d) }

// Subscribe options, each with a server.SubscriberOption twin for
// subscribers registered through micro.RegisterSubscriber.

// BatchSize sets how many messages (1..32) one dequeue request asks for.
func BatchSize(n int) broker.SubscribeOption { return subscribeValue(batchSizeTunable.key, n) }

// SubscriberBatchSize is BatchSize for micro.RegisterSubscriber.
func SubscriberBatchSize(n int) server.SubscriberOption {
	return subscriberValue(batchSizeTunable.key, n)
}

// Concurrency sets how many handlers run at once (default: BatchSize).
func Concurrency(n int) broker.SubscribeOption { return subscribeValue(concurrencyTunable.key, n) }

// SubscriberConcurrency is Concurrency for micro.RegisterSubscriber.
func SubscriberConcurrency(n int) server.SubscriberOption {
	return subscriberValue(concurrencyTunable.key, n)
}

// VisibilityTimeout sets the lease taken on each dequeued message (1s..7d).
func VisibilityTimeout(d time.Duration) broker.SubscribeOption {
	return subscribeValue(visibilityTunable.key, d)
}

// SubscriberVisibilityTimeout is VisibilityTimeout for micro.RegisterSubscriber.
func SubscriberVisibilityTimeout(d time.Duration) server.SubscriberOption {
	return subscriberValue(visibilityTunable.key, d)
}

// MaxDequeueCount sets how many deliveries a message gets before it moves
// to the poison queue.
func MaxDequeueCount(n int) broker.SubscribeOption { return subscribeValue(maxDequeueTunable.key, n) }

// SubscriberMaxDequeueCount is MaxDequeueCount for micro.RegisterSubscriber.
func SubscriberMaxDequeueCount(n int) server.SubscriberOption {
	return subscriberValue(maxDequeueTunable.key, n)
}

// PollInterval sets the bounds of the randomized exponential pause between
// polls of a queue that had no full batch.
func PollInterval(min, max time.Duration) broker.SubscribeOption {
	return func(o *broker.SubscribeOptions) {
		o.Context = withPair(o.Context, pollMinTunable.key, pollMaxTunable.key, min, max)
	}
}

// SubscriberPollInterval is PollInterval for micro.RegisterSubscriber.
func SubscriberPollInterval(min, max time.Duration) server.SubscriberOption {
	return func(o *server.SubscriberOptions) {
		o.Context = withPair(o.Context, pollMinTunable.key, pollMaxTunable.key, min, max)
	}
}

// RetryDelay sets the bounds of the exponential, jittered delay before a
// message whose handler failed is delivered again.
func RetryDelay(min, max time.Duration) broker.SubscribeOption {
	return func(o *broker.SubscribeOptions) {
		o.Context = withPair(o.Context, retryMinTunable.key, retryMaxTunable.key, min, max)
	}
}

// SubscriberRetryDelay is RetryDelay for micro.RegisterSubscriber.
func SubscriberRetryDelay(min, max time.Duration) server.SubscriberOption {
	return func(o *server.SubscriberOptions) {
		o.Context = withPair(o.Context, retryMinTunable.key, retryMaxTunable.key, min, max)
	}
}

// DrainTimeout sets how long Unsubscribe waits for running handlers.
func DrainTimeout(d time.Duration) broker.SubscribeOption { return subscribeValue(drainTunable.key, d) }

// SubscriberDrainTimeout is DrainTimeout for micro.RegisterSubscriber.
func SubscriberDrainTimeout(d time.Duration) server.SubscriberOption {
	return subscriberValue(drainTunable.key, d)
}

// RawContentType sets the Content-Type of messages that are not in the
// broker's envelope, such as JSON written by another tool.
func RawContentType(ct string) broker.SubscribeOption {
	return subscribeValue(rawContentTypeTunable.key, ct)
}

// SubscriberRawContentType is RawContentType for micro.RegisterSubscriber.
func SubscriberRawContentType(ct string) server.SubscriberOption {
	return subscriberValue(rawContentTypeTunable.key, ct)
}

// Publish options, each with a client.PublishOption twin for events
// published through a go-micro client (micro.NewEvent). A client's
// client.PublishContext replaces the context these twins write to, so give
// it first.

// MessageTTL sets how long a published message lives (1s..7d, or
// NeverExpire).
func MessageTTL(d time.Duration) broker.PublishOption { return publishValue(ttlTunable.key, d) }

// ClientMessageTTL is MessageTTL for go-micro clients.
func ClientMessageTTL(d time.Duration) client.PublishOption {
	return clientPublishValue(ttlTunable.key, d)
}

// Delay keeps a published message invisible for d (below its TTL).
func Delay(d time.Duration) broker.PublishOption { return publishValue(delayTunable.key, d) }

// ClientDelay is Delay for go-micro clients.
func ClientDelay(d time.Duration) client.PublishOption {
	return clientPublishValue(delayTunable.key, d)
}

func withPair(ctx context.Context, k1, k2 optionKey, v1, v2 time.Duration) context.Context {
	return withValue(withValue(ctx, k1, v1), k2, v2)
}
