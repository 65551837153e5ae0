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
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// deliveryView is the public shape of a delivery.
type deliveryView struct {
	ID                string                  `json:"id"`
	TrackingID        string                  `json:"trackingId"`
	OwnerID           string                  `json:"ownerId"`
	Stage             domain.Stage            `json:"stage"`
	PickupLocation    domain.Location         `json:"pickupLocation"`
	DropoffLocation   domain.Location         `json:"dropOffLocation"`
	PickupTime        time.Time               `json:"pickupTime"`
	Deadline          time.Time               `json:"deadline"`
	Expedited         bool                    `json:"expedited"`
	ConfirmationReq   domain.ConfirmationType `json:"confirmationRequired"`
	PackageInfo       domain.PackageInfo      `json:"packageInfo"`
	DroneID           string                  `json:"droneId,omitempty"`
	PickupETA         *time.Time              `json:"pickupETA,omitempty"`
	DeliveryETA       *time.Time              `json:"deliveryETA,omitempty"`
	LastKnownLocation *domain.Location        `json:"lastKnownLocation,omitempty"`
	PlannedRoute      *domain.PlannedRoute    `json:"plannedRoute,omitempty"`
	DispatchAt        *time.Time              `json:"dispatchAt,omitempty"`
	FailureReason     string                  `json:"failureReason,omitempty"`
	Outcome           domain.AbortOutcome     `json:"outcome,omitempty"`
	HeldReason        string                  `json:"heldReason,omitempty"`
	ReassignedFrom    []string                `json:"reassignedFrom,omitempty"`
	CreatedAt         time.Time               `json:"createdAt"`
	ScheduledAt       *time.Time              `json:"scheduledAt,omitempty"`
	UpdatedAt         time.Time               `json:"updatedAt"`
	// Confirmation is the proof of delivery, once given, without its blob.
	Confirmation *confirmationView `json:"confirmation,omitempty"`
}

// statusView is GET /api/deliveries/{id}/status.
type statusView struct {
	Stage             domain.Stage     `json:"stage"`
	DroneID           string           `json:"droneId,omitempty"`
	LastKnownLocation *domain.Location `json:"lastKnownLocation"`
	PickupETA         *time.Time       `json:"pickupETA"`
	DeliveryETA       *time.Time       `json:"deliveryETA"`
	DispatchAt        *time.Time       `json:"dispatchAt,omitempty"`
	FailureReason     string           `json:"failureReason,omitempty"`
	HeldReason        string           `json:"heldReason,omitempty"`
	UpdatedAt         time.Time        `json:"updatedAt"`
}

// assignedDrone hides a reservation that is not yet a claim.
func assignedDrone(d *domain.Delivery) string {
	if d.DroneAssignedAt == nil {
		return ""
	}
	return d.DroneID
}

// shownETAs are d's ETAs as the views show them: none once it is cancelled
// or has failed, since no drone is coming and a time beside the stage would
// read as one that is (the record keeps them; the history dates the end).
func shownETAs(d *domain.Delivery) (pickup, delivery *time.Time) {
	if d.Stage.NoDroneComing() {
		return nil, nil
	}
	return d.PickupETA, d.DeliveryETA
}

// shownDispatchAt is a booked pickup's dispatch time as the views show it:
// none once it is cancelled or has failed, for the same reason.
func shownDispatchAt(d *domain.Delivery) *time.Time {
	if d.Stage.NoDroneComing() {
		return nil
	}
	return d.DispatchAt
}

