package domain

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// The operator's actions on a drone in service and on a delivery
// (docs/operating.md#operator-actions). Each is a named state change like
// those in transitions.go: ErrNoChange when it was already made, an error
// saying why when it may not be.

// DroneAction is what the operator does to a drone.
type DroneAction string

// The drone actions.
const (
	// ActionGround takes a drone out of service (Maintenance) where it is.
	ActionGround DroneAction = "ground"
	// ActionRecall sends a drone back to its home base; it is Available
	// (or Charging) again once a report places it there, or at once when
	// it is there already.
	ActionRecall DroneAction = "recall"
	// ActionResume puts a grounded drone back in service where it is, with
	// the battery it last reported (Resume).
	ActionResume DroneAction = "resume"
	// ActionCharge puts an idle drone on charge where it is (Charge).
	ActionCharge DroneAction = "charge"
)

// TakesTheDrone reports whether the action takes the drone off the
// delivery it serves (ground, recall), which is then handed on.
func (a DroneAction) TakesTheDrone() bool { return a == ActionGround || a == ActionRecall }

// ResumedSince reports whether the operator put the drone back in service
// after at: a ground or recall asked at at is then over, and its late
// repeat must not take the drone out of service again.
func (dr *Drone) ResumedSince(at time.Time) bool {
	return dr.ResumedAt != nil && !at.IsZero() && dr.ResumedAt.After(at)
}

// DeliveryAction is what the operator does to a delivery.
type DeliveryAction string

// The delivery actions.
const (
	// ActionReassign hands the delivery on to another drone.
	ActionReassign DeliveryAction = "reassign"
	// ActionAbort ends the delivery: Failed, or returned to the sender.
	ActionAbort DeliveryAction = "abort"
)

// AbortOutcome is what becomes of an aborted delivery's package.
type AbortOutcome string

// The outcomes of an abort. Both end the delivery in stage Failed; the
// delivery's Outcome tells them apart.
const (
	OutcomeFailed           AbortOutcome = "failed"
	OutcomeReturnedToSender AbortOutcome = "returnedToSender"
)

// EventOperator is the Kind of a history event that records an operator's
// action: By says who, At when, Note why.
const EventOperator = "operator-action"

// NotifyReassigned is the kind of the notice a customer gets when their
// delivery moves to another drone.
const NotifyReassigned = "reassigned"

// OperatorAction is one action as the delivery's history audits it.
type OperatorAction struct {
	Name     string // ground, recall, reassign, abort
	By       string // who: "operator", for the operator key
	Reason   string
	ActionID string // the caller's id of the action, if it gave one
}

// Ground takes the drone out of service where it is (Maintenance) even when
// it serves a delivery, and returns that delivery and the generation the
// drone was claimed for, which the caller hands on (Delivery.HandOver). A
// drone on charge keeps the charge it took so far (release). A drone
// flying home on a recall goes on home and stays grounded there, as a
// grounded drone recalled does. A drone already grounded is unchanged.
func (dr *Drone) Ground(reason string, cfg TrackingConfig, now time.Time) (deliveryID string, gen int, err error) {
	switch {
	case dr.Status == DroneMaintenance && dr.CurrentDeliveryID == "" && !dr.Recalled,
		dr.Grounded && dr.Recalled && dr.CurrentDeliveryID == "":
		return "", 0, ErrNoChange
	case dr.Recalled && dr.CurrentDeliveryID == "":
		dr.Grounded, dr.StatusReason, dr.UpdatedAt = true, reason, now
		return "", 0, nil
	}
	deliveryID, gen = dr.release(DroneMaintenance, false, reason, cfg, now)
	dr.Grounded = true
	return deliveryID, gen, nil
}

// Resume puts a grounded drone back in service where it is, keeping the
// battery and the position its reports gave it (a put of the whole drone
// would set what it leaves out: a full battery, the home base): Available,
// or Charging below LowBatteryPercent. A grounded drone flying home on a
// recall lands in service there. A drone not grounded is unchanged.
func (dr *Drone) Resume(reason string, cfg TrackingConfig, now time.Time) error {
	if !dr.Grounded && dr.Status != DroneMaintenance {
		return ErrNoChange
	}
	t := now
	dr.Grounded, dr.ResumedAt = false, &t
	dr.StatusReason, dr.UpdatedAt = reason, now
	if !dr.Recalled { // a recalled one lands in service at home (arriveHome)
		dr.serve(cfg, now)
	}
	return nil
}

