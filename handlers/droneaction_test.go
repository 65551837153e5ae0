package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
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

// crashingFleet fails the next write of one drone when armed, as a process
// that stopped between a drone action's two writes would leave it.
type crashingFleet struct {
	ports.Fleet
	droneID string
	armed   *atomic.Bool
}

func (c crashingFleet) Update(ctx context.Context, id string, fn func(*domain.Drone) error) (*domain.Drone, error) {
	if id == c.droneID && c.armed.CompareAndSwap(true, false) {
		return nil, errors.New("the process stopped here")
	}
	return c.Fleet.Update(ctx, id, fn)
}

// onNear is a fixture with two drones, near and far, and delivery id
// given to near, the nearer.
func onNear(t *testing.T, id string) *fixture {
	t.Helper()
	f := newFixture(t, domain.Drone{ID: "near", Location: at(0.011, 0)}, domain.Drone{ID: "far", Location: at(0.03, 0)})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody(id, at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
	f.drain(t)
	require.Equal(t, "near", f.delivery(t, id).DroneID)
	return f
}

// A ground that stops after the delivery was handed on and before the
// drone was written is finished by the message it queued first: the drone
// ends grounded, not back in service, even though the delivery's new
// dispatch released it in between; the delivery goes to the other drone,
// audited once; the message delivered again changes nothing.
func TestGroundStoppedHalfwayIsFinished(t *testing.T) {
	t.Parallel()
	armed := &atomic.Bool{}
	f := newFixtureWith(t, func(d *handlers.Deps) {
		d.Store.Fleet = crashingFleet{Fleet: d.Store.Fleet, droneID: "near", armed: armed}
	})
	f.putDrone(t, domain.Drone{ID: "near", Location: at(0.011, 0)})
	f.putDrone(t, domain.Drone{ID: "far", Location: at(0.03, 0)})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("d", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
	f.drain(t)
	require.Equal(t, "near", f.delivery(t, "d").DroneID)

	armed.Store(true)
	resp := f.action(t, "DroneAction", "near", map[string]any{"action": "ground", "reason": "bird strike"})
	require.NotEqual(t, http.StatusAccepted, resp.Status, "the call stopped halfway")
	require.Equal(t, domain.StageRescheduled, f.delivery(t, "d").Stage, "the delivery was handed on")
	require.Equal(t, "d", f.drone(t, "near").CurrentDeliveryID, "the drone was not written")

	finish := f.receive(t, topology.QueueDroneTelemetry)
	require.Len(t, finish, 1, "the action's own message is queued")
	body := finish[0].Body
	require.NoError(t, f.bus.Abandon(context.Background(), finish[0]))
	f.drain(t)
	check := func(when string) {
		d := f.delivery(t, "d")
		assert.Equal(t, domain.StageScheduled, d.Stage, when)
		assert.Equal(t, "far", d.DroneID, when)
		near := f.drone(t, "near")
		assert.Equal(t, domain.DroneMaintenance, near.Status, when)
		assert.Equal(t, "bird strike", near.StatusReason, when)
		assert.Empty(t, near.CurrentDeliveryID, when)
		n := 0
		for _, e := range d.History {
			if e.Kind == domain.EventOperator {
				n++
			}
		}
		assert.Equal(t, 1, n, "%s: audited once", when)
	}
	check("after the queued message")

	require.NoError(t, f.bus.Publish(context.Background(), ports.Message{ID: "again", Queue: topology.QueueDroneTelemetry,
		Body: body, Operation: finish[0].Operation}))
	f.drain(t)
	check("after the message again")
}

// recall recalls drone id for the end of a shift, as the operator does,
// and returns the drone the 202 shows.
func (f *fixture) recall(t *testing.T, id string) *domain.Drone {
	t.Helper()
	resp := f.action(t, "DroneAction", id, map[string]any{"action": "recall", "reason": "end of shift"})
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	var v domain.Drone
	require.NoError(t, json.Unmarshal(resp.Body, &v))
	return &v
}

// A drone recalled where it is parked, at its home base, has arrived: it
// sends no report to land it, so the recall lands it. It stays Available
// and dispatch still gives it work; a grounded one stays in Maintenance;
// a low one goes on charge, its charge check scheduled.
func TestRecallAtHomeLandsAtOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t,
		domain.Drone{ID: "parked", Location: at(0.011, 0)},
		domain.Drone{ID: "grounded", Location: at(0.05, 0)},
		domain.Drone{ID: "low", Location: at(0.08, 0), BatteryPercent: 10})

	for range 2 {
		v := f.recall(t, "parked")
		assert.Equal(t, domain.DroneAvailable, v.Status)
		assert.False(t, v.Recalled)
	}
	parked := f.drone(t, "parked")
	assert.Equal(t, domain.DroneAvailable, parked.Status)
	assert.False(t, parked.Recalled)

	f.act(t, "DroneAction", "grounded", map[string]any{"action": "ground", "reason": "rotor check"})
	for range 2 {
		assert.Equal(t, domain.DroneMaintenance, f.recall(t, "grounded").Status)
	}
	grounded := f.drone(t, "grounded")
	assert.Equal(t, domain.DroneMaintenance, grounded.Status, "a grounded drone recalled home stays Maintenance")
	assert.True(t, grounded.Grounded)
	assert.False(t, grounded.Recalled)
	assert.Equal(t, "end of shift", grounded.StatusReason)

	assert.Equal(t, domain.DroneCharging, f.recall(t, "low").Status)
	checks := f.delayed[topology.QueueDroneTelemetry]
	require.Len(t, checks, 1, "the charge check")
	assert.Equal(t, string(wire.OpChargeCheck), checks[0].Operation)

	d := f.scheduled(t, "next", at(0.01, 0), at(0.02, 0))
	assert.Equal(t, "parked", d.DroneID, "the parked drone is dispatched")
}

