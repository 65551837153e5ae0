package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/adapters/webhook"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// leg interpolates n reports from a to b (both ends included).
func leg(a, b domain.Location, n int) []domain.Location {
	out := make([]domain.Location, n)
	for i := range n {
		f := float64(i) / float64(n-1)
		out[i] = domain.Location{Latitude: a.Latitude + f*(b.Latitude-a.Latitude), Longitude: a.Longitude + f*(b.Longitude-a.Longitude)}
	}
	return out
}

// report posts one telemetry report through the HTTP handler and runs the
// queues dry.
func (f *fixture) report(t *testing.T, droneID string, loc domain.Location, battery float64, at time.Time) {
	t.Helper()
	if at.After(f.clock.Now()) {
		f.clock.Set(at) // a report is sent as it is made
	}
	body, _ := json.Marshal(map[string]any{"location": loc, "batteryPercent": battery, "timestamp": at.Format(time.RFC3339Nano)})
	resp := f.fleet("PostTelemetry", &functionapp.Request{Method: "POST", Params: map[string]string{"id": droneID}, Body: body})
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	f.drain(t)
}

func (f *fixture) scheduled(t *testing.T, id string, pickup, drop domain.Location) *domain.Delivery {
	t.Helper()
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody(id, pickup, drop, "Small", 1)).Status)
	f.drain(t)
	d := f.delivery(t, id)
	require.Equal(t, domain.StageScheduled, d.Stage)
	return d
}

// A drone whose clock runs half an hour behind the service's still has
// its delivery picked up and delivered: its reports, all accepted, are
// dated before the time the delivery was accepted and its pickup was due.
func TestADroneClockBehindTheServicesCompletesItsDelivery(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pickup, drop := at(0, 0), at(0.005, 0)
	f.putDrone(t, domain.Drone{ID: "lagging", Location: at(-0.002, 0)})
	f.scheduled(t, "late-clock", pickup, drop)
	behind := -30 * time.Minute
	for i, loc := range []domain.Location{at(-0.001, 0), pickup, at(0.003, 0), drop} {
		f.clock.Advance(time.Minute) // sent a minute apart, dated half an hour before
		f.report(t, "lagging", loc, 90-float64(i), f.clock.Now().Add(behind))
	}
	d := f.delivery(t, "late-clock")
	assert.Equal(t, domain.StageCompleted, d.Stage)
	require.NotNil(t, d.PickedUpAt)
	f.released(t, "lagging", "pkg-late-clock", "Delivered")
}

func TestTelemetryCarriesADeliveryToCompletion(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	home := at(-0.01, 0)
	pickup, drop := at(0, 0), at(0.02, 0.01)
	f.putDrone(t, domain.Drone{ID: "flyer", Location: home, CruiseSpeedMps: 10})
	d := f.scheduled(t, "trip", pickup, drop)
	assert.Equal(t, "flyer", d.DroneID)

	now := t0.Add(time.Minute)
	var remaining []time.Duration
	var stages []domain.Stage
	route := append(leg(home, pickup, 6), leg(pickup, drop, 8)[1:]...)
	for i, loc := range route {
		now = now.Add(20 * time.Second)
		f.report(t, "flyer", loc, 100-float64(i), now)
		d = f.delivery(t, "trip")
		stages = append(stages, d.Stage)
		require.NotNil(t, d.LastKnownLocation)
		assert.Equal(t, loc, *d.LastKnownLocation)
		if d.Stage != domain.StageCompleted {
			remaining = append(remaining, d.DeliveryETA.Sub(now))
		}
	}
	assert.Equal(t, domain.StageHeadedToPickup, stages[0])
	assert.Equal(t, domain.StageHeadedToDropoff, stages[5], "at the pickup")
	assert.Equal(t, domain.StageCompleted, stages[len(stages)-1])
	for i := 1; i < len(remaining); i++ {
		assert.Less(t, remaining[i], remaining[i-1], "the ETA comes closer with every report (report %d)", i)
	}

	require.NoError(t, domain.LegalHistory(d.History))
	var kinds []string
	for _, n := range d.Notifications {
		kinds = append(kinds, n.Kind)
	}
	// The flight above runs ahead of the plan (no time spent loading), so
	// eta-changed notices may come between the milestones.
	var milestones []string
	for _, k := range kinds {
		if k != domain.NotifyETAChanged {
			milestones = append(milestones, k)
		}
	}
	assert.Equal(t, []string{domain.NotifyScheduled, domain.NotifyPickedUp, domain.NotifyDelivered}, milestones)
	assert.InDelta(t, domain.DistanceKm(home, pickup)+domain.DistanceKm(pickup, drop), d.TraveledKm, 0.01)
	assert.Len(t, d.Trail, len(route))

	f.released(t, "flyer", "pkg-trip", "Delivered")
	assert.Equal(t, drop, f.drone(t, "flyer").Location, "free at its final position")

	// A stale or repeated report changes nothing.
	before := f.snapshot(t, []string{"trip"}, []string{"flyer"})
	f.report(t, "flyer", home, 50, now.Add(-time.Minute))
	f.report(t, "flyer", drop, 86, now)
	assert.Equal(t, before, f.snapshot(t, []string{"trip"}, []string{"flyer"}))
}

func TestLowBatteryDroneGoesToCharging(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.flown(t, "tired", "low", 30, 15)
	dr := f.drone(t, "tired")
	assert.Equal(t, domain.DroneCharging, dr.Status)
	assert.Less(t, dr.RangeKm, 50.0, "range shrinks with the charge")
}

func TestTelemetryValidation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "v", Location: at(0, 0)})
	now := `"` + t0.Format(time.RFC3339) + `"`
	for field, body := range map[string]string{
		"timestamp":         `{"location":{"latitude":1,"longitude":2},"batteryPercent":50}`,
		"batteryPercent":    `{"location":{"latitude":1,"longitude":2},"batteryPercent":101,"timestamp":` + now + `}`,
		"location.latitude": `{"location":{"latitude":-91,"longitude":2},"batteryPercent":1,"timestamp":` + now + `}`,
		"[1].timestamp":     `[{"location":{"latitude":1,"longitude":2},"batteryPercent":1,"timestamp":` + now + `},{"location":{"latitude":1,"longitude":2},"batteryPercent":1,"timestamp":"soon"}]`,
		"body":              `[]`,
	} {
		resp := f.fleet("PostTelemetry", &functionapp.Request{Method: "POST", Params: map[string]string{"id": "v"}, Body: []byte(body)})
		require.Equal(t, http.StatusBadRequest, resp.Status, field)
		var p functionapp.ProblemDetails
		require.NoError(t, json.Unmarshal(resp.Body, &p))
		assert.Equal(t, field, p.Field)
	}
	// Dated outside the window around the service's clock: 422.
	for field, body := range map[string]string{
		"timestamp":     `{"location":{"latitude":1,"longitude":2},"batteryPercent":50,"timestamp":"2999-01-01T00:00:00Z"}`,
		"[1].timestamp": `[{"location":{"latitude":1,"longitude":2},"batteryPercent":1,"timestamp":` + now + `},{"location":{"latitude":1,"longitude":2},"batteryPercent":1,"timestamp":"2001-01-01T00:00:00Z"}]`,
	} {
		resp := f.fleet("PostTelemetry", &functionapp.Request{Method: "POST", Params: map[string]string{"id": "v"}, Body: []byte(body)})
		require.Equal(t, http.StatusUnprocessableEntity, resp.Status, field)
		var p functionapp.ProblemDetails
		require.NoError(t, json.Unmarshal(resp.Body, &p))
		assert.Equal(t, field, p.Field)
	}
	resp := f.fleet("PostTelemetry", &functionapp.Request{Method: "POST", Params: map[string]string{"id": "ghost"},
		Body: []byte(`{"location":{"latitude":1,"longitude":2},"batteryPercent":1,"timestamp":` + now + `}`)})
	assert.Equal(t, http.StatusNotFound, resp.Status)
	active, _, err := f.bus.Depth(context.Background(), topology.QueueDroneTelemetry)
	require.NoError(t, err)
	assert.Zero(t, active, "nothing queued by bad reports")
}

// flown dispatches delivery id, from at(0, 0) to at(0.005, 0), to drone
// droneID registered at its pickup, then reports the drone at the pickup a
// minute after t0 and at the dropoff a minute later, with battery atPickup
// and atDrop, and checks that this completed the delivery. It returns the
// dropoff and the drone as dispatch left it.
func (f *fixture) flown(t *testing.T, droneID, id string, atPickup, atDrop float64) (domain.Location, *domain.Drone) {
	t.Helper()
	pickup, drop := at(0, 0), at(0.005, 0)
	f.putDrone(t, domain.Drone{ID: droneID, Location: pickup})
	f.scheduled(t, id, pickup, drop)
	dispatched := f.drone(t, droneID)
	f.report(t, droneID, pickup, atPickup, t0.Add(time.Minute))
	f.report(t, droneID, drop, atDrop, t0.Add(2*time.Minute))
	require.Equal(t, domain.StageCompleted, f.delivery(t, id).Stage)
	return drop, dispatched
}

