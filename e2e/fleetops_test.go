package e2e

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/browser"
)

// getDrone reads a drone with the operator key.
func getDrone(t *testing.T, a api, id string) *domain.Drone {
	t.Helper()
	resp := a.fleet(t, "GET", "/api/drones/"+id, nil)
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var d domain.Drone
	resp.decode(t, &d)
	return &d
}

// waitDrone waits until drone id satisfies cond and returns it.
func waitDrone(t *testing.T, a api, id, what string, cond func(*domain.Drone) bool) *domain.Drone {
	t.Helper()
	var d *domain.Drone
	eventually(t, id+" "+what, func() bool { d = getDrone(t, a, id); return cond(d) })
	return d
}

// TestChargingReturnsDroneToService: the range follows the battery down and
// back up; a drone that lands a delivery low goes to Charging and comes
// back Available by itself, with no reports, once the charge rate's time has
// passed (made short here by BATTERY_CHARGE_RATE); and dispatch passes over
// a drone whose battery cannot fly the job plus the reserve.
func TestChargingReturnsDroneToService(t *testing.T) {
	t.Parallel()
	// 360,000 % an hour: a flat battery is charged in under a second.
	p := startServeEnv(t, t.TempDir(), []string{"BATTERY_CHARGE_RATE=360000"})
	a := signUp(t, p.base)
	home, pickup, drop := northFlight.home, northFlight.pickup, northFlight.drop

	// Range both ways: 18 km on 100 % is 20 km on a full charge keeping
	// a 10 % reserve; a flat report leaves none, a full one gives it back.
	require.Equal(t, http.StatusCreated, a.fleet(t, "PUT", "/api/drones/gauge", droneSpec{
		Location: home, MaxPayloadKg: 5, MaxPackageSize: "Small", RangeKm: 18, CruiseSpeedMps: 12, BatteryPercent: 100}).Status)
	clock := time.Now().UTC()
	postReport(t, a, "gauge", home, 0, clock)
	d := waitDrone(t, a, "gauge", "reports 0 %", func(d *domain.Drone) bool { return d.BatteryPercent == 0 })
	assert.Zero(t, d.RangeKm)
	postReport(t, a, "gauge", home, 100, clock.Add(time.Second))
	d = waitDrone(t, a, "gauge", "reports 100 %", func(d *domain.Drone) bool { return d.BatteryPercent == 100 })
	assert.Equal(t, 18.0, d.RangeKm, "the range came back with the charge")
	assert.Equal(t, 20.0, d.FullRangeKm)

	// The nearest drone has 15 %: 1 km after the reserve, short of the
	// job. Dispatch takes the farther full one.
	require.Equal(t, http.StatusCreated, a.fleet(t, "PUT", "/api/drones/weak", droneSpec{
		Location: pickup, MaxPayloadKg: 5, MaxPackageSize: "Small", RangeKm: 1, CruiseSpeedMps: 12, BatteryPercent: 15}).Status)
	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("low", pickup, drop, "Small", 1)).Status)
	got := waitStage(t, a, "low", domain.StageScheduled)
	assert.Equal(t, "gauge", got.DroneID, "the drone whose battery cannot fly the job plus the reserve is passed over")

	// Fly it, landing at 12 %: below 20 % it goes to charge, and comes back.
	route := northFlight.route(3, 3)
	for i, loc := range route {
		clock = clock.Add(10 * time.Second)
		postReport(t, a, "gauge", loc, 100-float64(i)*(88.0/float64(len(route)-1)), clock)
	}
	waitStage(t, a, "low", domain.StageCompleted)
	d = waitDrone(t, a, "gauge", "back in service after charging", func(d *domain.Drone) bool {
		return d.Status == domain.DroneAvailable && d.BatteryPercent >= 95
	})
	assert.Equal(t, 17.0, d.RangeKm, "(95 − 10) % of a 20 km charge")
	// It went by way of Charging; the log, read from a pipe, may trail.
	eventually(t, "the charge in the log", func() bool { return strings.Contains(p.logs.String(), `"msg":"drone charged"`) })
}