// serve puts the drone in service: Available, or Charging when its battery
// is under LowBatteryPercent (StartCharging).
func (dr *Drone) serve(cfg TrackingConfig, now time.Time) {
	dr.Status, dr.ChargeDueAt = DroneAvailable, nil
	if dr.BatteryPercent < cfg.WithDefaults().LowBatteryPercent {
		dr.StartCharging(cfg, now)
	}
}

// Charge puts an idle Available drone on charge where it is, until its
// battery reaches ChargedPercent (StartCharging): the end of a delivery
// charges only a drone under LowBatteryPercent, so one left at 30 % may
// lack the range for a long trip, or for its way home, until the operator
// charges it. A drone charging already, or charged, is unchanged; one that
// serves a delivery, is grounded, retired or flying is not put on charge
// (ECONFLICT).
func (dr *Drone) Charge(reason string, cfg TrackingConfig, now time.Time) error {
	cfg = cfg.WithDefaults()
	switch {
	case dr.Status == DroneCharging:
		return ErrNoChange
	case dr.Status != DroneAvailable || dr.CurrentDeliveryID != "" || dr.Recalled:
		return Errorf(ECONFLICT, "drone %s is %s; only an idle Available drone is put on charge", dr.ID, dr.Status)
	case dr.BatteryPercent >= cfg.ChargedPercent:
		// Nothing to do, and a 202 would read as done: say why.
		return Errorf(ECONFLICT, "drone %s is charged already (%g %%; a charge stops at %g %%)", dr.ID, dr.BatteryPercent, cfg.ChargedPercent)
	}
	dr.StatusReason = reason
	dr.StartCharging(cfg, now)
	return nil
}

// Recall sends the drone home even when it serves a delivery, which it
// returns with the generation the drone was claimed for, for the caller to
// hand on. The drone flies (InFlight) until a report places it at its
// home base (ApplyReport); a grounded drone stays grounded there. A drone
// that is at its home base already has arrived, and lands at once as that
// report would land it: a drone parked there may never report again. A
// drone already recalled is unchanged, and so is one parked at home that
// the recall would leave as it is.
//
// from is the delivery the recall was asked to take off the drone (none
// when empty). A drone at home serving another delivery keeps it
// (ErrNoChange): dispatch claimed it after the recall was asked for, which
// the action's queued repeat can find since the recall freed the drone at
// once, and recalled there it would only land for dispatch to claim again.
func (dr *Drone) Recall(reason, from string, cfg TrackingConfig, now time.Time) (deliveryID string, gen int, err error) {
	switch {
	case dr.Recalled && dr.CurrentDeliveryID == "":
		return "", 0, ErrNoChange
	case dr.CurrentDeliveryID != "" && dr.CurrentDeliveryID != from && dr.atHome(cfg):
		return "", 0, ErrNoChange
	}
	next := dr.Clone()
	deliveryID, gen = next.release(DroneInFlight, true, reason, cfg, now)
	next.arriveHome(cfg, now)
	if dr.Status == DroneCharging && !next.Recalled && next.Status != DroneMaintenance {
		// At home already, the charge under way goes on (one the operator
		// started above LowBatteryPercent too); its check is scheduled
		// already.
		next.Status, next.ChargeDueAt = DroneCharging, clonePtr(dr.ChargeDueAt)
	}
	if deliveryID == "" && !next.Recalled && next.Status == dr.Status && next.StatusReason == dr.StatusReason &&
		equalTimes(next.ChargeDueAt, dr.ChargeDueAt) {
		return "", 0, ErrNoChange
	}
	*dr = *next
	return deliveryID, gen, nil
}

