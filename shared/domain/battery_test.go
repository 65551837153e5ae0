package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

func TestRangeFollowsBattery(t *testing.T) {
	cfg := domain.TrackingConfig{ReservePercent: 10}
	dr := drone() // 50 km at 90 %: 62.5 km at a full charge, keeping 10 %
	tests := []struct {
		battery, want float64
	}{
		{50, 25}, {100, 56.25}, {0, 0}, {10, 0}, {100, 56.25}, {90, 50},
	}
	for _, tc := range tests {
		dr.SetBattery(tc.battery, cfg)
		assert.InDelta(t, tc.want, dr.RangeKm, 1e-9, "at %v %%", tc.battery)
		assert.InDelta(t, 62.5, dr.FullRangeKm, 1e-9, "the full range never changes")
	}
}

func TestCharging(t *testing.T) {
	cfg := domain.TrackingConfig{ChargedPercent: 90, ChargePercentPerHour: 60}
	dr := drone()
	require.NoError(t, dr.Claim("d-1", 0, &delivery(domain.StageCreated).Request, t0))
	dr.SetBattery(0, cfg)
	require.NoError(t, dr.Release("d-1", cfg, t0))
	require.Equal(t, domain.DroneCharging, dr.Status)
	require.NotNil(t, dr.ChargeDueAt)
	assert.Equal(t, t0.Add(90*time.Minute), *dr.ChargeDueAt, "0 % to 90 % at 60 %/h")
	assert.Zero(t, dr.RangeKm)

	assert.ErrorIs(t, dr.FinishCharging(cfg, t0.Add(89*time.Minute)), domain.ErrNoChange, "not charged yet")
	require.NoError(t, dr.FinishCharging(cfg, t0.Add(90*time.Minute)))
	assert.Equal(t, domain.DroneAvailable, dr.Status)
	assert.Equal(t, 90.0, dr.BatteryPercent)
	assert.Positive(t, dr.RangeKm, "the range came back with the charge")
	assert.ErrorIs(t, dr.FinishCharging(cfg, t0.Add(2*time.Hour)), domain.ErrNoChange, "charged once")

	// A report at the threshold returns it at once.
	dr.StartCharging(cfg, t0)
	r := domain.Telemetry{DroneID: dr.ID, Location: dr.Location, BatteryPercent: 95, Timestamp: t0.Add(3 * time.Hour)}
	_, err := dr.ApplyReport(r, "", false, cfg, t0.Add(3*time.Hour))
	require.NoError(t, err)
	assert.Equal(t, domain.DroneAvailable, dr.Status)
	assert.Nil(t, dr.ChargeDueAt)

	dr.StartCharging(cfg, t0)
	r.BatteryPercent, r.Timestamp = 40, t0.Add(4*time.Hour)
	_, err = dr.ApplyReport(r, "", false, cfg, t0.Add(4*time.Hour))
	require.NoError(t, err)
	assert.Equal(t, domain.DroneCharging, dr.Status, "below the threshold it charges on")
}

// A report on charge sets the charge's due time on the service's clock,
// as the charge was started: a drone whose clock is two hours behind,
// reporting 35 %, stays on charge for the hour 35 % to 95 % takes. From
// the report's own time the due time was an hour past, and the next check
// gave the drone 95 %.
func TestAReportOnChargeCountsOnTheServicesClock(t *testing.T) {
	t.Parallel()
	cfg := domain.TrackingConfig{}
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	dr := &domain.Drone{ID: "c", Status: domain.DroneAvailable, FullRangeKm: 20}
	dr.SetBattery(30, cfg)
	require.NoError(t, dr.Charge("top up", cfg, now))
	behind := now.Add(5*time.Minute - 2*time.Hour)
	_, err := dr.ApplyReport(domain.Telemetry{DroneID: "c", BatteryPercent: 35, Timestamp: behind}, "", false, cfg, now.Add(5*time.Minute))
	require.NoError(t, err)
	require.NotNil(t, dr.ChargeDueAt)
	assert.WithinDuration(t, now.Add(5*time.Minute+time.Hour), *dr.ChargeDueAt, time.Millisecond)
	assert.ErrorIs(t, dr.FinishCharging(cfg, now.Add(10*time.Minute)), domain.ErrNoChange, "not charged yet")
	assert.Equal(t, domain.DroneCharging, dr.Status)
}
