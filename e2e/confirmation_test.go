package e2e

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/browser"
)

// TestProofOfDeliveryEndToEnd flies a delivery that asks for a picture to
// its door, then sends proofs of delivery that the service must refuse,
// one it takes, and a second one; and reads the one it took back from the
// delivery, its history, its own endpoint and the customer's tracking page.
// The service runs with CONFIRMATION_RADIUS_M=150.
func TestProofOfDeliveryEndToEnd(t *testing.T) {
	t.Parallel()
	p := startServeEnv(t, t.TempDir(), []string{"CONFIRMATION_RADIUS_M=150"})
	a := signUp(t, p.base)
	home := domain.Location{Latitude: 47.600, Longitude: -122.330}
	pickup := domain.Location{Latitude: 47.605, Longitude: -122.330}
	drop := domain.Location{Latitude: 47.612, Longitude: -122.325}
	putDrone(t, a, "pod-drone", home, "Medium")
	body := deliveryRequest("pod", pickup, drop, "Small", 1)
	body["confirmationRequired"] = "Picture"
	resp := a.call(t, "POST", "/api/deliveryrequests", body)
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	var acc struct {
		TrackingID string `json:"trackingId"`
	}
	resp.decode(t, &acc)
	waitStage(t, a, "pod", domain.StageScheduled)

	// 130 m north of the door: inside the configured 150 m, outside the
	// default 100 m. 220 m: outside both.
	near := domain.Location{Latitude: drop.Latitude + 0.00117, Longitude: drop.Longitude}
	far := domain.Location{Latitude: drop.Latitude + 0.00198, Longitude: drop.Longitude}
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte("proof"), 200)...)
	picture := "data:image/png;base64," + base64.StdEncoding.EncodeToString(png)
	proof := func(kind string, where domain.Location, blob string) map[string]any {
		return map[string]any{"dateTime": time.Now().UTC().Format(time.RFC3339), "geoCoordinates": where,
			"confirmationType": kind, "confirmationBlob": blob}
	}
	confirm := func(b map[string]any) *response { return a.call(t, "POST", "/api/deliveries/pod/confirmations", b) }
	refused := func(what string, r *response, status int, field string) {
		t.Helper()
		require.Equal(t, status, r.Status, "%s: %s", what, r.Body)
		assert.Equal(t, "application/problem+json", r.Header.Get("Content-Type"), what)
		var prob struct{ Field string }
		r.decode(t, &prob)
		assert.Equal(t, field, prob.Field, what)
	}

	clock := time.Now().UTC()
	report := func(loc domain.Location) {
		clock = clock.Add(15 * time.Second)
		postReport(t, a, "pod-drone", loc, 90, clock)
	}
	for _, loc := range flightPath(home, pickup, 4) {
		report(loc)
	}
	waitStage(t, a, "pod", domain.StageHeadedToDropoff)
	refused("a proof before the delivery", confirm(proof("Picture", near, picture)), http.StatusConflict, "")
	for _, loc := range flightPath(pickup, drop, 5)[1:] {
		report(loc)
	}
	waitStage(t, a, "pod", domain.StageCompleted)

	big := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 300<<10)...)
	refused("too far", confirm(proof("Picture", far, picture)), http.StatusUnprocessableEntity, "geoCoordinates")
	refused("too big", confirm(proof("Picture", near, "data:image/png;base64,"+base64.StdEncoding.EncodeToString(big))), http.StatusRequestEntityTooLarge, "confirmationBlob")
	refused("another type than required", confirm(proof("Voice", near, "data:audio/mpeg;base64,SUQzBAAAAAAA")), http.StatusUnprocessableEntity, "confirmationType")
	refused("a blob type a picture does not take", confirm(proof("Picture", near, "data:application/pdf;base64,JVBERi0xLjQK")), http.StatusUnprocessableEntity, "confirmationBlob")
	refused("a blob unlike its type", confirm(proof("Picture", near, "data:image/jpeg;base64,"+base64.StdEncoding.EncodeToString(png))), http.StatusUnprocessableEntity, "confirmationBlob")
	assert.Nil(t, confirmationOf(t, a), "refused proofs change nothing")

	resp = confirm(proof("Picture", near, picture))
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	assert.Equal(t, "/api/deliveries/pod/confirmation", resp.Header.Get("Location"))
	refused("a second proof", confirm(proof("Picture", drop, picture)), http.StatusConflict, "")

	// On the delivery, without the blob.
	c := confirmationOf(t, a)
	require.NotNil(t, c)
	assert.Equal(t, "Picture", c["confirmationType"])
	assert.Equal(t, "image/png", c["blobType"])
	assert.EqualValues(t, len(png), c["blobBytes"])
	assert.InDelta(t, 130, c["distanceMeters"], 1)
	assert.Equal(t, "/api/deliveries/pod/confirmation", c["href"])
	assert.NotContains(t, c, "confirmationBlob")
	// At its link, with the blob as it was sent.
	var full map[string]any
	resp = a.call(t, "GET", "/api/deliveries/pod/confirmation", nil)
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	resp.decode(t, &full)
	assert.Equal(t, picture, full["confirmationBlob"])
	// In the history.
	hist := historyOf(t, a, "pod")
	last := hist[len(hist)-1]
	assert.Equal(t, domain.EventConfirmed, last.Kind)
	assert.Equal(t, "confirmed by a picture", last.Note)
	assert.Equal(t, domain.StageCompleted, hist[len(hist)-2].Stage)
	// In the listing, as on the delivery.
	var page struct {
		Items []struct {
			ID           string         `json:"id"`
			Confirmation map[string]any `json:"confirmation"`
		} `json:"items"`
	}
	a.call(t, "GET", "/api/deliveries?stage=Completed", nil).decode(t, &page)
	require.Len(t, page.Items, 1)
	assert.Equal(t, c, page.Items[0].Confirmation)

	// The customer's feed and page say who confirmed it, and nothing of where.
	var feed struct {
		Stage        domain.Stage   `json:"stage"`
		Confirmation map[string]any `json:"confirmation"`
		History      []domain.Event `json:"history"`
	}
	call(t, "GET", p.base+"/api/track/"+acc.TrackingID+"/feed", nil).decode(t, &feed)
	assert.Equal(t, domain.StageCompleted, feed.Stage)
	assert.Equal(t, "Picture", feed.Confirmation["confirmationType"])
	assert.Equal(t, "a picture", feed.Confirmation["by"])
	assert.NotContains(t, feed.Confirmation, "geoCoordinates")
	assert.Equal(t, domain.StageCompleted, feed.History[len(feed.History)-1].Stage)
	for _, e := range feed.History {
		assert.Empty(t, e.Kind, "the feed's history holds the changes of stage")
	}
	shot := filepath.Join(t.ArtifactDir(), "tracking-page-confirmed.png")
	res := func() browser.BrowserResult {
		browserTurn.Lock()
		defer browserTurn.Unlock() // also when RunBrowser fails the test
		return browser.RunBrowser(t, p.base+"/api/track/"+acc.TrackingID+"?interval=300", shot, 30*time.Second)
	}()
	assert.Equal(t, string(domain.StageCompleted), res.FinalStage)
	assert.Contains(t, res.Text, "confirmed by a picture")
	assert.Empty(t, res.Errors, "no errors in the page")
	p.stop(t)
}

// confirmationOf returns the confirmation GET /api/deliveries/pod shows.
func confirmationOf(t *testing.T, a api) map[string]any {
	t.Helper()
	var d struct {
		Confirmation map[string]any `json:"confirmation"`
	}
	resp := a.call(t, "GET", "/api/deliveries/pod", nil)
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	resp.decode(t, &d)
	return d.Confirmation
}
