package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

func TestContributionsFollowTheStage(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 2, 28, 23, 30, 0, 0, time.UTC)
	ptr := func(d time.Duration) *time.Time { x := at.Add(d); return &x }
	base := func() *domain.Delivery {
		d := &domain.Delivery{ID: "d", OwnerID: "o", Stage: domain.StageScheduled, CreatedAt: at,
			History: []domain.Event{{Stage: domain.StageCreated, At: at}}}
		d.Request.Deadline = at.Add(time.Hour)
		return d
	}
	accepted := domain.Contribution{Stage: domain.StageCreated, Figures: domain.Figures{Count: 1}}
	for _, tc := range []struct {
		name string
		edit func(*domain.Delivery)
		want []domain.Contribution
	}{
		{"running", func(*domain.Delivery) {}, []domain.Contribution{accepted}},
		{"completed late", func(d *domain.Delivery) {
			d.Stage, d.DroneAssignedAt, d.CompletedAt, d.TraveledKm = domain.StageCompleted, ptr(time.Minute), ptr(2*time.Hour), 1.2345
		}, []domain.Contribution{accepted, {Stage: domain.StageCompleted, Figures: domain.Figures{Completed: 1,
			DurationMs: (2 * time.Hour).Milliseconds(), TraveledM: 1235, AssignedMs: (119 * time.Minute).Milliseconds()}}}},
		{"cancelled", func(d *domain.Delivery) {
			d.Stage, d.DroneAssignedAt, d.CancelledAt = domain.StageCancelled, ptr(time.Minute), ptr(11*time.Minute)
		}, []domain.Contribution{accepted, {Stage: domain.StageCancelled, Figures: domain.Figures{Cancelled: 1,
			AssignedMs: (10 * time.Minute).Milliseconds()}}}},
		{"failed before a drone", func(d *domain.Delivery) { d.SetStage(domain.StageFailed, at.Add(time.Hour), "no drone") },
			[]domain.Contribution{accepted, {Stage: domain.StageFailed, Figures: domain.Figures{Failed: 1}}}},
	} {
		d := base()
		tc.edit(d)
		assert.Equal(t, tc.want, d.Contributions(), tc.name)
	}

	// A delivery counts in the month and day it was accepted in, and
	// in its account's, its area's and the fleet's buckets.
	d := base()
	month, day := d.AnalyticsDay()
	assert.Equal(t, "2026-02", month)
	assert.Equal(t, 28, day)
	assert.Equal(t, []string{"account:o", "area:" + domain.UnzonedArea, "fleet"}, d.Buckets())
	d.AreaID = "harbour"
	assert.Equal(t, "area:harbour", d.Buckets()[1])

	other := base()
	other.ID, other.CreatedAt = "march", at.Add(time.Hour) // 1 March
	got := domain.Derive(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), []*domain.Delivery{d, other})
	require.Len(t, got, 3)
	assert.Len(t, got["fleet"].Days, 28)
	assert.Equal(t, domain.Figures{Count: 1}, got["fleet"].Total, "the delivery of March is not February's")
	assert.Equal(t, domain.Figures{Count: 1}, got["fleet"].Days[27])
}
