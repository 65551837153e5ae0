package airspace_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/golang/geo/s2"
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/planar"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/airspace"
	"github.com/fabrikam/dronedelivery/shared/domain"
)

var (
	seattle = domain.Location{Latitude: 47.6, Longitude: -122.3}
	now     = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
)

// offset is loc moved north and east by the given kilometres.
func offset(loc domain.Location, northKm, eastKm float64) domain.Location {
	const kmPerDeg = 111.195
	return domain.Location{
		Latitude:  loc.Latitude + northKm/kmPerDeg,
		Longitude: loc.Longitude + eastKm/(kmPerDeg*math.Cos(loc.Latitude*math.Pi/180)),
	}
}

// ring closes the positions of locs into a GeoJSON ring.
func ring(locs ...domain.Location) []domain.Position {
	out := make([]domain.Position, 0, len(locs)+1)
	for _, l := range locs {
		out = append(out, domain.Position{l.Longitude, l.Latitude})
	}
	return append(out, out[0])
}

// box is a rectangle of the given half sizes around c.
func box(c domain.Location, halfNorthKm, halfEastKm float64) []domain.Position {
	return ring(offset(c, -halfNorthKm, -halfEastKm), offset(c, -halfNorthKm, halfEastKm),
		offset(c, halfNorthKm, halfEastKm), offset(c, halfNorthKm, -halfEastKm))
}

func nfz(id string, rings ...[]domain.Position) *domain.Zone {
	return &domain.Zone{ID: id, Kind: domain.NoFlyZone, GeometryType: "Polygon", Polygons: []domain.Polygon{rings}}
}

// star is a star-shaped, often concave, polygon of k corners around c at
// radii between minKm and maxKm.
func star(r *rand.Rand, c domain.Location, k int, minKm, maxKm float64) []domain.Position {
	locs := make([]domain.Location, k)
	for i := range k {
		a := 2 * math.Pi * (float64(i) + 0.8*r.Float64()) / float64(k)
		d := minKm + r.Float64()*(maxKm-minKm)
		locs[i] = offset(c, d*math.Cos(a), d*math.Sin(a))
	}
	return ring(locs...)
}

// orbPolygon is z's first polygon for orb's planar test, which shares no
// code with the package: at city scale a great-circle edge and the planar
// one differ by centimetres, far less than airspace.Margin.
func orbPolygons(z *domain.Zone) []orb.Polygon {
	var out []orb.Polygon
	for _, p := range z.Polygons {
		var op orb.Polygon
		for _, r := range p {
			var or orb.Ring
			for _, pos := range r {
				or = append(or, orb.Point(pos))
			}
			op = append(op, or)
		}
		out = append(out, op)
	}
	return out
}

// legEntersZone samples the great-circle leg every two metres or so and
// reports the first sample inside one of zones.
func legEntersZone(a, b domain.Location, zones []*domain.Zone) (string, bool) {
	pa := s2.PointFromLatLng(s2.LatLngFromDegrees(a.Latitude, a.Longitude))
	pb := s2.PointFromLatLng(s2.LatLngFromDegrees(b.Latitude, b.Longitude))
	type named struct {
		id    string
		p     orb.Polygon
		bound orb.Bound
	}
	var polys []named
	for _, z := range zones {
		for _, p := range orbPolygons(z) {
			polys = append(polys, named{z.ID, p, p.Bound()})
		}
	}
	n := int(domain.DistanceKm(a, b)*500) + 2
	for i := 0; i <= n; i++ {
		ll := s2.LatLngFromPoint(s2.Interpolate(float64(i)/float64(n), pa, pb))
		pt := orb.Point{ll.Lng.Degrees(), ll.Lat.Degrees()}
		for _, p := range polys {
			if p.bound.Contains(pt) && planar.PolygonContains(p.p, pt) {
				return fmt.Sprintf("%s at %v", p.id, pt), true
			}
		}
	}
	return "", false
}

