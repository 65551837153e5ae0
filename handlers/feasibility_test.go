package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync/atomic"
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
	"github.com/fabrikam/dronedelivery/shared/wire"
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

// A request whose dropoff is its pickup is refused (400 naming
// dropOffLocation), for a quote too, and nothing is stored; one accepted
// before that rule, sent again as it was, still gets its 202.
func TestAPickupThatIsTheDropoffIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	same := requestBody("same", at(0.01, 0), at(0.01, 0), "Small", 1)
	for _, fn := range []string{"IngestDelivery", "QuoteDelivery"} {
		resp := f.biz(fn, &functionapp.Request{Method: http.MethodPost, Body: same})
		require.Equal(t, http.StatusBadRequest, resp.Status, "%s: %s", fn, resp.Body)
		assert.Equal(t, "dropOffLocation", problemOf(t, resp).Field, fn)
	}
	_, err := f.store.Deliveries.Find(context.Background(), "same")
	assert.True(t, domain.IsCode(err, domain.ENOTFOUND), "nothing stored: %v", err)

	// Accepted by a build before the rule: stored as that build stored it.
	p, err := wire.ParseDeliveryRequest(same)
	require.NoError(t, err)
	p.SetOwner(f.acct)
	now := f.clock.Now()
	p.Request.Defaults(now, "same", 0)
	require.NoError(t, f.store.Deliveries.Create(context.Background(), "same", &domain.Delivery{ID: "same", TrackingID: "T-same",
		OwnerID: f.acct, Request: p.Request, RequestHash: p.Hash, Stage: domain.StageCreated, CreatedAt: now, UpdatedAt: now}))
	resp := f.biz("IngestDelivery", &functionapp.Request{Method: http.MethodPost, Body: same})
	assert.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))

	// An account at its limit of deliveries is told what is wrong with
	// the request, not to retry later.
	capped := newFixtureWith(t, func(d *handlers.Deps) { d.Config.MaxActiveDeliveries = 1 })
	require.Equal(t, http.StatusAccepted, capped.ingest(t, requestBody("one", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
	resp = capped.biz("IngestDelivery", &functionapp.Request{Method: http.MethodPost, Body: requestBody("two", at(0.01, 0), at(0.01, 0), "Small", 1)})
	assert.Equal(t, http.StatusBadRequest, resp.Status, string(resp.Body))
}

func TestIngestRefusesWhatNoDroneCouldServe(t *testing.T) {
	t.Parallel()
	zone := airspacetest.Circles{Zones: []airspacetest.Zone{{Name: "stadium", Center: at(0.05, 0.05), RadiusKm: 0.5}}}
	f := newFixtureWith(t, func(d *handlers.Deps) { d.Airspace = fixedAirspace{zone} })
	f.putDrone(t, domain.Drone{ID: "d1", Location: at(0, 0), MaxPayloadKg: 10, RangeKm: 40})
	sydney := domain.Location{Latitude: -33.87, Longitude: 151.21}
	bondi := domain.Location{Latitude: -33.89, Longitude: 151.27} // Sydney's beach, 6 km on
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
		{"Sydney", "pickupLocation", "out of range", func(m map[string]any) { m["pickupLocation"], m["dropOffLocation"] = sydney, bondi }},
		{"in a zone", "dropOffLocation", "stadium", func(m map[string]any) { m["dropOffLocation"] = at(0.05, 0.05) }},
		{"deadline in 2999", "deadline", "ahead", func(m map[string]any) { m["deadline"] = "2999-01-01T00:00:00Z" }},
		{"pickup yesterday", "pickupTime", "past", func(m map[string]any) { m["pickupTime"] = t0.Add(-24 * time.Hour).Format(time.RFC3339) }},
		{"pickup in 2999", "pickupTime", "ahead", func(m map[string]any) { m["pickupTime"] = "2999-01-01T00:00:00Z" }},
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
	patch, _ := json.Marshal(map[string]any{"pickupLocation": sydney, "dropOffLocation": bondi})
	resp := f.biz("RescheduleDelivery", &functionapp.Request{Method: "PATCH", Params: map[string]string{"id": "x"}, Body: patch})
	require.Equal(t, http.StatusUnprocessableEntity, resp.Status, string(resp.Body))
	assert.Equal(t, domain.StageCreated, f.delivery(t, "x").Stage)
	assert.Equal(t, 0, f.delivery(t, "x").Generation)
}

// A booking near the end of the horizon that names no deadline is
// accepted: its default deadline, two hours after the pickup, stops at the
// horizon instead of refusing the request for a field the client never
// sent.
func TestALateBookingWithoutADeadlineIsAccepted(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	pickup := t0.Add(domain.DefaultMaxHorizon - time.Hour)
	b, _ := json.Marshal(map[string]any{"deliveryId": "late", "pickupLocation": at(0.01, 0), "dropOffLocation": at(0.02, 0),
		"pickupTime": pickup.Format(time.RFC3339), "packageInfo": map[string]any{"size": "Small", "weight": 1.0}})
	resp := f.ingest(t, b)
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	d := f.delivery(t, "late")
	assert.Equal(t, t0.Add(domain.DefaultMaxHorizon), d.Request.Deadline, "the default deadline stops at the horizon")
	assert.True(t, d.Request.Deadline.After(d.Request.PickupTime))
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

type quote struct {
	Feasible bool `json:"feasible"`
	Reasons  []struct {
		Field, Detail string
	} `json:"reasons"`
	PickupETA    *time.Time           `json:"pickupETA"`
	DeliveryETA  *time.Time           `json:"deliveryETA"`
	DroneClass   *json.RawMessage     `json:"droneClass"`
	PlannedRoute *domain.PlannedRoute `json:"plannedRoute"`
	Paused       string               `json:"paused"`
}

func (f *fixture) quote(t *testing.T, body []byte) quote {
	t.Helper()
	resp := f.biz("QuoteDelivery", &functionapp.Request{Method: "POST", Body: body})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var q quote
	require.NoError(t, json.Unmarshal(resp.Body, &q))
	return q
}

func TestQuoteStoresAndClaimsNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0), MaxPayloadKg: 5})
	q := f.quote(t, requestBody("q1", at(0.01, 0), at(0.02, 0), "Small", 2))
	assert.True(t, q.Feasible)
	assert.Empty(t, q.Reasons)
	require.NotNil(t, q.PickupETA)
	require.NotNil(t, q.DroneClass)
	assert.Equal(t, domain.DroneAvailable, f.drone(t, "d1").Status)
	_, err := f.store.Deliveries.Find(ctxFor(t), "q1")
	assert.True(t, domain.IsCode(err, domain.ENOTFOUND))
	active, _, err := f.bus.Depth(ctxFor(t), topology.QueueDeliveryRequests)
	require.NoError(t, err)
	assert.Zero(t, active)

	heavy := f.quote(t, requestBody("q2", at(0.01, 0), at(0.02, 0), "Small", 50))
	assert.False(t, heavy.Feasible)
	require.Len(t, heavy.Reasons, 1)
	assert.Equal(t, "packageInfo.weight", heavy.Reasons[0].Field)
	assert.Nil(t, heavy.PickupETA)

	// Every reason at once: too heavy, and a deadline beyond the horizon;
	// ingest names only the first.
	b, _ := json.Marshal(map[string]any{"pickupLocation": at(0.01, 0), "dropOffLocation": at(0.02, 0),
		"deadline": "2999-01-01T00:00:00Z", "packageInfo": map[string]any{"size": "Small", "weight": 50}})
	many := f.quote(t, b)
	assert.False(t, many.Feasible)
	var fields []string
	for _, r := range many.Reasons {
		fields = append(fields, r.Field)
	}
	assert.Equal(t, []string{"deadline", "packageInfo.weight"}, fields)
	refused := f.ingest(t, b)
	require.Equal(t, http.StatusUnprocessableEntity, refused.Status, string(refused.Body))
	assert.Equal(t, "deadline", problemOf(t, refused).Field)

	// Malformed input is 400, as at ingest.
	bad := f.biz("QuoteDelivery", &functionapp.Request{Method: "POST", Body: []byte(`{"pickupLocation":1}`)})
	assert.Equal(t, http.StatusBadRequest, bad.Status)
}

