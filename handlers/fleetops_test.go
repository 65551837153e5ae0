package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

func (f *fixture) action(t *testing.T, name, id string, body map[string]any) *functionapp.Response {
	t.Helper()
	return f.fleet(name, &functionapp.Request{Method: "POST", Params: map[string]string{"id": id}, Body: mustJSON(body)})
}

// act sends an operator's action and requires it accepted.
func (f *fixture) act(t *testing.T, name, id string, body map[string]any) {
	t.Helper()
	resp := f.action(t, name, id, body)
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
}

// A pause refuses new requests at its pickups with 503, Retry-After and
// the reason; dispatch holds a waiting delivery, not failing it, and
// dispatches it once the pause is lifted.
func TestPauseHoldsAndResumes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0), Status: domain.DroneMaintenance})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("waits", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
	f.drain(t)
	require.Equal(t, domain.StageCreated, f.delivery(t, "waits").Stage, "no drone: it waits")

	until := t0.Add(30 * time.Second)
	resp := f.fleet("PutPause", &functionapp.Request{Method: "PUT", Params: map[string]string{"id": "storm"},
		Body: mustJSON(map[string]any{"reason": "hail", "until": until.Format(time.RFC3339)})})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))

	resp = f.ingest(t, requestBody("refused", at(0.01, 0), at(0.02, 0), "Small", 1))
	require.Equal(t, http.StatusServiceUnavailable, resp.Status)
	assert.Equal(t, "30", resp.Header.Get("Retry-After"))
	assert.Equal(t, "pickupLocation is where service is paused: hail; it resumes at "+until.Format(time.RFC3339), problemOf(t, resp).Detail)
	assert.Equal(t, "service is paused here: hail; it resumes at "+until.Format(time.RFC3339), f.quote(t, requestBody("q", at(0.01, 0), at(0.02, 0), "Small", 1)).Paused)

	f.putDrone(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	f.playRetries(t, "waits")
	d := f.delivery(t, "waits")
	assert.Equal(t, domain.StageCreated, d.Stage, "held, not failed")
	assert.Empty(t, d.DroneID)
	assert.Equal(t, "hail", d.HeldReason)
	var retries []ports.Message // the delivery's own, not the pause's wakes
	for _, m := range f.delayed[topology.QueueDeliveryRequests] {
		if strings.Contains(m.ID, ":retry-") {
			retries = append(retries, m)
		}
	}
	require.Len(t, retries, 1)
	assert.Equal(t, until, retries[0].NotBefore, "looked at again when the pause ends (sooner than RetryMax)")

	// The end of the pause sends what it held to dispatch at once, not
	// at the held delivery's next retry.
	f.liftPause(t, "storm")
	d = f.delivery(t, "waits")
	assert.Equal(t, domain.StageScheduled, d.Stage)
	assert.Equal(t, "d1", d.DroneID)
	assert.Empty(t, d.HeldReason)
	assert.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("after", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)

	// A pause that ends centuries ahead (a time.Duration could not hold
	// the seconds to its end): Retry-After asks to come back within the
	// hour, in case it is lifted before, and the detail says when it ends.
	far := time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC)
	resp = f.fleet("PutPause", &functionapp.Request{Method: "PUT", Params: map[string]string{"id": "forever"},
		Body: mustJSON(map[string]any{"reason": "closed", "until": far.Format(time.RFC3339)})})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	resp = f.ingest(t, requestBody("much-later", at(0.01, 0), at(0.02, 0), "Small", 1))
	require.Equal(t, http.StatusServiceUnavailable, resp.Status)
	assert.Equal(t, "3600", resp.Header.Get("Retry-After"))
	assert.Contains(t, problemOf(t, resp).Detail, "2999-01-01")
}

// liftPause deletes pause id and runs what its end sends to dispatch.
func (f *fixture) liftPause(t *testing.T, id string) {
	t.Helper()
	resp := f.fleet("DeletePause", &functionapp.Request{Method: http.MethodDelete, Params: map[string]string{"id": id}})
	require.Equal(t, http.StatusNoContent, resp.Status, string(resp.Body))
	f.playWakes(t)
	f.drain(t)
}

