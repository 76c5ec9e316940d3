// Package etcdregistry is go-micro's etcd registry with registrations that
// survive an etcd outage: the server's node is back in its register
// interval once etcd is, and nothing waits on an unreachable etcd for
// longer than the registry timeout.
//
// go-micro v2.9.1's etcd registry renews a node's lease with
// KeepAliveOnce(context.TODO()): while etcd is down, the call waits for
// the connection, so the server's register loop stops, and so does its
// graceful stop, which goes through the same loop (a stop during an
// outage ran into the server's --shutdown_timeout and exited with status
// 1). When etcd returns, the connection comes back only at the gRPC
// client's next reconnect attempt, whose backoff grows to two minutes:
// with a register interval of 2 s and a TTL of 6 s, the node was renewed
// 5 s after a 10 s outage, and after a 20 s or 30 s outage only once its
// lease had expired, having been missing for 1 s and 3.5 s. Its etcd
// client takes no dial options, so both are fixed here rather than
// configured.
//
// The Registry registers and deregisters through an etcd client of its
// own, whose reconnect backoff is capped at one second and whose every
// request is bounded by the registry timeout. Look-ups and watches go to
// go-micro's registry unchanged. Nodes are written exactly where and as
// go-micro writes them, so clients using go-micro's registry find them.
package etcdregistry

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/coreos/etcd/clientv3"
	"github.com/coreos/etcd/etcdserver/api/v3rpc/rpctypes"
	"github.com/micro/go-micro/v2/registry"
	"github.com/micro/go-micro/v2/registry/etcd"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

const (
	// keyPrefix is where go-micro's etcd registry keeps services:
	// <keyPrefix><service>/<node id>.
	keyPrefix = "/micro/registry/"
	// defaultTimeout bounds each etcd request, as in go-micro's registry.
	defaultTimeout = 5 * time.Second
	// maxReconnectDelay caps the pause between attempts to reconnect to
	// etcd, and so how late a registration notices etcd is back.
	maxReconnectDelay = time.Second
	// defaultEndpoint is etcd's default client address.
	defaultEndpoint = "127.0.0.1:2379"
	// retryWindow is how soon after a request failed on an unreachable etcd
	// a request fails at once, while the connection is still down, rather
	// than wait out its timeout again. go-micro's server retries a failed
	// registration twice within about 100 ms and deregisters right after a
	// failed one when it stops; a later attempt, such as the next register
	// interval's, waits for etcd again.
	retryWindow = time.Second
	forever     = time.Duration(1<<63 - 1)
)

// stopKey is the options context key of StopRegisteringWhen.
type stopKey struct{}

// StopRegisteringWhen makes Register fail at once, and a Register under
// way give up, once ctx is done. A stopping server has no use for renewing
// a registration it is about to delete, and go-micro's server handles its
// stop in the loop that registers: without this, a stop during an etcd
// outage waits for the registration under way (up to three registry
// timeouts) and, as that loop picks a pending register tick as readily as
// the stop, possibly for more.
func StopRegisteringWhen(ctx context.Context) registry.Option {
	return func(o *registry.Options) {
		if o.Context == nil {
			o.Context = context.Background()
		}
		o.Context = context.WithValue(o.Context, stopKey{}, ctx)
	}
}

// Registry is a go-micro registry over etcd; see the package documentation.
// Create it with NewRegistry.
type Registry struct {
	registry.Registry // go-micro's etcd registry: look-ups and watches

	mu      sync.Mutex
	opts    registry.Options
	client  *clientv3.Client
	initErr error
	nodes   map[string]node // by etcd key
	// unreachable is the last failure to reach etcd and when it happened;
	// nil once a request succeeds.
	unreachable   error
	unreachableAt time.Time
}

// node is what the Registry last wrote for one node.
type node struct {
	lease clientv3.LeaseID // 0 when registered without a TTL
	value string
}

// NewRegistry returns the registry, configured as go-micro's etcd registry
// is: registry.Addrs (default 127.0.0.1:2379), Timeout (default 5s),
// Secure and TLSConfig; and by StopRegisteringWhen. go-micro's etcd.Auth
// reaches look-ups only.
func NewRegistry(opts ...registry.Option) registry.Registry {
	r := &Registry{Registry: etcd.NewRegistry(opts...), nodes: make(map[string]node)}
	r.initErr = r.configure(opts...)
	return r
}

