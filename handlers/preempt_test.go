package handlers_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// history notes of a delivery's events.
func notes(d *domain.Delivery) []string {
	var out []string
	for _, e := range d.History {
		out = append(out, e.Note)
	}
	return out
}

func hasKind(d *domain.Delivery, kind string) bool {
	for _, n := range d.Notifications {
		if n.Kind == kind {
			return true
		}
	}
	return false
}

// An expedited delivery that no free drone serves takes the drone of a
// plain delivery that has not taken off; the plain one goes back to
// dispatch, is told why, and gets the drone once it is free again.
func TestExpeditedTakesTheDroneOfADeliveryNotYetFlying(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	_, other := f.signUpOther(t)
	f.dispatchAs(t, f.key, "plain", false)
	require.Equal(t, domain.StageScheduled, f.delivery(t, "plain").Stage)
	require.Equal(t, domain.DroneAssigned, f.drone(t, "d1").Status)

	f.clock.Advance(time.Second)
	f.dispatchAs(t, other, "urgent", true)

	urgent := f.delivery(t, "urgent")
	require.Equal(t, domain.StageScheduled, urgent.Stage)
	assert.Equal(t, "d1", urgent.DroneID)
	require.NotNil(t, urgent.Preempted)
	assert.Equal(t, "plain", urgent.Preempted.DeliveryID)
	assert.Equal(t, "urgent", f.drone(t, "d1").CurrentDeliveryID)
	assert.Contains(t, notes(urgent), "drone d1 taken from a delivery that had not started flying")

	plain := f.delivery(t, "plain")
	assert.Equal(t, domain.StageRescheduled, plain.Stage)
	assert.Equal(t, 1, plain.Generation)
	assert.Nil(t, plain.DroneAssignedAt, "its new dispatch ran and found no drone")
	assert.Equal(t, "urgent", plain.PreemptedBy)
	assert.True(t, hasKind(plain, domain.NotifyPreempted), "its customer is told why")
	assert.Contains(t, notes(plain), "drone d1 was given to an expedited delivery before it took off; waiting for another drone")
	for _, n := range notes(plain) {
		assert.NotContains(t, n, "urgent", "another account's delivery is not named")
	}
	require.NoError(t, domain.LegalHistory(plain.History))
	require.NotEmpty(t, f.delayed[topology.QueueDeliveryRequests], "it waits for a drone with a retry")

	f.complete(t, "urgent")
	f.playRetries(t, "plain")
	plain = f.delivery(t, "plain")
	assert.Equal(t, domain.StageScheduled, plain.Stage, "nothing lost: dispatched again")
	assert.Equal(t, "d1", plain.DroneID)
	assert.Equal(t, "plain", f.drone(t, "d1").CurrentDeliveryID)
}

// An account takes another's drone with an expedited request only while
// that account holds more drones in the area: expedited costs nothing, so
// it must not let an account take a smaller or equal one's drones.
func TestExpeditedDoesNotTakeFromAnAccountHoldingNoMore(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)}, domain.Drone{ID: "d2", Location: at(0, 0.001)})
	_, other := f.signUpOther(t)
	f.dispatchAs(t, other, "big-1", true)
	f.dispatchAs(t, f.key, "small", false)
	require.Equal(t, domain.StageScheduled, f.delivery(t, "big-1").Stage)
	require.Equal(t, domain.StageScheduled, f.delivery(t, "small").Stage)

	f.clock.Advance(time.Second)
	f.dispatchAs(t, other, "urgent", true)
	assert.Empty(t, f.assigned(t, "urgent"), "one drone each: nothing to take")
	small := f.delivery(t, "small")
	assert.Equal(t, domain.StageScheduled, small.Stage)
	assert.Equal(t, 0, small.Generation)
	assert.Empty(t, small.PreemptedBy)
}

// A drone that has reported since its claim is flying: it is not taken,
// and the expedited delivery waits.
func TestExpeditedLeavesAFlyingDroneAlone(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	f.dispatchAs(t, f.key, "plain", false)
	f.takeOff(t, "plain")
	f.dispatchAs(t, f.key, "urgent", true)
	assert.Empty(t, f.assigned(t, "urgent"))
	assert.Equal(t, "plain", f.drone(t, "d1").CurrentDeliveryID)
	assert.Equal(t, domain.StageHeadedToPickup, f.delivery(t, "plain").Stage)
	assert.Equal(t, 0, f.delivery(t, "plain").Generation)
}

