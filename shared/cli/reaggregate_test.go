package cli

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// The -check note names the day and the figures that differ, kept then
// derived: the month's totals alone hid a duration that differed, or a
// delivery counted on the wrong day.
func TestDifferencesNameTheDayAndTheFigure(t *testing.T) {
	t.Parallel()
	month := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	kept, derived := domain.NewMonthFigures("fleet", month), domain.NewMonthFigures("fleet", month)
	assert.Empty(t, differences(kept, derived))

	kept.AddDay(5, domain.Figures{Count: 1, Completed: 1, DurationMs: 90000})
	derived.AddDay(5, domain.Figures{Count: 1, Completed: 1, DurationMs: 120000})
	assert.Equal(t, "day 5: duration ms 90000 kept, 120000 derived", differences(kept, derived))

	kept.AddDay(6, domain.Figures{Count: 1})
	derived.AddDay(7, domain.Figures{Count: 1})
	assert.Equal(t, "day 5: duration ms 90000 kept, 120000 derived; day 6: count 1 kept, 0 derived; day 7: count 0 kept, 1 derived",
		differences(kept, derived), "a delivery counted on the wrong day")
}