// A drone recalled at its home base while it serves a delivery hands that
// delivery on as any recall does (audited once, the customer told) and
// lands at once. The action's queued message, run after dispatch gave the
// drone another delivery there, leaves it that one: recalled at home it
// would only land for dispatch again.
func TestRecallAtHomeHandsDeliveryOn(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "home", Location: at(0.011, 0)}, domain.Drone{ID: "far", Location: at(0.03, 0)})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("d", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
	f.drain(t)
	require.Equal(t, "home", f.delivery(t, "d").DroneID)

	v := f.recall(t, "home")
	assert.Equal(t, domain.DroneAvailable, v.Status, "landed at once")
	assert.False(t, v.Recalled)
	assert.Empty(t, v.CurrentDeliveryID)

	// The action's own message is held back until the end.
	held := f.receive(t, topology.QueueDroneTelemetry)
	require.Len(t, held, 1, "the action's own message")
	require.NoError(t, f.bus.Complete(context.Background(), held[0]))
	f.drain(t)
	d := f.delivery(t, "d")
	assert.Equal(t, domain.StageScheduled, d.Stage)
	assert.Equal(t, "far", d.DroneID)
	var audits []domain.Event
	for _, e := range d.History {
		if e.Kind == domain.EventOperator {
			audits = append(audits, e)
		}
	}
	require.Len(t, audits, 1, "audited once")
	assert.Equal(t, "recall: end of shift", audits[0].Note)
	assert.Equal(t, "operator", audits[0].By)
	require.NoError(t, domain.LegalHistory(d.History))
	var kinds []string
	for _, n := range d.Notifications {
		kinds = append(kinds, n.Kind)
	}
	assert.Contains(t, kinds, domain.NotifyReassigned)

	e := f.scheduled(t, "e", at(0.011, 0), at(0.02, 0))
	require.Equal(t, "home", e.DroneID)
	require.NoError(t, f.bus.Publish(context.Background(), ports.Message{ID: "late", Queue: topology.QueueDroneTelemetry,
		Body: held[0].Body, Operation: held[0].Operation}))
	f.drain(t)
	e = f.delivery(t, "e")
	assert.Equal(t, domain.StageScheduled, e.Stage)
	assert.Equal(t, "home", e.DroneID)
	for _, ev := range e.History {
		assert.NotEqual(t, domain.EventOperator, ev.Kind, "e was not handed on")
	}
	assert.Equal(t, "e", f.drone(t, "home").CurrentDeliveryID)
}

// A delivery handed on from a drone the operator grounded may have that
// drone again once the operator resumes it, when no other drone serves it:
// here it is the only drone able to carry the package. It waited for
// another drone until its deadline.
func TestAHandedOnDeliveryMayHaveItsResumedDroneBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.putDrone(t, domain.Drone{ID: "big", Location: at(0, 0), MaxPayloadKg: 20, MaxPackageSize: domain.SizeLarge})
	f.putDrone(t, domain.Drone{ID: "small", Location: at(0.001, 0), MaxPayloadKg: 2, MaxPackageSize: domain.SizeSmall})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("heavy", at(0.01, 0), at(0.02, 0), "Large", 15)).Status)
	f.drain(t)
	require.Equal(t, "big", f.delivery(t, "heavy").DroneID)

	f.act(t, "DroneAction", "big", map[string]any{"action": "ground", "reason": "quick prop check"})
	f.drain(t)
	d := f.delivery(t, "heavy")
	require.Equal(t, domain.StageRescheduled, d.Stage)
	require.Empty(t, d.DroneID, "no other drone carries it")

	f.clock.Advance(time.Minute)
	f.act(t, "DroneAction", "big", map[string]any{"action": "resume", "reason": "props fine"})
	f.drain(t)
	d = f.delivery(t, "heavy")
	assert.Equal(t, "big", d.DroneID, "the resumed drone")
	assert.Equal(t, domain.StageScheduled, d.Stage)

	// A reassign still moves it off the drone for good, even after a
	// ground and a resume of that drone for another reason.
	f.act(t, "DeliveryAction", "heavy", map[string]any{"action": "reassign", "reason": "wrong drone"})
	f.drain(t)
	assert.Empty(t, f.delivery(t, "heavy").DroneID)
	for _, action := range []string{"ground", "resume"} {
		f.act(t, "DroneAction", "big", map[string]any{"action": action, "reason": "firmware update"})
		f.clock.Advance(time.Minute)
	}
	f.drain(t)
	assert.Empty(t, f.delivery(t, "heavy").DroneID, "reassigned away from big")
	assert.Equal(t, domain.DroneAvailable, f.drone(t, "big").Status)
}