// released checks that drone droneID is free again and that package
// packageID has the status the end of its delivery gave it.
func (f *fixture) released(t *testing.T, droneID, packageID, status string) {
	t.Helper()
	dr := f.drone(t, droneID)
	assert.Equal(t, domain.DroneAvailable, dr.Status)
	assert.Empty(t, dr.CurrentDeliveryID)
	assert.Equal(t, status, f.pkg(t, packageID).Status)
}

func (f *fixture) cancel(t *testing.T, id string) *functionapp.Response {
	t.Helper()
	return f.biz("CancelDelivery", &functionapp.Request{Method: "DELETE", Params: map[string]string{"id": id}})
}

// Once the package is on board a cancel is refused and changes nothing:
// it would free a drone carrying the package (the operator's abort
// returns it to the sender instead).
func TestCancelWithThePackageOnBoardIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.headedToDropoff(t, "aboard", "None")
	resp := f.cancel(t, "aboard")
	require.Equal(t, http.StatusConflict, resp.Status, string(resp.Body))
	assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	f.drain(t)
	d := f.delivery(t, "aboard")
	assert.Equal(t, domain.StageHeadedToDropoff, d.Stage)
	assert.Nil(t, d.CancelledAt)
	dr := f.drone(t, "drone-aboard")
	assert.Equal(t, domain.DroneInFlight, dr.Status)
	assert.Equal(t, "aboard", dr.CurrentDeliveryID)
}

// A report that a reschedule overtakes (the tracking step read the drone
// of the first schedule; the delivery it then writes is rescheduled, and
// dispatch has claimed the same drone again for the new schedule) is not
// filed in the delivery, and leaves the drone booked, not flying: it was
// made InFlight for a schedule that had no report, its ETA counted from
// its home.
func TestAReportOvertakenByARescheduleLeavesTheDroneBooked(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.putDrone(t, domain.Drone{ID: "r1", Location: at(0.001, 0)})
	f.scheduled(t, "moved", at(0, 0), at(0.01, 0))
	before := f.drone(t, "r1")
	require.Equal(t, 0, before.CurrentGeneration)

	body := mustJSON(map[string]any{"deadline": t0.Add(3 * time.Hour).Format(time.RFC3339)})
	resp := f.biz("RescheduleDelivery", &functionapp.Request{Method: "PATCH", Params: map[string]string{"id": "moved"}, Body: body})
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	f.step(t, topology.QueueDeliveryRequests, f.h.ScheduleDrone)
	d := f.delivery(t, "moved")
	require.Equal(t, domain.StageRescheduled, d.Stage)
	require.Equal(t, 1, d.Generation)
	require.Equal(t, 1, f.drone(t, "r1").CurrentGeneration, "claimed again for the new schedule")

	store := f.store
	store.Fleet = staleFleet{Fleet: f.store.Fleet, old: before}
	racer := handlers.New(handlers.Deps{Store: store, Bus: f.bus, Clock: f.clock, IDs: platform.IDs{}, Log: slog.New(slog.DiscardHandler)})
	report, _ := json.Marshal(domain.Telemetry{DroneID: "r1", Location: at(0.0005, 0), BatteryPercent: 90, Timestamp: t0.Add(time.Second)})
	_, err := racer.TrackDrone(context.Background(), &ports.Delivered{Message: ports.Message{ID: "overtaken", Body: report}, DeliveryCount: 1})
	require.NoError(t, err)
	assert.Empty(t, f.delivery(t, "moved").Trail, "not filed in the new schedule")
	dr := f.drone(t, "r1")
	assert.Equal(t, domain.DroneAssigned, dr.Status, "booked, not flying")
	assert.Equal(t, at(0.0005, 0), dr.Location, "moved")

	// The drone's next report flies it for the new schedule.
	f.drain(t)
	f.report(t, "r1", at(0.0004, 0), 90, t0.Add(2*time.Second))
	assert.Equal(t, domain.DroneInFlight, f.drone(t, "r1").Status)
	assert.Len(t, f.delivery(t, "moved").Trail, 1)
}

func TestCancelAfterAssignmentReleasesTheDrone(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "c1", Location: at(0.001, 0)})
	f.scheduled(t, "gone", at(0, 0), at(0.01, 0))
	assert.Equal(t, domain.DroneAssigned, f.drone(t, "c1").Status)

	require.Equal(t, http.StatusNoContent, f.cancel(t, "gone").Status)
	assert.Equal(t, domain.StageCancelled, f.delivery(t, "gone").Stage, "visible at once")
	f.drain(t)
	f.released(t, "c1", "pkg-gone", "Cancelled")

	before := f.snapshot(t, []string{"gone"}, []string{"c1"})
	require.Equal(t, http.StatusNoContent, f.cancel(t, "gone").Status, "idempotent")
	f.drain(t)
	assert.Equal(t, before, f.snapshot(t, []string{"gone"}, []string{"c1"}))
	d := f.delivery(t, "gone")
	require.NoError(t, domain.LegalHistory(d.History))
	assert.Equal(t, domain.NotifyCancelled, d.Notifications[len(d.Notifications)-1].Kind)

	// The cancelled notice, as its business reads it, carries no ETAs: no
	// drone is coming (the scheduled one before it did).
	resp := f.biz("GetNotifications", &functionapp.Request{Method: "GET", Params: map[string]string{"id": "gone"}})
	require.Equal(t, http.StatusOK, resp.Status)
	var got struct{ Notifications []map[string]any }
	require.NoError(t, json.Unmarshal(resp.Body, &got))
	require.GreaterOrEqual(t, len(got.Notifications), 2)
	assert.Contains(t, got.Notifications[0], "deliveryETA", "the scheduled notice")
	last := got.Notifications[len(got.Notifications)-1]
	assert.Equal(t, "cancelled", last["kind"])
	assert.NotContains(t, last, "pickupETA")
	assert.NotContains(t, last, "deliveryETA")

	// The freed drone takes the next job.
	assert.Equal(t, "c1", f.scheduled(t, "next", at(0, 0), at(0.01, 0)).DroneID)
	assert.Equal(t, http.StatusNotFound, f.cancel(t, "missing").Status)
}

func TestCancelCompletedIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.flown(t, "c2", "done", 90, 80)
	resp := f.cancel(t, "done")
	assert.Equal(t, http.StatusConflict, resp.Status)
	assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	assert.Equal(t, domain.StageCompleted, f.delivery(t, "done").Stage)
}

func TestCancelWhileSchedulingNeverStrandsADrone(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "c3", Location: at(0.001, 0)})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("race", at(0, 0), at(0.01, 0), "Small", 1)).Status)
	msgs := f.receive(t, topology.QueueDeliveryRequests)
	// The cancel lands before the scheduler runs its message.
	require.Equal(t, http.StatusNoContent, f.cancel(t, "race").Status)
	_, err := f.h.ScheduleDrone(context.Background(), msgs[0])
	require.NoError(t, err)
	require.NoError(t, f.bus.Complete(context.Background(), msgs[0]))
	f.drain(t)
	assert.Equal(t, domain.DroneAvailable, f.drone(t, "c3").Status)
	assert.Equal(t, domain.StageCancelled, f.delivery(t, "race").Stage)
}

func TestRescheduleDispatchesAgain(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "west", Location: at(0, -0.001)}, domain.Drone{ID: "east", Location: at(0, 0.101)})
	d := f.scheduled(t, "move", at(0, 0), at(0.01, 0))
	require.Equal(t, "west", d.DroneID)

	patch := func(body string) *functionapp.Response {
		return f.biz("RescheduleDelivery", &functionapp.Request{Method: "PATCH", Params: map[string]string{"id": "move"}, Body: []byte(body)})
	}
	newPickup := at(0, 0.1)
	body, _ := json.Marshal(map[string]any{"pickupLocation": newPickup, "dropoffLocation": at(0.01, 0.1)})
	resp := patch(string(body))
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	assert.Equal(t, domain.StageRescheduled, f.delivery(t, "move").Stage)
	f.drain(t)

	d = f.delivery(t, "move")
	assert.Equal(t, domain.StageScheduled, d.Stage)
	assert.Equal(t, "east", d.DroneID, "the nearest drone to the new pickup")
	assert.Equal(t, 1, d.Generation)
	assert.Equal(t, newPickup, d.Request.PickupLocation)
	assert.Equal(t, domain.DroneAvailable, f.drone(t, "west").Status, "the old drone is released")
	assert.Equal(t, "move", f.drone(t, "east").CurrentDeliveryID)
	require.NoError(t, domain.LegalHistory(d.History))

	// The same change sent again (a client's retry) answers as the first
	// did and changes nothing: no new generation, the drone kept, no
	// second notice.
	notices := len(d.Notifications)
	again := patch(string(body))
	require.Equal(t, http.StatusAccepted, again.Status, string(again.Body))
	f.drain(t)
	same := f.delivery(t, "move")
	assert.Equal(t, 1, same.Generation)
	assert.Equal(t, domain.StageScheduled, same.Stage)
	assert.Equal(t, "east", same.DroneID)
	assert.Len(t, same.Notifications, notices)

	assert.Equal(t, http.StatusBadRequest, patch(`{}`).Status)
	assert.Equal(t, http.StatusBadRequest, patch(`{"deadline":"2000-01-01T00:00:00Z"}`).Status, "deadline before pickup")
	require.Equal(t, http.StatusNoContent, f.cancel(t, "move").Status)
	assert.Equal(t, http.StatusConflict, patch(string(body)).Status)
}