// A delivery a pause holds is not failed for the wait, but its deadline
// still stands: held at its deadline it fails then, and one whose pause is
// lifted after its deadline fails as soon as the lift sends it to
// dispatch, each naming the pause rather than a lack of drones.
func TestADeliveryHeldPastItsDeadlineFailsNamingThePause(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0), Status: domain.DroneMaintenance})
	deadline := f.clock.Now().Add(5 * time.Minute).Truncate(time.Second)
	for _, id := range []string{"held", "lifted"} {
		body := mustJSON(map[string]any{"deliveryId": id, "pickupLocation": at(0.01, 0), "dropOffLocation": at(0.02, 0),
			"deadline": deadline.Format(time.RFC3339), "packageInfo": map[string]any{"size": "Small", "weight": 1}})
		require.Equal(t, http.StatusAccepted, f.ingest(t, body).Status)
	}
	f.drain(t)
	resp := f.fleet("PutPause", &functionapp.Request{Method: "PUT", Params: map[string]string{"id": "storm"},
		Body: mustJSON(map[string]any{"reason": "hail"})})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	f.putDrone(t, domain.Drone{ID: "d1", Location: at(0, 0)})

	f.clock.Set(deadline.Add(-30 * time.Second)) // less than RetryMax before it
	f.playRetries(t, "held", "lifted")
	require.Equal(t, "hail", f.delivery(t, "held").HeldReason)
	for _, m := range f.delayed[topology.QueueDeliveryRequests] {
		if strings.Contains(m.ID, ":retry-") {
			assert.Equal(t, deadline, m.NotBefore, "%s: looked at again at the deadline, not RetryMax later", m.ID)
		}
	}

	// Still held at its deadline: failed then, naming the pause.
	f.clock.Set(deadline)
	f.playRetries(t, "held")
	d := f.delivery(t, "held")
	require.Equal(t, domain.StageFailed, d.Stage)
	assert.Equal(t, "the deadline passed while a service pause held the delivery: hail", d.FailureReason)
	assert.Contains(t, d.Notifications[len(d.Notifications)-1].Message, "a service pause held the delivery: hail")

	// Lifted after its deadline: failed by the run the lift sends, naming
	// the pause, though d1 is free.
	f.clock.Advance(time.Minute)
	f.liftPause(t, "storm")
	d = f.delivery(t, "lifted")
	require.Equal(t, domain.StageFailed, d.Stage)
	assert.Equal(t, "the deadline passed while a service pause held the delivery: hail", d.FailureReason)
	assert.Empty(t, d.DroneID)
	assert.Equal(t, domain.DroneAvailable, f.drone(t, "d1").Status)
}

// A pause put while a delivery waits holds it at once: its status says so
// before its next retry comes round; a new reason replaces the old one at
// once too, and the end of the pause clears it.
func TestAPauseHoldsWhatItCoversAtOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0), Status: domain.DroneMaintenance})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("waits", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
	f.drain(t)
	require.Empty(t, f.delivery(t, "waits").HeldReason, "waiting for a drone, held by nothing")
	heldReason := func() string {
		t.Helper()
		resp := f.biz("GetDeliveryStatus", &functionapp.Request{Method: http.MethodGet, Params: map[string]string{"id": "waits"}})
		require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
		var v struct{ HeldReason string }
		require.NoError(t, json.Unmarshal(resp.Body, &v))
		return v.HeldReason
	}
	for _, reason := range []string{"hail", "high winds"} {
		require.Contains(t, []int{http.StatusCreated, http.StatusOK}, f.putPause(t, "storm", map[string]any{"reason": reason}).Status)
		f.playWakes(t) // no retry is played
		f.drain(t)
		assert.Equal(t, reason, heldReason())
	}
	f.liftPause(t, "storm")
	assert.Empty(t, heldReason())

	// Woken by the end of the pause with no drone to take, it waits for
	// the next drone: one put back in service wakes it at once (it waited
	// for its own retry, up to a minute, the drone idle).
	f.act(t, "DroneAction", "d1", map[string]any{"action": "resume", "reason": "inspection done"})
	f.drain(t) // the delivery's own retries stay aside
	assert.Equal(t, "d1", f.delivery(t, "waits").DroneID)
}

