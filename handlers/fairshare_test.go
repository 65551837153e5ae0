package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// playRetries queues, as if due, the delayed retries drain kept aside for
// the given deliveries, keeps the others aside, and drains.
func (f *fixture) playRetries(t *testing.T, ids ...string) {
	t.Helper()
	var keep []ports.Message
	for _, m := range f.delayed[topology.QueueDeliveryRequests] {
		var env wire.Envelope
		require.NoError(t, json.Unmarshal(m.Body, &env))
		if !contains(ids, env.DeliveryID) {
			keep = append(keep, m)
			continue
		}
		m.NotBefore = time.Time{}
		require.NoError(t, f.bus.Publish(ctxFor(t), m))
	}
	f.delayed[topology.QueueDeliveryRequests] = keep
	f.drain(t)
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// ingestAs posts a delivery as the account with key.
func (f *fixture) ingestAs(t *testing.T, key, id string, expedited bool) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"deliveryId": id, "pickupLocation": at(0.01, 0), "dropOffLocation": at(0.02, 0),
		"expedited": expedited, "packageInfo": map[string]any{"size": "Small", "weight": 1}})
	resp := f.call("IngestDelivery", key, &functionapp.Request{Method: "POST", Body: body})
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
}

// dispatchAs posts a delivery as the account with key (see ingestAs) and
// runs the chain until its queues are empty.
func (f *fixture) dispatchAs(t *testing.T, key, id string, expedited bool) {
	t.Helper()
	f.ingestAs(t, key, id, expedited)
	f.drain(t)
}

// takeOff has a scheduled delivery's drone report where it stands: it
// is flying from then on.
func (f *fixture) takeOff(t *testing.T, id string) {
	t.Helper()
	d := f.delivery(t, id)
	f.clock.Advance(time.Second)
	f.report(t, d.DroneID, f.drone(t, d.DroneID).Location, 95, f.clock.Now())
	require.Equal(t, domain.DroneInFlight, f.drone(t, d.DroneID).Status)
}

// complete flies a scheduled delivery's drone to the pickup and dropoff.
func (f *fixture) complete(t *testing.T, id string) {
	t.Helper()
	d := f.delivery(t, id)
	f.clock.Advance(time.Minute)
	f.report(t, d.DroneID, d.Request.PickupLocation, 90, f.clock.Now())
	f.clock.Advance(time.Minute)
	f.report(t, d.DroneID, d.Request.DropoffLocation, 85, f.clock.Now())
	require.Equal(t, domain.StageCompleted, f.delivery(t, id).Stage)
}

// completeElsewhere completes id as complete does, its reports handled by
// another instance of the service, over the same store and queues, whose
// board of waiting deliveries is its own.
func (f *fixture) completeElsewhere(t *testing.T, id string) {
	t.Helper()
	other := handlers.New(handlers.Deps{Store: f.store, Bus: f.bus, Clock: f.clock, IDs: platform.IDs{},
		Log: slog.New(slog.DiscardHandler), Config: handlers.Config{OperatorKey: operatorKey}})
	d := f.delivery(t, id)
	f.postReports(t, d.DroneID, d.Request.PickupLocation, d.Request.DropoffLocation)
	require.Empty(t, f.runTelemetry(t, other), "the other instance knows of nobody waiting")
	require.Equal(t, domain.StageCompleted, f.delivery(t, id).Stage)
}

// postReports posts a report of droneID at each location, a minute apart,
// leaving them queued.
func (f *fixture) postReports(t *testing.T, droneID string, locs ...domain.Location) {
	t.Helper()
	for _, loc := range locs {
		f.clock.Advance(time.Minute)
		body, _ := json.Marshal(map[string]any{"location": loc, "batteryPercent": 90, "timestamp": f.clock.Now().Format(time.RFC3339Nano)})
		resp := f.fleet("PostTelemetry", &functionapp.Request{Method: "POST", Params: map[string]string{"id": droneID}, Body: body})
		require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	}
}

// runTelemetry runs the queued reports through h's tracking step and
// returns the wakes it sent, unrun.
func (f *fixture) runTelemetry(t *testing.T, h *handlers.Handlers) []*ports.Delivered {
	t.Helper()
	var wakes []*ports.Delivered
	for _, m := range f.receive(t, topology.QueueDroneTelemetry) {
		out, err := h.TrackDrone(context.Background(), m)
		require.NoError(t, err)
		wakes = append(wakes, wakesIn(t, out)...)
		require.NoError(t, f.bus.Complete(context.Background(), m))
	}
	return wakes
}

// busyAndWaiting is a fleet of one drone, d1, serving a1, with w1 waiting
// for a drone.
func busyAndWaiting(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t)
	f.putDrone(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	f.dispatchAs(t, f.key, "a1", false)
	require.Len(t, f.assigned(t, "a1"), 1)
	f.clock.Advance(time.Second)
	f.dispatchAs(t, f.key, "w1", false)
	require.Empty(t, f.assigned(t, "w1"), "it waits for a drone")
	return f
}

// twoWaiting is busyAndWaiting with a second delivery, w2, waiting behind
// w1 from a second later.
func twoWaiting(t *testing.T) *fixture {
	t.Helper()
	f := busyAndWaiting(t)
	f.clock.Advance(time.Second)
	f.dispatchAs(t, f.key, "w2", false)
	return f
}

// A drone that comes free (here its delivery completes) wakes the waiting
// delivery that ranks first at once, rather than leaving the drone idle
// until that delivery's next retry.
func TestAFreedDroneWakesTheFirstWaitingDelivery(t *testing.T) {
	t.Parallel()
	f := busyAndWaiting(t)
	ctx := context.Background()

	d := f.delivery(t, "a1")
	f.postReports(t, "d1", d.Request.PickupLocation, d.Request.DropoffLocation)
	wakes := f.runTelemetry(t, f.h)
	require.Len(t, wakes, 1, "the drone's freeing wakes w1")
	_, err := f.h.ScheduleDrone(ctx, wakes[0])
	require.NoError(t, err)
	assert.Equal(t, []string{"w1"}, f.assigned(t, "w1"), "served by the wake, before any retry")
	assert.Equal(t, "w1", f.drone(t, "d1").CurrentDeliveryID)
}

func (f *fixture) assigned(t *testing.T, ids ...string) []string {
	t.Helper()
	var out []string
	for _, id := range ids {
		if f.delivery(t, id).DroneAssignedAt != nil {
			out = append(out, id)
		}
	}
	return out
}

// burstOnTwoDrones is a fixture with two drones, d1 and d2, where the
// fixture's account has requested n deliveries at once (a0, a1, …): two
// hold the drones and the others wait. It returns the key of another
// account, which holds none.
func burstOnTwoDrones(t *testing.T, n int) (f *fixture, burst []string, other string) {
	t.Helper()
	f = newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)}, domain.Drone{ID: "d2", Location: at(0, 0.001)})
	_, other = f.signUpOther(t)
	for i := range n {
		id := fmt.Sprint("a", i)
		burst = append(burst, id)
		f.ingestAs(t, f.key, id, false)
	}
	f.drain(t)
	require.Len(t, f.assigned(t, burst...), 2)
	return f, burst, other
}

