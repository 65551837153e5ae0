package domain

import (
	"fmt"
	"iter"
	"time"
)

// The dispatch rule. Among the drones that can serve a request (Available,
// able to lift the package, with the charge for drone → pickup → dropoff →
// home base along routed legs, and delivering no later than the deadline),
// dispatch chooses the one with the earliest delivery ETA; of drones with
// the same ETA, the nearest to the pickup. A drone early for the pickup
// time waits for it, so for a pickup booked ahead the fastest drone wins,
// while for a pickup now the nearness counts too.
//
// Candidates are read nearest first. A candidate is routed only when it
// could beat the best plan found so far: flying straight at its own speed
// it would deliver sooner (routes are never shorter). The walk stops when
// even the fastest drone of the fleet able to carry the package, flying
// straight from the next candidate's distance, could not beat the best ETA
// found; at the search radius; or after a bounded number of eligible
// candidates (those passed over unrouted count too), so a choice costs a
// few dozen plans, and fewer routes, whatever the fleet's size.

// PlannedRoute is the path a drone is planned to fly for a delivery.
type PlannedRoute struct {
	// Pickup runs from where the drone was when it was chosen to the
	// pickup.
	Pickup Route `json:"pickup"`
	// Dropoff runs from the pickup to the dropoff.
	Dropoff Route `json:"dropoff"`
}

// Plan is how one drone would serve a request.
type Plan struct {
	Drone *Drone
	// Km is the straight-line distance from the drone to the pickup.
	Km    float64
	Route PlannedRoute
	ETA   ETA
}

// RoutedETA is when a drone flying at speedMps reaches the pickup toPickupKm
// away (waiting for pickupTime if early) and then the dropoff legKm further,
// as ComputeETA counts handling and rounding.
func RoutedETA(now time.Time, toPickupKm, legKm, speedMps float64, pickupTime time.Time) ETA {
	pickup := now.Add(LegDuration(toPickupKm, speedMps))
	if pickupTime.After(pickup) {
		pickup = pickupTime
	}
	pickup = ceilSecond(pickup)
	delivery := pickup.Add(PickupHandling + LegDuration(legKm, speedMps))
	return ETA{Pickup: pickup, Delivery: ceilSecond(delivery)}
}

// PlanRoute plans the flight of drone d for req from where it is at now,
// whatever its status: the routed legs and the ETA. leg is the routed
// pickup → dropoff leg.
//
// Where no-fly zones come into force and end (a TimedAirspace), both legs
// are routed round every zone in force at any time the drone is out on
// them, from its departure (now, or for a pickup booked ahead the time it
// must set off to be there) to the delivery, widened to whole flightSlots:
// one that comes into force while the drone is on its way is met as surely
// as one in force at its departure (and one that ends before the drone
// gets there is flown round all the same). A longer route brings an
// earlier departure or a later delivery, which may bring more zones in, so
// the routing is done again until the legs no longer change; the window
// only widens from round to round.
func PlanRoute(d *Drone, req *DeliveryRequest, air Airspace, leg Route, now time.Time) (Plan, error) {
	toPickup, err := air.Route(d.Location, req.PickupLocation, now)
	if err != nil {
		return Plan{}, err
	}
	eta := RoutedETA(now, toPickup.Km, leg.Km, d.CruiseSpeedMps, req.PickupTime)
	if timed, ok := air.(TimedAirspace); ok && timed.Timed() {
		var from, to time.Time
		for round := range maxRoutings {
			departs := latest(now, eta.Pickup.Add(-LegDuration(toPickup.Km, d.CruiseSpeedMps)))
			if round == 0 || departs.Before(from) {
				from = departs.Truncate(flightSlot)
			}
			if round == 0 || eta.Delivery.After(to) {
				to = ceilTo(eta.Delivery, flightSlot)
			}
			p, err := timed.RouteDuring(d.Location, req.PickupLocation, from, to)
			if err != nil {
				return Plan{}, err
			}
			l, err := timed.RouteDuring(req.PickupLocation, req.DropoffLocation, from, to)
			if err != nil {
				return Plan{}, err
			}
			if round > 0 && p.Km == toPickup.Km && l.Km == leg.Km {
				break
			}
			toPickup, leg = p, l
			eta = RoutedETA(now, toPickup.Km, leg.Km, d.CruiseSpeedMps, req.PickupTime)
		}
	}
	return Plan{Drone: d, Km: DistanceKm(d.Location, req.PickupLocation), Route: PlannedRoute{Pickup: toPickup, Dropoff: leg}, ETA: eta}, nil
}

