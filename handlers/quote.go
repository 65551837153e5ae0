package handlers

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

// quoteView is the answer of POST /api/deliveryquotes.
type quoteView struct {
	// Feasible says some drone of the fleet could ever serve the request;
	// when false, Reasons say why, as ingest's 422 would.
	Feasible bool          `json:"feasible"`
	Reasons  []quoteReason `json:"reasons"`
	// The ETAs, class and route of the drone dispatch would choose now;
	// null when none is free to serve the request now.
	PickupETA    *time.Time  `json:"pickupETA"`
	DeliveryETA  *time.Time  `json:"deliveryETA"`
	DroneClass   *droneClass `json:"droneClass"`
	PlannedRoute *quoteRoute `json:"plannedRoute,omitempty"`
	// Paused says why a service pause refuses such a request now.
	Paused string `json:"paused,omitempty"`
}

// quoteReason is why a request would be refused or would wait.
type quoteReason struct {
	Field  string `json:"field,omitempty"`
	Detail string `json:"detail"`
}

// quoteRoute is the route a quote shows: the leg from the pickup to the
// dropoff only. The leg to the pickup starts where the chosen drone is, and
// the drone is not the caller's until a delivery is accepted: quoting
// pickups across a city would otherwise map where the idle fleet waits.
type quoteRoute struct {
	Dropoff domain.Route `json:"dropoff"`
}

// droneClass is what the chosen drone can do, without naming it.
type droneClass struct {
	MaxPackageSize domain.PackageSize `json:"maxPackageSize"`
	MaxPayloadKg   float64            `json:"maxPayloadKg"`
	CruiseSpeedMps float64            `json:"cruiseSpeedMps"`
}

// QuoteDelivery serves POST /api/deliveryquotes: the body of a delivery
// request, validated as ingest validates it (400 for malformed input),
// answered 200 with whether the fleet could serve it and, if a drone could
// now, the ETAs of the drone dispatch would choose (the same rule through
// the same code). It stores and claims nothing.
func (h *Handlers) QuoteDelivery(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	acct, err := callerAccount(ctx)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	p, err := parseOwnRequest(req.Body, acct)
	if err == nil {
		err = domain.DistinctPlaces(p.Request.PickupLocation, p.Request.DropoffLocation, "dropOffLocation")
	}
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	now := h.clock.Now()
	r := p.Request
	r.Defaults(now, "quote", h.cfg.Feasibility.MaxHorizon)
	out := quoteView{Feasible: true, Reasons: []quoteReason{}}
	errs, err := h.infeasible(ctx, &r)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	hold, err := h.pickupPaused(ctx, &r, now)
	if err != nil {
		return h.errorResponse(ctx, domain.Unavailable(err, "the service pauses could not be read; retry"))
	}
	if hold != nil {
		// What a request now would meet (ingest's 503 for one the fleet
		// could serve), with no drone to quote.
		out.Paused = pausedDetail(hold)
	}
	if len(errs) > 0 {
		// Every reason at once, so that a client can fix them together;
		// ingest's 422 names the first, pause or not.
		out.Feasible = false
		for _, e := range errs {
			out.Reasons = append(out.Reasons, quoteReason{Field: domain.ErrorField(e), Detail: domain.ErrorMessage(e)})
		}
		return functionapp.JSON(http.StatusOK, out)
	}
	if hold != nil {
		return functionapp.JSON(http.StatusOK, out)
	}
	plan, err := h.choose(ctx, h.store, &r, now, nil, nil)
	if err != nil && !domain.IsCode(err, domain.EUNPROCESSABLE) {
		return h.errorResponse(ctx, domain.Unavailable(err, "the fleet could not be read; retry"))
	}
	ahead := h.bookedAhead(&r, now)
	if plan == nil && err == nil && r.Expedited && !ahead {
		// The drone an expedited request would take from a delivery that
		// has not taken off (the preemption rule), as dispatch would; a
		// pickup booked ahead takes none until its dispatch time.
		takes, terr := h.takeable(ctx, &domain.Delivery{ID: "quote", OwnerID: acct, Request: r}, now)
		if terr != nil {
			return h.errorResponse(ctx, domain.Unavailable(terr, "the fleet could not be read; retry"))
		}
		if len(takes) > 0 {
			plan = &takes[0]
		}
	}
	if plan == nil && err == nil && ahead {
		// A pickup booked ahead is booked without a drone free now, with
		// the planned times a request gets (see booking).
		if _, eta, ok, berr := h.booking(ctx, &r, nil, now); berr != nil {
			return h.errorResponse(ctx, domain.Unavailable(berr, "the fleet could not be read; retry"))
		} else if ok {
			out.PickupETA, out.DeliveryETA = &eta.Pickup, &eta.Delivery
			out.Reasons = append(out.Reasons, quoteReason{Detail: "no drone is free now; one is dispatched in time for the pickup if one is free then"})
			return functionapp.JSON(http.StatusOK, out)
		}
	}
	if plan == nil {
		detail := "no drone can serve it by its deadline now (none is free, or the free ones are too far, too slow or too low on charge); an accepted request waits for one"
		if err != nil {
			detail = domain.ErrorMessage(err)
		} else if why := h.zoneInTheWay(ctx, &r, now); why != "" {
			// As the operator's waiting list names it.
			detail = "no route: " + why + "; an accepted request waits for it to end"
		} else if n := h.shortOfCharge(ctx, &r, nil, now); n > 0 {
			// As the operator's waiting list says it.
			detail += fmt.Sprintf(" (%d free drone(s) nearby could fly it charged, none with the charge now)", n)
		}
		out.Reasons = append(out.Reasons, quoteReason{Detail: detail})
		return functionapp.JSON(http.StatusOK, out)
	}
	out.PickupETA, out.DeliveryETA = &plan.ETA.Pickup, &plan.ETA.Delivery
	out.DroneClass = &droneClass{MaxPackageSize: plan.Drone.MaxPackageSize, MaxPayloadKg: plan.Drone.MaxPayloadKg, CruiseSpeedMps: plan.Drone.CruiseSpeedMps}
	out.PlannedRoute = &quoteRoute{Dropoff: plan.Route.Dropoff}
	return functionapp.JSON(http.StatusOK, out)
}
