// Package airspace is where drones may fly: the operator's service areas
// and no-fly zones as one snapshot (Airspace, a domain.Airspace) that admits
// pickups and dropoffs and routes legs around the zones in force, and the
// store-backed ports.Airspace (Store) that hands out the current snapshot.
//
// Geometry is s2's (github.com/golang/geo/s2): zones are polygons on the
// sphere whose edges are great-circle arcs, as the drones fly them, so
// containment and crossing tests agree with the great-circle lengths of the
// route.
//
// Routing is a shortest path over a visibility graph. Its nodes are the
// corners of the no-fly zones in force, each moved outwards by NodeMargin;
// its edges join two nodes (or a leg's end and a node) that see each other,
// that is, whose great-circle segment touches no zone grown by Margin. A*
// finds the shortest path over it, considering only segments tangent to
// the zones at their turning points (no shortest path turns anywhere else)
// and testing a segment for visibility only when the search reaches it. The
// path thus keeps about Margin clear of every zone's edge and NodeMargin
// clear of its corners, so a drone that drifts a little does not graze one.
// A point nearer a zone than its moved corners (a pickup admitted a little
// beyond Margin, or a corner of a zone close by) lies within their ring,
// where no segment to them is a tangent: from there any of them may be the
// first turn.
// Limits:
//   - The route is the shortest that turns at the moved corners; the
//     shortest around the grown zones would hug them, so a route can be
//     longer than it by a few times NodeMargin per turn.
//   - A leg whose end lies inside a zone grown by Margin has no route
//     (Admit refuses such pickups and dropoffs).
//   - Zones that touch or overlap are obstacles each, and a corner of one
//     that lies inside another is no node: a passage narrower than twice
//     Margin is closed.
//   - A corner sharper than about 30 degrees is moved out by at most four
//     times the margin, so a path passes such spikes closer than the margin
//     would say.
//   - The graph is built for city-sized zones (tens of corners each, a few
//     hundred in all). A route costs in proportion to the corners it must
//     consider; the benchmarks give the figures.
//   - s2 has no trouble with the antimeridian or the poles, but a zone must
//     cover less than a hemisphere (the decoder takes each ring as the
//     smaller region it bounds).
package airspace

import (
	"container/heap"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang/geo/s1"
	"github.com/golang/geo/s2"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/geo"
)

// Margin is how far a route keeps from the edges of a no-fly zone, and so
// how close to one a pickup or dropoff may be. NodeMargin, how far the
// route's turning points sit from the zone's corners, is larger, so that a
// path from corner to corner clears the grown zone rather than touching it.
const (
	Margin     = 15.0 // metres
	NodeMargin = 2 * Margin
)

// maxCornerStretch bounds how far a sharp corner is moved, in margins.
const maxCornerStretch = 4

// graphCacheSize bounds the graphs kept per snapshot, one per set of zones
// in force: temporary restrictions make a few sets a day.
const graphCacheSize = 16

// Airspace is one snapshot of the service areas and no-fly zones; it
// implements domain.Airspace and is safe for concurrent use.
type Airspace struct {
	areas []*zone // service areas
	nfz   []*zone // no-fly zones

	// timed says whether a no-fly zone has a window; without one the set
	// in force never changes and its graph is kept apart, found without
	// working out the set.
	timed  bool
	static struct {
		once sync.Once
		g    *graph
	}

	mu     sync.Mutex
	graphs map[string]*graph // by the set of no-fly zones in force
}

var _ domain.TimedAirspace = (*Airspace)(nil)

// zone is a zone ready for the geometry: its polygons as given, grown by
// Margin (no-fly zones only), and its corners moved out by NodeMargin, with
// the region they enclose.
type zone struct {
	z        *domain.Zone
	polygons []*s2.Polygon
	grown    []*s2.Polygon
	reach    []*reach
	corners  []corner
}

// corner is one possible turning point of a route, with its neighbours on
// the moved ring, which tell whether a segment to it is a tangent, and the
// index of its polygon in the zone.
type corner struct {
	p, prev, next s2.Point
	poly          int
}

