package clientcmd

import (
	"context"
	"errors"
	"fmt"
	"testing"

	merrors "github.com/micro/go-micro/v2/errors"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestDescribe(t *testing.T) {
	notFound := merrors.InternalServerError("go.micro.client", "service poc.example: not found")
	badRequest := merrors.BadRequest("Example.Call", "name must not be empty or only whitespace")
	tests := []struct {
		name string
		err  error
		want string
	}{
		{name: "nil", err: nil, want: ""},
		{
			name: "service not registered",
			err:  notFound,
			want: `service "poc.example" is not registered (is the server running and using the same registry?)`,
		},
		{
			name: "wrapped keeps its context",
			err:  fmt.Errorf("call Example.Call: %w", notFound),
			want: `call Example.Call: service "poc.example" is not registered (is the server running and using the same registry?)`,
		},
		{
			name: "flattened to its JSON text",
			err:  errors.New(notFound.Error()),
			want: `service "poc.example" is not registered (is the server running and using the same registry?)`,
		},
		{
			name: "registry unreachable",
			err:  merrors.InternalServerError("go.micro.client", "error selecting poc.example node: context deadline exceeded"),
			want: `cannot look up service "poc.example" in the registry: context deadline exceeded (is the registry reachable? see --registry and --registry_address)`,
		},
		{
			name: "no usable node",
			err:  merrors.InternalServerError("go.micro.client", "error selecting poc.example node: none available"),
			want: `service "poc.example" has no usable node in the registry`,
		},
		{
			name: "registered server gone, unary call",
			err: merrors.InternalServerError("go.micro.client",
				`connection error: desc = "transport: Error while dialing dial tcp [fd00::2]:42839: connect: connection refused"`),
			want: `server registered at [fd00::2]:42839 is unreachable (connect: connection refused); did it stop without deregistering?`,
		},
		{
			name: "registered server gone, stream",
			err: fmt.Errorf("open Example.Stream: %w", merrors.InternalServerError("go.micro.client",
				`Error creating stream: rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing dial tcp 127.0.0.1:4242: connect: connection refused"`)),
			want: `open Example.Stream: server registered at 127.0.0.1:4242 is unreachable (connect: connection refused); did it stop without deregistering?`,
		},
		{
			name: "registered server not answering, no address",
			err:  merrors.InternalServerError("go.micro.client", `Error sending request: context deadline exceeded`),
			want: `server unreachable (registered, but not answering; did it stop without deregistering?): Error sending request: context deadline exceeded`,
		},
		{
			name: "broker cannot connect",
			err: fmt.Errorf("publish %q: %w", "hello #1", merrors.InternalServerError("go.micro.client",
				`azqueue: create queue: Put "http://127.0.0.1:1/devstoreaccount1/q": dial tcp 127.0.0.1:1: connect: connection refused`)),
			want: `publish "hello #1": azqueue: create queue: Put "http://127.0.0.1:1/devstoreaccount1/q": dial tcp 127.0.0.1:1: connect: connection refused`,
		},
		{
			name: "bad request shows the detail",
			err:  fmt.Errorf("call Example.Call: %w", badRequest),
			want: "call Example.Call: name must not be empty or only whitespace",
		},
		{
			name: "timeout",
			err:  merrors.Timeout("go.micro.client", "context deadline exceeded"),
			want: "timed out: no answer within the --timeout (context deadline exceeded)",
		},
		{
			name: "other go-micro error",
			err:  merrors.NotFound("go.micro.server", "unknown service Example.Missing"),
			want: "unknown service Example.Missing (Not Found)",
		},
		{
			name: "go-micro error without detail",
			err:  merrors.New("go.micro.server", "", 503),
			want: "503 Service Unavailable from go.micro.server",
		},
		{
			name: "gRPC status carrying a go-micro error, as from a stream",
			err: fmt.Errorf("receive stream item 0: %w",
				status.Error(codes.InvalidArgument, merrors.BadRequest("Example.Stream", "count -1 is out of range").Error())),
			want: "receive stream item 0: count -1 is out of range",
		},
		{
			name: "plain gRPC status",
			err:  fmt.Errorf("receive pong: %w", status.Error(codes.Unavailable, "transport is closing")),
			want: "receive pong: server unreachable: transport is closing",
		},
		{
			name: "gRPC deadline",
			err:  status.Error(codes.DeadlineExceeded, "context deadline exceeded"),
			want: "timed out: no answer within the --timeout (context deadline exceeded)",
		},
		{
			name: "gRPC cancellation",
			err:  status.Error(codes.Canceled, "context canceled"),
			want: "cancelled: context canceled",
		},
		{
			name: "other gRPC status",
			err:  status.Error(codes.Internal, "boom"),
			want: "boom (Internal)",
		},
		{
			name: "context deadline",
			err:  fmt.Errorf("publish %q: %w", "hello #1", context.DeadlineExceeded),
			want: `publish "hello #1": timed out: no answer within the --timeout (context deadline exceeded)`,
		},
		{
			name: "anything else unchanged",
			err:  fmt.Errorf("stream item 3: got count 5, want 3"),
			want: "stream item 3: got count 5, want 3",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Describe(tt.err); got != tt.want {
				t.Errorf("Describe(%v)\n got %s\nwant %s", tt.err, got, tt.want)
			}
		})
	}
}
