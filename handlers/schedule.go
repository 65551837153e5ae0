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

// ScheduleDrone assigns the nearest drone that can serve a delivery. It
// reads delivery-requests, where cancel and reschedule operations arrive too:
// a cancel releases the drone the delivery held (compensation), a
// reschedule releases it and dispatches again.
//
// Assignment is three writes so that a crash between any two of them
// neither leaks a drone nor books a second one: the delivery first reserves
// a candidate (DroneID), then the drone is claimed with a conditional write,
// then the delivery records the assignment (DroneAssignedAt). A redelivered
// message finds the reservation and finishes it.
func (h *Handlers) ScheduleDrone(ctx context.Context, msg *ports.Delivered) ([]ports.Message, error) {
	ctx, env, d, err := h.loadEnvelope(ctx, msg)
	if err != nil {
		return nil, err
	}
	switch env.Operation {
	case wire.OpCancel:
		if d.Stage != domain.StageCancelled {
			return nil, nil // nothing was cancelled; a stray message
		}
		if err := h.releaseDrone(ctx, d); err != nil {
			return nil, err
		}
		return nil, h.markPackage(ctx, d, "Cancelled")
	case wire.OpDelivery, wire.OpReschedule:
	default:
		return nil, &domain.Permanent{Err: domain.Invalid("operation", "%s is not handled by this step", env.Operation)}
	}
	if env.Generation != d.Generation {
		h.log.InfoContext(ctx, "stale message of an earlier schedule; ignored", "generation", env.Generation)
		return nil, nil
	}
	if d.Stage.Terminal() {
		h.log.InfoContext(ctx, "delivery already ended; nothing to schedule", "stage", d.Stage)
		return nil, h.releaseDrone(ctx, d)
	}
	if d.Generation > d.ResetGeneration {
		if d, err = h.resetAssignment(ctx, d); err != nil {
			return nil, err
		}
	}
	if d.PreviousDroneID != "" {
		// Every run of this generation repeats the release of the old
		// generation's drone, so a crash right after the reset cannot
		// strand it; the release is a no-op once done.
		if err := h.releaseOldDrone(ctx, d); err != nil {
			return nil, err
		}
	}
	if d.DroneAssignedAt != nil {
		return []ports.Message{nextMessage(d, topology.QueueDroneScheduled, stepScheduled)}, nil
	}

	now := h.clock.Now()
	d, err = h.assign(ctx, d, now)
	if err != nil {
		return nil, err
	}
	if d.DroneAssignedAt != nil {
		h.log.InfoContext(ctx, "drone assigned", "droneId", d.DroneID)
		return []ports.Message{nextMessage(d, topology.QueueDroneScheduled, stepScheduled)}, nil
	}
	if d.Stage.Terminal() {
		return nil, nil
	}

	// No drone now: try again later, backing off, while the deadline allows.
	delay := h.backoff(env.Attempt)
	if at := now.Add(delay); !at.Before(d.Request.Deadline) {
		return h.fail(ctx, d.ID, "no drone could be assigned before the deadline")
	}
	retry := *env
	retry.Attempt++
	m := message(topology.QueueDeliveryRequests, fmt.Sprintf("retry-%d", retry.Attempt), retry)
	m.NotBefore = now.Add(delay)
	h.log.InfoContext(ctx, "no drone available; retrying later", "attempt", retry.Attempt, "delay", delay.String())
	return []ports.Message{m}, nil
}

// releaseDrone frees the drone a delivery holds, if it still holds one. It
// is the compensation for a cancel, and a self-repair for any drone found
// attached to a delivery that has ended.
func (h *Handlers) releaseDrone(ctx context.Context, d *domain.Delivery) error {
	if d.DroneID == "" {
		return nil
	}
	now := h.clock.Now()
	_, err := h.st(ctx).Fleet.Update(ctx, d.DroneID, func(dr *domain.Drone) error {
		return dr.Release(d.ID, h.cfg.Tracking, now)
	})
	if domain.IsCode(err, domain.ENOTFOUND) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release drone %s: %w", d.DroneID, err)
	}
	h.log.InfoContext(ctx, "drone released", "droneId", d.DroneID, "stage", d.Stage)
	return nil
}

// resetAssignment forgets the previous generation's assignment before a
// rescheduled delivery is dispatched again, remembering its drone so that
// releaseOldDrone can give it back.
func (h *Handlers) resetAssignment(ctx context.Context, d *domain.Delivery) (*domain.Delivery, error) {
	gen := d.Generation
	got, err := h.st(ctx).Deliveries.Update(ctx, d.ID, func(cur *domain.Delivery) error {
		return cur.ResetAssignment(gen)
	})
	if err != nil {
		return nil, fmt.Errorf("reset assignment: %w", err)
	}
	return got, nil
}

// releaseOldDrone frees the drone an earlier generation of d claimed, unless
// the current generation has claimed it again (the drone records the
// generation it serves), so duplicate or concurrent runs cannot free a drone
// the new schedule holds.
func (h *Handlers) releaseOldDrone(ctx context.Context, d *domain.Delivery) error {
	now := h.clock.Now()
	_, err := h.st(ctx).Fleet.Update(ctx, d.PreviousDroneID, func(dr *domain.Drone) error {
		return dr.ReleaseEarlier(d.ID, d.Generation, h.cfg.Tracking, now)
	})
	if err != nil && !domain.IsCode(err, domain.ENOTFOUND) {
		return fmt.Errorf("release drone %s of an earlier schedule: %w", d.PreviousDroneID, err)
	}
	return nil
}

