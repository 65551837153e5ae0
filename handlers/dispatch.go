package handlers

import (
	"context"
	"iter"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// choose applies the dispatch rule (domain.Choose) to the Available drones
// of st around req's pickup, leaving out the drones skip names. Dispatch
// and quotes both choose through it, so a quote names the drone dispatch
// would take at that moment. A nil plan means no drone can serve req now.
func (h *Handlers) choose(ctx context.Context, st ports.Store, req *domain.DeliveryRequest, now time.Time, skip, skipAreas map[string]bool) (*domain.Plan, error) {
	// An index that cannot be loaded now is an outage, not an empty fleet.
	if err := st.Fleet.Ready(ctx); err != nil {
		return nil, err
	}
	air, lim, err := h.choiceLimits(ctx, req)
	if err != nil {
		return nil, err
	}
	return domain.Choose(without(st.Fleet.NearestAvailable(ctx, req.PickupLocation), skip, skipAreas), req, air, lim, now)
}

// choiceLimits are the airspace in force and the limits a choice of drone
// for req works within (dispatch's and preemption's alike).
func (h *Handlers) choiceLimits(ctx context.Context, req *domain.DeliveryRequest) (domain.Airspace, domain.ChoiceLimits, error) {
	fleet, err := h.fleetSummary(ctx)
	if err != nil {
		return nil, domain.ChoiceLimits{}, err
	}
	air, err := h.airspace(ctx)
	if err != nil {
		return nil, domain.ChoiceLimits{}, err
	}
	return air, domain.ChoiceLimits{RadiusKm: h.cfg.DispatchRadiusKm, MaxSpeedMps: fleet.MaxSpeedMps(&req.PackageInfo), MaxEligible: h.cfg.MaxEligible}, nil
}

// without leaves out of candidates the drones skip names and those based
// in the areas skipAreas names (domain.AreaOf of the home base).
func without(candidates iter.Seq2[*domain.Drone, float64], skip, skipAreas map[string]bool) iter.Seq2[*domain.Drone, float64] {
	if len(skip) == 0 && len(skipAreas) == 0 {
		return candidates
	}
	return func(yield func(*domain.Drone, float64) bool) {
		for d, km := range candidates {
			if skip[d.ID] || (len(skipAreas) > 0 && skipAreas[domain.AreaOf(d.HomeBase)]) {
				continue
			}
			if !yield(d, km) {
				return
			}
		}
	}
}

// plan is the flight of the drone assigned to d from where it is now.
func (h *Handlers) plan(ctx context.Context, drone *domain.Drone, d *domain.Delivery, now time.Time) (domain.Plan, error) {
	air, err := h.airspace(ctx)
	if err != nil {
		return domain.Plan{}, err
	}
	leg, err := air.Route(d.Request.PickupLocation, d.Request.DropoffLocation, domain.LegTime(&d.Request, now))
	if err != nil {
		return domain.Plan{}, err
	}
	return domain.PlanRoute(drone, &d.Request, air, leg, now)
}
