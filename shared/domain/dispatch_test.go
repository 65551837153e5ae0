package domain_test

import (
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/domain/airspacetest"
)

var (
	center = domain.Location{Latitude: 47.6062, Longitude: -122.3321}
	now    = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
)

func near(dLat, dLon float64) domain.Location {
	return domain.Location{Latitude: center.Latitude + dLat, Longitude: center.Longitude + dLon}
}

func aDrone(id string, loc domain.Location, speed float64) *domain.Drone {
	return &domain.Drone{ID: id, Location: loc, HomeBase: loc, MaxPayloadKg: 5, MaxPackageSize: domain.SizeMedium,
		RangeKm: 40, CruiseSpeedMps: speed, BatteryPercent: 100, Status: domain.DroneAvailable}
}

func request(pickup, drop domain.Location, weight float64, deadline time.Duration) *domain.DeliveryRequest {
	return &domain.DeliveryRequest{PickupLocation: pickup, DropoffLocation: drop, PickupTime: now, Deadline: now.Add(deadline),
		PackageInfo: domain.PackageInfo{Size: domain.SizeSmall, Weight: weight}}
}

func summary(drones ...*domain.Drone) *domain.FleetSummary {
	s := domain.NewFleetSummary()
	for _, d := range drones {
		s.Add(d)
	}
	return s
}

func TestFeasibleRefusesWhatNoDroneCouldServe(t *testing.T) {
	t.Parallel()
	fleet := summary(aDrone("a", center, 15), aDrone("b", near(0.01, 0), 20))
	zone := airspacetest.Circles{Zones: []airspacetest.Zone{{Name: "stadium", Center: near(0.05, 0.05), RadiusKm: 0.5}}}
	sydney := domain.Location{Latitude: -33.87, Longitude: 151.21}
	cases := []struct {
		name  string
		edit  func(r *domain.DeliveryRequest)
		field string
	}{
		{"fine", func(*domain.DeliveryRequest) {}, ""},
		{"50 kg", func(r *domain.DeliveryRequest) { r.PackageInfo.Weight = 50 }, "packageInfo.weight"},
		{"too large", func(r *domain.DeliveryRequest) { r.PackageInfo.Size = domain.SizeLarge }, "packageInfo.size"},
		{"pickup in Sydney", func(r *domain.DeliveryRequest) { r.PickupLocation, r.DropoffLocation = sydney, sydney }, "pickupLocation"},
		{"dropoff 30 km away", func(r *domain.DeliveryRequest) { r.DropoffLocation = near(0.27, 0) }, "dropOffLocation"},
		{"pickup in a zone", func(r *domain.DeliveryRequest) { r.PickupLocation = near(0.05, 0.05) }, "pickupLocation"},
		{"dropoff in a zone", func(r *domain.DeliveryRequest) { r.DropoffLocation = near(0.05, 0.05) }, "dropOffLocation"},
		{"pickup an hour ago", func(r *domain.DeliveryRequest) { r.PickupTime = now.Add(-time.Hour) }, "pickupTime"},
		{"pickup a minute ago", func(r *domain.DeliveryRequest) { r.PickupTime = now.Add(-time.Minute) }, ""},
		{"deadline in 2999", func(r *domain.DeliveryRequest) { r.Deadline = time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC) }, "deadline"},
		{"deadline in six days", func(r *domain.DeliveryRequest) { r.Deadline = now.Add(6 * 24 * time.Hour) }, ""},
		{"deadline too tight", func(r *domain.DeliveryRequest) { r.Deadline = now.Add(3 * time.Minute) }, "deadline"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := request(near(0.01, 0.01), near(0.05, 0.02), 2, 2*time.Hour)
			tc.edit(r)
			err := domain.Feasible(r, fleet, zone, domain.FeasibilityRules{}, now)
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Equal(t, domain.EUNPROCESSABLE, domain.ErrorCode(err), err.Error())
			assert.Equal(t, tc.field, domain.ErrorField(err), err.Error())
		})
	}
}