func (h *Handlers) backoff(attempt int) time.Duration {
	d := h.cfg.RetryBase
	for i := 0; i < attempt && d < h.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, h.cfg.RetryMax)
}

// assign returns d with DroneAssignedAt set when a drone was claimed, or
// unchanged when none is available. A reservation left by an interrupted
// attempt is finished first, even past the deadline, so a drone claimed by
// that attempt is never stranded.
func (h *Handlers) assign(ctx context.Context, d *domain.Delivery, now time.Time) (*domain.Delivery, error) {
	if d.DroneID != "" {
		got, err := h.claim(ctx, d, d.DroneID, now)
		if err == nil || !errors.Is(err, domain.ErrDroneUnavailable) {
			return got, err
		}
	}
	if !now.Before(d.Request.Deadline) {
		return d, nil
	}
	radius := h.cfg.DispatchRadiusKm
	for drone, km := range h.st(ctx).Fleet.NearestAvailable(ctx, d.Request.PickupLocation) {
		if km > radius {
			break
		}
		if domain.Unfit(drone, &d.Request) != "" {
			continue
		}
		got, err := h.claim(ctx, d, drone.ID, now)
		if errors.Is(err, domain.ErrDroneUnavailable) {
			continue
		}
		return got, err
	}
	return d, ctx.Err()
}

// claim reserves droneID on the delivery, claims the drone and records the
// assignment. It returns an error wrapping domain.ErrDroneUnavailable when
// the drone cannot be had, after dropping the reservation.
func (h *Handlers) claim(ctx context.Context, d *domain.Delivery, droneID string, now time.Time) (*domain.Delivery, error) {
	reserved, err := h.st(ctx).Deliveries.Update(ctx, d.ID, func(cur *domain.Delivery) error {
		return cur.Reserve(droneID, now)
	})
	if err != nil {
		return nil, fmt.Errorf("reserve drone %s: %w", droneID, err)
	}
	if reserved.DroneAssignedAt != nil || reserved.Stage.Terminal() {
		return reserved, nil
	}
	if reserved.DroneID != droneID {
		// Another delivery of this message holds a reservation: finish that one.
		return h.claim(ctx, reserved, reserved.DroneID, now)
	}

	gen := reserved.Generation
	_, err = h.st(ctx).Fleet.Update(ctx, droneID, func(dr *domain.Drone) error {
		return dr.Claim(d.ID, gen, &reserved.Request, now)
	})
	if domain.IsCode(err, domain.ENOTFOUND) {
		err = fmt.Errorf("%w: drone %s is gone", domain.ErrDroneUnavailable, droneID)
	}
	if errors.Is(err, domain.ErrDroneUnavailable) {
		if _, uerr := h.st(ctx).Deliveries.Update(ctx, d.ID, func(cur *domain.Delivery) error {
			return cur.DropReservation(droneID, now)
		}); uerr != nil {
			return nil, fmt.Errorf("release reservation of drone %s: %w", droneID, uerr)
		}
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("claim drone %s: %w", droneID, err)
	}

	got, err := h.st(ctx).Deliveries.Update(ctx, d.ID, func(cur *domain.Delivery) error {
		return cur.RecordAssignment(droneID, now)
	})
	if err != nil {
		return nil, fmt.Errorf("record assignment of drone %s: %w", droneID, err)
	}
	if got.Stage.Terminal() && got.DroneAssignedAt == nil {
		// Cancelled while the drone was being claimed: give it back.
		return got, h.releaseDrone(ctx, got)
	}
	return got, nil
}

// fail marks a delivery that is not yet Scheduled Failed with a reason,
// releases the drone it holds, if any, and tells the customer; the message
// is then done. Any other delivery is left alone.
func (h *Handlers) fail(ctx context.Context, id, reason string) ([]ports.Message, error) {
	now := h.clock.Now()
	var notes []domain.Notification
	d, err := h.st(ctx).Deliveries.Update(ctx, id, func(cur *domain.Delivery) error {
		notes = nil
		n, err := cur.Fail(reason, now)
		if err == nil {
			notes = append(notes, n)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mark delivery failed: %w", err)
	}
	if d.Stage != domain.StageFailed {
		return nil, nil
	}
	if notes == nil {
		// A redelivery: send the failure notice again in case the first
		// attempt stopped before it; duplicate detection drops a repeat.
		notes = notificationsOfKind(d, domain.NotifyFailed)
	}
	// Repeated on every redelivery, like the notice; a no-op once done.
	if err := h.releaseDrone(ctx, d); err != nil {
		return nil, err
	}
	h.log.WarnContext(ctx, "delivery failed", "reason", reason)
	return notifyMessages(d, notes), nil
}

// notificationsOfKind returns a delivery's notifications of one kind.
func notificationsOfKind(d *domain.Delivery, kind string) []domain.Notification {
	var out []domain.Notification
	for _, n := range d.Notifications {
		if n.Kind == kind {
			out = append(out, n)
		}
	}
	return out
}