// viewOf is the public shape of d.
func viewOf(d *domain.Delivery) deliveryView {
	r := d.Request
	pickupETA, deliveryETA := shownETAs(d)
	return deliveryView{
		ID: d.ID, TrackingID: d.TrackingID, OwnerID: d.OwnerID, Stage: d.Stage,
		PickupLocation: r.PickupLocation, DropoffLocation: r.DropoffLocation,
		PickupTime: r.PickupTime, Deadline: r.Deadline, Expedited: r.Expedited,
		ConfirmationReq: r.ConfirmationRequired, PackageInfo: r.PackageInfo,
		DroneID: assignedDrone(d), PickupETA: pickupETA, DeliveryETA: deliveryETA,
		LastKnownLocation: d.LastKnownLocation, PlannedRoute: d.PlannedRoute, DispatchAt: shownDispatchAt(d), FailureReason: d.FailureReason,
		Outcome: d.Outcome, HeldReason: d.HeldReason, ReassignedFrom: d.ReassignedFrom, CreatedAt: d.CreatedAt, ScheduledAt: d.ScheduledAt, UpdatedAt: d.UpdatedAt,
		Confirmation: confirmationOf(d),
	}
}

// GetDelivery serves GET /api/deliveries/{id}.
func (h *Handlers) GetDelivery(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	d, err := h.findDelivery(ctx, req.Params["id"])
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	return functionapp.JSON(http.StatusOK, viewOf(d))
}

// deliveryList is the body of GET /api/deliveries.
type deliveryList struct {
	Items []deliveryView `json:"items"`
	// NextCursor, passed as ?cursor=, fetches the next page; absent on the
	// last one.
	NextCursor string `json:"nextCursor,omitempty"`
}

// ListDeliveries serves GET /api/deliveries: the caller's deliveries,
// newest first, optionally in one stage and created in [createdFrom,
// createdTo), limit at a time (default 50, at most 200), each as GET
// /api/deliveries/{id} shows it. A page is read through the owner index
// (ports.Deliveries.PageByOwner), so its cost does not grow with the
// number of deliveries of other accounts or of earlier pages. A page may
// hold fewer than limit deliveries and still have a nextCursor; only its
// absence ends the listing.
func (h *Handlers) ListDeliveries(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	acct, err := callerAccount(ctx)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	q, err := wire.ParseDeliveryListing(req.Query)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	if q.OwnerID != "" && q.OwnerID != acct {
		return h.errorResponse(ctx, domain.Forbidden("ownerId", "must be the id of the account whose API key is used, or be left out"))
	}
	f := ports.DeliveryFilter{OwnerID: acct, Stage: q.Stage, CreatedFrom: q.CreatedFrom, CreatedTo: q.CreatedTo, Limit: q.Limit}
	if q.After != nil {
		f.After = &ports.DeliveryPosition{CreatedAt: q.After.CreatedAt, ID: q.After.ID}
	}
	page, err := h.store.Deliveries.PageByOwner(ctx, f)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	out := deliveryList{Items: make([]deliveryView, 0, len(page.Deliveries))}
	for _, d := range page.Deliveries {
		out.Items = append(out.Items, viewOf(d))
	}
	if page.Next != nil {
		out.NextCursor = wire.EncodeCursor(wire.Cursor{CreatedAt: page.Next.CreatedAt, ID: page.Next.ID})
	}
	return functionapp.JSON(http.StatusOK, out)
}

// GetDeliveryStatus serves GET /api/deliveries/{id}/status.
func (h *Handlers) GetDeliveryStatus(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	d, err := h.findDelivery(ctx, req.Params["id"])
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	pickupETA, deliveryETA := shownETAs(d)
	return functionapp.JSON(http.StatusOK, statusView{
		Stage: d.Stage, DroneID: assignedDrone(d), LastKnownLocation: d.LastKnownLocation,
		PickupETA: pickupETA, DeliveryETA: deliveryETA,
		DispatchAt: shownDispatchAt(d), FailureReason: d.FailureReason, HeldReason: d.HeldReason, UpdatedAt: d.UpdatedAt,
	})
}

