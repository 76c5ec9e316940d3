// Package handler implements the RPCs of the Example service.
package handler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	merrors "github.com/micro/go-micro/v2/errors"
	"github.com/micro/go-micro/v2/logger"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/poc-go-micro/poc-go-micro/proto/example"
)

const (
	// MaxNameLength is the longest name, in bytes, that Call accepts.
	MaxNameLength = 1024

	// DefaultMaxStreamCount is the largest count Stream accepts unless
	// MaxStreamCount says otherwise.
	DefaultMaxStreamCount = 100000

	// DefaultMaxMessageSize is the largest gRPC message, in bytes, the
	// server accepts by default: room to spare above the largest valid
	// request (a Call with a MaxNameLength name), small enough that a
	// client cannot make the server buffer much per call.
	DefaultMaxMessageSize = 64 << 10

	// MinMaxMessageSize is the smallest message size limit that still
	// lets every valid request through.
	MinMaxMessageSize = MaxNameLength + 64
)

// Example implements example.ExampleHandler. The zero value is not ready
// for use: create one with New.
type Example struct {
	maxStreamCount int64
}

// Option configures an Example built by New.
type Option func(*Example)

// MaxStreamCount sets the largest count Stream accepts. Larger requests
// get a BadRequest error instead of a stream the client may never drain.
func MaxStreamCount(n int64) Option {
	return func(e *Example) {
		e.maxStreamCount = n
	}
}

// New returns an Example configured by opts.
func New(opts ...Option) *Example {
	e := &Example{maxStreamCount: DefaultMaxStreamCount}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Call greets the caller with "Hello <name>". A name that is empty, only
// whitespace or longer than MaxNameLength bytes gets a BadRequest error.
func (e *Example) Call(ctx context.Context, req *example.Request, rsp *example.Response) error {
	name := req.GetName()
	switch {
	case strings.TrimSpace(name) == "":
		return merrors.BadRequest("Example.Call", "name must not be empty or only whitespace")
	case len(name) > MaxNameLength:
		return merrors.BadRequest("Example.Call", "name is %d bytes long; the limit is %d", len(name), MaxNameLength)
	}
	rsp.Msg = "Hello " + name
	return nil
}

// Stream sends the counts 0..count-1, one message each, then ends. A count
// outside 0..the configured maximum gets a BadRequest error. Stream stops
// early, returning the context's error, when the client goes away.
func (e *Example) Stream(ctx context.Context, req *example.StreamingRequest, stream example.Example_StreamStream) error {
	count := req.GetCount()
	if count < 0 || count > e.maxStreamCount {
		return merrors.BadRequest("Example.Stream", "count %d is out of range: it must be between 0 and %d", count, e.maxStreamCount)
	}
	done := stream.Context().Done()
	for i := int64(0); i < count; i++ {
		select {
		case <-done:
			return stream.Context().Err()
		default:
		}
		if err := stream.Send(&example.StreamingResponse{Count: i}); err != nil {
			return fmt.Errorf("send count %d of %d: %w", i, count, err)
		}
	}
	return nil
}

// PingPong answers every Ping with a Pong carrying the same stroke until
// the client ends the stream. A go-micro client cannot half-close a stream
// (its Close cancels the call), so its cancellation is the usual end and,
// like an io.EOF from a client that did half-close, ends the call with
// nil: the RPC metrics count it as a success, not a failure.
func (e *Example) PingPong(ctx context.Context, stream example.Example_PingPongStream) error {
	for {
		ping, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return endOfStream(stream.Context(), "receive ping", err)
		}
		if err := stream.Send(&example.Pong{Stroke: ping.GetStroke()}); err != nil {
			return endOfStream(stream.Context(), fmt.Sprintf("send pong %d", ping.GetStroke()), err)
		}
	}
}

// endOfStream turns the error that ended a PingPong stream into the
// handler's result: nil for the client's cancellation, anything else
// logged and wrapped with op.
func endOfStream(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil || status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
		return nil
	}
	logger.Warnf("PingPong: %s: %v", op, err)
	return fmt.Errorf("%s: %w", op, err)
}
