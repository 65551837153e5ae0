package handlers

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// Readiness. Healthz says the process serves; a load balancer or an
// operator also needs to know whether it can do its work now, which it
// cannot while Cosmos DB (or the SQLite file) does not answer. Readyz asks
// each dependency one cheap question within readyTimeout. Its answer is
// kept for readyFor, so however many probes ask, the dependencies see one
// check a second at most; an anonymous caller learns only which of them
// failed, never why (the reason, which may name an endpoint, is logged).
const (
	readyTimeout = 3 * time.Second
	readyFor     = time.Second
	// readyProbeID is an account id no account has (ids are hex): reading
	// it costs a point read, and "not found" means the store answered.
	readyProbeID = "readiness-probe"
)

// readiness is the last answer of Readyz, and when it was found.
type readiness struct {
	mu     sync.Mutex
	at     time.Time
	checks map[string]string
	failed []string
}

// Readyz serves GET /api/readyz: 200 with each check "ok" when the store
// answers a point read, the drone index is loaded, and the queue (where it
// can be counted: the embedded one) answers a count; otherwise 503 with
// Retry-After naming what did not answer. Service Bus is not asked: it
// has no request as cheap that a receiving application may make, and
// ingest answers 503 while it is out.
func (h *Handlers) Readyz(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	r := &h.ready
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := h.clock.Now(); r.at.IsZero() || now.Sub(r.at) >= readyFor || now.Before(r.at) {
		r.checks, r.failed = h.checkReady(ctx)
		r.at = h.clock.Now()
	}
	if len(r.failed) > 0 {
		resp := functionapp.Problem(http.StatusServiceUnavailable, "", "not ready: "+strings.Join(r.failed, ", ")+" did not answer; retry")
		resp.Header.Set("Retry-After", "1")
		return resp
	}
	return functionapp.JSON(http.StatusOK, map[string]any{"status": "ready", "checks": r.checks})
}

// checkReady asks each dependency its question, all within readyTimeout.
func (h *Handlers) checkReady(ctx context.Context) (checks map[string]string, failed []string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readyTimeout)
	defer cancel()
	checks = map[string]string{}
	note := func(name, what string, err error) {
		if err == nil {
			checks[name] = "ok"
			return
		}
		checks[name] = "unavailable"
		failed = append(failed, what)
		h.log.WarnContext(ctx, "readiness check failed", "check", name, "err", err)
	}
	_, err := h.store.Accounts.Find(ctx, readyProbeID)
	if domain.IsCode(err, domain.ENOTFOUND) {
		err = nil
	}
	note("store", "the store", err)
	note("droneIndex", "the drone index", h.store.Fleet.Ready(ctx))
	if counter, ok := h.bus.(ports.Backlog); ok {
		_, _, err := counter.Depth(ctx, topology.QueueDeliveryRequests)
		note("queue", "the queue", err)
	}
	return checks, failed
}