// With nothing changed in between, the delivery gets the drone and the
// ETAs its quote named, over random fleets, requests and a zone.
func TestQuoteAndAssignmentAgree(t *testing.T) {
	t.Parallel()
	zone := airspacetest.Circles{Zones: []airspacetest.Zone{{Name: "z", Center: at(0.02, 0.02), RadiusKm: 0.8}}}
	f := newFixtureWith(t, func(d *handlers.Deps) { d.Airspace = fixedAirspace{zone} })
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 30 {
		loc := at(r.Float64()*0.08-0.04, r.Float64()*0.08-0.04)
		if zone.Admit("", loc, t0) != nil {
			continue
		}
		f.putDrone(t, domain.Drone{ID: fmt.Sprint("d", i), Location: loc, CruiseSpeedMps: float64(10 + r.IntN(11)),
			MaxPayloadKg: float64(2 + r.IntN(6)), RangeKm: float64(15 + r.IntN(30))})
	}
	agreed := 0
	for i := range 25 {
		pickup, drop := at(r.Float64()*0.06-0.03, r.Float64()*0.06-0.03), at(r.Float64()*0.06-0.03, r.Float64()*0.06-0.03)
		body, _ := json.Marshal(map[string]any{"deliveryId": fmt.Sprint("x", i), "pickupLocation": pickup, "dropOffLocation": drop,
			"deadline":    t0.Add(time.Duration(20+r.IntN(60)) * time.Minute).Format(time.RFC3339),
			"packageInfo": map[string]any{"size": "Small", "weight": float64(1 + r.IntN(5))}})
		q := f.quote(t, body)
		resp := f.ingest(t, body)
		if !q.Feasible {
			assert.Equal(t, http.StatusUnprocessableEntity, resp.Status, "quote and ingest agree on refusal")
			continue
		}
		require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
		f.drain(t)
		d := f.delivery(t, fmt.Sprint("x", i))
		if q.PickupETA == nil {
			assert.Empty(t, d.DroneID, "no drone was quoted, none assigned")
			continue
		}
		require.Equal(t, domain.StageScheduled, d.Stage, d.FailureReason)
		assert.Equal(t, *q.PickupETA, *d.PickupETA)
		assert.Equal(t, *q.DeliveryETA, *d.DeliveryETA)
		require.NotNil(t, q.PlannedRoute)
		assert.Equal(t, d.PlannedRoute.Dropoff, q.PlannedRoute.Dropoff)
		assert.Empty(t, q.PlannedRoute.Pickup.Points, "the leg from where the drone waits is not quoted")
		assert.False(t, d.DeliveryETA.After(d.Request.Deadline), "assigned drone meets the deadline")
		agreed++
	}
	assert.Positive(t, agreed)
}

