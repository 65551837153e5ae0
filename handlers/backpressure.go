package handlers

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// backlogCheckEvery bounds how often ingest counts the backlog: counting is
// a query, and a quarter-second-old figure is good enough to shed load.
const backlogCheckEvery = 250 * time.Millisecond

// backlogRetryAfter is what a shed request is told to wait, in seconds.
const backlogRetryAfter = "2"

// backlogGate sheds new deliveries while the chain's queues hold more than
// Config.MaxBacklog messages ready to run, so an overloaded service answers
// 503 at once instead of accepting work it will finish late and growing
// without limit. Delayed retries (deliveries waiting for a drone) do not
// count: they wait by design, and counting them let deliveries that wait
// long shut ingest for every account.
type backlogGate struct {
	mu      sync.Mutex
	checked time.Time
	over    bool
}

// chainQueues are the queues a delivery waits in before it is Scheduled.
var chainQueues = []string{topology.QueueDeliveryRequests, topology.QueueDroneScheduled, topology.QueuePackageUpdated}

// overloaded reports whether ingest should shed load. A bus that cannot
// count its backlog (Service Bus and SQS here: the platform scales their
// consumers instead) never sheds; nor does a count that fails.
func (h *Handlers) overloaded(ctx context.Context) bool {
	counter, ok := h.bus.(ports.Backlog)
	if h.cfg.MaxBacklog <= 0 || !ok {
		return false
	}
	g := &h.backlog
	g.mu.Lock()
	defer g.mu.Unlock()
	now := h.clock.Now()
	if !g.checked.IsZero() && now.Sub(g.checked) < backlogCheckEvery {
		return g.over
	}
	total := 0
	for _, q := range chainQueues {
		ready, err := counter.Ready(ctx, q)
		if err != nil {
			h.log.WarnContext(ctx, "backlog count failed; not shedding", "queue", q, "err", err)
			return false
		}
		total += ready
	}
	g.checked, g.over = now, total >= h.cfg.MaxBacklog
	if g.over {
		h.log.WarnContext(ctx, "backlog over its bound; shedding new deliveries", "backlog", total, "max", h.cfg.MaxBacklog)
	}
	return g.over
}

// busy is the answer to a shed request.
func busy() *functionapp.Response {
	resp := functionapp.Problem(http.StatusServiceUnavailable, "", "the service is busy with a backlog of deliveries; retry after "+backlogRetryAfter+" s")
	resp.Header.Set("Retry-After", backlogRetryAfter)
	return resp
}