// An expedited delivery's drone is never taken, and a free drone that
// meets the deadline is taken before anybody's.
func TestExpeditedTakesAFreeDroneFirstAndNeverAnExpeditedOnesDrone(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	f.dispatchAs(t, f.key, "u1", true)
	f.dispatchAs(t, f.key, "u2", true)
	assert.Equal(t, []string{"u1"}, f.assigned(t, "u1", "u2"))
	assert.Equal(t, 0, f.delivery(t, "u1").Generation)

	f.ingestAs(t, f.key, "plain", false)
	f.putDrone(t, domain.Drone{ID: "d2", Location: at(0.05, 0)}) // 5.6 km away, in time
	f.drain(t)
	assert.Equal(t, "d2", f.delivery(t, "u2").DroneID, "the free drone")
	assert.Nil(t, f.delivery(t, "u2").Preempted)
}

// A run that stopped after the plain delivery gave its drone up, before
// the drone was handed over, is finished by the redelivered message: the
// drone goes to the expedited delivery and the plain one is dispatched
// again; redelivered once more, the message changes nothing.
func TestTakeoverStoppedHalfWayIsFinishedByTheRedelivery(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := ctxFor(t)
	f.putDrone(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	f.dispatchAs(t, f.key, "plain", false)
	now := f.clock.Now()
	require.NoError(t, f.store.Deliveries.Create(ctx, "urgent", &domain.Delivery{ID: "urgent", TrackingID: "t.urgent", OwnerID: f.acct,
		CorrelationID: "c-urgent", Stage: domain.StageCreated, CreatedAt: now, UpdatedAt: now,
		History: []domain.Event{{Stage: domain.StageCreated, At: now}},
		Request: domain.DeliveryRequest{OwnerID: f.acct, PickupLocation: at(0.01, 0), DropoffLocation: at(0.02, 0), PickupTime: now,
			Deadline: now.Add(time.Hour), Expedited: true, ConfirmationRequired: domain.ConfirmationNone,
			PackageInfo: domain.PackageInfo{PackageID: "p-urgent", Size: domain.SizeSmall, Weight: 1}}}))
	// What the stopped run wrote: the reservation, and the plain
	// delivery's new generation.
	_, err := f.store.Deliveries.Update(ctx, "urgent", func(d *domain.Delivery) error {
		return d.ReserveTakeover("d1", domain.AreaOf(at(0, 0)), domain.Preemption{DeliveryID: "plain"}, now)
	})
	require.NoError(t, err)
	_, err = f.store.Deliveries.Update(ctx, "plain", func(d *domain.Delivery) error {
		_, err := d.Preempt(0, "d1", "urgent", now)
		return err
	})
	require.NoError(t, err)

	body, _ := json.Marshal(wire.Envelope{Operation: wire.OpDelivery, DeliveryID: "urgent", CorrelationID: "c-urgent"})
	msg := &ports.Delivered{Message: ports.Message{ID: "urgent:requested", Queue: topology.QueueDeliveryRequests, Body: body}, DeliveryCount: 2}
	out, err := f.h.ScheduleDrone(ctx, msg)
	require.NoError(t, err)
	assert.Equal(t, "urgent", f.drone(t, "d1").CurrentDeliveryID)
	assert.NotNil(t, f.delivery(t, "urgent").DroneAssignedAt)
	redispatch := wire.MessageID("plain", 1, "preempted")
	ids := func(ms []ports.Message) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.ID)
		}
		return out
	}
	assert.Contains(t, ids(out), redispatch, "the plain delivery is dispatched again")

	before := f.snapshot(t, []string{"urgent", "plain"}, []string{"d1"})
	again, err := f.h.ScheduleDrone(ctx, msg)
	require.NoError(t, err)
	assert.Equal(t, before, f.snapshot(t, []string{"urgent", "plain"}, []string{"d1"}), "a redelivery changes nothing")
	assert.Contains(t, ids(again), redispatch, "and sends the plain delivery's dispatch again, which duplicate detection drops")

	require.NoError(t, f.bus.Publish(ctx, out...))
	f.drain(t)
	assert.Equal(t, domain.StageScheduled, f.delivery(t, "urgent").Stage)
	plain := f.delivery(t, "plain")
	assert.Equal(t, domain.StageRescheduled, plain.Stage)
	assert.Nil(t, plain.DroneAssignedAt)
	assert.Equal(t, "urgent", f.drone(t, "d1").CurrentDeliveryID, "its new dispatch does not free the drone it lost")
}

