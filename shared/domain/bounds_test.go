package domain_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

func TestLegDurationCannotOverflow(t *testing.T) {
	t.Parallel()
	// A drone stored with a speed from before the bound: the leg is as at
	// the slowest speed allowed, not the year 1734.
	got := domain.LegDuration(20, 1e-300)
	assert.Equal(t, domain.LegDuration(20, domain.MinCruiseSpeedMps), got)
	assert.Greater(t, got, time.Duration(0))
	for _, km := range []float64{1e300, -5} {
		d := domain.LegDuration(km, 1e-300)
		assert.Greater(t, d, time.Duration(0), "%g km", km)
		assert.Less(t, d, 365*24*time.Hour, "%g km", km)
	}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	eta := domain.ComputeETA(now, domain.Location{}, 1e-300, &domain.DeliveryRequest{DropoffLocation: domain.Location{Latitude: 80}})
	assert.True(t, eta.Delivery.After(now) && eta.Delivery.Year() == 2027, "%s", eta.Delivery)
}

func TestCheckReportTime(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, ok := range []time.Time{now, now.Add(domain.TelemetryFutureSkew), now.Add(-domain.TelemetryMaxAge)} {
		assert.NoError(t, domain.TrackingConfig{}.CheckReportTime("timestamp", ok, now), "%s", ok)
	}
	for _, bad := range []time.Time{now.Add(domain.TelemetryFutureSkew + time.Second), time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC),
		now.Add(-domain.TelemetryMaxAge - time.Second), time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)} {
		err := domain.TrackingConfig{}.CheckReportTime("[3].timestamp", bad, now)
		assert.Equal(t, domain.EUNPROCESSABLE, domain.ErrorCode(err), "%s", bad)
		var e *domain.Error
		require.ErrorAs(t, err, &e)
		assert.Equal(t, "[3].timestamp", e.Field)
	}
	wide := domain.TrackingConfig{ClockSkew: 24 * time.Hour}
	assert.NoError(t, wide.CheckReportTime("timestamp", now.Add(3*time.Hour), now), "a configured skew")
}

func TestHistoryIsFoldedPastItsCap(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	d := &domain.Delivery{ID: "d", Stage: domain.StageCreated, History: []domain.Event{{Stage: domain.StageCreated, At: start}}}
	d.SetStage(domain.StageScheduled, start, "")
	count := d.EventCount()
	for i := range 1000 {
		d.SetStage(domain.StageRescheduled, start.Add(time.Duration(i)*time.Second), "")
		count++
		require.Equal(t, count, d.EventCount(), "every event counts, omitted or not")
		require.LessOrEqual(t, len(d.History), domain.MaxHistoryEvents)
		require.NoError(t, domain.LegalHistory(d.History), "after %d", i)
	}
	_, err := d.Cancel(start.Add(time.Hour))
	require.NoError(t, err)
	require.NoError(t, domain.LegalHistory(d.History))
	assert.Len(t, d.History, domain.MaxHistoryEvents)
	assert.Equal(t, domain.StageCreated, d.History[0].Stage, "the first event stays")
	marker := d.History[1]
	assert.Equal(t, domain.EventTruncated, marker.Kind)
	assert.Equal(t, d.EventCount()-domain.MaxHistoryEvents+1, marker.Omitted)
	assert.Equal(t, domain.StageCancelled, d.History[len(d.History)-1].Stage, "the newest stay")

	// A history with a marker that hides an illegal move stays legal only
	// if what follows is legal from the marker's stage.
	bad := []domain.Event{{Stage: domain.StageCreated, At: start}, {Stage: domain.StageCompleted, At: start, Kind: domain.EventTruncated, Omitted: 3},
		{Stage: domain.StageScheduled, At: start}}
	assert.Error(t, domain.LegalHistory(bad))
}

func TestNotificationsAreCappedETAChangesFirst(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	d := &domain.Delivery{ID: "d"}
	first := d.Notify(domain.NotifyScheduled, "scheduled", now)
	var ids []string
	for i := range 500 {
		ids = append(ids, d.Notify(domain.NotifyETAChanged, fmt.Sprint(i), now).ID)
	}
	require.Len(t, d.Notifications, domain.MaxNotifications)
	assert.Equal(t, first, d.Notifications[0], "a milestone outlives the ETA changes")
	assert.Equal(t, ids[len(ids)-1], d.Notifications[len(d.Notifications)-1].ID)
	assert.Equal(t, "d:n501", ids[len(ids)-1], "numbered by the count, not the length")

	n, dropped := d.Notification(ids[0])
	assert.Nil(t, n)
	assert.True(t, dropped, "an early ETA change was dropped")
	n, dropped = d.Notification(first.ID)
	require.NotNil(t, n)
	assert.False(t, dropped)
	for _, never := range []string{"d:n502", "d:n0", "e:n3", "d:x", "3"} {
		n, dropped = d.Notification(never)
		assert.Nil(t, n, never)
		assert.False(t, dropped, never)
	}
	// Milestones alone are capped too, the oldest first.
	for range 100 {
		d.Notify(domain.NotifyScheduled, "again", now)
	}
	require.Len(t, d.Notifications, domain.MaxNotifications)
	assert.Equal(t, "d:n601", d.Notifications[len(d.Notifications)-1].ID)
}