// fleetOpsScenario grounds a drone in the middle of its delivery and sees
// the delivery handed on to another drone with the customer told and the
// action audited; then aborts it in flight as returned to sender; then
// shows a charging drone returned to service by a report at the threshold.
func fleetOpsScenario(t *testing.T, p *proc) {
	a := signUp(t, p.base)
	near, far := shortFlight.home, domain.Location{Latitude: 47.595, Longitude: -122.330}
	putDrone(t, a, "first", near, "Small")
	putDrone(t, a, "second", far, "Small")
	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("handed", shortFlight.pickup, shortFlight.drop, "Small", 1)).Status)
	d := waitStage(t, a, "handed", domain.StageScheduled)
	require.Equal(t, "first", d.DroneID)
	postReport(t, a, "first", near, 90, time.Now().UTC())
	waitStage(t, a, "handed", domain.StageHeadedToPickup)

	// Bad input changes nothing and names the field.
	sendingMalformed(t, func() {
		for _, tc := range []struct {
			path  string
			body  map[string]any
			field string
		}{
			{"/api/drones/first/actions", map[string]any{"action": "fly", "reason": "x"}, "action"},
			{"/api/drones/first/actions", map[string]any{"action": "ground"}, "reason"},
			{"/api/drones/first/actions", map[string]any{"action": "ground", "reason": "x", "outcome": "failed"}, "outcome"},
			{"/api/deliveries/handed/actions", map[string]any{"action": "abort", "reason": "x", "outcome": "lost"}, "outcome"},
			{"/api/deliveries/handed/actions", map[string]any{"action": "reassign", "reason": " "}, "reason"},
		} {
			resp := a.fleet(t, "POST", tc.path, tc.body)
			require.Equal(t, http.StatusBadRequest, resp.Status, string(resp.Body))
			assert.Contains(t, string(resp.Body), `"field":"`+tc.field+`"`)
		}
	})
	assert.Equal(t, http.StatusForbidden, a.call(t, "POST", "/api/drones/first/actions", map[string]any{"action": "ground", "reason": "x"}).Status,
		"a business cannot ground a drone")
	assert.Equal(t, domain.DroneInFlight, getDrone(t, a, "first").Status)

	// Ground it mid-delivery, twice: the second is a no-op.
	for range 2 {
		resp := a.fleet(t, "POST", "/api/drones/first/actions", map[string]any{"action": "ground", "reason": "rotor vibration"})
		require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	}
	dr := getDrone(t, a, "first")
	assert.Equal(t, domain.DroneMaintenance, dr.Status)
	assert.Empty(t, dr.CurrentDeliveryID)
	assert.Equal(t, "rotor vibration", dr.StatusReason)
	eventually(t, "the delivery on the other drone", func() bool {
		d = getDelivery(t, a, "handed")
		return d.Stage == domain.StageScheduled && d.DroneID == "second"
	})
	hist := historyOf(t, a, "handed")
	var actions []domain.Event
	for _, e := range hist {
		if e.Kind == domain.EventOperator {
			actions = append(actions, e)
		}
	}
	require.Len(t, actions, 1, "one action audited, however often it was sent")
	assert.Equal(t, "operator", actions[0].By)
	assert.Equal(t, "ground: rotor vibration", actions[0].Note)
	assert.Equal(t, "first", actions[0].DroneID)
	var notes struct {
		Notifications []domain.Notification `json:"notifications"`
	}
	a.call(t, "GET", "/api/deliveries/handed/notifications", nil).decode(t, &notes)
	var told bool
	for _, n := range notes.Notifications {
		told = told || n.Kind == domain.NotifyReassigned && strings.Contains(n.Message, "rotor vibration")
	}
	assert.True(t, told, "the customer is told why: %+v", notes.Notifications)

	// Abort it in flight, returned to sender; the drone is freed.
	resp := a.fleet(t, "POST", "/api/deliveries/handed/actions", map[string]any{"action": "abort", "reason": "storm", "outcome": "returnedToSender"})
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	var view struct {
		Stage   domain.Stage `json:"stage"`
		Outcome string       `json:"outcome"`
	}
	resp.decode(t, &view)
	assert.Equal(t, domain.StageFailed, view.Stage)
	assert.Equal(t, "returnedToSender", view.Outcome)
	assert.Equal(t, http.StatusAccepted, a.fleet(t, "POST", "/api/deliveries/handed/actions", map[string]any{"action": "abort", "reason": "storm"}).Status, "aborting again is a no-op")
	assert.Equal(t, http.StatusConflict, a.fleet(t, "POST", "/api/deliveries/handed/actions", map[string]any{"action": "reassign", "reason": "x"}).Status)
	waitDrone(t, a, "second", "freed by the abort", func(d *domain.Drone) bool { return d.Status == domain.DroneAvailable && d.CurrentDeliveryID == "" })

	// A charging drone is back in service once a report reaches the
	// threshold (95 %).
	require.Equal(t, http.StatusOK, a.fleet(t, "PUT", "/api/drones/first", droneSpec{
		Location: near, MaxPayloadKg: 5, MaxPackageSize: "Small", RangeKm: 3, CruiseSpeedMps: 12, BatteryPercent: 15}).Status)
	require.Equal(t, http.StatusOK, a.fleet(t, "PUT", "/api/drones/first", map[string]any{
		"location": near, "maxPayloadKg": 5, "maxPackageSize": "Small", "rangeKm": 3, "cruiseSpeedMps": 12, "batteryPercent": 15, "status": "Charging"}).Status)
	dr = getDrone(t, a, "first")
	require.Equal(t, domain.DroneCharging, dr.Status)
	require.NotNil(t, dr.ChargeDueAt, "charged by the rate's time if no report comes")
	postReport(t, a, "first", near, 96, time.Now().UTC())
	dr = waitDrone(t, a, "first", "Available at the threshold", func(d *domain.Drone) bool { return d.Status == domain.DroneAvailable })
	assert.Nil(t, dr.ChargeDueAt)
	assert.Equal(t, 51.6, dr.RangeKm, "the range followed the charge up: 3 km on (15 − 10) % is 60 km on a full charge")
}