// release takes the drone off whatever it serves for an operator's action:
// it puts the drone in status, recalled or not, for reason, and returns
// the delivery it held and the generation it was claimed for. A drone
// taken off its charge keeps what the charge gave it so far (ChargedBy).
func (dr *Drone) release(status DroneStatus, recalled bool, reason string, cfg TrackingConfig, now time.Time) (deliveryID string, gen int) {
	if dr.Status == DroneCharging {
		dr.SetBattery(dr.ChargedBy(cfg, now), cfg)
	}
	deliveryID, gen = dr.CurrentDeliveryID, dr.CurrentGeneration
	dr.Status, dr.CurrentDeliveryID, dr.Recalled, dr.ChargeDueAt = status, "", recalled, nil
	dr.ClaimedAfterReport = nil
	dr.StatusReason, dr.UpdatedAt = reason, now
	return deliveryID, gen
}

// atHome reports whether the drone's last known position is at its home
// base, as close as a report must be to arrive there.
func (dr *Drone) atHome(cfg TrackingConfig) bool {
	return DistanceKm(dr.Location, dr.HomeBase) <= cfg.WithDefaults().ArrivalRadiusKm
}

// arriveHome lands a recalled drone that is at its home base, whether a
// report placed it there or the recall found it there: Available, or
// Charging when its battery is low; a grounded one stays in Maintenance
// with its reason.
func (dr *Drone) arriveHome(cfg TrackingConfig, now time.Time) {
	cfg = cfg.WithDefaults()
	if !dr.Recalled || dr.CurrentDeliveryID != "" || !dr.atHome(cfg) {
		return
	}
	dr.Recalled = false
	if dr.Grounded {
		dr.Status = DroneMaintenance
		return
	}
	dr.StatusReason = ""
	dr.serve(cfg, now)
}

