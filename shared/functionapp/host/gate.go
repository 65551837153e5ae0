package host

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

// DefaultStartWait is how long a Gate holds an invocation that arrives
// before the handler is ready. A refused queue invocation costs its message
// one delivery, which Service Bus retries at once, so holding it while the
// backend opens spares the message's delivery count; the host waits for the
// answer as long as the function timeout allows (host.json, 5 minutes).
const DefaultStartWait = 20 * time.Second

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
	p := r.URL.Path
	forwarded := p == g.prefix || strings.HasPrefix(p, g.prefix+"/")
	if !forwarded && r.Method == http.MethodPost && g.wait > 0 {
		t := time.NewTimer(g.wait)
		defer t.Stop()
		select {
		case <-g.ready:
			g.h.ServeHTTP(w, r)
			return
		case <-t.C:
		case <-r.Context().Done():
			return // the host gave up; nobody reads the answer
		}
	}
	resp := functionapp.Problem(http.StatusServiceUnavailable, "", "the service is starting; try again shortly")
	resp.Header.Set("Retry-After", strconv.Itoa(startingRetryAfter))
	functionapp.WriteResponse(w, resp)
}
