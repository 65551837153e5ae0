package handlers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// maxTakeoverAttempts bounds the drones one run of dispatch tries to take
// from other deliveries before the expedited delivery waits like any. A
// drone its delivery may not give up (expedited too, flying, another
// account's that holds fewer drones) is passed over without counting: the
// one that could be taken may come after several that cannot.
const maxTakeoverAttempts = 4

// preempt applies the preemption rule (domain.ChooseTakeovers) for the
// expedited delivery d, which no free drone serves by its deadline: it
// takes the drone that serves d best from a non-expedited delivery that
// has not started flying. It returns d assigned, or unchanged when no
// drone could be taken, and the messages that dispatch the delivery that
// lost its drone again and tell its customer why; they must be sent even
// when d got no drone, since that delivery may have given its drone up.
func (h *Handlers) preempt(ctx context.Context, d *domain.Delivery, now time.Time) (*domain.Delivery, []ports.Message, error) {
	plans, err := h.takeable(ctx, d, now)
	if err != nil {
		return nil, nil, err
	}
	var out []ports.Message
	for _, p := range plans {
		dr := p.Drone
		got, msgs, err := h.takeOver(ctx, d, dr.ID, domain.AreaOf(dr.HomeBase), domain.Preemption{DeliveryID: dr.CurrentDeliveryID, Generation: dr.CurrentGeneration}, now)
		out = append(out, msgs...)
		if errors.Is(err, domain.ErrDroneUnavailable) {
			h.log.InfoContext(ctx, "drone could not be taken", "droneId", dr.ID, "from", dr.CurrentDeliveryID, "err", err)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if got.DroneAssignedAt != nil && got.DroneID == dr.ID {
			h.log.InfoContext(ctx, "drone taken from a delivery that had not started flying", "droneId", dr.ID, "from", dr.CurrentDeliveryID)
		}
		return got, out, nil
	}
	return d, out, nil
}

// takeable returns the plans of the drones expedited delivery d may take
// (mayTakeFrom; never one the operator moved it off, Delivery.Avoids), best first as the preemption rule ranks them
// (domain.ChooseTakeovers), at most maxTakeoverAttempts of them: none when
// the airspace leaves d no route or no drone may be taken. It changes
// nothing.
func (h *Handlers) takeable(ctx context.Context, d *domain.Delivery, now time.Time) ([]domain.Plan, error) {
	air, lim, err := h.choiceLimits(ctx, &d.Request)
	if err != nil {
		return nil, err
	}
	plans, err := domain.ChooseTakeovers(h.st(ctx).Fleet.NearestAwaitingTakeoff(ctx, d.Request.PickupLocation), &d.Request, air, lim, now)
	if err != nil || len(plans) == 0 {
		return nil, nil // no route (waits as for a drone), or nothing to take
	}
	held := map[string]*holdings{} // by the area of the drones' home bases
	var out []domain.Plan
	for _, p := range plans {
		if len(out) >= maxTakeoverAttempts {
			break
		}
		if d.Avoids(p.Drone.ID) {
			continue // the operator moved it off that drone
		}
		area := domain.AreaOf(p.Drone.HomeBase)
		if held[area] == nil {
			held[area] = h.holdingsIn(area)
		}
		if ok, err := h.mayTakeFrom(ctx, held[area], d, p.Drone); err != nil {
			return nil, err
		} else if ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// mayTakeFrom says whether expedited delivery d may take drone dr from the
// delivery it is claimed for: never one that may not give it up
// (domain.Delivery.Preemptible: expedited too, flying, rescheduled since);
// always from its own account's (the account holds as many drones of dr's
// area after); and from another account's only while that account holds
// more of the drones based in dr's area (held) than d's does, and d's is
// under the operator's cap of them, so that marking requests expedited,
// which costs nothing, lets an account catch up with a larger one but never
// take a smaller one's drones (the fair-share order, which free drones
// follow too). A delivery that is gone no longer needs its drone.
func (h *Handlers) mayTakeFrom(ctx context.Context, held *holdings, d *domain.Delivery, dr *domain.Drone) (bool, error) {
	other, err := h.st(ctx).Deliveries.Find(ctx, dr.CurrentDeliveryID)
	if domain.ErrorCode(err) == domain.ENOTFOUND {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if other.Preemptible(dr.ID, dr.CurrentGeneration) != "" {
		return false, nil
	}
	if other.OwnerID == d.OwnerID {
		return true, nil // the account holds as many drones of dr's area after
	}
	mine, err := held.of(ctx, d.OwnerID)
	if err != nil {
		return false, err
	}
	// One more drone of the area's for the account: never past the
	// operator's cap (Config.MaxAccountShare), as for a free drone.
	limit, err := h.shareLimit(ctx, held.area)
	if err != nil || (limit > 0 && mine >= limit) {
		return false, err
	}
	theirs, err := held.of(ctx, other.OwnerID)
	if err != nil {
		return false, err
	}
	return theirs > mine, nil
}

// takeOver takes droneID, which awaits takeoff for the delivery p names,
// for the expedited delivery d, in the order that a run stopped anywhere
// can finish: d reserves the drone, noting p (ReserveTakeover); that
// delivery gives the drone up (Preempt: a new generation, Rescheduled);
// the drone is handed over (TakeOver, a conditional write); d records the
// assignment. It returns an error wrapping domain.ErrDroneUnavailable
// when the drone cannot be had, after dropping the reservation, and, once
// the other delivery has given the drone up, the messages that dispatch
// it again and tell its customer, whether or not d got the drone.
func (h *Handlers) takeOver(ctx context.Context, d *domain.Delivery, droneID, droneArea string, p domain.Preemption, now time.Time) (*domain.Delivery, []ports.Message, error) {
	st := h.st(ctx)
	reserved, err := st.Deliveries.Update(ctx, d.ID, func(cur *domain.Delivery) error {
		return cur.ReserveTakeover(droneID, droneArea, p, now)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("reserve drone %s: %w", droneID, err)
	}
	if reserved.DroneAssignedAt != nil || reserved.Stage.Terminal() {
		return reserved, nil, nil
	}
	if reserved.DroneID != droneID || reserved.Preempted == nil || *reserved.Preempted != p {
		// Another delivery of this message holds a reservation: finish that one.
		if reserved.Preempted == nil {
			got, err := h.claim(ctx, reserved, reserved.DroneID, reserved.DroneArea, now)
			return got, nil, err
		}
		return h.takeOver(ctx, reserved, reserved.DroneID, reserved.DroneArea, *reserved.Preempted, now)
	}
	drop := func(cause error) (*domain.Delivery, []ports.Message, error) {
		if _, err := st.Deliveries.Update(ctx, d.ID, func(cur *domain.Delivery) error {
			return cur.DropReservation(droneID, now)
		}); err != nil {
			return nil, nil, fmt.Errorf("release reservation of drone %s: %w", droneID, err)
		}
		return nil, nil, cause
	}

	// The drone must still await takeoff for that delivery: one that has
	// reported since (the delivery may not show it yet, when it was not
	// yet Scheduled) is left alone.
	if dr, err := st.Fleet.Find(ctx, droneID); err != nil && !domain.IsCode(err, domain.ENOTFOUND) {
		return nil, nil, fmt.Errorf("find drone %s: %w", droneID, err)
	} else if err != nil || !takeable(dr, p, d.ID, reserved.Generation) {
		return drop(fmt.Errorf("%w: drone %s no longer awaits takeoff for delivery %s", domain.ErrDroneUnavailable, droneID, p.DeliveryID))
	}

	// The delivery that holds the drone gives it up first: once it has,
	// no report can move it on (Track takes no Rescheduled delivery), so
	// the drone cannot be taken from a delivery that started flying.
	var notes []domain.Notification
	victim, err := st.Deliveries.Update(ctx, p.DeliveryID, func(cur *domain.Delivery) error {
		notes = nil
		n, err := cur.Preempt(p.Generation, droneID, d.ID, now)
		if err == nil {
			notes = append(notes, n)
		}
		return err
	})
	if errors.Is(err, domain.ErrNotPreemptible) || domain.IsCode(err, domain.ENOTFOUND) {
		// Unless an earlier run already took the drone and the other
		// delivery has moved on since, the drone stays where it is.
		dr, ferr := st.Fleet.Find(ctx, droneID)
		if ferr != nil || dr.CurrentDeliveryID != d.ID || dr.CurrentGeneration != reserved.Generation {
			return drop(fmt.Errorf("%w: %v", domain.ErrDroneUnavailable, err))
		}
		victim, err = nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("take drone %s from delivery %s: %w", droneID, p.DeliveryID, err)
	}
	var out []ports.Message
	if victim != nil && victim.PreemptedBy == d.ID && victim.Generation == p.Generation+1 {
		if notes == nil {
			notes = lastNotificationOfKind(victim, domain.NotifyPreempted)
		}
		out = append(notifyMessages(victim, notes), redispatchMessage(victim))
	}

	gen := reserved.Generation
	_, err = st.Fleet.Update(ctx, droneID, func(dr *domain.Drone) error {
		return dr.TakeOver(p.DeliveryID, p.Generation, d.ID, gen, &reserved.Request, now)
	})
	if domain.IsCode(err, domain.ENOTFOUND) {
		err = fmt.Errorf("%w: drone %s is gone", domain.ErrDroneUnavailable, droneID)
	}
	if errors.Is(err, domain.ErrDroneUnavailable) {
		// The delivery gave the drone up, but a report made it fly first:
		// its new dispatch gives it back (ReleaseEarlier) and finds it a
		// drone, so out is sent all the same.
		_, _, derr := drop(err)
		return nil, out, derr
	}
	if err != nil {
		return nil, nil, fmt.Errorf("take over drone %s: %w", droneID, err)
	}

	got, err := st.Deliveries.Update(ctx, d.ID, func(cur *domain.Delivery) error {
		return cur.RecordTakeover(droneID, now)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("record assignment of drone %s: %w", droneID, err)
	}
	if got.Stage.Terminal() && got.DroneAssignedAt == nil {
		// Cancelled while the drone was being taken: give it back.
		return got, out, h.releaseDrone(ctx, got)
	}
	return got, out, nil
}

// redispatchMessage sends a delivery that lost its drone to an expedited
// one back to dispatch, in its new generation.
func redispatchMessage(d *domain.Delivery) ports.Message {
	return message(topology.QueueDeliveryRequests, "preempted",
		wire.Envelope{Operation: wire.OpDelivery, DeliveryID: d.ID, CorrelationID: d.CorrelationID, Generation: d.Generation})
}

// preemptedMessages are, for a delivery assigned a drone taken from
// another delivery, the messages that dispatch that one again and tell
// its customer, as the run that took the drone sent them; none for any
// other delivery, or once that one has moved on.
func (h *Handlers) preemptedMessages(ctx context.Context, d *domain.Delivery) ([]ports.Message, error) {
	p := d.Preempted
	if p == nil {
		return nil, nil
	}
	victim, err := h.st(ctx).Deliveries.Find(ctx, p.DeliveryID)
	if domain.IsCode(err, domain.ENOTFOUND) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find delivery %s: %w", p.DeliveryID, err)
	}
	if victim.PreemptedBy != d.ID || victim.Generation != p.Generation+1 {
		return nil, nil
	}
	return append(notifyMessages(victim, lastNotificationOfKind(victim, domain.NotifyPreempted)), redispatchMessage(victim)), nil
}

// takeable reports whether drone dr may be taken for generation gen of
// delivery to from the delivery p names: it awaits takeoff for that
// generation of it, or an earlier run already took it.
func takeable(dr *domain.Drone, p domain.Preemption, to string, gen int) bool {
	if dr.CurrentDeliveryID == to && dr.CurrentGeneration == gen {
		return true
	}
	return dr.AwaitsTakeoff() && dr.CurrentDeliveryID == p.DeliveryID && dr.CurrentGeneration == p.Generation
}

// lastNotificationOfKind is the newest of d's notifications of one kind,
// if any.
func lastNotificationOfKind(d *domain.Delivery, kind string) []domain.Notification {
	ns := notificationsOfKind(d, kind)
	if len(ns) == 0 {
		return nil
	}
	return ns[len(ns)-1:]
}