// The nearest drone is slow and would miss the deadline: the farther, faster
// one is assigned, and its route goes round the zone in the way.
func TestDispatchPassesOverTheNearestDroneThatMissesTheDeadline(t *testing.T) {
	t.Parallel()
	zone := airspacetest.Circles{Zones: []airspacetest.Zone{{Name: "z", Center: at(0.05, 0), RadiusKm: 0.5}}}
	f := newFixtureWith(t, func(d *handlers.Deps) { d.Airspace = fixedAirspace{zone} })
	f.putDrone(t, domain.Drone{ID: "slow", Location: at(0.0005, 0), CruiseSpeedMps: 5})
	f.putDrone(t, domain.Drone{ID: "fast", Location: at(-0.02, 0), CruiseSpeedMps: 20})
	body, _ := json.Marshal(map[string]any{"deliveryId": "d", "pickupLocation": at(0, 0), "dropOffLocation": at(0.1, 0),
		"deadline": t0.Add(20 * time.Minute).Format(time.RFC3339), "packageInfo": map[string]any{"size": "Small", "weight": 1}})
	require.Equal(t, http.StatusAccepted, f.ingest(t, body).Status)
	f.drain(t)
	d := f.delivery(t, "d")
	assert.Equal(t, "fast", d.DroneID)
	require.NotNil(t, d.PlannedRoute)
	assert.Len(t, d.PlannedRoute.Dropoff.Points, 3, "round the zone")
	assert.Equal(t, domain.DroneAvailable, f.drone(t, "slow").Status)
}