// A reschedule that moves the pickup past the deadline the service chose
// (two hours after the pickup) moves that deadline with it; one the client
// chose stays, and a pickup moved past it is refused naming the deadline.
func TestRescheduleMovesTheDefaultDeadline(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("later", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
	patch := func(id string, m map[string]any) *functionapp.Response {
		return f.biz("RescheduleDelivery", &functionapp.Request{Method: "PATCH", Params: map[string]string{"id": id}, Body: mustJSON(m)})
	}
	pickup := t0.Add(3 * time.Hour)
	resp := patch("later", map[string]any{"pickupTime": pickup.Format(time.RFC3339)})
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	d := f.delivery(t, "later")
	assert.Equal(t, pickup, d.Request.PickupTime)
	assert.Equal(t, pickup.Add(domain.DefaultDeadline), d.Request.Deadline)

	chosen := map[string]any{"deliveryId": "fixed", "pickupLocation": at(0.01, 0), "dropOffLocation": at(0.02, 0),
		"deadline": t0.Add(time.Hour).Format(time.RFC3339), "packageInfo": map[string]any{"size": "Small", "weight": 1}}
	require.Equal(t, http.StatusAccepted, f.ingest(t, mustJSON(chosen)).Status)
	resp = patch("fixed", map[string]any{"pickupTime": pickup.Format(time.RFC3339)})
	require.Equal(t, http.StatusBadRequest, resp.Status, string(resp.Body))
	assert.Equal(t, "deadline", problemOf(t, resp).Field)
	assert.Equal(t, t0.Add(time.Hour), f.delivery(t, "fixed").Request.Deadline)
}

// Who set a deadline is kept, not guessed from its value: a deadline the
// client chose two hours after its pickup stays when the pickup moves, and
// a default the booking horizon cut short moves with the pickup (to two
// hours after it, or again to the horizon).
func TestRescheduleKnowsWhoSetTheDeadline(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	patch := func(id string, m map[string]any) *functionapp.Response {
		return f.biz("RescheduleDelivery", &functionapp.Request{Method: "PATCH", Params: map[string]string{"id": id}, Body: mustJSON(m)})
	}
	pickup := t0.Add(time.Hour)
	chosen := map[string]any{"deliveryId": "chosen", "pickupLocation": at(0.01, 0), "dropOffLocation": at(0.02, 0),
		"pickupTime": pickup.Format(time.RFC3339), "deadline": pickup.Add(domain.DefaultDeadline).Format(time.RFC3339),
		"packageInfo": map[string]any{"size": "Small", "weight": 1}}
	require.Equal(t, http.StatusAccepted, f.ingest(t, mustJSON(chosen)).Status)
	resp := patch("chosen", map[string]any{"pickupTime": pickup.Add(time.Hour).Format(time.RFC3339)})
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	assert.Equal(t, pickup.Add(domain.DefaultDeadline), f.delivery(t, "chosen").Request.Deadline, "the client's deadline stays")
	resp = patch("chosen", map[string]any{"pickupTime": pickup.Add(3 * time.Hour).Format(time.RFC3339)})
	require.Equal(t, http.StatusBadRequest, resp.Status, string(resp.Body))
	assert.Equal(t, "deadline", problemOf(t, resp).Field)

	// Booked near the end of the horizon without a deadline: the default
	// stops at the horizon, ten minutes after the pickup.
	late := t0.Add(domain.DefaultMaxHorizon - 10*time.Minute)
	capped := map[string]any{"deliveryId": "capped", "pickupLocation": at(0.01, 0), "dropOffLocation": at(0.02, 0),
		"pickupTime": late.Format(time.RFC3339), "packageInfo": map[string]any{"size": "Small", "weight": 1}}
	require.Equal(t, http.StatusAccepted, f.ingest(t, mustJSON(capped)).Status)
	require.Equal(t, t0.Add(domain.DefaultMaxHorizon), f.delivery(t, "capped").Request.Deadline)
	f.clock.Advance(time.Minute)
	resp = patch("capped", map[string]any{"pickupTime": late.Add(5 * time.Minute).Format(time.RFC3339)})
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	assert.Equal(t, f.clock.Now().Add(domain.DefaultMaxHorizon).Truncate(time.Second), f.delivery(t, "capped").Request.Deadline,
		"the default moves to the horizon as of the change")
	soon := f.clock.Now().Add(time.Hour).Truncate(time.Second)
	resp = patch("capped", map[string]any{"pickupTime": soon.Format(time.RFC3339)})
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	assert.Equal(t, soon.Add(domain.DefaultDeadline), f.delivery(t, "capped").Request.Deadline)
}

// webhookReceiver records what reaches a business's webhook and fails the
// first failures requests.
type webhookReceiver struct {
	mu       sync.Mutex
	failures int
	calls    []webhookCall
}

type webhookCall struct {
	status    int
	id        string
	signature string
	ts        int64
	body      []byte
}

func (w *webhookReceiver) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	defer w.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	ts, _ := strconv.ParseInt(r.Header.Get(webhook.HeaderTimestamp), 10, 64)
	c := webhookCall{status: http.StatusOK, id: r.Header.Get(webhook.HeaderNotificationID), signature: r.Header.Get(webhook.HeaderSignature), ts: ts, body: body}
	if len(w.calls) < w.failures {
		c.status = http.StatusServiceUnavailable
	}
	w.calls = append(w.calls, c)
	rw.WriteHeader(c.status)
}

// listen serves r on a loopback listener for the rest of the test.
func listen(t *testing.T, r *webhookReceiver) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv
}

// allowPrivateWebhooks lets a fixture's webhooks reach the loopback
// listeners these tests start.
func allowPrivateWebhooks(d *handlers.Deps) { d.Config.AllowPrivateWebhooks = true }

func TestWebhookIsSignedAndRetried(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, allowPrivateWebhooks)
	recv := &webhookReceiver{failures: 1}
	srv := listen(t, recv)

	resp := f.call("CreateAccount", "", &functionapp.Request{Method: "POST", Body: []byte(fmt.Sprintf(`{"name":"Contoso","contactEmail":"ops@contoso.example","webhookUrl":%q}`, srv.URL))})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	var acct struct {
		AccountID, APIKey, WebhookSecret, KeyPrefix string
	}
	require.NoError(t, json.Unmarshal(resp.Body, &acct))
	stored, err := f.store.Accounts.Find(context.Background(), acct.AccountID)
	require.NoError(t, err)
	key, err := f.store.APIKeys.Find(context.Background(), acct.KeyPrefix)
	require.NoError(t, err)
	assert.NotContains(t, string(mustJSON(stored))+string(mustJSON(key)), acct.APIKey, "only a hash of the key is stored")

	f.putDrone(t, domain.Drone{ID: "w1", Location: at(0.001, 0)})
	body, _ := json.Marshal(map[string]any{"deliveryId": "hook", "ownerId": acct.AccountID, "pickupLocation": at(0, 0),
		"dropOffLocation": at(0.01, 0), "packageInfo": map[string]any{"size": "Small", "weight": 1}})
	require.Equal(t, http.StatusAccepted, f.call("IngestDelivery", acct.APIKey, &functionapp.Request{Method: "POST", Body: body}).Status)
	f.drain(t) // the chain, and the first (failing) webhook attempt

	recv.mu.Lock()
	require.Len(t, recv.calls, 1)
	recv.mu.Unlock()
	// The retry waits in the queue; play it as the bus would deliver it.
	retry := f.receiveDelayed(t, topology.QueueNotifications)
	assert.Equal(t, "hook:n1:retry-1", retry.ID)
	out, err := f.h.SendNotification(context.Background(), retry)
	require.NoError(t, err)
	assert.Empty(t, out, "delivered on the second attempt")

	recv.mu.Lock()
	defer recv.mu.Unlock()
	require.Len(t, recv.calls, 2)
	for _, c := range recv.calls {
		assert.Equal(t, "hook:n1", c.id)
		assert.Equal(t, webhook.Sign(acct.WebhookSecret, c.ts, c.body), c.signature, "signature verifies with the account's secret")
		assert.NotEqual(t, webhook.Sign("wrong", c.ts, c.body), c.signature)
		var n map[string]any
		require.NoError(t, json.Unmarshal(c.body, &n))
		assert.Equal(t, "scheduled", n["kind"])
		assert.Equal(t, "hook", n["deliveryId"])
	}
	assert.Equal(t, http.StatusServiceUnavailable, recv.calls[0].status)
	assert.Equal(t, http.StatusOK, recv.calls[1].status)
}

