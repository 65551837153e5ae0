package handlers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// errTaken says a candidate drone could not be claimed for the delivery.
var errTaken = errors.New("drone not claimable")

// ScheduleDrone assigns the nearest drone that can serve a delivery. It
// reads delivery-requests; operations other than delivery belong to later
// steps of the product and are refused as permanent failures.
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
	if env.Operation != domain.OpDelivery {
		return nil, &domain.Permanent{Err: domain.Invalid("operation", "%s is not supported by this step", env.Operation)}
	}
	if d.Stage.Terminal() {
		h.log.InfoContext(ctx, "delivery already ended; nothing to schedule", "stage", d.Stage)
		return nil, nil
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
		return nil, h.fail(ctx, d.ID, "no drone could be assigned before the deadline")
	}
	retry := *env
	retry.Attempt++
	m := message(topology.QueueDeliveryRequests, fmt.Sprintf("retry-%d", retry.Attempt), retry)
	m.NotBefore = now.Add(delay)
	h.log.InfoContext(ctx, "no drone available; retrying later", "attempt", retry.Attempt, "delay", delay.String())
	return []ports.Message{m}, nil
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
		if err == nil || !errors.Is(err, errTaken) {
			return got, err
		}
	}
	if !now.Before(d.Request.Deadline) {
		return d, nil
	}
	radius := h.cfg.DispatchRadiusKm
	for drone, km := range h.store.Fleet.NearestAvailable(ctx, d.Request.PickupLocation) {
		if km > radius {
			break
		}
		if domain.Unfit(drone, &d.Request) != "" {
			continue
		}
		got, err := h.claim(ctx, d, drone.ID, now)
		if errors.Is(err, errTaken) {
			continue
		}
		return got, err
	}
	return d, ctx.Err()
}

// claim reserves droneID on the delivery, claims the drone and records the
// assignment. It returns errTaken when the drone cannot be had, after
// clearing the reservation.
func (h *Handlers) claim(ctx context.Context, d *domain.Delivery, droneID string, now time.Time) (*domain.Delivery, error) {
	reserved, err := h.store.Deliveries.Update(ctx, d.ID, func(cur *domain.Delivery) error {
		if cur.DroneAssignedAt != nil || cur.Stage.Terminal() {
			return ports.ErrSkip
		}
		if cur.DroneID != "" && cur.DroneID != droneID {
			return ports.ErrSkip // a concurrent redelivery reserved another one
		}
		if cur.DroneID == droneID {
			return ports.ErrSkip
		}
		cur.DroneID = droneID
		cur.UpdatedAt = now
		return nil
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

	_, err = h.store.Fleet.Update(ctx, droneID, func(dr *domain.Drone) error {
		if dr.CurrentDeliveryID == d.ID {
			return ports.ErrSkip
		}
		if why := domain.Unfit(dr, &reserved.Request); why != "" {
			return fmt.Errorf("%w: %s", errTaken, why)
		}
		dr.Status = domain.DroneAssigned
		dr.CurrentDeliveryID = d.ID
		dr.UpdatedAt = now
		return nil
	})
	if domain.IsCode(err, domain.ENOTFOUND) {
		err = fmt.Errorf("%w: drone %s is gone", errTaken, droneID)
	}
	if errors.Is(err, errTaken) {
		if _, uerr := h.store.Deliveries.Update(ctx, d.ID, func(cur *domain.Delivery) error {
			if cur.DroneID != droneID || cur.DroneAssignedAt != nil {
				return ports.ErrSkip
			}
			cur.DroneID = ""
			cur.UpdatedAt = now
			return nil
		}); uerr != nil {
			return nil, fmt.Errorf("release reservation of drone %s: %w", droneID, uerr)
		}
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("claim drone %s: %w", droneID, err)
	}

	got, err := h.store.Deliveries.Update(ctx, d.ID, func(cur *domain.Delivery) error {
		if cur.DroneAssignedAt != nil {
			return ports.ErrSkip
		}
		if cur.DroneID != droneID {
			return fmt.Errorf("delivery reserved drone %s but drone %s was claimed", cur.DroneID, droneID)
		}
		t := now
		cur.DroneAssignedAt = &t
		cur.UpdatedAt = now
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("record assignment of drone %s: %w", droneID, err)
	}
	return got, nil
}

// fail marks a delivery Failed with a reason; the message is then done.
func (h *Handlers) fail(ctx context.Context, id, reason string) error {
	now := h.clock.Now()
	_, err := h.store.Deliveries.Update(ctx, id, func(cur *domain.Delivery) error {
		if cur.Stage.Terminal() || cur.DroneAssignedAt != nil {
			return ports.ErrSkip
		}
		cur.Stage = domain.StageFailed
		cur.FailureReason = reason
		cur.UpdatedAt = now
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark delivery failed: %w", err)
	}
	h.log.WarnContext(ctx, "delivery failed", "reason", reason)
	return nil
}
