package host

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// decoded checks that a decoding failed when wantErr says it should and
// succeeded otherwise, and says whether there is a value to compare.
func decoded(t *testing.T, err error, wantErr bool) bool {
	t.Helper()
	if wantErr {
		assert.Error(t, err)
		return false
	}
	require.NoError(t, err)
	return true
}

func TestScalarDecoding(t *testing.T) {
	t.Parallel()
	when := time.Date(2025, 3, 14, 9, 26, 53, 589793200, time.UTC)
	tests := []struct {
		name    string
		raw     string
		str     string
		num     int64
		numErr  bool
		time    time.Time
		timeErr bool
	}{
		{name: "double-encoded string", raw: `"\"abc\""`, str: "abc", numErr: true, timeErr: true},
		{name: "plain string", raw: `"abc"`, str: "abc", numErr: true, timeErr: true},
		{name: "double-encoded number", raw: `"3"`, str: "3", num: 3, timeErr: true},
		{name: "number", raw: `12884901893`, str: "12884901893", num: 12884901893, timeErr: true},
		{name: "quoted number inside a string", raw: `"\"7\""`, str: "7", num: 7, timeErr: true},
		{name: "a plain id with a leading zero", raw: `"0042"`, str: "0042", num: 42, timeErr: true},
		{name: "absent", raw: ``},
		{name: "null", raw: `null`},
		{name: "double-encoded null", raw: `"null"`},
		{name: "empty string", raw: `""`},
		{name: "boolean", raw: `true`, str: "true", numErr: true, timeErr: true},
		{name: "double-encoded UTC time", raw: `"\"2025-03-14T09:26:53.5897932Z\""`, str: "2025-03-14T09:26:53.5897932Z", numErr: true, time: when},
		{name: "plain offset time", raw: `"2025-03-14T10:26:53.5897932+01:00"`, str: "2025-03-14T10:26:53.5897932+01:00", numErr: true, time: when},
		{name: "time without offset is UTC", raw: `"\"2025-03-14T09:26:53.5897932\""`, str: "2025-03-14T09:26:53.5897932", numErr: true, time: when},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := scalarString(json.RawMessage(tt.raw))
			require.NoError(t, err)
			assert.Equal(t, tt.str, s)

			n, err := scalarInt(json.RawMessage(tt.raw))
			if decoded(t, err, tt.numErr) {
				assert.Equal(t, tt.num, n)
			}

			got, err := scalarTime(json.RawMessage(tt.raw))
			if decoded(t, err, tt.timeErr) {
				assert.True(t, tt.time.Equal(got), "got %v, want %v", got, tt.time)
				assert.Equal(t, time.UTC, got.Location())
			}
		})
	}
}

func TestScalarStringRejectsContainers(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{`{"a":1}`, `[1]`} {
		_, err := scalarString(json.RawMessage(raw))
		assert.Error(t, err, raw)
	}
}

// decodeCase is a raw JSON value and what a decoder is to make of it.
type decodeCase[T any] struct {
	name    string
	raw     string
	want    T
	wantErr bool
}

// checkDecoding runs decode on each case, in parallel.
func checkDecoding[T any](t *testing.T, decode func(json.RawMessage) (T, error), cases []decodeCase[T]) {
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := decode(json.RawMessage(tt.raw))
			if decoded(t, err, tt.wantErr) {
				assert.Equal(t, tt.want, got)
			}
		})
	}
}

func TestObjectDecoding(t *testing.T) {
	t.Parallel()
	none := map[string]string{}
	// Each value as its raw JSON.
	decode := func(raw json.RawMessage) (map[string]string, error) {
		m, err := object(raw)
		got := map[string]string{}
		for k, v := range m {
			got[k] = string(v)
		}
		return got, err
	}
	checkDecoding(t, decode, []decodeCase[map[string]string]{
		{name: "object", raw: `{"operation":"delivery"}`, want: map[string]string{"operation": `"delivery"`}},
		{name: "string holding an object", raw: `"{\"operation\":\"delivery\"}"`, want: map[string]string{"operation": `"delivery"`}},
		{name: "null", raw: `null`, want: none},
		{name: "double-encoded null", raw: `"null"`, want: none},
		{name: "empty string", raw: `""`, want: none},
		{name: "a number", raw: `5`, wantErr: true},
		{name: "a string holding an array", raw: `"[1]"`, wantErr: true},
	})
}

