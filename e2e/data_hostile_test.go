package e2e

// Hostile data: what one tenant, or one drone, can do to the documents and
// feeds others rely on (issue 16: tenant-scoped ids, bounded documents,
// telemetry times, the numbers that feed an ETA).

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// report posts one telemetry report for droneID and requires its 202.
func report(t *testing.T, a api, droneID string, loc domain.Location, battery float64, at time.Time) {
	t.Helper()
	resp := a.fleet(t, "POST", "/api/drones/"+droneID+"/telemetry",
		map[string]any{"location": loc, "batteryPercent": battery, "timestamp": at.UTC().Format(time.RFC3339Nano)})
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
}

// waitAt waits until the delivery's last known location is loc: the report
// that put it there has been applied.
func waitAt(t *testing.T, a api, id string, loc domain.Location) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s to be seen at %v", id, loc), func() bool {
		d := getDelivery(t, a, id)
		return d.LastKnownLocation != nil && d.LastKnownLocation.Latitude == loc.Latitude && d.LastKnownLocation.Longitude == loc.Longitude
	})
}

var (
	dataHome   = domain.Location{Latitude: 47.6000, Longitude: -122.3300}
	dataPickup = domain.Location{Latitude: 47.6050, Longitude: -122.3300}
	dataDrop   = domain.Location{Latitude: 47.6150, Longitude: -122.3300}
)

func putDataDrone(t *testing.T, a api, id string) {
	t.Helper()
	resp := a.fleet(t, "PUT", "/api/drones/"+id, droneSpec{Location: dataHome, MaxPayloadKg: 5, MaxPackageSize: "Medium",
		RangeKm: 200, CruiseSpeedMps: 15, BatteryPercent: 100})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
}

// TestSamePackageIDInTwoAccountsBothComplete: two businesses follow the
// README and both send packageId pkg-1001. Package ids are each account's
// own, so both deliveries are scheduled and completed, each package record
// names its own delivery, and neither business sees the other's.
func TestSamePackageIDInTwoAccountsBothComplete(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir())
	a, b := signUp(t, p.base), signUp(t, p.base)
	putDataDrone(t, a, "pkg-drone-1")
	putDataDrone(t, a, "pkg-drone-2")
	for who, id := range map[api]string{a: "pkg-a", b: "pkg-b"} {
		req := deliveryRequest(id, dataPickup, dataDrop, "Small", 1)
		req["packageInfo"] = map[string]any{"packageId": "pkg-1001", "size": "Small", "weight": 1}
		resp := who.call(t, "POST", "/api/deliveryrequests", req)
		require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	}
	at := time.Now()
	for who, id := range map[api]string{a: "pkg-a", b: "pkg-b"} {
		d := waitStage(t, who, id, domain.StageScheduled, domain.StageFailed)
		require.Equal(t, domain.StageScheduled, d.Stage, "%s: %s", id, d.FailureReason)
		report(t, a, d.DroneID, dataPickup, 90, at)
		report(t, a, d.DroneID, dataDrop, 85, at.Add(time.Second))
	}
	for who, id := range map[api]string{a: "pkg-a", b: "pkg-b"} {
		waitStage(t, who, id, domain.StageCompleted)
		var pkg struct{ ID, DeliveryID, Status string }
		resp := who.call(t, "GET", "/api/packages/pkg-1001", nil)
		require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
		resp.decode(t, &pkg)
		assert.Equal(t, "pkg-1001", pkg.ID, "shown by the id the business gave")
		assert.Equal(t, id, pkg.DeliveryID)
		assert.Equal(t, "Delivered", pkg.Status)
	}
	for _, d := range availableDrones(t, a) {
		assert.Empty(t, d.CurrentDeliveryID)
	}
	assert.Len(t, availableDrones(t, a), 2, "both drones free again")
}

