package wire_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"

	"github.com/fabrikam/dronedelivery/shared/wire"
)

func TestMessageID(t *testing.T) {
	assert.Equal(t, "d-1:requested", wire.MessageID("d-1", 0, "requested"))
	assert.Equal(t, "d-1:g2:requested", wire.MessageID("d-1", 2, "requested"))
	assert.NotEqual(t, wire.MessageID("d-1", 1, "retry-1"), wire.MessageID("d-1", 2, "retry-1"),
		"a reschedule's messages are not duplicates of the earlier run's")
}

func TestRedeliveryID(t *testing.T) {
	tests := []struct {
		id   string
		base string
		n    int
	}{
		{"d-1:requested", "d-1:requested", 0},
		{"d-1:requested:redelivery-1", "d-1:requested", 1},
		{"d-1:g2:requested:redelivery-12", "d-1:g2:requested", 12},
		{"n-7:retry-3", "n-7:retry-3", 0},
		{"n-7:retry-3:redelivery-2", "n-7:retry-3", 2},
		{"d-1:redelivery-0", "d-1:redelivery-0", 0},
		{"d-1:redelivery-01", "d-1:redelivery-01", 0},
		{"d-1:redelivery-x", "d-1:redelivery-x", 0},
		{"d-1:redelivery-", "d-1:redelivery-", 0},
	}
	for _, tt := range tests {
		base, n := wire.Redelivery(tt.id)
		assert.Equal(t, tt.base, base, tt.id)
		assert.Equal(t, tt.n, n, tt.id)
	}
	assert.Equal(t, "d-1:requested:redelivery-1", wire.RedeliveryID("d-1:requested", 1))
	assert.Equal(t, "d-1:requested:redelivery-3", wire.RedeliveryID("d-1:requested:redelivery-2", 3),
		"a copy of a copy is numbered from the first id")
	assert.NotEqual(t, wire.MessageID("n-7", 0, "retry-3"), wire.RedeliveryID("n-7:retry-2", 1),
		"a runtime's copy never takes the webhook step's own retry id")
}

func TestMessageIDFitsTheBrokersBound(t *testing.T) {
	long := strings.Repeat("a", 128)
	other := strings.Repeat("a", 127) + "b"
	for _, step := range []string{"requested", "t:1764800000000000000", "retry-12"} {
		for _, gen := range []int{0, 7} {
			id := wire.MessageID(long, gen, step)
			assert.LessOrEqual(t, len(id), wire.MaxMessageIDLength, id)
			assert.True(t, strings.HasSuffix(id, ":"+step), id)
			assert.Equal(t, id, wire.MessageID(long, gen, step), "the same subject and step give the same id")
			assert.NotEqual(t, id, wire.MessageID(other, gen, step), "subjects that share a prefix stay apart")
		}
	}
	multibyte := strings.Repeat("é", 64)
	assert.True(t, utf8.ValidString(wire.MessageID(multibyte, 0, "requested")), "the cut falls between runes")

	first := wire.MessageID(long, 3, "requested")
	copy1 := wire.RedeliveryID(first, 1)
	assert.LessOrEqual(t, len(copy1), wire.MaxMessageIDLength)
	_, n := wire.Redelivery(copy1)
	assert.Equal(t, 1, n)
	for want := 2; want <= 12; want++ {
		next := wire.RedeliveryID(copy1, want)
		assert.LessOrEqual(t, len(next), wire.MaxMessageIDLength)
		_, n := wire.Redelivery(next)
		assert.Equal(t, want, n, "a long id's copies are still counted")
		assert.Equal(t, next, wire.RedeliveryID(copy1, want), "and named the same each time")
		copy1 = next
	}
	assert.Equal(t, "d-1:requested", wire.MessageID("d-1", 0, "requested"), "short ids are unchanged")
}