// TestFleetOperationsEndToEnd runs the operator's lifecycle on the
// embedded backend.
func TestFleetOperationsEndToEnd(t *testing.T) {
	t.Parallel()
	fleetOpsScenario(t, startServe(t, t.TempDir()))
}

// TestFleetOperationsOnAzureAdapters runs it on Cosmos DB and Service Bus,
// through the local doubles.
func TestFleetOperationsOnAzureAdapters(t *testing.T) {
	t.Parallel()
	fleetOpsScenario(t, startOnAzure(t))
}

// TestDroneKeys: a drone's device key posts its own telemetry and nothing
// else; another drone's key is 403; a revoked key is 401; the operator key
// still posts for any drone.
func TestDroneKeys(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir())
	a := signUp(t, p.base)
	home := domain.Location{Latitude: 47.600, Longitude: -122.330}
	putDrone(t, a, "alpha", home, "Small")
	putDrone(t, a, "beta", home, "Small")
	assert.Equal(t, http.StatusNotFound, a.fleet(t, "POST", "/api/drones/nobody/keys", nil).Status)
	assert.Equal(t, http.StatusForbidden, a.call(t, "POST", "/api/drones/alpha/keys", nil).Status, "a business cannot issue one")
	resp := a.fleet(t, "POST", "/api/drones/alpha/keys", nil)
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	var key struct {
		Prefix, APIKey, DroneID string
	}
	resp.decode(t, &key)
	require.Equal(t, "alpha", key.DroneID)

	at := time.Now().UTC()
	body := func(b float64) map[string]any {
		at = at.Add(time.Second)
		return map[string]any{"location": home, "batteryPercent": b, "timestamp": at.Format(time.RFC3339Nano)}
	}
	r := callAs(t, key.APIKey, "POST", p.base+"/api/drones/alpha/telemetry", body(77))
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	waitDrone(t, a, "alpha", "its own report applied", func(d *domain.Drone) bool { return d.BatteryPercent == 77 })

	r = callAs(t, key.APIKey, "POST", p.base+"/api/drones/beta/telemetry", body(50))
	require.Equal(t, http.StatusForbidden, r.Status, string(r.Body))
	assert.Contains(t, string(r.Body), `"field":"Authorization"`)
	assert.Equal(t, http.StatusForbidden, callAs(t, key.APIKey, "GET", p.base+"/api/drones/alpha", nil).Status, "only telemetry")
	assert.Equal(t, http.StatusForbidden, callAs(t, key.APIKey, "GET", p.base+"/api/deliveries/any", nil).Status, "no deliveries")
	r = a.fleet(t, "POST", "/api/drones/beta/telemetry", body(60))
	require.Equal(t, http.StatusAccepted, r.Status, "the operator key posts for any drone")
	waitDrone(t, a, "beta", "the operator's report applied", func(d *domain.Drone) bool { return d.BatteryPercent == 60 })

	assert.Equal(t, http.StatusNotFound, a.fleet(t, "DELETE", "/api/drones/beta/keys/"+key.Prefix, nil).Status, "not beta's key")
	for range 2 {
		assert.Equal(t, http.StatusNoContent, a.fleet(t, "DELETE", "/api/drones/alpha/keys/"+key.Prefix, nil).Status)
	}
	assert.Equal(t, http.StatusUnauthorized, callAs(t, key.APIKey, "POST", p.base+"/api/drones/alpha/telemetry", body(70)).Status, "revoked")
}

