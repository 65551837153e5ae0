package handlers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// releaseDelayed queues the messages drain kept aside for q as if their
// time had come, and returns them.
func (f *fixture) releaseDelayed(t *testing.T, q string) []ports.Message {
	t.Helper()
	msgs := f.delayed[q]
	delete(f.delayed, q)
	for _, m := range msgs {
		m.NotBefore = time.Time{}
		require.NoError(t, f.bus.Publish(context.Background(), m))
	}
	return msgs
}

// playWakes queues the wakes a change of the pauses sent (due once every
// instance has read the pauses again) as if their time had come, leaving
// the deliveries' own retries aside.
func (f *fixture) playWakes(t *testing.T) {
	t.Helper()
	q := topology.QueueDeliveryRequests
	var keep []ports.Message
	for _, m := range f.delayed[q] {
		if !strings.Contains(m.ID, ":hold-") {
			keep = append(keep, m)
			continue
		}
		m.NotBefore = time.Time{}
		require.NoError(t, f.bus.Publish(context.Background(), m))
	}
	f.delayed[q] = keep
}

// laterBody is the request of delivery "later", picked up at pickupAt.
func laterBody(pickupAt time.Time) []byte {
	b, _ := json.Marshal(map[string]any{"deliveryId": "later", "pickupLocation": at(0.01, 0), "dropOffLocation": at(0.02, 0),
		"pickupTime": pickupAt.Format(time.RFC3339), "packageInfo": map[string]any{"size": "Small", "weight": 1}})
	return b
}

// bookedLater is a fleet of one drone, d1, and a delivery, "later", whose
// pickup an hour ahead is booked (the chain run), with that pickup time.
func bookedLater(t *testing.T) (*fixture, time.Time) {
	t.Helper()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0), CruiseSpeedMps: 10})
	pickupAt := t0.Add(time.Hour)
	body := laterBody(pickupAt)
	require.Equal(t, http.StatusAccepted, f.ingest(t, body).Status)
	f.drain(t)
	return f, pickupAt
}

// laterDispatched checks that booking "later" went to drone d1 in the end:
// its pickup planned, its customer told it is scheduled, its history legal.
func (f *fixture) laterDispatched(t *testing.T) *domain.Delivery {
	t.Helper()
	d := f.delivery(t, "later")
	assert.Equal(t, "d1", d.DroneID)
	require.NotNil(t, d.PickupETA)
	assert.Equal(t, domain.NotifyScheduled, d.Notifications[len(d.Notifications)-1].Kind)
	assert.NoError(t, domain.LegalHistory(d.History))
	return d
}

// A pickup booked while no drone is free is planned for its pickup time
// all the same (the fastest able drone's flight of the leg after it), not
// a minute later.
func TestABookingWithNoFreeDroneIsPlannedForItsPickupTime(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0), CruiseSpeedMps: 10, Status: domain.DroneMaintenance})
	pickupAt := t0.Add(time.Hour)
	body := laterBody(pickupAt)
	require.Equal(t, http.StatusAccepted, f.ingest(t, body).Status)
	f.drain(t)
	d := f.delivery(t, "later")
	require.Equal(t, domain.StageScheduled, d.Stage)
	require.NotNil(t, d.PickupETA)
	assert.Equal(t, pickupAt, *d.PickupETA)
	leg := domain.LegDuration(domain.DistanceKm(at(0.01, 0), at(0.02, 0)), 10)
	want := pickupAt.Add(domain.PickupHandling + leg)
	if whole := want.Truncate(time.Second); !whole.Equal(want) {
		want = whole.Add(time.Second) // ETAs are rounded up to the second
	}
	assert.Equal(t, want, *d.DeliveryETA)
}

