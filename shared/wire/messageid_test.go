package wire_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/fabrikam/dronedelivery/shared/wire"
)

func TestMessageID(t *testing.T) {
	assert.Equal(t, "d-1:requested", wire.MessageID("d-1", 0, "requested"))
	assert.Equal(t, "d-1:g2:requested", wire.MessageID("d-1", 2, "requested"))
	assert.NotEqual(t, wire.MessageID("d-1", 1, "retry-1"), wire.MessageID("d-1", 2, "retry-1"),
		"a reschedule's messages are not duplicates of the earlier run's")
}
