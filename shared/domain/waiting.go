package domain

import "time"

// WaitingStages are the stages a delivery that waits for a drone can be
// in: accepted, rescheduled, or booked (Scheduled with a dispatch time and
// no drone yet). A store's listing of waiting deliveries reads these and
// keeps those Waiting says wait.
var WaitingStages = []Stage{StageCreated, StageRescheduled, StageScheduled}

// Waiting reports whether the delivery is not yet flying and has no drone
// assigned: it waits for dispatch, a drone, a pause to end or its booked
// dispatch time.
func (d *Delivery) Waiting() bool {
	switch d.Stage {
	case StageCreated, StageRescheduled, StageScheduled:
		return d.DroneAssignedAt == nil
	}
	return false
}

// WaitKind says why a waiting delivery waits.
type WaitKind string

// The reasons a delivery waits.
const (
	// WaitHeld: a service pause covers its pickup.
	WaitHeld WaitKind = "held"
	// WaitBooked: a booked pickup before its dispatch time.
	WaitBooked WaitKind = "booked"
	// WaitClaiming: dispatch reserved a drone and is claiming it.
	WaitClaiming WaitKind = "claiming"
	// WaitShare: its account holds the share of the area's drones the
	// operator's cap allows.
	WaitShare WaitKind = "share"
	// WaitDispatch: accepted moments ago; dispatch has not run yet.
	WaitDispatch WaitKind = "dispatch"
	// WaitNoRoute: the airspace in force now refuses its pickup or its
	// dropoff, or leaves no way between them (a zone put since it was
	// accepted); dispatch tries again until the deadline.
	WaitNoRoute WaitKind = "noRoute"
	// WaitNoDrone: dispatch found no drone that can serve it; it retries.
	WaitNoDrone WaitKind = "noDrone"
)

// NoDroneReason is the waitReason of WaitNoDrone.
const NoDroneReason = "no drone available"

// Leg admits the request's pickup and dropoff in airspace air at time at
// and routes the leg between them; the error is the airspace's refusal,
// naming the field at fault.
func Leg(req *DeliveryRequest, air Airspace, at time.Time) (Route, error) {
	if err := air.Admit("pickupLocation", req.PickupLocation, at); err != nil {
		return Route{}, err
	}
	if err := air.Admit("dropOffLocation", req.DropoffLocation, at); err != nil {
		return Route{}, err
	}
	return air.Route(req.PickupLocation, req.DropoffLocation, at)
}

// Unroutable says why the airspace air, at time at, leaves the request no
// flight (Leg's refusal); "" when it has one. Errors other than the
// airspace's refusal are returned.
func Unroutable(req *DeliveryRequest, air Airspace, at time.Time) (string, error) {
	_, err := Leg(req, air, at)
	if IsCode(err, EUNPROCESSABLE) {
		return err.Error(), nil
	}
	return "", err
}

// UnroutableSoon is Unroutable for a leg flown at any time from at to
// within later, where zones come and go: a zone that comes into force by
// then and leaves no route (over the dropoff, say) keeps dispatch from
// sending a drone that would be flying then (PlanRoute). "" when the
// airspace has no zone with a window, or the leg has a route.
func UnroutableSoon(req *DeliveryRequest, air Airspace, at time.Time, within time.Duration) (string, error) {
	timed, ok := air.(TimedAirspace)
	if !ok || !timed.Timed() {
		return "", nil
	}
	_, err := timed.RouteDuring(req.PickupLocation, req.DropoffLocation, at, at.Add(within))
	if IsCode(err, EUNPROCESSABLE) {
		return err.Error(), nil
	}
	return "", err
}

// WaitReason says from the delivery alone why it waits at now: held by a
// pause it was marked with, booked, a drone being claimed, or, for one
// accepted or rescheduled less than fresh ago, dispatch not run yet;
// otherwise no drone was available. What the delivery does not record (a
// pause declared since dispatch last ran, an account at its share) the
// caller checks before falling back on this.
func (d *Delivery) WaitReason(now time.Time, fresh time.Duration) (WaitKind, string) {
	switch {
	case d.HeldReason != "":
		return WaitHeld, "held: " + d.HeldReason
	case d.DispatchAt != nil && now.Before(*d.DispatchAt):
		return WaitBooked, "booked: dispatch at " + ClockTime(*d.DispatchAt, now)
	case d.DroneID != "":
		return WaitClaiming, "drone " + d.DroneID + " being claimed"
	case now.Sub(d.UpdatedAt) < fresh:
		return WaitDispatch, "waiting for dispatch"
	}
	return WaitNoDrone, NoDroneReason
}

// ByMinute is t rounded up to its minute: a delivery time written to the
// minute for a person ("by 15:52") is then never earlier than the
// 15:51:48 it stands for. Other times (a pickup, a dispatch) are written
// as the tracking page writes them, to the minute begun.
func ByMinute(t time.Time) time.Time {
	return t.Add(time.Minute - time.Nanosecond).Truncate(time.Minute)
}

// ClockTime writes t for a person reading it at now, in UTC: "14:05 UTC"
// on the same day, "Dec 12 14:05 UTC" on another, so that a time days away
// is not read as today's.
func ClockTime(t, now time.Time) string {
	t, now = t.UTC(), now.UTC()
	if y, m, d := t.Date(); now.Year() == y && now.Month() == m && now.Day() == d {
		return t.Format("15:04") + " UTC"
	}
	return t.Format("Jan 2 15:04") + " UTC"
}