// A reassign sent twice without an actionId (a retry, a double click)
// hands the delivery on once: the second finds it handed on from that
// drone already. Each used to hand it on again, with a notice each.
func TestAReassignSentTwiceHandsOnOnce(t *testing.T) {
	t.Parallel()
	f := onNear(t, "twice")
	for range 2 {
		f.act(t, "DeliveryAction", "twice", map[string]any{"action": "reassign", "reason": "rotor check"})
	}
	f.drain(t)
	d := f.delivery(t, "twice")
	assert.Equal(t, "far", d.DroneID)
	assert.Equal(t, 1, d.Generation, "handed on once")
	var kinds []string
	for _, n := range d.Notifications {
		kinds = append(kinds, n.Kind)
	}
	assert.Equal(t, []string{domain.NotifyScheduled, domain.NotifyReassigned, domain.NotifyScheduled}, kinds)
}

// A delivery reassigned twice never goes back to the drone of the first
// reassign: it was avoiding only the drone of the last one.
func TestAReassignedDeliveryNeverHasAnOldDroneAgain(t *testing.T) {
	t.Parallel()
	f := onNear(t, "moved")
	for _, want := range []string{"far", ""} {
		f.act(t, "DeliveryAction", "moved", map[string]any{"action": "reassign", "reason": "not that one"})
		f.drain(t)
		assert.Equal(t, want, f.delivery(t, "moved").DroneID)
	}
	assert.Equal(t, []string{"near", "far"}, f.delivery(t, "moved").ReassignedFrom)
	assert.True(t, f.drone(t, "near").Dispatchable(), "near stays free")
	// The operator sees which drones it is kept from.
	resp := f.fleet("GetDelivery", &functionapp.Request{Method: http.MethodGet, Params: map[string]string{"id": "moved"}})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var view struct {
		ReassignedFrom []string `json:"reassignedFrom"`
	}
	require.NoError(t, json.Unmarshal(resp.Body, &view))
	assert.Equal(t, []string{"near", "far"}, view.ReassignedFrom)
	// The waiting list says why it waits while both drones are free, not
	// only that no drone is available.
	f.clock.Advance(time.Minute) // past the moments of a fresh dispatch
	kind, why := waitingReasonOf(t, f, "moved")
	assert.Equal(t, domain.WaitNoDrone, kind)
	assert.Equal(t, "no drone available: free drone(s) nearby could fly it but it was reassigned away from them (near, far), and is never given one of those again", why)
}

// movedOffBoth is onNear's delivery "moved" reassigned away from both
// drones, and waiting.
func movedOffBoth(t *testing.T) *fixture {
	t.Helper()
	f := onNear(t, "moved")
	for range 2 {
		f.act(t, "DeliveryAction", "moved", map[string]any{"action": "reassign", "reason": "not that one"})
		f.drain(t)
	}
	require.Equal(t, []string{"near", "far"}, f.delivery(t, "moved").ReassignedFrom)
	return f
}

// The waiting list's reason for a delivery reassigned away from every
// free drone names only what keeps it waiting: neither the charge of
// drones it is never given, nor those drones once another could fly it.
func TestAReassignedDeliverysWaitingReasonCountsOnlyDronesItMayHave(t *testing.T) {
	t.Parallel()
	f := movedOffBoth(t)
	// Both too low to fly it now, and able to once charged.
	f.report(t, "near", at(0.011, 0), 12, t0.Add(time.Minute))
	f.report(t, "far", at(0.03, 0), 12, t0.Add(time.Minute))
	f.clock.Advance(time.Minute) // past the moments of a fresh dispatch
	kind, why := waitingReasonOf(t, f, "moved")
	assert.Equal(t, domain.WaitNoDrone, kind)
	assert.Equal(t, domain.NoDroneReason, why, "charging either would not serve it")

	// Charged, they could fly it, but it is never given them.
	f.report(t, "near", at(0.011, 0), 100, f.clock.Now())
	f.report(t, "far", at(0.03, 0), 100, f.clock.Now())
	_, why = waitingReasonOf(t, f, "moved")
	assert.Contains(t, why, "reassigned away from them (near, far)")

	// Another free drone that could fly it: it waits only for its next try.
	f.putDrone(t, domain.Drone{ID: "third", Location: at(0.012, 0)})
	_, why = waitingReasonOf(t, f, "moved")
	assert.Equal(t, domain.NoDroneReason, why)

	// That one too low to fly it: charging it is what would serve it.
	f.report(t, "third", at(0.012, 0), 12, f.clock.Now())
	_, why = waitingReasonOf(t, f, "moved")
	assert.Equal(t, "no drone available: 1 free drone(s) nearby could fly it charged, none with the charge now", why)
}

