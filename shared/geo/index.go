package geo

import (
	"iter"
	"math"
	"slices"
	"sync"
)

// Item is what Nearest yields, carrying a copy of the value so the caller can
// use it after the index lock has been released.
type Item[V any] struct {
	// ID lets the caller claim or update the item it picked.
	ID string
	// Point is where the item was when Nearest read its cell.
	Point Point
	// Value is the payload as it was when Nearest read its cell.
	Value V
}

// Index is a concurrency-safe grid index of items keyed by id.
//
// Bucketing items into fixed lat/lon cells keeps moves cheap (a drone that
// stays inside its cell is updated in place) while letting Nearest read only
// the cells around the query. Create it with NewIndex; the zero value has no
// grid.
type Index[V any] struct {
	g grid // immutable after NewIndex, so read without the lock

	mu    sync.RWMutex
	cells map[uint64]*cell[V]
	byID  map[string]slot
	// version changes on every write, so Nearest can tell that the count of
	// items it has read still means "all of them".
	version uint64
}

type cell[V any] struct{ items []Item[V] }

// slot locates an item so Upsert and Remove avoid scanning its cell.
type slot struct {
	key uint64
	i   int
}

// NewIndex returns an empty index whose cells are about cellDeg degrees on a
// side, or 0.02° when cellDeg <= 0 because that suits a city fleet (see
// defaultCellDeg).
func NewIndex[V any](cellDeg float64) *Index[V] {
	return &Index[V]{
		g:     newGrid(cellDeg),
		cells: make(map[uint64]*cell[V]),
		byID:  make(map[string]slot),
	}
}

// Upsert inserts the item or moves and replaces it, clamping the latitude to
// ±90° so that the grid can bound its distance.
func (x *Index[V]) Upsert(id string, p Point, v V) {
	p.Lat = clampLat(p.Lat)
	k := x.g.keyOf(p)
	it := Item[V]{ID: id, Point: p, Value: v}

	x.mu.Lock()
	defer x.mu.Unlock()
	x.version++
	if s, ok := x.byID[id]; ok {
		if s.key == k {
			x.cells[k].items[s.i] = it
			return
		}
		x.detach(s)
	}
	c := x.cells[k]
	if c == nil {
		c = &cell[V]{}
		x.cells[k] = c
	}
	x.byID[id] = slot{key: k, i: len(c.items)}
	c.items = append(c.items, it)
}

// Remove deletes the item and is a no-op when it is absent, so claiming an
// already-claimed drone is harmless.
func (x *Index[V]) Remove(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	s, ok := x.byID[id]
	if !ok {
		return
	}
	x.version++
	x.detach(s)
	delete(x.byID, id)
}

// detach swap-removes the item at s from its cell and drops the cell when it
// empties, so the map only holds occupied cells and Nearest can use its size
// to decide when walking rings costs more than scanning it. The caller holds
// the write lock and fixes up byID for the detached item.
func (x *Index[V]) detach(s slot) {
	c := x.cells[s.key]
	last := len(c.items) - 1
	if s.i != last {
		c.items[s.i] = c.items[last]
		x.byID[c.items[s.i].ID] = s
	}
	c.items[last] = Item[V]{} // let the GC have the value
	c.items = c.items[:last]
	if last == 0 {
		delete(x.cells, s.key)
	}
}

// Get returns the item's current position and value, which callers use to
// re-verify what Nearest yielded.
func (x *Index[V]) Get(id string) (Point, V, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	s, ok := x.byID[id]
	if !ok {
		var zero V
		return Point{}, zero, false
	}
	it := x.cells[s.key].items[s.i]
	return it.Point, it.Value, true
}

// Len returns the number of items, each id counted once however often it was
// upserted.
func (x *Index[V]) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.byID)
}

// Nearest yields every item in order of increasing great-circle distance from
// p, with that distance in km.
//
// The index is not locked while the caller's loop body runs, so the body may
// Upsert and Remove (for example to claim the drone it was given). The price
// is that each cell is read once, at the moment the search reaches it: an
// item that moves or changes while the loop runs may be yielded with stale
// data, late, twice or not at all, so callers must re-verify an item (with
// Get, or by a conditional claim) before acting on it. Breaking out of the
// loop early is cheap; only the cells needed so far have been read. The
// latitude of p is clamped to ±90°; items with non-finite coordinates come
// last with distance +Inf.
func (x *Index[V]) Nearest(p Point) iter.Seq2[Item[V], float64] {
	return func(yield func(Item[V], float64) bool) {
		p.Lat = clampLat(p.Lat)
		qr, qc := x.g.cellOf(p)
		s := search[V]{x: x, q: newOrigin(p)}
		s.run(qr, qc, yield)
	}
}

// search is the state of one Nearest iteration.
type search[V any] struct {
	x     *Index[V]
	q     origin
	items []Item[V] // copies of everything read so far
	cands minHeap   // k: hav of the distance, v: index into items
	keys  []uint64
}