// The drones an expedited delivery may not take (those of other expedited
// deliveries) do not use up its attempts: with the five nearest drones on
// expedited deliveries, it takes the sixth from a plain one.
func TestExpeditedLooksPastDronesItMayNotTake(t *testing.T) {
	t.Parallel()
	var fleet []domain.Drone
	for i := 1; i <= 5; i++ {
		fleet = append(fleet, domain.Drone{ID: fmt.Sprintf("e%d", i), Location: at(0.01+0.001*float64(i), 0)})
	}
	fleet = append(fleet, domain.Drone{ID: "e6", Location: at(0.037, 0)})
	f := newFixture(t, fleet...)
	for i := 1; i <= 5; i++ {
		f.dispatchAs(t, f.key, fmt.Sprintf("exp-%d", i), true)
		require.Equal(t, fmt.Sprintf("e%d", i), f.delivery(t, fmt.Sprintf("exp-%d", i)).DroneID)
	}
	f.dispatchAs(t, f.key, "plain", false)
	require.Equal(t, "e6", f.delivery(t, "plain").DroneID)

	f.clock.Advance(time.Second)
	f.dispatchAs(t, f.key, "exp-7", true)
	urgent := f.delivery(t, "exp-7")
	require.Equal(t, domain.StageScheduled, urgent.Stage)
	assert.Equal(t, "e6", urgent.DroneID)
	assert.Equal(t, "exp-7", f.drone(t, "e6").CurrentDeliveryID)
	assert.Equal(t, "exp-7", f.delivery(t, "plain").PreemptedBy)
	for i := 1; i <= 5; i++ {
		assert.Equal(t, fmt.Sprintf("exp-%d", i), f.drone(t, fmt.Sprintf("e%d", i)).CurrentDeliveryID, "an expedited delivery keeps its drone")
	}
}

// A quote for an expedited request answers with the drone dispatch would
// take from a delivery that has not taken off, as the request itself then
// gets it: the same rule through the same code. A plain request's quote
// still finds no drone, and the quote takes nothing.
func TestAnExpeditedQuoteCountsTheDroneItWouldTake(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	f.dispatchAs(t, f.key, "plain", false)
	require.Equal(t, "d1", f.delivery(t, "plain").DroneID)
	f.clock.Advance(time.Second)

	body := func(id string, expedited bool) []byte {
		b, _ := json.Marshal(map[string]any{"deliveryId": id, "pickupLocation": at(0.01, 0), "dropOffLocation": at(0.02, 0),
			"expedited": expedited, "packageInfo": map[string]any{"size": "Small", "weight": 1}})
		return b
	}
	assert.Nil(t, f.quote(t, body("q-plain", false)).PickupETA, "a plain request waits")
	q := f.quote(t, body("q-urgent", true))
	require.NotNil(t, q.PickupETA, "%+v", q)
	assert.Equal(t, "plain", f.drone(t, "d1").CurrentDeliveryID, "the quote took nothing")

	f.dispatchAs(t, f.key, "urgent", true)
	urgent := f.delivery(t, "urgent")
	require.Equal(t, "d1", urgent.DroneID)
	assert.Equal(t, *q.PickupETA, *urgent.PickupETA, "the quoted time is the one it gets")
}

// An expedited delivery the operator reassigned does not take back, from
// another delivery, the drone it was moved off: the preemption rule gave
// it that drone again, breaking the reassign and costing the other
// delivery its drone.
func TestExpeditedDoesNotTakeBackADroneItWasMovedOff(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0.011, 0)})
	f.dispatchAs(t, f.key, "urgent", true)
	require.Equal(t, "d1", f.delivery(t, "urgent").DroneID)
	f.act(t, "DeliveryAction", "urgent", map[string]any{"action": "reassign", "reason": "wrong drone"})
	f.drain(t)
	require.Empty(t, f.delivery(t, "urgent").DroneID)
	f.dispatchAs(t, f.key, "plain", false)
	require.Equal(t, "d1", f.delivery(t, "plain").DroneID)

	f.clock.Advance(time.Minute)
	f.releaseDelayed(t, topology.QueueDeliveryRequests) // urgent's retry
	f.drain(t)
	assert.Empty(t, f.delivery(t, "urgent").DroneID, "not the drone it was moved off")
	assert.Equal(t, "plain", f.drone(t, "d1").CurrentDeliveryID)
	assert.Empty(t, f.delivery(t, "plain").PreemptedBy)
}