// The "reassigned away" reason looks as far as dispatch does: a free drone
// it may have beyond the nearest twenty, past drones too small to carry
// it, is one its next try takes, so it is not said to wait for the drones
// it was moved off.
func TestAReassignedDeliverysWaitingReasonLooksAsFarAsDispatch(t *testing.T) {
	t.Parallel()
	f := movedOffBoth(t)
	for i := range 18 {
		f.putDrone(t, domain.Drone{ID: "small-" + strconv.Itoa(i), Location: at(0.012+0.0005*float64(i), 0), MaxPayloadKg: 0.5})
	}
	f.putDrone(t, domain.Drone{ID: "able", Location: at(0.04, 0)})
	f.clock.Advance(time.Minute) // past the moments of a fresh dispatch
	_, why := waitingReasonOf(t, f, "moved")
	assert.Equal(t, domain.NoDroneReason, why, "a free drone it may have can fly it")
	f.releaseDelayed(t, topology.QueueDeliveryRequests) // its next try
	f.drain(t)
	assert.Equal(t, "able", f.delivery(t, "moved").DroneID)
}

// A drone grounded with the package aboard goes home with it and stays
// grounded there; resumed on the way, it still lands at home before it
// serves anything. Grounded where it was, a resume put it back in service
// there, the package still aboard.
func TestAGroundWithThePackageAboardBringsTheDroneHome(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.headedToDropoff(t, "held", "None")
	f.report(t, "drone-held", at(0.003, 0), 85, t0.Add(2*time.Minute)) // on its way, off its base
	f.act(t, "DroneAction", "drone-held", map[string]any{"action": "ground", "reason": "motor fault"})
	f.drain(t)
	d := f.delivery(t, "held")
	require.Equal(t, domain.StageFailed, d.Stage)
	require.Equal(t, domain.OutcomeReturnedToSender, d.Outcome)
	dr := f.drone(t, "drone-held")
	assert.True(t, dr.Grounded)
	assert.True(t, dr.Recalled, "flying home with the package")
	assert.Equal(t, domain.DroneInFlight, dr.Status)

	f.act(t, "DroneAction", "drone-held", map[string]any{"action": "resume", "reason": "motor fine"})
	assert.False(t, f.drone(t, "drone-held").Dispatchable(), "not in service before it is home")
	f.report(t, "drone-held", at(0, 0), 80, t0.Add(4*time.Minute))
	dr = f.drone(t, "drone-held")
	assert.Equal(t, domain.DroneAvailable, dr.Status, "home")
	assert.False(t, dr.Recalled)
}

// failingOnce fails its next publish when armed: a queue that refused one
// call's follow-up.
type failingOnce struct {
	ports.Publisher
	armed *atomic.Bool
}

func (b failingOnce) Publish(ctx context.Context, msgs ...ports.Message) error {
	if b.armed.CompareAndSwap(true, false) {
		return errors.New("the queue refused it")
	}
	return b.Publisher.Publish(ctx, msgs...)
}

