package domain

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestWaitReason(t *testing.T) {
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	later := now.Add(90 * time.Minute)
	days := later.Add(7 * 24 * time.Hour)
	assigned := now.Add(-time.Minute)
	old := now.Add(-time.Hour)
	cases := []struct {
		name    string
		d       Delivery
		waiting bool
		kind    WaitKind
		text    string
	}{
		{"held", Delivery{Stage: StageCreated, HeldReason: "storm", UpdatedAt: old}, true, WaitHeld, "held: storm"},
		{"booked", Delivery{Stage: StageScheduled, DispatchAt: &later, UpdatedAt: old}, true, WaitBooked, "booked: dispatch at 11:30 UTC"},
		{"booked days ahead", Delivery{Stage: StageScheduled, DispatchAt: &days, UpdatedAt: old}, true, WaitBooked, "booked: dispatch at " + days.Format("Jan 2") + " 11:30 UTC"},
		{"claiming", Delivery{Stage: StageCreated, DroneID: "d1", UpdatedAt: old}, true, WaitClaiming, "drone d1 being claimed"},
		{"fresh", Delivery{Stage: StageRescheduled, UpdatedAt: now.Add(-time.Second)}, true, WaitDispatch, "waiting for dispatch"},
		{"no drone", Delivery{Stage: StageCreated, UpdatedAt: old}, true, WaitNoDrone, "no drone available"},
		{"booked, time come", Delivery{Stage: StageScheduled, DispatchAt: &old, UpdatedAt: old}, true, WaitNoDrone, "no drone available"},
		{"assigned", Delivery{Stage: StageScheduled, DroneID: "d1", DroneAssignedAt: &assigned}, false, "", ""},
		{"flying", Delivery{Stage: StageHeadedToPickup}, false, "", ""},
		{"ended", Delivery{Stage: StageFailed}, false, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.waiting, c.d.Waiting())
			if !c.waiting {
				return
			}
			kind, text := c.d.WaitReason(now, 5*time.Second)
			assert.Equal(t, c.kind, kind)
			assert.Equal(t, c.text, text)
		})
	}
}

// A time for a person is written to its minute, with its day when it is
// not today's; a delivery time is rounded up to its minute first
// (ByMinute), so that "delivery by 15:52" is never earlier than the
// estimate.
func TestClockTime(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 5, 15, 0, 0, 0, time.UTC)
	eta := time.Date(2026, 12, 5, 15, 51, 48, 0, time.UTC)
	assert.Equal(t, "15:51 UTC", ClockTime(eta, now), "to the minute begun, as the tracking page writes it")
	assert.Equal(t, "15:52 UTC", ClockTime(ByMinute(eta), now), "a delivery time rounded up")
	assert.Equal(t, "15:51 UTC", ClockTime(ByMinute(eta.Truncate(time.Minute)), now), "a whole minute stays")
	assert.Equal(t, "Dec 6 00:00 UTC", ClockTime(ByMinute(time.Date(2026, 12, 5, 23, 59, 30, 0, time.UTC)), now), "rounded into the next day")
	assert.Equal(t, "Dec 12 14:05 UTC", ClockTime(time.Date(2026, 12, 12, 14, 5, 0, 0, time.FixedZone("CET", 3600)).Add(time.Hour), now))
}
