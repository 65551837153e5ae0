package handlers_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// pngBlob is a data: URI whose content starts as a PNG file does, padded
// to size bytes.
func pngBlob(size int) string {
	b := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{7}, size-8)...)
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(b)
}

// confirmation is a POST …/confirmations body.
func confirmation(kind string, where domain.Location, blob string) []byte {
	m := map[string]any{"dateTime": t0.Format(time.RFC3339), "geoCoordinates": where, "confirmationType": kind}
	if blob != "" {
		m["confirmationBlob"] = blob
	}
	return mustJSON(m)
}

// headedToDropoff flies a delivery asking for a confirmation of kind from
// its pickup toward its dropoff and returns the dropoff.
func (f *fixture) headedToDropoff(t *testing.T, id, kind string) domain.Location {
	t.Helper()
	pickup, drop := at(0, 0), at(0.005, 0)
	f.putDrone(t, domain.Drone{ID: "drone-" + id, Location: pickup})
	body, _ := json.Marshal(map[string]any{"deliveryId": id, "pickupLocation": pickup, "dropOffLocation": drop,
		"confirmationRequired": kind, "packageInfo": map[string]any{"size": "Small", "weight": 1}})
	require.Equal(t, http.StatusAccepted, f.ingest(t, body).Status)
	f.drain(t)
	f.report(t, "drone-"+id, pickup, 90, t0.Add(time.Minute))
	require.Equal(t, domain.StageHeadedToDropoff, f.delivery(t, id).Stage)
	return drop
}

// delivered flies a delivery that asks for no confirmation to its
// dropoff, which completes it, and returns the dropoff.
func (f *fixture) delivered(t *testing.T, id string) domain.Location {
	t.Helper()
	drop := f.headedToDropoff(t, id, "None")
	f.report(t, "drone-"+id, drop, 80, t0.Add(2*time.Minute))
	require.Equal(t, domain.StageCompleted, f.delivery(t, id).Stage)
	return drop
}

func (f *fixture) confirm(id string, body []byte) *functionapp.Response {
	return f.biz("PostConfirmation", &functionapp.Request{Method: "POST", Params: map[string]string{"id": id}, Body: body})
}