// A pickup an hour ahead is booked: Scheduled with the planned times, no
// drone held; at its dispatch time a drone is claimed and flies, and its
// report at the pickup counts only from pickupTime − the tolerance on.
func TestBookedPickupHoldsNoDroneUntilItsDispatchTime(t *testing.T) {
	t.Parallel()
	f, pickupAt := bookedLater(t)
	d := f.delivery(t, "later")
	assert.Equal(t, domain.StageScheduled, d.Stage)
	assert.Empty(t, d.DroneID, "no drone reserved")
	require.NotNil(t, d.DispatchAt)
	flight := domain.LegDuration(domain.DistanceKm(at(0, 0), at(0.01, 0)), 10)
	assert.Equal(t, pickupAt.Add(-flight-2*time.Minute), *d.DispatchAt, "pickupTime − flight − margin")
	assert.Equal(t, pickupAt, *d.PickupETA)
	assert.Equal(t, domain.DroneAvailable, f.drone(t, "d1").Status, "the drone stays Available")
	require.Len(t, f.delayed[topology.QueueDeliveryRequests], 1)
	assert.Equal(t, *d.DispatchAt, f.delayed[topology.QueueDeliveryRequests][0].NotBefore)
	assert.Contains(t, d.Notifications[0].Message, "booked")

	// Dispatch time.
	f.clock.Set(*d.DispatchAt)
	f.releaseDelayed(t, topology.QueueDeliveryRequests)
	f.drain(t)
	d = f.delivery(t, "later")
	assert.Equal(t, domain.StageScheduled, d.Stage)
	assert.Equal(t, "d1", d.DroneID)
	require.NotNil(t, d.ScheduledAt)
	assert.Equal(t, pickupAt, *d.PickupETA, "the drone waits for the pickup time")
	assert.NoError(t, domain.LegalHistory(d.History))
	assert.Equal(t, domain.DroneAssigned, f.drone(t, "d1").Status)

	// The drone is at the pickup five minutes early: it waits; the pickup
	// counts from a minute before the time.
	f.clock.Set(pickupAt.Add(-5 * time.Minute))
	f.report(t, "d1", at(0.01, 0), 90, pickupAt.Add(-5*time.Minute))
	assert.Equal(t, domain.StageHeadedToPickup, f.delivery(t, "later").Stage)
	f.report(t, "d1", at(0.01, 0), 89, pickupAt.Add(-30*time.Second))
	d = f.delivery(t, "later")
	assert.Equal(t, domain.StageHeadedToDropoff, d.Stage)
	assert.Equal(t, pickupAt.Add(-30*time.Second), *d.PickedUpAt)
}

// A redelivered booking message neither books twice nor claims early.
func TestBookingIsIdempotent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	body, _ := json.Marshal(map[string]any{"deliveryId": "b", "pickupLocation": at(0.01, 0), "dropOffLocation": at(0.02, 0),
		"pickupTime": t0.Add(time.Hour).Format(time.RFC3339), "packageInfo": map[string]any{"size": "Small", "weight": 1}})
	require.Equal(t, http.StatusAccepted, f.ingest(t, body).Status)
	msgs := f.receive(t, topology.QueueDeliveryRequests)
	first, err := f.h.ScheduleDrone(context.Background(), msgs[0])
	require.NoError(t, err)
	again, err := f.h.ScheduleDrone(context.Background(), msgs[0])
	require.NoError(t, err)
	d := f.delivery(t, "b")
	assert.Len(t, d.Notifications, 1)
	assert.Empty(t, d.DroneID)
	require.NotEmpty(t, again)
	assert.Equal(t, first[len(first)-1].ID, again[0].ID, "the same dispatch message, which duplicate detection drops")
}