func TestFeasibleNeedsOneDroneAbleToDoItAll(t *testing.T) {
	t.Parallel()
	heavy := aDrone("heavy", center, 15)
	heavy.MaxPayloadKg, heavy.MaxPackageSize = 10, domain.SizeSmall
	large := aDrone("large", center, 15)
	large.MaxPayloadKg, large.MaxPackageSize = 3, domain.SizeLarge
	r := request(near(0.01, 0), near(0.02, 0), 8, time.Hour)
	r.PackageInfo.Size = domain.SizeLarge
	err := domain.Feasible(r, summary(heavy, large), nil, domain.FeasibilityRules{}, now)
	assert.Equal(t, "packageInfo", domain.ErrorField(err), "each drone does half: %v", err)

	// A drone at half charge still counts its full range.
	half := aDrone("half", center, 15)
	half.RangeKm, half.BatteryPercent = 20, 50
	far := request(near(0.15, 0), near(0.15, 0.01), 1, time.Hour)
	require.NoError(t, domain.Feasible(far, summary(half), nil, domain.FeasibilityRules{}, now))

	// An empty fleet refuses only by time and airspace.
	huge := request(near(0.01, 0), near(0.02, 0), 900, time.Hour)
	assert.NoError(t, domain.Feasible(huge, domain.NewFleetSummary(), nil, domain.FeasibilityRules{}, now))
}

// A drone on a partial charge counts what a full charge gives it, keeping
// the reserve: 20 km on a full battery, 10 % of it reserved, is 18 km,
// whatever its battery now (before, 8 km at 50 % counted as 16).
func TestFeasibleCountsAFullChargeKeepingTheReserve(t *testing.T) {
	t.Parallel()
	cfg := domain.TrackingConfig{}.WithDefaults()
	for _, battery := range []float64{100, 50, 20, 10} {
		d := aDrone("b", center, 10)
		d.FullRangeKm = 20
		d.SetBattery(battery, cfg)
		assert.InDelta(t, 18, domain.FullRangeKm(d), 1e-9, "at %v %%", battery)
		// Pickup 8.5 km north, dropoff 0.1 km further, back home: 17.2 km.
		fits := request(near(8.5/111.2, 0), near(8.6/111.2, 0), 1, 2*time.Hour)
		assert.NoError(t, domain.Feasible(fits, summary(d), nil, domain.FeasibilityRules{}, now), "at %v %%", battery)
		over := request(near(9.1/111.2, 0), near(9.2/111.2, 0), 1, 2*time.Hour)
		assert.Equal(t, "pickupLocation", domain.ErrorField(domain.Feasible(over, summary(d), nil, domain.FeasibilityRules{}, now)), "at %v %%", battery)
	}
	// A drone stored before the battery model (no fullRangeKm): 8 km at
	// 50 % is 20 km on a full battery under the model, 18 with the reserve.
	old := aDrone("old", center, 10)
	old.RangeKm, old.BatteryPercent = 8, 50
	assert.InDelta(t, 18, domain.FullRangeKm(old), 1e-9)
}