// A retired drone leaves the fleet: a request only it could carry is
// refused (422) and quoted as infeasible, dispatch passes it over even
// when it is the nearest, and it can be neither grounded nor recalled;
// put back, it serves again.
func TestARetiredDroneLeavesTheFleet(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "big", Location: at(0.01, 0), MaxPayloadKg: 10}, domain.Drone{ID: "small", Location: at(0.03, 0), MaxPayloadKg: 2})
	f.putDrone(t, domain.Drone{ID: "big", Location: at(0.01, 0), MaxPayloadKg: 10, Status: domain.DroneRetired})
	assert.Equal(t, domain.DroneRetired, f.drone(t, "big").Status)

	heavy := requestBody("heavy", at(0.01, 0), at(0.02, 0), "Small", 8)
	// The fleet's summary drops a drone's old capabilities within a second.
	require.Eventually(t, func() bool { return !f.quote(t, heavy).Feasible }, 10*time.Second, 10*time.Millisecond,
		"only the retired drone could carry 8 kg")
	refused := f.ingest(t, heavy)
	require.Equal(t, http.StatusUnprocessableEntity, refused.Status, string(refused.Body))
	assert.Equal(t, "packageInfo.weight", problemOf(t, refused).Field)

	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("light", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
	f.drain(t)
	assert.Equal(t, "small", f.delivery(t, "light").DroneID, "the nearest drone is retired")
	assert.Equal(t, domain.DroneRetired, f.drone(t, "big").Status)

	for _, action := range []string{"ground", "recall"} {
		resp := f.action(t, "DroneAction", "big", map[string]any{"action": action, "reason": "check"})
		assert.Equal(t, http.StatusConflict, resp.Status, "%s: %s", action, resp.Body)
	}
	resp := f.fleet("ListDrones", &functionapp.Request{Method: "GET", Query: url.Values{"status": {"Retired"}}})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	assert.Contains(t, string(resp.Body), `"id":"big"`)
	resp = f.fleet("ListDrones", &functionapp.Request{Method: "GET", Query: url.Values{"status": {"Flying"}}})
	require.Equal(t, http.StatusBadRequest, resp.Status, string(resp.Body))
	assert.Contains(t, problemOf(t, resp).Detail, "Maintenance, Retired", "the statuses listed are those it takes")

	f.putDrone(t, domain.Drone{ID: "big", Location: at(0.01, 0), MaxPayloadKg: 10})
	assert.True(t, f.quote(t, heavy).Feasible, "put back, it counts at once")
	require.Equal(t, http.StatusAccepted, f.ingest(t, heavy).Status)
	f.drain(t)
	assert.Equal(t, "big", f.delivery(t, "heavy").DroneID)
}

// Dispatch sends no drone to a pickup beyond its radius (200 km), however
// far the drone could fly: a request whose pickup only such a drone's base
// is near enough to reach on a charge is refused at ingest, where before it
// was accepted and waited until its deadline failed it.
func TestIngestRefusesAPickupBeyondTheDispatchRadius(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.putDrone(t, domain.Drone{ID: "long", Location: at(0, 0), RangeKm: 1000})
	far := requestBody("far", at(2.5, 0), at(2.51, 0), "Small", 1) // about 278 km north of the base
	resp := f.ingest(t, far)
	require.Equal(t, http.StatusUnprocessableEntity, resp.Status, string(resp.Body))
	field, detail := problem(t, resp)
	assert.Equal(t, "pickupLocation", field)
	assert.Contains(t, detail, "200 km")
	_, err := f.store.Deliveries.Find(context.Background(), "far")
	assert.True(t, domain.IsCode(err, domain.ENOTFOUND), "nothing stored")

	// Within the radius the same drone can be sent: accepted.
	near := requestBody("near", at(1.5, 0), at(1.51, 0), "Small", 1) // about 167 km
	require.Equal(t, http.StatusAccepted, f.ingest(t, near).Status)
}