// pauseScenario pauses service in one service area and everywhere: new
// requests there are refused with 503, Retry-After and the reason (a quote
// says so), a delivery waiting for a drone is held with the reason on its
// tracking page rather than failed, and once the pause is lifted it is
// dispatched and new requests are accepted: nothing accepted is lost.
func pauseScenario(t *testing.T, p *proc) {
	a := signUp(t, p.base)
	north := domain.Location{Latitude: 47.650, Longitude: -122.330}
	south := domain.Location{Latitude: 47.600, Longitude: -122.330}
	for id, lat := range map[string]float64{"north": 47.64, "south": 47.59} {
		area := fmt.Sprintf(`{"geometry":{"type":"Polygon","coordinates":[[[-122.36,%g],[-122.30,%g],[-122.30,%g],[-122.36,%g],[-122.36,%g]]]}}`,
			lat, lat, lat+0.03, lat+0.03, lat)
		require.Equal(t, http.StatusCreated, a.fleet(t, "PUT", "/api/serviceareas/"+id, area).Status)
	}
	// The one drone is in maintenance: requests are accepted and wait.
	require.Equal(t, http.StatusCreated, a.fleet(t, "PUT", "/api/drones/only", map[string]any{
		"location": south, "maxPayloadKg": 5, "maxPackageSize": "Small", "rangeKm": 30, "cruiseSpeedMps": 12, "status": "Maintenance"}).Status)
	waiting := deliveryRequest("waiting", north, domain.Location{Latitude: 47.655, Longitude: -122.325}, "Small", 1)
	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests", waiting).Status)

	// Bad input names the field and changes nothing.
	sendingMalformed(t, func() {
		for _, tc := range []struct {
			body   map[string]any
			status int
			field  string
		}{
			{map[string]any{"areaId": "north"}, http.StatusBadRequest, "reason"},
			{map[string]any{"reason": "storm", "until": "tomorrow"}, http.StatusBadRequest, "until"},
			{map[string]any{"reason": "storm", "until": "2001-01-01T00:00:00Z"}, http.StatusUnprocessableEntity, "until"},
			{map[string]any{"reason": "storm", "areaId": "atlantis"}, http.StatusUnprocessableEntity, "areaId"},
		} {
			resp := a.fleet(t, "PUT", "/api/pauses/bad", tc.body)
			require.Equal(t, tc.status, resp.Status, string(resp.Body))
			assert.Contains(t, string(resp.Body), `"field":"`+tc.field+`"`)
		}
	})
	assert.Equal(t, http.StatusNotFound, a.fleet(t, "DELETE", "/api/pauses/bad", nil).Status, "nothing was stored")

	until := time.Now().UTC().Add(time.Hour).Truncate(time.Second)
	resp := a.fleet(t, "PUT", "/api/pauses/storm", map[string]any{"areaId": "north", "reason": "thunderstorm over the north", "until": until.Format(time.RFC3339)})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))

	// It reads back where Location points, and in the listing, in force.
	type pauseView struct{ PauseID, AreaID, State string }
	var one pauseView
	resp = a.fleet(t, "GET", resp.Header.Get("Location"), nil)
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	resp.decode(t, &one)
	assert.Equal(t, pauseView{PauseID: "storm", AreaID: "north", State: "active"}, one)
	var kept struct{ Pauses []pauseView }
	a.fleet(t, "GET", "/api/pauses", nil).decode(t, &kept)
	assert.Equal(t, []pauseView{one}, kept.Pauses)
	// The paused area stays while the pause is in force.
	resp = a.fleet(t, "DELETE", "/api/serviceareas/north", nil)
	require.Equal(t, http.StatusConflict, resp.Status, string(resp.Body))
	assert.Contains(t, string(resp.Body), "pause storm")

	// New requests in the north are refused; the south is served.
	resp = a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("refused", north, domain.Location{Latitude: 47.66, Longitude: -122.33}, "Small", 1))
	require.Equal(t, http.StatusServiceUnavailable, resp.Status, string(resp.Body))
	assert.Contains(t, string(resp.Body), "thunderstorm over the north")
	assert.Contains(t, string(resp.Body), `"field":"pickupLocation"`)
	retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err)
	assert.InDelta(t, 3600, retry, 120, "Retry-After is the pause's end")
	var quote struct {
		Paused string `json:"paused"`
	}
	resp = a.call(t, "POST", "/api/deliveryquotes", deliveryRequest("q", north, domain.Location{Latitude: 47.66, Longitude: -122.33}, "Small", 1))
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	resp.decode(t, &quote)
	assert.Contains(t, quote.Paused, "thunderstorm over the north")
	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests",
		deliveryRequest("south", south, domain.Location{Latitude: 47.605, Longitude: -122.325}, "Small", 1)).Status, "outside the paused area")

	// The drone comes back: the south's delivery gets it, the north's is held.
	require.Equal(t, http.StatusOK, a.fleet(t, "PUT", "/api/drones/only", droneSpec{
		Location: south, MaxPayloadKg: 5, MaxPackageSize: "Small", RangeKm: 30, CruiseSpeedMps: 12, BatteryPercent: 100}).Status)
	waitStage(t, a, "south", domain.StageScheduled)
	var st struct {
		Stage      domain.Stage `json:"stage"`
		HeldReason string       `json:"heldReason"`
	}
	eventually(t, "the waiting delivery held", func() bool {
		a.call(t, "GET", "/api/deliveries/waiting/status", nil).decode(t, &st)
		return st.HeldReason != ""
	})
	assert.Equal(t, "thunderstorm over the north", st.HeldReason)
	assert.Equal(t, domain.StageCreated, st.Stage, "held, not failed")
	tracking := getDelivery(t, a, "waiting").TrackingID
	var feed struct {
		Notice, HeldReason string
	}
	call(t, "GET", p.base+"/api/track/"+tracking+"/feed", nil).decode(t, &feed)
	assert.Equal(t, "thunderstorm over the north", feed.HeldReason, "the customer sees why")
	// So does the tracking page (it said it was finding a drone).
	func() {
		browserTurn.Lock()
		defer browserTurn.Unlock()
		page := browser.OpenPage(t, p.base+"/api/track/"+tracking+"?interval=500", 800, 900, patience)
		page.Wait(t, "the page shows the hold and its reason", `document.body.innerText.includes('Service paused at your pickup') && document.body.innerText.includes('thunderstorm over the north')`)
	}()

	// Free the drone; lift the pause: the held delivery is dispatched.
	require.Equal(t, http.StatusAccepted, a.fleet(t, "POST", "/api/deliveries/south/actions", map[string]any{"action": "abort", "reason": "test over"}).Status)
	waitDrone(t, a, "only", "free", func(d *domain.Drone) bool { return d.Status == domain.DroneAvailable })
	require.Equal(t, http.StatusNoContent, a.fleet(t, "DELETE", "/api/pauses/storm", nil).Status)
	d := waitStage(t, a, "waiting", domain.StageScheduled)
	assert.Equal(t, "only", d.DroneID)
	st.HeldReason = "" // absent from the answer when not held
	a.call(t, "GET", "/api/deliveries/waiting/status", nil).decode(t, &st)
	assert.Empty(t, st.HeldReason)

	// Everywhere: no area.
	require.Equal(t, http.StatusCreated, a.fleet(t, "PUT", "/api/pauses/all", map[string]any{"reason": "airspace closed"}).Status)
	resp = a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("closed", south, domain.Location{Latitude: 47.605, Longitude: -122.325}, "Small", 1))
	require.Equal(t, http.StatusServiceUnavailable, resp.Status)
	assert.Equal(t, "300", resp.Header.Get("Retry-After"))
	require.Equal(t, http.StatusNoContent, a.fleet(t, "DELETE", "/api/pauses/all", nil).Status)
	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests",
		deliveryRequest("closed", south, domain.Location{Latitude: 47.605, Longitude: -122.325}, "Small", 1)).Status, "accepted again")
	// With its pause lifted, the area can go.
	require.Equal(t, http.StatusNoContent, a.fleet(t, "DELETE", "/api/serviceareas/north", nil).Status)
}