// A reassign whose follow-up could not be queued (503, "send it again")
// and is sent again changes nothing more, and queues its notice with the
// follow-up: the repeat found the action made and queued no notice, so
// the customer never heard of it.
func TestAReassignSentAgainAfterA503QueuesItsNotice(t *testing.T) {
	t.Parallel()
	armed := &atomic.Bool{}
	f := newFixtureWith(t, func(d *handlers.Deps) { d.Bus = failingOnce{Publisher: d.Bus, armed: armed} })
	f.putDrone(t, domain.Drone{ID: "near", Location: at(0.011, 0)})
	f.putDrone(t, domain.Drone{ID: "far", Location: at(0.03, 0)})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("again", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
	f.drain(t)
	armed.Store(true)
	resp := f.action(t, "DeliveryAction", "again", map[string]any{"action": "reassign", "reason": "rotor check"})
	require.Equal(t, http.StatusServiceUnavailable, resp.Status, string(resp.Body))
	f.act(t, "DeliveryAction", "again", map[string]any{"action": "reassign", "reason": "rotor check"})
	d := f.delivery(t, "again")
	require.Equal(t, 1, d.Generation, "handed on once")
	last := d.Notifications[len(d.Notifications)-1]
	require.Equal(t, domain.NotifyReassigned, last.Kind)
	queued := f.queuedIDs(t, topology.QueueNotifications)
	assert.Contains(t, queued, last.ID, "the reassigned notice is queued")
}

// queuedIDs receives what queue q holds and returns the messages' ids.
func (f *fixture) queuedIDs(t *testing.T, q string) []string {
	t.Helper()
	var ids []string
	for _, m := range f.receive(t, q) {
		ids = append(ids, m.ID)
	}
	return ids
}

// A cancel whose follow-up the queue refused (503, "send it again")
// releases the drone at once all the same: a client that never sends the
// DELETE again must not leave a drone held by a delivery that has ended
// (the cancel message that would release it was never queued). The
// repeat queues the cancel and its notice.
func TestACancelTheQueueRefusedReleasesItsDrone(t *testing.T) {
	t.Parallel()
	armed := &atomic.Bool{}
	f := newFixtureWith(t, func(d *handlers.Deps) { d.Bus = failingOnce{Publisher: d.Bus, armed: armed} })
	f.putDrone(t, domain.Drone{ID: "near", Location: at(0.011, 0)})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("dropped", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
	f.drain(t)
	require.Equal(t, "near", f.delivery(t, "dropped").DroneID)

	armed.Store(true)
	resp := f.cancel(t, "dropped")
	require.Equal(t, http.StatusServiceUnavailable, resp.Status, string(resp.Body))
	assert.Contains(t, problemOf(t, resp).Detail, "send the DELETE again")
	assert.Equal(t, domain.StageCancelled, f.delivery(t, "dropped").Stage)
	f.released(t, "near", "pkg-dropped", "Cancelled") // no queue was drained

	resp = f.cancel(t, "dropped")
	require.Equal(t, http.StatusNoContent, resp.Status, string(resp.Body))
	d := f.delivery(t, "dropped")
	last := d.Notifications[len(d.Notifications)-1]
	require.Equal(t, domain.NotifyCancelled, last.Kind)
	queued := f.queuedIDs(t, topology.QueueNotifications)
	assert.Contains(t, queued, last.ID, "the cancelled notice is queued with the repeat")
}

// The drone a refused cancel releases itself goes on charge when its
// battery is low, with its charge check: a message the chain's table lets
// CancelDelivery send.
func TestACancelTheQueueRefusedChargesALowDroneItReleases(t *testing.T) {
	t.Parallel()
	armed := &atomic.Bool{}
	f := newFixtureWith(t, func(d *handlers.Deps) { d.Bus = failingOnce{Publisher: d.Bus, armed: armed} })
	f.putDrone(t, domain.Drone{ID: "tired", Location: at(0.011, 0), BatteryPercent: 15})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("weary", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
	f.drain(t)
	require.Equal(t, "tired", f.delivery(t, "weary").DroneID)

	armed.Store(true)
	require.Equal(t, http.StatusServiceUnavailable, f.cancel(t, "weary").Status)
	dr := f.drone(t, "tired")
	assert.Empty(t, dr.CurrentDeliveryID)
	assert.Equal(t, domain.DroneCharging, dr.Status)
	require.Len(t, f.delayed[topology.QueueDroneTelemetry], 1, "its charge check")
	assert.Equal(t, "tired", f.delayed[topology.QueueDroneTelemetry][0].CorrelationID)
}

// An actionId names one action: the same action again changes nothing,
// another action under it is refused (409 naming actionId) and changes
// nothing. An abort under a reassign's id used to be answered 202 and not
// done.
func TestAnActionIdNamesOneAction(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.putDrone(t, domain.Drone{ID: "near", Location: at(0.011, 0)})
	f.putDrone(t, domain.Drone{ID: "far", Location: at(0.03, 0)})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("named", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
	f.drain(t)
	f.act(t, "DeliveryAction", "named", map[string]any{"action": "reassign", "reason": "rotor check", "actionId": "op-7"})
	f.drain(t)
	before := f.snapshot(t, []string{"named"}, []string{"near", "far"})

	resp := f.action(t, "DeliveryAction", "named", map[string]any{"action": "reassign", "reason": "rotor check", "actionId": "op-7"})
	assert.Equal(t, http.StatusAccepted, resp.Status, "the same action again: %s", resp.Body)
	resp = f.action(t, "DeliveryAction", "named", map[string]any{"action": "abort", "reason": "sender called", "actionId": "op-7"})
	assert.Equal(t, http.StatusConflict, resp.Status, string(resp.Body))
	assert.Equal(t, "actionId", problemOf(t, resp).Field)
	f.drain(t)
	assert.Equal(t, before, f.snapshot(t, []string{"named"}, []string{"near", "far"}), "neither changed anything")
}

// A reassign of a delivery that has no drone yet is refused, 409: there is
// nothing to hand on, and a 202 told the operator something had happened
// that had not, with nothing in the history and its actionId not kept.
func TestAReassignOfADeliveryWithoutADroneIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0), Status: domain.DroneMaintenance})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("waits", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
	f.drain(t)
	before := f.delivery(t, "waits")
	require.Empty(t, before.DroneID)

	resp := f.action(t, "DeliveryAction", "waits", map[string]any{"action": "reassign", "reason": "wrong drone", "actionId": "op-1"})
	require.Equal(t, http.StatusConflict, resp.Status, string(resp.Body))
	assert.Contains(t, problemOf(t, resp).Detail, "no drone to reassign")
	after := f.delivery(t, "waits")
	assert.Equal(t, before.History, after.History, "nothing recorded")
	assert.Equal(t, before.Generation, after.Generation)

	// The refused reassign left its actionId free for another action.
	f.act(t, "DeliveryAction", "waits", map[string]any{"action": "abort", "reason": "sender called", "actionId": "op-1"})
	assert.Equal(t, domain.StageFailed, f.delivery(t, "waits").Stage)
}

// A reassign sent again without an actionId, after dispatch let the
// drone go and found no other, is the same action: 202 and no change,
// not the 409 of a delivery that never had a drone.
func TestAReassignSentAgainWhileNoOtherDroneIsFreeChangesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "only", Location: at(0, 0)})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("moved", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
	f.drain(t)
	require.Equal(t, "only", f.delivery(t, "moved").DroneID)
	reassign := map[string]any{"action": "reassign", "reason": "not that one"}
	f.act(t, "DeliveryAction", "moved", reassign)
	f.drain(t)
	before := f.delivery(t, "moved")
	require.Empty(t, before.DroneID, "no other drone to take it")

	resp := f.action(t, "DeliveryAction", "moved", reassign)
	assert.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	assert.Equal(t, before.History, f.delivery(t, "moved").History, "nothing recorded again")
}

