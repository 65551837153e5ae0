package geo

import (
	"math"

	"github.com/golang/geo/s1"
	"github.com/golang/geo/s2"
)

// clampLat keeps stored and query latitudes on the sphere: haversine would
// treat 95° as the reflected point across the pole, which no cell bound
// covers. NaN is left alone and makes the point non-finite.
func clampLat(lat float64) float64 {
	return min(max(lat, -90), 90)
}

// finite reports whether p is a place on the sphere; latitudes are clamped
// first, so only NaN or an infinite longitude makes it not.
func finite(p Point) bool {
	return !math.IsNaN(p.Lat) && !math.IsNaN(p.Lon) && !math.IsInf(p.Lon, 0)
}

func s2Point(p Point) s2.Point {
	return s2.PointFromLatLng(s2.LatLngFromDegrees(p.Lat, p.Lon))
}

// leafOf is the S2 leaf cell (about 1 cm across) holding p, which orders the
// index along the Hilbert curve so that every S2 cell, at any level, is one
// contiguous range of keys. Non-finite points get 0, which is not a valid
// cell id and sorts before every cell, so no search range ever reaches them.
func leafOf(p Point) s2.CellID {
	if !finite(p) {
		return 0
	}
	return s2.CellIDFromLatLng(s2.LatLngFromDegrees(p.Lat, p.Lon))
}

// cellHav is a lower bound on hav(d/R) for the distance d from the query
// target to any point of cell id, to compare with origin.hav of items.
//
// S2 measures distances as chord angles, the squared chord between unit
// vectors, and hav θ = sin²(θ/2) = (chord/2)², so the two scales differ only
// by a factor of 4. The chord is shaved by far more than the rounding in
// the S2 cell geometry, in converting degrees to unit vectors and in the
// haversine of the items (all near 1e-16 of the radius), so that no item
// measured a hair short can come out below its cell's bound; 1e-13 of the
// Earth's radius is under a micrometre.
func cellHav(target s2.Point, id s2.CellID) float64 {
	return havFromChord(s2.CellFromCellID(id).Distance(target))
}

// boundaryHav is a lower bound on hav(d/R) for the distance d from the query
// target, which lies in cell id, to any point outside the cell.
func boundaryHav(target s2.Point, id s2.CellID) float64 {
	return havFromChord(s2.CellFromCellID(id).BoundaryDistance(target))
}

func havFromChord(ca s1.ChordAngle) float64 {
	c := math.Sqrt(float64(ca))*(1-1e-12) - 1e-13
	if !(c > 0) {
		return -1 // nothing, not even a distance of zero, is below it
	}
	return c * c / 4
}