// Two drones based 30 km apart in one cell of the summary: a pickup
// between them is out of range of both, though the cell's bounding box
// holds it (it was accepted to wait until its deadline). A cell of more
// bases than it keeps is judged by its box, erring towards accepting.
func TestFeasibleJudgesACellBaseByBase(t *testing.T) {
	t.Parallel()
	a := aDrone("a", domain.Location{Latitude: 45.01, Longitude: -100.24}, 15)
	b := aDrone("b", domain.Location{Latitude: 45.24, Longitude: -100.01}, 15)
	a.RangeKm, b.RangeKm = 18, 18
	between := request(domain.Location{Latitude: 45.12, Longitude: -100.12}, domain.Location{Latitude: 45.12, Longitude: -100.107}, 1, 2*time.Hour)
	err := domain.Feasible(between, summary(a, b), nil, domain.FeasibilityRules{}, now)
	assert.Equal(t, "pickupLocation", domain.ErrorField(err), "%v", err)
	nearA := request(domain.Location{Latitude: 45.05, Longitude: -100.24}, domain.Location{Latitude: 45.06, Longitude: -100.24}, 1, 2*time.Hour)
	assert.NoError(t, domain.Feasible(nearA, summary(a, b), nil, domain.FeasibilityRules{}, now))

	// Many drones at each of the two hubs, their bases read with an
	// altitude each: still two bases.
	hubs := []*domain.Drone{}
	for i := range 40 {
		for _, base := range []domain.Location{a.HomeBase, b.HomeBase} {
			alt := 12.0
			base.Altitude = &alt
			d := aDrone(fmt.Sprint("hub", i, base.Latitude), base, 15)
			d.RangeKm = 18
			hubs = append(hubs, d)
		}
	}
	err = domain.Feasible(between, summary(hubs...), nil, domain.FeasibilityRules{}, now)
	assert.Equal(t, "pickupLocation", domain.ErrorField(err), "%v", err)

	crowd := []*domain.Drone{a, b}
	for i := range 40 {
		crowd = append(crowd, aDrone(fmt.Sprint(i), domain.Location{Latitude: 45.01 + 0.001*float64(i), Longitude: -100.24}, 15))
		crowd[len(crowd)-1].RangeKm = 18
	}
	assert.NoError(t, domain.Feasible(between, summary(crowd...), nil, domain.FeasibilityRules{}, now), "judged by its box")
}

// randomRequest is a request within some 3 km of near(0, 0), of up to
// 3 kg, due in 5 to 35 minutes.
func randomRequest(r *rand.Rand) *domain.DeliveryRequest {
	return request(near(r.Float64()*0.06-0.03, r.Float64()*0.06-0.03), near(r.Float64()*0.06-0.03, r.Float64()*0.06-0.03),
		float64(r.IntN(4)), time.Duration(5+r.IntN(30))*time.Minute)
}

// randomDrone is drone i of a random fleet within some 5 km of
// near(0, 0): 10 to 20 m/s, 10 to 39 km of range, 1 to 6 kg of payload.
func randomDrone(r *rand.Rand, i int) *domain.Drone {
	d := aDrone(fmt.Sprint("d", i), near(r.Float64()*0.1-0.05, r.Float64()*0.1-0.05), float64(10+r.IntN(11)))
	d.RangeKm = float64(10 + r.IntN(30))
	d.MaxPayloadKg = float64(1 + r.IntN(6))
	return d
}

// airspaceFor is open airspace for an even seed, and for an odd one a
// no-fly zone of 1 km around near(0.02, 0.02).
func airspaceFor(seed uint64) domain.Airspace {
	if seed%2 == 1 {
		return airspacetest.Circles{Zones: []airspacetest.Zone{{Name: "z", Center: near(0.02, 0.02), RadiusKm: 1}}}
	}
	return domain.OpenAirspace{}
}

// assertSameBest asserts that got, the best plan a walk found (nil for
// none), is the one the walk over every drone found, want; it reports
// whether there is a plan to check further.
func assertSameBest(t *testing.T, seed uint64, want, got *domain.Plan, msg string) bool {
	t.Helper()
	if want == nil {
		assert.Nil(t, got, "seed %d", seed)
		return false
	}
	require.NotNil(t, got, "seed %d", seed)
	assert.Equal(t, want.Drone.ID, got.Drone.ID, "seed %d%s", seed, msg)
	return true
}

// limitsFor bounds a search over drones: their fastest speed, and room for
// a thousand eligible.
func limitsFor(drones []*domain.Drone) domain.ChoiceLimits {
	fast := 0.0
	for _, d := range drones {
		fast = max(fast, d.CruiseSpeedMps)
	}
	return domain.ChoiceLimits{MaxSpeedMps: fast, MaxEligible: 1000}
}