// Init applies opts to both etcd clients; go-micro calls it with
// --registry_address.
func (r *Registry) Init(opts ...registry.Option) error {
	if err := r.Registry.Init(opts...); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.initErr = r.configureLocked(opts...)
	return r.initErr
}

func (r *Registry) configure(opts ...registry.Option) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.configureLocked(opts...)
}

// configureLocked applies opts and replaces the registration client.
// Called with r.mu held.
func (r *Registry) configureLocked(opts ...registry.Option) error {
	for _, o := range opts {
		o(&r.opts)
	}
	if r.opts.Timeout <= 0 {
		r.opts.Timeout = defaultTimeout
	}
	config := clientv3.Config{
		Endpoints: endpoints(r.opts.Addrs),
		// Without a dial timeout New does not wait for etcd; requests wait
		// for the connection, each within its timeout.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxReconnectDelay},
			MinConnectTimeout: r.opts.Timeout,
		})},
		LogConfig: quietLog(),
	}
	if r.opts.Secure || r.opts.TLSConfig != nil {
		config.TLS = r.opts.TLSConfig
		if config.TLS == nil {
			// go-micro's registry does the same for Secure without a
			// TLS configuration.
			config.TLS = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // matches go-micro's etcd registry
		}
	}
	client, err := clientv3.New(config)
	if err != nil {
		return fmt.Errorf("etcd registry: create the registration client: %w", err)
	}
	if r.client != nil {
		r.client.Close()
	}
	r.client = client
	return nil
}

// endpoints turns registry addresses into etcd endpoints as go-micro's
// registry does: a missing port means 2379, an unparsable address is left
// out, and none means the default.
func endpoints(addrs []string) []string {
	var eps []string
	for _, a := range addrs {
		if a == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		var addrErr *net.AddrError
		switch {
		case errors.As(err, &addrErr) && addrErr.Err == "missing port in address":
			eps = append(eps, net.JoinHostPort(a, "2379"))
		case err == nil:
			eps = append(eps, net.JoinHostPort(host, port))
		}
	}
	if len(eps) == 0 {
		return []string{defaultEndpoint}
	}
	return eps
}

// quietLog is the registration client's log configuration: errors only.
// At its default level the etcd client logs a warning for every failed
// attempt, which floods the server's log during an outage; the server
// reports a failed registration itself.
func quietLog() *zap.Config {
	c := zap.NewProductionConfig()
	c.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	return &c
}

// Options returns the registry's options.
func (r *Registry) Options() registry.Options {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.opts
}

// Register writes each node of s under a lease of the registration TTL,
// or renews the lease it wrote before; a node whose lease expired is
// written again under a new one. Each request is bounded by the registry
// timeout.
func (r *Registry) Register(s *registry.Service, opts ...registry.RegisterOption) error {
	if len(s.Nodes) == 0 {
		return errors.New("etcd registry: register: the service has no node")
	}
	var options registry.RegisterOptions
	for _, o := range opts {
		o(&options)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(retryWindow); err != nil {
		return fmt.Errorf("etcd registry: register %s: %w", s.Name, err)
	}
	stop := r.stopping()
	if err := stop.Err(); err != nil {
		return fmt.Errorf("etcd registry: register %s: stopping: %w", s.Name, err)
	}
	for _, n := range s.Nodes {
		err := r.registerNode(stop, s, n, options.TTL)
		r.noteOutcome(err)
		if err != nil {
			return fmt.Errorf("etcd registry: register %s node %s: %w", s.Name, n.Id, err)
		}
	}
	return nil
}

// usable returns why no request should be made now: a failed
// configuration, or etcd found unreachable within window and not reached
// since, with the connection still down. Called with r.mu held.
func (r *Registry) usable(window time.Duration) error {
	if r.initErr != nil {
		return r.initErr
	}
	if r.unreachable != nil && time.Since(r.unreachableAt) < window && r.client.ActiveConnection().GetState() != connectivity.Ready {
		return fmt.Errorf("etcd unreachable %s ago: %w", time.Since(r.unreachableAt).Round(time.Millisecond), r.unreachable)
	}
	return nil
}

// noteOutcome remembers whether a request reached etcd. Called with r.mu
// held.
func (r *Registry) noteOutcome(err error) {
	switch {
	case err == nil:
		r.unreachable = nil
	case isUnreachable(err):
		r.unreachable, r.unreachableAt = err, time.Now()
	}
}

// isUnreachable reports whether err says etcd could not be reached in
// time, rather than that it refused the request.
func isUnreachable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var grpcErr interface{ GRPCStatus() *status.Status }
	if errors.As(err, &grpcErr) {
		switch grpcErr.GRPCStatus().Code() {
		case codes.Unavailable, codes.DeadlineExceeded:
			return true
		}
	}
	return false
}

