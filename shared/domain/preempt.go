package domain

import (
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"
)

// The preemption rule. An expedited delivery that no free drone can serve
// by its deadline (Choose finds none) may take the drone of a
// non-expedited delivery that has not started flying. Of the drones that
// could be taken, it takes the one that serves it best by the dispatch
// rule (the earliest delivery ETA that meets its deadline, then the
// nearest), judged as if that drone were free where it stands.
//
// "Not started flying" is what the code can tell for certain:
//   - the drone is Assigned (AwaitsTakeoff): Drone.Claim makes it so, and
//     the first telemetry report applied for its delivery
//     (Drone.ApplyReport) makes it InFlight, which nothing turns back into
//     Assigned; so no report of the drone has been applied to that
//     delivery since the claim;
//   - its delivery is not expedited, holds that drone in the generation
//     that claimed it, and is Created, Scheduled or Rescheduled, with its
//     package not picked up (Track moves a Scheduled delivery to
//     HeadedToPickup on its first report).
//
// A pickup booked ahead holds no drone before its dispatch time, so there
// is nothing to take from it before then; once dispatched it is like any
// other delivery. An expedited delivery never loses its drone.
//
// The delivery that loses its drone starts a new generation, Rescheduled,
// as after a reschedule (Preempt): dispatch runs for it again under the
// same rules, its customer is told why, and its old drone, which it still
// names, is given back by that run only if it still serves it. Its own
// deadline is not weighed: an expedited delivery comes first even when the
// other then waits past its deadline and fails.

// ErrNotPreemptible says a delivery may not lose its drone to an
// expedited delivery: it is expedited, flying, ended, or no longer holds
// that drone.
var ErrNotPreemptible = errors.New("delivery's drone cannot be taken")

// Preemption names the delivery an expedited delivery took its drone
// from, and the generation of that delivery which had claimed it.
type Preemption struct {
	DeliveryID string `json:"deliveryId"`
	Generation int    `json:"generation"`
}

// EventPreempted is the Kind of the history event of an expedited
// delivery's drone taken from a delivery that had not started flying.
const EventPreempted = "preempted"

// NotifyPreempted is the notification kind of a delivery whose drone went
// to an expedited delivery.
const NotifyPreempted = "preempted"

// AwaitsTakeoff reports whether the drone is claimed for a delivery and
// no telemetry report has been applied to that delivery since: it is
// Assigned. Such a drone may be taken by an expedited delivery (see the
// preemption rule).
func (dr *Drone) AwaitsTakeoff() bool {
	return dr.Status == DroneAssigned && dr.CurrentDeliveryID != ""
}

// ChooseTakeovers applies the preemption rule's choice to candidates,
// which yields drones awaiting takeoff (AwaitsTakeoff) with their
// straight-line distance from req's pickup, nearest first. It returns the
// plans of those that would serve req by its deadline, each judged as if
// free where it stands, best first by the dispatch rule; at most
// lim.MaxEligible of them. The walk ends at lim.RadiusKm, and once even
// the fastest drone able to carry the package could not reach the pickup
// from the next candidate's distance and deliver by the deadline. The
// deliveries the drones serve are not judged here (Delivery.Preemptible).
func ChooseTakeovers(candidates iter.Seq2[*Drone, float64], req *DeliveryRequest, air Airspace, lim ChoiceLimits, now time.Time) ([]Plan, error) {
	air, lim, leg, err := startChoice(req, air, lim, now)
	if err != nil {
		return nil, err
	}
	var plans []Plan
	for d, km := range candidates {
		if lim.RadiusKm > 0 && km > lim.RadiusKm {
			break
		}
		if lim.MaxSpeedMps > 0 && RoutedETA(now, km, leg.Km, lim.MaxSpeedMps, req.PickupTime).Delivery.After(req.Deadline) {
			break
		}
		if !d.AwaitsTakeoff() {
			continue
		}
		free := *d
		free.Status, free.CurrentDeliveryID, free.CurrentGeneration = DroneAvailable, "", 0
		p, why := PlanFor(&free, km, req, air, leg, now)
		if why != "" {
			continue
		}
		p.Drone = d
		plans = append(plans, p)
		if len(plans) >= lim.MaxEligible {
			break
		}
	}
	slices.SortStableFunc(plans, func(a, b Plan) int {
		if c := a.ETA.Delivery.Compare(b.ETA.Delivery); c != 0 {
			return c
		}
		switch {
		case a.Km < b.Km:
			return -1
		case a.Km > b.Km:
			return 1
		}
		return 0
	})
	return plans, nil
}