func (s *search[V]) run(qr, qc int, yield func(Item[V], float64) bool) {
	x, g := s.x, s.x.g
	var version uint64
	probes := 0
	for r := 0; ; r++ {
		s.keys = g.appendRing(s.keys[:0], qr, qc, r)
		probes += len(s.keys)

		x.mu.RLock()
		if r == 0 {
			version = x.version
		}
		if r > 0 && probes > len(x.cells) {
			// Walking rings has now cost more than one pass over the
			// occupied cells (a sparse or far-away fleet, or rings grown
			// huge near a pole), so rank those cells instead.
			cells := s.rankCells(qr, qc, r)
			x.mu.RUnlock()
			s.runSparse(cells, yield)
			return
		}
		from := len(s.items)
		s.read(s.keys)
		allRead := x.version == version && len(s.items) == len(x.byID)
		x.mu.RUnlock()

		s.push(from)
		bound := math.Inf(1)
		if !allRead {
			bound = g.boundKm(qr, r+1)
		}
		if !s.emit(havFromKm(bound), yield) || math.IsInf(bound, 1) {
			return
		}
	}
}

// rankCells heaps the occupied cells not yet read by their distance bound;
// a heap rather than a sort because the caller usually stops after a few
// items. The caller holds the read lock. Cells that become occupied later are
// missed, which Nearest's contract allows.
func (s *search[V]) rankCells(qr, qc, r int) minHeap {
	g := s.x.g
	h := make(minHeap, 0, len(s.x.cells))
	for k := range s.x.cells {
		if g.ringOf(qr, qc, k) >= r {
			h = append(h, entry{k: g.cellHav(s.q, k), v: k})
		}
	}
	h.init()
	return h
}

// runSparse reads cells best-first: a candidate can be released once no
// unread cell could hold anything closer.
func (s *search[V]) runSparse(cells minHeap, yield func(Item[V], float64) bool) {
	x := s.x
	for len(cells) > 0 {
		// Every cell that could beat the best candidate so far has to be
		// read before anything is yielded, so read them under one lock.
		s.keys = append(s.keys[:0], cells.pop().v)
		for len(cells) > 0 && len(s.cands) > 0 && cells[0].k <= s.cands[0].k {
			s.keys = append(s.keys, cells.pop().v)
		}

		x.mu.RLock()
		from := len(s.items)
		s.read(s.keys)
		x.mu.RUnlock()

		s.push(from)
		bound := math.Inf(1)
		if len(cells) > 0 {
			bound = cells[0].k
		}
		if !s.emit(bound, yield) {
			return
		}
	}
	s.emit(math.Inf(1), yield)
}

// read copies the items of the given cells; the caller holds the read lock.
func (s *search[V]) read(keys []uint64) {
	n := 0
	for _, k := range keys {
		if c, ok := s.x.cells[k]; ok {
			n += len(c.items)
		}
	}
	s.items = slices.Grow(s.items, n) // one allocation instead of doubling
	for _, k := range keys {
		if c, ok := s.x.cells[k]; ok {
			s.items = append(s.items, c.items...)
		}
	}
}

// push measures items[from:] outside the lock and adds them to the candidates.
func (s *search[V]) push(from int) {
	n := len(s.items) - from
	if n == 0 {
		return
	}
	old := len(s.cands)
	s.cands = slices.Grow(s.cands, n)
	for i := from; i < len(s.items); i++ {
		h := s.q.hav(s.items[i].Point)
		if math.IsNaN(h) {
			h = math.Inf(1) // NaN would break the heap's ordering
		}
		s.cands = append(s.cands, entry{k: h, v: uint64(i)})
	}
	if n > old {
		s.cands.init()
		return
	}
	for i := old; i < len(s.cands); i++ {
		s.cands.up(i)
	}
}

// emit yields candidates whose hav is at most bound, reporting whether the
// caller wants more.
func (s *search[V]) emit(bound float64, yield func(Item[V], float64) bool) bool {
	for len(s.cands) > 0 && s.cands[0].k <= bound {
		e := s.cands.pop()
		d := math.Inf(1)
		if !math.IsInf(e.k, 1) {
			d = kmFromHav(e.k)
		}
		if !yield(s.items[e.v], d) {
			return false
		}
	}
	return true
}

// entry serves both heaps: candidates and cells, each keyed by hav of a
// distance.
type entry struct {
	k float64
	v uint64
}

// minHeap is hand-rolled because container/heap's interface calls and boxing
// show up when a query heaps thousands of candidates.
type minHeap []entry

func (h minHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h minHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[p].k <= h[i].k {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func (h minHeap) down(i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h[r].k < h[l].k {
			m = r
		}
		if h[i].k <= h[m].k {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

func (h *minHeap) pop() entry {
	old := *h
	top := old[0]
	last := len(old) - 1
	old[0] = old[last]
	*h = old[:last]
	h.down(0)
	return top
}
