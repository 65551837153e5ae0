package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// Charging runs on the bus's scheduled messages, the way retries and
// booked pickups do: a drone that goes to charge schedules a charge check
// for its ChargeDueAt on the drone-telemetry queue, and TrackDrone returns
// the drone to service when it runs (domain.Drone.FinishCharging). A report
// at the charged threshold returns it earlier (domain.Drone.ApplyReport),
// and the check then finds nothing to do.

// chargeCheckMessage is the check of dr's charge at its due time. Its id
// names the due time, so scheduling the same charge twice sends one check.
func chargeCheckMessage(dr *domain.Drone, suffix string) ports.Message {
	body, _ := json.Marshal(wire.ChargeCheck{DroneID: dr.ID}) // always encodes
	due := *dr.ChargeDueAt
	return ports.Message{
		ID:            wire.MessageID(dr.ID, 0, "charged:"+strconv.FormatInt(due.UnixNano(), 10)+suffix),
		Queue:         topology.QueueDroneTelemetry,
		Body:          body,
		CorrelationID: dr.ID,
		Operation:     string(wire.OpChargeCheck),
		NotBefore:     due,
	}
}

// startedCharging returns the charge check for a drone that went to charge
// in a write whose previous state was before (nil: unknown).
func startedCharging(before, after *domain.Drone) []ports.Message {
	if after == nil || after.Status != domain.DroneCharging || after.ChargeDueAt == nil {
		return nil
	}
	if before != nil && before.Status == domain.DroneCharging && before.ChargeDueAt != nil && !after.ChargeDueAt.Before(*before.ChargeDueAt) {
		// Scheduled already; a check that comes before a due time a report
		// moved later schedules itself again for it (checkCharge).
		return nil
	}
	return []ports.Message{chargeCheckMessage(after, "")}
}

// publishChargeCheck sends the charge check of a drone that went to charge
// outside a step that returns its messages (an HTTP call, or a release deep
// in dispatch). A check sent for a write that then did not commit is
// harmless: it finds the drone not charging, or charging until later.
func (h *Handlers) publishChargeCheck(ctx context.Context, before, after *domain.Drone) error {
	msgs := startedCharging(before, after)
	if len(msgs) == 0 {
		return nil
	}
	if err := h.publish(ctx, msgs...); err != nil {
		return fmt.Errorf("schedule the charge check of drone %s: %w", after.ID, err)
	}
	return nil
}

// checkCharge runs a charge check: the drone is Available again when its
// charge is due. A check that arrives before the due time (a clock a
// little behind the bus's) schedules itself again for it.
func (h *Handlers) checkCharge(ctx context.Context, msg *ports.Delivered) ([]ports.Message, error) {
	c, err := wire.ParseChargeCheck(msg.Body)
	if err != nil {
		return nil, err
	}
	now := h.clock.Now()
	charged := false
	dr, err := h.store.Fleet.Update(ctx, c.DroneID, func(dr *domain.Drone) error {
		charged = dr.Status == domain.DroneCharging
		return dr.FinishCharging(h.cfg.Tracking, now)
	})
	if domain.IsCode(err, domain.ENOTFOUND) {
		return nil, nil // the drone was removed
	}
	if err != nil {
		return nil, fmt.Errorf("finish charging drone %s: %w", c.DroneID, err)
	}
	if dr.Status == domain.DroneCharging && dr.ChargeDueAt != nil && now.Before(*dr.ChargeDueAt) {
		return []ports.Message{chargeCheckMessage(dr, ":"+strconv.Itoa(msg.DeliveryCount)+":"+strconv.FormatInt(now.UnixNano(), 10))}, nil
	}
	if dr.Status != domain.DroneAvailable {
		return nil, nil
	}
	if charged {
		// Not for one back in service before its check came (a report at
		// 95 %, a put): the check changed nothing but wakes the waiting
		// all the same, which a put does not.
		h.log.InfoContext(ctx, "drone charged", "droneId", dr.ID, "batteryPercent", dr.BatteryPercent)
	}
	return h.wakeForFreed(ctx, dr, "", now)
}
