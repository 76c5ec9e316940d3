// Package azqueue is a go-micro v2 broker over Azure Storage Queues that
// delivers every message at least once and loses none.
//
// # Using it
//
// Importing the package registers the broker as "azqueue" in go-micro's
// broker table, so a service selects it with --broker=azqueue or
// MICRO_BROKER=azqueue, or in code with micro.Broker(azqueue.NewBroker()).
//
// # Connecting
//
// Credentials, first match wins:
//
//  1. options: the last of ConnectionString, SharedKey, SASToken and
//     TokenCredential;
//  2. AZURE_STORAGE_CONNECTION_STRING;
//  3. AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY, or with
//     AZURE_STORAGE_SAS_TOKEN (the Azure CLI's names);
//  4. AZURE_STORAGE_ACCOUNT alone: Microsoft Entra ID, with azidentity's
//     DefaultAzureCredential, which finds environment credentials
//     (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET), workload
//     identity (AZURE_FEDERATED_TOKEN_FILE), managed identity or the Azure
//     CLI's login, as every Azure SDK does.
//
// Connection strings may hold AccountName, AccountKey,
// SharedAccessSignature, QueueEndpoint, DefaultEndpointsProtocol,
// EndpointSuffix, or just UseDevelopmentStorage=true (Azurite on
// 127.0.0.1:10001); the other services' endpoints the Azure portal adds are
// ignored, and anything else is an error naming the part. broker.Addrs
// (--broker_address) replaces the queue endpoint.
//
// With Entra ID, requests carry a bearer token for StorageScope, over
// HTTPS only. Connect fetches the first token; the broker renews it halfway
// through its life (five minutes ahead for tokens of ten minutes or more)
// and, when the identity endpoint fails, keeps using the current token
// and retries with pauses growing to 30s, for as long as it is connected.
// The identity needs the DataRole on the account: publishing lists,
// creates and writes queues, and subscribing also sets queue metadata and
// receives, updates and deletes messages.
//
// Connect makes one authenticated request (listing at most one queue) and
// says what is wrong when it fails, in one line: endpoint unreachable, no
// answer in time, authentication failed; with Entra ID also no credential
// found, the identity endpoint failed, the token was refused (with the
// service's reason) or the identity lacks the DataRole. Publish and
// Subscribe before Connect return ErrNotConnected; Connect and Disconnect
// are idempotent. No key, SAS token, connection string or Entra ID token
// appears in any log line or error: requests go through a pipeline without
// the SDK's request logger, service errors are reduced to operation,
// queue, status and error code, and identity errors are cut to one line
// with anything shaped like a token blanked out.
//
// # Tunables
//
// Every tunable is an option; Settings lists them with their environment
// variable (prefix AZQUEUE_), default and range. An option given in code
// wins over the environment, which wins over the default. Subscribe options
// have server.SubscriberOption twins (SubscriberBatchSize, ...) for
// micro.RegisterSubscriber; publish options have client.PublishOption twins
// (ClientMessageTTL, ClientDelay) for micro.NewEvent. The environment is
// read by Subscribe for a subscription's tunables and by Connect for the
// others, the publish ones included (a publish reads only its own options).
// Values out of range are rejected by the call that uses them (Init,
// Connect, Subscribe, Publish) with an error giving the range.
//
// # Topics, groups and queues
//
// A subscription is a (topic, group) pair. The group is go-micro's queue
// option (broker.Queue, server.SubscriberQueue); without one, a
// subscription joins the topic's DefaultGroup. Subscribers in one group
// compete for its messages; every group of a topic receives every message.
// This differs from go-micro's default for brokers such as http and nats,
// where subscribers without a queue each receive every message: on Azure a
// queue is the unit of delivery, so "everyone gets a copy" means "everyone
// subscribes with their own group".
//
// Each (topic, group) is one Azure queue, named by a deterministic rule (see
// queueNameFor): "<topic>-<group>" when both are plain lowercase names, else
// a readable prefix of each plus a 10-character hash of the exact pair, so
// two different pairs never share a queue. Names are valid queue names of at
// most 56 characters, leaving room for the "-poison" suffix. The queue's
// metadata records the exact topic and group (azqueuetopic, azqueuegroup,
// URL path-escaped). Queues are created on first use.
//
// Publish enqueues into every queue the topic's groups have claimed, found
// by listing the queues that start with the topic's prefix and keeping those
// whose metadata names the topic; the list is cached for QueueCacheTTL, and
// a Subscribe in the same process refreshes it. A partial failure returns an
// error naming the failed queues.
//
// Subscribe claims its group's queue (metadata azqueueclaimed, the time of
// the claim): from then on the group receives a copy of every message
// published to the topic, whether or not its subscribers run, until it is
// retired with RetireGroup, which deletes its queue (and its poison queue
// when asked). Publishers in other processes stop feeding a retired group
// within their QueueCacheTTL; a publish that meets the deleted queue lists
// the topic's queues again and publishes to those, never re-creating the
// deleted queue. Retire a group once its subscribers have stopped for good:
// a running subscriber creates its queue again.
//
// Before any group has subscribed, a publish to a topic without queues
// creates the default group's queue, unclaimed, and messages wait there. The
// first group to subscribe, whatever its name, claims its own queue (the
// unclaimed queue itself, for the default group) and its subscriptions move
// the waiting messages into the claimed queues, copy first, then delete, so
// a crash in between duplicates rather than loses. Once a group has claimed
// a queue, publishers send nothing more to the unclaimed one, and its
// drainers delete it once it is empty and QueueCacheTTL + PublishTimeout
// have passed since their claim: the longest a publisher may go on sending
// to it from a list cached before the claim. After the deletion such a
// publish finds the queue gone and lists again. The bound holds when every
// process of a stack has the same QueueCacheTTL (one environment for the
// stack); a publisher trusting its list for longer could land a message in
// the moment between the drainers' last empty poll and the deletion, and
// lose it. Queues made by versions of this broker before claims existed
// count as unclaimed until a subscriber of their group starts.
//
// # Wire format
//
// A message is a JSON envelope, ASCII only (non-ASCII characters are \u
// escaped), carrying go-micro's headers and the body in base64:
//
//	{"azqueue":1,"headers":{"Content-Type":"application/grpc+proto","Micro-Id":"…","Micro-Topic":"…"},"body":"<base64>"}
//
// Publish adds a Micro-Id header (a UUID) when the message has none. With
// Base64Messages the whole envelope is base64 encoded, the default encoding
// of Azure Functions' queue trigger; receiving accepts both forms. The text
// is checked against the service's 64 KiB limit before sending: a message
// too large fails with ErrMessageTooLarge and both sizes.
//
// On receive, headers are restored and enriched with Azqueue-Message-Id,
// Azqueue-Dequeue-Count, Azqueue-Insertion-Time (RFC 3339) and
// Azqueue-Queue; the go-micro server hands them to handlers as metadata. A
// text that is not an envelope (written by another tool) is delivered as
// the raw body with Content-Type RawContentType (default application/json,
// which go-micro decodes into the handler's proto message). A text that
// starts like an envelope but cannot be decoded goes to the poison queue
// with the reason.
//
// # Receiving
//
// Each subscription dequeues up to BatchSize messages at a time (default 32,
// the service's most) and runs up to Concurrency handlers (default
// BatchSize). It holds at most Concurrency + BatchSize messages: those its
// handlers run on, and at most one batch fetched ahead while they work, so
// that a busy subscription asks for whole batches (one small request per
// finished handler would halve its throughput). The default batch is as many
// as one request can bring, because each dequeue is a billable transaction,
// a round trip and work for the service: halving the batch doubles them
// (BENCHMARKS.md measures what that costs). A smaller BatchSize or
// Concurrency holds fewer messages and fetches fewer ahead. A message
// waiting for a handler has its lease renewed like a running one, so none
// waits in a buffer while its lease runs down, and Unsubscribe hands waiting
// messages straight back.
//
// A dequeued message is leased for VisibilityTimeout (default 30s); while it
// waits for a handler, while the handler runs and while it is moved to the
// poison queue, the lease is renewed when half of its time is left, always
// with the newest pop receipt. The lease's time is measured from when the
// request that set it was sent (the service's next-visible time is on its
// own clock and has one-second resolution). A renewal that fails (refused,
// unanswered, late) is tried again soon, after a quarter of the time left
// (at most 2s, jittered), not half a lease later, and each try is bounded by
// the time left less a reserve for one more try; so several failed or slow
// renewals in a row keep the lease and no other consumer sees the message.
// Only the service can say a lease is lost (the message was deleted, or
// another consumer took it and its receipt is newer): that stops renewal, is
// counted and logged once, and the later Ack returns ErrLeaseLost. A message
// whose lease is found lost before a handler is free for it is not handled
// here: another consumer may have it. A renewal whose answer is lost
// although the service applied it leaves the broker without the new receipt:
// the lease is then lost, and the message is delivered again once that
// renewal's visibility ends.
//
// With AutoAck (go-micro's default) the message is deleted only after its
// handler returned nil. When the handler fails or panics (the panic is
// recovered), the message becomes visible again after an exponential,
// jittered delay based on its dequeue count (RetryDelay, default 1s doubling
// up to 5m) and is not deleted; the envelope records the error. With
// broker.DisableAutoAck, Event.Ack deletes; the event is an Event, whose
// Nack, Extend, MessageID and DequeueCount a handler reaches by type
// assertion.
//
// Before its handler runs, a message delivered more than MaxDequeueCount
// times (default 5) moves to the "<queue>-poison" queue as a PoisonRecord
// with the reason, the last error and the original text, and is then deleted
// from its queue, in that order, so a crash in between duplicates it and
// never loses it. Poison records never expire. A delivery that a graceful
// stop handed back before any handler saw the message does not count: the
// envelope counts hand-backs ("handBacks"), so rolling restarts do not push
// healthy messages towards the poison queue. (A foreign text has no envelope
// to count them in; its hand-backs count.) The reason always says why: the
// last handler error, or, when no handler failed, that every counted
// delivery ended without an answer (a lost lease: a handler slower than its
// lease could be renewed, or a consumer that stopped without handing the
// message back).
//
// What can never succeed is not retried: it goes to the poison queue on its
// first delivery, with the cause as the reason. That is a handler error
// marked by Permanent (errors.As finds it; through go-micro's server, which
// passes its subscribers' errors on as text, its text does), and, for
// subscribers registered with go-micro's gRPC server
// (micro.RegisterSubscriber), a message the server cannot decode for its
// Content-Type (random bytes, a proto body labelled JSON, a Content-Type
// without a codec). The server returns those errors before any handler runs,
// without its "subscriber error" prefix, and the broker recognises its
// handler; nothing has to be added to a service. Handler errors, panics
// included, keep their MaxDequeueCount deliveries. Subscribers of go-micro's
// mucp server get the retries for both.
//
// OnPoison calls back on every message moved to a poison queue (topic,
// group, message id, reason, dequeue count), and Stats counts them
// (Poisoned). Once their cause is fixed, RequeuePoisoned moves a group's
// poison records back to its queue: each original text is enqueued again as
// a new message, then its record is deleted.
//
// Polling: immediately again after a full batch, and while answers come
// back full the next dequeue goes out as soon as room for a whole batch is
// free, without waiting for those in flight. One dequeue at a time would
// cap a subscription at BatchSize messages per round trip (at most 1,067 a
// second at defaults and 30 ms) whatever its Concurrency; this way the
// room, Concurrency + BatchSize, sets how many messages are in flight, so
// raising Concurrency raises what a long round trip allows. Otherwise one
// dequeue at a time, with a randomized exponential pause: a bound doubling
// from the minimum (default 100ms) to the maximum (default 10s) of
// PollInterval, each pause drawn from 50-100% of it (never below the
// minimum) and from 90-100% of the maximum once there, so an idle
// subscription at defaults makes at most 60/9 = 6.7 requests a minute. A
// failing poll (service unreachable, throttling, authentication refused)
// backs off from ten times the minimum to the maximum, or 10s if that is
// longer, so at defaults it costs no more requests than an idle queue and
// resumes within 10s of the service's return; such errors are logged at
// most every 30s with a count. A publish from this process that reached a
// queue it consumes wakes the poller at once (a failed one does not, so
// that it cannot defeat the backoff).
//
// Shutdown: Unsubscribe stops polling (dequeues in flight get 2s to finish
// and their messages are handed straight back), lets running handlers finish
// for up to DrainTimeout while still renewing their leases, and makes
// messages fetched but not started visible again at once. Disconnect does
// this for every subscription, then logs the counters; a Subscribe that
// was still making its queue ready when Disconnect began returns
// ErrNotConnected rather than polling unseen. Both are idempotent and safe
// to call while handlers run, so a go-micro server's graceful stop loses
// nothing and strands no lease.
//
// # Publishing
//
// MessageTTL (default 7 days; NeverExpire for never) and Delay (initial
// invisibility, below the TTL) are publish options; the service counts both
// in whole seconds, and the broker rounds up rather than down. The publish
// context's deadline is honoured (go-micro clients pass it with
// client.PublishContext); without one, PublishTimeout bounds the call. A
// publish that fails after its request reached the service (a deadline
// passing mid-request) may still have enqueued the message, and one whose
// answer was lost and was retried may have enqueued it twice: like every
// at-least-once system, the broker can duplicate but does not lose, and
// Micro-Id lets handlers spot duplicates.
//
// The SDK's retry policy turns a caller's deadline into per-try timeouts cut
// to whole seconds, so that less than a second left failed every try
// without sending it; the broker's pipeline hides the deadline from that
// policy and enforces it itself.
//
// # Failures, throttling and lost answers
//
// The SDK sends each request once; the broker retries what may succeed
// later (no answer, a 5xx answer such as 503 ServerBusy or 500
// OperationTimedOut): after a jittered pause doubling from 100ms to 2s,
// never shorter than the service's Retry-After, at most 5 tries, within
// the request's deadline. The poll loop and renewals retry on their own
// terms (above); a failing poll also waits at least Retry-After. So under
// throttling every kind of request backs off and the request rate falls
// instead of multiplying. The log says once that the service is throttling
// and once that it stopped, not once per refused request; Stats.Throttled
// counts the refusals.
//
// A request whose answer is lost may have been applied. A delete retried
// after a lost answer finds the message gone ("message not found"): that
// counts as done, not as a lost lease. A put retried after a lost answer
// may enqueue the message twice, with the same text and so the same
// Micro-Id: handlers that must not do a job twice deduplicate on it (at
// least once, never lost).
//
// # Observability
//
// (*Broker).Stats returns counters (published, delivered, acked, retried,
// poisoned, renewals, leases lost, polls, empty polls, errors, requests,
// request retries, throttled requests). WithObserver makes the broker tell
// an Observer the same, labelled with topic, group and queue, plus each
// request's operation and answer, handler durations, each delivery's age
// and the queue's sampled depth (DepthSampleInterval): package
// azqueueprom implements it with Prometheus, and this package imports no
// metrics library. Connected reports what a readiness probe needs.
//
// Publishing and processing are OpenTelemetry spans of the global
// TracerProvider (a no-op until the application installs one): the
// envelope carries the publish span's W3C trace context, each delivery's
// process span is its child, and the handler's message carries the
// process span's context (scope TracerName; attributes of OpenTelemetry's
// messaging conventions, with messaging.system MessagingSystem).
package azqueue