// withFailingWebhook is a fixture with an account whose webhook answers
// 503 to everything; it returns the account's key.
func withFailingWebhook(t *testing.T) (*fixture, string) {
	t.Helper()
	f := newFixtureWith(t, allowPrivateWebhooks)
	srv := listen(t, &webhookReceiver{failures: 1000})
	_, key := f.signUp(t, fmt.Sprintf(`{"name":"Contoso","contactEmail":"ops@contoso.example","webhookUrl":%q}`, srv.URL))
	return f, key
}

// droneAndDelivery registers a drone for delivery id and has the account
// of key request it, its pickup next to the drone.
func (f *fixture) droneAndDelivery(t *testing.T, key, id string) {
	t.Helper()
	f.putDrone(t, domain.Drone{ID: "drone-" + id, Location: at(0.001, 0)})
	body, _ := json.Marshal(map[string]any{"deliveryId": id, "pickupLocation": at(0, 0),
		"dropOffLocation": at(0.01, 0), "packageInfo": map[string]any{"size": "Small", "weight": 1}})
	require.Equal(t, http.StatusAccepted, f.call("IngestDelivery", key, &functionapp.Request{Method: "POST", Body: body}).Status)
}

func TestWebhookGivesUpAfterTheLimit(t *testing.T) {
	t.Parallel()
	f, key := withFailingWebhook(t)
	f.droneAndDelivery(t, key, "nohook")
	f.drain(t)
	msg := f.receiveDelayed(t, topology.QueueNotifications)
	var env wire.Envelope
	require.NoError(t, json.Unmarshal(msg.Body, &env))
	env.Attempt = 7 // the eighth and last attempt
	msg.Body, _ = json.Marshal(env)
	_, err := f.h.SendNotification(context.Background(), msg)
	assert.True(t, domain.IsPermanent(err), "dead-lettered after the limit: %v", err)
}

// A webhook that fails every attempt of one notice after another fills no
// dead-letter queue: the first notice given up on is dead-lettered (a
// permanent failure), and later ones to the same webhook within ten
// minutes are acknowledged; each stays on its delivery.
func TestAFailingWebhookDeadLettersOneNoticeInTenMinutes(t *testing.T) {
	t.Parallel()
	f, key := withFailingWebhook(t)
	ctx := context.Background()
	// The last attempt of each delivery's scheduled notice.
	lastAttempts := func(ids ...string) map[string]error {
		t.Helper()
		for _, id := range ids {
			f.droneAndDelivery(t, key, id)
		}
		f.drain(t)
		retries := f.delayed[topology.QueueNotifications]
		delete(f.delayed, topology.QueueNotifications)
		require.Len(t, retries, len(ids))
		errs := map[string]error{}
		for _, m := range retries {
			var env wire.Envelope
			require.NoError(t, json.Unmarshal(m.Body, &env))
			env.Attempt = 7 // the eighth and last attempt
			m.Body, m.NotBefore = mustJSON(env), time.Time{}
			require.NoError(t, f.bus.Publish(ctx, m))
			got, err := f.bus.Receive(ctxFor(t), topology.QueueNotifications, 1)
			require.NoError(t, err)
			require.Len(t, got, 1)
			_, errs[env.DeliveryID] = f.h.SendNotification(ctx, got[0])
			require.NoError(t, f.bus.Complete(ctx, got[0]))
		}
		return errs
	}
	errs := lastAttempts("first", "second")
	permanent := 0
	for id, err := range errs {
		if domain.IsPermanent(err) {
			permanent++
		} else {
			assert.NoError(t, err, id)
		}
		assert.Len(t, f.delivery(t, id).Notifications, 1, "the notice stays on %s", id)
	}
	assert.Equal(t, 1, permanent, "one of the two is dead-lettered: %v", errs)

	f.clock.Advance(11 * time.Minute)
	err := lastAttempts("third")["third"]
	assert.True(t, domain.IsPermanent(err), "ten minutes on, one is dead-lettered again: %v", err)
}

// A webhook notice dead-lettered after its last attempt and replayed by
// the operator is tried as often as a new one: the replay's retries are
// not named as the original's, which are still in the bus's duplicate-
// detection window and would have them dropped, the notice lost; and
// given up on again, it is dead-lettered again.
func TestAReplayedWebhooksRetriesAreNotDroppedAsDuplicates(t *testing.T) {
	t.Parallel()
	f, key := withFailingWebhook(t)
	f.droneAndDelivery(t, key, "again")
	f.drain(t) // the chain, and the first attempt

	// Each retry as the bus delivers it (at once: the test does not wait
	// out the backoff), until the last is given up and dead-lettered, as
	// the runtime does with a permanent failure.
	ctx := context.Background()
	// A message dropped as a duplicate is told by the queue's depth, at
	// once: not by a receive that gives up after a while, which a stalled
	// machine could make give up on a message that is there.
	receive := func(id string) *ports.Delivered {
		t.Helper()
		active, _, err := f.bus.Depth(ctx, topology.QueueNotifications)
		require.NoError(t, err)
		require.Equal(t, 1, active, "%s was dropped as a duplicate", id)
		msgs, err := f.bus.Receive(ctxFor(t), topology.QueueNotifications, 10)
		require.NoError(t, err)
		require.Len(t, msgs, 1)
		require.Equal(t, id, msgs[0].ID, "received")
		return msgs[0]
	}
	retry := func(out []ports.Message) *ports.Delivered {
		t.Helper()
		require.Len(t, out, 1)
		out[0].NotBefore = time.Time{}
		require.NoError(t, f.bus.Publish(ctx, out[0]))
		return receive(out[0].ID)
	}
	msg := retry(f.delayed[topology.QueueNotifications])
	delete(f.delayed, topology.QueueNotifications)
	sent := map[string]bool{}
	for {
		sent[msg.ID] = true
		out, err := f.h.SendNotification(ctx, msg)
		if domain.IsPermanent(err) {
			break
		}
		require.NoError(t, err)
		require.NoError(t, f.bus.Complete(ctx, msg))
		msg = retry(out)
	}
	assert.Equal(t, "again:n1:retry-7", msg.ID)
	require.NoError(t, f.bus.DeadLetter(ctx, msg, "ProcessingFailed", "failed 8 times"))

	resp := f.fleet("ReplayDeadLetter", &functionapp.Request{Method: "POST",
		Params: map[string]string{"queue": topology.QueueNotifications, "id": msg.ID}})
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	var replayed struct {
		ReplayedAs string `json:"replayedAs"`
	}
	require.NoError(t, json.Unmarshal(resp.Body, &replayed))
	msg = receive(replayed.ReplayedAs)
	// The replay and its retries, each run as the bus delivers it, as
	// many as a new notice gets; failing still, the last is dead-lettered
	// again (a permanent failure), not acknowledged as a repeat of the
	// notice dead-lettered minutes ago.
	for attempt := 1; ; attempt++ {
		assert.False(t, sent[msg.ID], "%s was used before", msg.ID)
		sent[msg.ID] = true
		out, err := f.h.SendNotification(ctx, msg)
		if attempt == 8 {
			assert.True(t, domain.IsPermanent(err), "the replay's last attempt: %v", err)
			break
		}
		require.NoError(t, err, "the replay tries again, as a new notice would")
		require.NoError(t, f.bus.Complete(ctx, msg))
		msg = retry(out)
	}
}