// A delivery the operator aborts with its package aboard sends its drone
// home with the package, serving nothing until a report places it there:
// it was released at once, to be dispatched with the package aboard.
func TestAnAbortWithThePackageAboardBringsTheDroneHome(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.headedToDropoff(t, "back", "None")
	f.report(t, "drone-back", at(0.003, 0), 85, t0.Add(2*time.Minute)) // on its way, off its base
	f.act(t, "DeliveryAction", "back", map[string]any{"action": "abort", "reason": "wrong address", "outcome": "returnedToSender"})
	f.drain(t)
	// The recipient's page is told where the package goes.
	tracked := f.delivery(t, "back")
	feed := f.call("TrackFeed", "", &functionapp.Request{Method: http.MethodGet, Params: map[string]string{"trackingId": tracked.TrackingID}})
	require.Equal(t, http.StatusOK, feed.Status, string(feed.Body))
	assert.Contains(t, string(feed.Body), `"outcome":"returnedToSender"`)
	dr := f.drone(t, "drone-back")
	assert.Equal(t, domain.DroneInFlight, dr.Status, "flying home with the package")
	assert.True(t, dr.Recalled)
	assert.Empty(t, dr.CurrentDeliveryID)
	assert.False(t, dr.Dispatchable())
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("next", at(0.004, 0), at(0.01, 0), "Small", 1)).Status)
	f.drain(t)
	assert.Empty(t, f.delivery(t, "next").DroneID, "not dispatched with a package aboard")

	// Home: it lands, and the waiting delivery gets it.
	f.report(t, "drone-back", at(0, 0), 80, t0.Add(4*time.Minute))
	assert.False(t, f.drone(t, "drone-back").Recalled)
	assert.Equal(t, "drone-back", f.delivery(t, "next").DroneID)
}

// A grounded drone is put back in service where it is, with the battery it
// last reported, and the delivery waiting for a drone gets it; an idle
// drone left low is put on charge where it is. A put of the whole drone,
// which the README gave for this, set a full battery and moved it home.
func TestResumeAndChargeKeepTheDroneAsItIs(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.putDrone(t, domain.Drone{ID: "d1", Location: at(0, 0), HomeBase: at(-0.05, 0)})
	out := at(0.01, 0)
	f.report(t, "d1", out, 40, t0.Add(time.Minute))
	f.act(t, "DroneAction", "d1", map[string]any{"action": "ground", "reason": "rotor inspection"})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("waits", at(0.012, 0), at(0.02, 0), "Small", 1)).Status)
	f.drain(t)
	require.Empty(t, f.delivery(t, "waits").DroneID, "no drone in service")

	f.act(t, "DroneAction", "d1", map[string]any{"action": "resume", "reason": "inspection done"})
	dr := f.drone(t, "d1")
	assert.Equal(t, domain.DroneAvailable, dr.Status)
	assert.False(t, dr.Grounded)
	assert.Equal(t, 40.0, dr.BatteryPercent, "the battery it reported")
	assert.Equal(t, out, dr.Location, "where it is, not its home base")
	f.drain(t)
	assert.Equal(t, "d1", f.delivery(t, "waits").DroneID, "woken for the drone back in service")

	resp := f.action(t, "DroneAction", "d1", map[string]any{"action": "charge", "reason": "top up"})
	assert.Equal(t, http.StatusConflict, resp.Status, "it serves a delivery: %s", resp.Body)
	resp = f.action(t, "DroneAction", "d1", map[string]any{"action": "resume", "reason": "again"})
	assert.Equal(t, http.StatusAccepted, resp.Status, "in service already: no change")
	assert.Equal(t, "waits", f.drone(t, "d1").CurrentDeliveryID)

	f.putDrone(t, domain.Drone{ID: "d2", Location: at(0, 0.01)})
	f.report(t, "d2", at(0, 0.02), 30, t0.Add(2*time.Minute))
	f.act(t, "DroneAction", "d2", map[string]any{"action": "charge", "reason": "long trips ahead"})
	dr = f.drone(t, "d2")
	assert.Equal(t, domain.DroneCharging, dr.Status)
	require.NotNil(t, dr.ChargeDueAt)
	assert.Equal(t, 30.0, dr.BatteryPercent)
	assert.Equal(t, at(0, 0.02), dr.Location)
	due := *dr.ChargeDueAt
	resp = f.action(t, "DroneAction", "d2", map[string]any{"action": "charge", "reason": "again"})
	assert.Equal(t, http.StatusAccepted, resp.Status)
	assert.Equal(t, due, *f.drone(t, "d2").ChargeDueAt, "charging already: unchanged")

	f.putDrone(t, domain.Drone{ID: "full", Location: at(0, 0.03)})
	resp = f.action(t, "DroneAction", "full", map[string]any{"action": "charge", "reason": "top up"})
	assert.Equal(t, http.StatusConflict, resp.Status, "nothing to charge")
	assert.Contains(t, string(resp.Body), `"detail":"drone full is charged already`)
	assert.Empty(t, problemOf(t, resp).Field, "a state's 409 names no field")
	assert.Contains(t, string(resp.Body), "charged already (100 %; a charge stops at 95 %)")
	assert.Equal(t, domain.DroneAvailable, f.drone(t, "full").Status)

	resp = f.action(t, "DroneAction", "d2", map[string]any{"action": "refuel", "reason": "x"})
	assert.Equal(t, http.StatusBadRequest, resp.Status)
	assert.Contains(t, string(resp.Body), "ground, recall, resume or charge")
}

