package handlers

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"errors"
	"html"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

//go:embed assets/track.html
var trackPage []byte

// trackingID joins an unguessable random part and the delivery id, so the
// feed finds its delivery with one point read and no lookup table; the
// random part is compared in constant time.
func trackingID(random, deliveryID string) string { return random + "." + deliveryID }

// errLinkExpired marks a tracking link past its lifetime.
var errLinkExpired = errors.New("tracking link expired")

// trackingError answers a failed findTracked: 410 for an expired link, so
// the customer learns the link is over rather than wrong.
func (h *Handlers) trackingError(ctx context.Context, err error) *functionapp.Response {
	if errors.Is(err, errLinkExpired) {
		return functionapp.Problem(http.StatusGone, "trackingId",
			"has expired: tracking links end "+lifetimeText(h.cfg.TrackingLinkLifetime)+" after their delivery does")
	}
	return h.errorResponse(ctx, err)
}

// lifetimeText says a link lifetime in the largest whole unit.
func lifetimeText(d time.Duration) string {
	switch {
	case d >= 24*time.Hour && d%(24*time.Hour) == 0:
		return strconv.Itoa(int(d/(24*time.Hour))) + " days"
	default:
		return d.String()
	}
}

// endedAt reports when a finished delivery ended; ok is false while it runs.
func endedAt(d *domain.Delivery) (at time.Time, ok bool) {
	switch {
	case !d.Stage.Terminal():
		return time.Time{}, false
	case d.Stage == domain.StageCompleted && d.CompletedAt != nil:
		return *d.CompletedAt, true
	case d.Stage == domain.StageCancelled && d.CancelledAt != nil:
		return *d.CancelledAt, true
	}
	for i := len(d.History) - 1; i >= 0; i-- {
		if e := d.History[i]; e.Kind == "" && e.Stage == d.Stage {
			return e.At, true
		}
	}
	return d.UpdatedAt, true
}

// findTracked returns the delivery a tracking id names, ENOTFOUND for an
// id that is unknown or wrong in any way, or errLinkExpired for the link of
// a delivery that ended more than the link lifetime ago.
func (h *Handlers) findTracked(ctx context.Context, tid string) (*domain.Delivery, error) {
	notFound := domain.Errorf(domain.ENOTFOUND, "tracking id not found")
	_, deliveryID, ok := strings.Cut(tid, ".")
	if !ok || domain.ValidID("trackingId", deliveryID) != nil {
		return nil, notFound
	}
	d, err := h.store.Deliveries.Find(ctx, deliveryID)
	if domain.IsCode(err, domain.ENOTFOUND) {
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(d.TrackingID), []byte(tid)) != 1 {
		return nil, notFound
	}
	if life := h.cfg.TrackingLinkLifetime; life > 0 {
		if ended, ok := endedAt(d); ok && h.clock.Now().Sub(ended) > life {
			return nil, errLinkExpired
		}
	}
	return d, nil
}

// TrackPage serves GET /api/track/{trackingId}: the customer's live
// tracking page, a self-contained HTML file that polls the feed.
func (h *Handlers) TrackPage(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	if _, err := h.findTracked(ctx, req.Params["trackingId"]); err != nil {
		resp := h.trackingError(ctx, err)
		if wantsPage(req) {
			// A customer's browser: the same status, said in a page.
			text := "This tracking link is not valid. Check that it was copied whole."
			if resp.Status == http.StatusGone {
				text = "This delivery ended a while ago, and its tracking link has expired."
			}
			return notice(resp.Status, "Tracking link", text)
		}
		return resp
	}
	return h.page(trackPage)
}

// wantsPage reports whether the request comes from a browser that asked for
// a page (its Accept names text/html), as a followed link does; an API
// client, which asks for JSON or nothing, gets problem+json.
func wantsPage(req *functionapp.Request) bool {
	return strings.Contains(req.Header.Get("Accept"), "text/html")
}

