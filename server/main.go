// Command server runs the Example go-micro service: the Call, Stream and
// PingPong RPCs, plus a subscriber logging the example.Message events
// published to --topic.
//
// Registry and broker default to etcd and Azure Storage Queues; go-micro's
// own flags and environment choose others (see --help), e.g.
//
//	server --registry_address=127.0.0.1:2379 --broker=memory
//
// SIGINT, SIGTERM or SIGQUIT deregisters the service and exits with
// status 0; a stop longer than --shutdown_timeout exits with status 1.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/micro/cli/v2"
	"github.com/micro/go-micro/v2"
	grpcclient "github.com/micro/go-micro/v2/client/grpc"
	"github.com/micro/go-micro/v2/config/cmd"
	"github.com/micro/go-micro/v2/logger"
	"github.com/micro/go-micro/v2/server"
	grpcserver "github.com/micro/go-micro/v2/server/grpc"
	prom "github.com/micro/go-plugins/wrapper/monitoring/prometheus/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue"
	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/azqueueprom"
	"github.com/poc-go-micro/poc-go-micro/internal/etcdregistry"
	"github.com/poc-go-micro/poc-go-micro/internal/microcli"
	"github.com/poc-go-micro/poc-go-micro/internal/tracing"
	"github.com/poc-go-micro/poc-go-micro/internal/version"
	"github.com/poc-go-micro/poc-go-micro/proto/example"
	"github.com/poc-go-micro/poc-go-micro/server/handler"
	"github.com/poc-go-micro/poc-go-micro/server/monitor"
	"github.com/poc-go-micro/poc-go-micro/server/subscriber"
)

var (
	topic           string
	streamMaxCount  int64
	subscriberQueue string
	shutdownTimeout time.Duration
	failMatching    string
	handleDelay     time.Duration
	maxMessageSize  int
	metricsAddress  string
)

// flags are the server's own; go-micro adds its --registry, --broker,
// --server_name and the rest.
var flags = []cli.Flag{
	&cli.StringFlag{
		Name:        "topic",
		EnvVars:     []string{"POC_TOPIC"},
		Value:       example.EventsTopic,
		Usage:       "topic whose example.Message events the server subscribes to and logs",
		Destination: &topic,
	},
	&cli.Int64Flag{
		Name:        "stream_max_count",
		EnvVars:     []string{"POC_STREAM_MAX_COUNT"},
		Value:       handler.DefaultMaxStreamCount,
		Usage:       "largest count Example.Stream accepts; larger requests get a BadRequest error",
		Destination: &streamMaxCount,
	},
	&cli.IntFlag{
		Name:        "max_message_size",
		EnvVars:     []string{"POC_MAX_MESSAGE_SIZE"},
		Value:       handler.DefaultMaxMessageSize,
		Usage:       "largest gRPC message, in bytes, the server receives or sends; a larger request fails with ResourceExhausted before it is read, which bounds the memory one call can take",
		Destination: &maxMessageSize,
	},
	&cli.StringFlag{
		Name:        "subscriber_queue",
		EnvVars:     []string{"POC_SUBSCRIBER_QUEUE"},
		Usage:       "queue (consumer group) of the subscriber; empty means the broker's default",
		Destination: &subscriberQueue,
	},
	&cli.DurationFlag{
		Name:        "shutdown_timeout",
		EnvVars:     []string{"POC_SHUTDOWN_TIMEOUT"},
		Value:       45 * time.Second,
		Usage:       "bound on stopping after SIGINT, SIGTERM or SIGQUIT (above the broker's 30s handler drain); past it the server exits with status 1, perhaps still registered",
		Destination: &shutdownTimeout,
	},
	&cli.StringFlag{
		Name:        "fail_events_matching",
		EnvVars:     []string{"POC_FAIL_EVENTS_MATCHING"},
		Usage:       "fault injection for demos and tests: the subscriber fails every event whose text contains this string, so the broker retries it and finally moves it to the poison queue; empty fails none",
		Destination: &failMatching,
	},
	&cli.StringFlag{
		Name:        "metrics_address",
		EnvVars:     []string{"POC_METRICS_ADDRESS"},
		Usage:       "host:port to serve Prometheus /metrics, /healthz and /readyz on over HTTP; empty serves none",
		Destination: &metricsAddress,
	},
	&cli.StringFlag{
		Name:  probeFlag,
		Usage: "instead of serving, ask this URL (such as http://127.0.0.1:9100/readyz) and exit 0 if it answers 200, else 1: the health check of an image without a shell",
	},
	&cli.DurationFlag{
		Name:        "handle_delay",
		EnvVars:     []string{"POC_HANDLE_DELAY"},
		Usage:       "fault injection for demos and tests: the subscriber spends this long on every event (a slow handler), so the broker must keep renewing its lease; 0 adds nothing",
		Destination: &handleDelay,
	},
}

