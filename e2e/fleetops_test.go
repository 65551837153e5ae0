package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
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

// postReport posts one telemetry report of drone id with the operator key.
func postReport(t *testing.T, a api, id string, loc domain.Location, battery float64, at time.Time) {
	t.Helper()
	r := a.fleet(t, "POST", "/api/drones/"+id+"/telemetry", map[string]any{
		"location": loc, "batteryPercent": battery, "timestamp": at.Format(time.RFC3339Nano)})
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
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
	home := domain.Location{Latitude: 47.600, Longitude: -122.330}
	pickup := domain.Location{Latitude: 47.610, Longitude: -122.330}
	drop := domain.Location{Latitude: 47.625, Longitude: -122.320}

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
	route := append(flightPath(home, pickup, 3), flightPath(pickup, drop, 3)[1:]...)
	for i, loc := range route {
		clock = clock.Add(10 * time.Second)
		postReport(t, a, "gauge", loc, 100-float64(i)*(88.0/float64(len(route)-1)), clock)
	}
	waitStage(t, a, "low", domain.StageCompleted)
	d = waitDrone(t, a, "gauge", "back in service after charging", func(d *domain.Drone) bool {
		return d.Status == domain.DroneAvailable && d.BatteryPercent >= 95
	})
	assert.Equal(t, 17.0, d.RangeKm, "(95 − 10) % of a 20 km charge")
	assert.Contains(t, p.logs.String(), `"msg":"drone charged"`, "it went by way of Charging")
}

// fleetOpsScenario grounds a drone in the middle of its delivery and sees
// the delivery handed on to another drone with the customer told and the
// action audited; then aborts it in flight as returned to sender; then
// shows a charging drone returned to service by a report at the threshold.
func fleetOpsScenario(t *testing.T, p *proc) {
	a := signUp(t, p.base)
	pickup := domain.Location{Latitude: 47.610, Longitude: -122.330}
	drop := domain.Location{Latitude: 47.620, Longitude: -122.325}
	near := domain.Location{Latitude: 47.605, Longitude: -122.330}
	far := domain.Location{Latitude: 47.595, Longitude: -122.330}
	for id, loc := range map[string]domain.Location{"first": near, "second": far} {
		require.Equal(t, http.StatusCreated, a.fleet(t, "PUT", "/api/drones/"+id, droneSpec{
			Location: loc, MaxPayloadKg: 5, MaxPackageSize: "Small", RangeKm: 30, CruiseSpeedMps: 12, BatteryPercent: 100}).Status)
	}
	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("handed", pickup, drop, "Small", 1)).Status)
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
	var hist struct {
		Events []domain.Event `json:"events"`
	}
	a.call(t, "GET", "/api/deliveries/handed/history", nil).decode(t, &hist)
	require.NoError(t, domain.LegalHistory(hist.Events))
	var actions []domain.Event
	for _, e := range hist.Events {
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
	for _, id := range []string{"alpha", "beta"} {
		require.Equal(t, http.StatusCreated, a.fleet(t, "PUT", "/api/drones/"+id, droneSpec{
			Location: home, MaxPayloadKg: 5, MaxPackageSize: "Small", RangeKm: 30, CruiseSpeedMps: 12, BatteryPercent: 100}).Status)
	}
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
