package domain

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// The named state changes of the chain. Each checks that the transition is
// allowed and applies it, or returns an error: ErrNoChange when the change
// was already made (a redelivered message: the caller writes nothing and
// goes on), or an error that says why it may not happen. They do no I/O; a
// handler loads the aggregate, calls one of them inside the store's update,
// and saves.

// ErrNoChange says a state change had already been made, so there is
// nothing to write. Stores treat it as a successful update that wrote
// nothing (ports.ErrSkip is the same value).
var ErrNoChange = errors.New("no change")

// ErrDroneUnavailable says a drone cannot be claimed for a delivery: it is
// busy, gone, or unfit for the package or the distance.
var ErrDroneUnavailable = errors.New("drone not claimable")

// Reserve notes droneID on the delivery before the drone is claimed, so
// that a crash between the claim and RecordAssignment leaves a trace that
// the next run finishes, with the area of the drone's home base (DroneArea,
// AreaOf). A delivery that is assigned, ended or already reserved (by this
// run or a concurrent redelivery, which the caller then finishes) is left
// as it is.
func (d *Delivery) Reserve(droneID, droneArea string, now time.Time) error {
	if d.DroneAssignedAt != nil || d.Stage.Terminal() || d.DroneID != "" {
		return ErrNoChange
	}
	d.DroneID, d.DroneArea = droneID, droneArea
	d.Touch(now)
	return nil
}

// DropReservation forgets a reservation whose drone could not be claimed.
func (d *Delivery) DropReservation(droneID string, now time.Time) error {
	if d.DroneID != droneID || d.DroneAssignedAt != nil {
		return ErrNoChange
	}
	d.DroneID, d.DroneArea, d.Preempted = "", "", nil
	d.Touch(now)
	return nil
}

// RecordAssignment completes an assignment once the reserved drone is
// claimed. It is an error for any other drone than the reserved one.
func (d *Delivery) RecordAssignment(droneID string, now time.Time) error {
	if d.DroneAssignedAt != nil || d.Stage.Terminal() {
		return ErrNoChange
	}
	if d.DroneID != droneID {
		return fmt.Errorf("delivery reserved drone %s but drone %s was claimed", d.DroneID, droneID)
	}
	t := now
	d.DroneAssignedAt = &t
	d.Touch(now)
	d.HeldReason = "" // a delivery with a drone is held by no pause
	return nil
}

// ResetAssignment forgets the assignment of the generation before gen when
// a rescheduled delivery is dispatched again at now, remembering its drone
// in PreviousDroneID so that it can be given back, and the time the drone
// was held until now in AssignedBeforeMs. The drone's flight goes with it:
// its last known position, its report time and its trail (the distance it
// flew stays counted in TraveledKm). Until another drone serves the
// delivery (or if it is booked for later) there is no drone to show, and
// the next drone's flight is measured, searched for the pickup and judged
// by its own clock from its own first report, never from a jump off the
// last drone's last point. A delivery that has ended keeps what its end
// recorded: its drone is released by the end's own message.
func (d *Delivery) ResetAssignment(gen int, now time.Time) error {
	if d.Generation != gen || d.ResetGeneration >= gen || d.Stage.Terminal() {
		return ErrNoChange
	}
	if d.DroneID != "" {
		d.PreviousDroneID = d.DroneID
	}
	if d.DroneAssignedAt != nil && now.After(*d.DroneAssignedAt) {
		d.AssignedBeforeMs += now.Sub(*d.DroneAssignedAt).Milliseconds()
	}
	d.DroneID, d.DroneArea, d.DroneAssignedAt, d.PackageRecordedAt, d.Preempted = "", "", nil, nil, nil
	d.LastKnownLocation, d.LastTelemetryAt, d.Trail, d.ThinnedThrough = nil, nil, nil, nil
	d.ResetGeneration = gen
	return nil
}