// A pause put while a delivery waits, and ending before the delivery's own
// next retry, sends it to dispatch when it ends: the hold is not shown,
// nor the drone kept from it, until that retry.
func TestAPauseReleasesWhatItHeldWhenItEnds(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0), Status: domain.DroneMaintenance})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("waits", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
	f.drain(t)
	until := t0.Add(20 * time.Second)
	require.Equal(t, http.StatusCreated, f.putPause(t, "gust", map[string]any{"reason": "gust front", "until": until.Format(time.RFC3339)}).Status)
	f.playWakes(t)
	f.drain(t)
	require.Equal(t, "gust front", f.delivery(t, "waits").HeldReason)
	var end []ports.Message
	for _, m := range f.delayed[topology.QueueDeliveryRequests] {
		if strings.Contains(m.ID, ":hold-end-") {
			end = append(end, m)
		}
	}
	require.Len(t, end, 1, "a wake for the end of the pause")
	assert.True(t, end[0].NotBefore.After(until), "due once every instance sees it ended")

	f.putDrone(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	f.clock.Set(end[0].NotBefore)
	f.playWakes(t) // the delivery's own retries stay aside
	f.drain(t)
	d := f.delivery(t, "waits")
	assert.Empty(t, d.HeldReason)
	assert.Equal(t, "d1", d.DroneID)
}

// pauseView is a pause as GET /api/pauses and /api/pauses/{id} show it.
type pauseView struct {
	PauseID, AreaID, Reason, State string
	Until                          time.Time
}

func (f *fixture) putPause(t *testing.T, id string, body map[string]any) *functionapp.Response {
	t.Helper()
	return f.fleet("PutPause", &functionapp.Request{Method: http.MethodPut, Params: map[string]string{"id": id}, Body: mustJSON(body)})
}

func (f *fixture) listPauses(t *testing.T) []pauseView {
	t.Helper()
	resp := f.fleet("ListPauses", &functionapp.Request{Method: http.MethodGet})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var page struct{ Pauses []pauseView }
	require.NoError(t, json.Unmarshal(resp.Body, &page))
	return page.Pauses
}

// A pause reads back where PUT's Location points, and the listing shows
// every pause in id order, each in force or expired by the clock.
func TestGetAndListPauses(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	assert.Empty(t, f.listPauses(t), "no pauses yet")
	until := t0.Add(time.Minute)
	resp := f.putPause(t, "storm", map[string]any{"reason": "hail", "until": until.Format(time.RFC3339)})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	assert.Equal(t, "/api/pauses/storm", resp.Header.Get("Location"))
	assert.Contains(t, string(resp.Body), `"state":"active"`)
	require.Equal(t, http.StatusCreated, f.putPause(t, "closure", map[string]any{"reason": "airspace closed"}).Status)

	get := func(id string) *functionapp.Response {
		return f.fleet("GetPause", &functionapp.Request{Method: http.MethodGet, Params: map[string]string{"id": id}})
	}
	resp = get("storm")
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var one pauseView
	require.NoError(t, json.Unmarshal(resp.Body, &one))
	assert.Equal(t, pauseView{PauseID: "storm", Reason: "hail", State: "active", Until: until}, one)

	f.clock.Advance(2 * time.Minute)
	assert.Equal(t, []pauseView{
		{PauseID: "closure", Reason: "airspace closed", State: "active"},
		{PauseID: "storm", Reason: "hail", State: "expired", Until: until},
	}, f.listPauses(t), "in id order; a pause without an end never expires")
	require.NoError(t, json.Unmarshal(get("storm").Body, &one))
	assert.Equal(t, "expired", one.State, "an expired pause is kept until the next put")

	resp = get("nothing")
	require.Equal(t, http.StatusNotFound, resp.Status, string(resp.Body))
	assert.Equal(t, "pause nothing not found", problemOf(t, resp).Detail)
	resp = get("..")
	require.Equal(t, http.StatusBadRequest, resp.Status, string(resp.Body))
	assert.Equal(t, "id", problemOf(t, resp).Field)

	for _, q := range []url.Values{{"limit": {"10"}}, {"cursor": {"x"}}} {
		resp = f.fleet("ListPauses", &functionapp.Request{Method: http.MethodGet, Query: q})
		require.Equal(t, http.StatusBadRequest, resp.Status, string(resp.Body))
		for k := range q {
			assert.Equal(t, k, problemOf(t, resp).Field, "the unknown parameter is named")
		}
	}
	resp = f.fleet("ListPauses", &functionapp.Request{Method: http.MethodGet, Query: url.Values{"code": {"a-function-key"}}})
	assert.Equal(t, http.StatusOK, resp.Status, "the host's function key is not a parameter: %s", resp.Body)
}

// A service area that a pause in force names cannot be deleted (409
// naming the pause), or the pause would silently hold nothing; once the
// pause is deleted, or has expired, the area can be.
func TestAPausedAreaIsNotDeletedUnderItsPause(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	area := func(method, name string) *functionapp.Response {
		req := &functionapp.Request{Method: method, Params: map[string]string{"id": "downtown"}}
		if method == http.MethodPut {
			req.Body = []byte(square)
		}
		return f.fleet(name, req)
	}
	require.Equal(t, http.StatusCreated, area(http.MethodPut, "PutServiceArea").Status)
	until := t0.Add(time.Hour)
	require.Equal(t, http.StatusCreated, f.putPause(t, "storm", map[string]any{"reason": "hail", "areaId": "downtown", "until": until.Format(time.RFC3339)}).Status)

	resp := area(http.MethodDelete, "DeleteServiceArea")
	require.Equal(t, http.StatusConflict, resp.Status, string(resp.Body))
	assert.Contains(t, problemOf(t, resp).Detail, "pause storm")
	assert.Equal(t, http.StatusOK, area(http.MethodGet, "GetServiceArea").Status, "the area is still there")

	f.clock.Advance(2 * time.Hour)
	assert.Equal(t, http.StatusNoContent, area(http.MethodDelete, "DeleteServiceArea").Status, "an expired pause holds nothing back")
}

// Only pauses in force count toward domain.MaxPauses: once the pauses
// kept have expired, a new one is accepted, and the put removes the
// expired ones so the store stays bounded. A pause with no end never
// expires.
func TestPauseLimitIgnoresExpiredPauses(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := ctxFor(t)
	ends := t0.Add(time.Minute)
	require.NoError(t, f.store.Pauses.Create(ctx, "forever", &domain.Pause{ID: "forever", Reason: "closed", CreatedAt: t0, UpdatedAt: t0}))
	for i := 1; i < domain.MaxPauses; i++ {
		id := fmt.Sprintf("p%03d", i)
		require.NoError(t, f.store.Pauses.Create(ctx, id, &domain.Pause{ID: id, Reason: "gusts", Until: ends, CreatedAt: t0, UpdatedAt: t0}))
	}
	urgent := map[string]any{"reason": "thunderstorm", "until": t0.Add(time.Hour).Format(time.RFC3339)}
	resp := f.putPause(t, "urgent", urgent)
	require.Equal(t, http.StatusUnprocessableEntity, resp.Status, "%d pauses in force: %s", domain.MaxPauses, resp.Body)
	assert.Equal(t, "id", problemOf(t, resp).Field)
	assert.Equal(t, "id cannot be added: at most 100 pauses in force are kept; delete one first", problemOf(t, resp).Detail)
	resp = f.putPause(t, "p001", map[string]any{"reason": "gusts", "until": ends.Format(time.RFC3339)})
	assert.Equal(t, http.StatusOK, resp.Status, "replacing a pause adds none: %s", resp.Body)

	f.clock.Advance(2 * time.Minute)
	resp = f.putPause(t, "urgent", urgent)
	require.Equal(t, http.StatusCreated, resp.Status, "the expired pauses do not count: %s", resp.Body)
	assert.Equal(t, []pauseView{
		{PauseID: "forever", Reason: "closed", State: "active"},
		{PauseID: "urgent", Reason: "thunderstorm", State: "active", Until: t0.Add(time.Hour)},
	}, f.listPauses(t), "the put removed the expired pauses")
	resp = f.ingest(t, requestBody("refused", at(0.01, 0), at(0.02, 0), "Small", 1))
	assert.Equal(t, http.StatusServiceUnavailable, resp.Status, "the new pause is in force")
}

// Pauses put at once are held to MaxPauses too: each used to count the
// pauses in force side by side with the others, and all were kept.
func TestPausesPutAtOnceKeepTheLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := ctxFor(t)
	for i := range domain.MaxPauses - 5 {
		id := fmt.Sprintf("p%03d", i)
		require.NoError(t, f.store.Pauses.Create(ctx, id, &domain.Pause{ID: id, Reason: "gusts", CreatedAt: t0, UpdatedAt: t0}))
	}
	const n = 20
	count := atOnce(n, func(i int) int {
		return f.putPause(t, fmt.Sprintf("at-once-%d", i), map[string]any{"reason": "storm cell"}).Status
	})
	assert.Equal(t, map[int]int{http.StatusCreated: 5, http.StatusUnprocessableEntity: n - 5}, count)
	assert.Len(t, f.listPauses(t), domain.MaxPauses)
}

