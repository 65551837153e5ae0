package handlers

import (
	"context"
	"net/http"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// PutDrone serves PUT /api/drones/{id}: it registers a drone or updates its
// specification, position and status. A drone on a delivery cannot be
// changed by an operator until the delivery releases it.
func (h *Handlers) PutDrone(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	in, err := wire.ParseDrone(req.Params["id"], req.Body)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	now := h.clock.Now()
	in.UpdatedAt = now
	// The range given is the range on the battery given: the range at a
	// full charge follows from it (domain.Drone.FullRange).
	in.SetBattery(in.BatteryPercent, h.cfg.Tracking)
	if in.Status == domain.DroneCharging {
		in.StartCharging(h.cfg.Tracking, now)
	}
	created := false
	var before *domain.Drone
	d, err := h.store.Fleet.Upsert(ctx, in.ID, func(cur *domain.Drone) (*domain.Drone, error) {
		created = cur == nil
		if cur != nil && cur.CurrentDeliveryID != "" {
			return nil, domain.Errorf(domain.ECONFLICT, "drone %s is on delivery %s; ground or recall it first (POST /api/drones/%s/actions)", cur.ID, cur.CurrentDeliveryID, cur.ID)
		}
		before = cur
		if cur != nil && cur.Recalled {
			// Flying home after a recall, perhaps with a package a failed
			// delivery returns: a put would end the flight in the air and
			// could have the drone dispatched there.
			return nil, domain.Errorf(domain.ECONFLICT, "drone %s is flying home after a recall; put it once it has landed (its first report within %g m of its home base)",
				cur.ID, h.cfg.Tracking.WithDefaults().ArrivalRadiusKm*1000)
		}
		return in, nil
	})
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	if err := h.publishChargeCheck(ctx, before, d); err != nil {
		return h.errorResponse(ctx, domain.Unavailable(err, "the drone is stored but its charge check could not be queued; send the PUT again"))
	}
	h.noteDrone(before, d)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	resp := functionapp.JSON(status, h.droneView(d))
	resp.Header.Set("Location", "/api/drones/"+d.ID)
	return resp
}

// GetDrone serves GET /api/drones/{id}.
func (h *Handlers) GetDrone(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	id := req.Params["id"]
	if err := domain.ValidID("id", id); err != nil {
		return h.errorResponse(ctx, err)
	}
	d, err := h.store.Fleet.Find(ctx, id)
	if err != nil {
		return h.errorResponse(ctx, notFoundAs(err, "drone %s not found", id))
	}
	return functionapp.JSON(http.StatusOK, h.droneView(d))
}

// droneView is a drone as the API shows it, its measurements rounded to
// what they can mean: the range to the metre and the battery to a tenth of
// a percent. The stored range is the registered one scaled by each battery
// report, and that arithmetic would otherwise show as 37.800000000000004.
// A drone written without its full-charge range (one seeded straight into
// the store, or stored before the battery model) shows the one its range
// and battery imply, as its first battery report will record.
func (h *Handlers) droneView(d *domain.Drone) *domain.Drone {
	v := *d
	v.RangeKm = round(d.RangeKm, 3)
	v.FullRangeKm = round(d.FullRange(h.cfg.Tracking), 3)
	v.BatteryPercent = round(d.BatteryPercent, 1)
	return &v
}

// droneList is one page of GET /api/drones.
type droneList struct {
	Drones []*domain.Drone `json:"drones"`
	Next   string          `json:"next,omitempty"` // pass as ?after= for the next page
}

// ListDrones serves GET /api/drones?status=&after=&limit=, ordered by id.
func (h *Handlers) ListDrones(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	p, err := wire.ParseIDPage(req.Query, "status")
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	status := domain.DroneStatus(req.Query.Get("status"))
	switch status {
	case "", domain.DroneAvailable, domain.DroneAssigned, domain.DroneInFlight, domain.DroneCharging, domain.DroneMaintenance, domain.DroneRetired:
	default:
		return h.errorResponse(ctx, domain.Invalid("status", "must be one of Available, Assigned, InFlight, Charging, Maintenance, Retired"))
	}
	drones, err := h.store.Fleet.List(ctx, status, p.After, p.Limit+1)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	page := droneList{Drones: []*domain.Drone{}}
	if len(drones) > p.Limit {
		drones = drones[:p.Limit]
		page.Next = drones[p.Limit-1].ID
	}
	for _, d := range drones {
		page.Drones = append(page.Drones, h.droneView(d))
	}
	return functionapp.JSON(http.StatusOK, page)
}
