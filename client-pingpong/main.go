// Command client-pingpong calls the Example service once with Call, then
// plays --rounds lock-step rounds of PingPong: send a Ping, wait for the
// Pong with the same stroke, print the round trip time.
//
// On success it prints, on stdout:
//
//	greeting: Hello World
//	stroke 0 rtt 412µs
//	...
//	pingpong: 10/10 strokes echoed, mean rtt 380µs
//
// Any failure is one line on stderr and exit status 1. With --wait it
// first waits up to that long for the server to register, saying so on
// stderr, instead of failing at once.
package main

import (
	"context"
	"fmt"
	"time"

	"github.com/micro/cli/v2"

	"github.com/poc-go-micro/poc-go-micro/internal/clientcmd"
	"github.com/poc-go-micro/poc-go-micro/internal/microcli"
	"github.com/poc-go-micro/poc-go-micro/proto/example"
)

var (
	settings clientcmd.Settings
	name     string
	rounds   int
)

var flags = []cli.Flag{
	settings.ServiceFlag(),
	settings.TimeoutFlag(),
	settings.WaitFlag("the server to register"),
	&cli.StringFlag{
		Name:        "name",
		EnvVars:     []string{"POC_NAME"},
		Value:       "World",
		Usage:       "name sent in the unary Example.Call",
		Destination: &name,
	},
	&cli.IntFlag{
		Name:        "rounds",
		EnvVars:     []string{"POC_ROUNDS"},
		Value:       10,
		Usage:       "number of lock-step Example.PingPong rounds (0 skips PingPong)",
		Destination: &rounds,
	},
}

// errLog reports fatal errors on stderr.
var errLog = microcli.ErrorLog("client-pingpong")

func main() {
	service := clientcmd.NewService("poc.client-pingpong", "calls Example.Call once, then plays lock-step Example.PingPong rounds", flags)
	if !settings.Init(service, checkFlags) {
		return
	}
	defer settings.Close()
	client, err := settings.ExampleClient(service, errLog.Printf)
	if err != nil {
		errLog.Fatal(clientcmd.Describe(err))
	}

	if err := greet(client); err != nil {
		errLog.Fatal(clientcmd.Describe(err))
	}
	if rounds > 0 {
		if err := pingPong(client); err != nil {
			errLog.Fatal(clientcmd.Describe(err))
		}
	}
}

// checkFlags validates the flags of client-pingpong.
func checkFlags() error {
	if rounds < 0 {
		return fmt.Errorf("--rounds must not be negative, got %d", rounds)
	}
	return nil
}

// greet makes the unary call and prints the greeting.
func greet(client example.ExampleService) error {
	ctx, cancel := context.WithTimeout(context.Background(), settings.Timeout)
	defer cancel()
	rsp, err := client.Call(ctx, &example.Request{Name: name})
	if err != nil {
		return fmt.Errorf("call Example.Call: %w", err)
	}
	fmt.Printf("greeting: %s\n", rsp.Msg)
	return nil
}

// pingPong plays the rounds over one PingPong stream, each Ping waiting
// for its Pong.
func pingPong(client example.ExampleService) error {
	ctx, cancel := context.WithTimeout(context.Background(), settings.Timeout)
	defer cancel()
	stream, err := client.PingPong(ctx)
	if err != nil {
		return fmt.Errorf("open Example.PingPong: %w", err)
	}
	// go-micro cannot half-close a stream: Close cancels the call. Every
	// Pong has been received by the time it runs.
	defer stream.Close()

	var total time.Duration
	for i := 0; i < rounds; i++ {
		stroke := int64(i)
		start := time.Now()
		if err := stream.Send(&example.Ping{Stroke: stroke}); err != nil {
			return fmt.Errorf("send ping %d: %w", stroke, err)
		}
		pong, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("receive pong %d: %w", stroke, err)
		}
		rtt := time.Since(start)
		if pong.Stroke != stroke {
			return fmt.Errorf("round %d: got pong %d, want %d", i, pong.Stroke, stroke)
		}
		total += rtt
		fmt.Printf("stroke %d rtt %s\n", stroke, rtt)
	}
	fmt.Printf("pingpong: %d/%d strokes echoed, mean rtt %s\n", rounds, rounds, total/time.Duration(rounds))
	return nil
}