// TestFeedOfAnEndedDeliveryHidesItsFormerDrone: a cancelled delivery's
// anonymous feed keeps showing where its drone was on it, never where the
// drone is now, nor its battery, while it flies another account's delivery.
func TestFeedOfAnEndedDeliveryHidesItsFormerDrone(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir())
	a, b := signUp(t, p.base), signUp(t, p.base)
	putDataDrone(t, a, "feed-drone")
	track := func(who api, id string) string {
		resp := who.call(t, "POST", "/api/deliveryrequests", deliveryRequest(id, dataPickup, dataDrop, "Small", 1))
		require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
		var acc struct{ TrackingID string }
		resp.decode(t, &acc)
		waitStage(t, who, id, domain.StageScheduled)
		return acc.TrackingID
	}
	type feed struct {
		Stage domain.Stage   `json:"stage"`
		Drone map[string]any `json:"drone"`
	}
	feedOf := func(tid string) feed {
		var f feed
		resp := call(t, "GET", p.base+"/api/track/"+tid+"/feed", nil)
		require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
		resp.decode(t, &f)
		return f
	}
	loc := func(f feed) domain.Location {
		require.NotNil(t, f.Drone)
		l := f.Drone["location"].(map[string]any)
		return domain.Location{Latitude: l["latitude"].(float64), Longitude: l["longitude"].(float64)}
	}

	onA := domain.Location{Latitude: 47.6020, Longitude: -122.3300}
	tidA := track(a, "feed-a")
	start := time.Now()
	report(t, a, "feed-drone", onA, 80, start)
	waitAt(t, a, "feed-a", onA)
	// The report writes the delivery, then the drone, whose record the
	// feed shows live.
	var f feed
	eventually(t, "the feed to show the drone where it reported", func() bool {
		f = feedOf(tidA)
		return f.Drone != nil && loc(f) == onA
	})
	assert.Equal(t, onA, loc(f), "live while it serves the delivery")
	assert.Equal(t, 80.0, f.Drone["batteryPercent"])

	require.Equal(t, http.StatusNoContent, a.call(t, "DELETE", "/api/deliveryrequests/feed-a", nil).Status)
	eventually(t, "the drone to be released", func() bool { return len(availableDrones(t, a)) == 1 })
	tidB := track(b, "feed-b")
	require.Equal(t, "feed-drone", getDelivery(t, b, "feed-b").DroneID)
	onB := domain.Location{Latitude: 47.6030, Longitude: -122.3310}
	report(t, a, "feed-drone", onB, 42, start.Add(time.Second))
	waitAt(t, b, "feed-b", onB)

	f = feedOf(tidA)
	assert.Equal(t, domain.StageCancelled, f.Stage)
	assert.Equal(t, onA, loc(f), "where it was on this delivery, not where it is")
	assert.NotContains(t, f.Drone, "batteryPercent", "no battery of a drone that flies for someone else")
	f = feedOf(tidB)
	assert.Equal(t, onB, loc(f))
	assert.Equal(t, 42.0, f.Drone["batteryPercent"])
}

// TestTelemetryOutsideTheClockWindowIsRefused: a report dated 2999 would
// freeze the drone (only a newer report moves it) and promise an ETA in
// 2999; one dated 2001 would complete the delivery 25 years before it was
// accepted. Both are refused with 422 naming the timestamp, and nothing of
// their POST is applied.
func TestTelemetryOutsideTheClockWindowIsRefused(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir())
	a := signUp(t, p.base)
	putDataDrone(t, a, "clock-drone")
	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("clock", dataPickup, dataDrop, "Small", 1)).Status)
	waitStage(t, a, "clock", domain.StageScheduled)

	refused := func(body any, field string) {
		t.Helper()
		resp := a.fleet(t, "POST", "/api/drones/clock-drone/telemetry", body)
		require.Equal(t, http.StatusUnprocessableEntity, resp.Status, string(resp.Body))
		assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
		var prob struct{ Field string }
		resp.decode(t, &prob)
		assert.Equal(t, field, prob.Field)
	}
	now := time.Now().UTC()
	rep := func(loc domain.Location, at string) map[string]any {
		return map[string]any{"location": loc, "batteryPercent": 90, "timestamp": at}
	}
	refused(rep(dataPickup, "2999-01-01T00:00:00Z"), "timestamp")
	refused([]any{rep(dataPickup, now.Format(time.RFC3339)), rep(dataDrop, "2001-01-01T00:00:00Z")}, "[1].timestamp")
	refused(rep(dataPickup, now.Add(time.Hour).Format(time.RFC3339)), "timestamp")

	var drone domain.Drone
	a.fleet(t, "GET", "/api/drones/clock-drone", nil).decode(t, &drone)
	assert.Nil(t, drone.LastTelemetryAt, "no report of a refused POST was applied")
	assert.Equal(t, domain.StageScheduled, getDelivery(t, a, "clock").Stage)

	// Reports within the window carry it to completion, and the month's
	// summary measures a duration that is not negative.
	report(t, a, "clock-drone", dataPickup, 90, now.Add(-time.Minute))
	report(t, a, "clock-drone", dataDrop, 85, now)
	d := waitStage(t, a, "clock", domain.StageCompleted)
	require.NotNil(t, d.DeliveryETA)
	assert.Less(t, d.DeliveryETA.Year(), 2100)
	var sum struct {
		Completed              int     `json:"completed"`
		AverageDurationMinutes float64 `json:"averageDurationMinutes"`
	}
	a.call(t, "GET", "/api/deliveries/summary", nil).decode(t, &sum)
	assert.Equal(t, 1, sum.Completed)
	assert.GreaterOrEqual(t, sum.AverageDurationMinutes, 0.0)
}

// maxDeliveryDocument is the bound TestDocumentsStayBounded holds a delivery
// document to after 5,000 reports and 5,000 reschedules: an eighth of Cosmos
// DB's 2 MB item limit (docs/SECURITY.md).
const maxDeliveryDocument = 256 << 10

