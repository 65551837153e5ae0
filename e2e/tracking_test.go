package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// flightPath interpolates n points from a to b, both ends included.
func flightPath(a, b domain.Location, n int) []domain.Location {
	out := make([]domain.Location, n)
	for i := range n {
		f := float64(i) / float64(n-1)
		out[i] = domain.Location{Latitude: a.Latitude + f*(b.Latitude-a.Latitude), Longitude: a.Longitude + f*(b.Longitude-a.Longitude)}
	}
	return out
}

// TestTrackingEndToEnd replays a flight's telemetry through the public API
// and follows the delivery from Scheduled to Completed.
func TestTrackingEndToEnd(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir())
	a := signUp(t, p.base)
	trackingID := northFlight.schedule(t, a, "courier", "live")

	clock := time.Now().UTC()
	var remaining []time.Duration
	seen := map[domain.Stage]bool{}
	route := northFlight.route(8, 10)
	for i, loc := range route {
		clock = clock.Add(15 * time.Second)
		postReport(t, a, "courier", loc, float64(100-i), clock)
		var st deliveryDoc // the status holds a few of the delivery's fields
		eventually(t, fmt.Sprintf("report %d applied", i), func() bool {
			a.call(t, "GET", "/api/deliveries/live/status", nil).decode(t, &st)
			return st.LastKnownLocation != nil && *st.LastKnownLocation == loc
		})
		seen[st.Stage] = true
		if st.Stage != domain.StageCompleted {
			require.NotNil(t, st.DeliveryETA)
			remaining = append(remaining, st.DeliveryETA.Sub(clock))
		}
		if i == len(route)-1 {
			assert.Equal(t, domain.StageCompleted, st.Stage)
		}
	}
	for _, s := range []domain.Stage{domain.StageHeadedToPickup, domain.StageHeadedToDropoff, domain.StageCompleted} {
		assert.True(t, seen[s], "passed %s", s)
	}
	for i := 1; i < len(remaining); i++ {
		assert.Less(t, remaining[i], remaining[i-1], "time to delivery shrinks as the drone approaches (report %d)", i)
	}

	// The drone is written after the delivery, by the same report.
	var drone domain.Drone
	eventually(t, "the drone to be freed", func() bool {
		drone = domain.Drone{} // a field the answer leaves out must not keep an earlier poll's value
		a.fleet(t, "GET", "/api/drones/courier", nil).decode(t, &drone)
		return drone.Status == domain.DroneAvailable
	})
	assert.Empty(t, drone.CurrentDeliveryID)

	hist := historyOf(t, a, "live")
	assert.Equal(t, domain.StageCompleted, hist[len(hist)-1].Stage)

	var notes struct {
		Notifications []domain.Notification `json:"notifications"`
	}
	a.call(t, "GET", "/api/deliveries/live/notifications", nil).decode(t, &notes)
	require.NotEmpty(t, notes.Notifications)
	assert.Equal(t, domain.NotifyDelivered, notes.Notifications[len(notes.Notifications)-1].Kind)

	feed := call(t, "GET", p.base+"/api/track/"+trackingID+"/feed", nil)
	require.Equal(t, http.StatusOK, feed.Status)
	var f struct {
		Stage domain.Stage `json:"stage"`
		Trail []any        `json:"trail"`
	}
	feed.decode(t, &f)
	assert.Equal(t, domain.StageCompleted, f.Stage)
	assert.Len(t, f.Trail, len(route))
	assert.Equal(t, http.StatusNotFound, call(t, "GET", p.base+"/api/track/NOPE.live/feed", nil).Status)

	// A completed delivery cannot be cancelled.
	assert.Equal(t, http.StatusConflict, a.call(t, "DELETE", "/api/deliveryrequests/live", nil).Status)

	var summary map[string]any
	created := getDelivery(t, a, "live").CreatedAt.UTC() // the month it counts in
	a.call(t, "GET", "/api/deliveries/summary?year="+created.Format("2006")+"&month="+created.Format("1"), nil).decode(t, &summary)
	assert.EqualValues(t, 1, summary["count"])
	assert.EqualValues(t, 1, summary["completed"])
}

// TestCancelAndRescheduleEndToEnd exercises both operations over HTTP.
func TestCancelAndRescheduleEndToEnd(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir())
	a := signUp(t, p.base)
	registerFleet(t, a, testFleet(6))
	near := domain.Location{Latitude: 47.6062, Longitude: -122.3321}
	drop := domain.Location{Latitude: 47.61, Longitude: -122.33}

	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("cx", near, drop, "Small", 1)).Status)
	d := waitStage(t, a, "cx", domain.StageScheduled)
	require.Equal(t, http.StatusNoContent, a.call(t, "DELETE", "/api/deliveryrequests/cx", nil).Status)
	assert.Equal(t, domain.StageCancelled, getDelivery(t, a, "cx").Stage)
	eventually(t, "the cancelled delivery's drone to be free", func() bool {
		var dr domain.Drone
		a.fleet(t, "GET", "/api/drones/"+d.DroneID, nil).decode(t, &dr)
		return dr.Status == domain.DroneAvailable && dr.CurrentDeliveryID == ""
	})
	assert.Equal(t, http.StatusNoContent, a.call(t, "DELETE", "/api/deliveryrequests/cx", nil).Status, "idempotent")

	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("rx", near, drop, "Small", 1)).Status)
	waitStage(t, a, "rx", domain.StageScheduled)
	r := a.call(t, "PATCH", "/api/deliveryrequests/rx", map[string]any{"dropOffLocation": domain.Location{Latitude: 47.612, Longitude: -122.331}})
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	eventually(t, "the rescheduled delivery to be scheduled again", func() bool {
		g := getDelivery(t, a, "rx")
		return g.Stage == domain.StageScheduled && g.DropoffLocation.Latitude == 47.612
	})
	var stages []domain.Stage
	for _, e := range historyOf(t, a, "rx") {
		stages = append(stages, e.Stage)
	}
	assert.Equal(t, []domain.Stage{domain.StageCreated, domain.StageScheduled, domain.StageRescheduled, domain.StageScheduled}, stages)
}