func TestConfirmationIsValidatedStoredOnceAndReadable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	drop := f.headedToDropoff(t, "conf", "Picture")
	near := domain.Location{Latitude: drop.Latitude + 0.0003, Longitude: drop.Longitude} // about 33 m
	picture := pngBlob(1024)
	assert.Equal(t, http.StatusConflict, f.confirm("conf", confirmation("Picture", near, picture)).Status, "not before it is delivered")

	f.report(t, "drone-conf", drop, 80, t0.Add(2*time.Minute))
	require.Equal(t, domain.StageCompleted, f.delivery(t, "conf").Stage)
	jpeg := "data:image/jpeg;base64," + base64.StdEncoding.EncodeToString(append([]byte{0xff, 0xd8, 0xff, 0xe0}, make([]byte, 64)...))
	future := confirmation("Picture", near, picture)
	future = bytes.Replace(future, []byte(t0.Format(time.RFC3339)), []byte(t0.Add(time.Hour).Format(time.RFC3339)), 1)
	past := confirmation("Picture", near, picture)
	past = bytes.Replace(past, []byte(t0.Format(time.RFC3339)), []byte("2020-01-01T00:00:00Z"), 1)
	for _, c := range []struct {
		name   string
		body   []byte
		status int
		field  string
	}{
		{"too far", confirmation("Picture", domain.Location{Latitude: drop.Latitude + 0.002, Longitude: drop.Longitude}, picture), 422, "geoCoordinates"},
		{"another type than required", confirmation("Voice", near, "data:audio/mpeg;base64,SUQzAwAAAAAA"), 422, "confirmationType"},
		{"a blob type a picture does not take", confirmation("Picture", near, "data:audio/mpeg;base64,SUQzAwAAAAAA"), 422, "confirmationBlob"},
		{"a blob that is not what it declares", confirmation("Picture", near, "data:image/png"+jpeg[len("data:image/jpeg"):]), 422, "confirmationBlob"},
		{"a blob over 256 KiB", confirmation("Picture", near, pngBlob(wire.MaxConfirmationBlobBytes+1)), 413, "confirmationBlob"},
		{"no blob", confirmation("Picture", near, ""), 400, "confirmationBlob"},
		{"a blob that is not a data: URI", confirmation("Picture", near, base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\n"))), 400, "confirmationBlob"},
		{"a blob that is not base64", confirmation("Picture", near, "data:image/png;base64,***"), 400, "confirmationBlob"},
		{"dated in the future", future, 422, "dateTime"},
		{"dated before the pickup", past, 422, "dateTime"},
	} {
		resp := f.confirm("conf", c.body)
		assert.Equal(t, c.status, resp.Status, "%s: %s", c.name, resp.Body)
		assert.Equal(t, c.field, problemOf(t, resp).Field, c.name)
	}
	require.Nil(t, f.delivery(t, "conf").Confirmation, "a refused confirmation changes nothing")

	resp := f.confirm("conf", confirmation("Picture", near, jpeg))
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	assert.Equal(t, "/api/deliveries/conf/confirmation", resp.Header.Get("Location"))
	var made map[string]any
	require.NoError(t, json.Unmarshal(resp.Body, &made))
	assert.Equal(t, "image/jpeg", made["blobType"])
	assert.EqualValues(t, 68, made["blobBytes"])
	assert.InDelta(t, 33.4, made["distanceMeters"], 0.5)
	assert.NotContains(t, made, "confirmationBlob")

	for _, again := range [][]byte{confirmation("Picture", near, jpeg), confirmation("Picture", near, picture)} {
		resp := f.confirm("conf", again)
		assert.Equal(t, http.StatusConflict, resp.Status, "a second confirmation: %s", resp.Body)
	}

	// Readable: on the delivery without the blob, at href with it, and in
	// the history.
	get := func(name string) *functionapp.Response {
		return f.biz(name, &functionapp.Request{Method: "GET", Params: map[string]string{"id": "conf"}})
	}
	var view struct {
		Confirmation map[string]any `json:"confirmation"`
	}
	require.NoError(t, json.Unmarshal(get("GetDelivery").Body, &view))
	assert.Equal(t, "Picture", view.Confirmation["confirmationType"])
	assert.Equal(t, "/api/deliveries/conf/confirmation", view.Confirmation["href"])
	assert.NotContains(t, view.Confirmation, "confirmationBlob")
	var full map[string]any
	resp = get("GetConfirmation")
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	require.NoError(t, json.Unmarshal(resp.Body, &full))
	assert.Equal(t, jpeg, full["confirmationBlob"], "the blob as it was sent")
	assert.Equal(t, "conf", full["deliveryId"])
	var hist struct {
		Events []domain.Event `json:"events"`
	}
	require.NoError(t, json.Unmarshal(get("GetHistory").Body, &hist))
	last := hist.Events[len(hist.Events)-1]
	assert.Equal(t, domain.EventConfirmed, last.Kind)
	assert.Equal(t, domain.StageCompleted, last.Stage)
	assert.Equal(t, "confirmed by a picture", last.Note)
	require.NoError(t, domain.LegalHistory(hist.Events))

	// Another account sees none of it.
	_, otherKey := f.signUpOther(t)
	other := f.call("GetConfirmation", otherKey, &functionapp.Request{Method: "GET", Params: map[string]string{"id": "conf"}})
	assert.Equal(t, http.StatusNotFound, other.Status)
	other = f.call("PostConfirmation", otherKey, &functionapp.Request{Method: "POST", Params: map[string]string{"id": "conf"}, Body: confirmation("Picture", near, picture)})
	assert.Equal(t, http.StatusNotFound, other.Status)
}

func TestConfirmationOfAnyTypeWhenNoneIsRequired(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	drop := f.delivered(t, "any")
	assert.Equal(t, http.StatusBadRequest, f.confirm("any", confirmation("None", drop, pngBlob(64))).Status, "None takes no blob")
	resp := f.confirm("any", confirmation("FingerPrint", drop, pngBlob(64)))
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))

	// None needs no blob, and GET …/confirmation has none to show.
	drop = f.delivered(t, "plain")
	require.Equal(t, http.StatusCreated, f.confirm("plain", confirmation("None", drop, "")).Status)
	resp = f.biz("GetConfirmation", &functionapp.Request{Method: "GET", Params: map[string]string{"id": "plain"}})
	require.Equal(t, http.StatusOK, resp.Status)
	assert.NotContains(t, string(resp.Body), "confirmationBlob")
	resp = f.biz("GetConfirmation", &functionapp.Request{Method: "GET", Params: map[string]string{"id": "nothing-here"}})
	assert.Equal(t, http.StatusNotFound, resp.Status)
}

func TestConfirmationRadiusIsConfigurable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	drop := f.delivered(t, "wide")
	away := domain.Location{Latitude: drop.Latitude + 0.002, Longitude: drop.Longitude} // about 222 m
	resp := f.confirm("wide", confirmation("None", away, ""))
	require.Equal(t, http.StatusUnprocessableEntity, resp.Status)
	assert.Contains(t, problemOf(t, resp).Detail, "within 100 m of the dropoff; it is 222 m away")

	wide := handlers.New(handlers.Deps{Store: f.store, Bus: f.bus, Clock: f.clock, IDs: platform.IDs{}, Log: slog.New(slog.DiscardHandler),
		Config: handlers.Config{Confirmation: domain.ConfirmationRules{RadiusKm: 0.25}}})
	resp = functionapp.Call(t.Context(), wide.Registry()["PostConfirmation"].HTTP, &functionapp.Request{Method: "POST",
		Params: map[string]string{"id": "wide"}, Body: confirmation("None", away, ""),
		Header: http.Header{"Authorization": {"Bearer " + f.key}, "Content-Type": {"application/json"}}})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	assert.Equal(t, fmt.Sprint(222.4), fmt.Sprint(f.delivery(t, "wide").Confirmation.DistanceMeters))
}