// receiveDelayed queues the one output drain kept aside for q and receives
// it as the bus delivers it, once due.
func (f *fixture) receiveDelayed(t *testing.T, q string) *ports.Delivered {
	t.Helper()
	require.Len(t, f.delayed[q], 1, "delayed messages on %s", q)
	m := f.delayed[q][0]
	delete(f.delayed, q)
	require.NoError(t, f.bus.Publish(context.Background(), m))
	msgs, err := f.bus.Receive(ctxFor(t), q, 10)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	return msgs[0]
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func TestSummaryAndUtilizationFromHistories(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	nov := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	tp := func(d time.Duration) *time.Time { x := nov.Add(d); return &x }
	mk := func(id, owner string, created time.Duration, stage domain.Stage, edit func(*domain.Delivery)) {
		d := &domain.Delivery{ID: id, OwnerID: owner, Stage: stage, CreatedAt: nov.Add(created)}
		d.Request.Deadline = nov.Add(created + 2*time.Hour)
		if edit != nil {
			edit(d)
		}
		require.NoError(t, f.store.Deliveries.Create(ctx, id, d))
	}
	h := time.Hour
	o := f.acct
	mk("a", o, h, domain.StageCompleted, func(d *domain.Delivery) { // on time, 30 min, 3 km, assigned 25 min
		d.DroneAssignedAt, d.CompletedAt, d.TraveledKm = tp(h+5*time.Minute), tp(h+30*time.Minute), 3
	})
	mk("b", o, 2*h, domain.StageCompleted, func(d *domain.Delivery) { // late, 3 h, 5 km, assigned 2 h
		d.DroneAssignedAt, d.CompletedAt, d.TraveledKm = tp(3*h), tp(5*h), 5
	})
	mk("c", o, 3*h, domain.StageCancelled, func(d *domain.Delivery) { d.DroneAssignedAt, d.CancelledAt = tp(3*h), tp(3*h+30*time.Minute) })
	mk("d", o, 4*h, domain.StageFailed, nil)
	mk("e", o, 5*h, domain.StageScheduled, nil)
	mk("other-owner", "x", h, domain.StageCompleted, nil)
	mk("october", o, -24*h, domain.StageCompleted, nil)

	get := func(name string, q map[string][]string) *functionapp.Response {
		return f.biz(name, &functionapp.Request{Method: "GET", Query: q})
	}
	resp := get("GetDeliveriesSummary", map[string][]string{"ownerId": {o}, "year": {"2026"}, "month": {"11"}})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var s handlers.DeliverySummary
	require.NoError(t, json.Unmarshal(resp.Body, &s))
	days := s.Days
	s.Days = nil
	assert.Equal(t, handlers.DeliverySummary{FiguresOf: handlers.FiguresOf{OwnerID: o, Scope: "account", Year: 2026, Month: 11}, Count: 5, Completed: 2, Cancelled: 1, Failed: 1,
		InProgress: 1, OnTime: 1, OnTimeRate: 0.5, AverageDurationMinutes: 105, TotalDurationMinutes: 210}, s)
	require.Len(t, days, 30)
	assert.Equal(t, handlers.SummaryDay{Date: "2026-11-01", Count: 5, Completed: 2, Cancelled: 1, Failed: 1, OnTime: 1}, days[0])
	assert.Equal(t, handlers.SummaryDay{Date: "2026-11-02"}, days[1])

	resp = get("GetUtilization", map[string][]string{"year": {"2026"}, "month": {"11"}})
	require.Equal(t, http.StatusOK, resp.Status)
	var u handlers.Utilization
	require.NoError(t, json.Unmarshal(resp.Body, &u))
	assert.InDelta(t, 8*0.621371, u.TraveledMiles, 0.001)
	assert.InDelta(t, 25.0/60+2+0.5, u.AssignedHours, 0.001)

	for _, q := range []map[string][]string{{"ownerId": {o}, "month": {"0"}}, {"month": {"13"}}, {"ownerId": {o}, "year": {"abc"}}} {
		assert.Equal(t, http.StatusBadRequest, get("GetDeliveriesSummary", q).Status, "%v", q)
		assert.Equal(t, http.StatusBadRequest, get("GetUtilization", q).Status, "%v", q)
	}
	// Another owner's report is not the caller's to read, nor is an area's.
	assert.Equal(t, http.StatusForbidden, get("GetDeliveriesSummary", map[string][]string{"ownerId": {"x"}}).Status)
	assert.Equal(t, http.StatusForbidden, get("GetUtilization", map[string][]string{"ownerId": {"x"}}).Status)
	assert.Equal(t, http.StatusForbidden, get("GetDeliveriesSummary", map[string][]string{"areaId": {domain.UnzonedArea}}).Status)

	// The operator reads the fleet, an area and any account.
	op := func(q map[string][]string) handlers.DeliverySummary {
		q["year"], q["month"] = []string{"2026"}, []string{"11"}
		resp := f.fleet("GetDeliveriesSummary", &functionapp.Request{Method: "GET", Query: q})
		require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
		var s handlers.DeliverySummary
		require.NoError(t, json.Unmarshal(resp.Body, &s))
		return s
	}
	fleet := op(map[string][]string{})
	assert.Equal(t, "fleet", fleet.Scope)
	assert.EqualValues(t, 6, fleet.Count)
	assert.EqualValues(t, 3, fleet.Completed)
	area := op(map[string][]string{"areaId": {domain.UnzonedArea}})
	assert.Equal(t, domain.UnzonedArea, area.AreaID)
	assert.EqualValues(t, 6, area.Count)
	other := op(map[string][]string{"ownerId": {"x"}})
	assert.Equal(t, "x", other.OwnerID)
	assert.EqualValues(t, 1, other.Count)
	// An area that is none, with nothing that month, is not read as idle.
	nowhere := f.fleet("GetDeliveriesSummary", &functionapp.Request{Method: "GET", Query: map[string][]string{"areaId": {"elsewhere"}, "year": {"2026"}, "month": {"11"}}})
	assert.Equal(t, http.StatusNotFound, nowhere.Status)
	assert.Equal(t, "areaId", problemOf(t, nowhere).Field)
	// Ids that are no ids are refused, naming the parameter.
	for _, q := range []map[string][]string{{"ownerId": {".."}}, {"areaId": {"a/b"}}, {"ownerId": {"a b"}}} {
		resp := f.fleet("GetDeliveriesSummary", &functionapp.Request{Method: "GET", Query: q})
		require.Equal(t, http.StatusBadRequest, resp.Status, "%v", q)
		for k := range q {
			assert.Equal(t, k, problemOf(t, resp).Field)
		}
	}
}

func TestNotifyMe(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "nm", Location: at(0, 0)})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("nm", at(0, 0), at(0.005, 0), "Small", 1)).Status)
	f.drain(t)
	post := func(body string) *functionapp.Response {
		return f.biz("PostNotifyMeRequest", &functionapp.Request{Method: "POST", Params: map[string]string{"id": "nm"}, Body: []byte(body)})
	}
	assert.Equal(t, http.StatusCreated, post(`{"emailAddress":"me@example.com","sms":"+15551234567"}`).Status)
	assert.Equal(t, http.StatusBadRequest, post(`{"emailAddress":"not-an-address"}`).Status)
	assert.Equal(t, http.StatusBadRequest, post(`{}`).Status)
	d := f.delivery(t, "nm")
	require.Len(t, d.Subscriptions, 1)
	assert.Equal(t, "+15551234567", d.Subscriptions[0].SMS)
}

func TestTrackingFeedByTrackingIDOnly(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "tf", Location: at(0.001, 0), BatteryPercent: 80})
	resp := f.ingest(t, requestBody("feed", at(0, 0), at(0.01, 0), "Small", 1))
	var acc struct{ TrackingID string }
	require.NoError(t, json.Unmarshal(resp.Body, &acc))
	f.drain(t)
	f.report(t, "tf", at(0.0005, 0), 79, t0.Add(time.Minute))

	get := func(name string, tid string) *functionapp.Response {
		return f.call(name, "", &functionapp.Request{Method: "GET", Params: map[string]string{"trackingId": tid}})
	}
	resp = get("TrackFeed", acc.TrackingID)
	require.Equal(t, http.StatusOK, resp.Status)
	var feed map[string]any
	require.NoError(t, json.Unmarshal(resp.Body, &feed))
	assert.Equal(t, "HeadedToPickup", feed["stage"])
	assert.Len(t, feed["trail"], 1)
	assert.Equal(t, "tf", feed["drone"].(map[string]any)["id"])
	assert.Len(t, feed["history"], 3)

	page := get("TrackPage", acc.TrackingID)
	assert.Equal(t, http.StatusOK, page.Status)
	assert.Contains(t, page.Header.Get("Content-Type"), "text/html")
	for _, bad := range []string{"feed", "x.feed", acc.TrackingID[:10] + ".feed", "AAAA" + acc.TrackingID[4:]} {
		assert.Equal(t, http.StatusNotFound, get("TrackFeed", bad).Status, bad)
		assert.Equal(t, http.StatusNotFound, get("TrackPage", bad).Status, bad)
	}
	// A browser that follows a wrong link gets the 404 as a page.
	resp = f.call("TrackPage", "", &functionapp.Request{Method: "GET", Params: map[string]string{"trackingId": "AAAA" + acc.TrackingID[4:]},
		Header: http.Header{"Accept": {"text/html"}}})
	assert.Equal(t, http.StatusNotFound, resp.Status)
	assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Contains(t, string(resp.Body), "not valid")
}

// staleFleet answers Find with an old copy of one drone, as a read that
// raced a concurrent write would.
type staleFleet struct {
	ports.Fleet
	old *domain.Drone
}

func (s staleFleet) Find(ctx context.Context, id string) (*domain.Drone, error) {
	if id == s.old.ID {
		c := *s.old
		return &c, nil
	}
	return s.Fleet.Find(ctx, id)
}