// RecordPackage notes that the delivery's package record is written.
func (d *Delivery) RecordPackage(packageID string, now time.Time) error {
	if d.PackageRecordedAt != nil || d.Stage.Terminal() {
		return ErrNoChange
	}
	t := now
	d.PackageID, d.PackageRecordedAt = packageID, &t
	d.Touch(now)
	return nil
}

// Schedule records the ETAs of generation gen and the route planned for
// them, from the drone's position at, and makes the delivery Scheduled; it
// returns the notice for the customer. Only a Created or Rescheduled
// delivery of that generation is scheduled, so a stage never moves
// backwards.
func (d *Delivery) Schedule(gen int, eta ETA, route *PlannedRoute, at Location, now time.Time) (Notification, error) {
	if !d.AwaitsSchedule() || d.Generation != gen {
		return Notification{}, ErrNoChange
	}
	t := now
	d.PickupETA, d.DeliveryETA = &eta.Pickup, &eta.Delivery
	d.PlannedRoute = route
	if d.LastTelemetryAt == nil {
		// Where the drone is, unless it has reported to the delivery
		// already (Track): then where its newest report put it.
		d.LastKnownLocation = &at
	}
	d.ScheduledAt = &t
	if d.Stage == StageScheduled {
		// A booked pickup: the stage said so since the booking.
		d.record(Event{Stage: d.Stage, At: d.eventTime(now), DroneID: d.DroneID, Kind: EventDispatched,
			Note: "drone " + d.DroneID + " dispatched"})
		d.Touch(now)
	} else {
		d.SetStage(StageScheduled, now, "")
	}
	return d.Notify(NotifyScheduled,
		fmt.Sprintf("A drone is on its way: pickup at %s, delivery by %s.", ClockTime(eta.Pickup, now), ClockTime(ByMinute(eta.Delivery), now)), now), nil
}

// AwaitsSchedule reports whether the ETA step may still schedule the
// delivery: it is Created or Rescheduled, or Scheduled by a booking
// (Book) whose drone has not been scheduled yet.
func (d *Delivery) AwaitsSchedule() bool {
	switch d.Stage {
	case StageCreated, StageRescheduled:
		return true
	case StageScheduled:
		return d.DispatchAt != nil && d.ScheduledAt == nil
	}
	return false
}

// Book makes generation gen of a delivery whose pickup is later than a
// drone needs to get there a booked pickup: it is Scheduled, with the ETAs
// planned, and no drone is claimed for it until dispatchAt, when dispatch
// runs for it as for any delivery. It returns the notice for the customer.
// Only a Created or Rescheduled delivery with no drone reserved is booked.
func (d *Delivery) Book(gen int, dispatchAt time.Time, eta ETA, now time.Time) (Notification, error) {
	if (d.Stage != StageCreated && d.Stage != StageRescheduled) || d.Generation != gen || d.DroneID != "" || d.DispatchAt != nil {
		return Notification{}, ErrNoChange
	}
	at := dispatchAt.UTC()
	d.DispatchAt = &at
	// A pause is judged again at the dispatch time: until then nothing
	// is dispatched for the booking for a pause to hold.
	d.HeldReason = ""
	d.PickupETA, d.DeliveryETA = &eta.Pickup, &eta.Delivery
	d.SetStage(StageScheduled, now, "pickup booked for "+eta.Pickup.Format(time.RFC3339))
	return d.Notify(NotifyScheduled, fmt.Sprintf("Your delivery is booked: pickup at %s, delivery by %s.",
		ClockTime(eta.Pickup, now), ClockTime(ByMinute(eta.Delivery), now)), now), nil
}