// bruteForce is the dispatch rule by a walk over every drone.
func bruteForce(drones []*domain.Drone, req *domain.DeliveryRequest, air domain.Airspace) *domain.Plan {
	leg, err := air.Route(req.PickupLocation, req.DropoffLocation, now)
	if err != nil {
		return nil
	}
	var best *domain.Plan
	for _, d := range drones {
		p, why := domain.PlanFor(d, domain.DistanceKm(d.Location, req.PickupLocation), req, air, leg, now)
		if why != "" {
			continue
		}
		if best == nil || p.ETA.Delivery.Before(best.ETA.Delivery) || p.ETA.Delivery.Equal(best.ETA.Delivery) && p.Km < best.Km {
			best = &p
		}
	}
	return best
}

// nearest yields the drones nearest first, as the fleet's index does.
func nearest(drones []*domain.Drone, at domain.Location) iter.Seq2[*domain.Drone, float64] {
	s := slices.Clone(drones)
	slices.SortStableFunc(s, func(a, b *domain.Drone) int {
		return int(math.Copysign(1, domain.DistanceKm(a.Location, at)-domain.DistanceKm(b.Location, at)))
	})
	return func(yield func(*domain.Drone, float64) bool) {
		for _, d := range s {
			if !yield(d, domain.DistanceKm(d.Location, at)) {
				return
			}
		}
	}
}

// The chosen drone never delivers after the deadline, and the walk that
// stops early picks what a walk over every drone picks.
func TestChooseProperties(t *testing.T) {
	t.Parallel()
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 1))
		var drones []*domain.Drone
		for i := range 1 + r.IntN(40) {
			d := randomDrone(r, i)
			if r.IntN(5) == 0 {
				d.Status = domain.DroneCharging
			}
			drones = append(drones, d)
		}
		req := randomRequest(r)
		if r.IntN(3) == 0 {
			req.PickupTime = now.Add(time.Duration(r.IntN(40)) * time.Minute)
			req.Deadline = req.PickupTime.Add(time.Duration(5+r.IntN(30)) * time.Minute)
		}
		air := airspaceFor(seed)
		got, err := domain.Choose(nearest(drones, req.PickupLocation), req, air, limitsFor(drones), now)
		require.NoError(t, err)
		if !assertSameBest(t, seed, bruteForce(drones, req, air), got, "") {
			continue
		}
		assert.False(t, got.ETA.Delivery.After(req.Deadline), "seed %d: delivers after the deadline", seed)
		assert.LessOrEqual(t, got.Route.Pickup.Km+got.Route.Dropoff.Km+domain.DistanceKm(req.DropoffLocation, got.Drone.HomeBase), got.Drone.RangeKm+1e-9)
	}
}

func TestChoosePassesOverTheNearestDroneThatMissesTheDeadline(t *testing.T) {
	t.Parallel()
	pickup, drop := near(0, 0), near(0.1, 0)  // 11 km
	slow := aDrone("slow", near(0.001, 0), 5) // 37 min for the leg
	fast := aDrone("fast", near(0.02, 0), 20) // 2.2 km away, 9 min for the leg
	req := request(pickup, drop, 1, 20*time.Minute)
	got, err := domain.Choose(nearest([]*domain.Drone{slow, fast}, pickup), req, nil, domain.ChoiceLimits{MaxSpeedMps: 20}, now)
	require.NoError(t, err)
	require.NotNil(t, got)
	assert.Equal(t, "fast", got.Drone.ID)

	// With an easy deadline the slow one still loses: the fast one delivers first.
	req.Deadline = now.Add(2 * time.Hour)
	got, _ = domain.Choose(nearest([]*domain.Drone{slow, fast}, pickup), req, nil, domain.ChoiceLimits{MaxSpeedMps: 20}, now)
	assert.Equal(t, "fast", got.Drone.ID)
}

func TestChooseUsesRoutedLegs(t *testing.T) {
	t.Parallel()
	pickup, drop := near(0, 0), near(0.04, 0)
	zone := airspacetest.Circles{Zones: []airspacetest.Zone{{Name: "z", Center: near(0.02, 0), RadiusKm: 0.5}}}
	d := aDrone("a", near(-0.001, 0), 15)
	got, err := domain.Choose(nearest([]*domain.Drone{d}, pickup), request(pickup, drop, 1, time.Hour), zone, domain.ChoiceLimits{}, now)
	require.NoError(t, err)
	require.NotNil(t, got)
	require.Len(t, got.Route.Dropoff.Points, 3, "the leg goes round the zone")
	straight := domain.DistanceKm(pickup, drop)
	assert.Greater(t, got.Route.Dropoff.Km, straight)
	want := domain.RoutedETA(now, got.Route.Pickup.Km, got.Route.Dropoff.Km, 15, now)
	assert.Equal(t, want, got.ETA)
}

