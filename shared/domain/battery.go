package domain

import (
	"math"
	"time"
)

// The battery model (docs/operating.md#battery-and-charging):
//
//   - A drone's range follows its battery both ways: the range it may fly
//     now is its range at a full charge times the battery's share, less a
//     reserve it never flies on:
//     RangeKm = FullRangeKm × (batteryPercent − ReservePercent) / 100, at
//     least 0. Dispatch compares the whole mission with that range, so it
//     never picks a drone whose battery cannot fly the job plus the reserve.
//   - A drone that ends a delivery below LowBatteryPercent goes to Charging.
//     It is Available again when a report says its battery reached
//     ChargedPercent, or, without reports, once the time the charge rate
//     needs to bring it there has passed (ChargeDueAt).

// Defaults of the battery model.
const (
	DefaultReservePercent       = 10
	DefaultChargedPercent       = 95
	DefaultChargePercentPerHour = 60
)

// UsableRangeKm is the range a drone with fullKm at a full charge may fly
// on battery percent, keeping the reserve.
func (c TrackingConfig) UsableRangeKm(fullKm, battery float64) float64 {
	c = c.WithDefaults()
	return math.Max(0, fullKm*(battery-c.ReservePercent)/100)
}

// ChargeDuration is how long charging from battery percent to
// ChargedPercent takes at the charge rate.
func (c TrackingConfig) ChargeDuration(battery float64) time.Duration {
	c = c.WithDefaults()
	need := c.ChargedPercent - battery
	if need <= 0 {
		return 0
	}
	return time.Duration(need / c.ChargePercentPerHour * float64(time.Hour))
}

// FullRange is the drone's range at a full charge: FullRangeKm once set,
// else what its current range and battery imply under the model (for a
// drone registered with a range on a partial charge, or stored before the
// model). A battery at or under one point above the reserve leaves too
// little usable range to scale from (dividing by it would multiply any
// error in the range given): the range given is then taken as the full
// charge's.
func (dr *Drone) FullRange(cfg TrackingConfig) float64 {
	if dr.FullRangeKm > 0 {
		return dr.FullRangeKm
	}
	cfg = cfg.WithDefaults()
	share := (dr.BatteryPercent - cfg.ReservePercent) / 100
	if share <= 0.01 {
		return dr.RangeKm
	}
	return dr.RangeKm / share
}

// SetBattery records a battery level and makes the range follow it, up as
// well as down.
func (dr *Drone) SetBattery(percent float64, cfg TrackingConfig) {
	dr.FullRangeKm = dr.FullRange(cfg)
	dr.BatteryPercent = percent
	dr.RangeKm = cfg.UsableRangeKm(dr.FullRangeKm, percent)
}

// StartCharging puts the drone on charge at now and sets when it will be
// charged if no report says so first.
func (dr *Drone) StartCharging(cfg TrackingConfig, now time.Time) {
	due := now.Add(cfg.ChargeDuration(dr.BatteryPercent)).UTC()
	dr.Status, dr.ChargeDueAt, dr.UpdatedAt = DroneCharging, &due, now
}

// ChargedBy is the battery a Charging drone has reached at now: what the
// charge rate has added since it went on charge, worked back from when the
// charge is due (ChargeDueAt is when the rate brings it to ChargedPercent),
// and never less than it last reported. Any other drone's is its battery.
func (dr *Drone) ChargedBy(cfg TrackingConfig, now time.Time) float64 {
	cfg = cfg.WithDefaults()
	if dr.Status != DroneCharging || dr.ChargeDueAt == nil {
		return dr.BatteryPercent
	}
	left := max(dr.ChargeDueAt.Sub(now), 0).Hours() * cfg.ChargePercentPerHour
	return max(dr.BatteryPercent, cfg.ChargedPercent-left)
}

// FinishCharging returns a Charging drone whose charge is due by now to
// service, with the battery the charge rate gave it. A drone that is not
// charging, or not yet charged, is unchanged (ErrNoChange).
func (dr *Drone) FinishCharging(cfg TrackingConfig, now time.Time) error {
	cfg = cfg.WithDefaults()
	if dr.Status != DroneCharging || dr.CurrentDeliveryID != "" || dr.ChargeDueAt == nil || now.Before(*dr.ChargeDueAt) {
		return ErrNoChange
	}
	dr.SetBattery(math.Max(dr.BatteryPercent, cfg.ChargedPercent), cfg)
	dr.Status, dr.ChargeDueAt, dr.StatusReason, dr.UpdatedAt = DroneAvailable, nil, "", now
	return nil
}

// chargedByReport returns a Charging drone to service when its reported
// battery reached ChargedPercent; it reports whether it did. A report under
// it sets when the charge is due from that battery, counted from now on the
// service's clock (as the charge started, and as its check runs: a drone's
// clock may be hours behind), so that
// the charge rate's check never gives the drone a charge a report denies
// (its due time moves only when it is off by more than dueDrift, or a
// drone reporting on charge would move it, and schedule a check, at every
// report).
func (dr *Drone) chargedByReport(cfg TrackingConfig, now time.Time) bool {
	cfg = cfg.WithDefaults()
	if dr.Status != DroneCharging || dr.CurrentDeliveryID != "" {
		return false
	}
	if dr.BatteryPercent < cfg.ChargedPercent {
		due := now.Add(cfg.ChargeDuration(dr.BatteryPercent)).UTC()
		if dr.ChargeDueAt == nil || (due.Sub(*dr.ChargeDueAt)).Abs() > dueDrift {
			dr.ChargeDueAt = &due
		}
		return false
	}
	dr.Status, dr.ChargeDueAt, dr.StatusReason = DroneAvailable, nil, ""
	return true
}

// dueDrift is how far a report must put a charge's due time from the one
// the drone has before it moves.
const dueDrift = time.Minute