func TestDecodeQuery(t *testing.T) {
	t.Parallel()
	checkDecoding(t, decodeQuery, []decodeCase[url.Values]{
		{name: "object of strings", raw: `{"units":"km","verbose":"true"}`, want: url.Values{"units": {"km"}, "verbose": {"true"}}},
		{name: "object of arrays", raw: `{"units":["km","mi"]}`, want: url.Values{"units": {"km", "mi"}}},
		{name: "JSON string of an old host", raw: `"{\"units\":\"km\"}"`, want: url.Values{"units": {"km"}}},
		{name: "raw query string", raw: `"?units=km&units=mi"`, want: url.Values{"units": {"km", "mi"}}},
		{name: "null", raw: `null`, want: url.Values{}},
		{name: "empty string", raw: `""`, want: url.Values{}},
		{name: "a number", raw: `5`, wantErr: true},
		{name: "a nested object", raw: `{"units":{"a":1}}`, wantErr: true},
	})
}

func TestHTTPBody(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, raw, want string }{
		{name: "string", raw: `"{\"a\":1}"`, want: `{"a":1}`},
		{name: "base64 stays as sent", raw: `"/wAQ"`, want: `/wAQ`},
		{name: "object", raw: `{"a":1}`, want: `{"a":1}`},
		{name: "array", raw: `[1,2]`, want: `[1,2]`},
		{name: "null", raw: `null`, want: ``},
		{name: "absent", raw: ``, want: ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, string(httpBody(json.RawMessage(tt.raw))))
		})
	}
}

func TestExpandSettings(t *testing.T) {
	t.Parallel()
	settings := map[string]string{"DeliveryQueue": "delivery-requests", "Env": "prod"}
	lookup := func(k string) (string, bool) { v, ok := settings[k]; return v, ok }
	tests := []struct{ in, want string }{
		{in: "delivery-requests", want: "delivery-requests"},
		{in: "%DeliveryQueue%", want: "delivery-requests"},
		{in: "%Env%-%DeliveryQueue%", want: "prod-delivery-requests"},
		{in: "%Missing%", want: "%Missing%"},
		{in: "50%-off-%Env%", want: "50%-off-prod"},
		{in: "%%", want: "%%"},
		{in: "100%", want: "100%"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, expandSettings(tt.in, lookup))
		})
	}
}

// Found by review of the invocation decoder: route parameters went through
// the metadata decoder, which undoes a double encoding, so a path segment
// that reads as a quoted string reached the handler without its quotes and
// named another resource than the same request forwarded would.
func TestRouteParamsAreNotDoubleDecoded(t *testing.T) {
	t.Parallel()
	req, err := decodeHTTPRequest(json.RawMessage(`{"Url":"https://x/api/deliveries/%22abc%22","Method":"GET","Params":{"id":"\"abc\"","n":7,"none":null}}`))
	require.NoError(t, err)
	assert.Equal(t, `"abc"`, req.Params["id"])
	assert.Equal(t, "7", req.Params["n"])
	assert.Equal(t, "", req.Params["none"])
}

// Found by FuzzDecodeHTTPInvocation (testdata/fuzz): a relative Url and a
// method that is not a token were accepted.
func TestInvocationURLAndMethodMustBeWellFormed(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		`{"Url":"0","Method":"GET"}`,
		`{"Url":"api/deliveries/1","Method":"GET"}`,
		`{"Url":"/api/x","Method":"\b"}`,
		`{"Url":"/api/x","Method":"GET /"}`,
	} {
		_, err := decodeHTTPRequest(json.RawMessage(raw))
		assert.Error(t, err, raw)
	}
	for _, raw := range []string{`{"Url":"/api/x","Method":"patch"}`, `{"Url":"","Method":"GET"}`, `{"Url":"https://h/api/x?a=1","Method":"GET"}`} {
		_, err := decodeHTTPRequest(json.RawMessage(raw))
		assert.NoError(t, err, raw)
	}
	_, err := parseInvocation([]byte("{\"Data\":{\"req\":{\"Method\":\"POST\",\"Body\":{\"a\":\"\xec\"}}}}"))
	assert.ErrorContains(t, err, "UTF-8")
}

// The host joins a repeated query key's values with commas in Query, but
// forwards the query string as received in Url: the handler sees the key
// given twice, as the standalone runtime does, and refuses it the same way.
func TestRepeatedQueryKeysReachTheHandlerAsGiven(t *testing.T) {
	t.Parallel()
	req, err := decodeHTTPRequest(json.RawMessage(`{"Url":"https://h/api/deliveries?limit=1&limit=2&stage=Created","Method":"GET","Query":{"limit":"1,2","stage":"Created"}}`))
	require.NoError(t, err)
	assert.Equal(t, []string{"1", "2"}, req.Query["limit"])
	assert.Equal(t, []string{"Created"}, req.Query["stage"])

	req, err = decodeHTTPRequest(json.RawMessage(`{"Url":"https://h/api/x?a=%zz","Method":"GET","Query":{"a":"%zz"}}`))
	require.NoError(t, err)
	assert.Equal(t, []string{"%zz"}, req.Query["a"], "a query Go cannot parse is taken from Query, as the host parsed it")
}
