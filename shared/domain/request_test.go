package domain_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

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
