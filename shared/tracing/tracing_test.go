package tracing_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/tracing"
)

const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestEnabledOnlyWithAnEndpointAndNotDisabled(t *testing.T) {
	assert.False(t, tracing.Enabled(envOf(nil)))
	assert.True(t, tracing.Enabled(envOf(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})))
	assert.True(t, tracing.Enabled(envOf(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"})))
	assert.False(t, tracing.Enabled(envOf(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "TRUE"})))
	assert.False(t, tracing.Enabled(envOf(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"})))
}

func TestSetupWithoutEndpointLeavesTracingOff(t *testing.T) {
	shutdown, err := tracing.Setup(context.Background(), envOf(nil))
	assert.NoError(t, err)
	_, on := tracing.Tracer()
	assert.False(t, on)
	assert.NoError(t, shutdown(context.Background()))
}

func TestFromPropertiesFallsBackToDiagnosticID(t *testing.T) {
	p, s := tracing.FromProperties(envOf(map[string]string{"Diagnostic-Id": parent, "tracestate": "a=b"}))
	assert.Equal(t, parent, p)
	assert.Equal(t, "a=b", s)
	p, _ = tracing.FromProperties(envOf(map[string]string{"traceparent": parent, "Diagnostic-Id": "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01"}))
	assert.Equal(t, parent, p, "traceparent wins")
	p, s = tracing.FromProperties(envOf(map[string]string{"tracestate": "a=b"}))
	assert.Empty(t, p+s, "no state without a parent")
}

func TestInjectAndExtractRoundTrip(t *testing.T) {
	m := ports.Message{TraceParent: parent, TraceState: "a=b"}
	ctx := tracing.Extract(context.Background(), &m)
	sc := trace.SpanContextFromContext(ctx)
	assert.True(t, sc.IsRemote())
	assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", sc.TraceID().String())

	msgs := []ports.Message{{TraceParent: "00-11111111111111111111111111111111-1111111111111111-01"}, {}}
	tracing.Inject(ctx, msgs)
	for _, out := range msgs {
		assert.Equal(t, parent, out.TraceParent, "ctx's span replaces what the message had")
		assert.Equal(t, "a=b", out.TraceState)
	}
	kept := []ports.Message{{TraceParent: parent}}
	tracing.Inject(context.Background(), kept)
	assert.Equal(t, parent, kept[0].TraceParent, "no span in ctx: the message keeps its context")

	bad := ports.Message{TraceParent: "not a traceparent"}
	assert.False(t, trace.SpanContextFromContext(tracing.Extract(context.Background(), &bad)).IsValid())

	h := http.Header{}
	h.Set("Traceparent", parent)
	assert.Equal(t, sc.TraceID(), trace.SpanContextFromContext(tracing.FromHTTP(context.Background(), h)).TraceID())
}

func TestFlushExportsWhatTheBatchHolds(t *testing.T) {
	assert.NoError(t, tracing.Flush(context.Background()), "off: nothing to flush")
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Hour)))
	t.Cleanup(tracing.Use(tp))
	tr, on := tracing.Tracer()
	require.True(t, on)
	_, span := tr.Start(context.Background(), "step")
	span.End()
	assert.Empty(t, exp.GetSpans(), "the batch holds the span for an hour")
	require.NoError(t, tracing.Flush(context.Background()))
	assert.Len(t, exp.GetSpans(), 1)
}