// One account's burst holds both drones and keeps waiting; the other
// account's delivery, waiting behind it, gets the first drone that frees,
// although the burst's retries come round first.
func TestFairShareGivesAFreedDroneToTheAccountHoldingFewest(t *testing.T) {
	t.Parallel()
	f, burst, other := burstOnTwoDrones(t, 6)
	f.clock.Advance(time.Second)
	f.dispatchAs(t, other, "b0", false)
	require.Empty(t, f.assigned(t, "b0"))

	f.complete(t, f.assigned(t, burst...)[0])
	// The burst's retries run first and find the drone free, but leave it
	// to b0, whose account holds none.
	f.playRetries(t, burst...)
	assert.Equal(t, []string{"b0"}, f.assigned(t, "b0"))
	assert.Len(t, f.assigned(t, burst...), 2, "one done, one flying: the burst got no third drone")
}

// Expedited deliveries go first; with nobody else waiting an account may
// take every free drone.
func TestExpeditedFirstAndWorkConserving(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	f.dispatchAs(t, f.key, "first", false)
	// Flying, so that the expedited delivery cannot take its drone.
	f.takeOff(t, "first")
	f.ingestAs(t, f.key, "plain", false)
	f.clock.Advance(time.Second)
	f.dispatchAs(t, f.key, "urgent", true)
	require.Empty(t, f.assigned(t, "plain", "urgent"))
	f.complete(t, "first")
	f.playRetries(t, "plain")
	assert.Equal(t, []string{"urgent"}, f.assigned(t, "plain", "urgent"), "the older, plain delivery leaves the drone to the expedited one")

	f.complete(t, "urgent")
	f.playRetries(t, "plain")
	assert.Equal(t, []string{"plain"}, f.assigned(t, "plain"), "alone in the queue, it takes the drone")
}

// halfShare is a fixture, edited by edit when not nil, whose accounts may
// hold at most half of an area's drones, with two drones there: d1 and d2.
func halfShare(t *testing.T, edit func(*handlers.Deps)) *fixture {
	t.Helper()
	f := newFixtureWith(t, func(d *handlers.Deps) {
		if edit != nil {
			edit(d)
		}
		d.Config.MaxAccountShare = 0.5
	})
	f.putDrone(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	f.putDrone(t, domain.Drone{ID: "d2", Location: at(0, 0.001)})
	return f
}

// waitingReasonOf is why the operator's listing of waiting deliveries says
// delivery id waits.
func waitingReasonOf(t *testing.T, f *fixture, id string) (domain.WaitKind, string) {
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
	for _, it := range page.Items {
		if it.ID == id {
			return it.WaitKind, it.WaitReason
		}
	}
	require.Failf(t, "not listed as waiting", "%s: %s", id, resp.Body)
	return "", ""
}

// The operator may cap an account's share of an area's drones.
func TestOperatorCapsAnAccountsShare(t *testing.T) {
	t.Parallel()
	f := halfShare(t, nil)
	f.ingestAs(t, f.key, "x1", false)
	f.dispatchAs(t, f.key, "x2", false)
	assert.Len(t, f.assigned(t, "x1", "x2"), 1, "half of two drones")
	assert.Equal(t, domain.DroneAvailable, f.drone(t, "d2").Status)
}

// The cap is a share of the drones in the area, counted once each: a drone
// whose capabilities change (put again, here, with a larger payload) is
// still one drone, on a fleet that keeps its own summary and on one whose
// summary the handlers keep.
func TestTheCapCountsAChangedDroneOnce(t *testing.T) {
	t.Parallel()
	for name, edit := range summaryKeepers {
		f := halfShare(t, edit)
		f.dispatchAs(t, f.key, "x1", false)
		require.Len(t, f.assigned(t, "x1"), 1, name)
		f.putDrone(t, domain.Drone{ID: "d2", Location: at(0, 0.001), MaxPayloadKg: 8})
		f.dispatchAs(t, f.key, "x2", false)
		assert.Empty(t, f.assigned(t, "x2"), "%s: half of two drones is one", name)
	}
}

// Beyond the limit of deliveries that have not ended, ingest answers 429.
func TestActiveDeliveriesPerAccountAreLimited(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, func(d *handlers.Deps) { d.Config.MaxActiveDeliveries = 2 })
	_, other := f.signUpOther(t)
	f.ingestAs(t, f.key, "l1", false)
	f.ingestAs(t, f.key, "l2", false)
	body := requestBody("l3", at(0.01, 0), at(0.02, 0), "Small", 1)
	resp := f.ingest(t, body)
	require.Equal(t, http.StatusTooManyRequests, resp.Status, string(resp.Body))
	assert.True(t, strings.Contains(string(resp.Body), "limit"))
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	f.ingestAs(t, other, "o1", false)
	require.Equal(t, http.StatusNoContent, f.biz("CancelDelivery", &functionapp.Request{Method: "DELETE", Params: map[string]string{"id": "l1"}}).Status)
	assert.Equal(t, http.StatusAccepted, f.ingest(t, body).Status, "a cancelled delivery frees its place")
}

// Requests sent at once are held to the limit too: each counts the
// account's deliveries only after the one before it has stored its own.
func TestActiveDeliveriesLimitHoldsForRequestsAtOnce(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, func(d *handlers.Deps) { d.Config.MaxActiveDeliveries = 3 })
	const n = 24
	count := atOnce(n, func(i int) int {
		body := requestBody(fmt.Sprintf("burst-%d", i), at(0.01, 0), at(0.02, 0), "Small", 1)
		return f.biz("IngestDelivery", &functionapp.Request{Method: "POST", Body: body}).Status
	})
	assert.Equal(t, map[int]int{http.StatusAccepted: 3, http.StatusTooManyRequests: n - 3}, count)
	var list struct{ Items []json.RawMessage }
	resp := f.list(f.key, url.Values{"limit": {"50"}})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	require.NoError(t, json.Unmarshal(resp.Body, &list))
	assert.Len(t, list.Items, 3, "as many stored as the limit")
}

// retryOf takes the delayed retry of delivery id from those drain kept
// aside, as the queue delivers it once due.
func (f *fixture) retryOf(t *testing.T, id string) *ports.Delivered {
	t.Helper()
	q := f.delayed[topology.QueueDeliveryRequests]
	for i, m := range q {
		var env wire.Envelope
		require.NoError(t, json.Unmarshal(m.Body, &env))
		if env.DeliveryID == id {
			f.delayed[topology.QueueDeliveryRequests] = append(q[:i:i], q[i+1:]...)
			return &ports.Delivered{Message: m, DeliveryCount: 1}
		}
	}
	t.Fatalf("no retry of %s kept aside", id)
	return nil
}

// wakesIn returns the wakes among a step's outputs, as delivered.
func wakesIn(t *testing.T, out []ports.Message) []*ports.Delivered {
	t.Helper()
	var wakes []*ports.Delivered
	for _, m := range out {
		if m.Queue != topology.QueueDeliveryRequests || !m.NotBefore.IsZero() {
			continue
		}
		var env wire.Envelope
		require.NoError(t, json.Unmarshal(m.Body, &env))
		if env.Wake {
			wakes = append(wakes, &ports.Delivered{Message: m, DeliveryCount: 1})
		}
	}
	return wakes
}

