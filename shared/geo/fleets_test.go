package geo

import (
	"math"
	"math/rand/v2"
)

// The fleet shapes shared by the tests and the benchmarks; kept apart from
// both so the benchmarks can also be run against an older index.

var seattle = Point{47.6062, -122.3321}

// discPoint draws uniformly from the disc of radius km around c, flat-earth,
// which is close enough for the small discs used here.
func discPoint(r *rand.Rand, c Point, km float64) Point {
	d := km * math.Sqrt(r.Float64()) / EarthRadiusKm / degToRad
	a := 2 * math.Pi * r.Float64()
	return Point{c.Lat + d*math.Cos(a), c.Lon + d*math.Sin(a)/math.Cos(c.Lat*degToRad)}
}