// errLog reports fatal errors on stderr.
var errLog = microcli.ErrorLog("server")

func main() {
	if url, ok := probeArgument(os.Args[1:]); ok {
		if err := monitor.Probe(url, probeTimeout); err != nil {
			errLog.Fatalf("%v", err)
		}
		return
	}
	// The service stops when this context is cancelled. go-micro's own
	// signal handling would do the same but cannot bound the stop, which
	// waits for deregistration (with etcd unreachable, up to the registry
	// timeout) and then for running handlers and the broker's drain.
	stopping, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGQUIT)
	defer stop()

	service := micro.NewService(
		// Server and client go first: later options configure the server
		// and client that exist when they run.
		micro.Server(grpcserver.NewServer()),
		micro.Client(grpcclient.NewClient()),
		micro.Name(example.ServiceName),
		micro.Version(version.Version),
		micro.Broker(azqueue.NewBroker()),
		// go-micro's etcd registry, except that registering never waits
		// on an unreachable etcd past the registry timeout, or at all once
		// the server is stopping, and resumes within a second of etcd's
		// return (see etcdregistry).
		micro.Registry(etcdregistry.NewRegistry(etcdregistry.StopRegisteringWhen(stopping))),
		micro.Context(stopping),
		micro.HandleSignal(false),
		// A command line of our own, for the description in --help; it
		// must precede Flags, which adds to it.
		micro.Cmd(cmd.NewCmd(
			cmd.Description("the Example service: Call, Stream and PingPong RPCs, and a subscriber logging --topic's events"),
			cmd.Version(version.Version),
		)),
		micro.Flags(flags...),
	)
	if !microcli.Init(service, checkFlags) {
		return
	}
	logger.Infof("%s version %s", service.Server().Options().Name, version.Version)
	if failMatching != "" {
		logger.Warnf("fault injection: failing every event whose text contains %q (--fail_events_matching)", failMatching)
	}
	if handleDelay > 0 {
		logger.Warnf("fault injection: spending %s on every event (--handle_delay)", handleDelay)
	}

	// go-micro's gRPC server accepts 4 MiB messages by default and reads a
	// message whole before its handler sees it: a client could make it
	// buffer 4 MiB per concurrent call, for an API whose largest valid
	// request is about 1 KiB.
	if err := service.Server().Init(grpcserver.MaxMsgSize(maxMessageSize)); err != nil {
		errLog.Fatalf("set the largest gRPC message to %d bytes: %v", maxMessageSize, err)
	}
	traces, err := tracing.Setup(service.Server().Options().Name)
	if err != nil {
		errLog.Fatalf("%v", err)
	}
	traces.Wrap(service)
	ready := &monitor.Readiness{}
	var metrics *monitor.Server
	if metricsAddress != "" {
		metrics = serveMetrics(service, ready)
	}
	// Wrapped here, after Init, whichever registry the flags chose.
	if err := service.Server().Init(server.Registry(ready.Registry(service.Server().Options().Registry))); err != nil {
		errLog.Fatalf("watch the registrations for /readyz: %v", err)
	}

	// Register after Init: go-micro's --server flag may have replaced the
	// server, and the topic is a flag.
	if err := example.RegisterExampleHandler(service.Server(), handler.New(handler.MaxStreamCount(streamMaxCount))); err != nil {
		errLog.Fatalf("register the Example handler: %v", err)
	}
	events := subscriber.Recorder{FailMatching: failMatching, Delay: handleDelay}
	if err := micro.RegisterSubscriber(topic, service.Server(), events.Handle, subscriberOptions()...); err != nil {
		errLog.Fatalf("subscribe to topic %q: %v", topic, err)
	}

	context.AfterFunc(stopping, func() {
		ready.Stopping()
		stop() // a second signal kills at once
		time.AfterFunc(shutdownTimeout, func() {
			errLog.Fatalf("stop not finished after --shutdown_timeout (%s), exiting anyway, perhaps still registered (is the registry reachable?); received %d events", shutdownTimeout, events.Count())
		})
	})
	// Run returns once stopping is cancelled, after deregistering.
	if err := service.Run(); err != nil {
		errLog.Fatalf("run: %v", err)
	}
	// go-micro's server disconnects the broker in the background after Run
	// returns; wait for it, so running handlers finish and unstarted
	// messages go back to the queue before the process exits. (When the
	// registry is unreachable, deregistration fails before the server
	// unsubscribes, and this is what drains the subscriptions.)
	if err := service.Options().Broker.Disconnect(); err != nil {
		logger.Errorf("disconnect broker: %v", err)
	}
	if metrics != nil {
		if err := metrics.Close(5 * time.Second); err != nil {
			logger.Errorf("%v", err)
		}
	}
	flush, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := traces.Shutdown(flush); err != nil {
		logger.Errorf("export traces: %v", err)
	}
	cancel()
	if failMatching != "" {
		logger.Infof("stopped: received %d events on topic %q, failed %d deliveries on purpose (--fail_events_matching)", events.Count(), topic, events.Failed())
		return
	}
	logger.Infof("stopped: received %d events on topic %q", events.Count(), topic)
}

