package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// TestDispatchRules runs the dispatch scenario through the binary on the
// embedded backend.
func TestDispatchRules(t *testing.T) { onEmbedded(t, dispatchScenario) }

// TestDispatchRulesOnAzureAdapters runs it on Cosmos DB and Service Bus,
// through the local doubles.
func TestDispatchRulesOnAzureAdapters(t *testing.T) { onAzure(t, dispatchScenario) }

// problemOf decodes a problem document.
func problemOf(t *testing.T, r *response) (field, detail string) {
	t.Helper()
	require.Equal(t, "application/problem+json", r.Header.Get("Content-Type"), string(r.Body))
	var p struct{ Field, Detail string }
	r.decode(t, &p)
	return p.Field, p.Detail
}

// dispatchScenario: what no drone could ever serve is refused with the
// field and the reason and leaves nothing behind; a quote names what
// dispatch will do; the nearest drone that would miss the deadline is
// passed over for a farther, faster one.
func dispatchScenario(t *testing.T, p *proc) {
	a := signUp(t, p.base)
	seattle := domain.Location{Latitude: 47.6062, Longitude: -122.3321}
	north := func(km float64) domain.Location {
		return domain.Location{Latitude: seattle.Latitude + km/111.2, Longitude: seattle.Longitude}
	}
	// The nearest drone to the pickup is slow; a faster one waits 2 km south.
	registerFleet(t, a, map[string]droneSpec{
		"slow": {Location: north(0.05), MaxPayloadKg: 10, MaxPackageSize: "Large", RangeKm: 60, CruiseSpeedMps: 5, BatteryPercent: 100},
		"fast": {Location: north(-2), MaxPayloadKg: 10, MaxPackageSize: "Large", RangeKm: 60, CruiseSpeedMps: 20, BatteryPercent: 100},
	})

	sydney := domain.Location{Latitude: -33.87, Longitude: 151.21}
	bondi := domain.Location{Latitude: -33.89, Longitude: 151.27} // Sydney's beach, 6 km on
	refused := []struct {
		name, field, says string
		body              map[string]any
	}{
		{"50 kg", "packageInfo.weight", "more than any drone", deliveryRequest("heavy", seattle, north(1), "Small", 50)},
		{"Sydney", "pickupLocation", "out of range", deliveryRequest("sydney", sydney, bondi, "Small", 1)},
		{"dropoff out of range", "dropOffLocation", "out of range", deliveryRequest("far", seattle, north(40), "Small", 1)},
	}
	year2999 := deliveryRequest("y2999", seattle, north(1), "Small", 1)
	year2999["deadline"] = "2999-01-01T00:00:00Z"
	// 11 km in three minutes: even the fastest drone, at the pickup now,
	// needs a minute to load and ten to fly.
	tooSoon := deliveryRequest("too-soon", seattle, north(11), "Small", 1)
	tooSoon["deadline"] = time.Now().Add(3 * time.Minute).UTC().Format(time.RFC3339)
	// A deadline an hour ago, with no pickup time (as soon as possible).
	passed := deliveryRequest("passed", seattle, north(1), "Small", 1)
	passed["deadline"] = time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	refused = append(refused, struct {
		name, field, says string
		body              map[string]any
	}{"deadline in 2999", "deadline", "ahead", year2999}, struct {
		name, field, says string
		body              map[string]any
	}{"deadline no drone can meet", "deadline", "cannot be met", tooSoon}, struct {
		name, field, says string
		body              map[string]any
	}{"deadline passed", "deadline", "has passed", passed})
	for _, tc := range refused {
		resp := a.call(t, "POST", "/api/deliveryrequests", tc.body)
		require.Equal(t, http.StatusUnprocessableEntity, resp.Status, "%s: %s", tc.name, resp.Body)
		field, detail := problemOf(t, resp)
		assert.Equal(t, tc.field, field, tc.name)
		assert.Contains(t, detail, tc.says, tc.name)
		assert.Equal(t, http.StatusNotFound, a.call(t, "GET", "/api/deliveries/"+tc.body["deliveryId"].(string), nil).Status, "%s: nothing stored", tc.name)

		var q struct {
			Feasible bool
			Reasons  []struct{ Field, Detail string }
		}
		qr := a.call(t, "POST", "/api/deliveryquotes", tc.body)
		require.Equal(t, http.StatusOK, qr.Status, string(qr.Body))
		qr.decode(t, &q)
		assert.False(t, q.Feasible, tc.name)
		require.Len(t, q.Reasons, 1, tc.name)
		assert.Equal(t, tc.field, q.Reasons[0].Field, tc.name)
	}

	// 11 km north within 20 minutes: the slow drone would take 37 minutes
	// for that leg alone, the fast one about 9.
	body := deliveryRequest("tight", seattle, north(11), "Small", 2)
	body["deadline"] = time.Now().Add(20 * time.Minute).UTC().Format(time.RFC3339)
	var q struct {
		Feasible    bool
		PickupETA   *time.Time `json:"pickupETA"`
		DeliveryETA *time.Time `json:"deliveryETA"`
		DroneClass  struct {
			CruiseSpeedMps float64 `json:"cruiseSpeedMps"`
		} `json:"droneClass"`
	}
	qr := a.call(t, "POST", "/api/deliveryquotes", body)
	require.Equal(t, http.StatusOK, qr.Status, string(qr.Body))
	qr.decode(t, &q)
	require.True(t, q.Feasible)
	require.NotNil(t, q.DeliveryETA)
	assert.Equal(t, 20.0, q.DroneClass.CruiseSpeedMps, "the quote names the fast drone's class")
	// The quote's route is the leg from the pickup; where the chosen
	// drone waits is not the caller's to see.
	var route struct {
		PlannedRoute map[string]json.RawMessage `json:"plannedRoute"`
	}
	qr.decode(t, &route)
	assert.Contains(t, route.PlannedRoute, "dropoff")
	assert.NotContains(t, route.PlannedRoute, "pickup")
	fast := north(-2)
	assert.NotContains(t, string(qr.Body), strconv.FormatFloat(fast.Latitude, 'f', 4, 64), "the drone's position is not in the quote")
	assert.Equal(t, http.StatusNotFound, a.call(t, "GET", "/api/deliveries/tight", nil).Status, "a quote stores nothing")

	resp := a.call(t, "POST", "/api/deliveryrequests", body)
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	d := waitStage(t, a, "tight", domain.StageScheduled, domain.StageFailed)
	require.Equal(t, domain.StageScheduled, d.Stage, d.FailureReason)
	assert.Equal(t, "fast", d.DroneID)
	checkSchedule(t, a, d)
	var full struct {
		PlannedRoute *domain.PlannedRoute `json:"plannedRoute"`
		Deadline     time.Time            `json:"deadline"`
	}
	a.call(t, "GET", "/api/deliveries/tight", nil).decode(t, &full)
	require.NotNil(t, full.PlannedRoute, "the route is part of the delivery")
	assert.InDelta(t, 11, full.PlannedRoute.Dropoff.Km, 0.1)
	assert.False(t, d.DeliveryETA.After(full.Deadline), "delivered by the deadline")
	var slow domain.Drone
	a.fleet(t, "GET", "/api/drones/slow", nil).decode(t, &slow)
	assert.Equal(t, domain.DroneAvailable, slow.Status, "the nearest drone was passed over")

	// A reschedule no drone could serve is refused and changes nothing.
	patch := a.call(t, "PATCH", "/api/deliveryrequests/tight", map[string]any{"dropOffLocation": sydney})
	require.Equal(t, http.StatusUnprocessableEntity, patch.Status, string(patch.Body))
	field, _ := problemOf(t, patch)
	assert.True(t, strings.HasPrefix(field, "dropOffLocation") || field == "pickupLocation", field)
	assert.Equal(t, domain.StageScheduled, getDelivery(t, a, "tight").Stage)

	zoneScenario(t, a, seattle)
}

