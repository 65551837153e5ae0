package geo

import "github.com/golang/geo/s2"

// FirstCrossing finds an edge of loops that crosses another edge of them at
// a point inside both (a ring that crosses itself, or two rings that cross
// each other), using s2's edge index rather than comparing every pair. It
// returns the loop and edge index of the first such edge, and whether one
// was found. Edges that only share a vertex, as neighbours do, are fine.
func FirstCrossing(loops []*s2.Loop) (loop, edge int, found bool) {
	index := s2.NewShapeIndex()
	for _, l := range loops {
		index.Add(l)
	}
	q := s2.NewCrossingEdgeQuery(index)
	for li, l := range loops {
		for i := range l.NumEdges() {
			e := l.Edge(i)
			if len(q.CrossingsEdgeMap(e.V0, e.V1, s2.CrossingTypeInterior)) > 0 {
				return li, i, true
			}
		}
	}
	return 0, 0, false
}