// Grounding a drone mid-delivery hands the delivery to another drone
// through dispatch, tells the customer and audits the action once.
func TestGroundHandsDeliveryOn(t *testing.T) {
	t.Parallel()
	f := onNear(t, "d")

	for range 2 {
		f.act(t, "DroneAction", "near", map[string]any{"action": "ground", "reason": "bird strike"})
	}
	f.drain(t)
	d := f.delivery(t, "d")
	assert.Equal(t, domain.StageScheduled, d.Stage)
	assert.Equal(t, "far", d.DroneID)
	assert.Equal(t, domain.DroneMaintenance, f.drone(t, "near").Status)
	n := 0
	for _, e := range d.History {
		if e.Kind == domain.EventOperator {
			n++
			assert.Equal(t, "ground: bird strike", e.Note)
		}
	}
	assert.Equal(t, 1, n, "audited once")
	require.NoError(t, domain.LegalHistory(d.History))
	var kinds []string
	for _, x := range d.Notifications {
		kinds = append(kinds, x.Kind)
	}
	assert.Contains(t, kinds, domain.NotifyReassigned)

	// Reassign it again: "far" is released, and "near" is grounded, so
	// it waits; the same actionId again changes nothing.
	for range 2 {
		f.act(t, "DeliveryAction", "d", map[string]any{"action": "reassign", "reason": "swap", "actionId": "x1"})
	}
	f.drain(t)
	assert.Equal(t, domain.DroneAvailable, f.drone(t, "far").Status, "released")
	assert.Equal(t, 2, f.delivery(t, "d").Generation, "one new generation per action")
}