// zoneScenario: a no-fly zone between a pickup and its dropoff makes
// dispatch route the leg around it, and the ETA follows the routed length;
// a pickup inside the zone is refused. The zone is a wall 200 m wide,
// reaching from 0.5 km south of the leg to 2 km north of it, so the short
// way round is past its southern end.
func zoneScenario(t *testing.T, a api, from domain.Location) {
	kmLat := 1 / 111.2
	kmLon := 1 / (111.32 * math.Cos(from.Latitude*math.Pi/180))
	at := func(eastKm, northKm float64) domain.Location {
		return domain.Location{Latitude: from.Latitude + northKm*kmLat, Longitude: from.Longitude + eastKm*kmLon}
	}
	corner := func(eastKm, northKm float64) []float64 {
		l := at(eastKm, northKm)
		return []float64{l.Longitude, l.Latitude}
	}
	wall := map[string]any{"name": "Wall", "geometry": map[string]any{"type": "Polygon", "coordinates": [][][]float64{{
		corner(1.9, -0.5), corner(2.1, -0.5), corner(2.1, 2), corner(1.9, 2), corner(1.9, -0.5)}}}}
	resp := a.fleet(t, "PUT", "/api/noflyzones/wall", wall)
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	defer func() {
		assert.Equal(t, http.StatusNoContent, a.fleet(t, "DELETE", "/api/noflyzones/wall", nil).Status)
	}()

	inside := a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("in-zone", at(2, 1), at(4, 0), "Small", 1))
	require.Equal(t, http.StatusUnprocessableEntity, inside.Status, string(inside.Body))
	field, detail := problemOf(t, inside)
	assert.Equal(t, "pickupLocation", field)
	assert.Contains(t, detail, "Wall", "the refusal names the zone")
	assert.Equal(t, http.StatusNotFound, a.call(t, "GET", "/api/deliveries/in-zone", nil).Status, "nothing stored")

	pickup, dropoff := at(0, 0), at(4, 0)
	resp = a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("around", pickup, dropoff, "Small", 1))
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	d := waitStage(t, a, "around", domain.StageScheduled, domain.StageFailed)
	require.Equal(t, domain.StageScheduled, d.Stage, d.FailureReason)
	var full struct {
		PlannedRoute *domain.PlannedRoute `json:"plannedRoute"`
	}
	a.call(t, "GET", "/api/deliveries/around", nil).decode(t, &full)
	require.NotNil(t, full.PlannedRoute)
	leg := full.PlannedRoute.Dropoff

	// The shortest way round turns at the wall's southern corners, each
	// moved a little way out; within 1 % that is this length.
	want := domain.DistanceKm(pickup, at(1.9, -0.5)) + domain.DistanceKm(at(1.9, -0.5), at(2.1, -0.5)) + domain.DistanceKm(at(2.1, -0.5), dropoff)
	assert.InEpsilon(t, want, leg.Km, 0.01, "routed length %.3f km against %.3f km round the wall", leg.Km, want)
	assert.Greater(t, len(leg.Points), 2, "the leg turns")
	for _, p := range leg.Points {
		inWall := p.Latitude > at(0, -0.5).Latitude && p.Latitude < at(0, 2).Latitude &&
			p.Longitude > at(1.9, 0).Longitude && p.Longitude < at(2.1, 0).Longitude
		assert.False(t, inWall, "no point of the route is inside the zone: %+v", p)
		assert.Less(t, p.Latitude, at(0, 0.01).Latitude, "the route goes round the near (southern) end")
	}

	// The ETA flies the routed length at the drone's speed: the delivery
	// ETA is the pickup ETA plus loading, take-off and landing, and the
	// routed leg.
	var drone domain.Drone
	a.fleet(t, "GET", "/api/drones/"+d.DroneID, nil).decode(t, &drone)
	handling := domain.PickupHandling + domain.TakeoffDuration + domain.LandingDuration
	flown := d.DeliveryETA.Sub(*d.PickupETA) - handling
	flownKm := flown.Seconds() * drone.CruiseSpeedMps / 1000
	assert.InEpsilon(t, want, flownKm, 0.01, "the ETA flies %.3f km; the route is %.3f km", flownKm, want)
	assert.Greater(t, flownKm, domain.DistanceKm(pickup, dropoff)*1.02, "the ETA is not the straight line's")
}

