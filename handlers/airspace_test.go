package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

const square = `{"geometry":{"type":"Polygon","coordinates":[[[-122.35,47.60],[-122.33,47.60],[-122.33,47.62],[-122.35,47.62],[-122.35,47.60]]]}}`

// TestZonesPerKindAreBounded: a new zone beyond the most kept of its kind
// is refused, a replacement is not, and the other kind has room of its own.
func TestZonesPerKindAreBounded(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	// Fill the store directly: the bound is what the handler checks.
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < domain.MaxZonesPerKind; i += 10 {
				id := fmt.Sprintf("z%04d", i)
				z := &domain.Zone{ID: id, Kind: domain.NoFlyZone, GeometryType: "Polygon",
					Polygons: []domain.Polygon{{{{-122.35, 47.60}, {-122.33, 47.60}, {-122.33, 47.62}, {-122.35, 47.60}}}}}
				assert.NoError(t, f.store.Zones.Create(ctx, z.Key(), z))
			}
		}()
	}
	wg.Wait()
	put := func(fn, id string) *functionapp.Response {
		return f.call(fn, operatorKey, &functionapp.Request{Method: http.MethodPut, Params: map[string]string{"id": id}, Body: []byte(square)})
	}
	resp := put("PutNoFlyZone", "one-more")
	require.Equal(t, http.StatusUnprocessableEntity, resp.Status, string(resp.Body))
	assert.Contains(t, string(resp.Body), `"field":"id"`)
	_, err := f.store.Zones.Find(ctx, domain.ZoneKey(domain.NoFlyZone, "one-more"))
	assert.True(t, domain.IsCode(err, domain.ENOTFOUND), "nothing was stored")

	resp = put("PutNoFlyZone", "z0007")
	assert.Equal(t, http.StatusOK, resp.Status, "replacing a zone adds none: %s", resp.Body)
	resp = put("PutServiceArea", "one-more")
	assert.Equal(t, http.StatusCreated, resp.Status, "service areas are counted apart: %s", resp.Body)
}

// The zone listings refuse, naming it, a parameter they do not take (a
// cursor of another listing would otherwise answer the first page) and
// one given twice, empty or malformed; after and limit still page.
func TestZoneListingsRefuseUnknownParameters(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, id := range []string{"a", "b"} {
		for _, fn := range []string{"PutServiceArea", "PutNoFlyZone"} {
			resp := f.fleet(fn, &functionapp.Request{Method: http.MethodPut, Params: map[string]string{"id": id}, Body: []byte(square)})
			require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
		}
	}
	for _, fn := range []string{"ListServiceAreas", "ListNoFlyZones"} {
		for _, c := range []struct {
			name  string
			q     url.Values
			field string
		}{
			{"a cursor", url.Values{"cursor": {"x"}}, "cursor"},
			{"a misspelt limit", url.Values{"limits": {"1"}}, "limits"},
			{"limit twice", url.Values{"limit": {"1", "2"}}, "limit"},
			{"after empty", url.Values{"after": {""}}, "after"},
			{"limit with a sign", url.Values{"limit": {"+1"}}, "limit"},
		} {
			resp := f.fleet(fn, &functionapp.Request{Method: http.MethodGet, Query: c.q})
			require.Equal(t, http.StatusBadRequest, resp.Status, "%s, %s: %s", fn, c.name, resp.Body)
			assert.Equal(t, c.field, problemOf(t, resp).Field, "%s, %s", fn, c.name)
		}
		resp := f.fleet(fn, &functionapp.Request{Method: http.MethodGet, Query: url.Values{"after": {"a"}, "limit": {"1"}, "code": {"a-function-key"}}})
		require.Equal(t, http.StatusOK, resp.Status, "%s: %s", fn, resp.Body)
		var page struct {
			Zones []struct{ ID string }
			Next  string
		}
		require.NoError(t, json.Unmarshal(resp.Body, &page))
		require.Len(t, page.Zones, 1, fn)
		assert.Equal(t, "b", page.Zones[0].ID, "%s: after and limit still page", fn)
	}
}

// TestAZoneOverAPickupShowsBeforeDispatchRuns lists a delivery accepted
// moments ago, whose dispatch has not run, after a no-fly zone was put over
// its pickup: the listing names the zone, not a dispatch to come.
func TestAZoneOverAPickupShowsBeforeDispatchRuns(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pickup, drop := at(0, 0), at(0.01, 0)
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("w1", pickup, drop, "Small", 1)).Status)
	waiting := func() (domain.WaitKind, string) {
		t.Helper()
		resp := f.fleet("ListWaitingDeliveries", &functionapp.Request{Method: http.MethodGet})
		require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
		var page struct {
			Items []struct {
				ID         string          `json:"id"`
				WaitKind   domain.WaitKind `json:"waitKind"`
				WaitReason string          `json:"waitReason"`
			} `json:"items"`
		}
		require.NoError(t, json.Unmarshal(resp.Body, &page))
		require.Len(t, page.Items, 1)
		return page.Items[0].WaitKind, page.Items[0].WaitReason
	}
	kind, _ := waiting()
	require.Equal(t, domain.WaitDispatch, kind, "accepted moments ago, not dispatched yet")

	lat, lon := pickup.Latitude, pickup.Longitude
	zone := fmt.Sprintf(`{"name":"crane","geometry":{"type":"Polygon","coordinates":[[[%[2]f,%[1]f],[%[4]f,%[1]f],[%[4]f,%[3]f],[%[2]f,%[3]f],[%[2]f,%[1]f]]]}}`,
		lat-0.001, lon-0.001, lat+0.001, lon+0.001)
	resp := f.fleet("PutNoFlyZone", &functionapp.Request{Method: http.MethodPut, Params: map[string]string{"id": "crane"}, Body: []byte(zone)})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	kind, reason := waiting()
	assert.Equal(t, domain.WaitNoRoute, kind)
	assert.Contains(t, reason, "no route: pickupLocation")
	assert.Contains(t, reason, "crane")
}