// stopping returns the context of StopRegisteringWhen, or one that is
// never done. Called with r.mu held.
func (r *Registry) stopping() context.Context {
	if r.opts.Context != nil {
		if ctx, ok := r.opts.Context.Value(stopKey{}).(context.Context); ok {
			return ctx
		}
	}
	return context.Background()
}

// registerNode registers one node, giving up when stop is done. Called
// with r.mu held.
func (r *Registry) registerNode(stop context.Context, s *registry.Service, n *registry.Node, ttl time.Duration) error {
	key := nodeKey(s.Name, n.Id)
	value, err := json.Marshal(&registry.Service{
		Name: s.Name, Version: s.Version, Metadata: s.Metadata, Endpoints: s.Endpoints,
		Nodes: []*registry.Node{n},
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(stop, r.opts.Timeout)
	defer cancel()

	if last, ok := r.nodes[key]; ok && last.lease != 0 {
		_, err := r.client.KeepAliveOnce(ctx, last.lease)
		switch {
		case err == nil && last.value == string(value):
			return nil
		case err == nil:
			if _, err := r.client.Put(ctx, key, string(value), clientv3.WithLease(last.lease)); err != nil {
				return err
			}
			r.nodes[key] = node{lease: last.lease, value: string(value)}
			return nil
		case !errors.Is(err, rpctypes.ErrLeaseNotFound):
			return fmt.Errorf("renew lease: %w", err)
		}
		// The lease expired while etcd could not be reached: register anew.
	}

	var putOpts []clientv3.OpOption
	var lease clientv3.LeaseID
	if seconds := int64(ttl.Seconds()); seconds > 0 {
		grant, err := r.client.Grant(ctx, seconds)
		if err != nil {
			return fmt.Errorf("grant lease: %w", err)
		}
		lease = grant.ID
		putOpts = append(putOpts, clientv3.WithLease(lease))
	}
	if _, err := r.client.Put(ctx, key, string(value), putOpts...); err != nil {
		return err
	}
	r.nodes[key] = node{lease: lease, value: string(value)}
	return nil
}

// Deregister deletes each node of s and revokes the lease it was
// registered under, each request bounded by the registry timeout. It fails
// at once while the connection to etcd is failing, or is down and no
// request has reached etcd since one failed: the lease will expire by
// itself.
func (r *Registry) Deregister(s *registry.Service, opts ...registry.DeregisterOption) error {
	if len(s.Nodes) == 0 {
		return errors.New("etcd registry: deregister: the service has no node")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	leases := make(map[string]clientv3.LeaseID, len(s.Nodes))
	for _, n := range s.Nodes {
		key := nodeKey(s.Name, n.Id)
		leases[key] = r.nodes[key].lease
		delete(r.nodes, key)
	}
	// A server deregisters as it stops: when etcd is known to be out of
	// reach, waiting out a timeout would only delay the stop, and the
	// lease expires anyway.
	if err := r.usable(forever); err != nil {
		return fmt.Errorf("etcd registry: deregister %s: %w", s.Name, err)
	}
	if state := r.client.ActiveConnection().GetState(); state == connectivity.TransientFailure {
		return fmt.Errorf("etcd registry: deregister %s: etcd unreachable (connection %s)", s.Name, state)
	}
	var errs []error
	for _, n := range s.Nodes {
		key := nodeKey(s.Name, n.Id)
		err := r.deregisterNode(key, leases[key])
		r.noteOutcome(err)
		if err != nil {
			errs = append(errs, fmt.Errorf("etcd registry: deregister %s node %s: %w", s.Name, n.Id, err))
		}
	}
	return errors.Join(errs...)
}

// deregisterNode deletes a node's key and revokes the lease it was
// registered under, if any. Called with r.mu held.
func (r *Registry) deregisterNode(key string, lease clientv3.LeaseID) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.Timeout)
	defer cancel()
	if _, err := r.client.Delete(ctx, key); err != nil {
		return err
	}
	if lease == 0 {
		return nil
	}
	if _, err := r.client.Revoke(ctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return err
	}
	return nil
}

// nodeKey is the key go-micro's etcd registry keeps a node under.
func nodeKey(service, id string) string {
	return path.Join(keyPrefix, strings.ReplaceAll(service, "/", "-"), strings.ReplaceAll(id, "/", "-"))
}