// bookingEnv makes the booked pickup quick to test: the drone is
// dispatched 20 s before it needs to fly, and a report at the pickup counts
// from 10 s before the pickup time.
var bookingEnv = []string{"DISPATCH_MARGIN=20s", "PICKUP_EARLINESS=10s"}

// TestBookedPickup: a pickup booked ahead holds no drone until its
// dispatch time and is picked up within the tolerance of its pickupTime.
func TestBookedPickup(t *testing.T) {
	t.Parallel()
	p := startServeEnv(t, t.TempDir(), bookingEnv)
	bookedPickupScenario(t, p)
	p.stop(t)
}

// TestBookedPickupOnAzureAdapters is the same on Cosmos DB and Service Bus
// (the dispatch time is a scheduled message), through the local doubles.
func TestBookedPickupOnAzureAdapters(t *testing.T) {
	t.Parallel()
	p := startOnAzure(t, bookingEnv...)
	bookedPickupScenario(t, p)
	p.stop(t)
}

// bookPickup asks for a small package from pickup to drop at pickupTime,
// and returns the delivery's tracking id.
func bookPickup(t *testing.T, a api, id string, pickup, drop domain.Location, pickupTime time.Time) string {
	t.Helper()
	body := deliveryRequest(id, pickup, drop, "Small", 1)
	body["pickupTime"] = pickupTime.Format(time.RFC3339)
	resp := a.call(t, "POST", "/api/deliveryrequests", body)
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	var acc struct {
		TrackingID string `json:"trackingId"`
	}
	resp.decode(t, &acc)
	return acc.TrackingID
}