func TestOpenWithoutZones(t *testing.T) {
	t.Parallel()
	a := airspace.New(nil)
	require.NoError(t, a.Admit("pickupLocation", seattle, now))
	to := offset(seattle, 3, 4)
	r, err := a.Route(seattle, to, now)
	require.NoError(t, err)
	assert.Equal(t, domain.StraightRoute(seattle, to), r)
}

func TestAdmit(t *testing.T) {
	t.Parallel()
	area := &domain.Zone{ID: "downtown", Kind: domain.ServiceArea, GeometryType: "Polygon",
		Polygons: []domain.Polygon{{box(seattle, 5, 5)}}}
	stadium := nfz("stadium", box(offset(seattle, 1, 1), 0.3, 0.3))
	stadium.Name = "Stadium"
	a := airspace.New([]*domain.Zone{area, stadium})

	require.NoError(t, a.Admit("pickupLocation", seattle, now))

	err := a.Admit("pickupLocation", offset(seattle, 1, 1), now)
	assert.Equal(t, domain.EUNPROCESSABLE, domain.ErrorCode(err))
	assert.Equal(t, "pickupLocation", domain.ErrorField(err))
	assert.Contains(t, domain.ErrorMessage(err), "inside no-fly zone Stadium (stadium)")

	err = a.Admit("dropoffLocation", offset(seattle, 1.305, 1), now)
	assert.Contains(t, domain.ErrorMessage(err), "within 15 m of no-fly zone")
	require.NoError(t, a.Admit("dropoffLocation", offset(seattle, 1.35, 1), now), "50 m off the zone")

	err = a.Admit("dropoffLocation", offset(seattle, 6, 0), now)
	assert.Equal(t, "dropoffLocation", domain.ErrorField(err))
	assert.Contains(t, domain.ErrorMessage(err), "outside every service area")
}

func TestRouteAroundOneZone(t *testing.T) {
	t.Parallel()
	zone := nfz("wall", box(seattle, 1, 0.2))
	a := airspace.New([]*domain.Zone{zone})
	from, to := offset(seattle, 0, -2), offset(seattle, 0, 2)

	r, err := a.Route(from, to, now)
	require.NoError(t, err)
	require.Greater(t, len(r.Points), 2, "the leg turns")
	assert.Equal(t, from, r.Points[0])
	assert.Equal(t, to, r.Points[len(r.Points)-1])
	for i := 1; i < len(r.Points); i++ {
		where, in := legEntersZone(r.Points[i-1], r.Points[i], []*domain.Zone{zone})
		assert.False(t, in, "leg %d enters %s", i, where)
	}
	// Around one end of the wall: two legs of hypot(2, 1) km and the
	// wall's width, give or take the margin.
	want := 2*math.Hypot(1.8, 1) + 0.4
	assert.InDelta(t, want, r.Km, 0.1)
	km := 0.0
	for i := 1; i < len(r.Points); i++ {
		km += domain.DistanceKm(r.Points[i-1], r.Points[i])
	}
	assert.InDelta(t, km, r.Km, 1e-9, "the length is along the path's great circles")
}

func TestRouteRefusesEndsInsideAndEnclosedEnds(t *testing.T) {
	t.Parallel()
	donut := nfz("donut", box(seattle, 2, 2), box(seattle, 1, 1))
	a := airspace.New([]*domain.Zone{donut})
	outside := offset(seattle, 0, 5)

	_, err := a.Route(outside, offset(seattle, 1.5, 0), now)
	assert.Equal(t, domain.EUNPROCESSABLE, domain.ErrorCode(err))
	assert.Equal(t, "route", domain.ErrorField(err))
	assert.Equal(t, "ends inside no-fly zone donut or within 15 m of it", domain.ErrorMessage(err))
	_, err = a.Route(offset(seattle, 1.5, 0), outside, now)
	assert.Equal(t, "starts inside no-fly zone donut or within 15 m of it", domain.ErrorMessage(err))

	require.NoError(t, a.Admit("dropoffLocation", seattle, now), "the hole is not the zone")
	_, err = a.Route(outside, seattle, now)
	assert.Equal(t, domain.EUNPROCESSABLE, domain.ErrorCode(err))
	assert.Equal(t, "route", domain.ErrorField(err))
	assert.Contains(t, domain.ErrorMessage(err), "cannot be found: no path leads around the no-fly zones from ")

	r, err := a.Route(seattle, offset(seattle, 0.5, 0.5), now)
	require.NoError(t, err, "within the hole")
	assert.Len(t, r.Points, 2)
}