// TestLateReportNeverFreesTheDronesNextDelivery replays the race the crash
// test found: a report read the drone while it still served delivery A; by
// the time it writes the drone, A is completed and B has claimed the drone.
// The report must not free the drone from B.
func TestLateReportNeverFreesTheDronesNextDelivery(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	drop, stale := f.flown(t, "busy", "first", 90, 80) // stale: the drone serving "first"
	f.scheduled(t, "second", drop, at(0.01, 0))
	require.Equal(t, "second", f.drone(t, "busy").CurrentDeliveryID)

	store := f.store
	store.Fleet = staleFleet{Fleet: f.store.Fleet, old: stale}
	racer := handlers.New(handlers.Deps{Store: store, Bus: f.bus, Clock: f.clock, IDs: platform.IDs{}, Log: slog.New(slog.DiscardHandler)})
	body, _ := json.Marshal(domain.Telemetry{DroneID: "busy", Location: drop, BatteryPercent: 79, Timestamp: t0.Add(3 * time.Minute)})
	_, err := racer.TrackDrone(context.Background(), &ports.Delivered{Message: ports.Message{ID: "late", Body: body}, DeliveryCount: 1})
	require.NoError(t, err)

	dr := f.drone(t, "busy")
	assert.Equal(t, "second", dr.CurrentDeliveryID, "the drone still serves the delivery that claimed it")
	assert.NotEqual(t, domain.DroneAvailable, dr.Status)
	assert.Equal(t, drop, dr.Location, "the report still moves the drone")
}

// TestRedeliveredReportStaysWithItsFlight: a report of delivery A that the
// queue brings again after A ended and B claimed the drone (the instance
// that took it first died before settling it) is not filed into B: B stays
// Scheduled with an empty trail, and B's own reports still complete it.
func TestRedeliveredReportStaysWithItsFlight(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	drop, _ := f.flown(t, "again", "first", 90, 80)
	far := at(0.01, 0)
	f.scheduled(t, "second", drop, far)
	require.Equal(t, "second", f.drone(t, "again").CurrentDeliveryID)

	// The completing report of "first", delivered once more.
	body, _ := json.Marshal(domain.Telemetry{DroneID: "again", Location: drop, BatteryPercent: 80, Timestamp: t0.Add(2 * time.Minute)})
	_, err := f.h.TrackDrone(context.Background(), &ports.Delivered{Message: ports.Message{ID: "again-late", Body: body}, DeliveryCount: 2})
	require.NoError(t, err)
	d := f.delivery(t, "second")
	assert.Equal(t, domain.StageScheduled, d.Stage, "a report of the earlier flight does not move the next delivery")
	assert.Empty(t, d.Trail)
	assert.Equal(t, domain.DroneAssigned, f.drone(t, "again").Status)

	f.report(t, "again", drop, 79, t0.Add(3*time.Minute))
	f.report(t, "again", far, 78, t0.Add(4*time.Minute))
	assert.Equal(t, domain.StageCompleted, f.delivery(t, "second").Stage)
}

// TestDroneMeasurementsAreRounded: the range a drone has left is its
// registered range scaled by each battery report, and that arithmetic shows
// only to the metre; the battery shows to a tenth of a percent. Whichever
// function reads the drone, it reads the same rounded figures.
func TestDroneMeasurementsAreRounded(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "worn", Location: at(0, 0), RangeKm: 42, BatteryPercent: 100})
	// Written straight into the store, as make run seeds its fleet, the
	// drone shows the full-charge range its range and battery imply
	// before any report records it.
	require.NoError(t, f.store.Fleet.Create(context.Background(), "seeded", &domain.Drone{ID: "seeded", Location: at(0, 0), RangeKm: 42, BatteryPercent: 100}))
	var seeded domain.Drone
	resp := f.fleet("GetDrone", &functionapp.Request{Method: "GET", Params: map[string]string{"id": "seeded"}})
	require.NoError(t, json.Unmarshal(resp.Body, &seeded))
	assert.Zero(t, f.drone(t, "seeded").FullRangeKm, "not stored")
	assert.Equal(t, 46.667, seeded.FullRangeKm, "42 km keeping a 10 % reserve")

	f.report(t, "worn", at(0.001, 0), 90, t0.Add(time.Minute))
	// 42 km at 100 % keeping a 10 % reserve is 46.67 km on a full charge.
	require.Equal(t, 37.33333333333333, f.drone(t, "worn").RangeKm, "the stored range keeps its arithmetic")
	f.report(t, "worn", at(0.002, 0), 89.96, t0.Add(2*time.Minute))

	var one domain.Drone
	resp = f.fleet("GetDrone", &functionapp.Request{Method: "GET", Params: map[string]string{"id": "worn"}})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	require.NoError(t, json.Unmarshal(resp.Body, &one))
	assert.Equal(t, 46.667, one.FullRangeKm, "the same once recorded")
	assert.Equal(t, 37.315, one.RangeKm, "km to 3 decimals")
	assert.Equal(t, 90.0, one.BatteryPercent, "percent to 1 decimal")
	assert.NotContains(t, string(resp.Body), "37.3146", "no digits beyond the metre")

	var page struct{ Drones []domain.Drone }
	resp = f.fleet("ListDrones", &functionapp.Request{Method: "GET"})
	require.NoError(t, json.Unmarshal(resp.Body, &page))
	require.Len(t, page.Drones, 2)
	require.Equal(t, "worn", page.Drones[1].ID)
	assert.Equal(t, one.RangeKm, page.Drones[1].RangeKm)
	assert.Equal(t, one.BatteryPercent, page.Drones[1].BatteryPercent)
	assert.Equal(t, 46.667, page.Drones[0].FullRangeKm, "the listing shows the seeded drone's too")

	resp = f.fleet("PutDrone", &functionapp.Request{Method: "PUT", Params: map[string]string{"id": "worn-copy"},
		Body: []byte(`{"location":{"latitude":0,"longitude":0},"maxPayloadKg":5,"maxPackageSize":"Small","rangeKm":37.783199999999994,"cruiseSpeedMps":15,"batteryPercent":89.96}`)})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	var put domain.Drone
	require.NoError(t, json.Unmarshal(resp.Body, &put))
	assert.Equal(t, 37.783, put.RangeKm)
	assert.Equal(t, 90.0, put.BatteryPercent)
}

func TestTrackingLinkExpiresAfterTheDeliveryEnds(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "ex", Location: at(0.001, 0)})
	resp := f.ingest(t, requestBody("expiring", at(0, 0), at(0.01, 0), "Small", 1))
	var acc struct{ TrackingID string }
	require.NoError(t, json.Unmarshal(resp.Body, &acc))
	f.drain(t)
	get := func(name string) *functionapp.Response {
		return f.call(name, "", &functionapp.Request{Method: "GET", Params: map[string]string{"trackingId": acc.TrackingID}})
	}
	// A running delivery's link never expires, however old the delivery.
	f.clock.Advance(2 * handlers.DefaultTrackingLinkLifetime)
	require.Equal(t, http.StatusOK, get("TrackFeed").Status)

	require.Equal(t, http.StatusNoContent, f.cancel(t, "expiring").Status)
	f.drain(t)
	require.Equal(t, domain.StageCancelled, f.delivery(t, "expiring").Stage)
	f.clock.Advance(handlers.DefaultTrackingLinkLifetime - time.Minute)
	assert.Equal(t, http.StatusOK, get("TrackFeed").Status, "still within its lifetime")
	assert.Equal(t, http.StatusOK, get("TrackPage").Status, "still within its lifetime")

	f.clock.Advance(2 * time.Minute)
	for _, name := range []string{"TrackFeed", "TrackPage"} {
		resp := get(name)
		assert.Equal(t, http.StatusGone, resp.Status, name)
		assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), name)
		var p functionapp.ProblemDetails
		require.NoError(t, json.Unmarshal(resp.Body, &p))
		assert.Equal(t, "trackingId", p.Field)
		assert.Contains(t, p.Detail, "30 days")
	}
}

