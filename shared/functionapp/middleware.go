package functionapp

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/logctx"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// Middleware wraps a queue function: what every message needs whichever step
// handles it (log context, panic recovery, the classification of failures)
// is written once as middleware instead of in each step and each runtime.
// name is the function's name in the registry.
type Middleware func(name string, next QueueFunc) QueueFunc

// Use returns a copy of the registry whose queue functions are wrapped by
// mw, the first outermost. HTTP functions are unchanged.
func (r Registry) Use(mw ...Middleware) Registry {
	out := make(Registry, len(r))
	for name, f := range r {
		if f.Queue != nil {
			for _, m := range slices.Backward(mw) {
				f.Queue = m(name, f.Queue)
			}
		}
		out[name] = f
	}
	return out
}

// Standard is the middleware every runtime applies to the registry it
// serves: the step's span outermost, so that it covers everything else and
// carries the log context's attributes; then the log context, so that every
// line about the message names it; then the classification of the result,
// then panic recovery around the step itself.
func Standard(log *slog.Logger) []Middleware {
	return []Middleware{Trace, LogContext, Classify(log), Recoverer}
}

// LogContext names the function, the message, its correlation id and its
// delivery count on every log line written while the message is handled.
func LogContext(name string, next QueueFunc) QueueFunc {
	return func(ctx context.Context, msg *ports.Delivered) ([]ports.Message, error) {
		ctx = logctx.With(ctx, "function", name, "messageId", msg.ID, "correlationId", msg.CorrelationID, "deliveryCount", msg.DeliveryCount)
		return next(ctx, msg)
	}
}

// Recoverer turns a panic in a step into a transient error: the message is
// retried, and dead-lettered by the bus after its maximum delivery count,
// instead of the panic taking down every other message in flight.
func Recoverer(_ string, next QueueFunc) QueueFunc {
	return func(ctx context.Context, msg *ports.Delivered) (out []ports.Message, err error) {
		defer func() {
			if r := recover(); r != nil {
				out, err = nil, fmt.Errorf("handler panic: %v\n%s", r, debug.Stack())
			}
		}()
		return next(ctx, msg)
	}
}

// Classify logs how a message ended, once: a permanent failure (an error
// wrapping domain.Permanent) can never succeed and the runtime has it
// dead-lettered, an error unless it is another party's (a warning); any
// other error is transient and the message is retried.
// A failure the runtime will run again at once, because a document the run
// read had changed (WithRerun), is only a debug line: the run that counts
// is the next.
func Classify(log *slog.Logger) Middleware {
	return func(_ string, next QueueFunc) QueueFunc {
		return func(ctx context.Context, msg *ports.Delivered) ([]ports.Message, error) {
			out, err := next(ctx, msg)
			switch {
			case err == nil:
				log.DebugContext(ctx, "message processed", "outputs", len(out))
			case rerun(ctx):
				log.DebugContext(ctx, "step failed on a document that changed since it was read; it runs again", "err", err)
			case domain.IsElsewhere(err):
				log.WarnContext(ctx, "message can never succeed, for a failure that is not the service's; it goes to the dead-letter queue", "err", err)
			case domain.IsPermanent(err):
				log.ErrorContext(ctx, "message can never succeed; it goes to the dead-letter queue", "err", err)
			default:
				log.WarnContext(ctx, "message failed; it will be retried", "err", err)
			}
			return out, err
		}
	}
}

// CarryVersions passes the versions of documents from step to step (see
// ports.Versions): each message's step notes what its store reads and
// writes, and its outputs carry those versions to the next step. Only the
// steps in trusting start from the versions their message carries, and
// only on a message's first delivery: a redelivery may follow an attempt
// that wrote and then stopped, and a step finishes such an attempt from
// what is stored now. The others note and pass on, but read.
func CarryVersions(trusting map[string]bool) Middleware {
	return func(name string, next QueueFunc) QueueFunc {
		trusted := trusting[name]
		return func(ctx context.Context, msg *ports.Delivered) ([]ports.Message, error) {
			carried := ""
			if trusted && msg.DeliveryCount <= 1 {
				carried = msg.Versions
			}
			ctx, _ = ports.WithVersions(ctx, carried)
			out, err := next(ctx, msg)
			if err == nil {
				ports.StampVersions(ctx, out)
			}
			return out, err
		}
	}
}