// TestDocumentsStayBounded drives 5,000 reschedules and then 5,000
// telemetry reports (each moving the ETA enough for a notice) at one
// delivery through the binary, and reads the stored document's size from
// the data folder: the trail, history and notices are capped, so the
// document stays far below Cosmos DB's item limit, and the delivery still
// completes. The reschedules come while no drone is registered, so that
// each costs the chain one dispatch attempt rather than a full schedule.
func TestDocumentsStayBounded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startServe(t, dir)
	a := signUp(t, p.base)
	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("bulk", dataPickup, dataDrop, "Small", 1)).Status)
	db := openReadOnly(t, dir)
	size := func() int {
		var n int
		require.NoError(t, db.QueryRow(`SELECT length(body) FROM documents WHERE collection = ? AND id = ?`, topology.ContainerDeliveries, "bulk").Scan(&n))
		return n
	}
	queued := func(queue string) int {
		var n int
		require.NoError(t, db.QueryRow(`SELECT count(*) FROM messages WHERE queue = ?`, queue).Scan(&n))
		return n
	}

	// 5,000 reschedules, four at a time, each to another deadline (the
	// same change again would change nothing).
	const patches = 5000
	began := time.Now()
	base := time.Now().Add(6 * time.Hour).UTC().Truncate(time.Second)
	reschedule := map[string]any{"deadline": base.Format(time.RFC3339)}
	var wg sync.WaitGroup
	statuses := make(chan int, patches)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < patches; i += 4 {
				moved := map[string]any{"deadline": base.Add(time.Duration(i+1) * time.Second).Format(time.RFC3339)}
				statuses <- a.call(t, "PATCH", "/api/deliveryrequests/bulk", moved).Status
			}
		}()
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		require.Equal(t, http.StatusAccepted, s)
	}
	afterPatches := size()
	t.Logf("%d reschedules in %s", patches, time.Since(began))

	// A drone, and one more reschedule to dispatch at once.
	putDataDrone(t, a, "bulk-drone")
	require.Equal(t, http.StatusAccepted, a.call(t, "PATCH", "/api/deliveryrequests/bulk", reschedule).Status)
	waitStage(t, a, "bulk", domain.StageScheduled)

	// 2 km and 10 km north of the pickup in turn: every report moves the
	// ETA by minutes, and none comes near the pickup. Batches of 100, the
	// most one POST takes; dated in the last 90 minutes, one second apart.
	near := domain.Location{Latitude: dataPickup.Latitude + 0.018, Longitude: dataPickup.Longitude}
	far := domain.Location{Latitude: dataPickup.Latitude + 0.09, Longitude: dataPickup.Longitude}
	start := time.Now().UTC().Add(-90 * time.Minute)
	const reports = 5000
	began = time.Now()
	for batch := 0; batch < reports; batch += 100 {
		body := make([]map[string]any, 100)
		for i := range body {
			n := batch + i
			loc := far
			if n%2 == 1 {
				loc = near
			}
			body[i] = map[string]any{"location": loc, "batteryPercent": 90, "timestamp": start.Add(time.Duration(n) * time.Second).Format(time.RFC3339Nano)}
		}
		resp := a.fleet(t, "POST", "/api/drones/bulk-drone/telemetry", body)
		require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	}
	eventually(t, "every report applied", func() bool { return queued(topology.QueueDroneTelemetry) == 0 })
	t.Logf("%d reports applied in %s", reports, time.Since(began))
	var drone domain.Drone
	a.fleet(t, "GET", "/api/drones/bulk-drone", nil).decode(t, &drone)
	require.NotNil(t, drone.LastTelemetryAt)
	require.True(t, drone.LastTelemetryAt.Equal(start.Add((reports-1)*time.Second)), "last report applied: %s", drone.LastTelemetryAt)
	assert.Equal(t, near, *getDelivery(t, a, "bulk").LastKnownLocation)
	final := size()
	t.Logf("delivery document: %d bytes after %d reschedules, %d bytes after %d reports as well", afterPatches, patches, final, reports)
	assert.Less(t, afterPatches, maxDeliveryDocument)
	assert.Less(t, final, maxDeliveryDocument)

	hist := historyOf(t, a, "bulk")
	require.LessOrEqual(t, len(hist), domain.MaxHistoryEvents)
	marker := hist[1]
	assert.Equal(t, domain.EventTruncated, marker.Kind)
	assert.Greater(t, marker.Omitted+len(hist)-1, patches, "every reschedule counted, omitted or shown")
	assert.Equal(t, domain.StageHeadedToPickup, hist[len(hist)-1].Stage)

	var notes struct {
		Notifications []domain.Notification `json:"notifications"`
	}
	a.call(t, "GET", "/api/deliveries/bulk/notifications", nil).decode(t, &notes)
	assert.Len(t, notes.Notifications, domain.MaxNotifications)
	var trail struct {
		Trail []domain.TrailPoint `json:"trail"`
	}
	call(t, "GET", p.base+"/api/track/"+getDelivery(t, a, "bulk").TrackingID+"/feed", nil).decode(t, &trail)
	assert.LessOrEqual(t, len(trail.Trail), domain.MaxTrailPoints)
	assert.True(t, trail.Trail[0].At.Equal(start), "the path is drawn from its first report")

	// And it still flies to the end.
	now := time.Now().UTC()
	report(t, a, "bulk-drone", dataPickup, 90, now)
	report(t, a, "bulk-drone", dataDrop, 85, now.Add(time.Second))
	waitStage(t, a, "bulk", domain.StageCompleted)
	assert.Less(t, size(), maxDeliveryDocument)
}