// A booked pickup that finds no drone free at its dispatch time drops the
// planned times of the drone that is not coming, and its customer is told
// once; the times come back, with the scheduled notice, when a drone is
// assigned. Before, the page counted down to a planned pickup that passed
// with nothing in the air.
func TestABookedPickupThatFindsNoDroneShowsNoPlannedTimes(t *testing.T) {
	t.Parallel()
	f, _ := bookedLater(t)
	d := f.delivery(t, "later")
	require.NotNil(t, d.DispatchAt)
	f.putDrone(t, domain.Drone{ID: "d1", Location: at(0, 0), CruiseSpeedMps: 10, Status: domain.DroneMaintenance})

	f.clock.Set(*d.DispatchAt)
	f.releaseDelayed(t, topology.QueueDeliveryRequests)
	f.drain(t)
	d = f.delivery(t, "later")
	assert.Equal(t, domain.StageScheduled, d.Stage)
	assert.Empty(t, d.DroneID)
	assert.Nil(t, d.PickupETA)
	assert.Nil(t, d.DeliveryETA)
	last := d.Notifications[len(d.Notifications)-1]
	assert.Equal(t, domain.NotifyETAChanged, last.Kind)
	assert.Contains(t, last.Message, "No drone is free yet")
	feed := f.call("TrackFeed", "", &functionapp.Request{Method: http.MethodGet, Params: map[string]string{"trackingId": d.TrackingID}})
	require.Equal(t, http.StatusOK, feed.Status)
	var shown map[string]any
	require.NoError(t, json.Unmarshal(feed.Body, &shown))
	assert.Nil(t, shown["pickupETA"], "the page shows no time")
	told := len(d.Notifications)

	// The next attempt, still with no drone, tells nobody again; a
	// redelivery of it sends the notice again, in case the run that made
	// it stopped before sending it (the bus drops the duplicate).
	f.clock.Advance(time.Minute)
	f.releaseDelayed(t, topology.QueueDeliveryRequests)
	msgs := f.receive(t, topology.QueueDeliveryRequests)
	require.Len(t, msgs, 1)
	retry := msgs[0]
	notices := func(out []ports.Message) int {
		n := 0
		for _, m := range out {
			if m.Queue == topology.QueueNotifications {
				n++
			}
		}
		return n
	}
	again := *retry
	again.DeliveryCount = 2
	redelivered, err := f.h.ScheduleDrone(context.Background(), &again)
	require.NoError(t, err)
	assert.Equal(t, 1, notices(redelivered), "a redelivery sends the notice again")
	out, err := f.h.ScheduleDrone(context.Background(), retry)
	require.NoError(t, err)
	assert.Zero(t, notices(out), "a later retry tells nobody again")
	require.NoError(t, delayAside{f}.Publish(context.Background(), out...))
	require.NoError(t, f.bus.Complete(context.Background(), retry))
	f.drain(t)
	assert.Len(t, f.delivery(t, "later").Notifications, told)

	f.putDrone(t, domain.Drone{ID: "d1", Location: at(0, 0), CruiseSpeedMps: 10})
	f.clock.Advance(time.Minute)
	f.releaseDelayed(t, topology.QueueDeliveryRequests)
	f.drain(t)
	require.NotNil(t, f.laterDispatched(t).DeliveryETA)
}

// A booked pickup that a no-fly zone put since leaves no way to fly at its
// dispatch time tells its customer so, naming the zone, not that no drone
// is free: its drone stands by.
func TestABookedPickupBlockedByAZoneSaysSo(t *testing.T) {
	t.Parallel()
	f, _ := bookedLater(t)
	d := f.delivery(t, "later")
	require.NotNil(t, d.DispatchAt)
	f.putSquareZone(t, "crane", "Crane", at(0.02, 0), 0.001, time.Time{}, time.Time{})

	f.clock.Set(*d.DispatchAt)
	f.releaseDelayed(t, topology.QueueDeliveryRequests)
	f.drain(t)
	d = f.delivery(t, "later")
	assert.Empty(t, d.DroneID)
	assert.Nil(t, d.PickupETA)
	last := d.Notifications[len(d.Notifications)-1]
	assert.Equal(t, domain.NotifyETAChanged, last.Kind)
	assert.Contains(t, last.Message, "A no-fly zone closes the way for your pickup")
	assert.Contains(t, last.Message, "Crane (crane)")
	assert.Contains(t, last.Message, "if the way opens before your delivery's deadline", "the zone may outlast it")
	assert.NotContains(t, last.Message, "No drone is free")
	assert.Equal(t, domain.DroneAvailable, f.drone(t, "d1").Status)

	// The zone stays: at its deadline the delivery fails, naming it.
	f.clock.Set(d.Request.Deadline)
	f.playRetries(t, "later")
	d = f.delivery(t, "later")
	require.Equal(t, domain.StageFailed, d.Stage)
	assert.Contains(t, d.FailureReason, "no route: dropOffLocation: is inside no-fly zone Crane (crane)")
}

