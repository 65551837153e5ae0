package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/logctx"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// accepted is the 202 body: the request as stored, with its ids.
type accepted struct {
	DeliveryID string `json:"deliveryId"`
	TrackingID string `json:"trackingId"`
	domain.DeliveryRequest
}

// IngestDelivery accepts POST /api/deliveryrequests. A request no drone of
// the fleet could ever serve is refused with 422 naming the field and the
// reason (domain.Feasible), and nothing is stored. The delivery is stored,
// then its message is queued, and only then does the 202 leave: an accepted
// request is never lost. A client-chosen deliveryId makes the call
// idempotent: the same body again gets the same 202 (and the message is
// queued again if the first attempt failed to), a different body gets 409.
//
// The caller's account owns the delivery: a body's ownerId may repeat the
// account id and is refused (403) when it names another. Delivery ids are
// one space for every account, so an id another account holds is a 409
// like any other reuse, which tells nothing of that delivery.
func (h *Handlers) IngestDelivery(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	acct, err := callerAccount(ctx)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	if h.overloaded(ctx) {
		return busy()
	}
	p, err := parseOwnRequest(req.Body, acct)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	// A pickup at its dropoff is refused before any turn is waited for or
	// counted, unless a delivery is stored under its id: a retry of one
	// accepted before that rule gets its 202 below.
	if err := domain.DistinctPlaces(p.Request.PickupLocation, p.Request.DropoffLocation, "dropOffLocation"); err != nil && !h.stored(ctx, p.DeliveryID) {
		return h.errorResponse(ctx, err)
	}
	endTurn := func() {}
	if h.cfg.MaxActiveDeliveries > 0 && !h.stored(ctx, p.DeliveryID) {
		// Held until the delivery is stored or refused, not while it is
		// queued (a slow queue would hold the account's other requests).
		// A request under an id already stored is a retry (or a reuse,
		// 409): it adds no delivery, and is not counted against it.
		done, err := h.admitting.Take(ctx, acct)
		if err != nil {
			return h.errorResponse(ctx, domain.Unavailable(err, "the request was given up while it waited its turn; retry"))
		}
		endTurn = sync.OnceFunc(done)
		defer endTurn()
		if resp, err := h.tooManyActive(ctx, acct); err != nil || resp != nil {
			if err != nil {
				return h.errorResponse(ctx, domain.Unavailable(err, "the account's deliveries could not be counted; retry"))
			}
			return resp
		}
	}
	now := h.clock.Now()
	id := p.DeliveryID
	if id == "" {
		id = h.ids.NewID()
	}
	correlationID := req.Header.Get("X-Correlation-Id")
	if domain.ValidID("X-Correlation-Id", correlationID) != nil {
		correlationID = h.ids.NewID()
	}
	d := &domain.Delivery{
		ID:            id,
		TrackingID:    trackingID(h.ids.NewTrackingID(), id),
		OwnerID:       p.Request.OwnerID,
		CorrelationID: correlationID,
		Request:       p.Request,
		RequestHash:   p.Hash,
		Stage:         domain.StageCreated,
		CreatedAt:     now,
		UpdatedAt:     now,
	}
	d.DeadlineBy = domain.DeadlineByClient
	if d.Request.Deadline.IsZero() {
		d.DeadlineBy = domain.DeadlineByService
	}
	d.Request.Defaults(now, id, h.cfg.Feasibility.MaxHorizon)
	// A request no drone could ever serve is refused (422) whether or not
	// a pause holds its pickup: a 503 would only have it sent again.
	area, err := h.feasibleIn(ctx, &d.Request)
	var hold *domain.Hold
	if err == nil {
		if hold, err = h.pickupPaused(ctx, &d.Request, now); err != nil {
			err = domain.Unavailable(err, "the service pauses could not be read; retry")
		}
	}
	if err != nil || hold != nil {
		// A retry of a request accepted earlier gets its 202 again, even
		// if by now its pickup time has passed.
		// Another request under its id is a conflict, whatever is wrong
		// with this one.
		if p.DeliveryID != "" {
			if prev, ferr := h.store.Deliveries.Find(ctx, id); ferr == nil {
				if p.Matches(prev.RequestHash) {
					return h.acceptStored(ctx, prev)
				}
				return h.errorResponse(ctx, reusedID(id))
			}
		}
		if hold != nil {
			return pausedResponse(hold, now)
		}
		return h.errorResponse(ctx, err)
	}
	d.History = []domain.Event{{Stage: domain.StageCreated, At: now}}
	d.AreaID = area
	ctx = logctx.With(ctx, "deliveryId", id, "correlationId", d.CorrelationID)

	// A package the client named may be on another delivery still, and is
	// booked for this one as it is stored; one the service names after
	// this delivery cannot be elsewhere.
	stored, err := h.create(ctx, d, p.Request.PackageInfo.PackageID != "", p.DeliveryID != "")
	endTurn() // the delivery counts from here, stored or not
	if stored {
		h.log.InfoContext(ctx, "delivery accepted")
		return h.acceptedResponse(d)
	}
	if errors.Is(err, errDeliveryExists) {
		if d, err = h.store.Deliveries.Find(ctx, id); err != nil {
			return h.errorResponse(ctx, err)
		}
		if !p.Matches(d.RequestHash) {
			return h.errorResponse(ctx, reusedID(id))
		}
		ctx = logctx.With(ctx, "correlationId", d.CorrelationID)
	} else if err != nil {
		return h.errorResponse(ctx, err)
	}
	return h.acceptStored(ctx, d)
}

