package platform

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewIDsAreDistinctAndSortInTheOrderTheyWereMade(t *testing.T) {
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	prev := ""
	seen := map[string]bool{}
	for range 10000 {
		id := IDs{}.NewID()
		require.Regexp(t, hex32, id)
		require.False(t, seen[id], "id %s made twice", id)
		seen[id] = true
		// The 13th digit is the UUID's version.
		require.Equal(t, byte('7'), id[12], id)
		require.Greater(t, id, prev, "an id sorts after the one made before it")
		prev = id
	}
}

func TestNewTrackingIDsAreLongAndDistinct(t *testing.T) {
	a, b := IDs{}.NewTrackingID(), IDs{}.NewTrackingID()
	assert.Len(t, a, 32, "160 bits in base32")
	assert.NotEqual(t, a, b)
}
