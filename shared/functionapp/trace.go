package functionapp

import (
	"context"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/tracing"
)

// Trace runs each message of a queue function in a span named after the
// function, the child of the span that sent the message (its traceparent),
// so that a delivery's steps form one trace. The messages the step sends
// are stamped as children of this span. The attributes the step adds to
// its log context (the delivery id among them) land on the span too
// (logctx.With). A failure is recorded on the span, a permanent one as
// well as a transient one. While tracing is off the message goes straight
// to next.
func Trace(name string, next QueueFunc) QueueFunc {
	return func(ctx context.Context, msg *ports.Delivered) ([]ports.Message, error) {
		tr, on := tracing.Tracer()
		if !on {
			return next(ctx, msg)
		}
		ctx, span := tr.Start(tracing.Extract(ctx, &msg.Message), name,
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				semconv.MessagingOperationTypeProcess,
				semconv.MessagingDestinationName(msg.Queue),
				semconv.MessagingMessageID(msg.ID),
				semconv.MessagingMessageConversationID(msg.CorrelationID),
				semconv.MessagingServiceBusMessageDeliveryCount(msg.DeliveryCount),
			))
		defer span.End()
		out, err := next(ctx, msg)
		if err != nil {
			fail(span, err)
		}
		tracing.Inject(ctx, out)
		return out, err
	}
}

// TraceHTTP runs each request of an HTTP function in a server span named
// after the function, continuing the caller's trace when the request
// carries a traceparent header. route is the function's route, which the
// span names as http.route. A 5xx answer marks the span failed; a 4xx is
// the caller's mistake, not the server's, and leaves it unset, as the HTTP
// semantic conventions have it.
func TraceHTTP(name, route string, next HTTPFunc) HTTPFunc {
	return func(ctx context.Context, req *Request) *Response {
		tr, on := tracing.Tracer()
		if !on {
			return next(ctx, req)
		}
		ctx, span := tr.Start(tracing.FromHTTP(ctx, req.Header), name,
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(
				semconv.HTTPRequestMethodKey.String(req.Method),
				semconv.HTTPRoute(route),
				semconv.URLPath(req.Path),
			))
		defer span.End()
		resp := next(ctx, req)
		if resp == nil {
			return resp
		}
		span.SetAttributes(semconv.HTTPResponseStatusCode(resp.Status))
		if resp.Status >= http.StatusInternalServerError {
			span.SetStatus(codes.Error, http.StatusText(resp.Status))
		}
		return resp
	}
}

// fail records err on span; the status names its first line (a panic's
// stack trace stays in the event).
func fail(span trace.Span, err error) {
	span.RecordError(err)
	why, _, _ := strings.Cut(err.Error(), "\n")
	span.SetStatus(codes.Error, why)
}