// hiddenSummary is a fleet that keeps no summary of its own (as Cosmos DB's
// does not), so that the handlers list it and cache what they find.
type hiddenSummary struct{ ports.Fleet }

// summaryKeepers are the two ways a fleet's summary is kept, by name: by
// the fleet itself, and by the handlers for a fleet that keeps none.
var summaryKeepers = map[string]func(*handlers.Deps){
	"the fleet's summary":   func(*handlers.Deps) {},
	"the handlers' summary": func(d *handlers.Deps) { d.Store.Fleet = hiddenSummary{d.Store.Fleet} },
}

// A retired drone no longer counts in what the fleet could ever serve from
// the moment the PUT that retired it answers: a request that only it could
// carry is refused at once, on a fleet that keeps its own summary and on
// one whose summary the handlers keep.
func TestARetiredDroneCountsNoMoreAtOnce(t *testing.T) {
	t.Parallel()
	for name, edit := range summaryKeepers {
		f := newFixtureWith(t, edit)
		f.putDrone(t, domain.Drone{ID: "small", Location: at(0, 0), MaxPayloadKg: 2, MaxPackageSize: domain.SizeSmall})
		for i := range 5 {
			f.putDrone(t, domain.Drone{ID: "big", Location: at(0, 0), MaxPayloadKg: 30})
			require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody(fmt.Sprintf("ok-%d", i), at(0.01, 0), at(0.02, 0), "Large", 20)).Status, name)
			f.putDrone(t, domain.Drone{ID: "big", Location: at(0, 0), MaxPayloadKg: 30, Status: domain.DroneRetired})
			resp := f.ingest(t, requestBody(fmt.Sprintf("no-%d", i), at(0.01, 0), at(0.02, 0), "Large", 20))
			require.Equal(t, http.StatusUnprocessableEntity, resp.Status, "%s, round %d: %s", name, i, resp.Body)
		}
	}
}

// heldListing is a fleet that keeps no summary and holds the next listing,
// once it has read its page, until let go.
type heldListing struct {
	ports.Fleet
	hold chan chan struct{} // the next listing takes one, says it has read, and waits for it
}

func (h heldListing) List(ctx context.Context, status domain.DroneStatus, after string, limit int) ([]*domain.Drone, error) {
	page, err := h.Fleet.List(ctx, status, after, limit)
	select {
	case release := <-h.hold:
		release <- struct{}{}
		<-release
	default:
	}
	return page, err
}

// A drone retired while a listing of the fleet is under way, when the
// handlers hold no summary (an earlier retirement dropped it), is not
// counted by what that listing found: the request after the retirement is
// refused.
func TestARetirementDuringAListingIsNotLost(t *testing.T) {
	t.Parallel()
	fleet := heldListing{hold: make(chan chan struct{}, 1)}
	f := newFixtureWith(t, func(d *handlers.Deps) { fleet.Fleet = d.Store.Fleet; d.Store.Fleet = fleet })
	f.putDrone(t, domain.Drone{ID: "small", Location: at(0, 0), MaxPayloadKg: 2, MaxPackageSize: domain.SizeSmall})
	f.putDrone(t, domain.Drone{ID: "big", Location: at(0, 0), MaxPayloadKg: 30})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("a", at(0.01, 0), at(0.02, 0), "Large", 20)).Status)
	f.putDrone(t, domain.Drone{ID: "big", Location: at(0, 0), MaxPayloadKg: 30, Status: domain.DroneRetired}) // drops the summary
	f.putDrone(t, domain.Drone{ID: "big", Location: at(0, 0), MaxPayloadKg: 30})                              // back in service
	f.clock.Advance(time.Second)

	release := make(chan struct{})
	fleet.hold <- release
	done := make(chan int)
	go func() { done <- f.ingest(t, requestBody("b", at(0.01, 0), at(0.02, 0), "Large", 20)).Status }()
	<-release // the listing has read "big" in service
	f.putDrone(t, domain.Drone{ID: "big", Location: at(0, 0), MaxPayloadKg: 30, Status: domain.DroneRetired})
	// A request after the retirement, while that listing still runs, is
	// not judged by it: the listing is superseded, and both requests are
	// judged by the next one, which lists the fleet as it is.
	later := make(chan *functionapp.Response)
	go func() { later <- f.ingest(t, requestBody("c0", at(0.01, 0), at(0.02, 0), "Large", 20)) }()
	release <- struct{}{}
	resp := <-later
	assert.Equal(t, http.StatusUnprocessableEntity, resp.Status, "retired before this request, while the listing ran: %s", resp.Body)
	assert.Equal(t, http.StatusUnprocessableEntity, <-done, "the listing it waited for was superseded by the retirement")
	resp = f.ingest(t, requestBody("c", at(0.01, 0), at(0.02, 0), "Large", 20))
	assert.Equal(t, http.StatusUnprocessableEntity, resp.Status, "retired before this request: %s", resp.Body)
}

