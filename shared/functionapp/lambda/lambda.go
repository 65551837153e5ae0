// Package lambda runs the functions on AWS Lambda with aws-lambda-go: API
// Gateway HTTP API events (payload format 2.0) for the HTTP functions and
// SQS events for the queue steps, over the same handler registry and the
// same function.json routes and queue names as the other runtimes.
//
// One bootstrap serves every function. A deployment may pin it to one
// (DRONEDELIVERY_FUNCTION, or a Lambda handler setting that names a
// function); otherwise each event is routed by what it is: an HTTP event by
// its method and path, an SQS record by the queue in its event source ARN.
package lambda

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/logctx"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/tracing"
)

// The settings that pin the bootstrap to one function: ours first, then
// the handler setting that the provided runtimes pass in _HANDLER.
const (
	EnvFunction = "DRONEDELIVERY_FUNCTION"
	EnvHandler  = "_HANDLER"
)

// Delayer keeps a received message out of sight until its NotBefore: SQS
// FIFO queues take no per-message delay, so a record that arrives early is
// hidden again (or, due later than SQS hides one, sent again) and reported
// unprocessed. The SQS bus implements it.
type Delayer interface {
	Delay(ctx context.Context, m *ports.Delivered) error
}

// DeadLetterer moves a received message to its queue's dead-letter queue
// with a reason. SQS has no such operation: the SQS bus copies the message,
// with the reason as attributes, to the queue's -dlq queue and deletes it
// (ports.Bus.DeadLetter), as the standalone runtime does on SQS.
type DeadLetterer interface {
	DeadLetter(ctx context.Context, m *ports.Delivered, reason, description string) error
}

// Options tune a Handler.
type Options struct {
	// Function, when not empty, is the one function this handler serves;
	// events for any other fail.
	Function string
	// QueuePrefix is the SQS bus's queue name prefix, which the queue of a
	// record's event source ARN begins with.
	QueuePrefix string
	// Now tells the time, for tests; nil means time.Now.
	Now func() time.Time
}

// Handler answers Lambda invocations.
type Handler struct {
	http   *httpSide
	queues map[string]queueFunc // by the port's queue name
	only   string
	pub    ports.Publisher
	// queuePrefix is stripped from a record's queue name.
	queuePrefix string
	log         *slog.Logger
	now         func() time.Time
}

type queueFunc struct {
	name string
	fn   functionapp.QueueFunc
}

// New checks that every function has a handler of its trigger's kind and
// returns the Handler; pub receives what the queue steps produce.
func New(reg functionapp.Registry, fns []functionapp.FunctionConfig, pub ports.Publisher, log *slog.Logger, opts Options) (*Handler, error) {
	reg, log, err := functionapp.Prepare(reg, fns, log)
	if err != nil {
		return nil, err
	}
	served := fns
	if opts.Function != "" {
		served = nil
		for _, fc := range fns {
			if fc.Name == opts.Function {
				served = append(served, fc)
			}
		}
		if len(served) == 0 {
			return nil, fmt.Errorf("%s names function %q, which has no function.json", EnvFunction, opts.Function)
		}
	}
	h := &Handler{queues: map[string]queueFunc{}, only: opts.Function, pub: pub, log: log, now: opts.Now, queuePrefix: opts.QueuePrefix}
	if h.now == nil {
		h.now = time.Now
	}
	for _, fc := range served {
		t := fc.Trigger()
		if t.Type != "serviceBusTrigger" {
			continue
		}
		if prev, dup := h.queues[t.QueueName]; dup {
			return nil, fmt.Errorf("functions %s and %s both consume queue %s: an SQS record could not tell them apart", prev.name, fc.Name, t.QueueName)
		}
		if pub == nil {
			return nil, fmt.Errorf("function %s is queue-triggered but no publisher was given", fc.Name)
		}
		h.queues[t.QueueName] = queueFunc{name: fc.Name, fn: reg[fc.Name].Queue}
	}
	if h.http, err = newHTTPSide(reg, served); err != nil {
		return nil, err
	}
	return h, nil
}

// SelectFunction reads which function a deployment pins the bootstrap to:
// DRONEDELIVERY_FUNCTION, which must name one, or else the Lambda handler
// setting when it names one (a handler such as "bootstrap" does not).
func SelectFunction(fns []functionapp.FunctionConfig, env func(string) string) (string, error) {
	if name := strings.TrimSpace(env(EnvFunction)); name != "" {
		for _, fc := range fns {
			if fc.Name == name {
				return name, nil
			}
		}
		return "", fmt.Errorf("%s is %q, which names no function under functions/", EnvFunction, name)
	}
	handler := strings.TrimSpace(env(EnvHandler))
	for _, fc := range fns {
		if handler != "" && strings.EqualFold(fc.Name, handler) {
			return fc.Name, nil
		}
	}
	return "", nil
}

// errUnknownEvent is the answer to an event that is neither kind.
var errUnknownEvent = errors.New("the event is neither an API Gateway HTTP API (payload 2.0) request nor an SQS batch")

// Invoke answers one invocation, for lambda.Start: an HTTP API event gets
// an events.APIGatewayV2HTTPResponse, an SQS event an
// events.SQSEventResponse listing the records to retry.
func (h *Handler) Invoke(ctx context.Context, event json.RawMessage) (any, error) {
	// The answer must leave before Lambda's deadline (returnMargin): the
	// work ends returnMargin before it, and the export of the spans, which
	// a collector that is down would hold until the deadline, half of it.
	flushCtx := ctx
	if deadline, ok := ctx.Deadline(); ok {
		var cancelWork, cancelFlush context.CancelFunc
		flushCtx, cancelFlush = context.WithDeadline(ctx, deadline.Add(-returnMargin/2))
		defer cancelFlush()
		ctx, cancelWork = context.WithDeadline(ctx, deadline.Add(-returnMargin))
		defer cancelWork()
	}
	// Lambda may freeze the process as soon as this returns, before the
	// batch processor's next export: the invocation's spans go out first.
	defer func() {
		if err := tracing.Flush(flushCtx); err != nil {
			h.log.WarnContext(ctx, "exporting the invocation's spans failed", "err", err)
		}
	}()
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		ctx = logctx.With(ctx, "awsRequestId", lc.AwsRequestID)
	}
	var probe struct {
		RequestContext struct {
			HTTP *struct {
				Method string `json:"method"`
			} `json:"http"`
		} `json:"requestContext"`
		Records []struct {
			EventSource string `json:"eventSource"`
		} `json:"Records"`
	}
	if err := json.Unmarshal(event, &probe); err != nil {
		return nil, fmt.Errorf("decode the event: %w", err)
	}
	switch {
	case probe.RequestContext.HTTP != nil && probe.RequestContext.HTTP.Method != "":
		return h.serveHTTP(ctx, event)
	case len(probe.Records) > 0:
		for _, r := range probe.Records {
			if r.EventSource != "aws:sqs" {
				return nil, fmt.Errorf("%w: a record's eventSource is %q", errUnknownEvent, r.EventSource)
			}
		}
		return h.serveSQS(ctx, event)
	default:
		return nil, errUnknownEvent
	}
}