// maxRoutings bounds PlanRoute's rounds. The window only widens from round
// to round, and with it the set of zones, so the legs settle within a
// round per zone that comes in; a flight that meets more than this many
// one after another keeps the legs of its last round.
const maxRoutings = 8

// flightSlot is the grain of the windows legs are routed for where zones
// come and go: widening a window to whole slots keeps the sets of zones
// in force, and so the routing graphs the airspace keeps, few.
const flightSlot = 5 * time.Minute

// ceilTo is t rounded up to a whole d.
func ceilTo(t time.Time, d time.Duration) time.Time {
	if r := t.Truncate(d); r.Before(t) {
		return r.Add(d)
	}
	return t
}

// PlanFor plans drone d, km from the pickup as the crow flies, for req at
// now, with leg the routed pickup → dropoff leg. It returns the reason d
// cannot serve req instead when it cannot (see the dispatch rule).
func PlanFor(d *Drone, km float64, req *DeliveryRequest, air Airspace, leg Route, now time.Time) (Plan, string) {
	if why := unfitCraft(d, req); why != "" {
		return Plan{}, why
	}
	p, err := PlanRoute(d, req, air, leg, now)
	if err != nil {
		return Plan{}, "no route to the pickup: " + ErrorMessage(err)
	}
	p.Km = km
	home, err := routeHome(d, req, air, p.ETA.Delivery, now)
	if err != nil {
		return Plan{}, "no route home: " + ErrorMessage(err)
	}
	if need := p.Route.Pickup.Km + p.Route.Dropoff.Km + home.Km; need > d.RangeKm {
		return Plan{}, fmt.Sprintf("mission %.1f km exceeds range %.1f km", need, d.RangeKm)
	}
	if p.ETA.Delivery.After(req.Deadline) {
		return Plan{}, fmt.Sprintf("would deliver at %s, after the deadline", p.ETA.Delivery.Format(time.RFC3339))
	}
	return p, ""
}

// routeHome routes drone d's flight home from req's dropoff, which it
// leaves at delivered: round the zones in force then, or, where zones come
// and go, at any time until it is home at the straight line's pace.
func routeHome(d *Drone, req *DeliveryRequest, air Airspace, delivered, now time.Time) (Route, error) {
	timed, ok := air.(TimedAirspace)
	if !ok || !timed.Timed() {
		return air.Route(req.DropoffLocation, d.HomeBase, now)
	}
	home := delivered.Add(LegDuration(DistanceKm(req.DropoffLocation, d.HomeBase), d.CruiseSpeedMps))
	return timed.RouteDuring(req.DropoffLocation, d.HomeBase, delivered.Truncate(flightSlot), ceilTo(home, flightSlot))
}

// unfitCraft is Unfit without the range: whether the drone is free and
// lifts the package.
func unfitCraft(d *Drone, req *DeliveryRequest) string {
	switch {
	case d.Status != DroneAvailable || d.CurrentDeliveryID != "":
		return fmt.Sprintf("drone is %s", d.Status)
	case req.PackageInfo.Weight > d.MaxPayloadKg:
		return fmt.Sprintf("payload %g kg exceeds %g kg", req.PackageInfo.Weight, d.MaxPayloadKg)
	case req.PackageInfo.Size.Rank() > d.MaxPackageSize.Rank():
		return fmt.Sprintf("package size %s exceeds %s", req.PackageInfo.Size, d.MaxPackageSize)
	}
	return ""
}

// ChoiceLimits bound the walk of Choose.
type ChoiceLimits struct {
	// RadiusKm: candidates farther from the pickup are not considered.
	RadiusKm float64
	// MaxSpeedMps is the fastest cruise speed of any drone able to lift
	// the package (FleetSummary.MaxSpeedMps); with it the walk stops once
	// no farther candidate can beat the best plan. 0 turns that off.
	MaxSpeedMps float64
	// MaxEligible ends the walk after that many eligible candidates,
	// counting those passed over unrouted that could be; 0 means
	// DefaultMaxEligible.
	MaxEligible int
}

