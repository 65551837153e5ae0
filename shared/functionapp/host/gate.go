package host

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

// DefaultStartWait is how long a Gate holds an invocation that arrives
// before the handler is ready. A refused queue invocation fails, and a
// failed invocation's message is abandoned and delivered again at once
// (the host calls EnsureSuccessStatusCode on the answer,
// DefaultHttpWorkerService.cs in Azure/azure-functions-host; with
// autoCompleteMessages a failure abandons the message, and an abandoned
// message "is available again for immediate processing",
// ServiceBusReceiver.AbandonMessageAsync in Azure.Messaging.ServiceBus). So
// each refusal costs one of the queue's maxDeliveryCount (10) deliveries,
// and a backend that stays closed for ten waits dead-letters the message.
// The backend may take minutes to open (a role assignment propagating; it
// is retried until it opens), so an invocation is held for most of
// host.json's functionTimeout (5 minutes), leaving the step a minute and a
// half of the invocation's budget (invocationBudget, counted from its
// arrival) once the backend opens: ten deliveries then outlast 30 minutes
// of a closed backend, where a 20-second wait outlasted three.
const DefaultStartWait = 3 * time.Minute

// startingRetryAfter is the Retry-After, in seconds, of a forwarded request
// answered while the handler starts.
const startingRetryAfter = 5

// Gate is what the host talks to from the moment the handler listens: it
// answers every request itself until Open hands it the real handler.
//
// The host counts the handler ready as soon as its port gives any HTTP
// answer, and gives up after HttpWorkerOptions.InitializationTimeout, 30 s
// (DefaultHttpWorkerService.IsWorkerReady and Configuration/HttpWorkerOptions.cs
// in Azure/azure-functions-host, src/WebJobs.Script/Workers/Http); after three
// failed starts within 30 minutes it shuts itself down
// (HttpFunctionInvocationDispatcher.ErrorEventsThreshold,
// WorkerConstants.WorkerRestartErrorIntervalThresholdInMinutes). Opening Cosmos DB
// can take longer than that (a token, a role assignment still propagating),
// so the handler listens first, behind a Gate, and opens its backend after.
type Gate struct {
	prefix string        // forwarded requests start with it
	wait   time.Duration // how long an invocation waits for Open

	once  sync.Once
	ready chan struct{}
	h     http.Handler // set once, before ready closes
}

// NewGate returns a Gate that holds an invocation up to wait (0 answers at
// once) before refusing it.
func NewGate(wait time.Duration) *Gate {
	return &Gate{prefix: "/" + functionapp.RoutePrefix, wait: max(wait, 0), ready: make(chan struct{})}
}

// Open makes h answer every request from now on; later calls do nothing.
func (g *Gate) Open(h http.Handler) {
	g.once.Do(func() {
		g.h = h
		close(g.ready)
	})
}

// Ready is closed once the Gate has been opened.
func (g *Gate) Ready() <-chan struct{} { return g.ready }

// ServeHTTP answers a forwarded request at once with 503 while the handler
// starts, because its caller can retry; it holds an invocation for up to the
// Gate's wait, and refuses it with 503 if the handler is still not ready,
// which fails the invocation (the host calls EnsureSuccessStatusCode), so
// Service Bus delivers the message again.
func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case <-g.ready:
		g.h.ServeHTTP(w, r)
		return
	default:
	}
	// The host forwards the path as the client wrote it, and its routes
	// ignore case, so "/API/..." is a forwarded request too.
	p := r.URL.Path
	forwarded := strings.EqualFold(p, g.prefix) ||
		(len(p) > len(g.prefix) && p[len(g.prefix)] == '/' && strings.EqualFold(p[:len(g.prefix)], g.prefix))
	if !forwarded && r.Method == http.MethodPost && g.wait > 0 {
		t := time.NewTimer(g.wait)
		defer t.Stop()
		select {
		case <-g.ready:
			g.h.ServeHTTP(w, r)
			return
		case <-t.C:
		case <-r.Context().Done():
			if !errors.Is(r.Context().Err(), context.DeadlineExceeded) {
				return // the host gave up; nobody reads the answer
			}
			// The invocation's budget ran out (a start wait set longer
			// than it): refused, not answered empty, which the host
			// would take for success and complete the message unread.
		}
	}
	resp := functionapp.Problem(http.StatusServiceUnavailable, "", "the service is starting; try again shortly")
	resp.Header.Set("Retry-After", strconv.Itoa(startingRetryAfter))
	functionapp.WriteResponse(w, resp)
}