// TestAnalyticsCountTheAreaHoldingThePickup: a delivery counts under the
// service area its pickup lay in when it was accepted, and the operator
// reads that area's figures.
func TestAnalyticsCountTheAreaHoldingThePickup(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	resp := f.fleet("PutServiceArea", &functionapp.Request{Method: http.MethodPut, Params: map[string]string{"id": "downtown"}, Body: []byte(square)})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	f.putDrone(t, domain.Drone{ID: "dt", Location: at(0.001, -0.005)})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("in-area", at(0.002, -0.005), at(0.005, -0.005), "Small", 1)).Status)
	assert.Equal(t, "downtown", f.delivery(t, "in-area").AreaID)

	created := f.delivery(t, "in-area").CreatedAt.UTC() // the month it counts in
	q := map[string][]string{"areaId": {"downtown"}, "year": {created.Format("2006")}, "month": {created.Format("1")}}
	resp = f.fleet("GetDeliveriesSummary", &functionapp.Request{Method: "GET", Query: q})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var s handlers.DeliverySummary
	require.NoError(t, json.Unmarshal(resp.Body, &s))
	assert.EqualValues(t, 1, s.Count)
	assert.Equal(t, "downtown", s.AreaID)
	q["areaId"] = []string{domain.UnzonedArea}
	resp = f.fleet("GetDeliveriesSummary", &functionapp.Request{Method: "GET", Query: q})
	require.NoError(t, json.Unmarshal(resp.Body, &s))
	assert.EqualValues(t, 0, s.Count, "none outside the areas")

	// A misspelt area or account is told apart from an idle one: 404
	// naming the parameter, where an area that exists has zeros.
	for _, name := range []string{"GetDeliveriesSummary", "GetUtilization"} {
		for param, id := range map[string]string{"areaId": "downtwon", "ownerId": "no-such-account"} {
			resp = f.fleet(name, &functionapp.Request{Method: "GET", Query: map[string][]string{param: {id}}})
			require.Equal(t, http.StatusNotFound, resp.Status, "%s %s: %s", name, param, resp.Body)
			var p functionapp.ProblemDetails
			require.NoError(t, json.Unmarshal(resp.Body, &p))
			assert.Equal(t, param, p.Field, name)
		}
	}
	idle := map[string][]string{"areaId": {"downtown"}, "year": {"2001"}, "month": {"1"}}
	resp = f.fleet("GetDeliveriesSummary", &functionapp.Request{Method: "GET", Query: idle})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	// An area deleted since keeps its figures.
	resp = f.fleet("DeleteServiceArea", &functionapp.Request{Method: http.MethodDelete, Params: map[string]string{"id": "downtown"}})
	require.Equal(t, http.StatusNoContent, resp.Status, string(resp.Body))
	q["areaId"] = []string{"downtown"}
	resp = f.fleet("GetDeliveriesSummary", &functionapp.Request{Method: "GET", Query: q})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	require.NoError(t, json.Unmarshal(resp.Body, &s))
	assert.EqualValues(t, 1, s.Count, "the deleted area's month")
	resp = f.fleet("GetDeliveriesSummary", &functionapp.Request{Method: "GET", Query: idle})
	assert.Equal(t, http.StatusNotFound, resp.Status, "a month with nothing of an area that is gone")
}

// A delivery that has waited since its pickup time (no drone came) can
// have its dropoff moved without restating a pickup time: the change is
// judged from now, and the stored pickup time stays as it was. A pickup
// time the change does give is held to the rules as at ingest.
func TestRescheduleOfAWaitingDeliveryKeepsItsPickupTime(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("waited", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
	accepted := f.delivery(t, "waited").Request.PickupTime
	f.clock.Advance(20 * time.Minute)
	patch := func(m map[string]any) *functionapp.Response {
		return f.biz("RescheduleDelivery", &functionapp.Request{Method: "PATCH", Params: map[string]string{"id": "waited"}, Body: mustJSON(m)})
	}
	resp := patch(map[string]any{"dropOffLocation": at(0.03, 0)})
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	d := f.delivery(t, "waited")
	assert.Equal(t, at(0.03, 0), d.Request.DropoffLocation)
	assert.Equal(t, accepted, d.Request.PickupTime, "the pickup time is not the change's")
	assert.Equal(t, domain.StageRescheduled, d.Stage)

	// The stored pickup time sent back, as a client that reads, edits and
	// writes the request does, leaves it alone too.
	resp = patch(map[string]any{"dropOffLocation": at(0.035, 0), "pickupTime": accepted.Format(time.RFC3339Nano)})
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	assert.Equal(t, accepted, f.delivery(t, "waited").Request.PickupTime)

	resp = patch(map[string]any{"dropOffLocation": at(0.04, 0), "pickupTime": accepted.Add(-time.Second).Format(time.RFC3339Nano)})
	require.Equal(t, http.StatusUnprocessableEntity, resp.Status, string(resp.Body))
	assert.Equal(t, "pickupTime", problemOf(t, resp).Field, "another pickup time in the past")
	assert.Equal(t, at(0.035, 0), f.delivery(t, "waited").Request.DropoffLocation, "refused, nothing changed")
}

// claimedEarly is a fleet of one drone, eager, claimed for a delivery,
// "early", whose package step has run and whose ETA step has not, and the
// route eager flies for it: home, the pickup (its 4th point), the dropoff.
func claimedEarly(t *testing.T) (*fixture, []domain.Location) {
	t.Helper()
	f := newFixture(t)
	home := at(-0.01, 0)
	pickup, drop := at(0, 0), at(0.02, 0.01)
	f.putDrone(t, domain.Drone{ID: "eager", Location: home, CruiseSpeedMps: 10})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("early", pickup, drop, "Small", 1)).Status)
	f.step(t, topology.QueueDeliveryRequests, f.h.ScheduleDrone)
	f.step(t, topology.QueueDroneScheduled, f.h.UpdatePackage)
	require.Equal(t, "eager", f.delivery(t, "early").DroneID)
	return f, append(leg(home, pickup, 4), leg(pickup, drop, 6)[1:]...)
}

// A drone flies from its claim, and its delivery may wait for the ETA step
// for longer than the flight takes (the step's message waiting out its lock
// after a crash or a full disk). The reports sent meanwhile are filed on the
// delivery without moving its stage, and the ETA step takes it as far as
// they flew it: here all the way, so the package is delivered and the drone
// freed, where before the delivery was left Scheduled and its drone InFlight
// with nothing more to report.
func TestAFlightReportedBeforeItsScheduleIsFollowed(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		flown int // reports of the route sent before the ETA step
		stage domain.Stage
	}{
		{"to the dropoff", 9, domain.StageCompleted},
		{"past the pickup", 6, domain.StageHeadedToDropoff},
		{"towards the pickup", 2, domain.StageHeadedToPickup},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f, route := claimedEarly(t)
			f.postReports(t, "eager", route[:c.flown]...)
			f.runTelemetry(t, f.h)
			d := f.delivery(t, "early")
			assert.Equal(t, domain.StageCreated, d.Stage, "no stage moves before the schedule")
			assert.Len(t, d.Trail, c.flown, "but every report is filed")
			assert.Equal(t, route[c.flown-1], *d.LastKnownLocation)
			assert.Equal(t, domain.DroneInFlight, f.drone(t, "eager").Status)

			f.drain(t) // the ETA step, then the notices
			d = f.delivery(t, "early")
			assert.Equal(t, c.stage, d.Stage)
			require.NoError(t, domain.LegalHistory(d.History))
			for _, e := range d.History {
				if e.Stage == domain.StageHeadedToPickup && e.Kind == "" {
					require.NotNil(t, e.Location)
					assert.Equal(t, route[0], *e.Location, "off at the first report")
				}
			}
			var milestones []string
			for _, n := range d.Notifications {
				if n.Kind != domain.NotifyETAChanged {
					milestones = append(milestones, n.Kind)
				}
				assert.False(t, n.At.Before(*d.ScheduledAt), "%s dated before the schedule", n.Kind)
			}
			want := []string{domain.NotifyScheduled}
			if c.stage != domain.StageHeadedToPickup {
				want = append(want, domain.NotifyPickedUp)
			}
			if c.stage == domain.StageCompleted {
				want = append(want, domain.NotifyDelivered)
			}
			assert.Equal(t, want, milestones)

			// The rest of the flight, reported as usual, ends it.
			if c.flown < len(route) {
				f.postReports(t, "eager", route[c.flown:]...)
				f.drain(t)
				d = f.delivery(t, "early")
				assert.Equal(t, domain.StageCompleted, d.Stage)
				require.NoError(t, domain.LegalHistory(d.History))
			}
			home, pickup, drop := route[0], route[3], route[len(route)-1]
			assert.InDelta(t, domain.DistanceKm(home, pickup)+domain.DistanceKm(pickup, drop), d.TraveledKm, 0.01)
			f.released(t, "eager", "pkg-early", "Delivered")

			// The ETA step's message again (a redelivery) changes nothing,
			// and sends the schedule's notices again, the followed flight's
			// too, in case the first run stopped before them.
			before := f.snapshot(t, []string{"early"}, []string{"eager"})
			again, err := f.h.ComputeEta(context.Background(), &ports.Delivered{Message: ports.Message{
				Queue: topology.QueuePackageUpdated,
				Body:  mustJSON(wire.Envelope{Operation: wire.OpDelivery, DeliveryID: "early", Generation: d.Generation})}})
			require.NoError(t, err)
			assert.Equal(t, before, f.snapshot(t, []string{"early"}, []string{"eager"}))
			sent := map[string]bool{}
			for _, m := range again {
				sent[m.ID] = true
			}
			for _, n := range d.Notifications {
				if n.Kind == domain.NotifyScheduled || c.stage == domain.StageCompleted {
					assert.True(t, sent[n.ID], "%s (%s) sent again", n.ID, n.Kind)
				}
			}
		})
	}
}

