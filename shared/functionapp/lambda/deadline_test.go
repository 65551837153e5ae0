package lambda

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/logctx"
	"github.com/fabrikam/dronedelivery/shared/tracing"
	"github.com/fabrikam/dronedelivery/shared/wire/sqsmsg"
)

// stuckExporter is a tracer provider whose flush waits for its context, as
// an OTLP exporter retrying a collector that answers 503 does. It sends
// the deadline of each flush's context to deadlines (zero for none).
type stuckExporter struct {
	noop.TracerProvider
	deadlines chan time.Time
}

func (e stuckExporter) ForceFlush(ctx context.Context) error {
	deadline, _ := ctx.Deadline()
	e.deadlines <- deadline
	if deadline.IsZero() {
		// Waiting would hang the test rather than fail it.
		return errors.New("a flush with no deadline")
	}
	<-ctx.Done()
	return ctx.Err()
}

// invokeWithDeadline invokes h with event as Lambda would with a deadline
// a second past the return margin, and checks that the answer came before
// the deadline.
func invokeWithDeadline(t *testing.T, h *Handler, event any) (out any, deadline time.Time) {
	t.Helper()
	raw, err := json.Marshal(event)
	require.NoError(t, err)
	deadline = time.Now().Add(returnMargin + time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	out, err = h.Invoke(ctx, raw)
	require.NoError(t, err)
	return out, deadline
}

// workStoppedInTime checks the deadline the work of an invocation was
// given (stopped) leaves the return margin before the invocation's: the
// time the answer has to leave in. (Timing the answer against the deadline
// instead would leave a busy machine only that margin, two seconds.)
func workStoppedInTime(t *testing.T, stopped, deadline time.Time) {
	t.Helper()
	require.False(t, stopped.IsZero(), "the work had no deadline")
	assert.False(t, stopped.After(deadline.Add(-returnMargin)),
		"the work could run until %v, %v before the invocation's deadline", stopped, deadline.Sub(stopped))
}

// A collector that is down must not hold the answer past Lambda's deadline:
// an invocation that times out returns no partial batch response, so its
// whole batch would come back, the records it processed too.
func TestSpansThatCannotBeExportedDoNotHoldTheAnswer(t *testing.T) {
	// Not parallel: the tracer provider is the process's.
	exporter := stuckExporter{deadlines: make(chan time.Time, 1)}
	defer tracing.Use(exporter)()
	f := newFixture(t, &fakePublisher{}, Options{})
	raw, err := json.Marshal(events.SQSEvent{Records: []events.SQSMessage{sqsRecord("delivery-requests", "d1:requested", "ok", 1)}})
	require.NoError(t, err)
	deadline := time.Now().Add(returnMargin + time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	out, err := f.h.Invoke(ctx, raw)
	require.NoError(t, err)

	// The export, which gives up only when its context ends, was given
	// until half the return margin before the invocation's deadline, and
	// the answer came once it gave up. (Timing the answer against the
	// deadline instead would leave a busy machine only that half margin,
	// one second, however far off the deadline.)
	select {
	case flushDeadline := <-exporter.deadlines:
		require.False(t, flushDeadline.IsZero(), "the spans' export had no deadline")
		assert.False(t, flushDeadline.After(deadline.Add(-returnMargin/2)),
			"the spans' export could hold the answer until %v, %v before the invocation's deadline", flushDeadline, deadline.Sub(flushDeadline))
	default:
		require.Fail(t, "the invocation did not export its spans")
	}
	resp, ok := out.(*events.SQSEventResponse)
	require.True(t, ok, "%T", out)
	assert.Empty(t, failures(*resp))
	assert.NotNil(t, f.delivered("d1:requested"))
}

// An HTTP handler waiting on a store that does not answer is stopped before
// Lambda's deadline, so that its problem reaches the client rather than the
// gateway's error for a timed-out integration.
func TestAnHTTPHandlerIsStoppedBeforeTheDeadline(t *testing.T) {
	t.Parallel()
	fns := []functionapp.FunctionConfig{{Name: "Slow", Bindings: []functionapp.Binding{
		{Type: "httpTrigger", Direction: "in", Name: "req", AuthLevel: "function", Methods: []string{"get"}, Route: "slow"},
		{Type: "http", Direction: "out", Name: "res"},
	}}}
	var stopped time.Time // the deadline the handler was given
	reg := functionapp.Registry{"Slow": {HTTP: func(ctx context.Context, _ *functionapp.Request) *functionapp.Response {
		stopped, _ = ctx.Deadline()
		<-ctx.Done()
		return functionapp.Problem(http.StatusServiceUnavailable, "", "the store did not answer")
	}}}
	h, err := New(reg, fns, &fakePublisher{}, logctx.NewLogger(testWriter{t}, slog.LevelDebug), Options{})
	require.NoError(t, err)
	out, deadline := invokeWithDeadline(t, h, httpEvent(http.MethodGet, "/api/slow", "", ""))
	workStoppedInTime(t, stopped, deadline)
	resp, ok := out.(*events.APIGatewayV2HTTPResponse)
	require.True(t, ok, "%T", out)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Contains(t, resp.Body, "the store did not answer")
}

// On a FIFO queue a message that is not due is received, hidden until it is
// and received again: SQS counts both receives, but the step runs once, so
// its first run must not look like a redelivery (which would send the
// customer's notices again).
func TestADelayedRecordsFirstRunIsNoRedelivery(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC)
	due := now.Add(time.Minute)
	rec := sqsRecord("delivery-requests", "d1:retry-1", "ok", 1)
	at := due.Format(time.RFC3339Nano)
	rec.MessageAttributes[sqsmsg.AttrNotBefore] = events.SQSMessageAttribute{StringValue: &at, DataType: "String"}
	rec.Attributes["ApproximateFirstReceiveTimestamp"] = strconv.FormatInt(now.UnixMilli(), 10) // by SQS's clock
	pub := &delayingPublisher{}
	early := newFixture(t, pub, Options{Now: func() time.Time { return now }})
	resp := invoke[events.SQSEventResponse](t, early.h, events.SQSEvent{Records: []events.SQSMessage{rec}})
	require.Equal(t, []string{"sqs-d1:retry-1"}, failures(resp))
	require.Len(t, pub.delays, 1, "hidden until it is due")
	require.Nil(t, early.delivered("d1:retry-1"), "its step did not run")

	for receives, want := range map[string]int{"2": 1, "3": 2} {
		rec.Attributes["ApproximateReceiveCount"] = receives
		due := newFixture(t, &delayingPublisher{}, Options{Now: func() time.Time { return now.Add(time.Minute) }})
		resp = invoke[events.SQSEventResponse](t, due.h, events.SQSEvent{Records: []events.SQSMessage{rec}})
		require.Empty(t, failures(resp))
		m := due.delivered("d1:retry-1")
		require.NotNil(t, m)
		assert.Equal(t, want, m.DeliveryCount, "received %s times, the first early", receives)
	}
}