// TestRouteProperties draws random concave zones and legs: every leg of a
// route stays out of every zone in force (checked by sampling with orb's
// planar test, not the package's geometry); a route is never shorter than
// the straight line, and is the straight line when it has no turn.
func TestRouteProperties(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(13, 5))
	routed, turned := 0, 0
	for round := range 40 {
		var zones []*domain.Zone
		for i := range 1 + r.IntN(8) {
			c := offset(seattle, r.Float64()*8-4, r.Float64()*8-4)
			zones = append(zones, nfz(fmt.Sprintf("z%d-%d", round, i), star(r, c, 4+r.IntN(9), 0.2, 1.2)))
		}
		a := airspace.New(zones)
		for range 10 {
			from := offset(seattle, r.Float64()*12-6, r.Float64()*12-6)
			to := offset(seattle, r.Float64()*12-6, r.Float64()*12-6)
			if a.Admit("from", from, now) != nil || a.Admit("to", to, now) != nil {
				continue
			}
			route, err := a.Route(from, to, now)
			if err != nil {
				// Overlapping zones may close every way; only a real
				// enclosure may refuse, which the sampling cannot judge.
				require.Equal(t, domain.EUNPROCESSABLE, domain.ErrorCode(err), "%v", err)
				continue
			}
			routed++
			straight := domain.DistanceKm(from, to)
			require.GreaterOrEqual(t, route.Km, straight-1e-9, "round %d", round)
			if len(route.Points) == 2 {
				require.InDelta(t, straight, route.Km, 1e-12)
			} else {
				turned++
			}
			for i := 1; i < len(route.Points); i++ {
				where, in := legEntersZone(route.Points[i-1], route.Points[i], zones)
				require.False(t, in, "round %d: leg %d of %v enters %s", round, i, route.Points, where)
			}
		}
	}
	t.Logf("%d routes, %d of them turning", routed, turned)
	require.Greater(t, routed, 200)
	require.Greater(t, turned, 20, "the draw must make zones stand in the way")
}

// TestStraightWhenNothingInTheWay: zones that keep to the north of every
// leg leave every leg straight.
func TestStraightWhenNothingInTheWay(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 7))
	var zones []*domain.Zone
	for i := range 20 {
		c := offset(seattle, 3+r.Float64()*5, r.Float64()*10-5)
		zones = append(zones, nfz(fmt.Sprint("north", i), star(r, c, 6, 0.3, 1)))
	}
	a := airspace.New(zones)
	for range 200 {
		from := offset(seattle, r.Float64()*4-5, r.Float64()*10-5)
		to := offset(seattle, r.Float64()*4-5, r.Float64()*10-5)
		route, err := a.Route(from, to, now)
		require.NoError(t, err)
		require.Equal(t, domain.StraightRoute(from, to), route)
	}
}

// TestTemporaryRestriction: a zone with a window applies only within it,
// to admission and to routes alike.
func TestTemporaryRestriction(t *testing.T) {
	t.Parallel()
	from, to := offset(seattle, 0, -2), offset(seattle, 0, 2)
	tfr := nfz("parade", box(seattle, 1, 0.2))
	tfr.ValidFrom, tfr.ValidTo = now, now.Add(2*time.Hour)
	a := airspace.New([]*domain.Zone{tfr})
	r := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		at := now.Add(time.Duration(r.Int64N(int64(6*time.Hour))) - 2*time.Hour)
		in := !at.Before(tfr.ValidFrom) && at.Before(tfr.ValidTo)
		route, err := a.Route(from, to, at)
		require.NoError(t, err)
		admitErr := a.Admit("pickupLocation", seattle, at)
		if in {
			assert.Greater(t, len(route.Points), 2, "at %s the zone is in force", at)
			assert.Error(t, admitErr)
		} else {
			assert.Equal(t, domain.StraightRoute(from, to), route, "at %s the zone is not in force", at)
			assert.NoError(t, admitErr)
		}
	}
	// The window's ends: from is inclusive, to exclusive.
	assert.Error(t, a.Admit("pickupLocation", seattle, tfr.ValidFrom))
	assert.NoError(t, a.Admit("pickupLocation", seattle, tfr.ValidTo))
}

