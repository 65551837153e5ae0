// Package airspacetest is a domain.Airspace for tests and benchmarks of
// dispatch: circular no-fly zones that a leg passes by a detour. It is not
// the product's airspace, only a stand-in with the same contract.
package airspacetest

import (
	"math"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// Zone is a circular no-fly zone.
type Zone struct {
	Name     string
	Center   domain.Location
	RadiusKm float64
}

// Circles is an airspace of circular no-fly zones. A leg that passes
// through a zone is flown through one waypoint beside it, twice the
// radius from its centre; only the first zone a leg crosses is avoided,
// which is enough for tests that need a detour of a known length.
type Circles struct{ Zones []Zone }

var _ domain.Airspace = Circles{}

// Admit refuses a point inside a zone.
func (c Circles) Admit(field string, loc domain.Location, _ time.Time) error {
	for _, z := range c.Zones {
		if domain.DistanceKm(loc, z.Center) < z.RadiusKm {
			return domain.Unprocessable(field, "is inside the no-fly zone %s", z.Name)
		}
	}
	return nil
}

// Route goes around the first zone the straight leg crosses.
func (c Circles) Route(a, b domain.Location, _ time.Time) (domain.Route, error) {
	for _, z := range c.Zones {
		ax, ay := local(z.Center, a)
		bx, by := local(z.Center, b)
		dx, dy := bx-ax, by-ay
		l2 := dx*dx + dy*dy
		t := 0.0
		if l2 > 0 {
			t = math.Max(0, math.Min(1, -(ax*dx+ay*dy)/l2))
		}
		px, py := ax+t*dx, ay+t*dy
		d := math.Hypot(px, py)
		if d >= z.RadiusKm {
			continue
		}
		// The waypoint lies on the side of the centre the leg passes on.
		nx, ny := -dy, dx
		if n := math.Hypot(nx, ny); n > 0 {
			nx, ny = nx/n, ny/n
		} else {
			nx, ny = 1, 0
		}
		if px*nx+py*ny < 0 {
			nx, ny = -nx, -ny
		}
		w := global(z.Center, 2*z.RadiusKm*nx, 2*z.RadiusKm*ny)
		return domain.Route{Points: []domain.Location{a, w, b}, Km: domain.DistanceKm(a, w) + domain.DistanceKm(w, b)}, nil
	}
	return domain.StraightRoute(a, b), nil
}

const kmPerDeg = 111.32

// local is p in km east and north of o, on a plane tangent at o.
func local(o, p domain.Location) (x, y float64) {
	return (p.Longitude - o.Longitude) * kmPerDeg * math.Cos(o.Latitude*math.Pi/180), (p.Latitude - o.Latitude) * kmPerDeg
}

// global is the point x km east and y km north of o.
func global(o domain.Location, x, y float64) domain.Location {
	return domain.Location{Latitude: o.Latitude + y/kmPerDeg, Longitude: o.Longitude + x/(kmPerDeg*math.Cos(o.Latitude*math.Pi/180))}
}
