// Package clientcmd is what the client binaries share: the go-micro
// service they run as, the flags every client takes, and turning
// go-micro's errors into messages for people (see Describe).
package clientcmd

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/micro/cli/v2"
	"github.com/micro/go-micro/v2"
	grpcclient "github.com/micro/go-micro/v2/client/grpc"
	"github.com/micro/go-micro/v2/config/cmd"
	"github.com/micro/go-micro/v2/registry"
	etcdregistry "github.com/micro/go-micro/v2/registry/etcd"
	"github.com/micro/go-plugins/registry/etcd/v2"
	"go.uber.org/zap"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue"
	"github.com/poc-go-micro/poc-go-micro/internal/microcli"
	"github.com/poc-go-micro/poc-go-micro/internal/tracing"
	"github.com/poc-go-micro/poc-go-micro/internal/version"
	"github.com/poc-go-micro/poc-go-micro/proto/example"
)

const (
	// DefaultService is the name of the server the clients call unless
	// --service says otherwise.
	DefaultService = example.ServiceName

	// DefaultTimeout bounds each operation of a client unless --timeout
	// says otherwise.
	DefaultTimeout = 10 * time.Second
)

// Settings holds the command-line settings the client binaries share.
// Declare the flags that fill it with ServiceFlag, TimeoutFlag and
// WaitFlag, then call Init.
type Settings struct {
	// Service is the registered name of the server to call.
	Service string
	// Timeout bounds each operation: a unary call, a whole stream, or a
	// publish, registry look-up included.
	Timeout time.Duration
	// Wait bounds how long a client waits, before its first operation,
	// for the server to register (WaitForService) or the broker to
	// connect (WaitForBroker); 0 does not wait.
	Wait time.Duration
	// Topic is the events' topic, for the clients of the broker.
	Topic string

	// tracing is what Init set up from the OTEL_* environment.
	tracing tracing.Tracing
}

// ServiceFlag returns the --service flag (env POC_SERVICE), stored in
// s.Service.
func (s *Settings) ServiceFlag() cli.Flag {
	return &cli.StringFlag{
		Name:        "service",
		EnvVars:     []string{"POC_SERVICE"},
		Value:       DefaultService,
		Usage:       "registered name of the server to call (the server's --server_name)",
		Destination: &s.Service,
	}
}

// TimeoutFlag returns the --timeout flag (env POC_TIMEOUT), stored in
// s.Timeout.
func (s *Settings) TimeoutFlag() cli.Flag {
	return &cli.DurationFlag{
		Name:        "timeout",
		EnvVars:     []string{"POC_TIMEOUT"},
		Value:       DefaultTimeout,
		Usage:       "bound on each operation (a call, a whole stream or a publish), registry look-up included",
		Destination: &s.Timeout,
	}
}

// TopicFlag returns the --topic flag (env POC_TOPIC, default the example
// server's events topic), stored in s.Topic; usage says in --help what
// the client does with the topic.
func (s *Settings) TopicFlag(usage string) cli.Flag {
	return &cli.StringFlag{
		Name:        "topic",
		EnvVars:     []string{"POC_TOPIC"},
		Value:       example.EventsTopic,
		Usage:       usage + " (the server's --topic)",
		Destination: &s.Topic,
	}
}

// WaitFlag returns the --wait flag (env POC_WAIT), stored in s.Wait;
// forWhat says in --help what the client waits for, e.g. "the server to
// register".
func (s *Settings) WaitFlag(forWhat string) cli.Flag {
	return &cli.DurationFlag{
		Name:        "wait",
		EnvVars:     []string{"POC_WAIT"},
		Value:       DefaultWait,
		Usage:       "before the first operation, wait up to this long for " + forWhat + ", retrying with backoff; 0 fails at once",
		Destination: &s.Wait,
	}
}

// NewService returns the go-micro service a client binary runs as, named
// name, described in --help by description, and taking flags besides
// go-micro's own. Its client speaks gRPC, its broker is Azure Storage
// Queues and its registry is etcd, each changeable with go-micro's flags
// and environment (--registry, --broker, MICRO_REGISTRY_ADDRESS, ...).
// opts apply right after the client and the broker are set, so that the
// registry reaches whatever they set up.
//
// Every client has the azqueue broker, including those that only make
// RPCs and never connect it: a stack is configured with one environment
// for all its services (docker-compose.yml), and MICRO_BROKER=azqueue in it
// must name a broker every binary knows. go-micro fails at start with
// "Broker azqueue not found" otherwise.
func NewService(name, description string, flags []cli.Flag, opts ...micro.Option) micro.Service {
	// The client goes first: later options configure the client that
	// exists when they run.
	all := append([]micro.Option{micro.Client(grpcclient.NewClient()), micro.Broker(azqueue.NewBroker())}, opts...)
	all = append(all,
		micro.Name(name),
		micro.Registry(etcd.NewRegistry(etcdregistry.LogConfig(quietEtcdLog()))),
		// A command line of our own, for the description; it must precede
		// Flags, which adds to it.
		micro.Cmd(cmd.NewCmd(cmd.Description(description), cmd.Version(version.Version))),
		micro.Flags(flags...),
	)
	return micro.NewService(all...)
}

// Init parses the command line of service (see microcli.Init), checks s,
// bounds the registry look-ups of service by s.Timeout (without that, an
// unreachable etcd holds every call for the registry's own 5 s, however
// short the --timeout) and sets up tracing from the OTEL_* environment
// (see internal/tracing; Close flushes it). check, if not nil, validates
// the binary's own flags. Init reports whether the program should go on;
// false means help was printed and the program should exit with status 0.
func (s *Settings) Init(service micro.Service, check func() error) bool {
	proceed := microcli.Init(service, func(*cli.Context) error {
		if s.Timeout <= 0 {
			return fmt.Errorf("--timeout must be positive, got %s", s.Timeout)
		}
		if s.Wait < 0 {
			return fmt.Errorf("--wait must not be negative, got %s", s.Wait)
		}
		if err := service.Options().Registry.Init(registry.Timeout(s.Timeout)); err != nil {
			return fmt.Errorf("bound registry look-ups by --timeout: %w", err)
		}
		if check != nil {
			if err := check(); err != nil {
				return err
			}
		}
		t, err := tracing.Setup(service.Name())
		s.tracing = t
		return err
	})
	// Not inside microcli.Init: wrapping initialises the service again.
	if proceed {
		s.tracing.Wrap(service)
	}
	return proceed
}

// closeTimeout bounds Close's flush of the spans not exported yet.
const closeTimeout = 5 * time.Second

// Close exports the spans not exported yet; call it before exiting.
func (s *Settings) Close() {
	if s.tracing.Shutdown == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if err := s.tracing.Shutdown(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "export traces: %v\n", err)
	}
}

// quietEtcdLog is the etcd client's log configuration for the clients:
// errors only. At its default level the client writes a JSON warning to
// stderr for every failed attempt to reach etcd, burying the one-line
// error the user needs.
func quietEtcdLog() *zap.Config {
	c := zap.NewProductionConfig()
	c.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	return &c
}
