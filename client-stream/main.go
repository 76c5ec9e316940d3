// Command client-stream reads a server stream of --count items from
// Example.Stream, checking they arrive as 0..count-1. With --duplex it
// also runs Example.PingPong full duplex: one goroutine sends --strokes
// pings while the main one receives the pongs, checking every stroke comes
// back in order.
//
// On success it prints one line on stdout:
//
//	stream: received 10/10 in 3.2ms
//	stream: received 10/10 in 3.2ms; duplex: 100/100 strokes in order in 12ms
//
// Any failure, a mismatch included, is one line on stderr and exit status
// 1. With --wait it first waits up to that long for the server to
// register, saying so on stderr, instead of failing at once.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/micro/cli/v2"

	"github.com/poc-go-micro/poc-go-micro/internal/clientcmd"
	"github.com/poc-go-micro/poc-go-micro/internal/microcli"
	"github.com/poc-go-micro/poc-go-micro/proto/example"
)

var (
	settings clientcmd.Settings
	count    int64
	duplex   bool
	strokes  int64
)

var flags = []cli.Flag{
	settings.ServiceFlag(),
	settings.TimeoutFlag(),
	settings.WaitFlag("the server to register"),
	&cli.Int64Flag{
		Name:        "count",
		EnvVars:     []string{"POC_COUNT"},
		Value:       10,
		Usage:       "number of items to ask Example.Stream for (the server checks the range)",
		Destination: &count,
	},
	&cli.BoolFlag{
		Name:        "duplex",
		EnvVars:     []string{"POC_DUPLEX"},
		Usage:       "also run Example.PingPong full duplex",
		Destination: &duplex,
	},
	&cli.Int64Flag{
		Name:        "strokes",
		EnvVars:     []string{"POC_STROKES"},
		Value:       100,
		Usage:       "number of pings sent with --duplex",
		Destination: &strokes,
	},
}

// errLog reports fatal errors on stderr.
var errLog = microcli.ErrorLog("client-stream")

func main() {
	service := clientcmd.NewService("poc.client-stream", "reads an Example.Stream server stream and, with --duplex, runs Example.PingPong full duplex", flags)
	if !settings.Init(service, checkFlags) {
		return
	}
	defer settings.Close()
	client, err := settings.ExampleClient(service, errLog.Printf)
	if err != nil {
		errLog.Fatal(clientcmd.Describe(err))
	}

	summary, err := readStream(client)
	if err != nil {
		errLog.Fatal(clientcmd.Describe(err))
	}
	if duplex {
		duplexSummary, err := runDuplex(client)
		if err != nil {
			errLog.Fatal(clientcmd.Describe(err))
		}
		summary += "; " + duplexSummary
	}
	fmt.Println(summary)
}

// checkFlags validates the flags of client-stream. --count is left to the
// server, whose BadRequest is part of what this client demonstrates.
func checkFlags() error {
	if strokes < 0 {
		return fmt.Errorf("--strokes must not be negative, got %d", strokes)
	}
	return nil
}

// readStream asks for count items and checks they arrive as 0..count-1,
// then the end of the stream.
func readStream(client example.ExampleService) (summary string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), settings.Timeout)
	defer cancel()
	start := time.Now()
	stream, err := client.Stream(ctx, &example.StreamingRequest{Count: count})
	if err != nil {
		return "", fmt.Errorf("open Example.Stream: %w", err)
	}
	defer stream.Close()

	var received int64
	for {
		item, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("receive Example.Stream item %d of %d: %w", received, count, err)
		}
		if item.Count != received {
			return "", fmt.Errorf("stream item %d has count %d, want %d", received, item.Count, received)
		}
		received++
	}
	if received != count {
		return "", fmt.Errorf("stream ended after %d of %d items", received, count)
	}
	return fmt.Sprintf("stream: received %d/%d in %s", received, count, time.Since(start)), nil
}

// runDuplex sends strokes pings from a goroutine while receiving the
// pongs, checking they come back in order.
func runDuplex(client example.ExampleService) (summary string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), settings.Timeout)
	defer cancel()
	start := time.Now()
	stream, err := client.PingPong(ctx)
	if err != nil {
		return "", fmt.Errorf("open Example.PingPong: %w", err)
	}
	// go-micro cannot half-close a stream: Close cancels the call, which
	// also stops the sender if receiving fails first.
	defer stream.Close()

	sendErr := make(chan error, 1)
	go func() {
		for i := int64(0); i < strokes; i++ {
			if err := stream.Send(&example.Ping{Stroke: i}); err != nil {
				sendErr <- fmt.Errorf("send ping %d: %w", i, err)
				return
			}
		}
		sendErr <- nil
	}()

	for i := int64(0); i < strokes; i++ {
		pong, err := stream.Recv()
		if err != nil {
			// A failed send usually explains the failed receive.
			select {
			case serr := <-sendErr:
				if serr != nil {
					return "", serr
				}
			default:
			}
			return "", fmt.Errorf("receive pong %d of %d: %w", i, strokes, err)
		}
		if pong.Stroke != i {
			return "", fmt.Errorf("pong %d has stroke %d, want %d (out of order)", i, pong.Stroke, i)
		}
	}
	if err := <-sendErr; err != nil {
		return "", err
	}
	return fmt.Sprintf("duplex: %d/%d strokes in order in %s", strokes, strokes, time.Since(start)), nil
}
