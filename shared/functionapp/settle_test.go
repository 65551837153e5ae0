package functionapp_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

// A dead-letter description is the step's error, cut to 1,024 bytes
// without cutting a character in two.
func TestPoisonDescription(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "permanent: no such delivery", functionapp.PoisonDescription(errors.New("permanent: no such delivery")))
	long := strings.Repeat("x", 1023) + "é and more"
	got := functionapp.PoisonDescription(errors.New(long))
	assert.Equal(t, strings.Repeat("x", 1023), got)
	assert.True(t, utf8.ValidString(got))
	exact := strings.Repeat("y", 1022) + "é"
	assert.Equal(t, exact, functionapp.PoisonDescription(errors.New(exact)), "1,024 bytes fit")
}
