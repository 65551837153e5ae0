package geo

import "github.com/golang/geo/s2"

// RemainingKm is how far a drone at p has still to fly to the end of path
// if it goes on along it: to the point of path nearest to p, then along the
// rest of path. It is never less than the straight line from p to path's
// end, so a drone off its path is not promised a shorter way than the
// straight one. An empty path has nothing left to fly.
func RemainingKm(path []Point, p Point) float64 {
	if len(path) == 0 {
		return 0
	}
	straight := DistanceKm(p, path[len(path)-1])
	if len(path) < 2 {
		return straight
	}
	line := make(s2.Polyline, len(path))
	for i, q := range path {
		line[i] = s2Point(q)
	}
	at := s2Point(p)
	nearest, next := line.Project(at)
	km := float64(at.Distance(nearest)) * EarthRadiusKm
	if next < len(line) {
		km += float64(nearest.Distance(line[next])) * EarthRadiusKm
		for i := next; i+1 < len(path); i++ {
			km += DistanceKm(path[i], path[i+1])
		}
	}
	return max(km, straight)
}
