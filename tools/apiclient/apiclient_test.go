package apiclient

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSendAndTypedCalls(t *testing.T) {
	t.Parallel()
	type seen struct{ method, path, auth, contentType, agent, trace, body string }
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, seen{r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"), r.Header.Get("Content-Type"),
			r.Header.Get("User-Agent"), r.Header.Get("Traceparent"), string(b)})
		switch r.URL.Path {
		case "/api/accounts":
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`{"accountId":"acct-1","apiKey":"key-1"}`))
		case "/api/deliveries/a b":
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"title":"Not Found","status":404,"detail":"no delivery a b"}`))
		default:
			w.WriteHeader(http.StatusAccepted)
			w.Write([]byte(`{"accepted":1}`))
		}
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	c := New(srv.URL+"/", "", srv.Client())
	c.UserAgent = "apiclient-test"
	c.Header = http.Header{"Traceparent": {"00-1-2-01"}}

	acct, err := c.WithKey("ignored").SignUp(ctx, Registration{Name: "Fabrikam", ContactEmail: "ops@fabrikam.example"})
	require.NoError(t, err)
	assert.Equal(t, Account{AccountID: "acct-1", APIKey: "key-1"}, acct)

	business := c.WithKey(acct.APIKey)
	_, err = business.GetDelivery(ctx, "a b")
	assert.Equal(t, http.StatusNotFound, StatusOf(err))
	assert.False(t, Unauthorized(err))
	assert.ErrorContains(t, err, "GET /api/deliveries/a%20b: 404 Not Found: no delivery a b")

	require.NoError(t, business.PostTelemetry(ctx, "drone-1", Report{Timestamp: "2026-12-04T00:00:00Z"}))
	resp, err := business.Send(ctx, http.MethodPost, "/raw", []byte(`{not json`))
	require.NoError(t, err)
	assert.Equal(t, http.StatusAccepted, resp.Status)

	require.Len(t, got, 4)
	assert.Equal(t, seen{"POST", "/api/accounts", "", "application/json", "apiclient-test", "00-1-2-01",
		`{"name":"Fabrikam","contactEmail":"ops@fabrikam.example"}`}, got[0], "a sign-up carries no key")
	assert.Equal(t, seen{"GET", "/api/deliveries/a%20b", "Bearer key-1", "", "apiclient-test", "00-1-2-01", ""}, got[1])
	var report map[string]any
	require.NoError(t, json.Unmarshal([]byte(got[2].body), &report))
	assert.Equal(t, "/api/drones/drone-1/telemetry", got[2].path)
	assert.Equal(t, "2026-12-04T00:00:00Z", report["timestamp"])
	assert.Equal(t, `{not json`, got[3].body, "bytes go as they are")
}