// Once the drone has reported at the pickup, the package is aboard even if
// the delivery is still Created: a cancel, a reschedule and a reassign
// are refused (each would free a drone carrying it), and nothing changes;
// the operator's abort still ends it.
func TestThePackageIsAboardBeforeTheSchedule(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	home := at(-0.01, 0)
	pickup, drop := at(0, 0), at(0.02, 0.01)
	f.putDrone(t, domain.Drone{ID: "eager", Location: home, CruiseSpeedMps: 10})
	f.putDrone(t, domain.Drone{ID: "spare", Location: home, CruiseSpeedMps: 10})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("early", pickup, drop, "Small", 1)).Status)
	f.step(t, topology.QueueDeliveryRequests, f.h.ScheduleDrone)
	held := f.delivery(t, "early").DroneID
	require.NotEmpty(t, held)
	f.postReports(t, held, home, pickup, at(0.005, 0.0025))
	f.runTelemetry(t, f.h)
	d := f.delivery(t, "early")
	require.Equal(t, domain.StageCreated, d.Stage)
	require.NotNil(t, d.PickedUpAt)

	before := f.snapshot(t, []string{"early"}, []string{"eager", "spare"})
	assert.Equal(t, http.StatusConflict, f.cancel(t, "early").Status)
	resp := f.biz("RescheduleDelivery", &functionapp.Request{Method: "PATCH", Params: map[string]string{"id": "early"},
		Body: []byte(`{"dropOffLocation": {"latitude": 0.03, "longitude": 0.01}}`)})
	assert.Equal(t, http.StatusConflict, resp.Status, string(resp.Body))
	resp = f.action(t, "DeliveryAction", "early", map[string]any{"action": "reassign", "reason": "swap"})
	assert.Equal(t, http.StatusConflict, resp.Status, string(resp.Body))
	assert.Equal(t, before, f.snapshot(t, []string{"early"}, []string{"eager", "spare"}), "nothing changed")

	resp = f.action(t, "DeliveryAction", "early", map[string]any{"action": "abort", "reason": "storm"})
	require.Less(t, resp.Status, 300, string(resp.Body))
	f.drain(t)
	d = f.delivery(t, "early")
	assert.Equal(t, domain.StageFailed, d.Stage)
	require.NoError(t, domain.LegalHistory(d.History))
}

// A delivery that changes drones counts what each drone flew and how long
// each held it: the new drone's flight starts at its own first report, not
// with a leg from where the last drone was last seen, its pickup is looked
// for in its own reports only, and the first drone's time is kept.
func TestADeliveryThatChangesDronesCountsEachFlight(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pickup, drop := at(0, 0), at(0.02, 0.01)
	firstHome, secondHome := at(-0.01, 0), at(0, 0.02)
	f.putDrone(t, domain.Drone{ID: "first", Location: firstHome, CruiseSpeedMps: 10})
	f.putDrone(t, domain.Drone{ID: "second", Location: secondHome, CruiseSpeedMps: 10})
	d := f.scheduled(t, "swap", pickup, drop)
	require.Equal(t, "first", d.DroneID)
	firstAssigned := *d.DroneAssignedAt

	halfway := at(-0.005, 0)
	now := t0.Add(time.Minute)
	f.report(t, "first", firstHome, 90, now)
	f.report(t, "first", halfway, 89, now.Add(time.Minute))
	require.Equal(t, domain.StageHeadedToPickup, f.delivery(t, "swap").Stage)
	resp := f.action(t, "DroneAction", "first", map[string]any{"action": "ground", "reason": "rotor"})
	require.Less(t, resp.Status, 300, string(resp.Body))
	f.clock.Advance(time.Minute)
	handedOver := f.clock.Now()
	f.drain(t)
	d = f.delivery(t, "swap")
	require.Equal(t, "second", d.DroneID)
	require.Equal(t, domain.StageScheduled, d.Stage)
	assert.Empty(t, d.Trail, "the first drone's flight is not the second's")
	assert.Equal(t, handedOver.Sub(firstAssigned).Milliseconds(), d.AssignedBeforeMs)

	later := f.clock.Now().Add(time.Minute)
	for i, loc := range []domain.Location{secondHome, pickup, drop} {
		f.report(t, "second", loc, 95, later.Add(time.Duration(i)*time.Minute))
	}
	d = f.delivery(t, "swap")
	require.Equal(t, domain.StageCompleted, d.Stage)
	require.NoError(t, domain.LegalHistory(d.History))
	flown := domain.DistanceKm(firstHome, halfway) + domain.DistanceKm(secondHome, pickup) + domain.DistanceKm(pickup, drop)
	assert.InDelta(t, flown, d.TraveledKm, 0.01, "no leg from halfway to the second drone's home")
	assert.Len(t, d.Trail, 3)

	var ended domain.Figures
	for _, c := range d.Contributions() {
		if c.Stage != domain.StageCreated {
			ended = c.Figures
		}
	}
	assert.Equal(t, handedOver.Sub(firstAssigned).Milliseconds()+d.CompletedAt.Sub(*d.DroneAssignedAt).Milliseconds(), ended.AssignedMs,
		"both drones' time")
}

// A cancelled delivery shows no ETAs: no drone is coming, and a time beside
// the stage would read as one that is. Its status, its record and its
// tracking feed all leave them out.
func TestACancelledDeliveryShowsNoETAs(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.putDrone(t, domain.Drone{ID: "e1", Location: at(0.001, 0)})
	d := f.scheduled(t, "gone", at(0, 0), at(0.01, 0))
	require.NotNil(t, d.PickupETA, "scheduled with its ETAs")
	require.Equal(t, http.StatusNoContent, f.cancel(t, "gone").Status)
	f.drain(t)
	params := map[string]string{"id": "gone"}
	for _, fn := range []string{"GetDeliveryStatus", "GetDelivery"} {
		resp := f.biz(fn, &functionapp.Request{Method: http.MethodGet, Params: params})
		require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
		var v map[string]any
		require.NoError(t, json.Unmarshal(resp.Body, &v))
		assert.Equal(t, "Cancelled", v["stage"], fn)
		assert.Nil(t, v["pickupETA"], fn)
		assert.Nil(t, v["deliveryETA"], fn)
	}
	feed := f.call("TrackFeed", "", &functionapp.Request{Method: http.MethodGet, Params: map[string]string{"trackingId": d.TrackingID}})
	require.Equal(t, http.StatusOK, feed.Status, string(feed.Body))
	var v map[string]any
	require.NoError(t, json.Unmarshal(feed.Body, &v))
	assert.Nil(t, v["pickupETA"])
	assert.Nil(t, v["deliveryETA"])
}

// An ETA step that finds the whole trip flown before it (FollowTrail) ends
// the delivery as the tracking step would: it frees the drone and wakes
// the delivery waiting for one (on the delivery-requests queue), which the
// chain's table lets it send, so the step is not dead-lettered for it.
func TestAnETAStepThatEndsTheTripFreesTheDroneForTheNext(t *testing.T) {
	t.Parallel()
	f, route := claimedEarly(t)
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("next", at(0, 0), at(0.02, 0.01), "Small", 1)).Status)
	f.step(t, topology.QueueDeliveryRequests, f.h.ScheduleDrone)
	require.Empty(t, f.delivery(t, "next").DroneID, "it waits for the one drone")

	f.postReports(t, "eager", route...)
	f.runTelemetry(t, f.h)
	// The ETA step as the registry serves it, which ends the trip.
	f.step(t, topology.QueuePackageUpdated, f.reg["ComputeEta"].Queue)
	assert.Equal(t, domain.StageCompleted, f.delivery(t, "early").Stage)
	f.drain(t)
	next := f.delivery(t, "next")
	assert.Equal(t, "eager", next.DroneID, "woken, it took the freed drone")
}

// A report is known by its drone, its time and what it says: the same
// report sent again changes nothing, but another dated the same (a drone
// whose clock started again after the operator registered it anew) is
// applied, not dropped as a copy of the earlier one, which left the drone's
// landing at a dropoff unseen and its delivery flying for good.
func TestAReportDatedAsAnEarlierOneIsApplied(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	when := f.clock.Now()
	f.report(t, "d1", at(0.001, 0), 90, when)
	require.Equal(t, at(0.001, 0), f.drone(t, "d1").Location)
	f.report(t, "d1", at(0.001, 0), 90, when)
	require.Equal(t, at(0.001, 0), f.drone(t, "d1").Location, "the same report again")

	f.putDrone(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	require.Nil(t, f.drone(t, "d1").LastTelemetryAt)
	f.report(t, "d1", at(0.002, 0), 80, when)
	assert.Equal(t, at(0.002, 0), f.drone(t, "d1").Location)
	assert.Equal(t, 80.0, f.drone(t, "d1").BatteryPercent)
}