// findDelivery returns a delivery the caller may see: its owner's, or any
// for the operator. Another account's delivery is reported exactly as a
// missing one, so ids cannot be probed across accounts.
func (h *Handlers) findDelivery(ctx context.Context, id string) (*domain.Delivery, error) {
	if err := domain.ValidID("id", id); err != nil {
		return nil, err
	}
	operator := callerIsOperator(ctx)
	acct, err := callerAccount(ctx)
	if err != nil && !operator {
		return nil, err
	}
	notFound := domain.Errorf(domain.ENOTFOUND, "delivery %s not found", id)
	d, err := h.store.Deliveries.Find(ctx, id)
	if domain.IsCode(err, domain.ENOTFOUND) {
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	if !operator && d.OwnerID != acct {
		return nil, notFound
	}
	return d, nil
}

// updateOwnDelivery is Deliveries.Update for a delivery of the caller's
// account: fn never sees another account's delivery, which is reported,
// without a write, exactly as a missing one.
func (h *Handlers) updateOwnDelivery(ctx context.Context, id string, fn func(*domain.Delivery) error) (*domain.Delivery, error) {
	acct, err := callerAccount(ctx)
	if err != nil {
		return nil, err
	}
	notFound := domain.Errorf(domain.ENOTFOUND, "delivery %s not found", id)
	var fnErr error
	d, err := h.store.Deliveries.Update(ctx, id, func(cur *domain.Delivery) error {
		if cur.OwnerID != acct {
			fnErr = notFound
			return notFound
		}
		fnErr = fn(cur)
		return fnErr
	})
	// fn's own "not found" (a subscription, say) is its to report; the
	// store's is the delivery's.
	if domain.IsCode(err, domain.ENOTFOUND) && (fnErr == nil || fnErr == notFound) {
		return nil, notFound
	}
	return d, err
}

// GetPackage serves GET /api/packages/{id}; another account's package is
// reported as missing.
func (h *Handlers) GetPackage(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	acct, err := callerAccount(ctx)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	id := req.Params["id"]
	if err := domain.ValidID("id", id); err != nil {
		return h.errorResponse(ctx, err)
	}
	p, err := h.store.Packages.Find(ctx, domain.PackageKey(acct, id))
	if domain.IsCode(err, domain.ENOTFOUND) {
		// A record written before package ids were scoped to the account
		// is under the bare id.
		p, err = h.store.Packages.Find(ctx, id)
	}
	if domain.IsCode(err, domain.ENOTFOUND) || err == nil && p.OwnerID == acct && p.DeliveryID != id && packageEnded(p.Status) {
		// The package of a delivery that left its package id out is
		// named after the delivery and has no record of its own before
		// its drone is assigned (or only one an earlier delivery left).
		if d, ferr := h.store.Deliveries.Find(ctx, id); ferr == nil && (err != nil || !d.Stage.Terminal()) {
			if dp, ok := defaultPackage(d, acct); ok {
				p, err = dp, nil
			}
		}
	}
	if domain.IsCode(err, domain.ENOTFOUND) || err == nil && p.OwnerID != acct {
		err = domain.Errorf(domain.ENOTFOUND, "package %s not found", id)
	}
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	if p.Status == packageScheduled {
		// Written so when a drone was assigned: a delivery that has lost
		// its drone since (rescheduled, or its drone taken by an expedited
		// delivery) waits for another, and its package shows Booked again
		// until it has one.
		if d, ferr := h.store.Deliveries.Find(ctx, p.DeliveryID); ferr == nil && d.OwnerID == acct && !d.Stage.Terminal() && d.DroneID == "" {
			waiting := *p
			waiting.Status = packageBooked
			// Booked again when the delivery lost its drone, its last change.
			if d.UpdatedAt.After(waiting.UpdatedAt) {
				waiting.UpdatedAt = d.UpdatedAt
			}
			p = &waiting
		}
	}
	return functionapp.JSON(http.StatusOK, packageView(p))
}

// packageView is a package as the API shows it: by the id its business
// gave it, not the key it is stored under.
func packageView(p *domain.Package) *domain.Package {
	v := *p
	if v.PackageID != "" {
		v.ID = v.PackageID
	}
	v.PackageID = ""
	return &v
}

// Healthz serves GET /api/healthz.
func (h *Handlers) Healthz(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	return functionapp.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// Readiness. Healthz says the process serves; a load balancer or an
// operator also needs to know whether it can do its work now, which it
// cannot while Cosmos DB (or the SQLite file) does not answer. Readyz asks
// each dependency one cheap question, each within readyTimeout. One check
// runs at a time, and its answer is kept for readyFor: a probe that comes
// while a check runs gets the last answer rather than waiting for it, so
// however many probes ask, the dependencies see one check a second at most
// from each process. An anonymous caller learns only which dependency
// failed, never why (the reason, which may name an endpoint, is logged).
const (
	readyTimeout = 3 * time.Second
	readyFor     = time.Second
	// readyProbeID is an account id no account has (ids are hex): reading
	// it costs a point read, and "not found" means the store answered.
	readyProbeID = "readiness-probe"
)

// readiness is the last answer of Readyz, when it was found, and the check
// under way, if any.
type readiness struct {
	mu      sync.Mutex
	at      time.Time
	failed  []string
	checks  map[string]string
	running chan struct{} // closed when the check under way ends
}

// Readyz serves GET /api/readyz: 200 with each check "ok" when the store
// answers a point read and the queue (where it can be counted: the
// embedded one) answers a count; otherwise 503 with Retry-After naming
// what did not answer. Service Bus is not asked: it has no request as
// cheap that a receiving application may make, and ingest answers 503
// while it is out. Nor is the drone index: loading it is dispatch's
// business, and asking would make every process a probe reaches read the
// whole fleet.
func (h *Handlers) Readyz(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	checks, failed := h.lastReadiness(ctx)
	if len(failed) > 0 {
		resp := functionapp.Problem(http.StatusServiceUnavailable, "", "not ready: "+strings.Join(failed, ", ")+" did not answer; retry")
		resp.Header.Set("Retry-After", "1")
		return resp
	}
	return functionapp.JSON(http.StatusOK, map[string]any{"status": "ready", "checks": checks})
}

// lastReadiness returns the last answer while it is fresh, or while a new
// check runs; otherwise it runs one (the first probe waits for it, within
// ctx).
func (h *Handlers) lastReadiness(ctx context.Context) (map[string]string, []string) {
	r := &h.ready
	r.mu.Lock()
	now := h.clock.Now()
	fresh := !r.at.IsZero() && now.Sub(r.at) < readyFor && !now.Before(r.at)
	if fresh || r.running != nil && !r.at.IsZero() {
		defer r.mu.Unlock()
		return r.checks, r.failed
	}
	running := r.running
	if running == nil {
		running = make(chan struct{})
		r.running = running
		go func() {
			checks, failed := h.checkReady(context.WithoutCancel(ctx))
			r.mu.Lock()
			r.checks, r.failed, r.at, r.running = checks, failed, h.clock.Now(), nil
			r.mu.Unlock()
			close(running)
		}()
	}
	r.mu.Unlock()
	select {
	case <-running:
	case <-ctx.Done():
		return nil, []string{"the readiness check"}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checks, r.failed
}

// checkReady asks each dependency its question, each within readyTimeout.
func (h *Handlers) checkReady(ctx context.Context) (checks map[string]string, failed []string) {
	checks = map[string]string{}
	ask := func(name, what string, question func(context.Context) error) {
		qctx, cancel := context.WithTimeout(ctx, readyTimeout)
		defer cancel()
		err := func() (err error) {
			defer h.recovered("the readiness check of "+name, &err)
			return question(qctx)
		}()
		if err != nil {
			checks[name] = "unavailable"
			failed = append(failed, what)
			h.log.WarnContext(ctx, "readiness check failed", "check", name, "err", err)
			return
		}
		checks[name] = "ok"
	}
	ask("store", "the store", func(ctx context.Context) error {
		_, err := h.store.Accounts.Find(ctx, readyProbeID)
		if domain.IsCode(err, domain.ENOTFOUND) {
			return nil
		}
		return err
	})
	if counter, ok := h.bus.(ports.Backlog); ok {
		ask("queue", "the queue", func(ctx context.Context) error {
			_, _, err := counter.Depth(ctx, topology.QueueDeliveryRequests)
			return err
		})
	}
	return checks, failed
}
