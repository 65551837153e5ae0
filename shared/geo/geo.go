// Package geo finds the drones nearest to a pickup point while the fleet keeps
// moving, so the dispatcher never has to scan every drone per request.
package geo

import "math"

// Point is a position on the Earth in decimal degrees.
type Point struct{ Lat, Lon float64 }

// EarthRadiusKm is the mean Earth radius used for all great-circle distances.
const EarthRadiusKm = 6371.0088

const degToRad = math.Pi / 180

// DistanceKm returns the great-circle (haversine) distance between a and b in kilometres.
func DistanceKm(a, b Point) float64 {
	return newOrigin(a).distanceKm(b)
}

// origin caches the trigonometry of one end of a distance so that Nearest,
// which measures one query against thousands of items, pays for it once while
// still producing bit-for-bit the values DistanceKm returns; callers can
// therefore compare what Nearest yields with their own DistanceKm results.
type origin struct {
	lat, lon, cosLat float64 // radians
}

func newOrigin(p Point) origin {
	lat := p.Lat * degToRad
	return origin{lat: lat, lon: p.Lon * degToRad, cosLat: math.Cos(lat)}
}

func (o origin) distanceKm(b Point) float64 { return kmFromHav(o.hav(b)) }

// hav is sin²(d/2R), which grows with the distance d; Nearest orders
// candidates by it so that only the items actually yielded pay for the
// square root and arcsine.
func (o origin) hav(b Point) float64 {
	lat := b.Lat * degToRad
	sinDLat := math.Sin((lat - o.lat) / 2)
	sinDLon := math.Sin((b.Lon*degToRad - o.lon) / 2)
	return sinDLat*sinDLat + o.cosLat*math.Cos(lat)*sinDLon*sinDLon
}

func kmFromHav(h float64) float64 {
	// Rounding can push h a hair past 1 for antipodal points, where Asin
	// would return NaN.
	return 2 * EarthRadiusKm * math.Asin(math.Sqrt(min(h, 1)))
}

// havFromKm inverts kmFromHav for Nearest's bounds, which are already
// shaved for rounding, so no further margin is needed.
func havFromKm(km float64) float64 {
	switch {
	case km < 0:
		return -1 // nothing, not even a distance of zero, is below it
	case km >= math.Pi*EarthRadiusKm:
		return math.Inf(1) // no two points are farther apart
	}
	s := math.Sin(km / (2 * EarthRadiusKm))
	return s * s
}