// A wake that finds its delivery already served passes the drone left to
// it on to the next waiting delivery at once, rather than leaving it free
// until that delivery's next retry; a repeated hand-on books nothing twice.
func TestAWakeForAServedDeliveryHandsTheDroneOn(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.putDrone(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	f.putDrone(t, domain.Drone{ID: "d2", Location: at(0, 0.001)})
	f.ingestAs(t, f.key, "a1", false)
	f.dispatchAs(t, f.key, "a2", false)
	require.Len(t, f.assigned(t, "a1", "a2"), 2)
	f.clock.Advance(time.Second)
	f.ingestAs(t, f.key, "w1", false)
	f.clock.Advance(time.Second)
	f.dispatchAs(t, f.key, "w2", false)
	require.Empty(t, f.assigned(t, "w1", "w2"), "both wait for a drone")
	// The drones come free in another instance, which has not seen w1 and
	// w2 wait, so nothing there wakes them.
	f.completeElsewhere(t, "a1")
	f.completeElsewhere(t, "a2")

	// w2's retry comes first: it leaves the drone it found to the older
	// w1 and wakes it.
	out, err := f.h.ScheduleDrone(ctx, f.retryOf(t, "w2"))
	require.NoError(t, err)
	wakes := wakesIn(t, out)
	require.Len(t, wakes, 1)
	require.Empty(t, f.assigned(t, "w2"))
	// w1's own retry serves it before the wake arrives.
	_, err = f.h.ScheduleDrone(ctx, f.retryOf(t, "w1"))
	require.NoError(t, err)
	require.Equal(t, []string{"w1"}, f.assigned(t, "w1"))

	// The wake finds w1 served and hands the other drone on to w2.
	out, err = f.h.ScheduleDrone(ctx, wakes[0])
	require.NoError(t, err)
	handed := wakesIn(t, out)
	require.Len(t, handed, 1, "the wake is handed on")
	for range 2 { // delivered twice: the second run finds w2 served
		_, err = f.h.ScheduleDrone(ctx, handed[0])
		require.NoError(t, err)
	}
	assert.Equal(t, []string{"w2"}, f.assigned(t, "w2"))
	assert.NotEqual(t, f.delivery(t, "w1").DroneID, f.delivery(t, "w2").DroneID)
	for _, id := range []string{"w1", "w2"} {
		assert.Equal(t, id, f.drone(t, f.delivery(t, id).DroneID).CurrentDeliveryID)
	}

	// With nobody left waiting, a repeated wake hands nothing on.
	out, err = f.h.ScheduleDrone(ctx, wakes[0])
	require.NoError(t, err)
	assert.Empty(t, wakesIn(t, out))
}

// A cancel that frees a drone wakes the waiting delivery at once.
func TestACancelledDeliveryWakesTheFirstWaitingOne(t *testing.T) {
	t.Parallel()
	f := busyAndWaiting(t)
	ctx := context.Background()

	require.Equal(t, http.StatusNoContent, f.cancel(t, "a1").Status)
	var wakes []*ports.Delivered
	for _, m := range f.receive(t, topology.QueueDeliveryRequests) {
		out, err := f.h.ScheduleDrone(ctx, m)
		require.NoError(t, err)
		wakes = append(wakes, wakesIn(t, out)...)
		require.NoError(t, f.bus.Complete(ctx, m))
	}
	require.Len(t, wakes, 1, "the freed drone wakes w1")
	_, err := f.h.ScheduleDrone(ctx, wakes[0])
	require.NoError(t, err)
	assert.Equal(t, []string{"w1"}, f.assigned(t, "w1"))
	assert.Equal(t, "w1", f.drone(t, "d1").CurrentDeliveryID)
}

// A waiting delivery that cannot take the drone others leave it (here an
// expedited one whose account is at the operator's cap) is woken once: its
// wake finds no drone it may take and goes on to one that can, instead of
// every retry of the others leaving the free drone to it again while the
// drone stays idle.
func TestADeliveryThatCannotTakeADroneDoesNotHoldIt(t *testing.T) {
	t.Parallel()
	f := halfShare(t, nil)
	f.dispatchAs(t, f.key, "a1", false)
	require.Len(t, f.assigned(t, "a1"), 1, "half of two drones: the account is at its cap")
	f.dispatchAs(t, f.key, "urgent", true)
	require.Empty(t, f.assigned(t, "urgent"), "over its account's share, it waits")

	_, other := f.signUpOther(t)
	f.dispatchAs(t, other, "b1", false)
	assert.Equal(t, []string{"b1"}, f.assigned(t, "b1"), "the free drone is not left idle for the urgent delivery")
	assert.Empty(t, f.assigned(t, "urgent"))
	assert.Equal(t, "b1", f.drone(t, f.delivery(t, "b1").DroneID).CurrentDeliveryID)
}

// Two retries that each find a free drone leave them to two different
// waiting deliveries that outrank them, not both to the first: a delivery
// is woken once an attempt, so wakes do not pile onto the first waiting
// delivery while the drones left for it stay idle.
func TestEachFreeDroneWakesADifferentWaitingDelivery(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, id := range []string{"d1", "d2"} {
		f.putDrone(t, domain.Drone{ID: id, Location: at(0, 0), Status: domain.DroneMaintenance})
	}
	for _, id := range []string{"w1", "w2", "x1", "x2"} {
		f.clock.Advance(time.Second)
		f.dispatchAs(t, f.key, id, false)
	}
	require.Empty(t, f.assigned(t, "w1", "w2", "x1", "x2"), "no drone is in service")
	for _, id := range []string{"d1", "d2"} {
		f.putDrone(t, domain.Drone{ID: id, Location: at(0, 0), Status: domain.DroneAvailable})
	}

	// The younger deliveries' retries run first.
	var woken []string
	for _, m := range f.delayed[topology.QueueDeliveryRequests] {
		var env wire.Envelope
		require.NoError(t, json.Unmarshal(m.Body, &env))
		if env.DeliveryID != "x1" && env.DeliveryID != "x2" {
			continue
		}
		m.NotBefore = time.Time{}
		out, err := f.h.ScheduleDrone(context.Background(), &ports.Delivered{Message: m, DeliveryCount: 1})
		require.NoError(t, err)
		for _, w := range wakesIn(t, out) {
			var env wire.Envelope
			require.NoError(t, json.Unmarshal(w.Body, &env))
			woken = append(woken, env.DeliveryID)
		}
	}
	assert.ElementsMatch(t, []string{"w1", "w2"}, woken, "one wake each, for the two that rank first")
}

// At the limit, a retry of a request already accepted is answered as any
// retry is (202), not refused: it adds no delivery.
func TestARetryAtTheActiveLimitIsStillAccepted(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, func(d *handlers.Deps) { d.Config.MaxActiveDeliveries = 1 })
	body := requestBody("r1", at(0.01, 0), at(0.02, 0), "Small", 1)
	require.Equal(t, http.StatusAccepted, f.ingest(t, body).Status)
	assert.Equal(t, http.StatusAccepted, f.ingest(t, body).Status, "the same request again")
	assert.Equal(t, http.StatusTooManyRequests, f.ingest(t, requestBody("r2", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
}

// atOnce makes n calls at the same time and counts the statuses they
// answer.
func atOnce(n int, call func(i int) int) map[int]int {
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { statuses <- call(i) })
	}
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for s := range statuses {
		count[s]++
	}
	return count
}

// stallingBus holds the first message published until released: a queue
// that is slow to answer. Like the fixture's own bus it is no unit of
// work, so ingest stores a delivery and then queues it, as on Service Bus.
type stallingBus struct {
	ports.Publisher
	calls            *atomic.Int32
	stalled, release chan struct{}
}

func (b stallingBus) Publish(ctx context.Context, msgs ...ports.Message) error {
	if b.calls.Add(1) == 1 {
		close(b.stalled)
		<-b.release
	}
	return b.Publisher.Publish(ctx, msgs...)
}

// An account's requests take turns under MAX_ACTIVE_DELIVERIES only until
// each is stored: one whose queueing is slow does not hold the next. The
// turn was held until the request was answered, so the second request
// waited for the first one's queue.
func TestASlowQueueDoesNotHoldTheAccountsOtherRequests(t *testing.T) {
	t.Parallel()
	bus := stallingBus{calls: &atomic.Int32{}, stalled: make(chan struct{}), release: make(chan struct{})}
	f := newFixtureWith(t, func(d *handlers.Deps) {
		d.Config.MaxActiveDeliveries = 3
		bus.Publisher = d.Bus
		d.Bus = bus
	})
	first := make(chan int, 1)
	go func() {
		body := requestBody("slow-1", at(0.01, 0), at(0.02, 0), "Small", 1)
		first <- f.biz("IngestDelivery", &functionapp.Request{Method: "POST", Body: body}).Status
	}()
	<-bus.stalled
	second := make(chan int, 1)
	go func() {
		body := requestBody("slow-2", at(0.01, 0), at(0.02, 0), "Small", 1)
		second <- f.biz("IngestDelivery", &functionapp.Request{Method: "POST", Body: body}).Status
	}()
	select {
	case s := <-second:
		assert.Equal(t, http.StatusAccepted, s, "answered while the first one's queueing stalls")
	case <-first:
		t.Fatal("the first request finished while its queue stalled")
	case <-time.After(patience):
		t.Fatal("the second request waited for the first one's queue")
	}
	close(bus.release)
	assert.Equal(t, http.StatusAccepted, <-first)
}

// A retry that finds a freed drone while the wake sent for it to the
// waiting delivery that ranks first is on its way leaves the drone to that
// delivery: it neither takes the drone nor hands it to the next waiting
// delivery, whose wake would race the first one's for it.
func TestARetryLeavesAFreedDroneToTheDeliveryWokenForIt(t *testing.T) {
	t.Parallel()
	f := twoBusyDrones(t)
	d := f.delivery(t, "a1")
	f.postReports(t, d.DroneID, d.Request.PickupLocation, d.Request.DropoffLocation)
	wakes := f.runTelemetry(t, f.h)
	require.Len(t, wakes, 1, "the freed drone wakes b1, whose account holds none")

	// The burst's retries come round before the wake runs (its account
	// still holds a drone): the younger first, which b1 and a2 both outrank.
	for _, id := range []string{"a3", "a2"} {
		out, err := f.h.ScheduleDrone(context.Background(), f.retryOf(t, id))
		require.NoError(t, err)
		assert.Empty(t, wakesIn(t, out), "%s's retry wakes nobody else for the drone", id)
	}
	assert.Empty(t, f.assigned(t, "a2", "a3"), "the drone is left to b1")

	_, err := f.h.ScheduleDrone(context.Background(), wakes[0])
	require.NoError(t, err)
	assert.Equal(t, []string{"b1"}, f.assigned(t, "b1"))
	assert.Equal(t, "b1", f.drone(t, d.DroneID).CurrentDeliveryID)
}

// cancelAndRun cancels id and runs the cancel through dispatch, returning
// the wakes it sent, unrun.
func (f *fixture) cancelAndRun(t *testing.T, id string) []*ports.Delivered {
	t.Helper()
	require.Equal(t, http.StatusNoContent, f.cancel(t, id).Status)
	return f.runQueued(t)
}

// runQueued runs the messages queued for dispatch, sets aside the delayed
// messages they send, and returns the wakes they sent, unrun.
func (f *fixture) runQueued(t *testing.T) []*ports.Delivered {
	t.Helper()
	var wakes []*ports.Delivered
	for _, m := range f.receive(t, topology.QueueDeliveryRequests) {
		out, err := f.h.ScheduleDrone(context.Background(), m)
		require.NoError(t, err)
		wakes = append(wakes, wakesIn(t, out)...)
		for _, o := range out {
			if !o.NotBefore.IsZero() {
				require.NoError(t, delayAside{f}.Publish(context.Background(), o))
			}
		}
		require.NoError(t, f.bus.Complete(context.Background(), m))
	}
	return wakes
}

// wokenIn names the deliveries wakes are for.
func wokenIn(t *testing.T, wakes []*ports.Delivered) []string {
	t.Helper()
	var ids []string
	for _, m := range wakes {
		var env wire.Envelope
		require.NoError(t, json.Unmarshal(m.Body, &env))
		ids = append(ids, env.DeliveryID)
	}
	return ids
}

// threeBusyDrones is a fleet of d1, d2 and d3, nearest first, held by
// a0, a1 and a2 of the fixture's account, whose later deliveries (waiting
// names them) wait with b1, of another account, behind them.
func threeBusyDrones(t *testing.T, waiting ...string) *fixture {
	t.Helper()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)}, domain.Drone{ID: "d2", Location: at(0, 0.001)},
		domain.Drone{ID: "d3", Location: at(0, 0.003)})
	_, other := f.signUpOther(t)
	for _, id := range append([]string{"a0", "a1", "a2"}, waiting...) {
		f.clock.Advance(time.Second)
		f.dispatchAs(t, f.key, id, false)
	}
	require.Equal(t, "d1", f.delivery(t, "a0").DroneID)
	require.Equal(t, "d2", f.delivery(t, "a1").DroneID)
	require.Empty(t, f.assigned(t, waiting...))
	f.clock.Advance(time.Second)
	f.dispatchAs(t, other, "b1", false)
	return f
}