// NoteVersionsHTTP gives an HTTP function a ports.Versions, so that the
// messages it publishes carry the versions its store wrote (an accepted
// delivery's first message names the delivery just created).
func NoteVersionsHTTP(next HTTPFunc) HTTPFunc {
	return func(ctx context.Context, req *Request) *Response {
		ctx, _ = ports.WithVersions(ctx, "")
		return next(ctx, req)
	}
}

// EmitsOnly refuses, as a permanent failure, a step's output to a queue that
// emits[name] does not list: the chain's table (topology.Chain) is then the
// whole truth about which step feeds which. A function missing from emits
// may emit nothing. What the step publishes itself is checked against the
// same list (ports.WithEmits), as an HTTP function's is (EmitsOnlyHTTP).
func EmitsOnly(emits map[string][]string) Middleware {
	return func(name string, next QueueFunc) QueueFunc {
		allowed := emits[name]
		return func(ctx context.Context, msg *ports.Delivered) ([]ports.Message, error) {
			ctx = ports.WithEmits(ctx, name, allowed)
			out, err := next(ctx, msg)
			if cerr := ports.CheckEmits(ctx, out); cerr != nil {
				return nil, &domain.Permanent{Err: cerr}
			}
			return out, err
		}
	}
}

// EmitsOnlyHTTP holds what the HTTP function name publishes to the queues
// allowed (its row of topology.Chain; none when it has no row), through
// ports.CheckEmits.
func EmitsOnlyHTTP(name string, allowed []string, next HTTPFunc) HTTPFunc {
	return func(ctx context.Context, req *Request) *Response {
		return next(ports.WithEmits(ctx, name, allowed), req)
	}
}

// Prepare is how every runtime starts: it checks the registry against the
// functions' configuration (each has a trigger and a handler of its kind),
// wraps the queue functions in the Standard middleware and CarryVersions
// and the HTTP functions in TraceHTTP and NoteVersionsHTTP, and returns a
// logger that keeps the attributes logctx.With attaches (nil means
// slog.Default()).
func Prepare(reg Registry, fns []FunctionConfig, log *slog.Logger) (Registry, *slog.Logger, error) {
	if log == nil {
		log = slog.Default()
	}
	if _, ok := log.Handler().(logctx.ContextHandler); !ok {
		log = slog.New(logctx.ContextHandler{Handler: log.Handler()})
	}
	for _, fc := range fns {
		if fc.Trigger() == nil {
			return nil, nil, fmt.Errorf("function %s has no trigger binding", fc.Name)
		}
	}
	if err := reg.Check(fns); err != nil {
		return nil, nil, err
	}
	trusting := map[string]bool{}
	for name, f := range reg {
		trusting[name] = f.StartsFromCarriedVersions
	}
	reg = reg.Use(append(Standard(log), CarryVersions(trusting))...)
	for _, fc := range fns {
		if t := fc.Trigger(); t.Type == "httpTrigger" {
			f := reg[fc.Name]
			route := t.Route
			if route == "" {
				route = fc.Name
			}
			f.HTTP = TraceHTTP(fc.Name, "/"+RoutePrefix+"/"+route, NoteVersionsHTTP(f.HTTP))
			reg[fc.Name] = f
		}
	}
	return reg, log, nil
}

type rerunKey struct{}

// WithRerun tells Classify that the runtime runs the step again at once
// when stale reports that a document the run read has changed since.
func WithRerun(ctx context.Context, stale func() bool) context.Context {
	return context.WithValue(ctx, rerunKey{}, stale)
}

func rerun(ctx context.Context) bool {
	stale, ok := ctx.Value(rerunKey{}).(func() bool)
	return ok && stale()
}
