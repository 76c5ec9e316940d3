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
	"syscall"
	"time"

	"github.com/micro/cli/v2"
	"github.com/micro/go-micro/v2"
	grpcclient "github.com/micro/go-micro/v2/client/grpc"
	"github.com/micro/go-micro/v2/config/cmd"
	"github.com/micro/go-micro/v2/logger"
	"github.com/micro/go-micro/v2/server"
	grpcserver "github.com/micro/go-micro/v2/server/grpc"
	"github.com/micro/go-plugins/registry/etcd/v2"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue"
	"github.com/poc-go-micro/poc-go-micro/internal/microcli"
	"github.com/poc-go-micro/poc-go-micro/internal/version"
	"github.com/poc-go-micro/poc-go-micro/proto/example"
	"github.com/poc-go-micro/poc-go-micro/server/handler"
	"github.com/poc-go-micro/poc-go-micro/server/subscriber"
)

var (
	topic           string
	streamMaxCount  int64
	subscriberQueue string
	shutdownTimeout time.Duration
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
}

// errLog reports fatal errors on stderr.
var errLog = microcli.ErrorLog("server")

func main() {
	// The service stops when this context is cancelled. go-micro's own
	// signal handling would do the same but cannot bound the stop, which
	// hangs for as long as etcd is unreachable if a re-registration was
	// under way (the etcd registry renews leases without a timeout).
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
		micro.Registry(etcd.NewRegistry()),
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

	// Register after Init: go-micro's --server flag may have replaced the
	// server, and the topic is a flag.
	if err := example.RegisterExampleHandler(service.Server(), handler.New(handler.MaxStreamCount(streamMaxCount))); err != nil {
		errLog.Fatalf("register the Example handler: %v", err)
	}
	var events subscriber.Recorder
	if err := micro.RegisterSubscriber(topic, service.Server(), events.Handle, subscriberOptions()...); err != nil {
		errLog.Fatalf("subscribe to topic %q: %v", topic, err)
	}

	context.AfterFunc(stopping, func() {
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
	if shutdownTimeout <= 0 {
		return fmt.Errorf("--shutdown_timeout must be positive, got %s", shutdownTimeout)
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