// A second drone freed while the first is kept for the delivery woken for
// it is kept for the next waiting delivery, which is woken for that one,
// not for the nearer drone kept already: a younger retry takes neither.
func TestEachFreedDroneIsKeptForItsOwnWake(t *testing.T) {
	t.Parallel()
	f := threeBusyDrones(t, "a3", "a4")
	w1 := f.cancelAndRun(t, "a0")
	require.Equal(t, []string{"b1"}, wokenIn(t, w1), "d1 is left to the account holding none")
	w2 := f.cancelAndRun(t, "a1")
	require.Equal(t, []string{"a3"}, wokenIn(t, w2), "d2 to the older of the first account's")

	_, err := f.h.ScheduleDrone(context.Background(), f.retryOf(t, "a4"))
	require.NoError(t, err)
	assert.Empty(t, f.assigned(t, "a4"), "a4 leaves d2 to a3, woken for it")

	for _, w := range append(w2, w1...) {
		_, err = f.h.ScheduleDrone(context.Background(), w)
		require.NoError(t, err)
	}
	assert.Equal(t, []string{"a3", "b1"}, f.assigned(t, "a3", "b1"))
	assert.Equal(t, "d2", f.delivery(t, "a3").DroneID)
	assert.Equal(t, "d1", f.delivery(t, "b1").DroneID)
}

