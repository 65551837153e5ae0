package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

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

	// A restriction whose window has ended makes room for a new one.
	ended, err := f.store.Zones.Find(ctx, domain.ZoneKey(domain.NoFlyZone, "z0003"))
	require.NoError(t, err)
	ended.ValidFrom, ended.ValidTo = f.clock.Now().Add(-2*time.Hour), f.clock.Now().Add(-time.Hour)
	_, err = f.store.Zones.Upsert(ctx, ended.Key(), func(*domain.Zone) (*domain.Zone, error) { return ended, nil })
	require.NoError(t, err)
	resp = put("PutNoFlyZone", "one-more")
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	_, err = f.store.Zones.Find(ctx, ended.Key())
	assert.True(t, domain.IsCode(err, domain.ENOTFOUND), "the ended one was deleted")
	assert.Equal(t, http.StatusUnprocessableEntity, put("PutNoFlyZone", "and-another").Status, "no more room")
}

// TestAZoneShowsWhereItsWindowStands: the API says of each zone whether it
// is upcoming, in force or ended, as time passes; a window that has already
// ended is refused naming validTo, whether the zone is new or replaces one,
// and changes nothing.
func TestAZoneShowsWhereItsWindowStands(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	geometry := `{"type":"Polygon","coordinates":[[[-122.35,47.60],[-122.33,47.60],[-122.33,47.62],[-122.35,47.60]]]}`
	window := func(from, to time.Time) []byte {
		return fmt.Appendf(nil, `{"geometry":%s,"validFrom":%q,"validTo":%q}`, geometry, from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	put := func(id string, body []byte) *functionapp.Response {
		return f.fleet("PutNoFlyZone", &functionapp.Request{Method: http.MethodPut, Params: map[string]string{"id": id}, Body: body})
	}
	state := func(id string) string {
		t.Helper()
		resp := f.fleet("GetNoFlyZone", &functionapp.Request{Method: http.MethodGet, Params: map[string]string{"id": id}})
		require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
		var z struct{ State string }
		require.NoError(t, json.Unmarshal(resp.Body, &z))
		return z.State
	}
	listed := func() map[string]string {
		t.Helper()
		resp := f.fleet("ListNoFlyZones", &functionapp.Request{Method: http.MethodGet})
		require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
		var page struct{ Zones []struct{ ID, State string } }
		require.NoError(t, json.Unmarshal(resp.Body, &page))
		m := map[string]string{}
		for _, z := range page.Zones {
			m[z.ID] = z.State
		}
		return m
	}

	now := f.clock.Now()
	resp := put("game", window(now.Add(time.Hour), now.Add(3*time.Hour)))
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	assert.Contains(t, string(resp.Body), `"state":"upcoming"`)
	require.Equal(t, http.StatusCreated, put("always", []byte(`{"geometry":`+geometry+`}`)).Status)
	assert.Equal(t, map[string]string{"game": "upcoming", "always": "inForce"}, listed())

	f.clock.Advance(time.Hour)
	assert.Equal(t, "inForce", state("game"), "from validFrom on")
	f.clock.Advance(2 * time.Hour)
	assert.Equal(t, "ended", state("game"), "from validTo on")
	assert.Equal(t, map[string]string{"game": "ended", "always": "inForce"}, listed())

	// A window already past is refused, and nothing changes.
	now = f.clock.Now()
	for _, id := range []string{"yesterday", "always"} {
		resp = put(id, window(now.Add(-26*time.Hour), now.Add(-22*time.Hour)))
		require.Equal(t, http.StatusUnprocessableEntity, resp.Status, "%s: %s", id, resp.Body)
		assert.Equal(t, "validTo", problemOf(t, resp).Field, id)
	}
	resp = put("until-now", window(now.Add(-time.Hour), now))
	assert.Equal(t, http.StatusUnprocessableEntity, resp.Status, "validTo is exclusive: %s", resp.Body)
	assert.Equal(t, map[string]string{"game": "ended", "always": "inForce"}, listed())
	assert.Equal(t, "inForce", state("always"), "the refused replacement left it as it was")
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
		return waitingReasonOf(t, f, "w1")
	}
	kind, _ := waiting()
	require.Equal(t, domain.WaitDispatch, kind, "accepted moments ago, not dispatched yet")

	f.putSquareZone(t, "crane", "crane", pickup, 0.001, time.Time{}, time.Time{})
	kind, reason := waiting()
	assert.Equal(t, domain.WaitNoRoute, kind)
	assert.Contains(t, reason, "no route: pickupLocation")
	assert.Contains(t, reason, "crane")
}

// A no-fly zone that comes into force while the drone is on its way is
// flown round as one in force at dispatch is: across the pickup → dropoff
// leg it lengthens the planned leg, and over the dropoff it keeps the
// delivery from being scheduled to land inside it.
func TestAZoneComingIntoForceDuringTheFlightIsMet(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, -0.03)})
	soon := f.clock.Now().Add(2 * time.Minute)
	putZone := func(id string, c domain.Location) {
		t.Helper()
		f.putSquareZone(t, id, id, c, 0.002, soon, soon.Add(2*time.Hour))
	}

	putZone("across", at(0, 0.015))
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("crossing", at(0, 0), at(0, 0.03), "Small", 1)).Status)
	f.drain(t)
	d := f.delivery(t, "crossing")
	require.Equal(t, domain.StageScheduled, d.Stage)
	require.True(t, d.PickupETA.After(soon), "the leg is flown once the zone is in force")
	straight := domain.DistanceKm(at(0, 0), at(0, 0.03))
	assert.Greater(t, d.PlannedRoute.Dropoff.Km, straight+0.05, "round the zone, not %.3f km straight through it", straight)
	assert.Greater(t, len(d.PlannedRoute.Dropoff.Points), 2)

	// d1 flies "crossing"; d2 is free where "landing" is picked up.
	f.putDrone(t, domain.Drone{ID: "d2", Location: at(0.02, -0.03)})
	putZone("over", at(0.02, 0.03))
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("landing", at(0.02, 0), at(0.02, 0.03), "Small", 1)).Status)
	f.drain(t)
	d = f.delivery(t, "landing")
	assert.Empty(t, d.DroneID, "not sent to land where a zone will be in force when it gets there")
	assert.Equal(t, domain.StageCreated, d.Stage)
	f.clock.Advance(10 * time.Second)
	resp := f.fleet("ListWaitingDeliveries", &functionapp.Request{Method: http.MethodGet})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	assert.Contains(t, string(resp.Body), "no-fly zone over", "the operator's listing names the zone")
	assert.Equal(t, domain.DroneAvailable, f.drone(t, "d2").Status)
	q := f.quote(t, requestBody("q", at(0.02, 0), at(0.02, 0.03), "Small", 1))
	require.Len(t, q.Reasons, 1)
	assert.Contains(t, q.Reasons[0].Detail, "no-fly zone over", "the quote names the zone too")

	// One whose deadline comes while the zone is in force fails naming it.
	body, _ := json.Marshal(map[string]any{"deliveryId": "short", "pickupLocation": at(0.02, 0), "dropOffLocation": at(0.02, 0.03),
		"deadline": f.clock.Now().Add(5 * time.Minute).Format(time.RFC3339), "packageInfo": map[string]any{"size": "Small", "weight": 1}})
	require.Equal(t, http.StatusAccepted, f.ingest(t, body).Status)
	f.drain(t)
	f.clock.Advance(5 * time.Minute)
	f.playRetries(t, "short")
	d = f.delivery(t, "short")
	require.Equal(t, domain.StageFailed, d.Stage)
	assert.Contains(t, d.FailureReason, "no-fly zone over")
}

