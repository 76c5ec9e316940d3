package tracing

import (
	"context"

	"github.com/micro/go-micro/v2/client"
	"github.com/micro/go-micro/v2/metadata"
	"github.com/micro/go-micro/v2/server"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.39.0"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the RPC spans.
const tracerName = "github.com/poc-go-micro/poc-go-micro/internal/tracing"

// metadataCarrier is a propagation.TextMapCarrier over go-micro metadata,
// whose keys go-micro title-cases on the way.
type metadataCarrier metadata.Metadata

func (m metadataCarrier) Get(key string) string {
	v, _ := metadata.Metadata(m).Get(key)
	return v
}

func (m metadataCarrier) Set(key, value string) {
	metadata.Metadata(m).Delete(key)
	m[key] = value
}

func (m metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// inject returns ctx with go-micro metadata carrying ctx's trace context.
func inject(ctx context.Context) context.Context {
	md, _ := metadata.FromContext(ctx)
	md = metadata.Copy(md)
	otel.GetTextMapPropagator().Inject(ctx, metadataCarrier(md))
	return metadata.NewContext(ctx, md)
}

// extract returns ctx with the trace context its go-micro metadata carries.
func extract(ctx context.Context) context.Context {
	md, ok := metadata.FromContext(ctx)
	if !ok {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, metadataCarrier(md))
}

// rpcAttributes are the RPC conventions' attributes of endpoint
// "<Service>.<Method>" (rpc.method is the fully-qualified method).
func rpcAttributes(endpoint string) trace.SpanStartOption {
	return trace.WithAttributes(semconv.RPCSystemNameGRPC, semconv.RPCMethod(endpoint))
}

func end(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// tracingClient starts a client span per call and stream, carrying its
// trace context in the request's metadata, and passes the caller's
// context to the broker on publish (go-micro's gRPC client drops it).
type tracingClient struct{ client.Client }

// ClientWrapper returns the client wrapper.
func ClientWrapper() client.Wrapper {
	return func(c client.Client) client.Client { return tracingClient{c} }
}

func (c tracingClient) Call(ctx context.Context, req client.Request, rsp interface{}, opts ...client.CallOption) error {
	ctx, span := otel.Tracer(tracerName).Start(ctx, req.Endpoint(), trace.WithSpanKind(trace.SpanKindClient), rpcAttributes(req.Endpoint()))
	err := c.Client.Call(inject(ctx), req, rsp, opts...)
	end(span, err)
	return err
}

// Stream's span covers opening the stream: go-micro gives no hook at its
// end.
func (c tracingClient) Stream(ctx context.Context, req client.Request, opts ...client.CallOption) (client.Stream, error) {
	ctx, span := otel.Tracer(tracerName).Start(ctx, req.Endpoint(), trace.WithSpanKind(trace.SpanKindClient), rpcAttributes(req.Endpoint()))
	stream, err := c.Client.Stream(inject(ctx), req, opts...)
	end(span, err)
	return stream, err
}

func (c tracingClient) Publish(ctx context.Context, msg client.Message, opts ...client.PublishOption) error {
	return c.Client.Publish(ctx, msg, append(opts, client.PublishContext(ctx))...)
}

// HandlerWrapper returns the server wrapper that continues the caller's
// trace in a server span per call and stream.
func HandlerWrapper() server.HandlerWrapper {
	return func(h server.HandlerFunc) server.HandlerFunc {
		return func(ctx context.Context, req server.Request, rsp interface{}) error {
			ctx, span := otel.Tracer(tracerName).Start(extract(ctx), req.Endpoint(), trace.WithSpanKind(trace.SpanKindServer), rpcAttributes(req.Endpoint()))
			err := h(ctx, req, rsp)
			end(span, err)
			return err
		}
	}
}

// SubscriberWrapper returns the server wrapper that gives an event's
// handler the trace context its message carries (the broker's process
// span), so that what the handler does continues the trace.
func SubscriberWrapper() server.SubscriberWrapper {
	return func(next server.SubscriberFunc) server.SubscriberFunc {
		return func(ctx context.Context, msg server.Message) error {
			return next(extract(ctx), msg)
		}
	}
}