// A drone freed while another is kept for the delivery woken for it wakes
// only a delivery it can serve itself: not one for the kept drone, whose
// run would find it kept and hand on, spending every waiting delivery's
// wake of its attempt on a drone none of them may take.
func TestADroneKeptForOneWakesNoOther(t *testing.T) {
	t.Parallel()
	f := threeBusyDrones(t, "a3", "a4", "a5")
	f.putDrone(t, domain.Drone{ID: "tiny", Location: at(0, 0), MaxPayloadKg: 0.5, Status: domain.DroneMaintenance})
	w1 := f.cancelAndRun(t, "a0")
	require.Equal(t, []string{"b1"}, wokenIn(t, w1), "d1 is kept for b1")

	// tiny, back in service, carries none of the waiting packages.
	f.act(t, "DroneAction", "tiny", map[string]any{"action": "resume", "reason": "inspected"})
	queued, err := f.bus.Browse(context.Background(), topology.QueueDeliveryRequests, 100)
	require.NoError(t, err)
	assert.Empty(t, wokenIn(t, queued), "nobody is woken for d1, kept for b1")

	_, err = f.h.ScheduleDrone(context.Background(), w1[0])
	require.NoError(t, err)
	assert.Equal(t, "d1", f.delivery(t, "b1").DroneID)
	assert.Len(t, f.cancelAndRun(t, "a2"), 1, "d3, freed next, wakes one of a3, a4, a5")
}

// A retry delivered again, whose first run left the drone to a waiting
// delivery and woke it but whose messages were lost, wakes it again
// rather than leave the drone kept for a wake never sent.
func TestARedeliveredRetryWakesAgainForTheDroneItLeft(t *testing.T) {
	t.Parallel()
	f := twoBusyDrones(t)
	f.completeElsewhere(t, "a1") // its drone's freeing wakes nobody here

	ctx := context.Background()
	m := f.retryOf(t, "a3")
	out, err := f.h.ScheduleDrone(ctx, m)
	require.NoError(t, err)
	require.Equal(t, []string{"b1"}, wokenIn(t, wakesIn(t, out)), "a3 leaves the drone to b1")
	// Its messages are lost (the publish failed): the retry comes again.
	m.DeliveryCount = 2
	out, err = f.h.ScheduleDrone(ctx, m)
	require.NoError(t, err)
	again := wakesIn(t, out)
	require.Equal(t, []string{"b1"}, wokenIn(t, again), "the lost wake is sent again")
	_, err = f.h.ScheduleDrone(ctx, again[0])
	require.NoError(t, err)
	assert.Equal(t, []string{"b1"}, f.assigned(t, "b1", "a2", "a3"))
}

// A drone is neither left nor kept for a waiting delivery that avoids it
// (the operator moved it off that drone): here an expedited delivery that
// finds the drone free takes it rather than preempt another's.
func TestNoDroneIsKeptForADeliveryThatAvoidsIt(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "near", Location: at(0.011, 0)}, domain.Drone{ID: "far", Location: at(0.03, 0)},
		domain.Drone{ID: "d3", Location: at(0.04, 0)})
	_, other := f.signUpOther(t)
	f.dispatchAs(t, f.key, "moved", true)
	require.Equal(t, "near", f.delivery(t, "moved").DroneID)
	f.clock.Advance(time.Second)
	f.dispatchAs(t, f.key, "n1", false)
	require.Equal(t, "far", f.delivery(t, "n1").DroneID)
	f.takeOff(t, "n1")
	f.clock.Advance(time.Second)
	f.dispatchAs(t, other, "n2", false)
	require.Equal(t, "d3", f.delivery(t, "n2").DroneID)
	f.act(t, "DeliveryAction", "moved", map[string]any{"action": "reassign", "reason": "rotor check"})
	f.drain(t)
	require.Empty(t, f.delivery(t, "moved").DroneID, "no other drone for it: it waits")

	f.clock.Advance(time.Second)
	f.ingestAs(t, other, "e2", true)
	f.runQueued(t)
	assert.Equal(t, "near", f.delivery(t, "e2").DroneID)
	assert.Empty(t, f.delivery(t, "n2").PreemptedBy, "nobody is preempted while near is free")
}

// twoBusyDrones is a fleet of d1 and d2 held by a0 and a1, with a2 and a3
// waiting behind them and b1, of another account, behind those.
func twoBusyDrones(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)}, domain.Drone{ID: "d2", Location: at(0, 0.001)})
	_, other := f.signUpOther(t)
	for _, id := range []string{"a0", "a1", "a2", "a3"} {
		f.clock.Advance(time.Second)
		f.ingestAs(t, f.key, id, false)
	}
	f.drain(t)
	require.Equal(t, []string{"a0", "a1"}, f.assigned(t, "a0", "a1", "a2", "a3"))
	f.clock.Advance(time.Second)
	f.dispatchAs(t, other, "b1", false)
	require.Empty(t, f.assigned(t, "b1"), "it waits for a drone")
	return f
}

// keptForB1 is twoBusyDrones after a1's cancel freed its drone, which is
// kept for b1's wake, returned unrun.
func keptForB1(t *testing.T) (*fixture, string, *ports.Delivered) {
	t.Helper()
	f := twoBusyDrones(t)
	freed := f.delivery(t, "a1").DroneID
	w := f.cancelAndRun(t, "a1")
	require.Equal(t, []string{"b1"}, wokenIn(t, w), "the freed drone is kept for b1")
	return f, freed, w[0]
}

// A delivery woken for a drone that takes another one hands the drone kept
// for it on: the retries that left it alone went back to waiting.
func TestAWakeThatTakesAnotherDroneHandsTheKeptOneOn(t *testing.T) {
	t.Parallel()
	f, freed, w := keptForB1(t)
	_, err := f.h.ScheduleDrone(context.Background(), f.retryOf(t, "a2"))
	require.NoError(t, err)
	require.Empty(t, f.assigned(t, "a2"), "a2 leaves the kept drone alone")

	// A drone nearer b1's pickup comes into service (a PUT wakes nobody).
	f.putDrone(t, domain.Drone{ID: "d0", Location: at(0.01, 0)})
	out, err := f.h.ScheduleDrone(context.Background(), w)
	require.NoError(t, err)
	require.Equal(t, "d0", f.delivery(t, "b1").DroneID)
	on := wakesIn(t, out)
	require.Equal(t, []string{"a2"}, wokenIn(t, on), "%s, no longer kept, wakes the first waiting delivery", freed)
	_, err = f.h.ScheduleDrone(context.Background(), on[0])
	require.NoError(t, err)
	assert.Equal(t, freed, f.delivery(t, "a2").DroneID)
}

// A cancelled delivery leaves the board at once: the drone kept for its
// wake is free for the others, and an expedited delivery takes it rather
// than preempt another delivery's drone.
func TestACancelledDeliveryKeepsNoDrone(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)}, domain.Drone{ID: "d2", Location: at(0, 0.001)})
	_, other := f.signUpOther(t)
	f.dispatchAs(t, f.key, "p1", false)
	f.dispatchAs(t, f.key, "p2", false)
	f.takeOff(t, "p1")
	f.takeOff(t, "p2")
	f.clock.Advance(time.Second)
	f.dispatchAs(t, other, "u1", true)
	require.Empty(t, f.assigned(t, "u1"), "nothing to take: it waits")
	w := f.cancelAndRun(t, "p1")
	require.Equal(t, []string{"u1"}, wokenIn(t, w), "d1 is kept for u1")
	f.putDrone(t, domain.Drone{ID: "d3", Location: at(0, 0.002)})
	f.clock.Advance(time.Second)
	f.dispatchAs(t, f.key, "p3", false)
	require.Equal(t, "d3", f.delivery(t, "p3").DroneID)

	resp := f.call("CancelDelivery", other, &functionapp.Request{Method: "DELETE", Params: map[string]string{"id": "u1"}})
	require.Equal(t, http.StatusNoContent, resp.Status)
	f.runQueued(t)
	f.clock.Advance(time.Second)
	f.dispatchAs(t, f.key, "e1", true)
	assert.Equal(t, "d1", f.delivery(t, "e1").DroneID, "d1 is free and u1 is cancelled")
	assert.Empty(t, f.delivery(t, "p3").PreemptedBy)
}