// reach is a polygon grown to its moved corners. Seen from a point inside
// it (outside the polygon grown by Margin) the moved corners lie all
// around, so the tangent test would rule every one of them out. Few points
// fall within its bound, so the polygon is built when one first does.
type reach struct {
	loops []*s2.Loop // the moved rings
	bound s2.Rect
	once  sync.Once
	poly  *s2.Polygon // nil when a moved ring folds over itself: the bound alone then
}

func (r *reach) contains(ll s2.LatLng, p s2.Point) bool {
	if !r.bound.ContainsLatLng(ll) {
		return false
	}
	r.once.Do(func() {
		if _, _, bad := geo.FirstCrossing(r.loops); !bad {
			r.poly = s2.PolygonFromLoops(r.loops)
		}
	})
	return r.poly == nil || r.poly.ContainsPoint(p)
}

// New builds a snapshot of zones. Zones come from the store, where the
// decoder (wire.ParseZone) has validated them.
func New(zones []*domain.Zone) *Airspace {
	a := &Airspace{graphs: map[string]*graph{}}
	for _, z := range zones {
		switch z.Kind {
		case domain.ServiceArea:
			a.areas = append(a.areas, newZone(z, false))
		case domain.NoFlyZone:
			a.nfz = append(a.nfz, newZone(z, true))
			a.timed = a.timed || !z.ValidFrom.IsZero() || !z.ValidTo.IsZero()
		}
	}
	return a
}

func newZone(z *domain.Zone, obstacle bool) *zone {
	out := &zone{z: z}
	for pi, p := range z.Polygons {
		loops := make([]*s2.Loop, len(p))
		for i, ring := range p {
			loops[i] = loopOf(ring)
		}
		poly := s2.PolygonFromLoops(slices.Clone(loops))
		out.polygons = append(out.polygons, poly)
		if !obstacle {
			continue
		}
		grownLoops := make([]*s2.Loop, len(loops))
		for i, l := range loops {
			pts := offsetLoop(l, poly, Margin)
			grownLoops[i] = s2.LoopFromPoints(pts)
			grownLoops[i].Normalize()
		}
		if _, _, bad := geo.FirstCrossing(grownLoops); bad {
			// Growing a ring with a narrow inlet can fold it over
			// itself; the zone as given is then the obstacle.
			out.grown = append(out.grown, poly)
		} else {
			out.grown = append(out.grown, s2.PolygonFromLoops(grownLoops))
		}
		r := &reach{loops: make([]*s2.Loop, len(loops)), bound: s2.EmptyRect()}
		for li, l := range loops {
			pts := offsetLoop(l, poly, NodeMargin)
			for i, p := range pts {
				out.corners = append(out.corners, corner{p: p, prev: pts[(i+len(pts)-1)%len(pts)], next: pts[(i+1)%len(pts)], poly: pi})
			}
			r.loops[li] = s2.LoopFromPoints(pts)
			r.loops[li].Normalize()
			r.bound = r.bound.Union(r.loops[li].RectBound())
		}
		out.reach = append(out.reach, r)
	}
	return out
}

// loopOf turns a closed GeoJSON ring into an s2 loop enclosing the smaller
// of the two regions the ring bounds.
func loopOf(ring []domain.Position) *s2.Loop {
	pts := make([]s2.Point, 0, len(ring)-1)
	for _, pos := range ring[:len(ring)-1] {
		pts = append(pts, pointOf(pos[1], pos[0]))
	}
	l := s2.LoopFromPoints(pts)
	l.Normalize()
	return l
}

func pointOf(lat, lon float64) s2.Point { return s2.PointFromLatLng(s2.LatLngFromDegrees(lat, lon)) }

func locationOf(p s2.Point) domain.Location {
	ll := s2.LatLngFromPoint(p)
	return domain.Location{Latitude: ll.Lat.Degrees(), Longitude: ll.Lng.Degrees()}
}

// metres is a distance on the Earth as an angle at its centre.
func metres(m float64) s1.Angle { return s1.Angle(m / (geo.EarthRadiusKm * 1000)) }