func bookedPickupScenario(t *testing.T, p *proc) {
	a := signUp(t, p.base)
	pickup := domain.Location{Latitude: 47.6062, Longitude: -122.3321}
	drop := domain.Location{Latitude: 47.6162, Longitude: -122.3321}
	// 10 m from the pickup: the flight there is the climb and the descent,
	// a minute.
	registerFleet(t, a, map[string]droneSpec{
		"courier": {Location: domain.Location{Latitude: 47.60629, Longitude: -122.3321}, MaxPayloadKg: 5, MaxPackageSize: "Large",
			RangeKm: 30, CruiseSpeedMps: 20, BatteryPercent: 100},
	})
	// The drone is due to leave 20 s (the margin) before its minute of
	// flight, so about 24 s after the request: the time the schedule step
	// has to book it, and a minute more while the feed says when the
	// pickup is.
	pickupTime := time.Now().Add(105 * time.Second).UTC().Truncate(time.Second)
	trackingID := bookPickup(t, a, "booked", pickup, drop, pickupTime)

	var booked struct {
		Stage      domain.Stage `json:"stage"`
		DroneID    string       `json:"droneId"`
		DispatchAt *time.Time   `json:"dispatchAt"`
		PickupETA  *time.Time   `json:"pickupETA"`
	}
	eventually(t, "the pickup to be booked", func() bool {
		a.call(t, "GET", "/api/deliveries/booked/status", nil).decode(t, &booked)
		return booked.DispatchAt != nil || booked.DroneID != ""
	})
	require.Equal(t, domain.StageScheduled, booked.Stage)
	require.NotNil(t, booked.DispatchAt, "booked, not dispatched")
	assert.True(t, booked.PickupETA.Equal(pickupTime), "planned pickup %s, want %s", booked.PickupETA, pickupTime)
	assert.True(t, booked.DispatchAt.Before(pickupTime.Add(-time.Minute)), "dispatched a flight and a margin ahead: %s", booked.DispatchAt)
	var drone domain.Drone
	a.fleet(t, "GET", "/api/drones/courier", nil).decode(t, &drone)
	if time.Now().Before(*booked.DispatchAt) { // read before the dispatch time
		assert.Equal(t, domain.DroneAvailable, drone.Status, "no drone held before the dispatch time")
		assert.Empty(t, drone.CurrentDeliveryID)
	}
	var feed struct {
		Notice string `json:"notice"`
	}
	read := time.Now()
	call(t, "GET", p.base+"/api/track/"+trackingID+"/feed", nil).decode(t, &feed)
	// Written for the day it is read on (a reading across midnight may
	// name either day).
	assert.Contains(t, []string{"pickup at " + domain.ClockTime(pickupTime, read), "pickup at " + domain.ClockTime(pickupTime, time.Now())}, feed.Notice)

	d := waitStage(t, a, "booked", domain.StageScheduled)
	eventually(t, "the drone to be dispatched", func() bool {
		d = getDelivery(t, a, "booked")
		return d.DroneID != ""
	})
	assert.Equal(t, "courier", d.DroneID)
	assert.False(t, time.Now().Before(*booked.DispatchAt), "claimed no earlier than the dispatch time")

	// At the pickup a minute early: the drone waits, nothing is picked up.
	reportAt(t, a, "courier", pickup, time.Now())
	eventually(t, "the early report to be applied", func() bool { return getDelivery(t, a, "booked").Stage == domain.StageHeadedToPickup })
	// Still waiting at the pickup when the time comes.
	eventually(t, "the pickup time to come", func() bool { return !time.Now().Before(pickupTime.Add(-5 * time.Second)) })
	at := time.Now()
	reportAt(t, a, "courier", pickup, at)
	d = waitStage(t, a, "booked", domain.StageHeadedToDropoff)
	var hist struct {
		Events []domain.Event `json:"events"`
	}
	a.call(t, "GET", "/api/deliveries/booked/history", nil).decode(t, &hist)
	var picked time.Time
	for _, e := range hist.Events {
		if e.Stage == domain.StageHeadedToDropoff {
			picked = e.At
		}
	}
	assert.WithinDuration(t, pickupTime, picked, 10*time.Second, "picked up within the tolerance of the pickup time")
}