// equalTimes reports whether a and b are both unset or the same instant.
func equalTimes(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

// noteReassignedFrom adds droneID to ReassignedFrom, keeping the last
// MaxReassignedFrom. A delivery stored before ReassignedFrom was kept
// starts it from the reassigns its history holds.
func (d *Delivery) noteReassignedFrom(droneID string) {
	if d.ReassignedFrom == nil {
		for _, e := range d.History {
			if name, _, _ := strings.Cut(e.Note, ": "); e.Kind == EventOperator && name == string(ActionReassign) && e.DroneID != "" && e.DroneID != droneID &&
				!slices.Contains(d.ReassignedFrom, e.DroneID) {
				d.ReassignedFrom = append(d.ReassignedFrom, e.DroneID)
			}
		}
	}
	if !slices.Contains(d.ReassignedFrom, droneID) {
		d.ReassignedFrom = append(d.ReassignedFrom, droneID)
	}
	d.ReassignedFrom = d.ReassignedFrom[max(0, len(d.ReassignedFrom)-MaxReassignedFrom):]
}

// MaxReassignedFrom bounds the drones a delivery keeps as reassigned away
// from (Delivery.ReassignedFrom).
const MaxReassignedFrom = 8

// HandOver takes the delivery off droneID, which held it for generation
// gen and was grounded or recalled (or is being replaced, for a reassign),
// and sends it back to dispatch as a new generation that will not take
// that drone again. A package already aboard cannot change drones: the
// delivery then ends as returned to the sender (the customer is told why
// without the drone's id, which the history keeps). It returns the notice for
// the customer and whether the delivery goes back to dispatch. A delivery
// no longer held by droneID in generation gen (handed on already, or
// ended) is unchanged.
func (d *Delivery) HandOver(droneID string, gen int, a OperatorAction, now time.Time) (n Notification, redispatch bool, err error) {
	if d.Stage.Terminal() || d.DroneID != droneID || d.Generation != gen {
		return Notification{}, false, ErrNoChange
	}
	d.audit(a, droneID, now)
	if d.PickedUpAt != nil {
		n, err := d.end(OutcomeReturnedToSender, fmt.Sprintf("its drone was %s with the package aboard (%s)", pastTense(a.Name), a.Reason), now)
		return n, false, err
	}
	if a.Name == string(ActionReassign) {
		d.noteReassignedFrom(droneID)
	}
	d.redispatch(droneID, now, fmt.Sprintf("handed on from drone %s: %s", droneID, a.Reason))
	return d.Notify(NotifyReassigned, "Your delivery is moving to another drone: "+a.Reason+".", now), true, nil
}

// Reassign hands the delivery on from the drone that holds it to another
// one (HandOver). A delivery whose package is aboard, or one that has
// ended, or one with no drone yet (dispatch gives it one), cannot be
// reassigned (ECONFLICT); the same action again (a.ActionID seen before, or a
// reassign while the one before it still hands the delivery on from its
// drone) changes nothing (ErrNoChange all).
func (d *Delivery) Reassign(a OperatorAction, now time.Time) (Notification, error) {
	if err := d.actionSeen(a); err != nil {
		return Notification{}, err
	}
	switch {
	case d.Stage.Terminal():
		return Notification{}, Errorf(ECONFLICT, "delivery %s is %s and cannot be reassigned", d.ID, d.Stage)
	case d.PickedUpAt != nil:
		return Notification{}, Errorf(ECONFLICT, "delivery %s has its package aboard drone %s; abort it instead", d.ID, d.DroneID)
	case d.DroneID == "" && d.reassignedWithoutDroneSince():
		// Handed on by a reassign, and dispatch has found no drone since:
		// the same reassign again (sent twice, without an actionId).
		return Notification{}, ErrNoChange
	case d.DroneID == "":
		// Nothing to hand on: dispatch gives it a drone anyway. A 202 would
		// tell the operator something happened that did not, with nothing
		// in its history.
		return Notification{}, Errorf(ECONFLICT, "delivery %s has no drone to reassign from yet; dispatch assigns it one (abort it to stop it)", d.ID)
	case d.DroneID == d.AvoidDroneID && d.DroneAssignedAt != nil && !d.DroneAssignedAt.After(d.handedOverAt()):
		// Handed on from this drone already, and not given a drone again
		// since: the same reassign again (sent twice, without an actionId).
		return Notification{}, ErrNoChange
	}
	n, _, err := d.HandOver(d.DroneID, d.Generation, a, now)
	return n, err
}

// Abort ends a delivery that has not ended, in flight or not, as outcome
// says, with the operator's reason, and returns the notice for the
// customer; the caller releases its drone. A completed or cancelled
// delivery cannot be aborted (ECONFLICT); a failed one, or the same action
// again, is ErrNoChange: its answer shows the outcome it ended with.
func (d *Delivery) Abort(outcome AbortOutcome, a OperatorAction, now time.Time) (Notification, error) {
	if err := d.actionSeen(a); err != nil {
		return Notification{}, err
	}
	switch {
	case d.Stage == StageFailed:
		return Notification{}, ErrNoChange
	case d.Stage == StageCompleted || d.Stage == StageCancelled:
		return Notification{}, Errorf(ECONFLICT, "delivery %s is %s and cannot be aborted", d.ID, d.Stage)
	}
	d.audit(a, d.DroneID, now)
	return d.end(outcome, a.Reason, now)
}

// end makes the delivery Failed with outcome and reason.
func (d *Delivery) end(outcome AbortOutcome, reason string, now time.Time) (Notification, error) {
	d.FailureReason, d.Outcome = reason, outcome
	msg := "We could not deliver your package: " + reason + "."
	if outcome == OutcomeReturnedToSender {
		d.SetStage(StageFailed, now, "returned to sender: "+reason)
		msg = "Your package is being returned to the sender: " + reason + "."
	} else {
		d.SetStage(StageFailed, now, reason)
	}
	return d.Notify(NotifyFailed, msg, now), nil
}

// redispatch starts a new generation that dispatch runs for again, leaving
// out the drone avoid.
func (d *Delivery) redispatch(avoid string, now time.Time, note string) {
	d.Generation++
	d.AvoidDroneID = avoid
	d.PickupETA, d.DeliveryETA, d.ScheduledAt, d.PlannedRoute, d.DispatchAt = nil, nil, nil, nil, nil
	d.SetStage(StageRescheduled, now, note)
}

// audit records an operator's action in the history.
func (d *Delivery) audit(a OperatorAction, droneID string, now time.Time) {
	d.record(Event{Stage: d.Stage, At: d.eventTime(now), DroneID: droneID, Kind: EventOperator,
		Note: a.Name + ": " + a.Reason, By: a.By, ActionID: a.ActionID})
	d.Touch(now)
}

// EndedWithPackageAboard reports whether the delivery failed (an abort, or
// its drone grounded or recalled) after its package was picked up: the
// drone that held it carries the package home rather than back into
// service.
func (d *Delivery) EndedWithPackageAboard() bool {
	return d.Stage == StageFailed && d.PickedUpAt != nil
}

// Avoids reports whether dispatch is never to give the delivery drone id
// while other drones are to be had: the drone it was last handed on from
// (AvoidDroneID) or one it was reassigned away from (ReassignedFrom).
func (d *Delivery) Avoids(id string) bool {
	return id == d.AvoidDroneID || slices.Contains(d.ReassignedFrom, id)
}

// handedOverAt is when the delivery was last handed on from AvoidDroneID:
// the time of the operator's action on that drone in the history (zero
// when there is none, or the history no longer holds it).
func (d *Delivery) handedOverAt() time.Time {
	if e, ok := d.handOver(); ok {
		return e.At
	}
	return time.Time{}
}

// reassignedWithoutDroneSince reports whether the last thing that happened
// to the delivery was a reassign (its operator event, then at most the
// stage it set): no drone assigned since, no preemption or reschedule.
func (d *Delivery) reassignedWithoutDroneSince() bool {
	n := len(d.History)
	for i := n - 1; i >= 0 && i >= n-2; i-- {
		e := d.History[i]
		if e.Kind == EventOperator {
			return e.DroneID == d.AvoidDroneID && strings.HasPrefix(e.Note, string(ActionReassign)+": ") &&
				(d.DroneAssignedAt == nil || !d.DroneAssignedAt.After(e.At))
		}
	}
	return false
}

// NeverGiven lists the drones dispatch never gives the delivery, however
// few others there are: those it was reassigned away from, and the one it
// was last handed on from unless the operator only took that drone out of
// service (AvoidsItsDroneOnlyWhileOut), which it may have back once the
// drone is in service again and no other serves it.
func (d *Delivery) NeverGiven() []string {
	ids := slices.Clone(d.ReassignedFrom)
	if d.AvoidDroneID != "" && !d.AvoidsItsDroneOnlyWhileOut() && !slices.Contains(ids, d.AvoidDroneID) {
		ids = append(ids, d.AvoidDroneID)
	}
	return ids
}

// handOver is the history's last operator action on AvoidDroneID.
func (d *Delivery) handOver() (Event, bool) {
	if d.AvoidDroneID == "" {
		return Event{}, false
	}
	for _, e := range slices.Backward(d.History) {
		if e.Kind == EventOperator && e.DroneID == d.AvoidDroneID {
			return e, true
		}
	}
	return Event{}, false
}

// AvoidsItsDroneOnlyWhileOut reports whether the delivery was last handed
// on from AvoidDroneID because the operator took that drone out (ground,
// recall), not the delivery off it (reassign): once the drone is back in
// service (resumed, or landed at home), dispatch may give it the delivery
// again when no other drone serves it. False when the history no longer
// holds the hand-over.
func (d *Delivery) AvoidsItsDroneOnlyWhileOut() bool {
	e, ok := d.handOver()
	name, _, _ := strings.Cut(e.Note, ": ")
	return ok && DroneAction(name).TakesTheDrone() && !slices.Contains(d.ReassignedFrom, d.AvoidDroneID)
}

// actionSeen returns ErrNoChange when the history holds action a under
// its actionId already (the same action again), an ECONFLICT naming
// actionId when the id was given to another action, and nil when it is new
// (or none was given).
func (d *Delivery) actionSeen(a OperatorAction) error {
	if a.ActionID == "" {
		return nil
	}
	for _, e := range d.History {
		if e.Kind != EventOperator || e.ActionID != a.ActionID {
			continue
		}
		if name, _, _ := strings.Cut(e.Note, ": "); name != "" && name != a.Name {
			return &Error{Code: ECONFLICT, Field: "actionId", Message: fmt.Sprintf("%s names a %s of this delivery already", a.ActionID, name)}
		}
		return ErrNoChange
	}
	return nil
}

func pastTense(action string) string {
	switch action {
	case string(ActionGround):
		return "grounded"
	case string(ActionRecall):
		return "recalled"
	case string(ActionResume), string(ActionCharge):
		return action + "d"
	}
	return action + "ed"
}