// longFlight is a scheduled delivery far from where its drone reports,
// so that no report moves its stage, and the time reports start from.
func longFlight() (time.Time, *domain.Delivery, *domain.Drone) {
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	d := &domain.Delivery{ID: "d", Stage: domain.StageScheduled, CreatedAt: start,
		Request: domain.DeliveryRequest{PickupLocation: domain.Location{Latitude: 10}, DropoffLocation: domain.Location{Latitude: 11}}}
	d.History = []domain.Event{{Stage: domain.StageCreated, At: start}}
	return start, d, &domain.Drone{CruiseSpeedMps: 10}
}

func TestTrailIsThinnedNotCut(t *testing.T) {
	t.Parallel()
	start, d, drone := longFlight()
	for i := range 5000 {
		changed, _ := domain.Track(d, drone, domain.Telemetry{Location: domain.Location{Latitude: float64(i%7) * 0.001, Longitude: float64(i) * 1e-5},
			BatteryPercent: 90, Timestamp: start.Add(time.Duration(i+1) * time.Second)}, domain.TrackingConfig{})
		require.True(t, changed, "report %d", i)
		require.LessOrEqual(t, len(d.Trail), domain.MaxTrailPoints)
	}
	assert.True(t, d.Trail[0].At.Equal(start.Add(time.Second)), "the first point stays: the path is drawn from its start")
	assert.True(t, d.Trail[len(d.Trail)-1].At.Equal(start.Add(5000*time.Second)), "the newest point is kept")
	for i := 1; i < len(d.Trail); i++ {
		require.True(t, d.Trail[i-1].At.Before(d.Trail[i].At))
	}
	b, err := json.Marshal(d)
	require.NoError(t, err)
	assert.Less(t, len(b), 200<<10)
}

// A report sent again after the bus's duplicate window, dated in the part
// of the trail already thinned, counts no distance twice, though its point
// was thinned away; a new report still counts.
func TestAReportSentAgainAfterThinningCountsNoDistanceTwice(t *testing.T) {
	t.Parallel()
	start, d, drone := longFlight()
	// A zig-zag, so that a point put back between its neighbours adds a
	// detour.
	report := func(i int) domain.Telemetry {
		return domain.Telemetry{Location: domain.Location{Latitude: float64(i%2) * 0.001, Longitude: float64(i) * 1e-4},
			BatteryPercent: 90, Timestamp: start.Add(time.Duration(i+1) * time.Second)}
	}
	n := domain.MaxTrailPoints + 20
	for i := range n {
		changed, _ := domain.Track(d, drone, report(i), domain.TrackingConfig{})
		require.True(t, changed, "report %d", i)
	}
	require.NotNil(t, d.ThinnedThrough, "the trail was thinned")
	flown := d.TraveledKm
	for i := range 100 {
		domain.Track(d, drone, report(i), domain.TrackingConfig{}) // sent again
	}
	assert.InDelta(t, flown, d.TraveledKm, 1e-9, "the same reports again fly no further")
	changed, _ := domain.Track(d, drone, report(n), domain.TrackingConfig{})
	assert.True(t, changed)
	assert.Greater(t, d.TraveledKm, flown, "a new report still counts")
}

func TestCompletionIsNotDatedBeforeAcceptance(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	pickup, drop := domain.Location{Latitude: 47.60, Longitude: -122.33}, domain.Location{Latitude: 47.62, Longitude: -122.33}
	d := &domain.Delivery{ID: "d", Stage: domain.StageScheduled, CreatedAt: created,
		Request: domain.DeliveryRequest{PickupLocation: pickup, DropoffLocation: drop}}
	d.History = []domain.Event{{Stage: domain.StageCreated, At: created}, {Stage: domain.StageScheduled, At: created}}
	drone := &domain.Drone{CruiseSpeedMps: 10}
	// A drone whose clock lags by an hour: its reports are dated before the
	// delivery was accepted.
	for i, loc := range []domain.Location{pickup, drop} {
		domain.Track(d, drone, domain.Telemetry{Location: loc, BatteryPercent: 80, Timestamp: created.Add(-time.Hour + time.Duration(i)*time.Minute)}, domain.TrackingConfig{})
	}
	require.Equal(t, domain.StageCompleted, d.Stage)
	assert.False(t, d.CompletedAt.Before(created), "no negative duration: completed %s, accepted %s", d.CompletedAt, created)
}
