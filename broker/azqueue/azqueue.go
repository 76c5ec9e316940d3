package azqueue

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/Azure/azure-pipeline-go/pipeline"
	"github.com/Azure/azure-storage-queue-go/azqueue"
	"github.com/micro/go-micro/v2/broker"
	"github.com/micro/go-micro/v2/config/cmd"
	"github.com/micro/go-micro/v2/logger"
	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage"
)

func init() {
	cmd.DefaultBrokers["azqueue"] = NewBroker
}

// ErrNotConnected is returned by Publish and Subscribe before Connect.
var ErrNotConnected = errors.New("azqueue: not connected: call Connect first")

// storageServiceKey injects a ready storage.Service; unit tests use it to
// run the broker on a fake.
const storageServiceKey optionKey = "storage service"

// Broker is a go-micro broker over Azure Storage Queues. NewBroker returns
// one as a broker.Broker; type-assert to *Broker to reach Stats.
type Broker struct {
	connMu   sync.Mutex // serialises Connect and Disconnect
	mu       sync.RWMutex
	opts     broker.Options
	svc      storage.Service // nil while disconnected
	endpoint string          // redacted, for Address and messages
	// stopRenewal stops renewing the connection's Entra ID token.
	stopRenewal func()
	cfg         brokerConfig
	directory   *queueDirectory
	subs        map[*subscription]struct{}
	// disconnecting is set while Disconnect unsubscribes the subscriptions
	// it found, so that none joins them unseen and keeps polling.
	disconnecting bool
	stats         counters
	// observer is told what the broker does (WithObserver); set at
	// Connect, NoObserver without the option.
	observer Observer
}

// NewBroker returns an Azure Storage Queues broker. It reads its
// credentials when it connects: see the package documentation for the
// order of options and environment variables.
func NewBroker(opts ...broker.Option) broker.Broker {
	b := &Broker{opts: broker.Options{Context: context.Background()}, subs: make(map[*subscription]struct{}), observer: NoObserver{}}
	for _, o := range opts {
		o(&b.opts)
	}
	return b
}

// Init applies options and checks the broker-wide tunables; when they are
// out of range it returns the error and leaves the options as they were.
func (b *Broker) Init(opts ...broker.Option) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	next := b.opts
	for _, o := range opts {
		o(&next)
	}
	if _, err := resolveBroker(next.Context); err != nil {
		return err
	}
	b.opts = next
	return nil
}

// Options returns the broker's options.
func (b *Broker) Options() broker.Options {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.opts
}

// Address returns the queue endpoint, without any credential.
func (b *Broker) Address() string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.endpoint != "" {
		return b.endpoint
	}
	if len(b.opts.Addrs) > 0 {
		if u, err := parseEndpoint(b.opts.Addrs[0]); err == nil {
			return u.Redacted()
		}
	}
	return ""
}

// String returns "azqueue", the name --broker selects it by.
func (b *Broker) String() string { return "azqueue" }

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats { return b.stats.snapshot() }

// Connect resolves the credentials and makes one authenticated request, so
// that a wrong endpoint or key fails here with an error saying which.
// Connecting a connected broker does nothing.
func (b *Broker) Connect() error {
	b.connMu.Lock()
	defer b.connMu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.svc != nil {
		return nil
	}
	cfg, err := resolveBroker(b.opts.Context)
	if err != nil {
		return err
	}
	b.observer = observerOf(b.opts)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.connectTimeout)
	defer cancel()
	conn, err := b.newService(ctx, cfg)
	if err != nil {
		return err
	}
	svc := withRetries(conn.svc, &retrier{stats: &b.stats, throttle: &throttleWatch{stats: &b.stats}})
	if err := svc.Ping(ctx); err != nil {
		conn.stopRenewal()
		if conn.token && storage.IsAuth(err) {
			return describeTokenRefusal(conn.endpoint, err)
		}
		return describeConnectError(conn.endpoint, err)
	}
	b.svc, b.endpoint, b.cfg, b.stopRenewal = svc, conn.endpoint, cfg, conn.stopRenewal
	b.directory = newQueueDirectory(svc, cfg.cacheTTL)
	return nil
}

