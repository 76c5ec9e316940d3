// Package tracing sets up OpenTelemetry for the binaries from the standard
// OTEL_* environment and carries W3C trace context through go-micro: RPC
// calls in gRPC metadata (client and handler wrappers), and events through
// the broker (whose envelope carries it; see broker/azqueue).
//
// Exporters. The OTLP exporters need a grpc-go newer than the 1.26 this
// module is held at for the etcd client, so they cannot be built here;
// spans go out in Zipkin's JSON format instead, which the OpenTelemetry
// Collector (zipkin receiver), Jaeger and Zipkin accept:
//
//	OTEL_TRACES_EXPORTER=zipkin OTEL_EXPORTER_ZIPKIN_ENDPOINT=http://collector:9411/api/v2/spans
//
// OTEL_EXPORTER_ZIPKIN_ENDPOINT alone selects Zipkin too. With neither,
// or OTEL_TRACES_EXPORTER=none, no span is exported or even recorded, and
// trace context that arrives is passed on unchanged. OTEL_TRACES_EXPORTER
// naming an exporter this build lacks (otlp, console), or an OTLP endpoint
// without OTEL_TRACES_EXPORTER, is an error, so that a stack configured for
// OTLP does not lose its traces silently. OTEL_SERVICE_NAME (default: the
// go-micro service's name), OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER,
// OTEL_TRACES_SAMPLER_ARG and OTEL_BSP_* work as the OpenTelemetry SDK
// defines them.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/micro/go-micro/v2"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/zipkin"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.39.0"
)

// Environment variables read here; the SDK reads the others.
const (
	EnvExporter       = "OTEL_TRACES_EXPORTER"
	EnvZipkinEndpoint = "OTEL_EXPORTER_ZIPKIN_ENDPOINT"
	envOTLPEndpoint   = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envOTLPTraces     = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
)

// Tracing is what Setup installed.
type Tracing struct {
	// Enabled: an exporter was selected, and spans are recorded and
	// exported.
	Enabled bool
	// Shutdown flushes the spans not exported yet and stops exporting;
	// call it before the process exits. It does nothing when not Enabled.
	Shutdown func(context.Context) error
}

// Setup installs W3C trace context propagation and, when the environment
// selects an exporter, a TracerProvider exporting service's spans.
func Setup(service string) (Tracing, error) {
	off := Tracing{Shutdown: func(context.Context) error { return nil }}
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	exporter, err := exporterFromEnv()
	if err != nil || exporter == "" {
		return off, err
	}
	exp, err := zipkin.New(os.Getenv(EnvZipkinEndpoint))
	if err != nil {
		return off, fmt.Errorf("tracing: %s: %w", EnvZipkinEndpoint, err)
	}
	res, err := resource.New(context.Background(),
		resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		return off, fmt.Errorf("tracing: resource: %w", err)
	}
	provider := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(provider)
	return Tracing{Enabled: true, Shutdown: provider.Shutdown}, nil
}

// Wrap makes service's server and client carry trace context in RPC
// metadata, with a span per call, and hand events' trace context to their
// handlers. Only with tracing Enabled: off, RPCs pay nothing for it (the
// broker still carries events' trace context). Call it once the service
// is initialised (service.Init has returned): it initialises it again.
func (t Tracing) Wrap(service micro.Service) {
	if !t.Enabled {
		return
	}
	// Options, not Server().Init or Client().Init: the client's own Wrap
	// option takes effect only when a client is made, and the service's
	// replaces the client it hands out.
	service.Init(micro.WrapHandler(HandlerWrapper()), micro.WrapSubscriber(SubscriberWrapper()), micro.WrapClient(ClientWrapper()))
}

// exporterFromEnv returns "zipkin" or "" (none), or why the environment
// asks for something this build cannot do.
func exporterFromEnv() (string, error) {
	value := strings.TrimSpace(os.Getenv(EnvExporter))
	if value == "" {
		switch {
		case os.Getenv(EnvZipkinEndpoint) != "":
			return "zipkin", nil
		case os.Getenv(envOTLPEndpoint) != "" || os.Getenv(envOTLPTraces) != "":
			return "", errors.New("tracing: " + envOTLPEndpoint + " is set, but this build has no OTLP exporter " +
				"(it needs a newer grpc-go than the etcd client allows): set " + EnvExporter + "=zipkin and " +
				EnvZipkinEndpoint + " (the OpenTelemetry Collector's zipkin receiver), or " + EnvExporter + "=none")
		}
		return "", nil
	}
	chosen := ""
	for _, name := range strings.Split(value, ",") {
		switch name = strings.TrimSpace(name); name {
		case "none":
		case "zipkin":
			chosen = "zipkin"
		default:
			return "", fmt.Errorf("tracing: %s=%q: this build exports to zipkin only (or none)", EnvExporter, name)
		}
	}
	return chosen, nil
}
