package domain

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// Notification kinds, one per milestone a customer hears about.
const (
	NotifyScheduled  = "scheduled"
	NotifyETAChanged = "eta-changed"
	NotifyPickedUp   = "picked-up"
	NotifyDelivered  = "delivered"
	NotifyFailed     = "failed"
	NotifyCancelled  = "cancelled"
)

// TrackingConfig tunes how telemetry moves a delivery.
type TrackingConfig struct {
	// ArrivalRadiusKm is how close a report must be to the pickup or the
	// dropoff to count as arrived there; GPS is good to a few metres, a
	// hovering drone drifts, 50 m is a landing pad with margin.
	ArrivalRadiusKm float64
	// ETAChangeThreshold is how far the delivery ETA must move from the one
	// last told to the customer before they are told again.
	ETAChangeThreshold time.Duration
	// LowBatteryPercent sends a drone to Charging instead of Available when
	// it finishes a delivery below it.
	LowBatteryPercent float64
	// ReservePercent is the share of a full charge a drone never flies on
	// (default DefaultReservePercent); ChargedPercent the battery at which
	// a charging drone is Available again (DefaultChargedPercent); and
	// ChargePercentPerHour the rate a drone charges at when it sends no
	// reports (DefaultChargePercentPerHour). See battery.go.
	ReservePercent       float64
	ChargedPercent       float64
	ChargePercentPerHour float64
	// ClockSkew is how far ahead of the service's clock a report may be
	// dated (default TelemetryFutureSkew); MaxReportAge how far behind it
	// (default TelemetryMaxAge). See CheckReportTime.
	ClockSkew    time.Duration
	MaxReportAge time.Duration
	// PickupTolerance is how long before the requested pickupTime a
	// package may be picked up: a drone reported at the pickup earlier is
	// waiting there, and the pickup counts from its first report at the
	// pickup from pickupTime − PickupTolerance on.
	PickupTolerance time.Duration
}

// WithDefaults fills zero fields.
func (c TrackingConfig) WithDefaults() TrackingConfig {
	c.ArrivalRadiusKm = positiveOr(c.ArrivalRadiusKm, 0.05)
	c.ETAChangeThreshold = positiveOr(c.ETAChangeThreshold, 2*time.Minute)
	c.LowBatteryPercent = positiveOr(c.LowBatteryPercent, 20)
	c.ReservePercent = positiveOr(c.ReservePercent, DefaultReservePercent)
	c.ChargedPercent = positiveOr(c.ChargedPercent, DefaultChargedPercent)
	c.ChargePercentPerHour = positiveOr(c.ChargePercentPerHour, DefaultChargePercentPerHour)
	c.ClockSkew = positiveOr(c.ClockSkew, TelemetryFutureSkew)
	c.MaxReportAge = positiveOr(c.MaxReportAge, TelemetryMaxAge)
	c.PickupTolerance = positiveOr(c.PickupTolerance, DefaultPickupEarliness)
	return c
}

// DefaultPickupEarliness is TrackingConfig.PickupTolerance when none is
// set.
const DefaultPickupEarliness = time.Minute

// legal lists each stage's allowed successors.
var legal = map[Stage][]Stage{
	StageCreated:         {StageScheduled, StageRescheduled, StageCancelled, StageFailed},
	StageScheduled:       {StageHeadedToPickup, StageRescheduled, StageCancelled, StageFailed},
	StageHeadedToPickup:  {StageHeadedToDropoff, StageRescheduled, StageCancelled, StageFailed},
	StageHeadedToDropoff: {StageCompleted, StageCancelled, StageFailed},
	StageRescheduled:     {StageScheduled, StageRescheduled, StageCancelled, StageFailed},
}

// LegalTransition reports whether a delivery may move from one stage to another.
func LegalTransition(from, to Stage) bool {
	for _, s := range legal[from] {
		if s == to {
			return true
		}
	}
	return false
}