// A drone that lands low charges, and its charge check returns it to
// service at the due time; a report of a full battery restores the range.
func TestChargeCheckReturnsDrone(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "low", Location: at(0, 0), BatteryPercent: 100, RangeKm: 45})
	f.report(t, "low", at(0, 0), 0, t0.Add(time.Second))
	assert.Zero(t, f.drone(t, "low").RangeKm)
	f.report(t, "low", at(0, 0), 100, t0.Add(2*time.Second))
	assert.Equal(t, 45.0, f.drone(t, "low").RangeKm, "the range comes back with the charge")

	now := f.clock.Now()
	resp := f.fleet("PutDrone", &functionapp.Request{Method: "PUT", Params: map[string]string{"id": "low"}, Body: mustJSON(map[string]any{
		"location": at(0, 0), "maxPayloadKg": 5, "maxPackageSize": "Small", "rangeKm": 5, "cruiseSpeedMps": 15, "batteryPercent": 5, "status": "Charging"})})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	dr := f.drone(t, "low")
	require.NotNil(t, dr.ChargeDueAt)
	assert.Equal(t, now.Add(90*time.Minute), *dr.ChargeDueAt, "5 % to 95 % at 60 %/h")
	f.clock.Advance(90 * time.Minute)
	require.Len(t, f.releaseDelayed(t, topology.QueueDroneTelemetry), 1, "the charge check")
	m := f.receive(t, topology.QueueDroneTelemetry)
	require.Len(t, m, 1)
	out, err := f.h.TrackDrone(ctxFor(t), m[0])
	require.NoError(t, err)
	assert.Empty(t, out)
	dr = f.drone(t, "low")
	assert.Equal(t, domain.DroneAvailable, dr.Status)
	assert.Equal(t, 95.0, dr.BatteryPercent)
}

