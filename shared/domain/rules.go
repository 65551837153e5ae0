package domain

import (
	"fmt"
	"time"
)

// Handling times added to the flight legs of an ETA. They are deliberately
// explicit so a customer-facing ETA can be explained: every leg starts with a
// climb to cruise altitude and ends with a descent, and loading a package at
// the pickup takes a minute.
const (
	TakeoffDuration = 30 * time.Second
	LandingDuration = 30 * time.Second
	PickupHandling  = 60 * time.Second
)

// MissionKm is the distance a drone flies to serve req from where it is now:
// to the pickup, to the dropoff, and back to its home base.
func MissionKm(d *Drone, req *DeliveryRequest) float64 {
	return DistanceKm(d.Location, req.PickupLocation) +
		DistanceKm(req.PickupLocation, req.DropoffLocation) +
		DistanceKm(req.DropoffLocation, d.HomeBase)
}

// Unfit says why drone d cannot serve req, or returns "" when it can: it
// must be Available, carry the package's weight and size, and have the range
// for the whole mission.
func Unfit(d *Drone, req *DeliveryRequest) string {
	if why := unfitCraft(d, req); why != "" {
		return why
	}
	if need := MissionKm(d, req); need > d.RangeKm {
		return fmt.Sprintf("mission %.1f km exceeds range %.1f km", need, d.RangeKm)
	}
	return ""
}

// ShortOfCharge reports whether the drone could serve req once charged but
// not on the battery it has: it carries the package, the mission is beyond
// its range now but within the range a charge gives it (to ChargedPercent,
// keeping the reserve), and charged from now at the charge rate it would
// still deliver by the deadline (a charge is done, and the drone back in
// service, at ChargedPercent).
func ShortOfCharge(d *Drone, req *DeliveryRequest, cfg TrackingConfig, now time.Time) bool {
	if unfitCraft(d, req) != "" {
		return false
	}
	cfg = cfg.WithDefaults()
	need := MissionKm(d, req)
	if need <= d.RangeKm || need > cfg.UsableRangeKm(d.FullRange(cfg), cfg.ChargedPercent) {
		return false
	}
	charged := now.Add(cfg.ChargeDuration(d.BatteryPercent))
	return !ComputeETA(charged, d.Location, d.CruiseSpeedMps, req).Delivery.After(req.Deadline)
}

// LegDuration is the time to fly distanceKm at speedMps, including the climb
// and descent. It cannot overflow: the speed counts as at least
// MinCruiseSpeedMps and the distance as at most half the Earth's
// circumference.
func LegDuration(distanceKm, speedMps float64) time.Duration {
	return TakeoffDuration + cruiseDuration(distanceKm, speedMps) + LandingDuration
}

// ETA is when the drone is expected at the pickup and at the dropoff.
type ETA struct {
	Pickup   time.Time
	Delivery time.Time
}

// ComputeETA estimates both arrival times for a drone at from, flying at
// speedMps, that has not picked the package up yet. A drone early for the
// requested pickup time waits for it. Times are rounded up to whole seconds
// because they are shown to people.
func ComputeETA(now time.Time, from Location, speedMps float64, req *DeliveryRequest) ETA {
	return RoutedETA(now, DistanceKm(from, req.PickupLocation), DistanceKm(req.PickupLocation, req.DropoffLocation), speedMps, req.PickupTime)
}

func ceilSecond(t time.Time) time.Time {
	r := t.Truncate(time.Second)
	if r.Before(t) {
		r = r.Add(time.Second)
	}
	return r.UTC()
}