// LegalHistory checks that a history starts at Created, only makes legal
// moves and never goes back in time. Events that are not changes of stage
// (a proof of delivery) must be in the stage the delivery was in; a
// truncation marker sets the stage the events it omits left.
func LegalHistory(events []Event) error {
	if len(events) == 0 || events[0].Stage != StageCreated || events[0].Kind != "" {
		return fmt.Errorf("history must start with %s", StageCreated)
	}
	stage := events[0].Stage
	for i := 1; i < len(events); i++ {
		e := events[i]
		if e.At.Before(events[i-1].At) {
			return fmt.Errorf("event %d goes back in time", i)
		}
		if e.Kind == EventTruncated {
			stage = e.Stage // the moves it stands for were checked when they were made
			continue
		}
		if e.Kind != "" {
			if e.Stage != stage {
				return fmt.Errorf("event %d (%s) says %s in stage %s", i, e.Kind, e.Stage, stage)
			}
			continue
		}
		if !LegalTransition(stage, e.Stage) {
			return fmt.Errorf("illegal move %s → %s at event %d", stage, e.Stage, i)
		}
		stage = e.Stage
	}
	return nil
}

// SetStage moves d to stage s at t and records the move in its history,
// dated no earlier than the event before it: writers that read the clock
// before they won the document (two PATCHes at once) keep the history in
// time order.
func (d *Delivery) SetStage(s Stage, t time.Time, note string) {
	d.setStageAt(s, t, note, nil)
}

// setStageAt is SetStage for a move that happened at where, a point of the
// trail (a milestone a late report revealed); nil is the last known
// location.
func (d *Delivery) setStageAt(s Stage, t time.Time, note string, where *Location) {
	d.Stage = s
	e := Event{Stage: s, At: d.eventTime(t), Note: note}
	if where == nil {
		where = d.LastKnownLocation
	}
	if where != nil {
		loc := *where
		e.Location = &loc
	}
	if d.DroneAssignedAt != nil {
		e.DroneID = d.DroneID
	}
	d.record(e)
	d.Touch(t)
}

// Notify records a notification and returns it, so the caller can send it
// on once the delivery is stored. It carries the delivery's ETAs, none once
// it is cancelled or failed (Stage.NoDroneComing).
func (d *Delivery) Notify(kind, message string, t time.Time) Notification {
	n := Notification{
		ID:      fmt.Sprintf("%s:n%d", d.ID, max(d.NotificationCount, len(d.Notifications))+1),
		Kind:    kind,
		Message: message,
		At:      t,
		Stage:   d.Stage,
	}
	if d.PickupETA != nil && !d.Stage.NoDroneComing() {
		p := *d.PickupETA
		n.PickupETA = &p
	}
	if d.DeliveryETA != nil && !d.Stage.NoDroneComing() {
		e := *d.DeliveryETA
		n.DeliveryETA = &e
		d.NotifiedDeliveryETA = &e
	}
	d.NotificationCount = max(d.NotificationCount, len(d.Notifications)) + 1
	d.keepNotification(n)
	return n
}

// Telemetry is one position report of a drone.
type Telemetry struct {
	DroneID        string    `json:"droneId"`
	Location       Location  `json:"location"`
	BatteryPercent float64   `json:"batteryPercent"`
	Timestamp      time.Time `json:"timestamp"`
}

// FlightETA estimates arrival times for a drone already in the air at
// from: no climb before the next leg. Before the pickup, the pickup leg
// ends with a landing and loading, and the dropoff leg starts with a climb;
// after it, only the descent at the dropoff remains. With a route (the legs
// as dispatch planned them round the no-fly zones, which the drone flies),
// the leg the drone is on is counted along it from the point of it nearest
// the drone, and the dropoff leg at its routed length; without one, or
// where a leg has no points, straight.
func FlightETA(now time.Time, from Location, speedMps float64, req *DeliveryRequest, route *PlannedRoute, pickedUp bool) ETA {
	cruise := func(km float64) time.Duration { return cruiseDuration(km, speedMps) }
	var toPickup, toDropoff Route
	if route != nil {
		toPickup, toDropoff = route.Pickup, route.Dropoff
	}
	if pickedUp {
		return ETA{Delivery: ceilSecond(now.Add(cruise(toDropoff.remainingKm(from, req.DropoffLocation)) + LandingDuration))}
	}
	pickup := now.Add(cruise(toPickup.remainingKm(from, req.PickupLocation)) + LandingDuration)
	if req.PickupTime.After(pickup) {
		pickup = req.PickupTime
	}
	pickup = ceilSecond(pickup)
	legKm := max(toDropoff.Km, DistanceKm(req.PickupLocation, req.DropoffLocation))
	delivery := pickup.Add(PickupHandling + LegDuration(legKm, speedMps))
	return ETA{Pickup: pickup, Delivery: ceilSecond(delivery)}
}