// A drone grounded while it charges keeps what the charge gave it so far:
// put back in service, it has the battery the charge rate brought it to,
// not the one it went on charge with. It used to come back at the battery
// it had before its charge, and an operator's charge was lost.
func TestGroundingAChargingDroneKeepsItsCharge(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.putDrone(t, domain.Drone{ID: "d1", Location: at(0, 0), RangeKm: 18}) // 20 km on a full charge
	f.report(t, "d1", at(0, 0.01), 30, t0.Add(time.Minute))
	f.act(t, "DroneAction", "d1", map[string]any{"action": "charge", "reason": "long trips ahead"})
	require.Equal(t, domain.DroneCharging, f.drone(t, "d1").Status)

	f.clock.Advance(30 * time.Minute) // 60 % an hour: 30 % more
	f.act(t, "DroneAction", "d1", map[string]any{"action": "ground", "reason": "charger fault"})
	dr := f.drone(t, "d1")
	assert.Equal(t, domain.DroneMaintenance, dr.Status)
	assert.Nil(t, dr.ChargeDueAt)
	assert.InDelta(t, 60, dr.BatteryPercent, 0.01, "the charge taken so far")
	assert.InDelta(t, 20*0.5, dr.RangeKm, 0.01, "the range follows the battery: 20 km × (60 − 10) %")

	f.act(t, "DroneAction", "d1", map[string]any{"action": "resume", "reason": "charger fixed"})
	dr = f.drone(t, "d1")
	assert.Equal(t, domain.DroneAvailable, dr.Status)
	assert.InDelta(t, 60, dr.BatteryPercent, 0.01)
}

// A delivery that waits while free drones nearby could fly it charged says
// so in the operator's listing, so that the operator knows to charge one
// rather than wait; once one is charged it is dispatched.
func TestAWaitForChargeSaysSo(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.putDrone(t, domain.Drone{ID: "low", Location: at(0, 0), RangeKm: 18})
	f.report(t, "low", at(0, 0), 25, t0.Add(time.Minute)) // 15 % of a 20 km full range: 3 km now
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("far", at(0.01, 0), at(0.05, 0), "Small", 1)).Status)
	f.drain(t)
	f.clock.Advance(time.Minute) // past the moments of a fresh dispatch
	resp := f.fleet("ListWaitingDeliveries", &functionapp.Request{Method: http.MethodGet})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var page struct {
		Items []struct {
			WaitKind   domain.WaitKind `json:"waitKind"`
			WaitReason string          `json:"waitReason"`
		} `json:"items"`
	}
	require.NoError(t, json.Unmarshal(resp.Body, &page))
	require.Len(t, page.Items, 1)
	assert.Equal(t, domain.WaitNoDrone, page.Items[0].WaitKind)
	assert.Equal(t, "no drone available: 1 free drone(s) nearby could fly it charged, none with the charge now", page.Items[0].WaitReason)

	// A quote of the same request says so too.
	q := f.quote(t, requestBody("far-2", at(0.01, 0), at(0.05, 0), "Small", 1))
	require.Len(t, q.Reasons, 1)
	assert.Contains(t, q.Reasons[0].Detail, "1 free drone(s) nearby could fly it charged")

	// Not for a deadline the charge would miss: 25 % to 95 % takes 70
	// minutes at 60 %/h, and this one must be delivered within 40.
	var soon map[string]any
	require.NoError(t, json.Unmarshal(requestBody("far-3", at(0.01, 0), at(0.05, 0), "Small", 1), &soon))
	soon["deadline"] = f.clock.Now().Add(40 * time.Minute).Format(time.RFC3339)
	q = f.quote(t, mustJSON(soon))
	require.Len(t, q.Reasons, 1)
	assert.NotContains(t, q.Reasons[0].Detail, "could fly it charged", "charged, it would be late")
}