// AwaitDrone clears the planned times of a booked pickup (Book) whose
// dispatch found no drone free, or a pause holding its pickup (paused is
// then the pause's reason), or no route open (noRoute, the airspace's
// reason, naming the no-fly zone): they were those of a drone that is not
// coming, and a customer shown them would watch the pickup time pass with
// nothing in the air. It returns the notice that says so; the ETA step
// gives the times again, with the scheduled notice, once a drone is
// assigned. It is ErrNoChange for a delivery that is not such a booking,
// or whose times are cleared already.
func (d *Delivery) AwaitDrone(paused, noRoute string, now time.Time) (Notification, error) {
	if d.Stage != StageScheduled || d.DispatchAt == nil || d.ScheduledAt != nil || d.DroneID != "" || d.PickupETA == nil {
		return Notification{}, ErrNoChange
	}
	planned := *d.PickupETA
	d.PickupETA, d.DeliveryETA, d.PlannedRoute = nil, nil, nil
	d.Touch(now)
	why := "No drone is free yet for your pickup planned at " + ClockTime(planned, now)
	switch {
	case paused != "":
		why = "Service is paused at your pickup (" + paused + "), planned at " + ClockTime(planned, now)
	case noRoute != "":
		why = "A no-fly zone closes the way for your pickup planned at " + ClockTime(planned, now) + " (" + noRoute + ")"
	}
	then := "you will be told its new time when a drone is on its way."
	if noRoute != "" && paused == "" {
		// The zone may stay in force past the deadline.
		then = "if the way opens before your delivery's deadline, you will be told its new time when a drone is on its way."
	}
	return d.Notify(NotifyETAChanged, why+"; "+then, now), nil
}

// AwaitsDrone reports whether d is a booked pickup whose planned times
// AwaitDrone cleared: it waits for a drone, with no time to show.
func (d *Delivery) AwaitsDrone() bool {
	return d.Stage == StageScheduled && d.DispatchAt != nil && d.ScheduledAt == nil && d.DroneID == "" && d.PickupETA == nil
}

// Fail ends a delivery that no drone flies yet (one with no drone
// assigned, or one that still awaits its schedule: Created, Rescheduled or
// booked), with a reason the customer is told; any other delivery is left
// as it is. The delivery may hold a drone: the caller releases it
// (Drone.Release), so that no failure leaves a drone booked for a delivery
// that ended.
func (d *Delivery) Fail(reason string, now time.Time) (Notification, error) {
	if d.Stage.Terminal() || d.DroneAssignedAt != nil && !d.AwaitsSchedule() {
		return Notification{}, ErrNoChange
	}
	d.FailureReason = reason
	d.SetStage(StageFailed, now, reason)
	return d.Notify(NotifyFailed, "We could not deliver your package: "+reason+".", now), nil
}

// Cancel ends a delivery at its business's request. A completed or failed
// delivery cannot be cancelled (ECONFLICT); a cancelled one is unchanged.
func (d *Delivery) Cancel(now time.Time) (Notification, error) {
	switch d.Stage {
	case StageCompleted:
		return Notification{}, Errorf(ECONFLICT, "delivery %s is completed and cannot be cancelled", d.ID)
	case StageFailed:
		return Notification{}, Errorf(ECONFLICT, "delivery %s failed and cannot be cancelled", d.ID)
	case StageCancelled:
		return Notification{}, ErrNoChange
	}
	if d.PickedUpAt != nil || d.Stage == StageHeadedToDropoff {
		// Cancelling would free a drone with the package aboard; the
		// operator's abort brings it back to the sender instead.
		return Notification{}, Errorf(ECONFLICT, "delivery %s has its package on board and cannot be cancelled", d.ID)
	}
	t := now
	d.CancelledAt = &t
	d.SetStage(StageCancelled, now, "cancelled by the business")
	return d.Notify(NotifyCancelled, "Your delivery was cancelled.", now), nil
}

