package simulator

import (
	"math"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/geo"
)

// toward returns the point f of the way from a to b along the great circle,
// so that a drone flown by it gets strictly closer to b with every step, as
// the backend's haversine distances see it.
func toward(a, b geo.Point, f float64) geo.Point {
	if f <= 0 {
		return a
	}
	if f >= 1 {
		return b
	}
	delta := geo.DistanceKm(a, b) / geo.EarthRadiusKm
	if delta < 1e-12 {
		return b
	}
	const r = math.Pi / 180
	lat1, lon1, lat2, lon2 := a.Lat*r, a.Lon*r, b.Lat*r, b.Lon*r
	s := math.Sin(delta)
	ka, kb := math.Sin((1-f)*delta)/s, math.Sin(f*delta)/s
	x := ka*math.Cos(lat1)*math.Cos(lon1) + kb*math.Cos(lat2)*math.Cos(lon2)
	y := ka*math.Cos(lat1)*math.Sin(lon1) + kb*math.Cos(lat2)*math.Sin(lon2)
	z := ka*math.Sin(lat1) + kb*math.Sin(lat2)
	return geo.Point{Lat: math.Atan2(z, math.Hypot(x, y)) / r, Lon: math.Atan2(y, x) / r}
}

// landingKm is the backend's default arrival radius. A hop that would end
// inside it lands on the target instead: the backend counts the first report
// within the radius as the arrival, so a drone that stopped there short of
// the pad would be declared arrived at up to 50 m off, and its next report,
// on the pad, could land on a delivery it has since been given.
const landingKm = 0.05

// advance moves from p up to stepKm toward target (a little further to land
// on it, see landingKm) and reports whether it got there.
func advance(p, target geo.Point, stepKm float64) (geo.Point, bool) {
	d := geo.DistanceKm(p, target)
	if stepKm+landingKm >= d {
		return target, true
	}
	return toward(p, target, stepKm/d), false
}

func point(l domain.Location) geo.Point { return l.Point() }

// waypoint is a point a flight passes: a corner of the delivery's planned
// route, which the drone flies past, or a stop (the pickup, the dropoff),
// where it lands.
type waypoint struct {
	geo.Point
	stop bool
}

// flightPath is the waypoints of a delivery's flight: the corners of its
// planned route around no-fly zones (the backend plans each leg as a path
// over the zones' corners; a leg without one is straight), the pickup and
// the dropoff. The pickup leg's first point, where the drone was when it
// was planned, is left out: the flight starts where the drone is.
func flightPath(pickup, dropoff geo.Point, route *domain.PlannedRoute) []waypoint {
	var path []waypoint
	corners := func(r domain.Route) {
		for i := 1; i+1 < len(r.Points); i++ {
			path = append(path, waypoint{Point: r.Points[i].Point()})
		}
	}
	if route != nil {
		corners(route.Pickup)
	}
	path = append(path, waypoint{Point: pickup, stop: true})
	if route != nil {
		corners(route.Dropoff)
	}
	return append(path, waypoint{Point: dropoff, stop: true})
}

// stopsLeft counts the stops among the waypoints still to fly.
func stopsLeft(path []waypoint) int {
	n := 0
	for _, w := range path {
		if w.stop {
			n++
		}
	}
	return n
}

// pathKm is the length of the path from p through the waypoints.
func pathKm(p geo.Point, path []waypoint) float64 {
	km := 0.0
	for _, w := range path {
		km += geo.DistanceKm(p, w.Point)
		p = w.Point
	}
	return km
}
