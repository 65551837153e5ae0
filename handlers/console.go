package handlers

import (
	"context"
	_ "embed"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

//go:embed assets/console.html
var consolePage []byte

// Console serves GET /api/console: the operator's console, a
// self-contained HTML page. It is served to anyone because it holds no
// data: the operator pastes the operator key into it, the page keeps the
// key in sessionStorage and sends it as the bearer token of the operator
// API it calls from its own origin, never in a URL.
func (h *Handlers) Console(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	return h.page(consolePage)
}

// consoleSnapshot is one event of GET /api/console/events: what the
// console shows of the fleet and of the waiting deliveries.
type consoleSnapshot struct {
	Drones []*domain.Drone `json:"drones"`
	// MoreDrones says the fleet has more than consoleDrones drones; the
	// first by id are sent.
	MoreDrones bool         `json:"moreDrones"`
	Waiting    *waitingList `json:"waiting"`
}

// consoleDrones and consoleWaiting bound what one snapshot reads: the
// console shows so much and no more.
const (
	consoleDrones  = 1000
	consoleWaiting = 20
)

// consoleEvery is how often an open console stream reads the store: a
// listing of drones and a page of waiting deliveries each time, so it is
// slower than the tracking page's read of one delivery.
const consoleEvery = time.Second

// snapshot reads what a console stream sends.
func (h *Handlers) consoleSnapshot(ctx context.Context) (*consoleSnapshot, error) {
	drones, err := h.store.Fleet.List(ctx, "", "", consoleDrones+1)
	if err != nil {
		return nil, err
	}
	s := &consoleSnapshot{Drones: make([]*domain.Drone, 0, min(len(drones), consoleDrones))}
	if len(drones) > consoleDrones {
		drones, s.MoreDrones = drones[:consoleDrones], true
	}
	for _, d := range drones {
		s.Drones = append(s.Drones, h.droneView(d))
	}
	if h.store.Waiting != nil {
		if s.Waiting, err = h.waitingPage(ctx, &wire.WaitingListing{Limit: consoleWaiting}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// ConsoleEvents serves GET /api/console/events with the operator key on
// the standalone runtime: server-sent events named "fleet", each a
// consoleSnapshot, sent when it differs from the last one sent, with
// keep-alive comments in between. Like TrackEvents it reads the store
// (every consoleEvery), so it sees the writes of every instance. The
// console reads it with fetch, which can send the key in the
// Authorization header (an EventSource cannot), and polls the API when
// the stream cannot be had.
func (h *Handlers) ConsoleEvents(ctx context.Context, req *functionapp.Request, s functionapp.Stream) *functionapp.Response {
	es := newEventStream(s, h.cfg.Push, max(consoleEvery, h.cfg.Push.PollInterval))
	defer es.stop()
	for {
		snap, err := h.consoleSnapshot(ctx)
		if err != nil {
			if es.last == nil {
				return h.errorResponse(ctx, err)
			}
			// Read again at the next tick; the page shows what it has.
			h.log.WarnContext(ctx, "console stream: reading the fleet failed", "err", err)
		} else if body, err := json.Marshal(snap); err == nil && !es.send("fleet", body) {
			return nil
		}
		if !es.wait(ctx) {
			return nil
		}
	}
}

// ConsoleEventsUnavailable answers GET /api/console/events where the
// runtime cannot hold a stream: under the Functions host a custom handler
// returns a whole response payload that the host passes to the output
// binding (learn.microsoft.com/azure/azure-functions/functions-custom-handlers#overview),
// and Lambda's API Gateway integration likewise takes a whole answer. The
// console asks GET /api/console/negotiate instead: Web PubSub where it is
// configured, else polling.
func (h *Handlers) ConsoleEventsUnavailable(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	return functionapp.Problem(http.StatusNotImplemented, "",
		"this deployment serves no event stream to the console: GET /api/console/negotiate says how it pushes, or poll the operator API")
}

// consoleGroup is the Web PubSub group of the open consoles.
const consoleGroup = "operators"

// consolePushEvery is the least time between two messages one process
// sends to the consoles: each makes every open console read its snapshot,
// so a busy fleet must not turn every telemetry report into a read.
const consolePushEvery = time.Second

// consoleChangedMessage is what the consoles are sent: only that something
// changed. The console then reads what it shows, as when it polls, so the
// message carries no data and needs no ordering.
var consoleChangedMessage = []byte(`{"type":"changed"}`)

// consolePush throttles the messages to the consoles.
type consolePush struct {
	mu   sync.Mutex
	last time.Time
}

// due reports whether a message may go now, and if so counts it as sent.
func (c *consolePush) due(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.last.IsZero() && now.Sub(c.last) < consolePushEvery {
		return false
	}
	c.last = now
	return true
}

// consoleChanged tells the open consoles, through Push, that what they show
// has changed, at most once per consolePushEvery in this process. A change
// that falls within that second is not sent: the console reads once more a
// little over consolePushEvery after each message, which covers it (see
// docs/operating.md). A failure is logged and nothing more; the consoles
// also poll, slowly, while push works. Call it after the step's writes: a
// runtime with Push (the Functions host) writes as a step goes, with no
// unit of work to commit later.
func (h *Handlers) consoleChanged(ctx context.Context) {
	// time.Now, not h.clock: the throttle is about real time between
	// sends, and a monotonic reading.
	if h.push == nil || !h.console.due(time.Now()) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pushSendTimeout)
	defer cancel()
	if err := h.push.SendToGroup(ctx, consoleGroup, consoleChangedMessage); err != nil {
		h.log.WarnContext(ctx, "push to the consoles failed; they will catch up by polling", "err", err)
	}
}

// ConsoleNegotiate serves GET /api/console/negotiate with the operator key:
// how the console learns of changes here. "webpubsub": a WebSocket to url
// receives a message whenever something the console shows has changed
// (the Functions host); "sse": url is GET /api/console/events (the
// standalone runtime); "poll": neither, poll every pollIntervalMs.
func (h *Handlers) ConsoleNegotiate(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	n := negotiation{Transport: "poll", PollInterval: int(MinPagePollInterval / time.Millisecond)}
	switch {
	case h.push != nil:
		u, err := h.push.ClientURL(ctx, consoleGroup, h.cfg.Push.ClientTokenLifetime)
		if err != nil {
			// The console polls instead.
			h.log.WarnContext(ctx, "console negotiate: no Web PubSub client URL", "err", err)
			break
		}
		n.Transport, n.URL = "webpubsub", u
	case h.cfg.Push.Events:
		n.Transport, n.URL = "sse", "/api/console/events"
	}
	return functionapp.JSON(http.StatusOK, n)
}