// offsetLoop moves every vertex of l away from poly's interior by about
// m metres: along the bisector of its two edges, by m over the sine of
// half the corner's angle (so the moved edges lie m from the old ones),
// at most maxCornerStretch times m.
func offsetLoop(l *s2.Loop, poly *s2.Polygon, m float64) []s2.Point {
	n := l.NumVertices()
	out := make([]s2.Point, n)
	for i := range n {
		v, prev, next := l.Vertex(i), l.Vertex(i+n-1), l.Vertex(i+1)
		tp, tn := tangent(v, prev), tangent(v, next)
		d := tp.Add(tn.Vector)
		stretch := 1.0
		if d.Norm() < 1e-9 {
			// A straight corner: move square to the edge.
			d = v.Cross(tp.Vector)
		} else {
			half := tp.Angle(tn.Vector).Radians() / 2
			stretch = min(1/math.Sin(half), maxCornerStretch)
		}
		dir := s2.Point{Vector: d.Normalize()}
		// The bisector points into the corner's angle; the zone is on
		// that side of a convex corner and on the other of a reflex one.
		if poly.ContainsPoint(move(v, dir, metres(0.5))) {
			dir = s2.Point{Vector: dir.Mul(-1)}
		}
		out[i] = move(v, dir, metres(m*stretch))
	}
	return out
}

// tangent is the unit direction at v of the great circle towards p.
func tangent(v, p s2.Point) s2.Point {
	t := p.Sub(v.Mul(v.Dot(p.Vector)))
	return s2.Point{Vector: t.Normalize()}
}

// move goes from v along the tangent direction t by the angle a.
func move(v, t s2.Point, a s1.Angle) s2.Point {
	r := a.Radians()
	return s2.Point{Vector: v.Mul(math.Cos(r)).Add(t.Mul(math.Sin(r))).Normalize()}
}

// Admit implements domain.Airspace: loc must lie outside every no-fly zone
// in force at t (grown by Margin) and, when any service area is in force,
// inside one of them.
func (a *Airspace) Admit(field string, loc domain.Location, t time.Time) error {
	ll := s2.LatLngFromDegrees(loc.Latitude, loc.Longitude)
	p := s2.PointFromLatLng(ll)
	for _, z := range a.nfz {
		if !z.z.ActiveAt(t) {
			continue
		}
		for i, g := range z.grown {
			if !g.RectBound().ContainsLatLng(ll) || !g.ContainsPoint(p) {
				continue
			}
			if z.polygons[i].ContainsPoint(p) {
				return domain.Unprocessable(field, "is inside no-fly zone %s", z.z.Label())
			}
			return domain.Unprocessable(field, "is within %g m of no-fly zone %s", Margin, z.z.Label())
		}
	}
	if area, limited := a.areaAt(ll, p, t); limited && area == nil {
		return domain.Unprocessable(field, "is outside every service area")
	}
	return nil
}

var _ domain.AreaLocator = (*Airspace)(nil)

// AreaOf implements domain.AreaLocator.
func (a *Airspace) AreaOf(loc domain.Location, t time.Time) string {
	ll := s2.LatLngFromDegrees(loc.Latitude, loc.Longitude)
	if area, _ := a.areaAt(ll, s2.PointFromLatLng(ll), t); area != nil {
		return area.z.ID
	}
	return ""
}

// areaAt returns the first service area in force at t that holds the
// point (ll, and p, the same point), or nil; limited says whether any
// service area is in force at t at all.
func (a *Airspace) areaAt(ll s2.LatLng, p s2.Point, t time.Time) (area *zone, limited bool) {
	for _, z := range a.areas {
		if !z.z.ActiveAt(t) {
			continue
		}
		limited = true
		for _, poly := range z.polygons {
			if poly.RectBound().ContainsLatLng(ll) && poly.ContainsPoint(p) {
				return z, true
			}
		}
	}
	return nil, limited
}