// Retries delivered again at once (after an outage of the queue, say)
// while a drone is kept for a wake send that wake again once between them,
// and each goes on to the drones nobody keeps.
func TestRedeliveredRetriesWakeOnceAndTakeTheFreeDrone(t *testing.T) {
	t.Parallel()
	f, freed, _ := keptForB1(t)
	f.putDrone(t, domain.Drone{ID: "far", Location: at(0, 0.01)})
	var woken []string
	for _, id := range []string{"a3", "a2"} {
		m := f.retryOf(t, id)
		m.DeliveryCount = 2
		out, err := f.h.ScheduleDrone(context.Background(), m)
		require.NoError(t, err)
		woken = append(woken, wokenIn(t, wakesIn(t, out))...)
	}
	// a3's run sends b1's wake again, then leaves far to a2, which
	// outranks it; a2's run takes far.
	assert.Equal(t, []string{"b1", "a2"}, woken, "b1's wake, perhaps lost, is sent again once")
	assert.Equal(t, []string{"a2"}, f.assigned(t, "a2", "a3"))
	assert.Equal(t, "far", f.delivery(t, "a2").DroneID)
	assert.Equal(t, domain.DroneAvailable, f.drone(t, freed).Status, "still kept for b1")
}

// A delivery woken by one instance, whose wake ran on another, and woken
// there in turn, gets a wake the queue does not drop as a duplicate of the
// first (each instance counted its wakes from one).
func TestAWakeFromAnotherInstanceIsNoDuplicate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := threeBusyDrones(t, "a3")
	w := f.cancelAndRun(t, "a1")
	require.Equal(t, []string{"b1"}, wokenIn(t, w), "d2 is kept for b1 here")
	// d2 goes to an expedited delivery before the wake runs.
	f.clock.Advance(time.Second)
	_, other := f.signUpOther(t)
	f.dispatchAs(t, other, "e1", true)
	require.Equal(t, "d2", f.delivery(t, "e1").DroneID)

	// The wake runs on another instance: nothing for b1 there, which now
	// waits on that instance's board.
	b := handlers.New(handlers.Deps{Store: f.store, Bus: f.bus, Clock: f.clock, IDs: platform.IDs{},
		Log: slog.New(slog.DiscardHandler), Config: handlers.Config{OperatorKey: operatorKey}})
	require.NoError(t, f.bus.Publish(ctx, w[0].Message))
	for _, m := range f.receive(t, topology.QueueDeliveryRequests) {
		out, err := b.ScheduleDrone(ctx, m)
		require.NoError(t, err)
		require.Empty(t, wakesIn(t, out))
		require.NoError(t, f.bus.Complete(ctx, m))
	}
	// a0's cancel runs there too: d1, freed, wakes b1 again.
	require.Equal(t, http.StatusNoContent, f.cancel(t, "a0").Status)
	for _, m := range f.receive(t, topology.QueueDeliveryRequests) {
		out, err := b.ScheduleDrone(ctx, m)
		require.NoError(t, err)
		require.Equal(t, []string{"b1"}, wokenIn(t, wakesIn(t, out)))
		require.NoError(t, f.bus.Publish(ctx, out...))
		require.NoError(t, f.bus.Complete(ctx, m))
	}
	queued, err := f.bus.Browse(ctx, topology.QueueDeliveryRequests, 100)
	require.NoError(t, err)
	assert.Equal(t, []string{"b1"}, wokenIn(t, queued), "b1's second wake reached the queue")
}

// runChain runs wakes one hop at a time (each hop's wakes only after the
// hop before) and returns who was woken at each hop.
func (f *fixture) runChain(t *testing.T, wakes []*ports.Delivered) [][]string {
	t.Helper()
	var hops [][]string
	for len(wakes) > 0 {
		hops = append(hops, wokenIn(t, wakes))
		var next []*ports.Delivered
		for _, w := range wakes {
			out, err := f.h.ScheduleDrone(context.Background(), w)
			require.NoError(t, err)
			next = append(next, wakesIn(t, out)...)
		}
		wakes = next
		require.Less(t, len(hops), 50, "the chain of wakes ends")
	}
	return hops
}

// reschedule changes delivery id as the business with key.
func (f *fixture) reschedule(t *testing.T, key, id string, change map[string]any) {
	t.Helper()
	resp := f.call("RescheduleDelivery", key, &functionapp.Request{Method: "PATCH", Params: map[string]string{"id": id}, Body: mustJSON(change)})
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
}

// A freed drone is neither left nor woken for a delivery whose account
// holds its cap of the area's drones: it goes at once to the first
// delivery that may take it, not through a wake of each capped one.
func TestAFreedDroneWakesNoDeliveryAtItsAccountsCap(t *testing.T) {
	t.Parallel()
	f := halfShare(t, nil)
	_, other := f.signUpOther(t)
	f.dispatchAs(t, f.key, "a1", true) // expedited: nobody preempts it
	f.clock.Advance(time.Second)
	f.dispatchAs(t, other, "b0", false)
	require.Len(t, f.assigned(t, "a1", "b0"), 2)
	for _, id := range []string{"e1", "e2", "e3"} {
		f.clock.Advance(time.Second)
		f.dispatchAs(t, f.key, id, true)
	}
	f.clock.Advance(time.Second)
	f.dispatchAs(t, other, "b1", false)
	require.Empty(t, f.assigned(t, "e1", "e2", "e3", "b1"), "the first account at its cap, the second's drone busy")

	resp := f.call("CancelDelivery", other, &functionapp.Request{Method: "DELETE", Params: map[string]string{"id": "b0"}})
	require.Equal(t, http.StatusNoContent, resp.Status)
	assert.Equal(t, [][]string{{"b1"}}, f.runChain(t, f.runQueued(t)), "one wake, for the delivery that may take the drone")
	assert.Equal(t, []string{"b1"}, f.assigned(t, "b1"))
}

// Under a pause, a freed drone wakes nobody the pause covers: each such
// wake would be held and hand the drone on to the next, one hop for each
// waiting delivery.
func TestAFreedDroneWakesNoDeliveryAPauseHolds(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	f.dispatchAs(t, f.key, "a0", false)
	for _, id := range []string{"w1", "w2", "w3"} {
		f.clock.Advance(time.Second)
		f.dispatchAs(t, f.key, id, false)
	}
	resp := f.putPause(t, "storm", map[string]any{"reason": "hail", "until": f.clock.Now().Add(time.Hour).Format(time.RFC3339)})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	f.clock.Advance(3 * time.Second) // every instance has read the pause
	assert.Empty(t, f.runChain(t, f.cancelAndRun(t, "a0")))
}

// A reschedule that frees the drone of the delivery's earlier schedule
// (here its pickup moves hours ahead: booked, no drone held) wakes the
// first waiting delivery for it, as a cancel does.
func TestARescheduleThatFreesADroneWakesTheFirstWaiting(t *testing.T) {
	t.Parallel()
	f := busyAndWaiting(t) // d1 serves a1; w1 waits
	pickup := f.clock.Now().Add(3 * time.Hour)
	f.reschedule(t, f.key, "a1", map[string]any{"pickupTime": pickup.Format(time.RFC3339), "deadline": pickup.Add(2 * time.Hour).Format(time.RFC3339)})
	wakes := f.runQueued(t)
	require.Equal(t, domain.DroneAvailable, f.drone(t, "d1").Status, "d1 released")
	require.NotNil(t, f.delivery(t, "a1").DispatchAt, "a1 booked")
	assert.Equal(t, []string{"w1"}, wokenIn(t, wakes))
}