// acceptStored answers a request whose delivery d is stored: its first
// message is queued (again) while d is Created, since on a backend where
// the store and the queue commit apart the first attempt may have stored
// d and failed to queue it (the bus drops a copy of one queued); a retry
// of that attempt gets its 202 once d is queued, whatever a pause or the
// fleet says by then, as d was accepted before them.
func (h *Handlers) acceptStored(ctx context.Context, d *domain.Delivery) *functionapp.Response {
	if d.Stage == domain.StageCreated {
		if err := h.publish(ctx, requestedMessage(d)); err != nil {
			// The client's retry with the same deliveryId queues it again;
			// the stored delivery stays Created until then.
			return h.errorResponse(ctx, domain.Unavailable(err, "the delivery could not be queued; retry with deliveryId %s", d.ID))
		}
	}
	h.log.InfoContext(ctx, "delivery accepted")
	return h.acceptedResponse(d)
}

// reusedID is the 409 of a deliveryId already used for another request.
func reusedID(id string) error {
	return &domain.Error{Code: domain.ECONFLICT, Field: "deliveryId", Message: fmt.Sprintf("%s was already used for a different request", id)}
}

func (h *Handlers) acceptedResponse(d *domain.Delivery) *functionapp.Response {
	resp := functionapp.JSON(http.StatusAccepted, accepted{DeliveryID: d.ID, TrackingID: d.TrackingID, DeliveryRequest: d.Request})
	resp.Header.Set("Location", "/api/deliveries/"+d.ID)
	return resp
}

// stored reports whether a delivery is stored under id ("" names none).
// A failed read counts as none: the request is then counted against the
// limit as a new one would be.
func (h *Handlers) stored(ctx context.Context, id string) bool {
	if id == "" {
		return false
	}
	_, err := h.store.Deliveries.Find(ctx, id)
	return err == nil
}

// errDeliveryExists says a delivery under the request's id is stored
// already: a retry of the request, or another under the same id.
var errDeliveryExists = errors.New("the delivery exists")

// create stores a new delivery and queues its first message: in one commit
// when the backend has units of work, so that the delivery and its message
// exist together or not at all; elsewhere one after the other, and a
// failure between them leaves a Created delivery that the client's retry
// with the same deliveryId queues. stored reports that both happened;
// errDeliveryExists, that the id was taken. When claim is set it books the
// package the request names (claimPackage) with the delivery; namedID says
// the client chose the delivery's id (one the service chose is new).
func (h *Handlers) create(ctx context.Context, d *domain.Delivery, claim, namedID bool) (stored bool, err error) {
	tx, ok := h.bus.(ports.Transactional)
	if !ok {
		if claim && namedID {
			// The booking is written before the delivery here, so a
			// request under a taken id must not get that far: it would
			// book its package for the delivery that holds the id.
			if h.stored(ctx, d.ID) {
				return false, errDeliveryExists
			}
		}
		if err := h.bookPackage(ctx, h.store, d, claim); err != nil {
			return false, h.orExisting(ctx, d.ID, err)
		}
		err := h.store.Deliveries.Create(ctx, d.ID, d)
		if domain.IsCode(err, domain.ECONFLICT) {
			return false, errDeliveryExists
		}
		return false, err
	}
	for attempt := 1; ; attempt++ {
		uow := tx.Begin()
		if err := h.bookPackage(ctx, uow.Store(), d, claim); err != nil {
			return false, h.orExisting(ctx, d.ID, err)
		}
		if err := uow.Store().Deliveries.Create(ctx, d.ID, d); err != nil {
			return false, err
		}
		first := requestedMessage(d)
		h.checkEmits(ctx, []ports.Message{first})
		err = uow.Commit(ctx, nil, first)
		if !errors.Is(err, ports.ErrStale) {
			break
		}
		// Another request with this id got in first (the caller reads it
		// and answers), or another booked the package meanwhile, which
		// the next attempt sees.
		if _, ferr := h.store.Deliveries.Find(ctx, d.ID); ferr == nil || !claim {
			return false, errDeliveryExists
		}
		if attempt == 3 {
			break
		}
	}
	if err != nil {
		return false, domain.Unavailable(err, "the delivery could not be stored; retry with deliveryId %s", d.ID)
	}
	return true, nil
}

// orExisting is errDeliveryExists in place of err, a refusal of the
// request's package, when a delivery is stored under id already: the id is
// judged first (a retry of an accepted request is 202 again, whoever booked
// its package since; another request under a taken id is 409 naming
// deliveryId), and a package is looked at only for a new delivery. The
// read costs nothing on the way of a request that is accepted.
func (h *Handlers) orExisting(ctx context.Context, id string, err error) error {
	if !domain.IsCode(err, domain.ECONFLICT) {
		return err
	}
	if h.stored(ctx, id) {
		return errDeliveryExists
	}
	return err
}

// parseOwnRequest parses the body of a delivery request made with the API
// key of account acct, which owns it: the body's ownerId may repeat acct
// and is refused (403) when it names another account.
func parseOwnRequest(body []byte, acct string) (*wire.ParsedRequest, error) {
	p, err := wire.ParseDeliveryRequest(body)
	if err != nil {
		return nil, err
	}
	if p.Request.OwnerID != "" && p.Request.OwnerID != acct {
		return nil, domain.Forbidden("ownerId", "must be the id of the account whose API key is used, or be left out")
	}
	p.SetOwner(acct)
	return p, nil
}
