package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// A pause is in force until its end, which is not part of it; one with no
// end never expires.
func TestPauseStateAt(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		until time.Time
		want  domain.PauseState
	}{
		{"no end", time.Time{}, domain.PauseActive},
		{"ends later", now.Add(time.Nanosecond), domain.PauseActive},
		{"ends now", now, domain.PauseExpired},
		{"ended", now.Add(-time.Hour), domain.PauseExpired},
	} {
		p := &domain.Pause{ID: "p", Reason: "storm", Until: tc.until}
		assert.Equal(t, tc.want, p.StateAt(now), tc.name)
		assert.Equal(t, tc.want == domain.PauseActive, p.ActiveAt(now), tc.name)
	}
}
