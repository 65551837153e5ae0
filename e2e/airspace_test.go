package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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

	game := `{"name":"Game day","geometry":` + stadium + `,"validFrom":"2026-12-06T17:00:00Z","validTo":"2026-12-06T22:00:00Z"}`
	resp = a.fleet(t, http.MethodPut, "/api/noflyzones/stadium", game)
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	resp = a.fleet(t, http.MethodGet, "/api/noflyzones/stadium", nil)
	resp.decode(t, &z)
	assert.Equal(t, "Game day", z.Name)
	require.NotNil(t, z.ValidFrom)
	require.NotNil(t, z.ValidTo)
	assert.Equal(t, "2026-12-06T22:00:00Z", z.ValidTo.UTC().Format(time.RFC3339))

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