// Track applies a telemetry report to the delivery its drone is flying. It
// returns false, changing nothing, for a report already applied (same
// timestamp) or a delivery not in flight; otherwise it files the report in
// the trail by its timestamp, moves the stage forward and, when the report
// is the newest, the position and the ETAs, and returns the notifications
// due. Reports may arrive late or out of order, as queues deliver them: the
// trail stays sorted, the distance flown is kept exact by splicing, and the
// pickup and dropoff are found from the trail in time order, so the order of
// arrival does not change where the delivery ends up.
//
// A drone flies from its claim, and its delivery may await its schedule
// for longer than the flight (the ETA step's message waiting out a lock
// after a crash): such a report is filed in the trail and moves the
// position, but no stage, until Schedule and FollowTrail take the
// delivery as far as the trail has flown it.
func Track(d *Delivery, drone *Drone, r Telemetry, cfg TrackingConfig) (bool, []Notification) {
	cfg = cfg.WithDefaults()
	early := false
	switch d.Stage {
	case StageScheduled, StageHeadedToPickup, StageHeadedToDropoff:
	case StageCreated, StageRescheduled:
		// Only the drone this generation claimed: a report of the drone
		// an earlier generation held says nothing of this flight.
		early = d.DroneID == drone.ID && drone.CurrentDeliveryID == d.ID && drone.CurrentGeneration == d.Generation
		if !early {
			return false, nil
		}
	default:
		return false, nil
	}
	t := r.Timestamp
	if !d.insertTrail(TrailPoint{Latitude: r.Location.Latitude, Longitude: r.Location.Longitude, At: t}) {
		return false, nil
	}
	// Thinned only once the pickup and the dropoff have been looked for
	// with the new point in the trail: a late report that is thinned away
	// at once may still be the one that reached either.
	defer d.thinTrail()
	newest := d.LastTelemetryAt == nil || t.After(*d.LastTelemetryAt)
	if newest {
		loc := r.Location
		d.LastKnownLocation = &loc
		d.LastTelemetryAt = &t
		d.Touch(t)
	}
	if early {
		// The package is aboard once the drone has been at the pickup,
		// whatever the stage says: cancel, reschedule, reassign and
		// preemption refuse it from then on. Stages and notices wait for
		// the schedule.
		d.findPickup(cfg)
		return true, nil
	}
	// A changed ETA's notice is dated with the report, even one dated
	// before the schedule (a drone's clock behind the service's): a
	// redelivered report finds the notices it made by that time
	// (notificationsAt, handlers) to send them again.
	return true, d.follow(drone, t, r.Location, newest, t, cfg)
}

// findPickup sets PickedUpAt (and PickupETA) from the first report of the
// trail at the pickup, if there is one and none was found before. A drone
// at a pickup booked ahead waits there: no pickup before pickupTime −
// PickupTolerance. A pickup due by the time its drone was assigned has no
// such bound: its drone's reports are dated by the drone's clock, and one
// running behind the service's dates the report at the pickup before the
// pickup time, which would then never count.
func (d *Delivery) findPickup(cfg TrackingConfig) {
	if d.PickedUpAt != nil {
		return
	}
	earliest := d.Request.PickupTime.Add(-cfg.PickupTolerance - time.Nanosecond)
	if d.DroneAssignedAt != nil && !d.Request.PickupTime.After(*d.DroneAssignedAt) {
		earliest = time.Time{}
	}
	if p, ok := firstWithin(d.Trail, d.Request.PickupLocation, cfg.ArrivalRadiusKm, earliest); ok {
		pt := p.At
		d.PickedUpAt = &pt
		d.PickupETA = &pt
	}
}

// FollowTrail takes a delivery Schedule has just made Scheduled as far as
// the reports its drone sent while the delivery awaited its schedule have
// flown it (see Track): off to the pickup, picked up, delivered, with the
// notices due, and the ETAs from the newest report. It changes nothing
// when the drone had sent none.
func FollowTrail(d *Delivery, drone *Drone, cfg TrackingConfig) []Notification {
	if d.Stage != StageScheduled || d.LastTelemetryAt == nil || d.LastKnownLocation == nil || len(d.Trail) == 0 {
		return nil
	}
	// Its notices are dated with the schedule (eventTime), after the
	// scheduled notice they follow.
	t := *d.LastTelemetryAt
	return d.follow(drone, t, *d.LastKnownLocation, true, d.eventTime(t), cfg.WithDefaults())
}

