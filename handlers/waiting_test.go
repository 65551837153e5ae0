package handlers_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

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
