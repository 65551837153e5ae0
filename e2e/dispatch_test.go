package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/tools/testdoubles"
)

// TestDispatchRules runs the dispatch scenario through the binary on the
// embedded backend.
func TestDispatchRules(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir())
	dispatchScenario(t, p)
	p.stop(t)
}

// TestDispatchRulesOnAzureAdapters runs it on Cosmos DB and Service Bus,
// through the local doubles.
func TestDispatchRulesOnAzureAdapters(t *testing.T) {
	t.Parallel()
	cosmos := testdoubles.StartCosmos(t)
	sb := testdoubles.StartServiceBus(t)
	p := startServeEnv(t, t.TempDir(), []string{
		"CosmosDBConnection=" + cosmos,
		"ServiceBusConnection=" + sb.ConnectionString(),
		fmt.Sprintf("COSMOS_DATABASE=e2e%d", time.Now().UnixNano()),
		"COSMOS_BOOTSTRAP=true",
	})
	require.Contains(t, p.logs.String(), `"backend":"Cosmos DB`, "the binary opened the Azure backends")
	dispatchScenario(t, p)
	p.stop(t)
}

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
	refused := []struct {
		name, field, says string
		body              map[string]any
	}{
		{"50 kg", "packageInfo.weight", "more than any drone", deliveryRequest("heavy", seattle, north(1), "Small", 50)},
		{"Sydney", "pickupLocation", "out of range", deliveryRequest("sydney", sydney, sydney, "Small", 1)},
		{"dropoff out of range", "dropOffLocation", "out of range", deliveryRequest("far", seattle, north(40), "Small", 1)},
	}
	year2999 := deliveryRequest("y2999", seattle, north(1), "Small", 1)
	year2999["deadline"] = "2999-01-01T00:00:00Z"
	refused = append(refused, struct {
		name, field, says string
		body              map[string]any
	}{"deadline in 2999", "deadline", "ahead", year2999})
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
}
