package functionapp_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/logctx"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/tracing"
)

// The sender's span, as a W3C traceparent.
const (
	senderTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	senderSpan   = "00f067aa0ba902b7"
	senderParent = "00-" + senderTrace + "-" + senderSpan + "-01"
)

// recordSpans turns tracing on for the test with a provider that keeps the
// ended spans. Tests that use it are not parallel: the tracer is the
// process's.
func recordSpans(t *testing.T) *tracetest.SpanRecorder {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(tracing.Use(tp))
	return rec
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestTraceContinuesTheSendersTraceAndParentsTheStepsMessages(t *testing.T) {
	rec := recordSpans(t)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	reg := functionapp.Registry{"ScheduleDrone": {Queue: func(ctx context.Context, m *ports.Delivered) ([]ports.Message, error) {
		logctx.With(ctx, "deliveryId", "d-1")
		return []ports.Message{{ID: "d-1:scheduled", Queue: "drone-scheduled"}}, nil
	}}}.Use(functionapp.Standard(log)...)

	in := &ports.Delivered{Message: ports.Message{ID: "d-1:requested", Queue: "delivery-requests", CorrelationID: "c-1",
		TraceParent: senderParent, TraceState: "congo=t61rcWkgMzE"}, DeliveryCount: 2}
	out, err := reg["ScheduleDrone"].Queue(context.Background(), in)
	require.NoError(t, err)

	spans := rec.Ended()
	require.Len(t, spans, 1)
	s := spans[0]
	assert.Equal(t, "ScheduleDrone", s.Name())
	assert.Equal(t, trace.SpanKindConsumer, s.SpanKind())
	assert.Equal(t, senderTrace, s.SpanContext().TraceID().String(), "the sender's trace goes on")
	assert.Equal(t, senderSpan, s.Parent().SpanID().String(), "the sender's span is the parent")
	assert.True(t, s.Parent().IsRemote())
	assert.Equal(t, "congo=t61rcWkgMzE", s.SpanContext().TraceState().String())
	a := attrs(s)
	assert.Equal(t, "d-1", a["deliveryId"].AsString(), "the step's log context lands on its span")
	assert.Equal(t, "c-1", a["correlationId"].AsString())
	assert.Equal(t, "delivery-requests", a["messaging.destination.name"].AsString())
	assert.Equal(t, int64(2), a["messaging.servicebus.message.delivery_count"].AsInt64())
	assert.Equal(t, codes.Unset, s.Status().Code)

	require.Len(t, out, 1)
	assert.Equal(t, "00-"+senderTrace+"-"+s.SpanContext().SpanID().String()+"-01", out[0].TraceParent,
		"the step's message is the child of the step's span")
	assert.Equal(t, "congo=t61rcWkgMzE", out[0].TraceState)
}

func TestTraceStartsATraceForAMessageWithoutOneAndRecordsFailures(t *testing.T) {
	rec := recordSpans(t)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	reg := functionapp.Registry{
		"Bad": {Queue: func(context.Context, *ports.Delivered) ([]ports.Message, error) {
			return nil, &domain.Permanent{Err: domain.Invalid("payload", "is not an object")}
		}},
		"Panics": {Queue: func(context.Context, *ports.Delivered) ([]ports.Message, error) { panic("boom") }},
	}.Use(functionapp.Standard(log)...)

	_, err := call(t, reg["Bad"].Queue)
	require.Error(t, err)
	_, err = call(t, reg["Panics"].Queue)
	require.Error(t, err)

	spans := rec.Ended()
	require.Len(t, spans, 2)
	for _, s := range spans {
		assert.False(t, s.Parent().IsValid(), "%s: a message without a trace context starts a trace", s.Name())
		assert.Equal(t, codes.Error, s.Status().Code, s.Name())
		require.NotEmpty(t, s.Events(), s.Name())
		assert.Equal(t, "exception", s.Events()[0].Name, s.Name())
	}
	assert.Contains(t, spans[0].Status().Description, "payload")
	assert.Equal(t, "handler panic: boom", spans[1].Status().Description, "the status names the first line only")
}

func TestTraceHTTPContinuesTheCallersTrace(t *testing.T) {
	rec := recordSpans(t)
	var inside trace.SpanContext
	fn := functionapp.TraceHTTP("IngestDelivery", "/api/deliveryrequests", func(ctx context.Context, req *functionapp.Request) *functionapp.Response {
		inside = trace.SpanContextFromContext(ctx)
		logctx.With(ctx, "deliveryId", "d-9")
		return &functionapp.Response{Status: http.StatusAccepted}
	})
	h := http.Header{}
	h.Set("traceparent", senderParent)
	resp := fn(context.Background(), &functionapp.Request{Method: "POST", Path: "/api/deliveryrequests", Header: h})
	require.Equal(t, http.StatusAccepted, resp.Status)

	failing := functionapp.TraceHTTP("GetDelivery", "/api/deliveries/{id}", func(context.Context, *functionapp.Request) *functionapp.Response {
		return &functionapp.Response{Status: http.StatusServiceUnavailable}
	})
	failing(context.Background(), &functionapp.Request{Method: "GET", Path: "/api/deliveries/x", Header: http.Header{}})

	spans := rec.Ended()
	require.Len(t, spans, 2)
	s := spans[0]
	assert.Equal(t, "IngestDelivery", s.Name())
	assert.Equal(t, trace.SpanKindServer, s.SpanKind())
	assert.Equal(t, senderTrace, s.SpanContext().TraceID().String())
	assert.Equal(t, senderSpan, s.Parent().SpanID().String())
	assert.Equal(t, s.SpanContext(), inside, "the handler runs inside the span")
	a := attrs(s)
	assert.Equal(t, "d-9", a["deliveryId"].AsString())
	assert.Equal(t, int64(http.StatusAccepted), a["http.response.status_code"].AsInt64())
	assert.Equal(t, "/api/deliveryrequests", a["http.route"].AsString())
	assert.Equal(t, codes.Unset, s.Status().Code)

	assert.False(t, spans[1].Parent().IsValid(), "a request without traceparent starts a trace")
	assert.Equal(t, codes.Error, spans[1].Status().Code, "a 5xx fails the span")
}

func TestTraceOffStartsNoSpanAndStampsNothing(t *testing.T) {
	t.Cleanup(tracing.Use(nil))
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	var inside trace.SpanContext
	reg := functionapp.Registry{"Step": {Queue: func(ctx context.Context, m *ports.Delivered) ([]ports.Message, error) {
		inside = trace.SpanContextFromContext(ctx)
		return []ports.Message{{ID: "out", Queue: "q"}}, nil
	}}}.Use(functionapp.Standard(log)...)
	out, err := reg["Step"].Queue(context.Background(), &ports.Delivered{Message: ports.Message{ID: "in", TraceParent: senderParent}})
	require.NoError(t, err)
	assert.False(t, inside.IsValid())
	assert.Empty(t, out[0].TraceParent)
}

// BenchmarkTrace is the cost of the Trace middleware around a step that
// does nothing but name its delivery and send one message: without the
// middleware, with tracing off, and on (spans batched to an exporter that
// drops them, so the figure is the spans' own cost, not an export's).
func BenchmarkTrace(b *testing.B) {
	step := func(ctx context.Context, m *ports.Delivered) ([]ports.Message, error) {
		logctx.With(ctx, "deliveryId", "d-1")
		return []ports.Message{{ID: "d-1:scheduled", Queue: "drone-scheduled"}}, nil
	}
	msg := &ports.Delivered{Message: ports.Message{ID: "d-1:requested", Queue: "delivery-requests", TraceParent: senderParent}}
	run := func(b *testing.B, fn functionapp.QueueFunc) {
		b.ReportAllocs()
		ctx := context.Background()
		for b.Loop() {
			if _, err := fn(ctx, msg); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("without", func(b *testing.B) { run(b, step) })
	b.Run("off", func(b *testing.B) {
		b.Cleanup(tracing.Use(nil))
		run(b, functionapp.Trace("ScheduleDrone", step))
	})
	b.Run("on", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		b.Cleanup(func() { tp.Shutdown(context.Background()) })
		b.Cleanup(tracing.Use(tp))
		run(b, functionapp.Trace("ScheduleDrone", step))
	})
}
