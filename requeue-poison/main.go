// Command requeue-poison moves the messages of a topic's poison queue back
// to their queue, once the cause of their poisoning is fixed: the
// azqueue broker's RequeuePoisoned, with the same configuration as the
// other binaries (AZURE_STORAGE_CONNECTION_STRING or the other credential
// variables, MICRO_BROKER_ADDRESS). It needs no registry.
//
// It prints, on stdout:
//
//	requeued 3 messages from "example-events-default-poison" to "example-events-default"
//	skipped 5e1…: not a poison record this broker can read (…)
//
// and exits with status 1 when a record could not be moved or the broker
// could not connect; skipped records stay in the poison queue.
package main

import (
	"context"
	"fmt"

	"github.com/micro/cli/v2"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue"
	"github.com/poc-go-micro/poc-go-micro/internal/clientcmd"
	"github.com/poc-go-micro/poc-go-micro/internal/microcli"
)

var (
	settings clientcmd.Settings
	group    string
	limit    int
)

var flags = []cli.Flag{
	settings.TimeoutFlag(),
	settings.WaitFlag("the broker to connect (the queue service to answer)"),
	settings.TopicFlag("topic whose poison queue to empty"),
	&cli.StringFlag{
		Name:        "group",
		EnvVars:     []string{"POC_GROUP"},
		Value:       azqueue.DefaultGroup,
		Usage:       "subscriber group of the topic (the server's --subscriber_queue)",
		Destination: &group,
	},
	&cli.IntFlag{
		Name:        "max",
		EnvVars:     []string{"POC_MAX"},
		Usage:       "move at most this many records; 0 moves them all",
		Destination: &limit,
	},
}

var errLog = microcli.ErrorLog("requeue-poison")

func main() {
	service := clientcmd.NewService("poc.requeue-poison", "moves the messages of a topic's poison queue back to their queue", flags)
	if !settings.Init(service, checkFlags) {
		return
	}
	b, ok := service.Options().Broker.(*azqueue.Broker)
	if !ok {
		errLog.Fatalf("the broker is %s; requeue-poison works with the azqueue broker (MICRO_BROKER=azqueue)", service.Options().Broker.String())
	}
	if err := requeue(b); err != nil {
		errLog.Fatal(clientcmd.Describe(err))
	}
}

// requeue connects b (waiting for it with --wait), moves the records and
// prints what it did.
func requeue(b *azqueue.Broker) error {
	ctx := context.Background()
	if err := settings.WaitForBroker(ctx, b, errLog.Printf); err != nil {
		return err
	}
	if err := b.Connect(); err != nil {
		return err
	}
	defer b.Disconnect()
	ctx, cancel := context.WithTimeout(ctx, settings.Timeout)
	defer cancel()
	report, err := b.RequeuePoisoned(ctx, settings.Topic, group, limit)
	fmt.Printf("requeued %d messages from %q to %q\n", report.Moved, report.PoisonQueue, report.Queue)
	for _, s := range report.Skipped {
		fmt.Printf("skipped %s\n", s)
	}
	return err
}

// checkFlags validates the flags of requeue-poison.
func checkFlags() error {
	switch {
	case settings.Topic == "":
		return fmt.Errorf("--topic must not be empty")
	case limit < 0:
		return fmt.Errorf("--max must not be negative, got %d", limit)
	}
	return nil
}
