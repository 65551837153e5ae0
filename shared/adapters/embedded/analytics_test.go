package embedded

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// A bucket kept for a month that no delivery supports (written wrongly, or
// its deliveries gone) is derived empty, so `reaggregate -check` reports
// it as differing and the repair, which empties it, reports it replaced.
func TestDeriveEmptiesBucketsNoDeliverySupports(t *testing.T) {
	t.Parallel()
	db := MustOpen(t, Options{})
	ctx := context.Background()
	month := time.Date(2031, 3, 1, 0, 0, 0, 0, time.UTC)
	ghost := domain.BucketKey(domain.ScopeArea, "ghost")
	require.NoError(t, db.commit.write(ctx, "plant", func(w *writeTx) error {
		return addFigures(w.stmt(db.st.aggAdd), ghost, domain.MonthKey(month), 3, domain.Figures{Count: 7, Completed: 7})
	}))
	an := db.Store().Analytics
	kept, err := an.Month(ctx, ghost, month)
	require.NoError(t, err)
	require.Equal(t, int64(7), kept.Total.Count)

	derived, err := an.Derive(ctx, month)
	require.NoError(t, err)
	require.Contains(t, derived, ghost)
	assert.Equal(t, domain.Figures{}, derived[ghost].Total)

	out, err := an.Reaggregate(ctx, month)
	require.NoError(t, err)
	require.Contains(t, out, ghost)
	kept, err = an.Month(ctx, ghost, month)
	require.NoError(t, err)
	assert.Equal(t, domain.Figures{}, kept.Total, "emptied by the repair")
}