// Route implements domain.Airspace: the straight leg when it touches no
// no-fly zone in force at t, else the shortest path around them over the
// visibility graph (see the package documentation).
func (a *Airspace) Route(from, to domain.Location, t time.Time) (domain.Route, error) {
	return a.RouteDuring(from, to, t, t)
}

// Timed implements domain.TimedAirspace: whether a no-fly zone is in force
// for a window only.
func (a *Airspace) Timed() bool { return a.timed }

// RouteDuring implements domain.TimedAirspace: Route round every no-fly
// zone in force at any time in [start, end].
func (a *Airspace) RouteDuring(from, to domain.Location, start, end time.Time) (domain.Route, error) {
	g := a.graphDuring(start, end)
	if g == nil {
		return domain.StraightRoute(from, to), nil
	}
	// A problem's detail is its field followed by the message, so the
	// messages read on from "route".
	pa, pb := pointOf(from.Latitude, from.Longitude), pointOf(to.Latitude, to.Longitude)
	for _, end := range []struct {
		what string
		p    s2.Point
	}{{"starts", pa}, {"ends", pb}} {
		if z := g.inside(end.p); z != nil {
			return domain.Route{}, domain.Unprocessable("route", "%s inside no-fly zone %s or within %g m of it", end.what, z.z.Label(), Margin)
		}
	}
	if g.clear(pa, pb) {
		return domain.StraightRoute(from, to), nil
	}
	path, ok := g.search(pa, pb)
	if !ok {
		return domain.Route{}, domain.Unprocessable("route", "cannot be found: no path leads around the no-fly zones from %.5f,%.5f to %.5f,%.5f",
			from.Latitude, from.Longitude, to.Latitude, to.Longitude)
	}
	r := domain.Route{Points: make([]domain.Location, 0, len(path)+2)}
	r.Points = append(r.Points, from)
	for _, n := range path {
		r.Points = append(r.Points, g.locs[n])
	}
	r.Points = append(r.Points, to)
	for i := 1; i < len(r.Points); i++ {
		r.Km += domain.DistanceKm(r.Points[i-1], r.Points[i])
	}
	return r, nil
}

// graphDuring returns the graph of the no-fly zones in force at any time in
// [start, end], building it on first use; nil when none is.
func (a *Airspace) graphDuring(start, end time.Time) *graph {
	if !a.timed {
		a.static.once.Do(func() {
			if len(a.nfz) > 0 {
				a.static.g = newGraph(a.nfz)
			}
		})
		return a.static.g
	}
	var key strings.Builder
	var active []*zone
	for i, z := range a.nfz {
		if z.z.ActiveDuring(start, end) {
			active = append(active, z)
			key.WriteString(strconv.Itoa(i))
			key.WriteByte(',')
		}
	}
	if len(active) == 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if g, ok := a.graphs[key.String()]; ok {
		return g
	}
	if len(a.graphs) >= graphCacheSize {
		clear(a.graphs)
	}
	g := newGraph(active)
	a.graphs[key.String()] = g
	return g
}

// graph is the visibility graph of one set of no-fly zones. Which nodes a
// node might turn to is learnt when a search first reaches it; whether it
// sees them is tested only when a search needs the edge (see search).
type graph struct {
	obstacles []obstacle
	nodes     []corner
	locs      []domain.Location
	owner     []int   // each node's obstacle
	near      [][]int // the other obstacles whose reach holds each node
	adj       []lazyEdges
	buffers   sync.Pool // of *searchBuffers
}

// obstacle is one grown polygon with the bounds that let most tests skip
// it without looking at its edges, and the reach of its moved corners.
type obstacle struct {
	zone       *zone
	poly       *s2.Polygon
	bound      s2.Rect
	loops      []*s2.Loop
	loopBounds []s2.Rect
	reach      *reach
}

type lazyEdges struct {
	once  sync.Once
	edges []edge
}

// edge leads to node to over an angle of rad radians at the Earth's
// centre: the search compares angles, and the route's length is measured
// in kilometres afterwards.
type edge struct {
	to  int
	rad float64
}

