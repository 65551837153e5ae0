package handlers_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

// TestEveryFunctionRefusesWhatItDoesNotTake sends a query parameter the
// API document does not declare, and a body where it declares none, to
// functions that take neither: each answers 400 naming it and does
// nothing, where before the request went ahead. The Functions host's own
// key (code), a declared parameter and an empty body object still pass.
func TestEveryFunctionRefusesWhatItDoesNotTake(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pickup, drop := at(0, 0), at(0.01, 0)
	field := func(resp *functionapp.Response) string {
		var p struct{ Field string }
		require.NoError(t, json.Unmarshal(resp.Body, &p), string(resp.Body))
		return p.Field
	}
	q := url.Values{"foo": {"1"}}

	resp := f.biz("IngestDelivery", &functionapp.Request{Method: http.MethodPost, Query: q, Body: requestBody("q1", pickup, drop, "Small", 1)})
	require.Equal(t, http.StatusBadRequest, resp.Status, string(resp.Body))
	assert.Equal(t, "foo", field(resp))
	get := f.biz("GetDelivery", &functionapp.Request{Method: http.MethodGet, Params: map[string]string{"id": "q1"}})
	assert.Equal(t, http.StatusNotFound, get.Status, "nothing was accepted")

	resp = f.fleet("PutDrone", &functionapp.Request{Method: http.MethodPut, Params: map[string]string{"id": "qd"}, Query: q,
		Body: []byte(`{"location":{"latitude":47.6,"longitude":-122.3}}`)})
	require.Equal(t, http.StatusBadRequest, resp.Status, string(resp.Body))
	assert.Equal(t, "foo", field(resp))
	get = f.fleet("GetDrone", &functionapp.Request{Method: http.MethodGet, Params: map[string]string{"id": "qd"}})
	assert.Equal(t, http.StatusNotFound, get.Status, "nothing was stored")

	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("q2", pickup, drop, "Small", 1)).Status)
	resp = f.biz("CancelDelivery", &functionapp.Request{Method: http.MethodDelete, Params: map[string]string{"id": "q2"}, Query: url.Values{"force": {"true"}}})
	require.Equal(t, http.StatusBadRequest, resp.Status, string(resp.Body))
	assert.Equal(t, "force", field(resp))
	assert.Equal(t, domain.StageCreated, f.delivery(t, "q2").Stage, "not cancelled")

	// A body where the operation takes none is refused too; an empty
	// object, which some clients send with every request, says nothing.
	resp = f.biz("CancelDelivery", &functionapp.Request{Method: http.MethodDelete, Params: map[string]string{"id": "q2"}, Body: []byte(`{"reason":"x"}`)})
	require.Equal(t, http.StatusBadRequest, resp.Status, string(resp.Body))
	assert.Equal(t, "body", field(resp))
	assert.Equal(t, domain.StageCreated, f.delivery(t, "q2").Stage, "not cancelled")

	// The Functions host's key, in any case, is the host's.
	get = f.biz("GetDelivery", &functionapp.Request{Method: http.MethodGet, Params: map[string]string{"id": "q2"}, Query: url.Values{"Code": {"k"}}})
	assert.Equal(t, http.StatusOK, get.Status, string(get.Body))
	d := f.delivery(t, "q2")
	resp = f.biz("CancelDelivery", &functionapp.Request{Method: http.MethodDelete, Params: map[string]string{"id": "q2"}, Body: []byte(" {} ")})
	require.Equal(t, http.StatusNoContent, resp.Status, string(resp.Body))
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("q3", pickup, drop, "Small", 1)).Status)
	d = f.delivery(t, "q3")

	// A page opened from a link takes what whoever passed the link on added.
	for _, q := range []url.Values{{"interval": {"5000"}}, {"utm_source": {"newsletter"}}} {
		page := f.call("TrackPage", "", &functionapp.Request{Method: http.MethodGet, Params: map[string]string{"trackingId": d.TrackingID}, Query: q})
		assert.Equal(t, http.StatusOK, page.Status, "%v: %s", q, page.Body)
	}
	// The feed the page reads is the API's, held to the document.
	feed := f.call("TrackFeed", "", &functionapp.Request{Method: http.MethodGet, Params: map[string]string{"trackingId": d.TrackingID}, Query: q})
	assert.Equal(t, http.StatusBadRequest, feed.Status, string(feed.Body))
}
