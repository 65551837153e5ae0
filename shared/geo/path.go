package geo

import (
	"slices"

	"github.com/golang/geo/s2"
)

// RemainingKm is how far a drone at p has still to fly to the end of path
// if it goes on along it: to the point of path nearest to p, then along the
// rest of path. Where two parts of path pass within pathTolerance of that
// nearest distance (the two sides of a narrow detour), the earlier part is
// taken, so a drone on its way out is not counted as on its way back. It
// is never less than the straight line from p to path's end, so a drone off
// its path is not promised a shorter way than the straight one. An empty
// path has nothing left to fly.
func RemainingKm(path []Point, p Point) float64 {
	if len(path) == 0 {
		return 0
	}
	straight := DistanceKm(p, path[len(path)-1])
	if len(path) < 2 {
		return straight
	}
	at := s2Point(p)
	vertices := make([]s2.Point, len(path))
	for i, q := range path {
		vertices[i] = s2Point(q)
	}
	dist := make([]float64, len(path)-1) // from p to each segment, in km
	for i := range dist {
		dist[i] = float64(s2.DistanceFromSegment(at, vertices[i], vertices[i+1])) * EarthRadiusKm
	}
	nearest := slices.Min(dist)
	seg := 0
	for dist[seg] > nearest+pathTolerance {
		seg++
	}
	on := s2.Project(at, vertices[seg], vertices[seg+1])
	km := dist[seg] + float64(on.Distance(vertices[seg+1]))*EarthRadiusKm
	for i := seg + 1; i+1 < len(path); i++ {
		km += DistanceKm(path[i], path[i+1])
	}
	return max(km, straight)
}

// pathTolerance is how much farther than the nearest part of a path an
// earlier part may be and still be taken as where the drone is.
const pathTolerance = 0.05