// slowListing is a fleet that keeps no summary of its own (as on Cosmos
// DB), whose listing waits for release, or for its context to end.
type slowListing struct {
	ports.Fleet
	lists   *atomic.Int32
	release chan struct{}
}

func (f slowListing) List(ctx context.Context, status domain.DroneStatus, after string, limit int) ([]*domain.Drone, error) {
	f.lists.Add(1)
	select {
	case <-f.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return f.Fleet.List(ctx, status, after, limit)
}

// panickyListing panics on its first listing, as a fault in an adapter
// would.
type panickyListing struct {
	ports.Fleet
	once *atomic.Bool
}

func (f panickyListing) List(ctx context.Context, status domain.DroneStatus, after string, limit int) ([]*domain.Drone, error) {
	if f.once.CompareAndSwap(false, true) {
		panic("a fault in the fleet's listing")
	}
	return f.Fleet.List(ctx, status, after, limit)
}

// A panic in the fleet's listing, which runs in a goroutine of its own for
// the requests that wait for it, fails those requests and the next lists
// again; it does not end the process, as a panic outside the runtimes'
// recovery would.
func TestAPanicInTheFleetListingFailsItsRequestsOnly(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, func(d *handlers.Deps) {
		d.Store.Fleet = panickyListing{Fleet: d.Store.Fleet, once: &atomic.Bool{}}
	})
	f.putDrone(t, domain.Drone{ID: "only", Location: at(0.001, 0), BatteryPercent: 90})
	body := requestBody("q", at(0, 0), at(0.01, 0), "Small", 1)
	req := &functionapp.Request{Method: "POST", Body: body, Header: http.Header{
		"Authorization": {"Bearer " + f.key}, "Content-Type": {"application/json"}}}
	resp := functionapp.Call(context.Background(), f.reg["QuoteDelivery"].HTTP, req)
	assert.GreaterOrEqual(t, resp.Status, 500, string(resp.Body))
	assert.True(t, f.quote(t, body).Feasible, "the next request lists the fleet again")
}

// A request that gives up waiting for the fleet's first summary (its time
// ran out: functionapp.HandlerTimeout) does not end the listing: the
// listing goes on, and the next request finds the summary built rather
// than listing the fleet again from the start. Before, each request's
// deadline cut the listing short, and on a large fleet every request
// started it again.
func TestTheFirstFleetSummaryOutlivesTheRequestThatStartedIt(t *testing.T) {
	t.Parallel()
	var lists atomic.Int32
	release := make(chan struct{})
	f := newFixtureWith(t, func(d *handlers.Deps) {
		d.Store.Fleet = slowListing{Fleet: d.Store.Fleet, lists: &lists, release: release}
	})
	f.putDrone(t, domain.Drone{ID: "only", Location: at(0.001, 0), BatteryPercent: 90})
	body := requestBody("q", at(0, 0), at(0.01, 0), "Small", 1)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req := &functionapp.Request{Method: "POST", Body: body, Header: http.Header{
		"Authorization": {"Bearer " + f.key}, "Content-Type": {"application/json"}}}
	resp := functionapp.Call(ctx, f.reg["QuoteDelivery"].HTTP, req)
	require.Equal(t, http.StatusServiceUnavailable, resp.Status, string(resp.Body))
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))

	close(release)
	q := f.quote(t, body)
	assert.True(t, q.Feasible)
	assert.Equal(t, int32(1), lists.Load(), "one listing, finished for the next request")
}