// A ground's queued repeat that comes after the operator put the drone
// back in service (a retry, a backlog on the queue) leaves the drone in
// service: the ground it repeats is over.
func TestALateGroundDoesNotUndoAResume(t *testing.T) {
	t.Parallel()
	f := onNear(t, "d")

	f.act(t, "DroneAction", "near", map[string]any{"action": "ground", "reason": "bird strike"})
	late := f.receive(t, topology.QueueDroneTelemetry)
	require.Len(t, late, 1, "the ground's own message is queued")
	f.clock.Advance(time.Second)
	f.act(t, "DroneAction", "near", map[string]any{"action": "resume", "reason": "checked, no damage"})
	require.Equal(t, domain.DroneAvailable, f.drone(t, "near").Status)

	_, err := f.h.TrackDrone(context.Background(), late[0])
	require.NoError(t, err)
	require.NoError(t, f.bus.Complete(context.Background(), late[0]))
	near := f.drone(t, "near")
	assert.Equal(t, domain.DroneAvailable, near.Status, "still in service")
	assert.False(t, near.Grounded)
	f.drain(t)
	assert.Equal(t, "far", f.delivery(t, "d").DroneID, "the delivery handed on, to the other drone")
	assert.Equal(t, domain.DroneAvailable, f.drone(t, "near").Status)
}

// A drone grounded with a package aboard flies it home: a put while it is
// on its way is refused (it would end the flight in the air, and the drone
// could be dispatched there with the package still aboard), whatever
// status it gives; once landed, a put applies.
func TestAPutWaitsForARecalledDroneToLand(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0.005, 0)})
	d := f.scheduled(t, "carried", at(0.01, 0), at(0.02, 0))
	f.clock.Advance(time.Minute)
	f.report(t, "d1", d.Request.PickupLocation, 90, f.clock.Now())
	require.NotNil(t, f.delivery(t, "carried").PickedUpAt)
	f.act(t, "DroneAction", "d1", map[string]any{"action": "ground", "reason": "rotor noise"})
	require.Equal(t, domain.StageFailed, f.delivery(t, "carried").Stage)
	require.True(t, f.drone(t, "d1").Recalled, "flying the package home")

	put := func(status domain.DroneStatus) *functionapp.Response {
		body := mustJSON(map[string]any{"location": at(0.005, 0), "maxPayloadKg": 5, "maxPackageSize": "Large", "rangeKm": 40,
			"cruiseSpeedMps": 15, "status": status})
		return f.fleet("PutDrone", &functionapp.Request{Method: http.MethodPut, Params: map[string]string{"id": "d1"}, Body: body})
	}
	for _, status := range []domain.DroneStatus{domain.DroneAvailable, domain.DroneRetired, domain.DroneMaintenance} {
		resp := put(status)
		require.Equal(t, http.StatusConflict, resp.Status, string(resp.Body))
		assert.Contains(t, problemOf(t, resp).Detail, "flying home after a recall")
	}
	dr := f.drone(t, "d1")
	assert.True(t, dr.Recalled, "still flying home")
	assert.Equal(t, d.Request.PickupLocation, dr.Location)

	f.clock.Advance(time.Minute)
	f.report(t, "d1", dr.HomeBase, 85, f.clock.Now())
	dr = f.drone(t, "d1")
	assert.False(t, dr.Recalled, "landed")
	assert.Equal(t, domain.DroneMaintenance, dr.Status, "grounded, it stays out of service at home")
	assert.Equal(t, http.StatusOK, put(domain.DroneAvailable).Status)
	assert.Equal(t, domain.DroneAvailable, f.drone(t, "d1").Status)
}

// A package whose delivery lost its drone (the operator moved it off the
// only drone it may have) reads Booked again, dated when that happened,
// not when its drone was assigned.
func TestAPackageBookedAgainIsDatedWhenItWas(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "only", Location: at(0.011, 0)})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("alone", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
	f.drain(t)
	scheduled := getPackageOf(t, f, "pkg-alone")
	require.Equal(t, "Scheduled", scheduled.Status)

	f.clock.Advance(time.Minute)
	f.act(t, "DeliveryAction", "alone", map[string]any{"action": "reassign", "reason": "not that one"})
	f.drain(t)
	require.Empty(t, f.delivery(t, "alone").DroneID, "no other drone: it waits")
	booked := getPackageOf(t, f, "pkg-alone")
	assert.Equal(t, "Booked", booked.Status)
	assert.True(t, booked.UpdatedAt.After(scheduled.UpdatedAt), "updatedAt %s moved on from %s", booked.UpdatedAt, scheduled.UpdatedAt)
	assert.Equal(t, f.delivery(t, "alone").UpdatedAt, booked.UpdatedAt)
}