// A delivery that waits for a drone, with a zone over its dropoff that
// comes into force long after a flight sent now would be done, waits for
// a drone, not for a route.
func TestAZoneLaterThanTheFlightIsNoWaitReason(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0), Status: domain.DroneMaintenance})
	c := at(0.02, 0)
	f.putSquareZone(t, "later", "later", c, 0.002, f.clock.Now().Add(50*time.Minute), f.clock.Now().Add(2*time.Hour))
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("w", at(0.01, 0), c, "Small", 1)).Status)
	f.drain(t)
	f.clock.Advance(10 * time.Second)
	resp := f.fleet("ListWaitingDeliveries", &functionapp.Request{Method: http.MethodGet})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	assert.Contains(t, string(resp.Body), `"waitKind":"noDrone"`)
}

// A quote for a pickup hours ahead, with a zone over the dropoff that ends
// long before the drone would set off: nothing is in its way then.
func TestAZoneEndedBeforeABookedFlightIsNotInItsWay(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0), CruiseSpeedMps: 10})
	c := at(0.02, 0)
	f.putSquareZone(t, "tfr", "tfr", c, 0.002, f.clock.Now().Add(30*time.Minute), f.clock.Now().Add(time.Hour))
	pickup := f.clock.Now().Add(3 * time.Hour)
	q := f.quote(t, mustJSON(map[string]any{"pickupLocation": at(0.01, 0), "dropOffLocation": c,
		"pickupTime": pickup.Format(time.RFC3339), "packageInfo": map[string]any{"size": "Small", "weight": 1}}))
	assert.True(t, q.Feasible)
	assert.Empty(t, q.Reasons, "d1 is quoted: nothing is in its way when it flies")
	assert.NotNil(t, q.DroneClass)
	require.NotNil(t, q.PickupETA)
	assert.Equal(t, pickup, *q.PickupETA)
}

