package handlers

import (
	"context"
	"fmt"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// ComputeEta estimates when the assigned drone reaches the pickup and the
// dropoff, from where the drone is now along the legs routed around no-fly
// zones, records that route, and marks the delivery Scheduled.
// It runs once per delivery: a redelivered message finds the stage past
// Created and changes nothing, so no stage ever moves backwards.
func (h *Handlers) ComputeEta(ctx context.Context, msg *ports.Delivered) ([]ports.Message, error) {
	ctx, env, d, err := h.loadEnvelope(ctx, msg)
	if err != nil {
		return nil, err
	}
	if env.Generation != d.Generation {
		return nil, nil // an earlier schedule's message
	}
	if !d.AwaitsSchedule() {
		if d.ScheduledAt != nil {
			// A redelivery: send the notices of the schedule again, and
			// finish a flight the schedule found ended, in case the first
			// attempt stopped before them; duplicates are dropped.
			return h.afterSchedule(ctx, d, notificationsSince(d, *d.ScheduledAt))
		}
		return nil, nil
	}
	if d.DroneAssignedAt == nil || d.PackageRecordedAt == nil {
		return nil, &domain.Permanent{Err: fmt.Errorf("delivery %s reached the ETA step before its drone and package", d.ID)}
	}
	drone, err := h.st(ctx).Fleet.Find(ctx, d.DroneID)
	if err != nil {
		return nil, fmt.Errorf("find drone %s: %w", d.DroneID, err)
	}
	if drone.CurrentDeliveryID != d.ID {
		return nil, &domain.Permanent{Err: fmt.Errorf("drone %s is not assigned to delivery %s", drone.ID, d.ID)}
	}

	now := h.clock.Now()
	plan, err := h.plan(ctx, drone, d, now)
	if err != nil {
		// A zone now closes every way to the pickup or the dropoff; the
		// message is tried again, by when it may have lifted.
		return nil, fmt.Errorf("plan the route of drone %s: %w", drone.ID, err)
	}
	eta := plan.ETA
	var notes []domain.Notification
	d, err = h.st(ctx).Deliveries.Update(ctx, d.ID, func(cur *domain.Delivery) error {
		notes = nil
		n, err := cur.Schedule(env.Generation, eta, &plan.Route, drone.Location, now)
		if err == nil {
			notes = append(notes, n)
			// The drone may have flown some of the delivery, or all of it,
			// while the delivery waited for this step.
			notes = append(notes, domain.FollowTrail(cur, drone, h.cfg.Tracking)...)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("record ETA: %w", err)
	}
	h.log.InfoContext(ctx, "delivery scheduled", "droneId", d.DroneID, "pickupETA", eta.Pickup, "deliveryETA", eta.Delivery, "stage", d.Stage)
	return h.afterSchedule(ctx, d, notes)
}

// notificationsSince returns the notifications of d dated t or later: a
// schedule's and those of the flight it followed (FollowTrail), dated no
// earlier than it.
func notificationsSince(d *domain.Delivery, t time.Time) []domain.Notification {
	var out []domain.Notification
	for _, n := range d.Notifications {
		if !n.At.Before(t) {
			out = append(out, n)
		}
	}
	return out
}

// afterSchedule sends the notices of a delivery's schedule and, when the
// reports its drone sent before it took the delivery to its dropoff,
// finishes the flight as the tracking step would have: the package
// delivered, the drone freed and the delivery that waits for it woken.
func (h *Handlers) afterSchedule(ctx context.Context, d *domain.Delivery, notes []domain.Notification) ([]ports.Message, error) {
	out := notifyMessages(d, notes)
	if d.Stage == domain.StageCompleted {
		if err := h.markPackage(ctx, d, "Delivered"); err != nil {
			return nil, err
		}
		wakes, err := h.releaseAndWake(ctx, d, h.clock.Now())
		if err != nil {
			return nil, err
		}
		out = append(out, wakes...)
	}
	h.announce(ctx, d)
	return out, nil
}
