// Package logctx carries log attributes in a context, so that every log line of
// a request or message names its correlation id, delivery id and (under the
// Functions host) invocation id without each call site repeating them. The
// same attributes are set on the trace span the context carries, so that a
// span and the log lines written under it name the same delivery.
package logctx

import (
	"context"
	"io"
	"log/slog"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

type attrsKey struct{}

// With returns a context whose log lines carry the given key/value pairs in
// addition to those ctx already carries; a key given again replaces its
// earlier value, so a line never names one key twice. When ctx carries a
// recording span, the pairs become the span's attributes too.
func With(ctx context.Context, args ...any) context.Context {
	prev, _ := ctx.Value(attrsKey{}).([]slog.Attr)
	r := slog.Record{}
	r.Add(args...)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		kv := make([]attribute.KeyValue, 0, r.NumAttrs())
		r.Attrs(func(a slog.Attr) bool {
			kv = append(kv, spanAttr(a))
			return true
		})
		span.SetAttributes(kv...)
	}
	attrs := make([]slog.Attr, 0, len(prev)+r.NumAttrs())
	attrs = append(attrs, prev...)
	r.Attrs(func(a slog.Attr) bool {
		for i := range attrs {
			if attrs[i].Key == a.Key {
				attrs[i] = a
				return true
			}
		}
		attrs = append(attrs, a)
		return true
	})
	return context.WithValue(ctx, attrsKey{}, attrs)
}

// spanAttr turns a log attribute into a span attribute of the same name.
func spanAttr(a slog.Attr) attribute.KeyValue {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindInt64:
		return attribute.Int64(a.Key, v.Int64())
	case slog.KindBool:
		return attribute.Bool(a.Key, v.Bool())
	case slog.KindFloat64:
		return attribute.Float64(a.Key, v.Float64())
	default:
		return attribute.String(a.Key, v.String())
	}
}

// Attrs returns the attributes ctx carries.
func Attrs(ctx context.Context) []slog.Attr {
	a, _ := ctx.Value(attrsKey{}).([]slog.Attr)
	return a
}

// ContextHandler adds the context's attributes to every record.
type ContextHandler struct{ slog.Handler }

// Handle implements slog.Handler.
func (h ContextHandler) Handle(ctx context.Context, r slog.Record) error {
	if a := Attrs(ctx); len(a) > 0 {
		r = r.Clone()
		r.AddAttrs(a...)
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h ContextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return ContextHandler{h.Handler.WithAttrs(attrs)}
}

// WithGroup implements slog.Handler.
func (h ContextHandler) WithGroup(name string) slog.Handler {
	return ContextHandler{h.Handler.WithGroup(name)}
}

// NewLogger returns a JSON logger to w that adds context attributes.
func NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(ContextHandler{slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})})
}

// NewSplitLogger returns a JSON logger that writes records below Warn to low
// and the rest to high, adding context attributes to both.
//
// A custom handler needs it: the Functions host logs every line of the
// handler's stderr as an Error (as a Warning when it contains "warn") and
// every line of its stdout as Information (WorkerProcess.ParseErrorMessageAndLog
// and OnOutputDataReceived in Azure/azure-functions-host,
// src/WebJobs.Script/Workers/ProcessManagement/WorkerProcess.cs, with
// UseStdErrorStreamForErrorsOnly true for HTTP workers in
// Workers/Http/HttpWorkerDescription.cs). Info and debug lines therefore go
// to stdout and warnings and errors to stderr, whose JSON "level":"WARN"
// keeps a warning a Warning.
func NewSplitLogger(low, high io.Writer, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	return slog.New(ContextHandler{splitHandler{
		low:  slog.NewJSONHandler(low, opts),
		high: slog.NewJSONHandler(high, opts),
	}})
}

// splitHandler sends a record to one of two handlers by its level.
type splitHandler struct{ low, high slog.Handler }

// Enabled implements slog.Handler; both handlers share one level.
func (h splitHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.low.Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (h splitHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		return h.high.Handle(ctx, r)
	}
	return h.low.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h splitHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return splitHandler{low: h.low.WithAttrs(attrs), high: h.high.WithAttrs(attrs)}
}

// WithGroup implements slog.Handler.
func (h splitHandler) WithGroup(name string) slog.Handler {
	return splitHandler{low: h.low.WithGroup(name), high: h.high.WithGroup(name)}
}
