package wire_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

func TestCursorRoundTripKeepsNanoseconds(t *testing.T) {
	c := wire.Cursor{CreatedAt: time.Date(2026, 11, 26, 15, 4, 5, 123456789, time.UTC), ID: "order-1001"}
	s := wire.EncodeCursor(c)
	assert.Regexp(t, `^[A-Za-z0-9_-]+$`, s, "safe in a URL as it is")
	got, err := wire.DecodeCursor(s)
	require.NoError(t, err)
	assert.Equal(t, c, *got)

	l, err := wire.ParseDeliveryListing(url.Values{"cursor": {s}})
	require.NoError(t, err)
	assert.Equal(t, c, *l.After)
	assert.Equal(t, wire.DefaultListLimit, l.Limit)
}

func TestParseDeliveryListing(t *testing.T) {
	l, err := wire.ParseDeliveryListing(url.Values{"stage": {"HeadedToDropoff"}, "createdFrom": {"2026-11-26T16:00:00+01:00"},
		"createdTo": {"2026-11-27T00:00:00.25Z"}, "limit": {"200"}})
	require.NoError(t, err)
	assert.Equal(t, domain.StageHeadedToDropoff, l.Stage)
	assert.Equal(t, time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC), l.CreatedFrom)
	assert.Equal(t, time.Date(2026, 11, 27, 0, 0, 0, 250e6, time.UTC), l.CreatedTo)
	assert.Equal(t, 200, l.Limit)
	assert.Nil(t, l.After)

	for _, bad := range []string{"", "e30", "eyJjIjoiMjAyNi0xMS0yNlQxNTowNDowNVoiLCJpIjoiYS9iIn0"} {
		_, err := wire.DecodeCursor(bad)
		assert.Equal(t, "cursor", domain.ErrorField(err), "%q: %v", bad, err)
	}
}

// TestCheckQueryLeavesTheHostKeyInAnyCase: the Functions host reads its
// function key from "code" whatever its case and passes the query on, so
// no spelling of it is refused; any other parameter is held to the list.
func TestCheckQueryLeavesTheHostKeyInAnyCase(t *testing.T) {
	for _, q := range []string{"code=k", "Code=k", "CODE=k&limit=5"} {
		v, err := url.ParseQuery(q)
		require.NoError(t, err)
		assert.NoError(t, wire.CheckQuery(v, "limit"), q)
	}
	v, _ := url.ParseQuery("codes=k")
	err := wire.CheckQuery(v, "limit")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "codes")
}

// A parameter with no name, or one whose name is not printable text, is
// refused naming the query, not echoing the name back.
func TestCheckQueryRefusesNamesThatAreNoNames(t *testing.T) {
	for q, detail := range map[string]string{
		"=5":                           "has a parameter with no name",
		"%00=1":                        "has a parameter whose name is not printable text",
		"k%FF=1":                       "has a parameter whose name is not printable text",
		"a%0Ab=1":                      "has a parameter whose name is not printable text",
		"limit=5&":                     "",
		strings.Repeat("a", 65) + "=1": "has a parameter whose name is longer than 64 bytes",
	} {
		v, err := url.ParseQuery(q)
		require.NoError(t, err, q)
		err = wire.CheckQuery(v, "limit")
		if detail == "" {
			assert.NoError(t, err, q)
			continue
		}
		var e *domain.Error
		require.ErrorAs(t, err, &e, q)
		assert.Equal(t, "query", e.Field, q)
		assert.Equal(t, detail, e.Message, q)
	}
}