func newGraph(zones []*zone) *graph {
	g := &graph{}
	first := make([]int, len(zones)) // each zone's first obstacle
	for zi, z := range zones {
		first[zi] = len(g.obstacles)
		for i, p := range z.grown {
			o := obstacle{zone: z, poly: p, bound: p.RectBound(), loops: p.Loops(), reach: z.reach[i]}
			for _, l := range o.loops {
				o.loopBounds = append(o.loopBounds, l.RectBound())
			}
			g.obstacles = append(g.obstacles, o)
		}
	}
	for zi, z := range zones {
		for _, c := range z.corners {
			if g.inside(c.p) == nil {
				own := first[zi] + c.poly
				g.nodes = append(g.nodes, c)
				g.locs = append(g.locs, locationOf(c.p))
				g.owner = append(g.owner, own)
				// A node lies on its own moved ring, where the test holds.
				g.near = append(g.near, g.reaching(c.p, own))
			}
		}
	}
	g.adj = make([]lazyEdges, len(g.nodes))
	g.buffers.New = func() any {
		return &searchBuffers{prev: make([]int, len(g.nodes)+1), open: make(queue, 0, 4*len(g.nodes))}
	}
	return g
}

// searchBuffers are what one search works in, kept for the next.
type searchBuffers struct {
	prev []int
	open queue
}

// inside returns the zone whose grown polygon holds p, or nil.
func (g *graph) inside(p s2.Point) *zone {
	ll := s2.LatLngFromPoint(p)
	for i := range g.obstacles {
		o := &g.obstacles[i]
		if o.bound.ContainsLatLng(ll) && o.poly.ContainsPoint(p) {
			return o.zone
		}
	}
	return nil
}

// reaching lists the obstacles other than except whose reach holds p: from
// p, their nodes are candidates whether or not they are tangents.
func (g *graph) reaching(p s2.Point, except int) []int {
	ll := s2.LatLngFromPoint(p)
	var out []int
	for i := range g.obstacles {
		if i != except && g.obstacles[i].reach.contains(ll, p) {
			out = append(out, i)
		}
	}
	return out
}

// clear reports whether the great-circle segment from p to q, whose ends
// lie outside every grown zone, touches none: such a segment can enter a
// zone only by crossing or touching its boundary. A segment that meets a
// boundary only at a vertex counts as touching it.
func (g *graph) clear(p, q s2.Point) bool {
	rb := s2.NewRectBounder()
	rb.AddPoint(p)
	rb.AddPoint(q)
	seg := rb.RectBound()
	var crosser *s2.EdgeCrosser
	for i := range g.obstacles {
		o := &g.obstacles[i]
		if !o.bound.Intersects(seg) {
			continue
		}
		for j, l := range o.loops {
			if !o.loopBounds[j].Intersects(seg) {
				continue
			}
			if crosser == nil {
				crosser = s2.NewEdgeCrosser(p, q)
			}
			vs := l.Vertices()
			crosser.RestartAt(vs[len(vs)-1])
			for _, v := range vs {
				if crosser.ChainCrossingSign(v) != s2.DoNotCross {
					return false
				}
			}
		}
	}
	return true
}

// tangent reports whether a segment from p to node n may be part of a
// shortest path: one that turns at n must touch n's ring there, with both
// of n's neighbours on one side of the line from p through n. Other
// segments need not be tested for visibility at all. That holds only for a
// p outside the ring: near lists the obstacles whose reach holds p, and
// their nodes pass.
func (g *graph) tangent(p s2.Point, near []int, n int) bool {
	if slices.Contains(near, g.owner[n]) {
		return true
	}
	c := g.nodes[n]
	before, after := s2.RobustSign(p, c.p, c.prev), s2.RobustSign(p, c.p, c.next)
	// Indeterminate: p lies on the line of one of n's edges, as n's
	// neighbour does, and the segment runs along the ring.
	return before == after || before == s2.Indeterminate || after == s2.Indeterminate
}

