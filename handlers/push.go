package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

// PushConfig tunes how the tracking page is kept current by push.
type PushConfig struct {
	// Events says this runtime serves GET /api/track/{trackingId}/events
	// as server-sent events (the standalone runtime); the Functions host
	// and Lambda cannot hold the connection.
	Events bool
	// PollInterval is how often an open event stream reads its delivery
	// (default DefaultPushPollInterval, at least MinPushPollInterval): the
	// bound on how late an event is after the change, and on what one
	// watcher costs (two point reads each time).
	PollInterval time.Duration
	// KeepAlive is how long a stream may stay silent before a comment is
	// sent on it (default 15 s, at most half functionapp.StreamWriteWait),
	// below the idle timeouts of proxies.
	KeepAlive time.Duration
	// MaxLifetime ends a stream after this long (default 30 min); the
	// browser's EventSource then connects again, possibly to another
	// instance, so long streams do not pin watchers to one instance.
	MaxLifetime time.Duration
	// ClientTokenLifetime is how long a Web PubSub client URL handed out
	// by negotiate stays valid (default 60 min).
	ClientTokenLifetime time.Duration
}

// Defaults of PushConfig.
const (
	DefaultPushPollInterval = 250 * time.Millisecond
	MinPushPollInterval     = 50 * time.Millisecond
	DefaultPushKeepAlive    = 15 * time.Second
	DefaultPushMaxLifetime  = 30 * time.Minute
	DefaultClientTokenLife  = time.Hour
)

func (c PushConfig) withDefaults() PushConfig {
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPushPollInterval
	}
	c.PollInterval = max(c.PollInterval, MinPushPollInterval)
	if c.KeepAlive <= 0 {
		c.KeepAlive = DefaultPushKeepAlive
	}
	// A write must come well within the runtime's bound on each write,
	// or an idle stream would be cut.
	c.KeepAlive = min(c.KeepAlive, functionapp.StreamWriteWait/2)
	if c.MaxLifetime <= 0 {
		c.MaxLifetime = DefaultPushMaxLifetime
	}
	if c.ClientTokenLifetime <= 0 {
		c.ClientTokenLifetime = DefaultClientTokenLife
	}
	return c
}

// pushGroup is the Web PubSub group of a delivery's watchers. It names the
// delivery, not its tracking id, which stays a secret between the page and
// this service: a client joins only through the token negotiate gives it.
func pushGroup(deliveryID string) string { return "delivery." + deliveryID }

// ended reports whether the page has nothing more to wait for: the
// delivery ended, and no proof of delivery is still to come.
func ended(d *domain.Delivery) bool {
	if !d.Stage.Terminal() {
		return false
	}
	awaitingProof := d.Stage == domain.StageCompleted && d.Confirmation == nil &&
		d.Request.ConfirmationRequired != "" && d.Request.ConfirmationRequired != domain.ConfirmationNone
	return !awaitingProof
}

// TrackEvents serves GET /api/track/{trackingId}/events on the standalone
// runtime: the feed as server-sent events, one whenever what the feed
// says changes (a change of stage, a telemetry report, a proof of
// delivery), with keep-alive comments in between, and an "end" event when
// the delivery has ended, after which the stream closes. Anyone holding
// the tracking link may open it, as they may read the feed.
//
// The stream reads the delivery every PollInterval and sends the feed
// when it differs from the last one sent. That one mechanism serves a
// single process and a deployment of several alike: the instance that
// holds the stream need not be the one that processed the report, and the
// store is where every instance's writes meet.
func (h *Handlers) TrackEvents(ctx context.Context, req *functionapp.Request, s functionapp.Stream) *functionapp.Response {
	tid := req.Params["trackingId"]
	d, err := h.findTracked(ctx, tid)
	if err != nil {
		return h.trackingError(ctx, err)
	}
	if ended(d) {
		// Nothing more will come. Any status but 200 fails an EventSource's
		// connection for good (HTML, server-sent events, processing model:
		// https://html.spec.whatwg.org/multipage/server-sent-events.html#sse-processing-model),
		// where a stream that sent its last feed and "end" is connected
		// again every few seconds by a client that does not act on "end".
		// The last feed is GET …/feed's.
		return &functionapp.Response{Status: http.StatusNoContent, Header: http.Header{}}
	}
	es := newEventStream(s, h.cfg.Push, h.cfg.Push.PollInterval)
	defer es.stop()
	for {
		if d != nil {
			body, err := json.Marshal(h.feedOf(ctx, d))
			if err != nil || !es.send("", body) {
				return nil
			}
			if ended(d) {
				_ = s.Event("end", []byte(`{"stage":"`+string(d.Stage)+`"}`))
				return nil
			}
		}
		if !es.wait(ctx) {
			return nil
		}
		d, err = h.findTracked(ctx, tid)
		switch {
		case err == nil:
		case domain.IsCode(err, domain.ENOTFOUND) || errors.Is(err, errLinkExpired):
			_ = s.Event("end", []byte(`{"stage":null}`))
			return nil
		default:
			// A store that failed for a moment is read again at the next
			// tick; the page meanwhile shows what it has.
			h.log.WarnContext(ctx, "event stream: reading the delivery failed", "err", err)
			d = nil
		}
	}
}

