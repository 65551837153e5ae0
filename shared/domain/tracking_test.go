package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

func TestTrackStagesAndETAChanges(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	pickup := domain.Location{Latitude: 47.60, Longitude: -122.33}
	drop := domain.Location{Latitude: 47.62, Longitude: -122.33}
	d := &domain.Delivery{ID: "d", Stage: domain.StageScheduled, Request: domain.DeliveryRequest{PickupLocation: pickup, DropoffLocation: drop}}
	d.History = []domain.Event{{Stage: domain.StageCreated, At: start}, {Stage: domain.StageScheduled, At: start}}
	eta := start.Add(20 * time.Minute)
	d.NotifiedDeliveryETA = &eta
	drone := &domain.Drone{CruiseSpeedMps: 10}
	cfg := domain.TrackingConfig{}

	report := func(loc domain.Location, at time.Time) (bool, []domain.Notification) {
		return domain.Track(d, drone, domain.Telemetry{Location: loc, BatteryPercent: 50, Timestamp: at}, cfg)
	}
	away := domain.Location{Latitude: 47.59, Longitude: -122.33}
	changed, notes := report(away, start.Add(time.Minute))
	require.True(t, changed)
	assert.Equal(t, domain.StageHeadedToPickup, d.Stage)
	require.Len(t, notes, 1, "the plan said 20 minutes; the drone is about 9 minutes out")
	assert.Equal(t, domain.NotifyETAChanged, notes[0].Kind)

	changed, _ = report(pickup, start.Add(time.Minute))
	assert.False(t, changed, "same timestamp: a duplicate")
	changed, _ = report(pickup, start.Add(30*time.Second))
	assert.False(t, changed, "older: stale")

	// 40 m from the pickup is within the default 50 m radius.
	near := domain.Location{Latitude: pickup.Latitude + 0.00036, Longitude: pickup.Longitude}
	_, notes = report(near, start.Add(3*time.Minute))
	assert.Equal(t, domain.StageHeadedToDropoff, d.Stage)
	require.NotEmpty(t, notes)
	assert.Equal(t, domain.NotifyPickedUp, notes[0].Kind)
	require.NotNil(t, d.PickedUpAt)

	_, _ = report(domain.Location{Latitude: 47.61, Longitude: -122.33}, start.Add(4*time.Minute))
	assert.Equal(t, domain.StageHeadedToDropoff, d.Stage)
	want := domain.FlightETA(start.Add(4*time.Minute), domain.Location{Latitude: 47.61, Longitude: -122.33}, 10, &d.Request, true)
	assert.Equal(t, want.Delivery, *d.DeliveryETA)

	_, notes = report(drop, start.Add(6*time.Minute))
	assert.Equal(t, domain.StageCompleted, d.Stage)
	assert.Equal(t, domain.NotifyDelivered, notes[len(notes)-1].Kind)
	assert.NoError(t, domain.LegalHistory(d.History))
	changed, _ = report(away, start.Add(7*time.Minute))
	assert.False(t, changed, "a completed delivery does not move")
}

func TestLegalHistory(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	ev := func(stages ...domain.Stage) []domain.Event {
		out := make([]domain.Event, len(stages))
		for i, s := range stages {
			out[i] = domain.Event{Stage: s, At: at.Add(time.Duration(i) * time.Minute)}
		}
		return out
	}
	assert.NoError(t, domain.LegalHistory(ev(domain.StageCreated, domain.StageScheduled, domain.StageHeadedToPickup, domain.StageHeadedToDropoff, domain.StageCompleted)))
	assert.NoError(t, domain.LegalHistory(ev(domain.StageCreated, domain.StageScheduled, domain.StageRescheduled, domain.StageScheduled, domain.StageCancelled)))
	assert.Error(t, domain.LegalHistory(ev(domain.StageScheduled)))
	assert.Error(t, domain.LegalHistory(ev(domain.StageCreated, domain.StageCompleted)))
	assert.Error(t, domain.LegalHistory(ev(domain.StageCreated, domain.StageScheduled, domain.StageCompleted, domain.StageCancelled)))
	back := ev(domain.StageCreated, domain.StageScheduled)
	back[1].At = at.Add(-time.Minute)
	assert.Error(t, domain.LegalHistory(back))
}