// candidates lists the nodes a path from p might turn at next, with their
// distances as angles; whether p sees them is left to the search. near is
// what reaching says of p. From a node (self ≥ 0) the line must be tangent
// at both ends, as every segment between two turns of a shortest path is.
func (g *graph) candidates(p s2.Point, near []int, self int) []edge {
	var out []edge
	for n := range g.nodes {
		if n != self && g.tangent(p, near, n) && (self < 0 || g.tangent(g.nodes[n].p, g.near[n], self)) {
			out = append(out, edge{n, float64(p.Angle(g.nodes[n].p.Vector))})
		}
	}
	return out
}

// edges lists the nodes node n sees and might turn at next. They are
// tested once per graph, when a search first reaches n, and kept: the
// searches after it pay only for the edges of their own ends.
func (g *graph) edges(n int) []edge {
	e := &g.adj[n]
	e.once.Do(func() {
		for _, c := range g.candidates(g.nodes[n].p, g.near[n], n) {
			if g.clear(g.nodes[n].p, g.nodes[c.to].p) {
				e.edges = append(e.edges, c)
			}
		}
	})
	return e.edges
}

// search runs A* from a to b over the nodes with the great-circle distance
// to b as its estimate, returning the nodes of the shortest path between
// them. Edges are tested lazily: an entry of the open set is a candidate
// edge, and whether its ends see each other is tested only when it comes
// first, so the costly test runs for the few edges near the answer rather
// than for every pair of nodes. A candidate that fails is dropped; the
// estimate stays a lower bound, so the first path to reach b is the
// shortest.
func (g *graph) search(a, b s2.Point) ([]int, bool) {
	goal := len(g.nodes)
	const start = -1
	// The chord is never longer than the arc, so it is a lower bound of the
	// remaining angle, and cheaper than the angle itself.
	h := func(n int) float64 { return g.nodes[n].p.Sub(b.Vector).Norm() }
	at := func(n int) s2.Point {
		if n == start {
			return a
		}
		return g.nodes[n].p
	}
	buf := g.buffers.Get().(*searchBuffers)
	prev, q := buf.prev, buf.open[:0]
	defer func() {
		buf.open = q[:0] // with whatever room the search added
		g.buffers.Put(buf)
	}()
	for i := range prev {
		prev[i] = unreached
	}
	for _, e := range g.candidates(a, g.reaching(a, -1), start) {
		q = append(q, item{node: e.to, from: start, g: e.rad, f: e.rad + h(e.to)})
	}
	heap.Init(&q)
	for q.Len() > 0 {
		it := heap.Pop(&q).(item)
		if prev[it.node] != unreached {
			continue
		}
		// Edges between nodes were tested when they were listed.
		if it.from == start || it.node == goal {
			to := b
			if it.node != goal {
				to = g.nodes[it.node].p
			}
			if !g.clear(at(it.from), to) {
				continue
			}
		}
		prev[it.node] = it.from
		if it.node == goal {
			var path []int
			for p := prev[goal]; p != start; p = prev[p] {
				path = append(path, p)
			}
			slices.Reverse(path)
			return path, true
		}
		n := it.node
		d := float64(g.nodes[n].p.Angle(b.Vector))
		heap.Push(&q, item{node: goal, from: n, g: it.g + d, f: it.g + d})
		for _, e := range g.edges(n) {
			if prev[e.to] == unreached {
				heap.Push(&q, item{node: e.to, from: n, g: it.g + e.rad, f: it.g + e.rad + h(e.to)})
			}
		}
	}
	return nil, false
}

// unreached marks a node the search has not reached by a tested edge.
const unreached = -2

// item is a candidate edge of the search: reaching node from from, at the
// cost g so far and the estimated total f.
type item struct {
	node, from int
	g, f       float64
}

// queue is A*'s open set, ordered by estimated total length.
type queue []item

func (q queue) Len() int           { return len(q) }
func (q queue) Less(i, j int) bool { return q[i].f < q[j].f }
func (q queue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)        { *q = append(*q, x.(item)) }
func (q *queue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}

// String describes the snapshot for logs.
func (a *Airspace) String() string {
	return fmt.Sprintf("%d service areas, %d no-fly zones", len(a.areas), len(a.nfz))
}