// Reschedule applies a change of places or times and starts a new
// generation, which dispatch and ETA run for again. A package already picked
// up, or a delivery that has ended, cannot be rescheduled (ECONFLICT). A
// change to what the request already says is ErrNoChange: no generation.
// A deadline the service set moves with a new pickup time (Apply), within
// the booking horizon (zero means DefaultMaxHorizon).
func (d *Delivery) Reschedule(change *Reschedule, now time.Time, horizon time.Duration) error {
	switch d.Stage {
	case StageHeadedToDropoff, StageCompleted, StageCancelled, StageFailed:
		return Errorf(ECONFLICT, "delivery %s is %s and cannot be rescheduled", d.ID, d.Stage)
	}
	if d.PickedUpAt != nil {
		// Its drone reported at the pickup before the delivery was
		// scheduled (Track): the package is aboard.
		return Errorf(ECONFLICT, "delivery %s has its package on board and cannot be rescheduled", d.ID)
	}
	next := d.Request
	serviceDeadline := d.serviceDeadline()
	if err := change.Apply(&next, serviceDeadline, now, horizon); err != nil {
		return err
	}
	asked := next
	if serviceDeadline && change.Deadline == nil {
		// The deadline the service sets is not the client's to repeat:
		// worked out as of now, within a horizon that moves with the
		// clock, it may differ on a retry of the same change.
		asked.Deadline = d.Request.Deadline
	}
	if sameWhereAndWhen(&asked, &d.Request) {
		// A request sent again (a client's retry after a timeout) starts
		// no new generation: no drone is released and claimed again, and
		// no customer is told twice.
		return ErrNoChange
	}
	switch {
	case change.Deadline != nil || !serviceDeadline:
		d.DeadlineBy = DeadlineByClient
	default:
		d.DeadlineBy = DeadlineByService
	}
	d.Request = next
	d.Generation++
	d.PickupETA, d.DeliveryETA, d.ScheduledAt, d.PlannedRoute, d.DispatchAt = nil, nil, nil, nil, nil
	d.SetStage(StageRescheduled, now, fmt.Sprintf("rescheduled (generation %d)", d.Generation))
	return nil
}

// serviceDeadline reports whether the service set the request's deadline
// (the client named none). A delivery stored before DeadlineBy was kept
// goes by the value: DefaultDeadline after the pickup is the default's.
func (d *Delivery) serviceDeadline() bool {
	if d.DeadlineBy != "" {
		return d.DeadlineBy == DeadlineByService
	}
	return d.Request.Deadline.Equal(d.Request.PickupTime.Add(DefaultDeadline))
}

// sameWhereAndWhen reports whether a and b agree on what a reschedule can
// change: the pickup and dropoff locations, the pickup time and the
// deadline.
func sameWhereAndWhen(a, b *DeliveryRequest) bool {
	return sameLocation(a.PickupLocation, b.PickupLocation) && sameLocation(a.DropoffLocation, b.DropoffLocation) &&
		a.PickupTime.Equal(b.PickupTime) && a.Deadline.Equal(b.Deadline)
}

func sameLocation(a, b Location) bool {
	if a.Latitude != b.Latitude || a.Longitude != b.Longitude || (a.Altitude == nil) != (b.Altitude == nil) {
		return false
	}
	return a.Altitude == nil || *a.Altitude == *b.Altitude
}

// ConfirmationRules bound a proof of delivery.
type ConfirmationRules struct {
	// RadiusKm is how far from the dropoff the recipient may confirm: GPS
	// on a phone is good to tens of metres, and a recipient may walk the
	// package indoors before confirming.
	RadiusKm float64
	// Skew is how far ahead of the service's clock a confirmation's
	// dateTime may be, for a phone whose clock runs fast.
	Skew time.Duration
}

// DefaultConfirmationRadiusKm is the ConfirmationRules radius when none is
// configured.
const DefaultConfirmationRadiusKm = 0.1

// WithDefaults fills zero fields.
func (r ConfirmationRules) WithDefaults() ConfirmationRules {
	r.RadiusKm = positiveOr(r.RadiusKm, DefaultConfirmationRadiusKm)
	r.Skew = positiveOr(r.Skew, 5*time.Minute)
	return r
}