// DefaultMaxEligible is ChoiceLimits.MaxEligible when none is set.
const DefaultMaxEligible = 64

// cannotBeat says, without routing, that drone d, km from the pickup as
// the crow flies, would not be chosen over best even were it eligible: no
// route is shorter than the straight line, so d's ETA along the straight
// legs at its own speed is the earliest it could have, and that is after
// best's ETA, or the same and d is no nearer. A drone unable to lift the
// package, or that could not make the deadline even so, is not eligible
// at all, and the caller does not count it.
func cannotBeat(d *Drone, km float64, req *DeliveryRequest, leg Route, best *Plan, now time.Time) bool {
	if unfitCraft(d, req) != "" {
		return false
	}
	earliest := RoutedETA(now, km, leg.Km, d.CruiseSpeedMps, req.PickupTime).Delivery
	if earliest.After(req.Deadline) {
		return false
	}
	return earliest.After(best.ETA.Delivery) || earliest.Equal(best.ETA.Delivery) && km >= best.Km
}

// startChoice is where both choices begin (Choose and ChooseTakeovers): it
// fills in an open airspace and DefaultMaxEligible where none is given, and
// routes req's pickup to its dropoff.
func startChoice(req *DeliveryRequest, air Airspace, lim ChoiceLimits, now time.Time) (Airspace, ChoiceLimits, Route, error) {
	if air == nil {
		air = OpenAirspace{}
	}
	lim.MaxEligible = positiveOr(lim.MaxEligible, DefaultMaxEligible)
	leg, err := air.Route(req.PickupLocation, req.DropoffLocation, LegTime(req, now))
	return air, lim, leg, err
}

// LegTime is when the pickup → dropoff leg of req is flown from, as far
// as is known before a drone is chosen: its pickup time, or now when that
// has come. The leg is routed round the zones in force then: a booked
// pickup is dispatched minutes ahead, and a zone that opens or closes in
// between is the one its drone meets, or no longer meets.
func LegTime(req *DeliveryRequest, now time.Time) time.Time {
	if req.PickupTime.After(now) {
		return req.PickupTime
	}
	return now
}

// Choose applies the dispatch rule to candidates, which yields drones with
// their straight-line distance from the pickup, nearest first (as
// ports.Fleet.NearestAvailable does). It returns the chosen plan, or nil
// when no candidate is eligible, or the airspace's error when there is no
// route from the pickup to the dropoff at all.
func Choose(candidates iter.Seq2[*Drone, float64], req *DeliveryRequest, air Airspace, lim ChoiceLimits, now time.Time) (*Plan, error) {
	air, lim, leg, err := startChoice(req, air, lim, now)
	if err != nil {
		return nil, err
	}
	var best *Plan
	eligible := 0
	for d, km := range candidates {
		if lim.RadiusKm > 0 && km > lim.RadiusKm {
			break
		}
		if best != nil && lim.MaxSpeedMps > 0 {
			// No route is shorter than the straight line, and no drone
			// able to carry the package is faster than MaxSpeedMps.
			bound := RoutedETA(now, km, leg.Km, lim.MaxSpeedMps, req.PickupTime)
			if !bound.Delivery.Before(best.ETA.Delivery) {
				break
			}
		}
		if best != nil && cannotBeat(d, km, req, leg, best, now) {
			// Counted as if it were eligible, so that the walk's length
			// stays bounded when most candidates are passed over this way.
			if eligible++; eligible >= lim.MaxEligible {
				break
			}
			continue
		}
		p, why := PlanFor(d, km, req, air, leg, now)
		if why != "" {
			continue
		}
		if best == nil || p.ETA.Delivery.Before(best.ETA.Delivery) ||
			p.ETA.Delivery.Equal(best.ETA.Delivery) && p.Km < best.Km {
			best = &p
		}
		if eligible++; eligible >= lim.MaxEligible {
			break
		}
	}
	return best, nil
}