// TestServicePausesEndToEnd runs the pause scenario on the embedded
// backend; DISPATCH_RETRY_MAX makes a held delivery look again each second.
func TestServicePausesEndToEnd(t *testing.T) {
	t.Parallel()
	pauseScenario(t, startServeEnv(t, t.TempDir(), []string{"DISPATCH_RETRY_MAX=1s"}))
}

// TestServicePausesOnAzureAdapters runs it on Cosmos DB and Service Bus.
func TestServicePausesOnAzureAdapters(t *testing.T) {
	t.Parallel()
	pauseScenario(t, startOnAzure(t, "DISPATCH_RETRY_MAX=1s"))
}

// TestDroneKeysHaveTheirOwnRateBucket: with the operator's bucket spent,
// a drone's own key still posts its telemetry.
func TestDroneKeysHaveTheirOwnRateBucket(t *testing.T) {
	t.Parallel()
	p := startServeEnv(t, t.TempDir(), []string{"RATE_LIMIT=5/m", "RATE_BURST=5"})
	a := api{base: p.base}
	home := domain.Location{Latitude: 47.600, Longitude: -122.330}
	putDrone(t, a, "solo", home, "Small")
	resp := a.fleet(t, "POST", "/api/drones/solo/keys", nil)
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	var key struct{ APIKey string }
	resp.decode(t, &key)
	at := time.Now().UTC()
	body := func() map[string]any {
		at = at.Add(time.Second)
		return map[string]any{"location": home, "batteryPercent": 90, "timestamp": at.Format(time.RFC3339Nano)}
	}
	spent := false
	for range 20 {
		if r := a.fleet(t, "POST", "/api/drones/solo/telemetry", body()); r.Status == http.StatusTooManyRequests {
			spent = true
			break
		}
	}
	require.True(t, spent, "the operator's bucket ran out")
	r := callAs(t, key.APIKey, "POST", p.base+"/api/drones/solo/telemetry", body())
	assert.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
}