// describeConnectError says in words what a failed Connect means.
func describeConnectError(endpoint string, err error) error {
	switch {
	case storage.IsAuth(err):
		return fmt.Errorf("azqueue: connect to %s: authentication failed, check the account name and key or the SAS token: %w", endpoint, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("azqueue: connect to %s: no answer in time: %w", endpoint, err)
	case storage.IsTransport(err):
		return fmt.Errorf("azqueue: connect to %s: endpoint unreachable: %w", endpoint, err)
	default:
		return fmt.Errorf("azqueue: connect to %s: %w", endpoint, err)
	}
}

// connection is what newService builds.
type connection struct {
	svc      storage.Service
	endpoint string // redacted, for messages
	// token: requests carry Entra ID tokens, which stopRenewal stops
	// renewing (it does nothing for the other credentials).
	token       bool
	stopRenewal func()
}

// newService builds the storage client from the options and environment;
// with an Entra ID credential it fetches the first token within ctx.
// Called with b.mu held.
func (b *Broker) newService(ctx context.Context, cfg brokerConfig) (connection, error) {
	conn := connection{endpoint: "fake", stopRenewal: func() {}}
	if svc, ok := b.opts.Context.Value(storageServiceKey).(storage.Service); ok {
		conn.svc = svc
		return conn, nil
	}
	creds, err := b.credentials()
	if err != nil {
		return connection{}, err
	}
	endpoint := *creds.Endpoint
	conn.endpoint = creds.Endpoint.Redacted()
	var credential azqueue.Credential
	switch {
	case creds.AccountKey != "":
		key, err := azqueue.NewSharedKeyCredential(creds.AccountName, creds.AccountKey)
		if err != nil {
			return connection{}, fmt.Errorf("azqueue: account key for %q is not valid base64", creds.AccountName)
		}
		credential = key
	case creds.Token != nil:
		if endpoint.Scheme != "https" {
			return connection{}, fmt.Errorf("azqueue: connect to %s: Entra ID tokens are sent over HTTPS only: give an https queue endpoint", conn.endpoint)
		}
		renewer := newTokenRenewer(creds.Token, cfg.connectTimeout)
		token, err := renewer.start(ctx)
		if err != nil {
			renewer.stop()
			return connection{}, describeTokenFetchError(conn.endpoint, err)
		}
		credential, conn.token, conn.stopRenewal = token, true, renewer.stop
	default:
		credential = azqueue.NewAnonymousCredential()
		endpoint.RawQuery = creds.SAS
	}
	p := storage.NewPipeline(storage.PipelineConfig{
		Credential: credential,
		Retry:      retryOptions,
		HTTPClient: b.httpClient(),
		Policies:   []pipeline.Factory{storage.ObserveRequests(&b.stats.requests, b.requestObserver())},
	})
	conn.svc = storage.NewService(endpoint, p)
	return conn, nil
}

// requestObserver returns what tells the observer how each request went,
// or nil without one: naming a request's operation is then not worth its
// cost.
func (b *Broker) requestObserver() func(op string, status int, code string) {
	if _, none := b.observer.(NoObserver); none {
		return nil
	}
	return b.observer.Requested
}

// retryOptions make the SDK send each request once, bounded by TryTimeout:
// the broker retries itself (see retrier).
var retryOptions = azqueue.RetryOptions{
	MaxTries:   1,
	TryTimeout: 20 * time.Second,
}

// httpClient returns the HTTP client option, else one honouring
// broker.TLSConfig, else the default.
func (b *Broker) httpClient() *http.Client {
	if c, ok := b.opts.Context.Value(httpClientKey).(*http.Client); ok && c != nil {
		return c
	}
	c := storage.NewHTTPClient()
	if b.opts.TLSConfig != nil {
		c.Transport.(*http.Transport).TLSClientConfig = b.opts.TLSConfig.Clone()
	} else if b.opts.Secure {
		c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return c
}

// Connected reports whether the broker is connected and not disconnecting:
// what a readiness probe asks.
func (b *Broker) Connected() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.svc != nil && !b.disconnecting
}

// connected returns what Publish and Subscribe need, or ErrNotConnected.
func (b *Broker) connected() (storage.Service, *queueDirectory, brokerConfig, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.svc == nil {
		return nil, nil, brokerConfig{}, ErrNotConnected
	}
	return b.svc, b.directory, b.cfg, nil
}

// Disconnect unsubscribes every subscription (each drains its running
// handlers and hands back unstarted messages), logs the counters and forgets
// the connection. Disconnecting a disconnected broker does nothing; a
// second Disconnect during the first waits for it to finish.
func (b *Broker) Disconnect() error {
	b.connMu.Lock()
	defer b.connMu.Unlock()
	b.mu.Lock()
	if b.svc == nil {
		b.mu.Unlock()
		return nil
	}
	b.disconnecting = true
	subs := make([]*subscription, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()

	errs := make([]error, len(subs))
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Add(1)
		go func(i int, s *subscription) {
			defer wg.Done()
			errs[i] = s.Unsubscribe()
		}(i, s)
	}
	wg.Wait()

	b.mu.Lock()
	endpoint := b.endpoint
	b.stopRenewal()
	b.svc, b.directory, b.disconnecting, b.stopRenewal = nil, nil, false, nil
	b.mu.Unlock()
	logger.Infof("azqueue: disconnected from %s: %s", endpoint, b.stats.snapshot())
	return errors.Join(errs...)
}

// track and forget keep the set of live subscriptions. track refuses a
// subscription, reporting false, once the broker is disconnected or being
// disconnected.
func (b *Broker) track(s *subscription) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.svc == nil || b.disconnecting {
		return false
	}
	b.subs[s] = struct{}{}
	return true
}

func (b *Broker) forget(s *subscription) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
}

// wake tells this process's subscriptions on the named queues that a
// message was just published there, so they poll at once.
func (b *Broker) wake(queues []groupQueue) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for s := range b.subs {
		for _, q := range queues {
			if s.queue.Name() == q.name {
				s.notify()
			}
		}
	}
}