// Confirm records the recipient's proof of delivery c, received at now, and
// notes it in the history. A delivery is confirmed once, and only once it
// is Completed (ECONFLICT otherwise); c must be of the type the delivery
// asked for, unless it asked for None, dated no later than now (give or
// take the clock skew allowed), and given within the radius of the
// dropoff (EUNPROCESSABLE otherwise, naming the field). c's distance and
// receipt time are set here.
func (d *Delivery) Confirm(c Confirmation, rules ConfirmationRules, now time.Time) error {
	rules = rules.WithDefaults()
	if d.Confirmation != nil {
		return Errorf(ECONFLICT, "delivery %s is already confirmed", d.ID)
	}
	if d.Stage != StageCompleted {
		return Errorf(ECONFLICT, "delivery %s is %s: only a Completed delivery can be confirmed", d.ID, d.Stage)
	}
	if want := d.Request.ConfirmationRequired; want != "" && want != ConfirmationNone && c.ConfirmationType != want {
		return Unprocessable("confirmationType", "must be %s, which this delivery requires", want)
	}
	if c.DateTime.After(now.Add(rules.Skew)) {
		return Unprocessable("dateTime", "must not be more than %s ahead of the service's clock (%s)", rules.Skew, now.UTC().Format(time.RFC3339))
	}
	// Nor before the package left with the drone (give or take the same
	// skew): a proof dated earlier proves nothing of this delivery.
	since := d.CreatedAt
	if d.PickedUpAt != nil {
		since = *d.PickedUpAt
	}
	if c.DateTime.Before(since.Add(-rules.Skew)) {
		return Unprocessable("dateTime", "must not be more than %s before the package was picked up (%s)", rules.Skew, since.UTC().Format(time.RFC3339))
	}
	km := DistanceKm(c.GeoCoordinates, d.Request.DropoffLocation)
	if km > rules.RadiusKm {
		return Unprocessable("geoCoordinates", "must be within %s of the dropoff; it is %s away", meters(rules.RadiusKm), meters(km))
	}
	c.DistanceMeters = math.Round(km*10000) / 10
	c.ReceivedAt = now
	d.Confirmation = &c
	at := c.GeoCoordinates
	d.record(Event{Stage: d.Stage, At: d.eventTime(now), Location: &at, Kind: EventConfirmed,
		Note: "confirmed by " + c.ConfirmationType.Describe()})
	d.Touch(now)
	return nil
}

// meters writes a distance in km as whole metres.
func meters(km float64) string { return fmt.Sprintf("%.0f m", km*1000) }

// Claim books the drone for generation gen of a delivery. A drone already
// booked for that generation is unchanged; one still held by the delivery
// from before a reschedule is kept if it can do the new job, as if it had
// been freed and claimed again. Any other drone must be Available and fit
// for req, or the error wraps ErrDroneUnavailable with the reason.
func (dr *Drone) Claim(deliveryID string, gen int, req *DeliveryRequest, now time.Time) error {
	if dr.CurrentDeliveryID == deliveryID {
		if dr.CurrentGeneration == gen {
			return ErrNoChange
		}
		probe := *dr
		probe.Status, probe.CurrentDeliveryID = DroneAvailable, ""
		if why := Unfit(&probe, req); why != "" {
			return fmt.Errorf("%w: %s", ErrDroneUnavailable, why)
		}
		dr.CurrentGeneration, dr.UpdatedAt = gen, now
		return nil
	}
	if why := Unfit(dr, req); why != "" {
		return fmt.Errorf("%w: %s", ErrDroneUnavailable, why)
	}
	dr.Status = DroneAssigned
	dr.CurrentDeliveryID = deliveryID
	dr.CurrentGeneration = gen
	dr.ClaimedAfterReport = clonePtr(dr.LastTelemetryAt)
	dr.UpdatedAt = now
	return nil
}

// FlightOf returns the delivery a telemetry report belongs to: the one the
// drone is claimed for, unless the report is dated no later than the
// newest report the drone had sent when it was claimed, which makes it a
// report of an earlier flight (or of the ground before it) that the queue
// brought late, a redelivery for instance. It returns "" when the report
// belongs to no delivery. Both times are the drone's own clock, so a
// drone whose clock lags the service's is judged alike.
func (dr *Drone) FlightOf(r Telemetry) string {
	if dr.ClaimedAfterReport != nil && !r.Timestamp.After(*dr.ClaimedAfterReport) {
		return ""
	}
	return dr.CurrentDeliveryID
}