// A delivery whose nearest free drones are of an area where its account
// holds its share passes that area's drones over, however many, for a free
// drone of another area around its pickup, where it holds none, instead of
// waiting while that drone is idle.
func TestACappedAreaIsPassedOverForTheNextAreasDrone(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, func(d *handlers.Deps) { d.Config.MaxAccountShare = 0.1 })
	for i := range 10 { // one of the ten is the account's share
		f.putDrone(t, domain.Drone{ID: fmt.Sprintf("a%d", i), Location: at(0.143, 0.0001*float64(i))})
	}
	f.putDrone(t, domain.Drone{ID: "b1", Location: at(0.16, 0)})
	require.NotEqual(t, domain.AreaOf(at(0.143, 0)), domain.AreaOf(at(0.16, 0)))
	for _, id := range []string{"first", "second"} {
		body := mustJSON(map[string]any{"deliveryId": id, "pickupLocation": at(0.145, 0), "dropOffLocation": at(0.12, 0),
			"packageInfo": map[string]any{"size": "Small", "weight": 1}})
		require.Equal(t, http.StatusAccepted, f.ingest(t, body).Status)
		f.drain(t)
	}
	first, second := f.delivery(t, "first"), f.delivery(t, "second")
	require.True(t, strings.HasPrefix(first.DroneID, "a"), "the nearest drones are the first area's: %s", first.DroneID)
	assert.Equal(t, "b1", second.DroneID, "the next area's free drone, not another of the first area's nine")
}

// An expedited request weighs the drones its account holds where they are
// based: an account holding two of an area's drones through pickups in the
// next area does not count as holding none there, so it takes no drone
// from an account that holds one (with the cap off, where only that rule
// stands between them).
func TestAnExpeditedRequestCountsTheDronesItsAccountHoldsFromTheNextArea(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)}, domain.Drone{ID: "d2", Location: at(0, 0.001)},
		domain.Drone{ID: "d3", Location: at(0, 0.002)})
	for _, id := range []string{"across-1", "across-2"} {
		body, _ := json.Marshal(map[string]any{"deliveryId": id, "pickupLocation": at(0.15, 0), "dropOffLocation": at(0.16, 0),
			"packageInfo": map[string]any{"size": "Small", "weight": 1}})
		require.Equal(t, http.StatusAccepted, f.ingest(t, body).Status)
		f.drain(t)
		require.NotEmpty(t, f.delivery(t, id).DroneID)
		f.takeOff(t, id) // flying: its own drones are not to be taken
	}
	_, other := f.signUpOther(t)
	f.dispatchAs(t, other, "theirs", false)
	require.NotEmpty(t, f.delivery(t, "theirs").DroneID)

	f.clock.Advance(time.Second)
	f.dispatchAs(t, f.key, "urgent", true)
	assert.Empty(t, f.delivery(t, "urgent").DroneID, "two of the area's drones against the other account's one: nothing to take")
	assert.Empty(t, f.delivery(t, "theirs").PreemptedBy)
}

// The operator's cap counts drones where they are based, wherever the
// pickups are: an account that holds its share of an area's drones gets
// none more of them for a pickup in the next area, which has no drones of
// its own (and so no cap), and an expedited request there takes no other
// account's drone either; its own it may take (it holds as many after).
func TestPreemptionKeepsTheAccountsCap(t *testing.T) {
	t.Parallel()
	f := halfShare(t, nil)
	f.dispatchAs(t, f.key, "here", false)
	f.takeOff(t, "here") // flying: not to be taken
	require.NotEqual(t, domain.AreaOf(at(0, 0)), domain.AreaOf(at(0.15, 0)))
	across := func(id string, expedited bool) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"deliveryId": id, "pickupLocation": at(0.15, 0), "dropOffLocation": at(0.16, 0),
			"expedited": expedited, "packageInfo": map[string]any{"size": "Small", "weight": 1}})
		require.Equal(t, http.StatusAccepted, f.ingest(t, body).Status)
		f.drain(t)
	}
	across("elsewhere", false)
	assert.Empty(t, f.delivery(t, "elsewhere").DroneID, "half of the area's two drones held already, whatever the pickup's area")
	f.clock.Advance(10 * time.Second) // past the retry the listing reads as a dispatch under way
	kind, why := waitingReasonOf(t, f, "elsewhere")
	assert.Equal(t, domain.WaitShare, kind, why)

	_, other := f.signUpOther(t)
	f.dispatchAs(t, other, "theirs", false)
	require.NotEmpty(t, f.delivery(t, "theirs").DroneID, "the other account's share")
	f.clock.Advance(time.Second)
	across("urgent", true)
	assert.Empty(t, f.delivery(t, "urgent").DroneID, "the account holds as many of the area's drones as the other: nothing to take")
	assert.Empty(t, f.delivery(t, "theirs").PreemptedBy)
}