// TestConcurrentRoutes: goroutines sharing one snapshot, whose graph is
// built and learns its edges while they route, get the answers a snapshot
// used by one goroutine gives.
func TestConcurrentRoutes(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(4, 4))
	var zones []*domain.Zone
	for i := range 15 {
		zones = append(zones, nfz(fmt.Sprint("c", i), star(r, offset(seattle, r.Float64()*8-4, r.Float64()*8-4), 8, 0.2, 0.8)))
	}
	timed := nfz("timed", box(offset(seattle, -5, 0), 0.5, 0.5))
	timed.ValidFrom = now
	zones = append(zones, timed)
	var legs [][2]domain.Location
	for range 60 {
		legs = append(legs, [2]domain.Location{offset(seattle, r.Float64()*10-5, r.Float64()*10-5), offset(seattle, r.Float64()*10-5, r.Float64()*10-5)})
	}
	type answer struct {
		r   domain.Route
		err error
	}
	want := make([]answer, len(legs))
	alone := airspace.New(zones)
	for i, l := range legs {
		want[i].r, want[i].err = alone.Route(l[0], l[1], now)
	}
	shared := airspace.New(zones)
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			for k := range legs {
				i := (k + g*7) % len(legs)
				got, err := shared.Route(legs[i][0], legs[i][1], now)
				if fmt.Sprint(err) != fmt.Sprint(want[i].err) || fmt.Sprint(got) != fmt.Sprint(want[i].r) {
					errs <- fmt.Errorf("leg %d: got %v, %v; want %v, %v", i, got, err, want[i].r, want[i].err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		require.NoError(t, <-errs)
	}
}

// TestRouteAcrossTheAntimeridian: a zone that straddles longitude 180 is
// one small zone on the sphere, and a leg across it goes around it.
func TestRouteAcrossTheAntimeridian(t *testing.T) {
	t.Parallel()
	zone := nfz("dateline", []domain.Position{{179.99, -0.01}, {-179.99, -0.01}, {-179.99, 0.01}, {179.99, 0.01}, {179.99, -0.01}})
	a := airspace.New([]*domain.Zone{zone})
	require.Error(t, a.Admit("pickupLocation", domain.Location{Latitude: 0, Longitude: 180}, now))
	from, to := domain.Location{Latitude: 0, Longitude: 179.95}, domain.Location{Latitude: 0, Longitude: -179.95}
	r, err := a.Route(from, to, now)
	require.NoError(t, err)
	require.Greater(t, len(r.Points), 2, "the leg turns")
	straight := domain.DistanceKm(from, to)
	assert.Greater(t, r.Km, straight)
	assert.Less(t, r.Km, straight+3, "around a 2.2 km zone, not around the Earth")
	// Sampled with s2 itself, since orb's planar test has no antimeridian.
	loop := s2.LoopFromPoints([]s2.Point{
		s2.PointFromLatLng(s2.LatLngFromDegrees(-0.01, 179.99)), s2.PointFromLatLng(s2.LatLngFromDegrees(-0.01, -179.99)),
		s2.PointFromLatLng(s2.LatLngFromDegrees(0.01, -179.99)), s2.PointFromLatLng(s2.LatLngFromDegrees(0.01, 179.99))})
	loop.Normalize()
	for i := 1; i < len(r.Points); i++ {
		pa := s2.PointFromLatLng(s2.LatLngFromDegrees(r.Points[i-1].Latitude, r.Points[i-1].Longitude))
		pb := s2.PointFromLatLng(s2.LatLngFromDegrees(r.Points[i].Latitude, r.Points[i].Longitude))
		for k := 0; k <= 1000; k++ {
			require.False(t, loop.ContainsPoint(s2.Interpolate(float64(k)/1000, pa, pb)), "leg %d enters the zone", i)
		}
	}
}

// TestRouteFromNearAnEdge: a pickup or dropoff admitted a little beyond the
// margin lies between the grown zone and the ring of moved corners, where
// no corner is a tangent; it must still be routed around the zone, along
// the edge to a corner, as closely as the moved corners allow.
func TestRouteFromNearAnEdge(t *testing.T) {
	t.Parallel()
	sw, se := domain.Location{Latitude: 47.614, Longitude: -122.352}, domain.Location{Latitude: 47.614, Longitude: -122.340}
	ne, nw := domain.Location{Latitude: 47.616, Longitude: -122.340}, domain.Location{Latitude: 47.616, Longitude: -122.352}
	zone := nfz("block", ring(sw, se, ne, nw))
	a := airspace.New([]*domain.Zone{zone})
	// The route's turning points: the corners moved out along both edges.
	m := airspace.NodeMargin / 1000
	sw2, se2, ne2, nw2 := offset(sw, -m, -m), offset(se, -m, m), offset(ne, m, m), offset(nw, m, -m)
	const near = 0.022 // km off the edge: past Margin, short of NodeMargin
	// Within the margin a point is still refused, by admission and routing.
	inMargin := offset(domain.Location{Latitude: 47.614, Longitude: -122.345}, -0.010, 0)
	err := a.Admit("pickupLocation", inMargin, now)
	assert.Equal(t, domain.EUNPROCESSABLE, domain.ErrorCode(err))
	assert.Contains(t, domain.ErrorMessage(err), "within 15 m of no-fly zone block")
	_, err = a.Route(inMargin, domain.Location{Latitude: 47.6205, Longitude: -122.3493}, now)
	assert.Equal(t, domain.EUNPROCESSABLE, domain.ErrorCode(err))
	assert.Equal(t, "starts inside no-fly zone block or within 15 m of it", domain.ErrorMessage(err))
	for _, c := range []struct {
		name     string
		from, to domain.Location
		// The two ways around: the obvious detours.
		left, right []domain.Location
	}{
		{"south", domain.Location{Latitude: 47.6138, Longitude: -122.345}, domain.Location{Latitude: 47.6205, Longitude: -122.3493},
			[]domain.Location{sw2, nw2}, []domain.Location{se2, ne2}},
		{"north", offset(domain.Location{Latitude: 47.616, Longitude: -122.345}, near, 0), domain.Location{Latitude: 47.6095, Longitude: -122.3493},
			[]domain.Location{nw2, sw2}, []domain.Location{ne2, se2}},
		{"west", offset(domain.Location{Latitude: 47.6152, Longitude: -122.352}, 0, -near), domain.Location{Latitude: 47.6148, Longitude: -122.333},
			[]domain.Location{sw2, se2}, []domain.Location{nw2, ne2}},
	} {
		for _, leg := range []struct {
			name     string
			from, to domain.Location
		}{{c.name + " to far side", c.from, c.to}, {"far side to " + c.name, c.to, c.from}} {
			t.Run(leg.name, func(t *testing.T) {
				require.NoError(t, a.Admit("pickupLocation", leg.from, now))
				require.NoError(t, a.Admit("dropOffLocation", leg.to, now))
				r, err := a.Route(leg.from, leg.to, now)
				require.NoError(t, err)
				require.Greater(t, len(r.Points), 2, "the leg turns")
				assert.Equal(t, leg.from, r.Points[0])
				assert.Equal(t, leg.to, r.Points[len(r.Points)-1])
				for i := 1; i < len(r.Points); i++ {
					where, in := legEntersZone(r.Points[i-1], r.Points[i], []*domain.Zone{zone})
					assert.False(t, in, "leg %d enters %s", i, where)
				}
				// Either way, the same length as from c.from to c.to.
				detour := math.Min(pathKm(c.from, c.to, c.left...), pathKm(c.from, c.to, c.right...))
				straight := domain.DistanceKm(leg.from, leg.to)
				assert.Greater(t, r.Km, straight)
				assert.LessOrEqual(t, r.Km, detour*1.01, "along the edge and round the nearer corners")
			})
		}
	}
}

// pathKm is the length of the path from a through via to b.
func pathKm(a, b domain.Location, via ...domain.Location) float64 {
	pts := append(append([]domain.Location{a}, via...), b)
	km := 0.0
	for i := 1; i < len(pts); i++ {
		km += domain.DistanceKm(pts[i-1], pts[i])
	}
	return km
}

// TestRouteThroughANarrowPassage: a passage between two zones wider than
// twice Margin but narrower than twice NodeMargin is open, and each zone's
// corners by it lie within the other's ring of moved corners; a leg from
// one side to the other turns at corners of both, through the passage,
// rather than going around the pair.
func TestRouteThroughANarrowPassage(t *testing.T) {
	t.Parallel()
	const gap = 0.05 // km
	west := nfz("west", box(seattle, 0.5, 0.3))
	east := nfz("east", box(offset(seattle, 0.2, 0.6+gap), 0.5, 0.3))
	zones := []*domain.Zone{west, east}
	a := airspace.New(zones)
	m := airspace.NodeMargin / 1000
	from, to := offset(seattle, -0.7, 0), offset(seattle, 1, 0.6+gap)
	// West's south-east corner, then east's south-west and north-west ones.
	through := pathKm(from, to, offset(seattle, -0.5-m, 0.3+m), offset(seattle, -0.3-m, 0.3+gap-m), offset(seattle, 0.7+m, 0.3+gap-m))
	for _, leg := range [][2]domain.Location{{from, to}, {to, from}} {
		r, err := a.Route(leg[0], leg[1], now)
		require.NoError(t, err)
		for i := 1; i < len(r.Points); i++ {
			where, in := legEntersZone(r.Points[i-1], r.Points[i], zones)
			assert.False(t, in, "leg %d enters %s", i, where)
		}
		assert.Greater(t, r.Km, domain.DistanceKm(from, to))
		assert.LessOrEqual(t, r.Km, through*1.01, "through the passage, not around: %v", r.Points)
	}
}

// Dispatch counts the mission as it plans it: where a zone that comes into
// force on the drone's way lengthens the pickup → dropoff leg, the range
// check counts the longer leg, so a drone with range for the straight one
// only is not sent (domain.PlanFor with this package's airspace).
func TestTheRangeCheckCountsTheLegAsPlanned(t *testing.T) {
	t.Parallel()
	pickup, drop := seattle, offset(seattle, 0, 4)
	z := nfz("tfr", box(offset(seattle, 0, 2), 1, 0.2))
	z.ValidFrom, z.ValidTo = now.Add(2*time.Minute), now.Add(2*time.Hour)
	air := airspace.New([]*domain.Zone{z})
	req := &domain.DeliveryRequest{PickupLocation: pickup, DropoffLocation: drop, PickupTime: now, Deadline: now.Add(3 * time.Hour),
		PackageInfo: domain.PackageInfo{Size: domain.SizeSmall, Weight: 1}}
	leg, err := air.Route(pickup, drop, now)
	require.NoError(t, err)
	home, err := air.RouteDuring(drop, pickup, now, now.Add(3*time.Hour))
	require.NoError(t, err)
	d := &domain.Drone{ID: "d", Location: pickup, HomeBase: pickup, Status: domain.DroneAvailable, CruiseSpeedMps: 15,
		MaxPayloadKg: 5, MaxPackageSize: domain.SizeLarge, BatteryPercent: 100}

	d.RangeKm = leg.Km + home.Km + 0.05 // enough for the straight leg only
	_, why := domain.PlanFor(d, 0, req, air, leg, now)
	assert.Contains(t, why, "exceeds range")

	d.RangeKm = 30
	p, why := domain.PlanFor(d, 0, req, air, leg, now)
	require.Empty(t, why)
	assert.Greater(t, p.Route.Dropoff.Km, leg.Km+0.1, "round the zone in force when the leg is flown")
}