// follow moves the stage as the trail says, the newest report being at loc
// at t, and returns the notifications due, a changed ETA's dated noticeAt.
func (d *Delivery) follow(drone *Drone, t time.Time, loc Location, newest bool, noticeAt time.Time, cfg TrackingConfig) []Notification {
	var out []Notification
	if d.Stage == StageScheduled && len(d.Trail) > 0 {
		// Off at the flight's first report: the one at hand as reports
		// come, the earliest of those FollowTrail follows.
		first := d.Trail[0]
		d.setStageAt(StageHeadedToPickup, d.eventTime(first.At), "", &Location{Latitude: first.Latitude, Longitude: first.Longitude})
	}
	d.findPickup(cfg)
	if newest {
		// The ETAs from the newest report, before the notices, which
		// carry them: the picked-up notice tells the delivery time as the
		// report that made it has it.
		d.estimate(drone, t, loc, cfg)
	}
	if d.PickedUpAt != nil && d.Stage == StageHeadedToPickup {
		pt := *d.PickedUpAt
		d.setStageAt(StageHeadedToDropoff, d.eventTime(pt), "package picked up", d.trailAt(pt))
		out = append(out, d.Notify(NotifyPickedUp, "Your package has been picked up.", d.eventTime(pt)))
	}
	if d.PickedUpAt != nil && d.Stage == StageHeadedToDropoff {
		if p, ok := firstWithin(d.Trail, d.Request.DropoffLocation, cfg.ArrivalRadiusKm, *d.PickedUpAt); ok {
			// A drone's clock may lag the service's: the completion is
			// dated no earlier than the delivery's acceptance, so no
			// duration measured from then is negative. (The pickup time
			// stays as reported: the dropoff is searched for after it.)
			ct := latest(p.At, d.CreatedAt)
			d.CompletedAt = &ct
			d.DeliveryETA = &ct
			d.setStageAt(StageCompleted, d.eventTime(ct), "package delivered", d.trailAt(p.At))
			out = append(out, d.Notify(NotifyDelivered, "Your package has been delivered.", d.eventTime(ct)))
			return out
		}
	}
	if !newest || d.NotifiedDeliveryETA == nil {
		return out // an old report says nothing about where the drone is now
	}
	moved := d.DeliveryETA.Sub(*d.NotifiedDeliveryETA)
	if moved < 0 {
		moved = -moved
	}
	if moved > cfg.ETAChangeThreshold {
		out = append(out, d.Notify(NotifyETAChanged, "Your delivery's estimated time changed to "+ClockTime(ByMinute(*d.DeliveryETA), noticeAt)+".", noticeAt))
	}
	return out
}

// estimate sets the ETAs from where the newest report, at t, put the drone
// (FlightETA): the pickup's until the pickup, the delivery's always.
func (d *Delivery) estimate(drone *Drone, t time.Time, loc Location, cfg TrackingConfig) {
	if d.DroneAssignedAt != nil {
		// A report dated before the drone was claimed (a clock behind the
		// service's) still says where it is; the flight counts from the
		// claim, so no ETA is made earlier than the schedule could be.
		t = latest(t, *d.DroneAssignedAt)
	}
	from := t
	if d.PickedUpAt == nil && loc.Altitude != nil && *loc.Altitude < 1 && DistanceKm(loc, d.Request.PickupLocation) > cfg.ArrivalRadiusKm {
		// On the ground short of the pickup (its first report, before it
		// takes off): the climb an estimate from the air leaves out is
		// ahead, as the schedule counted it.
		from = t.Add(TakeoffDuration)
	}
	eta := FlightETA(from, loc, drone.CruiseSpeedMps, &d.Request, d.PlannedRoute, d.PickedUpAt != nil)
	if d.PickedUpAt != nil && DistanceKm(loc, d.Request.PickupLocation) <= cfg.ArrivalRadiusKm {
		// Still at the pickup: the landing, the loading and the climb that
		// an estimate from the air leaves out are ahead, or, on the pad
		// past them (no altitude reported, or none), the climb at least.
		leaves := d.PickedUpAt.Add(LandingDuration + PickupHandling + TakeoffDuration)
		if loc.Altitude == nil || *loc.Altitude < 1 {
			leaves = latest(leaves, t.Add(TakeoffDuration))
		}
		if leaves.After(t) {
			eta.Delivery = ceilSecond(eta.Delivery.Add(leaves.Sub(t)))
		}
	}
	if d.PickedUpAt == nil {
		d.PickupETA = &eta.Pickup
	}
	d.DeliveryETA = &eta.Delivery
}