// eventStream holds a server-sent event stream open for a handler that
// reads what it streams every tick: an event goes out only when its body
// differs from the last one sent, a keep-alive comment when nothing was
// written for cfg.KeepAlive, and the stream ends after cfg.MaxLifetime.
type eventStream struct {
	s         functionapp.Stream
	keepAlive time.Duration
	tick      *time.Ticker
	life      *time.Timer
	lastWrite time.Time
	last      []byte // the last event's body; nil before the first
}

func newEventStream(s functionapp.Stream, cfg PushConfig, every time.Duration) *eventStream {
	return &eventStream{s: s, keepAlive: cfg.KeepAlive, tick: time.NewTicker(every), life: time.NewTimer(cfg.MaxLifetime), lastWrite: time.Now()}
}

func (e *eventStream) stop() {
	e.tick.Stop()
	e.life.Stop()
}

// send writes body as an event called name unless it is the body sent
// last; it reports false when the client has gone.
func (e *eventStream) send(name string, body []byte) bool {
	if bytes.Equal(body, e.last) {
		return true
	}
	if e.s.Event(name, body) != nil {
		return false
	}
	e.last, e.lastWrite = body, time.Now()
	return true
}

// wait waits for the next tick and keeps the stream alive; it reports
// false when the stream is over: the client has gone or its lifetime has
// passed.
func (e *eventStream) wait(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-e.life.C:
		return false
	case <-e.tick.C:
	}
	if time.Since(e.lastWrite) >= e.keepAlive {
		if e.s.Comment("keep-alive") != nil {
			return false
		}
		e.lastWrite = time.Now()
	}
	return true
}

// TrackEventsUnavailable answers GET /api/track/{trackingId}/events where
// the runtime cannot hold a stream (the Functions host, Lambda).
func (h *Handlers) TrackEventsUnavailable(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	if _, err := h.findTracked(ctx, req.Params["trackingId"]); err != nil {
		return h.trackingError(ctx, err)
	}
	return functionapp.Problem(http.StatusNotImplemented, "",
		"this deployment serves no event stream: GET /api/track/{trackingId}/negotiate says how it pushes, or poll the feed")
}

// negotiation is GET /api/track/{trackingId}/negotiate: how the page gets
// pushed updates here.
type negotiation struct {
	// Transport is "sse" (EventSource on URL), "webpubsub" (a WebSocket
	// to URL, each message a feed) or "poll" (no push: poll the feed).
	Transport string `json:"transport"`
	URL       string `json:"url,omitempty"`
	// PollInterval is how often, in ms, to poll the feed without push.
	PollInterval int `json:"pollIntervalMs"`
}

// TrackNegotiate serves GET /api/track/{trackingId}/negotiate.
func (h *Handlers) TrackNegotiate(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	tid := req.Params["trackingId"]
	d, err := h.findTracked(ctx, tid)
	if err != nil {
		return h.trackingError(ctx, err)
	}
	n := negotiation{Transport: "poll", PollInterval: int(MinPagePollInterval / time.Millisecond)}
	switch {
	case h.push != nil:
		u, err := h.push.ClientURL(ctx, pushGroup(d.ID), h.cfg.Push.ClientTokenLifetime)
		if err != nil {
			// The page polls instead.
			h.log.WarnContext(ctx, "negotiate: no Web PubSub client URL", "err", err)
			break
		}
		n.Transport, n.URL = "webpubsub", u
	case h.cfg.Push.Events:
		n.Transport, n.URL = "sse", "/api/track/"+tid+"/events"
	}
	return functionapp.JSON(http.StatusOK, n)
}

// MinPagePollInterval is the shortest poll interval the tracking page
// takes from its URL (?interval=): a link cannot make a page poll faster.
const MinPagePollInterval = 2 * time.Second

// announce sends d's feed to its watchers through Push, where a runtime
// that cannot hold connections relays them (Web PubSub). A failure is
// logged and nothing more: the step's own work is done, and pages that
// miss an event catch up by polling.
func (h *Handlers) announce(ctx context.Context, d *domain.Delivery) {
	if h.push == nil || d == nil {
		return
	}
	body, err := json.Marshal(h.feedOf(ctx, d))
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pushSendTimeout)
	defer cancel()
	if err := h.push.SendToGroup(ctx, pushGroup(d.ID), body); err != nil {
		h.log.WarnContext(ctx, "push to the tracking page failed; it will catch up by polling", "deliveryId", d.ID, "err", err)
	}
}

// pushSendTimeout bounds how long a step waits for Web PubSub.
const pushSendTimeout = 3 * time.Second
