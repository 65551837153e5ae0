// Package tracing carries OpenTelemetry traces across the app: one trace per
// delivery, from the HTTP request that accepted it through every queue step
// it caused. It owns the tracer the runtimes' middleware starts spans with,
// and the W3C trace context (traceparent, tracestate) that rides every
// message, which the bus adapters write into and read from the messages'
// application properties.
//
// Tracing is off unless an OTLP endpoint is configured (Setup); while it is
// off, Tracer reports so, no span is started and no message is stamped.
package tracing

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/fabrikam/dronedelivery/shared/ports"
)

// The application properties that carry a message's trace context. Azure's
// SDKs write the W3C traceparent under both traceparent and Diagnostic-Id
// (the older name, which the Service Bus docs define and the Functions
// host's Service Bus extension reads), and tracestate under tracestate; a
// reader takes traceparent and falls back to Diagnostic-Id. Sources:
// Azure/azure-sdk-for-python, sdk/servicebus/azure-servicebus/azure/
// servicebus/_common/tracing.py (TRACE_PARENT_PROPERTY,
// TRACE_DIAGNOSTIC_ID_PROPERTY, TRACE_STATE_PROPERTY and
// _update_message_with_trace_context, get_span_link_from_message), and
// https://learn.microsoft.com/azure/service-bus-messaging/service-bus-end-to-end-tracing
// (Diagnostic-Id in the W3C traceparent format). The same names serve the
// embedded queue's columns and SQS message attributes, so a message's
// context reads alike on every bus.
const (
	PropTraceParent  = "traceparent"
	PropTraceState   = "tracestate"
	PropDiagnosticID = "Diagnostic-Id"
)

// instrumentation names the tracer, as OpenTelemetry asks a library to.
const instrumentation = "github.com/fabrikam/dronedelivery"

// DefaultServiceName is service.name unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES says otherwise.
const DefaultServiceName = "dronedelivery"

// holder lets an interface live in an atomic.Pointer.
type holder struct {
	t     trace.Tracer
	flush func(context.Context) error // nil when the provider buffers nothing
}

var current atomic.Pointer[holder]

// Tracer returns the tracer spans are started with, and false while tracing
// is off: a caller then starts no span at all, which is what makes tracing
// cost nothing when it is not configured.
func Tracer() (trace.Tracer, bool) {
	h := current.Load()
	if h == nil {
		return nil, false
	}
	return h.t, true
}

// Use makes tp the provider of the app's spans (nil turns tracing off) and
// returns a function that puts the previous one back. Setup calls it; tests
// and benchmarks call it with a provider of their own.
func Use(tp trace.TracerProvider) (restore func()) {
	var h *holder
	if tp != nil {
		h = &holder{t: tp.Tracer(instrumentation)}
		if f, ok := tp.(interface{ ForceFlush(context.Context) error }); ok {
			h.flush = f.ForceFlush
		}
	}
	prev := current.Swap(h)
	return func() { current.Store(prev) }
}

// Flush exports the spans the provider still holds. A runtime whose
// process may be frozen or ended right after it answers (AWS Lambda) calls
// it before answering; elsewhere the batch processor's schedule does.
func Flush(ctx context.Context) error {
	h := current.Load()
	if h == nil || h.flush == nil {
		return nil
	}
	return h.flush(ctx)
}

// Enabled reports whether the environment asks for traces: an OTLP endpoint
// is set (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
// and the SDK is not disabled (OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER=none).
func Enabled(env func(string) string) bool {
	if env("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return false
	}
	return !strings.EqualFold(strings.TrimSpace(env("OTEL_SDK_DISABLED")), "true") &&
		!strings.EqualFold(strings.TrimSpace(env("OTEL_TRACES_EXPORTER")), "none")
}

// Setup turns tracing on when the environment asks for it (Enabled): spans
// are batched and exported over OTLP/HTTP, configured by the standard
// OTEL_* variables (endpoint, headers, protocol, timeout, the batch
// processor's OTEL_BSP_*, the sampler's OTEL_TRACES_SAMPLER, the resource's
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES). The function it returns
// exports what is still buffered and turns tracing off again; call it on
// the way out.
func Setup(ctx context.Context, env func(string) string) (shutdown func(context.Context) error, err error) {
	if !Enabled(env) {
		return func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, err
	}
	// Later options win: the environment's service name over the default.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(DefaultServiceName)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	restore := Use(tp)
	otel.SetTracerProvider(tp)
	return func(ctx context.Context) error {
		restore()
		return tp.Shutdown(ctx)
	}, nil
}

// w3c reads and writes the W3C Trace Context format.
var w3c = propagation.TraceContext{}

// Inject stamps every message with the trace context of the span ctx
// carries, so that the step that receives it continues the same trace as a
// child of that span: a message is the child of the span that sent it. A
// ctx without a span leaves the messages as they are, which keeps the
// context a copy of a received message already has (a scheduled retry).
func Inject(ctx context.Context, msgs []ports.Message) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	for i := range msgs {
		msgs[i].TraceParent, msgs[i].TraceState = "", ""
		w3c.Inject(ctx, carrier{&msgs[i]})
	}
}

// Extract returns ctx with the remote span context m carries, if any and
// valid, as the parent of the spans started with it.
func Extract(ctx context.Context, m *ports.Message) context.Context {
	if m.TraceParent == "" {
		return ctx
	}
	return w3c.Extract(ctx, carrier{m})
}

// FromHTTP returns ctx with the remote span context of an HTTP request's
// traceparent and tracestate headers, if valid.
func FromHTTP(ctx context.Context, h http.Header) context.Context {
	if len(h.Values(PropTraceParent)) == 0 {
		return ctx
	}
	return w3c.Extract(ctx, propagation.HeaderCarrier(h))
}

// FromProperties reads a message's trace context from its application
// properties by the names Azure's SDKs use (see PropTraceParent).
func FromProperties(get func(key string) string) (traceParent, traceState string) {
	traceParent = get(PropTraceParent)
	if traceParent == "" {
		traceParent = get(PropDiagnosticID)
	}
	if traceParent == "" {
		return "", ""
	}
	return traceParent, get(PropTraceState)
}

// carrier reads and writes a message's trace context for the propagator.
type carrier struct{ m *ports.Message }

func (c carrier) Get(key string) string {
	switch key {
	case PropTraceParent:
		return c.m.TraceParent
	case PropTraceState:
		return c.m.TraceState
	}
	return ""
}

func (c carrier) Set(key, value string) {
	switch key {
	case PropTraceParent:
		c.m.TraceParent = value
	case PropTraceState:
		c.m.TraceState = value
	}
}

func (c carrier) Keys() []string { return []string{PropTraceParent, PropTraceState} }
