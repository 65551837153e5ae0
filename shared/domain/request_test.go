package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// Free text is refused with control characters and with bidirectional
// formatting characters, which make a name display in another order than
// it reads; joiners that emoji and some scripts need are taken.
func TestValidText(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"Fabrikam ✈", "👩\u200d💻 lab", "می\u200cخواهم", "O'Brien & Sons"} {
		assert.NoError(t, domain.ValidText("name", s, 100), "%q", s)
	}
	for _, s := range []string{"a\x00b", "a\nb", "\u202egnp.exe", "x\u202ay", "x\u2066y\u2069", "x\u2068"} {
		err := domain.ValidText("name", s, 100)
		if assert.Error(t, err, "%q", s) {
			assert.Equal(t, "name", domain.ErrorField(err))
		}
	}
	assert.Error(t, domain.ValidText("name", "\xff", 100), "invalid UTF-8")
	assert.Error(t, domain.ValidText("name", "abcd", 3), "too long")
}

// A reschedule moves the deadline with the pickup only when the service set
// it; who set it is kept (DeadlineBy), and a delivery stored before that
// goes by the value.
func TestRescheduleMovesOnlyAServiceDeadline(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	pickup, moved := now.Add(time.Hour), now.Add(3*time.Hour)
	cases := []struct {
		name         string
		by           string
		deadline     time.Time
		wantDeadline time.Time
		wantBy       string
		wantField    string
	}{
		{"the service's, moves", domain.DeadlineByService, pickup.Add(domain.DefaultDeadline), moved.Add(domain.DefaultDeadline), domain.DeadlineByService, ""},
		{"the service's, cut at the horizon, moves", domain.DeadlineByService, pickup.Add(10 * time.Minute), moved.Add(domain.DefaultDeadline), domain.DeadlineByService, ""},
		{"the client's, of the default's value, stays", domain.DeadlineByClient, pickup.Add(domain.DefaultDeadline), pickup.Add(domain.DefaultDeadline), domain.DeadlineByClient, "deadline"},
		{"unknown, of the default's value, moves", "", pickup.Add(domain.DefaultDeadline), moved.Add(domain.DefaultDeadline), domain.DeadlineByService, ""},
		{"unknown, of another value, stays", "", pickup.Add(90 * time.Minute), pickup.Add(90 * time.Minute), domain.DeadlineByClient, "deadline"},
	}
	for _, tc := range cases {
		d := &domain.Delivery{ID: "d", Stage: domain.StageCreated, DeadlineBy: tc.by,
			Request: domain.DeliveryRequest{PickupTime: pickup, Deadline: tc.deadline}}
		err := d.Reschedule(&domain.Reschedule{PickupTime: &moved}, now, 0)
		if tc.wantField != "" {
			assert.Equal(t, tc.wantField, domain.ErrorField(err), tc.name)
			assert.Equal(t, tc.by, d.DeadlineBy, "%s: a refused change changes nothing", tc.name)
			continue
		}
		if assert.NoError(t, err, tc.name) {
			assert.Equal(t, tc.wantDeadline, d.Request.Deadline, tc.name)
			assert.Equal(t, tc.wantBy, d.DeadlineBy, tc.name)
		}
	}
	// A deadline the change names is the client's from then on.
	d := &domain.Delivery{ID: "d", Stage: domain.StageCreated, DeadlineBy: domain.DeadlineByService,
		Request: domain.DeliveryRequest{PickupTime: pickup, Deadline: pickup.Add(domain.DefaultDeadline)}}
	named := moved.Add(time.Hour)
	require.NoError(t, d.Reschedule(&domain.Reschedule{PickupTime: &moved, Deadline: &named}, now, 0))
	assert.Equal(t, domain.DeadlineByClient, d.DeadlineBy)
	assert.Equal(t, named, d.Request.Deadline)
}

// The same change sent again (a client's retry) is no change, though the
// deadline the service sets, as of now within the booking horizon, would
// come out later by the seconds between the two.
func TestARescheduleRetriedNearTheHorizonIsNoChange(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	d := &domain.Delivery{ID: "d", Stage: domain.StageScheduled, DeadlineBy: domain.DeadlineByService,
		Request: domain.DeliveryRequest{PickupTime: now.Add(time.Hour), Deadline: now.Add(time.Hour + domain.DefaultDeadline)}}
	pickup := now.Add(domain.DefaultMaxHorizon - time.Hour) // its default deadline is past the horizon
	change := &domain.Reschedule{PickupTime: &pickup}
	require.NoError(t, d.Reschedule(change, now, 0))
	assert.Equal(t, now.Add(domain.DefaultMaxHorizon), d.Request.Deadline, "cut at the horizon")
	assert.ErrorIs(t, d.Reschedule(change, now.Add(5*time.Second), 0), domain.ErrNoChange)
	assert.Equal(t, 1, d.Generation)
	assert.Equal(t, now.Add(domain.DefaultMaxHorizon), d.Request.Deadline)
}
