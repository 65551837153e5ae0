package wire_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// Each operator body is refused naming the field at fault.
func TestOperatorBodiesNameTheField(t *testing.T) {
	now := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	drone := func(b string) error { _, _, err := wire.ParseDroneAction([]byte(b)); return err }
	delivery := func(b string) error { _, _, _, err := wire.ParseDeliveryAction([]byte(b)); return err }
	pause := func(b string) error { _, err := wire.ParsePause("p-1", []byte(b), now); return err }
	tests := []struct {
		name  string
		parse func(string) error
		body  string
		field string
		code  string
	}{
		{"no action", drone, `{"reason":"x"}`, "action", domain.EINVALID},
		{"unknown action", drone, `{"action":"land","reason":"x"}`, "action", domain.EINVALID},
		{"unknown action, no reason", drone, `{"action":"fly"}`, "action", domain.EINVALID},
		{"unknown delivery action, no reason", delivery, `{"action":"ground"}`, "action", domain.EINVALID},
		{"blank reason", drone, `{"action":"ground","reason":"  "}`, "reason", domain.EINVALID},
		{"long reason", drone, `{"action":"ground","reason":"` + longText(501) + `"}`, "reason", domain.EINVALID},
		{"a control character in the reason", drone, `{"action":"ground","reason":"rotor\u0007"}`, "reason", domain.EINVALID},
		{"a bidirectional override in the reason", drone, `{"action":"ground","reason":"\u202erotor"}`, "reason", domain.EINVALID},
		{"outcome on a drone", drone, `{"action":"recall","reason":"x","outcome":"failed"}`, "outcome", domain.EINVALID},
		{"bad action id", drone, `{"action":"recall","reason":"x","actionId":"a b"}`, "actionId", domain.EINVALID},
		{"outcome on reassign", delivery, `{"action":"reassign","reason":"x","outcome":"failed"}`, "outcome", domain.EINVALID},
		{"unknown outcome", delivery, `{"action":"abort","reason":"x","outcome":"lost"}`, "outcome", domain.EINVALID},
		{"pause without reason", pause, `{"areaId":"north"}`, "reason", domain.EINVALID},
		{"pause until not a time", pause, `{"reason":"x","until":"soon"}`, "until", domain.EINVALID},
		{"pause until past", pause, `{"reason":"x","until":"2026-12-03T00:00:00Z"}`, "until", domain.EUNPROCESSABLE},
		{"pause bad area", pause, `{"reason":"x","areaId":"a/b"}`, "areaId", domain.EINVALID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.parse(tc.body)
			require.Error(t, err)
			assert.Equal(t, tc.field, domain.ErrorField(err))
			assert.Equal(t, tc.code, domain.ErrorCode(err))
		})
	}

	a, outcome, op, err := wire.ParseDeliveryAction([]byte(`{"action":"abort","reason":" storm ","actionId":"a-1"}`))
	require.NoError(t, err)
	assert.Equal(t, domain.ActionAbort, a)
	assert.Equal(t, domain.OutcomeFailed, outcome, "failed by default")
	assert.Equal(t, domain.OperatorAction{Name: "abort", Reason: "storm", ActionID: "a-1"}, op)
	p, err := wire.ParsePause("p-1", []byte(`{"reason":"x","until":null}`), now)
	require.NoError(t, err)
	assert.True(t, p.Until.IsZero(), "null: until lifted")
}

func longText(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'x'
	}
	return string(b)
}
