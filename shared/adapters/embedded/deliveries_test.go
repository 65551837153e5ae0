package embedded

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// ListByOwner reads the owner index: the owner's deliveries created in
// [from, to), oldest first, at most limit of them; another owner's and
// those outside the range are left out.
func TestListByOwnerReadsTheOwnerIndexOldestFirst(t *testing.T) {
	t.Parallel()
	db := MustOpen(t, Options{})
	ctx := ctxFor(t)
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 500, time.UTC)
	for i, c := range []struct {
		id, owner string
		at        time.Duration
	}{{"d3", "o1", 3 * time.Minute}, {"d1", "o1", time.Minute}, {"d0", "o1", 0}, {"x2", "o2", 2 * time.Minute},
		{"d2", "o1", 2 * time.Minute}, {"d4", "o1", 4 * time.Minute}} {
		d := &domain.Delivery{ID: c.id, OwnerID: c.owner, Stage: domain.StageCreated, CreatedAt: t0.Add(c.at)}
		if i%2 == 0 {
			require.NoError(t, db.Store().Deliveries.Create(ctx, c.id, d))
			continue
		}
		uow := db.Begin() // the unit of work writes the index row too
		require.NoError(t, uow.Store().Deliveries.Create(ctx, c.id, d))
		require.NoError(t, uow.Commit(ctx, nil))
	}
	ids := func(from, to time.Time, limit int) []string {
		got, err := db.Store().Deliveries.ListByOwner(ctx, "o1", from, to, limit)
		require.NoError(t, err)
		var out []string
		for _, d := range got {
			assert.Equal(t, "o1", d.OwnerID)
			out = append(out, d.ID)
		}
		return out
	}
	// from is included, to is not, to the nanosecond.
	assert.Equal(t, []string{"d1", "d2", "d3"}, ids(t0.Add(time.Minute), t0.Add(4*time.Minute), 10))
	assert.Equal(t, []string{"d1", "d2", "d3", "d4"}, ids(t0.Add(time.Minute), t0.Add(4*time.Minute+1), 10))
	assert.Equal(t, []string{"d0", "d1"}, ids(time.Time{}, t0.Add(time.Hour), 2), "the oldest, up to the limit")
	assert.Equal(t, []string{"d0", "d1", "d2", "d3", "d4"}, ids(time.Time{}, time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), 10))
	assert.Empty(t, ids(t0.Add(time.Hour), t0.Add(2*time.Hour), 10))
	assert.Empty(t, ids(time.Time{}, time.Time{}, 10), "nothing is created before the earliest time")
	assert.Empty(t, ids(time.Time{}, t0.Add(time.Hour), 0))
}