// A report while a drone charges sets when its charge is due from the
// battery it reports: the charge check at the first due time does not give
// it 95 % when it reported less since, but waits for the new due time. It
// used to be Available at 95 % at the first due time whatever came after.
func TestAReportOnChargeMovesItsDueTime(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "c", Location: at(0, 0), RangeKm: 18})
	f.report(t, "c", at(0, 0), 65, t0.Add(time.Second))
	f.act(t, "DroneAction", "c", map[string]any{"action": "charge", "reason": "top up"})
	first := *f.drone(t, "c").ChargeDueAt
	assert.Equal(t, f.clock.Now().Add(30*time.Minute), first, "65 % to 95 % at 60 %/h")

	// Its charger failed: ten minutes on, it reports 35 %.
	f.clock.Advance(10 * time.Minute)
	f.report(t, "c", at(0, 0), 35, f.clock.Now())
	dr := f.drone(t, "c")
	assert.Equal(t, domain.DroneCharging, dr.Status)
	assert.Equal(t, f.clock.Now().Add(time.Hour), *dr.ChargeDueAt, "35 % to 95 %")
	assert.Len(t, f.delayed[topology.QueueDroneTelemetry], 1, "the first check only: none for a due time moved later")

	f.clock.Set(first)
	f.releaseDelayed(t, topology.QueueDroneTelemetry)
	checks := f.receive(t, topology.QueueDroneTelemetry)
	require.Len(t, checks, 1, "the first check")
	out, err := f.h.TrackDrone(ctxFor(t), checks[0])
	require.NoError(t, err)
	require.NoError(t, f.bus.Complete(context.Background(), checks[0]))
	dr = f.drone(t, "c")
	assert.Equal(t, domain.DroneCharging, dr.Status, "not charged yet")
	assert.Equal(t, 35.0, dr.BatteryPercent)
	require.Len(t, out, 1, "the check again at the new due time")
	assert.Equal(t, *dr.ChargeDueAt, out[0].NotBefore)

	// A report close to the charge the rate predicts (35 % + 40 minutes
	// at 60 %/h) leaves the due time as it is.
	f.clock.Advance(20 * time.Minute)
	f.report(t, "c", at(0, 0), 75.5, f.clock.Now())
	assert.Equal(t, *dr.ChargeDueAt, *f.drone(t, "c").ChargeDueAt)
}

// A drone key posts its own drone's telemetry only.
func TestDroneKeyScope(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "a", Location: at(0, 0)}, domain.Drone{ID: "b", Location: at(0, 0)})
	resp := f.fleet("CreateDroneKey", &functionapp.Request{Method: "POST", Params: map[string]string{"id": "a"}})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	var k struct{ APIKey, Prefix string }
	require.NoError(t, json.Unmarshal(resp.Body, &k))
	post := func(id string) int {
		return f.call("PostTelemetry", k.APIKey, &functionapp.Request{Method: "POST", Params: map[string]string{"id": id},
			Body: mustJSON(map[string]any{"location": at(0, 0), "batteryPercent": 50, "timestamp": t0.Format(time.RFC3339)})}).Status
	}
	assert.Equal(t, http.StatusAccepted, post("a"))
	assert.Equal(t, http.StatusForbidden, post("b"))
	assert.Equal(t, http.StatusForbidden, f.call("ListDrones", k.APIKey, &functionapp.Request{Method: "GET"}).Status)
	resp = f.fleet("RevokeDroneKey", &functionapp.Request{Method: "DELETE", Params: map[string]string{"id": "a", "prefix": k.Prefix}})
	require.Equal(t, http.StatusNoContent, resp.Status)
	assert.Equal(t, http.StatusUnauthorized, post("a"))
}

// Listing the dead letters reads them and changes nothing: their delivery
// counts stay what the bus said when it dead-lettered them, however often
// the operator (or the console, every 10 s) looks.
func TestListingDeadLettersChangesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	body := mustJSON(wire.Envelope{Operation: wire.OpDelivery, DeliveryID: "gone", CorrelationID: "c"})
	require.NoError(t, f.bus.Publish(ctx, ports.Message{ID: "gone:requested", Queue: topology.QueueDeliveryRequests, Body: body}))
	got, err := f.bus.Receive(ctx, topology.QueueDeliveryRequests, 1)
	require.NoError(t, err)
	require.NoError(t, f.bus.DeadLetter(ctx, got[0], "test", "poison"))

	list := func() []map[string]any {
		resp := f.fleet("ListDeadLetters", &functionapp.Request{Method: "GET", Query: map[string][]string{"queue": {topology.QueueDeliveryRequests}}})
		require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
		var out struct{ Items []map[string]any }
		require.NoError(t, json.Unmarshal(resp.Body, &out))
		return out.Items
	}
	first := list()
	require.Len(t, first, 1)
	assert.EqualValues(t, 1, first[0]["deliveryCount"])
	for range 3 {
		again := list()
		require.Len(t, again, 1)
		assert.Equal(t, first[0]["deliveryCount"], again[0]["deliveryCount"])
	}
}

