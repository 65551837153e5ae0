// Package runtime is what every runtime (the Functions custom handler, the
// standalone server, AWS Lambda) shares: the handler registry, the function
// bindings read from function.json, and the policy that turns a queue
// handler's result into a settlement.
package functionapp

import (
	"context"
	"net/http"
	"net/url"

	"github.com/fabrikam/dronedelivery/shared/ports"
)

// Request is an HTTP request as a handler sees it, whichever runtime
// received it.
type Request struct {
	Method string
	Path   string            // the URL path, e.g. /api/deliveries/42
	Params map[string]string // route parameters, e.g. {"id": "42"}
	Query  url.Values
	Header http.Header
	Body   []byte
}

// Response is an HTTP response as a handler produces it.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// HTTPFunc handles one HTTP-triggered function. It reports every failure in
// the response it returns.
type HTTPFunc func(ctx context.Context, req *Request) *Response

// QueueFunc handles one queue message and returns the messages to send next.
// A nil error means done; an error wrapped in domain.Permanent means the
// message can never succeed; any other error is transient and the message is
// retried.
type QueueFunc func(ctx context.Context, msg *ports.Delivered) ([]ports.Message, error)

// Function is one entry of the registry: exactly one of HTTP and Queue is set.
type Function struct {
	HTTP  HTTPFunc
	Queue QueueFunc
	// Stream, when set beside HTTP, serves the function as a stream of
	// server-sent events where the runtime can hold a connection open
	// (WithStreams); HTTP answers elsewhere.
	Stream StreamFunc
	// Public says an HTTP function answers callers without an API key. Its
	// function.json must then say authLevel anonymous, and every other HTTP
	// function's must not, so the platform's key guards exactly the
	// functions the API key guards (Registry.Check holds them together).
	Public bool
	// StartsFromCarriedVersions says a queue function's every effect is a
	// conditional write or a message, so that it may start from the
	// versions of documents its message carries instead of reading them
	// (ports.Versions, CarryVersions). A step that acts outside the store
	// (a webhook, an e-mail) must leave it unset and read.
	StartsFromCarriedVersions bool
	// ActsOutside says a queue function's run reaches outside the store
	// (it posts a webhook, sends an e-mail or an SMS), which running it
	// again would do again, and writes no document. A runtime that runs a
	// step in a unit of work then has it read every document as stored
	// now (ports.FreshReader), not from a cache of recent ones, so that
	// neither a stale copy nor a change after its read makes it run again
	// at once; a redelivered message still runs it again, as any step.
	ActsOutside bool
	// Reads is the queue a queue function is triggered by, as the chain's
	// table has it (topology.Chain); Registry.Check refuses a function.json
	// whose trigger reads another. Empty leaves the binding unchecked.
	Reads string
}

// Registry maps a function's name (its folder under functions/) to its handler.
type Registry map[string]Function