// A waiting delivery rescheduled into another area leaves its old area's
// queue: a drone freed there goes to the delivery behind it.
func TestADeliveryRescheduledElsewhereLeavesItsAreasQueue(t *testing.T) {
	t.Parallel()
	f := twoWaiting(t) // d1 serves a1; w1, then w2, wait
	f.reschedule(t, f.key, "w1", map[string]any{"pickupLocation": at(0.15, 0), "dropOffLocation": at(0.16, 0)})
	f.runQueued(t)
	require.NotEqual(t, domain.AreaOf(at(0.01, 0)), domain.AreaOf(f.delivery(t, "w1").Request.PickupLocation))

	hops := f.runChain(t, f.cancelAndRun(t, "a1"))
	assert.Equal(t, [][]string{{"w2"}}, hops)
	assert.Equal(t, []string{"w2"}, f.assigned(t, "w2"))
}

// rescheduledWhileWoken is a fleet of d1 and d2 held by a0 and a1, with w
// and v waiting behind them; a0's cancel woke w for d1, which an expedited
// delivery of another account took before that wake ran, and w was then
// rescheduled, and waits in its new generation. It returns the wake of w's
// first generation, unrun.
func rescheduledWhileWoken(t *testing.T) (*fixture, *ports.Delivered) {
	t.Helper()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)}, domain.Drone{ID: "d2", Location: at(0, 0.001)})
	_, other := f.signUpOther(t)
	f.dispatchAs(t, f.key, "a0", false)
	f.dispatchAs(t, f.key, "a1", false)
	f.clock.Advance(time.Second)
	f.dispatchAs(t, f.key, "w", false)
	f.clock.Advance(time.Second)
	f.dispatchAs(t, f.key, "v", false)
	stale := f.cancelAndRun(t, "a0")
	require.Equal(t, []string{"w"}, wokenIn(t, stale), "d1 is kept for w")
	f.clock.Advance(time.Second)
	f.dispatchAs(t, other, "e", true) // outranks w: takes d1
	require.Equal(t, "d1", f.delivery(t, "e").DroneID)
	f.reschedule(t, f.key, "w", map[string]any{"deadline": f.clock.Now().Add(3 * time.Hour).Format(time.RFC3339)})
	f.runQueued(t)
	require.Equal(t, 1, f.delivery(t, "w").Generation)
	require.Empty(t, f.assigned(t, "w"), "w waits in its new generation")
	return f, stale[0]
}

// A delivery rescheduled while it waits starts its new generation with no
// wake spent: the next drone freed wakes it, the older, not v.
func TestARescheduledDeliveryMayBeWokenAgain(t *testing.T) {
	t.Parallel()
	f, _ := rescheduledWhileWoken(t)
	assert.Equal(t, []string{"w"}, wokenIn(t, f.cancelAndRun(t, "a1")))
}

// A wake sent before a waiting delivery was rescheduled (its earlier
// generation's) hands its drone on to the first waiting delivery, the
// rescheduled one included: it does not take it off the queue.
func TestAStaleWakeHandsOnToTheRescheduledDeliveryToo(t *testing.T) {
	t.Parallel()
	f, stale := rescheduledWhileWoken(t)
	f.putDrone(t, domain.Drone{ID: "d9", Location: at(0, 0.002)}) // wakes nobody
	assert.Equal(t, [][]string{{"w"}, {"w"}}, f.runChain(t, []*ports.Delivered{stale}), "the stale wake, then w's own")
	assert.Equal(t, []string{"w"}, f.assigned(t, "w", "v"))
}

// Drones kept for wakes on their way are passed over without using up a
// run's tries: with eight kept drones nearer, a retry still takes the free
// one nobody keeps.
func TestKeptDronesDoNotUseUpTheClaimTries(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, other := f.signUpOther(t)
	for i := 1; i <= 8; i++ {
		f.putDrone(t, domain.Drone{ID: fmt.Sprint("d", i), Location: at(0, 0.001*float64(i))})
		f.clock.Advance(time.Second)
		f.dispatchAs(t, f.key, fmt.Sprint("a", i), false)
	}
	for i := 1; i <= 8; i++ {
		f.clock.Advance(time.Second)
		f.dispatchAs(t, other, fmt.Sprint("w", i), false)
	}
	f.clock.Advance(time.Second)
	f.dispatchAs(t, f.key, "x", false)
	var woken []string
	for i := 1; i <= 8; i++ {
		woken = append(woken, wokenIn(t, f.cancelAndRun(t, fmt.Sprint("a", i)))...)
	}
	require.Len(t, woken, 8, "each freed drone kept for a wake of its own")
	f.putDrone(t, domain.Drone{ID: "d9", Location: at(0, 0.02)}) // wakes nobody
	_, err := f.h.ScheduleDrone(context.Background(), f.retryOf(t, "x"))
	require.NoError(t, err)
	assert.Equal(t, "d9", f.delivery(t, "x").DroneID)
}

// A waiting delivery rescheduled to a pickup hours ahead is booked, and
// leaves the queue of those waiting for a drone: the next drone freed
// goes to the delivery behind it.
func TestABookedDeliveryLeavesTheWaitingQueue(t *testing.T) {
	t.Parallel()
	f := twoWaiting(t) // d1 serves a1; w1, then w2, wait
	pickup := f.clock.Now().Add(3 * time.Hour)
	f.reschedule(t, f.key, "w1", map[string]any{"pickupTime": pickup.Format(time.RFC3339), "deadline": pickup.Add(2 * time.Hour).Format(time.RFC3339)})
	f.runQueued(t)
	require.NotNil(t, f.delivery(t, "w1").DispatchAt, "w1 booked")

	assert.Equal(t, [][]string{{"w2"}}, f.runChain(t, f.cancelAndRun(t, "a1")))
	assert.Equal(t, []string{"w2"}, f.assigned(t, "w2"))
}

// northWaiting is a fleet of d1, serving a1, with north waiting for a
// drone in the next area.
func northWaiting(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	f.dispatchAs(t, f.key, "a1", false)
	f.clock.Advance(time.Second)
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("north", at(0.15, 0), at(0.16, 0), "Small", 1)).Status)
	f.drain(t)
	require.Empty(t, f.assigned(t, "north"), "it waits for a drone")
	require.NotEqual(t, domain.AreaOf(f.drone(t, "d1").Location), domain.AreaOf(at(0.15, 0)))
	return f
}

// A drone freed in one area wakes a delivery waiting in the next one when
// nobody waits in its own: dispatch serves a pickup from any drone in its
// radius, and the delivery would otherwise wait for its next retry.
func TestAFreedDroneWakesADeliveryInTheNextArea(t *testing.T) {
	t.Parallel()
	f := northWaiting(t)

	assert.Equal(t, [][]string{{"north"}}, f.runChain(t, f.cancelAndRun(t, "a1")))
	assert.Equal(t, "d1", f.delivery(t, "north").DroneID)
}

