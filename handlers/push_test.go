package handlers

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// A stream ends when the page has nothing more to wait for: a proof of
// delivery still to come keeps it open.
func TestEndedWaitsForAProofOfDelivery(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		stage   domain.Stage
		require domain.ConfirmationType
		proof   bool
		want    bool
	}{
		{domain.StageHeadedToDropoff, domain.ConfirmationNone, false, false},
		{domain.StageCompleted, domain.ConfirmationNone, false, true},
		{domain.StageCompleted, "", false, true},
		{domain.StageCompleted, domain.ConfirmationPicture, false, false},
		{domain.StageCompleted, domain.ConfirmationPicture, true, true},
		{domain.StageCancelled, domain.ConfirmationPicture, false, true},
		{domain.StageFailed, domain.ConfirmationNone, false, true},
	} {
		d := &domain.Delivery{Stage: c.stage}
		d.Request.ConfirmationRequired = c.require
		if c.proof {
			d.Confirmation = &domain.Confirmation{ConfirmationType: c.require}
		}
		assert.Equal(t, c.want, ended(d), "%+v", c)
	}
}

func TestPushConfigBoundsThePollInterval(t *testing.T) {
	t.Parallel()
	assert.Equal(t, DefaultPushPollInterval, PushConfig{}.withDefaults().PollInterval)
	assert.Equal(t, MinPushPollInterval, PushConfig{PollInterval: 1}.withDefaults().PollInterval)
}

func TestConsolePushSendsAtMostOncePerSecond(t *testing.T) {
	var c consolePush
	t0 := time.Unix(1_800_000_000, 0)
	assert.True(t, c.due(t0), "the first change is sent")
	assert.False(t, c.due(t0.Add(999*time.Millisecond)), "within a second of the last send")
	assert.True(t, c.due(t0.Add(time.Second)))
	assert.False(t, c.due(t0.Add(1500*time.Millisecond)))
	assert.True(t, c.due(t0.Add(2500*time.Millisecond)))
}
