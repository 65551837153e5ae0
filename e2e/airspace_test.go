package e2e

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// TestAirspaceEndToEnd: the operator puts, reads, lists and deletes
// service areas and no-fly zones through the binary on the embedded
// backend; bad GeoJSON is refused naming the position at fault; businesses
// and strangers are kept out.
func TestAirspaceEndToEnd(t *testing.T) { onEmbedded(t, airspaceScenario) }

// TestAirspaceOnAzureAdapters runs the same scenario with the zones stored
// in Cosmos DB, through the local doubles.
func TestAirspaceOnAzureAdapters(t *testing.T) { onAzure(t, airspaceScenario) }

// stadium is a no-fly zone around a stadium south of downtown Seattle.
const stadium = `{"type":"Polygon","coordinates":[[[-122.3340,47.5940],[-122.3300,47.5940],[-122.3300,47.5965],[-122.3340,47.5965],[-122.3340,47.5940]]]}`

// zonePage is a page of a zone listing.
type zonePage struct {
	Zones []wire.ZoneView `json:"zones"`
	Next  string          `json:"next"`
}

func airspaceScenario(t *testing.T, p *proc) {
	a := signUp(t, p.base)

	// Only the operator manages the airspace: a business is forbidden, a
	// caller without a key unauthorized.
	body := `{"name":"Stadium","geometry":` + stadium + `}`
	var resp *response
	for _, req := range []struct {
		method, path string
		body         any
	}{
		{http.MethodPut, "/api/noflyzones/stadium", body},
		{http.MethodGet, "/api/serviceareas", nil},
		{http.MethodDelete, "/api/noflyzones/stadium", nil},
	} {
		resp = a.call(t, req.method, req.path, req.body)
		assert.Equal(t, http.StatusForbidden, resp.Status, "%s %s: %s", req.method, req.path, resp.Body)
	}
	sendingMalformed(t, func() { resp = call(t, http.MethodPut, p.base+"/api/noflyzones/stadium", body) })
	assert.Equal(t, http.StatusUnauthorized, resp.Status, string(resp.Body))

	// Create, read, replace.
	resp = a.fleet(t, http.MethodPut, "/api/noflyzones/stadium", body)
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	assert.Equal(t, "/api/noflyzones/stadium", resp.Header.Get("Location"))
	var z wire.ZoneView
	resp.decode(t, &z)
	assert.Equal(t, "stadium", z.ID)
	assert.Equal(t, "Stadium", z.Name)
	assert.JSONEq(t, stadium, string(z.Geometry))

	resp = a.fleet(t, http.MethodGet, "/api/noflyzones/stadium", nil)
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	resp.decode(t, &z)
	assert.JSONEq(t, stadium, string(z.Geometry))

	// A game this evening: from an hour ahead, for five hours.
	kickoff := time.Now().UTC().Add(time.Hour).Truncate(time.Minute)
	final := kickoff.Add(5 * time.Hour)
	game := `{"name":"Game day","geometry":` + stadium + `,"validFrom":"` + kickoff.Format(time.RFC3339) + `","validTo":"` + final.Format(time.RFC3339) + `"}`
	resp = a.fleet(t, http.MethodPut, "/api/noflyzones/stadium", game)
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	resp = a.fleet(t, http.MethodGet, "/api/noflyzones/stadium", nil)
	resp.decode(t, &z)
	assert.Equal(t, "Game day", z.Name)
	require.NotNil(t, z.ValidFrom)
	require.NotNil(t, z.ValidTo)
	assert.Equal(t, final.Format(time.RFC3339), z.ValidTo.UTC().Format(time.RFC3339))
	assert.Equal(t, "upcoming", z.State)

	// A service area of the same id is another resource.
	resp = a.fleet(t, http.MethodGet, "/api/serviceareas/stadium", nil)
	assert.Equal(t, http.StatusNotFound, resp.Status, string(resp.Body))
	area := `{"name":"Downtown","geometry":{"type":"MultiPolygon","coordinates":[[[[-122.36,47.58],[-122.30,47.58],[-122.30,47.63],[-122.36,47.63],[-122.36,47.58]]]]}}`
	for _, id := range []string{"downtown", "stadium"} {
		resp = a.fleet(t, http.MethodPut, "/api/serviceareas/"+id, area)
		require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	}

	// Listing, in pages.
	for _, id := range []string{"pier", "arena"} {
		resp = a.fleet(t, http.MethodPut, "/api/noflyzones/"+id, `{"geometry":`+stadium+`}`)
		require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	}
	var ids []string
	after := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5, "the listing ends")
		path := "/api/noflyzones?limit=2"
		if after != "" {
			path += "&after=" + after
		}
		resp = a.fleet(t, http.MethodGet, path, nil)
		require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
		var page zonePage
		resp.decode(t, &page)
		for _, z := range page.Zones {
			ids = append(ids, z.ID)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	assert.Equal(t, []string{"arena", "pier", "stadium"}, ids)
	resp = a.fleet(t, http.MethodGet, "/api/serviceareas", nil)
	var areas zonePage
	resp.decode(t, &areas)
	require.Len(t, areas.Zones, 2)
	assert.Equal(t, "downtown", areas.Zones[0].ID)
	assert.Contains(t, string(areas.Zones[0].Geometry), `"MultiPolygon"`)

	// Bad input is refused naming the field, and changes nothing.
	for _, tc := range []struct {
		body, field string
		status      int
	}{
		{`{"geometry":{"type":"Polygon","coordinates":[[[-122.33,47.59],[-122.32,47.59],[-122.32,47.60],[-122.33,47.60],[-122.33,47.61]]]}}`, "geometry.coordinates[0][4]", 400},
		{`{"geometry":{"type":"Point","coordinates":[-122.33,47.59]}}`, "geometry.type", 400},
		{`{"geometry":{"type":"Polygon","coordinates":[[[-122.33,47.59],[-122.32,47.59],[-122.32,97.60],[-122.33,47.59]]]}}`, "geometry.coordinates[0][2][1]", 400},
		{`{"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,1],[1,0],[0,1],[0,0]]]}}`, "geometry.coordinates[0][1]", 400},
		{`{"geometry":` + stadium + `,"validFrom":"2026-12-06T22:00:00Z","validTo":"2026-12-06T17:00:00Z"}`, "validTo", 400},
		{`{"geometry":` + stadium + `,"validFrom":"2026-11-06T17:00:00Z","validTo":"2026-11-06T22:00:00Z"}`, "validTo", 422},
		{`{"name":"x"}`, "geometry", 400},
		{`{"geometry":` + stadium + `,"colour":"red"}`, "colour", 400},
	} {
		sendingMalformed(t, func() {
			resp = a.fleet(t, http.MethodPut, "/api/noflyzones/stadium", tc.body)
		})
		assert.Equal(t, tc.status, resp.Status, "%s: %s", tc.body, resp.Body)
		assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
		var problem struct{ Field string }
		resp.decode(t, &problem)
		assert.Equal(t, tc.field, problem.Field, "%s: %s", tc.body, resp.Body)
	}
	big := `{"name":"` + strings.Repeat("x", 300<<10) + `"}`
	sendingMalformed(t, func() { resp = a.fleet(t, http.MethodPut, "/api/noflyzones/big", big) })
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.Status, string(resp.Body))
	resp = a.fleet(t, http.MethodGet, "/api/noflyzones/stadium", nil)
	resp.decode(t, &z)
	assert.Equal(t, "Game day", z.Name, "the refused writes changed nothing")
	resp = a.fleet(t, http.MethodGet, "/api/noflyzones/big", nil)
	assert.Equal(t, http.StatusNotFound, resp.Status)

	// Delete: the zone goes, once; the service area of that id stays.
	for _, step := range []struct {
		method, path string
		status       int
	}{
		{http.MethodDelete, "/api/noflyzones/stadium", http.StatusNoContent},
		{http.MethodGet, "/api/noflyzones/stadium", http.StatusNotFound},
		{http.MethodDelete, "/api/noflyzones/stadium", http.StatusNotFound},
		{http.MethodGet, "/api/serviceareas/stadium", http.StatusOK},
	} {
		resp = a.fleet(t, step.method, step.path, nil)
		assert.Equal(t, step.status, resp.Status, "%s %s: %s", step.method, step.path, resp.Body)
	}
}

