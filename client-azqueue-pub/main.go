// Command client-azqueue-pub publishes example.Message events to --topic
// through go-micro's broker, Azure Storage Queues unless --broker says
// otherwise: one every --interval until SIGINT or SIGTERM, or exactly
// --count of them. It needs no registry.
//
// On success it prints, on stdout:
//
//	published "hello #1"
//	...
//	total: 3 events published to "example.events" (broker azqueue)
//
// A failed publish is one line on stderr and exit status 1: no event is
// dropped silently. With --wait it first connects the broker, retrying
// for up to that long while the queue service is not reachable yet.
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
	"github.com/micro/go-micro/v2/client"

	"github.com/poc-go-micro/poc-go-micro/internal/clientcmd"
	"github.com/poc-go-micro/poc-go-micro/internal/microcli"
	"github.com/poc-go-micro/poc-go-micro/proto/example"
)

var (
	settings clientcmd.Settings
	say      string
	interval time.Duration
	count    int
)

var flags = []cli.Flag{
	settings.TimeoutFlag(),
	settings.WaitFlag("the broker to connect (the queue service to answer)"),
	settings.TopicFlag("topic to publish to"),
	&cli.StringFlag{
		Name:        "say",
		EnvVars:     []string{"POC_SAY"},
		Value:       "hello",
		Usage:       `text of the events; each is sent as "<say> #<n>", n counting from 1`,
		Destination: &say,
	},
	&cli.DurationFlag{
		Name:        "interval",
		EnvVars:     []string{"POC_INTERVAL"},
		Value:       time.Second,
		Usage:       "pause between two events (0: none)",
		Destination: &interval,
	},
	&cli.IntFlag{
		Name:        "count",
		EnvVars:     []string{"POC_COUNT"},
		Usage:       "number of events to publish; 0 publishes until SIGINT or SIGTERM",
		Destination: &count,
	},
}

// errLog reports fatal errors on stderr.
var errLog = microcli.ErrorLog("client-azqueue-pub")

func main() {
	// Signals are caught from the start, so that one arriving early still
	// ends the program normally.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal, a second one kills at once, even while a
	// publish is being waited for.
	context.AfterFunc(ctx, stop)

	service := clientcmd.NewService("poc.client-azqueue-pub", "publishes example.Message events to a topic through go-micro's broker", flags)
	if !settings.Init(service, checkFlags) {
		return
	}

	// go-micro connects the broker on the first publish; with --wait,
	// connect it first, retrying while its backend is not up yet. A signal
	// during the wait ends the program normally, with nothing published.
	if err := settings.WaitForBroker(ctx, service.Client().Options().Broker, errLog.Printf); err != nil && ctx.Err() == nil {
		errLog.Fatal(err)
	}
	published, err := publishEvents(ctx, micro.NewEvent(settings.Topic, service.Client()))
	settings.Close()
	fmt.Printf("total: %d events published to %q (broker %s)\n", published, settings.Topic, service.Options().Broker.String())
	if err != nil {
		errLog.Fatal(clientcmd.Describe(err))
	}
}

// checkFlags validates the flags of client-azqueue-pub.
func checkFlags() error {
	switch {
	case settings.Topic == "":
		return fmt.Errorf("--topic must not be empty")
	case interval < 0:
		return fmt.Errorf("--interval must not be negative, got %s", interval)
	case count < 0:
		return fmt.Errorf("--count must not be negative, got %d", count)
	}
	return nil
}

// publishEvents publishes count events, or events until ctx is done if
// count is 0, and returns how many were published.
func publishEvents(ctx context.Context, event micro.Event) (published int, err error) {
	var wait time.Duration // none before the first event
	for n := 1; count == 0 || n <= count; n++ {
		if !pause(ctx, wait) {
			return published, nil
		}
		wait = interval
		msg := &example.Message{Say: fmt.Sprintf("%s #%d", say, n)}
		if err := publish(event, msg); err != nil {
			return published, err
		}
		published++
		fmt.Printf("published %q\n", msg.Say)
	}
	return published, nil
}

// publish publishes msg, giving up after the --timeout. It deliberately
// ignores the signal context: an event being published when the signal
// arrives is finished, not abandoned.
func publish(event micro.Event, msg *example.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), settings.Timeout)
	defer cancel()
	// go-micro's Publish does not watch ctx; the broker gets it through
	// PublishContext, and the select bounds a broker that ignores it.
	done := make(chan error, 1)
	go func() {
		done <- event.Publish(ctx, msg, client.PublishContext(ctx))
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("publish %q to %q: %w", msg.Say, settings.Topic, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("publish %q to %q: %w", msg.Say, settings.Topic, ctx.Err())
	}
}

// pause waits for d and reports whether ctx is still live afterwards.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return ctx.Err() == nil
	}
}