// A booked pickup that a pause holds at its dispatch time drops its planned
// times too, and its customer is told why, once; when the pause is lifted
// a drone is dispatched and the times come back.
func TestABookedPickupHeldByAPauseShowsNoPlannedTimes(t *testing.T) {
	t.Parallel()
	f, _ := bookedLater(t)
	d := f.delivery(t, "later")
	require.NotNil(t, d.DispatchAt)
	require.Equal(t, http.StatusCreated, f.putPause(t, "storm", map[string]any{"reason": "thunderstorm"}).Status)

	f.clock.Set(*d.DispatchAt)
	f.releaseDelayed(t, topology.QueueDeliveryRequests)
	f.drain(t)
	d = f.delivery(t, "later")
	assert.Equal(t, "thunderstorm", d.HeldReason)
	assert.Nil(t, d.PickupETA)
	assert.Nil(t, d.DeliveryETA)
	last := d.Notifications[len(d.Notifications)-1]
	assert.Equal(t, domain.NotifyETAChanged, last.Kind)
	assert.Contains(t, last.Message, "Service is paused at your pickup (thunderstorm)")
	told := len(d.Notifications)

	f.clock.Advance(time.Minute)
	f.releaseDelayed(t, topology.QueueDeliveryRequests)
	f.drain(t)
	assert.Len(t, f.delivery(t, "later").Notifications, told, "held again, nobody told again")

	f.liftPause(t, "storm")
	f.laterDispatched(t)
}

// A booked pickup cancelled shows no dispatch time any more: nothing is to
// be dispatched for it.
func TestACancelledBookingShowsNoDispatchTime(t *testing.T) {
	t.Parallel()
	f, _ := bookedLater(t)
	require.NotNil(t, f.delivery(t, "later").DispatchAt)
	require.Equal(t, http.StatusNoContent, f.cancel(t, "later").Status)
	f.drain(t)
	for _, fn := range []string{"GetDeliveryStatus", "GetDelivery"} {
		resp := f.biz(fn, &functionapp.Request{Method: http.MethodGet, Params: map[string]string{"id": "later"}})
		require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
		var v map[string]any
		require.NoError(t, json.Unmarshal(resp.Body, &v))
		assert.Equal(t, "Cancelled", v["stage"], fn)
		assert.NotContains(t, v, "dispatchAt", fn)
	}
}

// A quote for a pickup booked ahead while no drone is free answers the
// planned times the request then gets, as the request is booked all the
// same.
func TestAQuoteForABookingWithNoFreeDroneHasItsPlannedTimes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0), CruiseSpeedMps: 10, Status: domain.DroneMaintenance})
	pickupAt := t0.Add(time.Hour)
	body := laterBody(pickupAt)
	q := f.quote(t, body)
	require.NotNil(t, q.PickupETA, "%+v", q)
	require.NotNil(t, q.DeliveryETA)
	require.Equal(t, http.StatusAccepted, f.ingest(t, body).Status)
	f.drain(t)
	d := f.delivery(t, "later")
	require.Equal(t, domain.StageScheduled, d.Stage)
	assert.Equal(t, *d.PickupETA, *q.PickupETA)
	assert.Equal(t, *d.DeliveryETA, *q.DeliveryETA)
}