// TestAZoneInForceAtThePickupIsRoutedAround: a pickup a minute and a half
// ahead is dispatched at once, and its pickup → dropoff leg is flown from
// its pickup time, so a no-fly zone that comes into force before then is
// flown round, though it is not in force when the drone is dispatched.
func TestAZoneInForceAtThePickupIsRoutedAround(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir())
	a := signUp(t, p.base)
	center := domain.Location{Latitude: 36, Longitude: -97}
	west := func(km float64) domain.Location {
		return domain.Location{Latitude: center.Latitude, Longitude: center.Longitude - km/(111.2*math.Cos(center.Latitude*math.Pi/180))}
	}
	registerFleet(t, a, map[string]droneSpec{
		"tz-1": {Location: west(3), MaxPayloadKg: 5, MaxPackageSize: "Large", RangeKm: 30, CruiseSpeedMps: 15, BatteryPercent: 100},
	})
	pickupTime := time.Now().Add(90 * time.Second).UTC().Truncate(time.Second)
	square := fmt.Sprintf(`{"type":"Polygon","coordinates":[[[%[1]f,%[3]f],[%[2]f,%[3]f],[%[2]f,%[4]f],[%[1]f,%[4]f],[%[1]f,%[3]f]]]}`,
		west(0.5).Longitude, west(-0.5).Longitude, center.Latitude-0.0045, center.Latitude+0.0045)
	zone := fmt.Sprintf(`{"name":"Air show","geometry":%s,"validFrom":%q,"validTo":%q}`, square,
		pickupTime.Add(-time.Minute).Format(time.RFC3339), pickupTime.Add(2*time.Hour).Format(time.RFC3339))
	resp := a.fleet(t, http.MethodPut, "/api/noflyzones/air-show", zone)
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))

	req := deliveryRequest("tz-a", west(2), west(-2), "Small", 1)
	req["pickupTime"] = pickupTime.Format(time.RFC3339)
	resp = a.call(t, http.MethodPost, "/api/deliveryrequests", req)
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	waitStage(t, a, "tz-a", domain.StageScheduled)
	var d struct {
		DroneID      string `json:"droneId"`
		PlannedRoute struct {
			Dropoff struct {
				Km     float64           `json:"km"`
				Points []domain.Location `json:"points"`
			} `json:"dropoff"`
		} `json:"plannedRoute"`
	}
	a.call(t, http.MethodGet, "/api/deliveries/tz-a", nil).decode(t, &d)
	require.Equal(t, "tz-1", d.DroneID)
	straight := domain.DistanceKm(west(2), west(-2))
	assert.Greater(t, d.PlannedRoute.Dropoff.Km, straight+0.05, "round the zone, not %.3f km straight through it", straight)
	assert.Greater(t, len(d.PlannedRoute.Dropoff.Points), 2, "with waypoints")
}