// A pause refuses a request whose pickup falls while it is in force, and
// takes one booked for after it ends (as a no-fly zone judges a pickup by
// its time); one without an end refuses every pickup it covers.
func TestAPauseJudgesAPickupByItsTime(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	until := t0.Add(90 * time.Second)
	require.Equal(t, http.StatusCreated, f.putPause(t, "gusts", map[string]any{"reason": "gusts", "until": until.Format(time.RFC3339)}).Status)
	request := func(id string, pickup time.Time) []byte {
		return mustJSON(map[string]any{"deliveryId": id, "pickupLocation": at(0.01, 0), "dropOffLocation": at(0.02, 0),
			"pickupTime": pickup.Format(time.RFC3339), "packageInfo": map[string]any{"size": "Small", "weight": 1}})
	}
	resp := f.ingest(t, request("during", t0.Add(time.Minute)))
	assert.Equal(t, http.StatusServiceUnavailable, resp.Status, "its pickup falls in the pause: %s", resp.Body)
	resp = f.ingest(t, request("after", t0.Add(6*time.Minute)))
	require.Equal(t, http.StatusAccepted, resp.Status, "its pickup comes after the pause ends: %s", resp.Body)
	f.drain(t)
	assert.Equal(t, domain.StageScheduled, f.delivery(t, "after").Stage, "booked")

	require.Equal(t, http.StatusCreated, f.putPause(t, "closed", map[string]any{"reason": "airspace closed"}).Status)
	resp = f.ingest(t, request("later", t0.Add(time.Hour)))
	assert.Equal(t, http.StatusServiceUnavailable, resp.Status, "a pause without an end covers every pickup: %s", resp.Body)
}

// A pause does not hide that no drone could ever serve a request: ingest
// refuses it (422) rather than have it sent again after the pause (503),
// and its quote lists the reasons beside the pause.
func TestAPauseDoesNotHideThatARequestCannotBeServed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	resp := f.fleet("PutPause", &functionapp.Request{Method: "PUT", Params: map[string]string{"id": "storm"},
		Body: mustJSON(map[string]any{"reason": "hail"})})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))

	heavy := requestBody("heavy", at(0.01, 0), at(0.02, 0), "Small", 50)
	resp = f.ingest(t, heavy)
	require.Equal(t, http.StatusUnprocessableEntity, resp.Status, string(resp.Body))
	assert.Equal(t, "packageInfo.weight", problemOf(t, resp).Field)
	q := f.quote(t, heavy)
	assert.False(t, q.Feasible)
	require.NotEmpty(t, q.Reasons)
	assert.Equal(t, "packageInfo.weight", q.Reasons[0].Field)
	assert.Contains(t, q.Paused, "hail")

	light := requestBody("light", at(0.01, 0), at(0.02, 0), "Small", 1)
	assert.Equal(t, http.StatusServiceUnavailable, f.ingest(t, light).Status, "one the fleet could serve waits for the pause")
	q = f.quote(t, light)
	assert.True(t, q.Feasible)
	assert.Contains(t, q.Paused, "hail")
}

// A request stored but not queued (the queue refused it: 503, "retry with
// deliveryId") and sent again after a pause began, or after the fleet
// changed, is queued by the retry that answers 202: it was accepted before
// them, and a 202 without its message would leave it Created for good.
func TestARetryOfAStoredRequestQueuesItWhateverHasChanged(t *testing.T) {
	t.Parallel()
	armed := &atomic.Bool{}
	f := newFixtureWith(t, func(d *handlers.Deps) { d.Bus = failingOnce{Publisher: d.Bus, armed: armed} })
	f.putDrone(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	body := requestBody("r1", at(0.01, 0), at(0.02, 0), "Small", 1)
	armed.Store(true)
	require.Equal(t, http.StatusServiceUnavailable, f.ingest(t, body).Status)
	require.Equal(t, domain.StageCreated, f.delivery(t, "r1").Stage)
	resp := f.fleet("PutPause", &functionapp.Request{Method: "PUT", Params: map[string]string{"id": "storm"},
		Body: mustJSON(map[string]any{"reason": "hail", "until": f.clock.Now().Add(10 * time.Minute).Format(time.RFC3339)})})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))

	require.Equal(t, http.StatusAccepted, f.ingest(t, body).Status, "the retry of an accepted request")
	require.Equal(t, http.StatusNoContent, f.fleet("DeletePause", &functionapp.Request{Method: "DELETE", Params: map[string]string{"id": "storm"}}).Status)
	assert.Positive(t, f.drain(t), "the retry queued it")
	assert.Equal(t, domain.StageScheduled, f.delivery(t, "r1").Stage)
}