// Release frees the drone from deliveryID (compensation for a cancel, or the
// end of a delivery). A drone that serves another delivery is unchanged.
func (dr *Drone) Release(deliveryID string, cfg TrackingConfig, now time.Time) error {
	if dr.CurrentDeliveryID != deliveryID {
		return ErrNoChange
	}
	ReleaseDrone(dr, cfg, now)
	return nil
}

// ReleaseEarlier frees the drone from a generation of deliveryID before gen,
// and leaves it booked when generation gen has claimed it again, so that a
// duplicate or concurrent run never frees a drone the new schedule holds.
func (dr *Drone) ReleaseEarlier(deliveryID string, gen int, cfg TrackingConfig, now time.Time) error {
	if dr.CurrentDeliveryID != deliveryID || dr.CurrentGeneration >= gen {
		return ErrNoChange
	}
	ReleaseDrone(dr, cfg, now)
	return nil
}

// ApplyReport moves the drone with a telemetry report. Only the newest
// report says where the drone is and what charge it has (the range follows
// the charge, SetBattery); it returns a charging drone whose battery reached
// ChargedPercent to service, and lands a recalled drone that reached its
// home base. Any report, even a late one (it may be the one that completed
// the delivery), settles the assignment, but only for deliveryID, the
// delivery the report was applied to: a concurrent report may have finished
// that one and another delivery claimed the drone since. When that delivery
// has ended (or is gone) the drone is released and freed is true; otherwise
// a drone serving it is InFlight.
func (dr *Drone) ApplyReport(r Telemetry, deliveryID string, ended bool, cfg TrackingConfig, now time.Time) (freed bool, err error) {
	changed := false
	if dr.LastTelemetryAt == nil || r.Timestamp.After(*dr.LastTelemetryAt) {
		dr.SetBattery(r.BatteryPercent, cfg)
		t := r.Timestamp
		dr.Location, dr.LastTelemetryAt = r.Location, &t
		dr.chargedByReport(cfg, now)
		dr.arriveHome(cfg, now)
		changed = true
	}
	if dr.CurrentDeliveryID != "" && dr.CurrentDeliveryID == deliveryID {
		switch {
		case ended:
			ReleaseDrone(dr, cfg, now)
			changed, freed = true, true
		case dr.Status != DroneInFlight:
			dr.Status = DroneInFlight
			changed = true
		}
	}
	if !changed {
		return false, ErrNoChange
	}
	dr.UpdatedAt = now
	return freed, nil
}

// Mark sets the status of the package carried by deliveryID (Delivered,
// Cancelled). A package another delivery has taken over, or one with that
// status already, is unchanged.
func (p *Package) Mark(deliveryID, status string, now time.Time) error {
	if p.DeliveryID != deliveryID || p.Status == status {
		return ErrNoChange
	}
	p.Status, p.UpdatedAt = status, now
	return nil
}

// Dispatchable reports whether dispatch may claim the drone: it is
// Available and serves no delivery. The stores' dispatch indexes hold
// exactly these drones.
func (dr *Drone) Dispatchable() bool {
	return dr.Status == DroneAvailable && dr.CurrentDeliveryID == ""
}

// Clone returns a copy of the drone that shares nothing a caller could
// change with the original (its pointer fields are copied too).
func (dr *Drone) Clone() *Drone {
	c := *dr
	c.Location.Altitude = clonePtr(dr.Location.Altitude)
	c.HomeBase.Altitude = clonePtr(dr.HomeBase.Altitude)
	c.LastTelemetryAt = clonePtr(dr.LastTelemetryAt)
	c.ClaimedAfterReport = clonePtr(dr.ClaimedAfterReport)
	c.ChargeDueAt = clonePtr(dr.ChargeDueAt)
	c.ResumedAt = clonePtr(dr.ResumedAt)
	return &c
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
