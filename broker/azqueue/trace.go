package azqueue

import (
	"context"
	"strings"
	"time"

	"github.com/micro/go-micro/v2/broker"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.39.0"
	"go.opentelemetry.io/otel/trace"
)

// Tracing. The broker depends on OpenTelemetry's API only: its spans go to
// the global TracerProvider, which does nothing until the application
// installs one (the server of this repository does, from the OTEL_*
// environment). A publish is a producer span "<topic> publish" whose W3C
// trace context (traceparent, tracestate) travels in the envelope's
// headers; each delivery is a consumer span "<topic> process" that is its
// child, and the handler's message carries the process span's trace
// context in its place, so that what the handler does continues the
// trace. Retries and poisoning are events on the process span, with an
// error status.

// TracerName is the instrumentation scope of the broker's spans.
const TracerName = "github.com/poc-go-micro/poc-go-micro/broker/azqueue"

// MessagingSystem is the messaging.system attribute of the broker's spans:
// the conventions list no value for Azure Storage Queues.
const MessagingSystem = "azure_storage_queue"

// dequeueCountKey follows the conventions' per-system attributes, such as
// messaging.servicebus.message.delivery_count.
const dequeueCountKey = attribute.Key("messaging.azure_storage_queue.message.dequeue_count")

// Span events.
const (
	eventRetry    = "retry scheduled"
	eventPoisoned = "moved to the poison queue"
)

// traceContext is W3C trace context: the envelope carries it whatever
// propagator the application installed.
var traceContext = propagation.TraceContext{}

// tracer returns the broker's tracer from the TracerProvider installed now:
// asked each time, so that a provider installed (or replaced) after the
// broker was made is the one used.
func tracer() trace.Tracer { return otel.Tracer(TracerName) }

// headerCarrier is a propagation.TextMapCarrier over message headers.
// Get ignores case: go-micro's metadata title-cases its keys.
type headerCarrier map[string]string

func (h headerCarrier) Get(key string) string {
	if v, ok := h[key]; ok {
		return v
	}
	for k, v := range h {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// Set replaces key, whatever its case.
func (h headerCarrier) Set(key, value string) {
	for k := range h {
		if strings.EqualFold(k, key) {
			delete(h, k)
		}
	}
	h[key] = value
}

func (h headerCarrier) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// startPublishSpan starts the span of one publish of m to topic and, when
// the span belongs to a trace, returns m with a copy of its headers that
// carries the span's trace context (m itself is the caller's).
func startPublishSpan(ctx context.Context, topic string, m *broker.Message) (context.Context, trace.Span, *broker.Message) {
	ctx, span := tracer().Start(ctx, topic+" publish", trace.WithSpanKind(trace.SpanKindProducer))
	if !span.SpanContext().IsValid() {
		return ctx, span, m
	}
	if span.IsRecording() {
		span.SetAttributes(
			semconv.MessagingSystemKey.String(MessagingSystem),
			semconv.MessagingOperationTypeSend,
			semconv.MessagingOperationName("publish"),
			semconv.MessagingDestinationName(topic),
			semconv.MessagingMessageBodySize(len(m.Body)),
		)
	}
	headers := make(headerCarrier, len(m.Header)+2)
	for k, v := range m.Header {
		headers[k] = v
	}
	traceContext.Inject(ctx, headers)
	return ctx, span, &broker.Message{Header: headers, Body: m.Body}
}

// startProcessSpan starts the span of one delivery from q, a child of the
// publish span whose trace context the envelope's headers carry (none for
// a message written by another tool).
func startProcessSpan(q Queue, headers map[string]string, messageID string, dequeueCount int64) trace.Span {
	parent := traceContext.Extract(context.Background(), headerCarrier(headers))
	_, span := tracer().Start(parent, q.Topic+" process", trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		span.SetAttributes(
			semconv.MessagingSystemKey.String(MessagingSystem),
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingOperationName("process"),
			semconv.MessagingDestinationName(q.Topic),
			semconv.MessagingConsumerGroupName(q.Group),
			semconv.MessagingDestinationSubscriptionName(q.Name),
			semconv.MessagingMessageID(messageID),
			dequeueCountKey.Int64(dequeueCount),
		)
	}
	return span
}

// carryTraceContext puts span's trace context into a delivered message's
// headers, in place of the publisher's.
func carryTraceContext(span trace.Span, headers map[string]string) {
	if span.SpanContext().IsValid() {
		traceContext.Inject(trace.ContextWithSpan(context.Background(), span), headerCarrier(headers))
	}
}

// spanFailed marks span as failed with err.
func spanFailed(span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// spanRetried records on span that its message comes back after delay.
func spanRetried(span trace.Span, delay time.Duration, cause error) {
	if !span.IsRecording() {
		return
	}
	span.AddEvent(eventRetry, trace.WithAttributes(attribute.String("retry.delay", delay.String())))
	spanFailed(span, cause)
}

// spanPoisoned records on span that its message went to the poison queue.
func spanPoisoned(span trace.Span, code PoisonReason, reason string) {
	if !span.IsRecording() {
		return
	}
	span.AddEvent(eventPoisoned, trace.WithAttributes(attribute.String("poison.reason", string(code))))
	span.SetStatus(codes.Error, reason)
}