// notice is a short self-contained HTML page with status, for a person who
// followed a link: a title and one paragraph, escaped.
func notice(status int, title, text string) *functionapp.Response {
	return shortPage(status, title, text, "", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
}

// confirmForm is a notice with one button that posts an empty-valued form
// back to the page's own address, which is the only place it may post to;
// no other site may frame it.
func confirmForm(title, text, button string) *functionapp.Response {
	form := `<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">` +
		html.EscapeString(button) + `</button></form>`
	return shortPage(http.StatusOK, title, text, form,
		"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
}

func shortPage(status int, title, text, form, csp string) *functionapp.Response {
	body := `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>` + html.EscapeString(title) + `</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.5}</style>
</head><body><h1>` + html.EscapeString(title) + `</h1>
<p>` + html.EscapeString(text) + `</p>` + form + `</body></html>
`
	return &functionapp.Response{Status: status, Body: []byte(body), Header: http.Header{
		"Content-Type":            {"text/html; charset=utf-8"},
		"Cache-Control":           {"no-store"},
		"Content-Security-Policy": {csp},
		// The link's token may be in the URL: no page may see it.
		"Referrer-Policy":        {"no-referrer"},
		"X-Content-Type-Options": {"nosniff"},
		// frame-ancestors for browsers that predate it.
		"X-Frame-Options": {"DENY"},
	}}
}

// page answers with one of the self-contained HTML pages (the tracking page,
// the console). A page runs only its own inline script and connects only to
// its own origin, and to Web PubSub where that pushes its updates.
func (h *Handlers) page(body []byte) *functionapp.Response {
	connect := "'self'"
	if h.push != nil {
		connect += " " + h.push.Origin()
	}
	return &functionapp.Response{Status: http.StatusOK, Body: body, Header: http.Header{
		"Content-Type":            {"text/html; charset=utf-8"},
		"Cache-Control":           {"no-store"},
		"Content-Security-Policy": {"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src " + connect + "; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"},
		// frame-ancestors is what current browsers obey; X-Frame-Options
		// keeps older ones from framing the page too.
		"X-Frame-Options":        {"DENY"},
		"Referrer-Policy":        {"no-referrer"},
		"X-Content-Type-Options": {"nosniff"},
	}}
}

// feedDrone is the drone as the page shows it: live while it serves this
// delivery, else where it was last seen on it, without its battery.
type feedDrone struct {
	ID             string          `json:"id"`
	Location       domain.Location `json:"location"`
	BatteryPercent *float64        `json:"batteryPercent,omitempty"`
}

type feedEvent struct {
	Stage domain.Stage `json:"stage"`
	At    time.Time    `json:"at"`
}

// feedConfirmation is the proof of delivery as the customer's page shows
// it: by what, and when it was received; not where, nor the blob.
type feedConfirmation struct {
	ConfirmationType domain.ConfirmationType `json:"confirmationType"`
	By               string                  `json:"by"` // "a fingerprint", for "confirmed by a fingerprint"
	At               time.Time               `json:"at"`
}

// trackFeed is GET /api/track/{trackingId}/feed: what the page draws.
type trackFeed struct {
	TrackingID      string              `json:"trackingId"`
	Stage           domain.Stage        `json:"stage"`
	PickupLocation  domain.Location     `json:"pickupLocation"`
	DropoffLocation domain.Location     `json:"dropOffLocation"`
	Drone           *feedDrone          `json:"drone"`
	Trail           []domain.TrailPoint `json:"trail"`
	PickupETA       *time.Time          `json:"pickupETA"`
	DeliveryETA     *time.Time          `json:"deliveryETA"`
	// PickupTime is the requested one; Notice says "pickup at HH:MM UTC"
	// while a pickup booked ahead waits for it.
	PickupTime time.Time `json:"pickupTime"`
	Notice     string    `json:"notice,omitempty"`
	// HeldReason says why a service pause holds the delivery.
	HeldReason    string               `json:"heldReason,omitempty"`
	PlannedRoute  *domain.PlannedRoute `json:"plannedRoute,omitempty"`
	UpdatedAt     time.Time            `json:"updatedAt"`
	History       []feedEvent          `json:"history"` // the changes of stage
	FailureReason string               `json:"failureReason,omitempty"`
	// Outcome says what became of the package of a delivery an operator
	// aborted: returnedToSender tells the recipient it goes back.
	Outcome domain.AbortOutcome `json:"outcome,omitempty"`
	// ConfirmationRequired tells the page to wait for a proof of delivery
	// after the delivery is Completed; Confirmation is that proof.
	ConfirmationRequired domain.ConfirmationType `json:"confirmationRequired"`
	Confirmation         *feedConfirmation       `json:"confirmation,omitempty"`
}

// TrackFeed serves GET /api/track/{trackingId}/feed.
func (h *Handlers) TrackFeed(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	d, err := h.findTracked(ctx, req.Params["trackingId"])
	if err != nil {
		return h.trackingError(ctx, err)
	}
	resp := functionapp.JSON(http.StatusOK, h.feedOf(ctx, d))
	resp.Header.Set("Cache-Control", "no-store")
	return resp
}

// feedOf is what the tracking page draws of d: the body of the feed, and
// of every event pushed to the page.
func (h *Handlers) feedOf(ctx context.Context, d *domain.Delivery) trackFeed {
	f := trackFeed{
		TrackingID: d.TrackingID, Stage: d.Stage,
		PickupLocation: d.Request.PickupLocation, DropoffLocation: d.Request.DropoffLocation,
		Trail: d.Trail, UpdatedAt: d.UpdatedAt,
		FailureReason: d.FailureReason, Outcome: d.Outcome, History: make([]feedEvent, 0, len(d.History)),
		ConfirmationRequired: d.Request.ConfirmationRequired,
		PickupTime:           d.Request.PickupTime, PlannedRoute: d.PlannedRoute,
	}
	if d.PickedUpAt == nil && !d.Stage.Terminal() && d.Request.PickupTime.After(h.clock.Now().Add(time.Minute)) {
		f.Notice = "pickup at " + domain.ClockTime(d.Request.PickupTime, h.clock.Now())
	}
	if d.HeldReason != "" && !d.Stage.Terminal() {
		f.HeldReason = d.HeldReason
		f.Notice = "held: " + d.HeldReason
	}
	f.PickupETA, f.DeliveryETA = shownETAs(d)
	f.Trail = orEmpty(f.Trail)
	for _, e := range d.History {
		// The page dates each stage by its event; a proof of delivery,
		// recorded in the Completed stage, would redate the delivery.
		if e.Kind == "" {
			f.History = append(f.History, feedEvent{Stage: e.Stage, At: e.At})
		}
	}
	if c := d.Confirmation; c != nil {
		f.Confirmation = &feedConfirmation{ConfirmationType: c.ConfirmationType, By: c.ConfirmationType.Describe(), At: c.ReceivedAt}
	}
	if id := assignedDrone(d); id != "" {
		f.Drone = h.feedDrone(ctx, d, id)
	}
	return f
}

// feedDrone is the drone of d for an anonymous reader. Only a drone that
// serves d, which has not ended, is shown live (its position and battery):
// once d is cancelled, failed, completed or stuck the drone may fly another
// account's delivery, and its position then is none of this reader's
// business. Otherwise the drone is shown where d last recorded it, or not
// at all.
func (h *Handlers) feedDrone(ctx context.Context, d *domain.Delivery, id string) *feedDrone {
	if !d.Stage.Terminal() {
		dr, err := h.store.Fleet.Find(ctx, id)
		if err == nil && dr.CurrentDeliveryID == d.ID {
			battery := round(dr.BatteryPercent, 1)
			return &feedDrone{ID: id, Location: dr.Location, BatteryPercent: &battery}
		}
	}
	if d.LastKnownLocation == nil {
		return nil
	}
	return &feedDrone{ID: id, Location: *d.LastKnownLocation}
}