// routeCounter counts the legs its airspace routes.
type routeCounter struct {
	domain.Airspace
	legs int
}

func (c *routeCounter) Route(a, b domain.Location, at time.Time) (domain.Route, error) {
	c.legs++
	return c.Airspace.Route(a, b, at)
}

// A candidate that could not beat the best plan even flying straight is
// passed over without routing its legs, and the choice is the same.
func TestChooseRoutesOnlyCandidatesThatCouldWin(t *testing.T) {
	t.Parallel()
	pickup, drop := near(0, 0), near(0.03, 0) // 3.3 km
	// The nearest drone flies at 15 m/s; behind it, slow drones a little
	// farther away, which the fleet's fastest speed (20 m/s, a drone far
	// off) cannot rule out, but their own can.
	drones := []*domain.Drone{aDrone("mid", near(0.001, 0), 15), aDrone("fast", near(0.05, 0), 20)}
	for i := range 30 {
		drones = append(drones, aDrone(fmt.Sprint("slow-", i), near(0.002+0.0002*float64(i), 0), 10))
	}
	req := request(pickup, drop, 1, time.Hour)
	air := &routeCounter{Airspace: domain.OpenAirspace{}}
	got, err := domain.Choose(nearest(drones, pickup), req, air, domain.ChoiceLimits{MaxSpeedMps: 20}, now)
	require.NoError(t, err)
	require.NotNil(t, got)
	assert.Equal(t, "mid", got.Drone.ID)
	assert.Equal(t, bruteForce(drones, req, domain.OpenAirspace{}).Drone.ID, got.Drone.ID)
	// The request's leg, then the chosen drone's two (to the pickup and
	// home): none of the slow drones is routed.
	assert.Equal(t, 3, air.legs)
}

// Infeasible lists every reason at once, in Feasible's order, and Feasible
// names the first of them.
func TestInfeasibleListsEveryReason(t *testing.T) {
	t.Parallel()
	fleet := summary(aDrone("d", near(0, 0), 15)) // 5 kg, Medium, 40 km
	req := request(near(0.01, 0), near(0.03, 0), 50, time.Hour)
	req.PackageInfo.Size = domain.SizeLarge
	req.Deadline = now.Add(30 * 24 * time.Hour)
	zone := airspacetest.Circles{Zones: []airspacetest.Zone{{Name: "z", Center: near(0.03, 0), RadiusKm: 0.5}}}
	errs := domain.Infeasible(req, fleet, zone, domain.FeasibilityRules{}, now)
	var fields []string
	for _, err := range errs {
		require.True(t, domain.IsCode(err, domain.EUNPROCESSABLE), "%v", err)
		fields = append(fields, domain.ErrorField(err))
	}
	assert.Equal(t, []string{"deadline", "dropOffLocation", "packageInfo.weight", "packageInfo.size"}, fields)
	assert.Equal(t, errs[0], domain.Feasible(req, fleet, zone, domain.FeasibilityRules{}, now))

	// With the airspace open and the package light, what is left is the
	// size, and then (once it fits) nothing builds on a failed check.
	req.Deadline = now.Add(time.Hour)
	req.PackageInfo.Weight = 1
	errs = domain.Infeasible(req, fleet, nil, domain.FeasibilityRules{}, now)
	require.Len(t, errs, 1)
	assert.Equal(t, "packageInfo.size", domain.ErrorField(errs[0]))
	req.PackageInfo.Size = domain.SizeSmall
	assert.Empty(t, domain.Infeasible(req, fleet, nil, domain.FeasibilityRules{}, now))
}