// A pickup booked for after a no-fly zone over it has ended is booked with
// the flight of the drone that will serve it, as any booking with a drone
// free: the zone, gone by the time that drone sets off, does not make the
// booking fall back to the long default lead (which sent it out while the
// zone was in force, telling the customer no drone was free).
func TestABookingAfterAZoneEndsIsPlannedWithItsDrone(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, -0.01)})
	pickup := at(0, 0)
	end := f.clock.Now().Add(10 * time.Minute)
	f.putSquareZone(t, "crane", "crane", pickup, 0.001, f.clock.Now().Add(3*time.Minute), end)

	req, _ := json.Marshal(map[string]any{"deliveryId": "later", "pickupLocation": pickup, "dropOffLocation": at(0.01, 0),
		"pickupTime": f.clock.Now().Add(20 * time.Minute).Format(time.RFC3339), "packageInfo": map[string]any{"size": "Small", "weight": 1}})
	require.Equal(t, http.StatusAccepted, f.ingest(t, req).Status)
	f.drain(t)
	d := f.delivery(t, "later")
	require.NotNil(t, d.DispatchAt)
	assert.True(t, d.DispatchAt.After(end), "dispatched at %v, after the zone ends at %v", d.DispatchAt, end)
	require.NotNil(t, d.PickupETA, "planned with its drone")
}

// putSquareZone puts no-fly zone id: a square reaching half degrees from c
// on each side, in force from from until to (a zero time leaves that end
// open).
func (f *fixture) putSquareZone(t *testing.T, id, name string, c domain.Location, half float64, from, to time.Time) {
	t.Helper()
	ring := [][]float64{{c.Longitude - half, c.Latitude - half}, {c.Longitude + half, c.Latitude - half},
		{c.Longitude + half, c.Latitude + half}, {c.Longitude - half, c.Latitude + half}, {c.Longitude - half, c.Latitude - half}}
	body := map[string]any{"name": name, "geometry": map[string]any{"type": "Polygon", "coordinates": [][][]float64{ring}}}
	if !from.IsZero() {
		body["validFrom"] = from.Format(time.RFC3339)
	}
	if !to.IsZero() {
		body["validTo"] = to.Format(time.RFC3339)
	}
	resp := f.fleet("PutNoFlyZone", &functionapp.Request{Method: http.MethodPut, Params: map[string]string{"id": id}, Body: mustJSON(body)})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
}