// TestFairShare: one account's burst of 45 requests holds every drone and
// keeps waiting; another account's delivery, waiting behind it, gets the
// first drone that comes free.
func TestFairShare(t *testing.T) { onEmbedded(t, fairShareScenario) }

// TestFairShareOnAzureAdapters is the same on Cosmos DB and Service Bus.
func TestFairShareOnAzureAdapters(t *testing.T) { onAzure(t, fairShareScenario) }

func fairShareScenario(t *testing.T, p *proc) {
	busy, patient := signUp(t, p.base), signUp(t, p.base)
	pickup := domain.Location{Latitude: 47.6062, Longitude: -122.3321}
	drop := domain.Location{Latitude: 47.6162, Longitude: -122.3321}
	fleet := map[string]droneSpec{}
	for i := range 3 {
		fleet[fmt.Sprint("fs-", i)] = droneSpec{Location: domain.Location{Latitude: 47.6062 + 0.001*float64(i), Longitude: -122.3321},
			MaxPayloadKg: 5, MaxPackageSize: "Large", RangeKm: 30, CruiseSpeedMps: 15, BatteryPercent: 100}
	}
	registerFleet(t, busy, fleet)

	var burst []string
	for i := range 45 {
		id := fmt.Sprint("burst-", i)
		burst = append(burst, id)
		resp := busy.call(t, "POST", "/api/deliveryrequests", deliveryRequest(id, pickup, drop, "Small", 1))
		require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	}
	flying := func() []string {
		var out []string
		for _, id := range burst {
			if d := getDelivery(t, busy, id); d.DroneID != "" {
				out = append(out, id)
			}
		}
		return out
	}
	eventually(t, "the burst to take every drone", func() bool { return len(flying()) == 3 })

	resp := patient.call(t, "POST", "/api/deliveryrequests", deliveryRequest("patient-1", pickup, drop, "Small", 1))
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	assert.Empty(t, getDelivery(t, patient, "patient-1").DroneID)
	// Dispatch has tried it and found no drone, so it waits in the area's
	// queue, which the freed drone's wake ranks (a request not yet tried is
	// not in it: on a busy machine the drone could come free first).
	eventually(t, "patient-1 to wait for a drone", func() bool {
		return p.logged(`"msg":"no drone available; retrying later"`, `"deliveryId":"patient-1"`)
	})

	// One of the burst's deliveries is flown; its drone comes free.
	done := flying()[0]
	d := getDelivery(t, busy, done)
	reportAt(t, busy, d.DroneID, pickup, time.Now())
	waitStage(t, busy, done, domain.StageHeadedToDropoff)
	reportAt(t, busy, d.DroneID, drop, time.Now().Add(time.Second))
	waitStage(t, busy, done, domain.StageCompleted)

	got := waitStage(t, patient, "patient-1", domain.StageScheduled)
	assert.Equal(t, d.DroneID, got.DroneID, "the freed drone went to the account holding none")
	assert.Len(t, flying(), 3, "the burst got no drone meanwhile: two flying and the one done")
}