// checkFlags validates the server's own flags once they are parsed.
func checkFlags(*cli.Context) error {
	if topic == "" {
		return fmt.Errorf("--topic must not be empty")
	}
	if streamMaxCount < 0 {
		return fmt.Errorf("--stream_max_count must not be negative, got %d", streamMaxCount)
	}
	if maxMessageSize < handler.MinMaxMessageSize {
		return fmt.Errorf("--max_message_size must be at least %d bytes (a request with the longest name), got %d", handler.MinMaxMessageSize, maxMessageSize)
	}
	if shutdownTimeout <= 0 {
		return fmt.Errorf("--shutdown_timeout must be positive, got %s", shutdownTimeout)
	}
	if handleDelay < 0 {
		return fmt.Errorf("--handle_delay must not be negative, got %s", handleDelay)
	}
	return nil
}

// subscriberOptions turns --subscriber_queue into subscriber options.
func subscriberOptions() []server.SubscriberOption {
	if subscriberQueue == "" {
		return nil
	}
	return []server.SubscriberOption{server.SubscriberQueue(subscriberQueue)}
}

// probeFlag is the flag that makes the binary a health probe; probeTimeout
// bounds the probe's request.
const (
	probeFlag    = "probe"
	probeTimeout = 5 * time.Second
)

// probeArgument returns the URL of --probe=URL or --probe URL, if args
// have it: the probe runs before go-micro parses the command line, which
// would start the service.
func probeArgument(args []string) (string, bool) {
	for i, a := range args {
		for _, prefix := range []string{"--" + probeFlag, "-" + probeFlag} {
			if url, ok := strings.CutPrefix(a, prefix+"="); ok {
				return url, true
			}
			if a == prefix && i+1 < len(args) {
				return args[i+1], true
			}
		}
	}
	return "", false
}

// serveMetrics makes the broker and the RPC handlers export Prometheus
// metrics and serves them, with /healthz and /readyz, on --metrics_address.
func serveMetrics(service micro.Service, ready *monitor.Readiness) *monitor.Server {
	b := service.Options().Broker
	if c, ok := b.(interface{ Connected() bool }); ok {
		ready.Connected = c.Connected
	}
	if _, ok := b.(*azqueue.Broker); ok {
		observer, err := azqueueprom.New(prometheus.DefaultRegisterer)
		if err != nil {
			errLog.Fatalf("%v", err)
		}
		if err := b.Init(azqueue.WithObserver(observer)); err != nil {
			errLog.Fatalf("export the broker's metrics: %v", err)
		}
	}
	opts := service.Server().Options()
	rpc := prom.NewHandlerWrapper(prom.ServiceName(opts.Name), prom.ServiceVersion(opts.Version), prom.ServiceID(opts.Id))
	if err := service.Server().Init(server.WrapHandler(rpc)); err != nil {
		errLog.Fatalf("export the RPC metrics: %v", err)
	}
	metrics, err := monitor.Listen(metricsAddress, monitor.Handler(prometheus.DefaultGatherer, ready))
	if err != nil {
		errLog.Fatalf("--metrics_address: %v", err)
	}
	logger.Infof("serving %s, %s and %s on http://%s", monitor.PathMetrics, monitor.PathHealthz, monitor.PathReadyz, metrics.Addr())
	return metrics
}