// Filed reports whether the delivery's trail holds a report dated at.
func (d *Delivery) Filed(at time.Time) bool {
	i := sort.Search(len(d.Trail), func(i int) bool { return !d.Trail[i].At.Before(at) })
	return i < len(d.Trail) && d.Trail[i].At.Equal(at)
}

// insertTrail files p in the trail by time and keeps TraveledKm the length
// of the path through every point ever filed. It returns false for a point
// whose time is already there (a duplicate report), that is older than a
// full trail's oldest point, or that falls in the part of the trail
// already thinned, where a report sent again after the bus's duplicate
// window may be one thinned away: filed again, its detour would count
// twice.
func (d *Delivery) insertTrail(p TrailPoint) bool {
	i := sort.Search(len(d.Trail), func(i int) bool { return !d.Trail[i].At.Before(p.At) })
	if i < len(d.Trail) && d.Trail[i].At.Equal(p.At) {
		return false
	}
	if d.ThinnedThrough != nil && !p.At.After(*d.ThinnedThrough) {
		return false
	}
	if i == 0 && len(d.Trail) >= MaxTrailPoints {
		return false
	}
	km := func(a, b TrailPoint) float64 {
		return DistanceKm(Location{Latitude: a.Latitude, Longitude: a.Longitude}, Location{Latitude: b.Latitude, Longitude: b.Longitude})
	}
	switch {
	case i > 0 && i < len(d.Trail):
		d.TraveledKm += km(d.Trail[i-1], p) + km(p, d.Trail[i]) - km(d.Trail[i-1], d.Trail[i])
	case i > 0:
		d.TraveledKm += km(d.Trail[i-1], p)
	case len(d.Trail) > 0:
		d.TraveledKm += km(p, d.Trail[0])
	}
	d.Trail = slices.Insert(d.Trail, i, p)
	return true
}

// trailAt returns where the trail puts the drone at t, or nil when no
// point of it is dated t (thinned away).
func (d *Delivery) trailAt(t time.Time) *Location {
	for _, p := range d.Trail {
		if p.At.Equal(t) {
			return &Location{Latitude: p.Latitude, Longitude: p.Longitude}
		}
	}
	return nil
}

// firstWithin returns the earliest trail point after "after" within
// radiusKm of loc.
func firstWithin(trail []TrailPoint, loc Location, radiusKm float64, after time.Time) (TrailPoint, bool) {
	for _, p := range trail {
		if p.At.After(after) && DistanceKm(Location{Latitude: p.Latitude, Longitude: p.Longitude}, loc) <= radiusKm {
			return p, true
		}
	}
	return TrailPoint{}, false
}

// eventTime keeps the history in time order when a late report reveals a
// milestone that happened before the last recorded event.
func (d *Delivery) eventTime(t time.Time) time.Time {
	if n := len(d.History); n > 0 && d.History[n-1].At.After(t) {
		return d.History[n-1].At
	}
	return t
}

// Touch marks the delivery changed at t. UpdatedAt never goes back: a
// report dated ahead of the service's clock (within the skew it allows)
// may have set it, and a client that reads changes since an updatedAt it
// saw would miss a later write dated earlier.
func (d *Delivery) Touch(t time.Time) { d.UpdatedAt = latest(d.UpdatedAt, t) }

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// ReleaseDrone frees a drone at the end of its delivery: Available again,
// or Charging when its battery is low (StartCharging). A drone the
// operator recalled keeps flying home (see ApplyReport).
func ReleaseDrone(dr *Drone, cfg TrackingConfig, t time.Time) {
	dr.CurrentDeliveryID, dr.ClaimedAfterReport = "", nil
	if dr.Recalled {
		dr.Status, dr.ChargeDueAt = DroneInFlight, nil
	} else {
		dr.serve(cfg, t)
	}
	dr.UpdatedAt = t
}