// A delivery whose wake found its drone taken by one that outranks it (an
// expedited delivery that came meanwhile) is woken again for the next
// drone freed, rather than passed over until its own next retry.
func TestADeliveryOutrankedForItsDroneIsWokenForTheNext(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)}, domain.Drone{ID: "d2", Location: at(0, 0.001)})
	_, other := f.signUpOther(t)
	_, third := f.signUp(t, `{"name":"Northwind","contactEmail":"ops@northwind.example"}`)
	f.dispatchAs(t, f.key, "a0", false)
	f.dispatchAs(t, f.key, "a1", false)
	f.clock.Advance(time.Second)
	f.dispatchAs(t, other, "w", false)
	w := f.cancelAndRun(t, "a0")
	require.Equal(t, []string{"w"}, wokenIn(t, w), "d1 is kept for w")
	f.clock.Advance(time.Second)
	f.dispatchAs(t, third, "x", true) // expedited: outranks w, takes d1
	require.Equal(t, "d1", f.delivery(t, "x").DroneID)
	_, err := f.h.ScheduleDrone(context.Background(), w[0])
	require.NoError(t, err)
	require.Empty(t, f.assigned(t, "w"))

	assert.Equal(t, [][]string{{"w"}}, f.runChain(t, f.cancelAndRun(t, "a1")), "d2 wakes w again")
	assert.Equal(t, "d2", f.delivery(t, "w").DroneID)
}

// A delivery woken for a drone and then rescheduled to a pickup hours
// ahead in another area hands the drone on around the drone, not around
// its new pickup.
func TestADeliveryBookedElsewhereHandsItsDroneOnWhereTheDroneIs(t *testing.T) {
	t.Parallel()
	f := twoWaiting(t) // d1 serves a1; w1, then w2, wait
	stale := f.cancelAndRun(t, "a1")
	require.Equal(t, []string{"w1"}, wokenIn(t, stale))
	pickup := f.clock.Now().Add(3 * time.Hour)
	f.reschedule(t, f.key, "w1", map[string]any{"pickupLocation": at(0.15, 0), "dropOffLocation": at(0.16, 0),
		"pickupTime": pickup.Format(time.RFC3339), "deadline": pickup.Add(2 * time.Hour).Format(time.RFC3339)})
	on := f.runQueued(t)
	require.NotNil(t, f.delivery(t, "w1").DispatchAt, "w1 booked")
	f.runChain(t, append(on, stale...))
	assert.Equal(t, []string{"w2"}, f.assigned(t, "w2"))
}

// A delivery whose pickup is beyond the dispatch radius from a free drone
// is not left that drone: its run would not take it, and the two would
// pass the drone back and forth. (A drone based near that pickup, in
// maintenance, makes the delivery one the fleet could serve.)
func TestNoDroneIsLeftToADeliveryBeyondTheRadius(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, func(d *handlers.Deps) { d.Config.DispatchRadiusKm = 3 })
	f.putDrone(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	f.putDrone(t, domain.Drone{ID: "d2", Location: at(0.045, 0), Status: domain.DroneMaintenance})
	f.dispatchAs(t, f.key, "a1", false)
	f.clock.Advance(time.Second)
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("far", at(0.04, 0), at(0.05, 0), "Small", 1)).Status)
	f.drain(t)
	f.clock.Advance(time.Second)
	f.dispatchAs(t, f.key, "x", false)
	hops := f.runChain(t, f.cancelAndRun(t, "a1"))
	assert.LessOrEqual(t, len(hops), 1, "%v", hops)
	assert.Equal(t, []string{"x"}, f.assigned(t, "x", "far"))
}

// A drone woken for a delivery of a neighbouring area is kept for it in
// its own area too: a delivery there that came since does not take it.
func TestADroneWokenForTheNextAreaIsKeptForIt(t *testing.T) {
	t.Parallel()
	f := northWaiting(t)
	w := f.cancelAndRun(t, "a1")
	require.Equal(t, []string{"north"}, wokenIn(t, w))
	f.clock.Advance(time.Second)
	f.dispatchAs(t, f.key, "late", false)
	f.runChain(t, w)
	assert.Empty(t, f.assigned(t, "late"))
	assert.Equal(t, "d1", f.delivery(t, "north").DroneID)
}

// A delivery of a neighbouring area woken for a drone, cancelled before
// its wake ran, hands the drone on around the drone: to a delivery of
// another area next to it.
func TestANeighboursWakeHandsOnAroundTheDrone(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	f.dispatchAs(t, f.key, "a1", false)
	f.clock.Advance(time.Second)
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("south", at(-0.15, 0), at(-0.16, 0), "Small", 1)).Status)
	f.clock.Advance(time.Second)
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("north", at(0.15, 0), at(0.16, 0), "Small", 1)).Status)
	f.drain(t)
	w := f.cancelAndRun(t, "a1")
	require.Len(t, w, 1)
	first := wokenIn(t, w)[0]
	second := map[string]string{"south": "north", "north": "south"}[first]
	f.runChain(t, append(f.cancelAndRun(t, first), w...))
	assert.Equal(t, "d1", f.delivery(t, second).DroneID)
}

// A reschedule that frees a drone where nobody waits wakes the first
// waiting delivery of the areas around it, as any freed drone does.
func TestADroneFreedByARescheduleWakesAroundIt(t *testing.T) {
	t.Parallel()
	f := northWaiting(t)
	pickup := f.clock.Now().Add(3 * time.Hour)
	f.reschedule(t, f.key, "a1", map[string]any{"pickupTime": pickup.Format(time.RFC3339), "deadline": pickup.Add(2 * time.Hour).Format(time.RFC3339)})
	assert.Equal(t, []string{"north"}, wokenIn(t, f.runQueued(t)))
}

// An account's booked pickups hold no drone, however many there are: its
// drones are counted through all of its deliveries, not the newest page of
// each stage, so a large account with many bookings does not count as
// holding none and jump ahead of a smaller one.
func TestManyBookingsDoNotHideTheDronesAnAccountHolds(t *testing.T) {
	t.Parallel()
	f, burst, other := burstOnTwoDrones(t, 4)
	// More bookings than a page, newer than the deliveries holding drones
	// and in the same stage (Scheduled, no drone yet).
	pickup := f.clock.Now().Add(24 * time.Hour).Format(time.RFC3339)
	for i := range 230 {
		f.clock.Advance(time.Millisecond)
		body, _ := json.Marshal(map[string]any{"deliveryId": fmt.Sprint("booked-", i), "pickupLocation": at(0.01, 0), "dropOffLocation": at(0.02, 0),
			"pickupTime": pickup, "packageInfo": map[string]any{"size": "Small", "weight": 1}})
		resp := f.call("IngestDelivery", f.key, &functionapp.Request{Method: "POST", Body: body})
		require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	}
	f.drain(t)
	require.Equal(t, domain.StageScheduled, f.delivery(t, "booked-229").Stage)
	require.Nil(t, f.delivery(t, "booked-229").DroneAssignedAt)
	f.clock.Advance(time.Second)
	f.dispatchAs(t, other, "b0", false)
	require.Empty(t, f.assigned(t, "b0"))

	f.complete(t, f.assigned(t, burst...)[0])
	f.playRetries(t, burst...)
	assert.Equal(t, []string{"b0"}, f.assigned(t, "b0"), "the account holding none gets the freed drone")
	assert.Len(t, f.assigned(t, burst...), 2, "one done, one flying: the burst got no third drone")
}