// Preemptible says why the delivery may not lose drone droneID, claimed by
// its generation gen, to an expedited delivery, or returns "" when it may
// (see the preemption rule; whether the drone has reported is the
// drone's to say, AwaitsTakeoff).
func (d *Delivery) Preemptible(droneID string, gen int) string {
	switch {
	case d.Request.Expedited:
		return "it is expedited"
	case d.Generation != gen:
		return fmt.Sprintf("it was rescheduled since (generation %d, the drone serves %d)", d.Generation, gen)
	case d.DroneID != droneID || d.DroneAssignedAt == nil:
		return "it does not hold drone " + droneID
	case d.PickedUpAt != nil:
		return "its package is picked up"
	}
	switch d.Stage {
	case StageCreated, StageScheduled, StageRescheduled:
		return ""
	}
	return "it is " + string(d.Stage)
}

// Preempt gives up the drone generation gen of a non-expedited delivery
// holds, which has not started flying, to the expedited delivery by: it
// starts generation gen+1, Rescheduled, which dispatch runs for again as
// after a reschedule (the drone, which the delivery still names, becomes
// its PreviousDroneID there, and is given back only if it still serves
// the delivery). It returns the notice for the customer. A delivery
// already preempted by by from gen is unchanged (ErrNoChange); one that
// may not be preempted returns an error wrapping ErrNotPreemptible.
func (d *Delivery) Preempt(gen int, droneID, by string, now time.Time) (Notification, error) {
	if d.PreemptedBy == by && d.Generation == gen+1 {
		return Notification{}, ErrNoChange
	}
	if why := d.Preemptible(droneID, gen); why != "" {
		return Notification{}, fmt.Errorf("%w: %s", ErrNotPreemptible, why)
	}
	d.Generation++
	d.PreemptedBy = by
	d.PickupETA, d.DeliveryETA, d.ScheduledAt, d.PlannedRoute, d.DispatchAt = nil, nil, nil, nil, nil
	d.SetStage(StageRescheduled, now, "drone "+droneID+" was given to an expedited delivery before it took off; waiting for another drone")
	return d.Notify(NotifyPreempted, "The drone booked for your delivery was needed for an urgent delivery before it took off; we are finding you another one.", now), nil
}

// ReserveTakeover is Reserve for a drone that is taken from the delivery
// p names (the preemption rule): the reservation remembers it, so that a
// run that stopped half-way finishes taking the drone, and the delivery
// that lost it is dispatched again.
func (d *Delivery) ReserveTakeover(droneID, droneArea string, p Preemption, now time.Time) error {
	if err := d.Reserve(droneID, droneArea, now); err != nil {
		return err
	}
	d.Preempted = &p
	return nil
}

// RecordTakeover is RecordAssignment for a drone taken from another
// delivery; it notes in the history whose drone it was.
func (d *Delivery) RecordTakeover(droneID string, now time.Time) error {
	if err := d.RecordAssignment(droneID, now); err != nil {
		return err
	}
	if d.Preempted != nil {
		d.record(Event{Stage: d.Stage, At: d.eventTime(now), DroneID: droneID, Kind: EventPreempted,
			Note: "drone " + droneID + " taken from a delivery that had not started flying"})
	}
	return nil
}

// TakeOver books the drone, which awaits takeoff for generation fromGen of
// delivery from, for generation gen of delivery to instead, if it can
// serve req. A drone already booked for that generation of to is
// unchanged (ErrNoChange). A drone that no longer awaits takeoff for
// from, but is free, is claimed as Claim does; any other is unavailable
// (an error wrapping ErrDroneUnavailable).
func (dr *Drone) TakeOver(from string, fromGen int, to string, gen int, req *DeliveryRequest, now time.Time) error {
	if dr.CurrentDeliveryID == to && dr.CurrentGeneration == gen {
		return ErrNoChange
	}
	if !dr.AwaitsTakeoff() || dr.CurrentDeliveryID != from || dr.CurrentGeneration != fromGen {
		return dr.Claim(to, gen, req, now)
	}
	free := *dr
	free.Status, free.CurrentDeliveryID = DroneAvailable, ""
	if why := Unfit(&free, req); why != "" {
		return fmt.Errorf("%w: %s", ErrDroneUnavailable, why)
	}
	dr.CurrentDeliveryID, dr.CurrentGeneration, dr.UpdatedAt = to, gen, now
	dr.ClaimedAfterReport = clonePtr(dr.LastTelemetryAt)
	return nil
}
