package handlers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/domain/airspacetest"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// fixedAirspace serves one airspace through the port.
type fixedAirspace struct{ a domain.Airspace }

func (f fixedAirspace) Current(context.Context) (domain.Airspace, error) { return f.a, nil }

var _ ports.Airspace = fixedAirspace{}

// problem decodes a problem+json answer.
func problem(t *testing.T, resp *functionapp.Response) (field, detail string) {
	t.Helper()
	require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), string(resp.Body))
	var p struct{ Field, Detail string }
	require.NoError(t, json.Unmarshal(resp.Body, &p))
	return p.Field, p.Detail
}

func TestIngestRefusesWhatNoDroneCouldServe(t *testing.T) {
	t.Parallel()
	zone := airspacetest.Circles{Zones: []airspacetest.Zone{{Name: "stadium", Center: at(0.05, 0.05), RadiusKm: 0.5}}}
	f := newFixtureWith(t, func(d *handlers.Deps) { d.Airspace = fixedAirspace{zone} })
	f.putDrone(t, domain.Drone{ID: "d1", Location: at(0, 0), MaxPayloadKg: 10, RangeKm: 40})
	sydney := domain.Location{Latitude: -33.87, Longitude: 151.21}
	body := func(edit func(m map[string]any)) []byte {
		m := map[string]any{"deliveryId": "x", "pickupLocation": at(0.01, 0), "dropOffLocation": at(0.02, 0),
			"packageInfo": map[string]any{"size": "Small", "weight": 1.0}}
		edit(m)
		b, _ := json.Marshal(m)
		return b
	}
	cases := []struct {
		name, field, says string
		edit              func(m map[string]any)
	}{
		{"50 kg", "packageInfo.weight", "more than any drone", func(m map[string]any) { m["packageInfo"].(map[string]any)["weight"] = 50.0 }},
		{"Sydney", "pickupLocation", "out of range", func(m map[string]any) { m["pickupLocation"], m["dropOffLocation"] = sydney, sydney }},
		{"in a zone", "dropOffLocation", "stadium", func(m map[string]any) { m["dropOffLocation"] = at(0.05, 0.05) }},
		{"deadline in 2999", "deadline", "ahead", func(m map[string]any) { m["deadline"] = "2999-01-01T00:00:00Z" }},
		{"pickup yesterday", "pickupTime", "past", func(m map[string]any) { m["pickupTime"] = t0.Add(-24 * time.Hour).Format(time.RFC3339) }},
	}
	for _, tc := range cases {
		resp := f.ingest(t, body(tc.edit))
		require.Equal(t, http.StatusUnprocessableEntity, resp.Status, "%s: %s", tc.name, resp.Body)
		field, detail := problem(t, resp)
		assert.Equal(t, tc.field, field, tc.name)
		assert.Contains(t, detail, tc.says, tc.name)
	}
	_, err := f.store.Deliveries.Find(context.Background(), "x")
	assert.True(t, domain.IsCode(err, domain.ENOTFOUND), "nothing stored")
	active, _, err := f.bus.Depth(context.Background(), topology.QueueDeliveryRequests)
	require.NoError(t, err)
	assert.Zero(t, active, "nothing queued")

	// The same request within reach is accepted; its reschedule to
	// Sydney is refused and changes nothing.
	require.Equal(t, http.StatusAccepted, f.ingest(t, body(func(map[string]any) {})).Status)
	patch, _ := json.Marshal(map[string]any{"pickupLocation": sydney, "dropOffLocation": sydney})
	resp := f.biz("RescheduleDelivery", &functionapp.Request{Method: "PATCH", Params: map[string]string{"id": "x"}, Body: patch})
	require.Equal(t, http.StatusUnprocessableEntity, resp.Status, string(resp.Body))
	assert.Equal(t, domain.StageCreated, f.delivery(t, "x").Stage)
	assert.Equal(t, 0, f.delivery(t, "x").Generation)
}

// A drone registered through this process counts at once; one written
// elsewhere once the summary is older than its TTL.
func TestFeasibilityLearnsOfNewDrones(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "light", Location: at(0, 0), MaxPayloadKg: 2})
	heavy := requestBody("h1", at(0.01, 0), at(0.02, 0), "Small", 8)
	require.Equal(t, http.StatusUnprocessableEntity, f.ingest(t, heavy).Status)
	f.putDrone(t, domain.Drone{ID: "heavy", Location: at(0, 0), MaxPayloadKg: 10})
	require.Equal(t, http.StatusAccepted, f.ingest(t, heavy).Status)

	heavier := requestBody("h2", at(0.01, 0), at(0.02, 0), "Small", 20)
	require.Equal(t, http.StatusUnprocessableEntity, f.ingest(t, heavier).Status)
	require.NoError(t, f.store.Fleet.Create(context.Background(), "lifter", &domain.Drone{ID: "lifter", Location: at(0, 0), HomeBase: at(0, 0),
		MaxPayloadKg: 25, MaxPackageSize: domain.SizeLarge, RangeKm: 40, CruiseSpeedMps: 15, BatteryPercent: 100, Status: domain.DroneAvailable}))
	f.clock.Advance(handlers.DefaultFleetSummaryTTL + time.Second)
	require.Eventually(t, func() bool { return f.ingest(t, heavier).Status == http.StatusAccepted }, 10*time.Second, 10*time.Millisecond)
}
