package geo

import (
	"iter"
	"math"
	"sort"
	"sync"

	"github.com/golang/geo/s2"
	"github.com/google/btree"
)

// Item is what Nearest yields, carrying a copy of the value so the caller can
// use it after the index lock has been released.
type Item[V any] struct {
	// ID lets the caller claim or update the item it picked.
	ID string
	// Point is where the item was when Nearest read it.
	Point Point
	// Value is the payload as it was when Nearest read it.
	Value V
}

// defaultLeafCap is how many items a search reads from a cell before it
// splits the cell in four instead. Each read is a B-tree seek plus a short
// ordered walk, so reading a few items costs about as much as splitting;
// S2's own closest-point query in C++ uses 13.
const defaultLeafCap = 16

// Index is a concurrency-safe spatial index of items keyed by id, whose
// nearest-first search costs in proportion to the answer rather than to how
// densely the items are packed.
//
// Items are kept in a B-tree ordered by the S2 leaf cell of their position
// (github.com/golang/geo), that is along S2's Hilbert curve, so every S2 cell
// at every level is one contiguous range of keys. A search walks the cell
// hierarchy best-first from the six cube faces, by each cell's exact
// distance bound from S2: a cell holding few items is read, a fuller one is
// split into its four children. Cells thus adapt to the density where and
// when the search needs them, with no tuning and no rebuild, and a region
// emptied of items costs one seek per empty cell however many items it once
// held. A move or a removal is one B-tree update.
//
// Neither library offers this as such: golang/geo has no point index or
// closest-point query (its ShapeIndex is rebuilt after removals and its
// queries return a finished list), and google/btree knows nothing of
// geometry; the search over both is the one in this file.
//
// Create it with NewIndex; the zero value is not usable.
type Index[V any] struct {
	mu   sync.RWMutex
	tree *btree.BTreeG[entry[V]]
	// cells holds each item's leaf cell, which with its id is the item's
	// key in tree; the item itself is kept only there.
	cells map[string]s2.CellID

	searches sync.Pool // of *search[V]

	leafCap int // immutable after NewIndex, so read without the lock
}

// entry is an item under its key (cell, id); ids break ties between items
// in the same leaf cell.
type entry[V any] struct {
	cell s2.CellID // leafOf(p)
	id   string
	p    Point
	v    V
}

func (e entry[V]) item() Item[V] { return Item[V]{ID: e.id, Point: e.p, Value: e.v} }

func lessEntry[V any](a, b entry[V]) bool {
	if a.cell != b.cell {
		return a.cell < b.cell
	}
	return a.id < b.id
}

// btreeDegree gives nodes of 31 to 63 items: wide enough for a shallow tree
// at 100,000 items, narrow enough that an insert shifts little.
const btreeDegree = 32

// NewIndex returns an empty index.
func NewIndex[V any]() *Index[V] {
	return newIndex[V](defaultLeafCap)
}

func newIndex[V any](leafCap int) *Index[V] {
	return &Index[V]{
		tree:    btree.NewG(btreeDegree, lessEntry[V]),
		cells:   make(map[string]s2.CellID),
		leafCap: max(leafCap, 1),
	}
}

// Upsert inserts the item or moves and replaces it, clamping the latitude to
// ±90° so that the cell bounds hold for it.
func (x *Index[V]) Upsert(id string, p Point, v V) {
	p.Lat = clampLat(p.Lat)
	e := entry[V]{cell: leafOf(p), id: id, p: p, v: v}

	x.mu.Lock()
	defer x.mu.Unlock()
	if old, ok := x.cells[id]; ok && old != e.cell {
		x.tree.Delete(entry[V]{cell: old, id: id})
	}
	x.tree.ReplaceOrInsert(e)
	x.cells[id] = e.cell
}

// Remove deletes the item and is a no-op when it is absent, so claiming an
// already-claimed drone is harmless.
func (x *Index[V]) Remove(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	old, ok := x.cells[id]
	if !ok {
		return
	}
	x.tree.Delete(entry[V]{cell: old, id: id})
	delete(x.cells, id)
}

// Get returns the item's current position and value, which callers use to
// re-verify what Nearest yielded.
func (x *Index[V]) Get(id string) (Point, V, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	cell, ok := x.cells[id]
	if !ok {
		var none V
		return Point{}, none, false
	}
	e, _ := x.tree.Get(entry[V]{cell: cell, id: id})
	return e.p, e.v, true
}

// Has reports whether the item is in the index, for a caller that needs
// no more.
func (x *Index[V]) Has(id string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.cells[id]
	return ok
}

// Len returns the number of items, each id counted once however often it was
// upserted.
func (x *Index[V]) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.cells)
}

// Nearest yields every item in order of increasing great-circle distance from
// p, with that distance in km, bit for bit what DistanceKm returns.
//
// The index is not locked while the caller's loop body runs, so the body may
// Upsert and Remove (for example to claim the drone it was given). The price
// is that each cell is read at the moment the search reaches it: an item
// that moves or changes while the loop runs may be yielded with stale data,
// late, twice or not at all, so callers must re-verify an item (with Get, or
// by a conditional claim) before acting on it. Breaking out of the loop
// early is cheap; only the cells needed so far have been read. The latitude
// of p is clamped to ±90°; items with non-finite coordinates come last with
// distance +Inf, and from a non-finite p every item is at distance +Inf.
func (x *Index[V]) Nearest(p Point) iter.Seq2[Item[V], float64] {
	return func(yield func(Item[V], float64) bool) {
		// The search state is pooled: dispatch runs one search per
		// delivery, and its heaps would otherwise be most of its garbage.
		s, _ := x.searches.Get().(*search[V])
		if s == nil {
			s = &search[V]{x: x}
		}
		defer x.searches.Put(s)
		defer s.reset()
		s.all(p, yield)
	}
}

// search is the state of one Nearest iteration.
type search[V any] struct {
	x      *Index[V]
	q      origin
	target s2.Point
	todo   minHeap[region]  // what is not yet read, by a lower bound on hav
	cands  minHeap[Item[V]] // items read, not yet yielded, by hav
	buf    []entry[V]

	read int // entries copied out of the tree, for the tests of its cost
}

// region is a part of the sphere that the search has not read: the cell id,
// or everything outside it.
type region struct {
	id      s2.CellID
	outside bool
}

// reset drops what the last search held, values included, so that a pooled
// search keeps no drone alive.
func (s *search[V]) reset() {
	clear(s.todo)
	clear(s.cands)
	clear(s.buf)
	s.todo, s.cands, s.buf = s.todo[:0], s.cands[:0], s.buf[:0]
	s.read = 0
}

func (s *search[V]) all(p Point, yield func(Item[V], float64) bool) {
	p.Lat = clampLat(p.Lat)
	s.q = newOrigin(p)
	if !finite(p) {
		s.unmeasured(math.MaxUint64, yield)
		return
	}
	s.target = s2Point(p)
	s.start(leafOf(p))
	if s.run(yield) {
		s.unmeasured(1, yield) // the items filed under cell 0
	}
}

// start finds the smallest cell around the query that holds at most
// leafCap items and takes them as the first candidates, leaving the rest of
// the sphere as one region outside it. In a dense fleet that cell is many
// levels below the cube face, and one walk each way along the Hilbert curve
// from the query finds it, where splitting cells from the face down would
// cost a B-tree seek per level.
//
// The walks read at most leafCap+1 items each, the nearest to the query's
// leaf cell in key order. A cell around the query is a range of keys around
// it, so the items of the walks inside that range are all of its items
// unless a walk was cut short inside the range, which takes more than
// leafCap of them: where they number at most leafCap, they are exact.
func (s *search[V]) start(leaf s2.CellID) {
	x, limit := s.x, s.x.leafCap+1
	pivot := entry[V]{cell: leaf}
	x.mu.RLock()
	x.tree.AscendGreaterOrEqual(pivot, func(e entry[V]) bool {
		s.buf = append(s.buf, e)
		return len(s.buf) < limit
	})
	ahead := len(s.buf)
	x.tree.DescendLessOrEqual(pivot, func(e entry[V]) bool {
		if e.cell != leaf || e.id != "" { // the pivot itself came ahead
			s.buf = append(s.buf, e)
		}
		return len(s.buf)-ahead < limit
	})
	x.mu.RUnlock()
	s.read += len(s.buf)
	after, before := s.buf[:ahead], s.buf[ahead:]
	within := func(c s2.CellID) int {
		lo, hi := c.RangeMin(), c.RangeMax()
		n := 0
		for _, e := range after {
			if e.cell <= hi {
				n++
			}
		}
		for _, e := range before {
			if e.cell >= lo {
				n++
			}
		}
		return n
	}
	// Cells shrink, and so hold fewer items, level by level.
	level := sort.Search(s2.MaxLevel+1, func(l int) bool { return within(leaf.Parent(l)) <= x.leafCap })
	if level > s2.MaxLevel {
		// More than leafCap items stacked in the query's own leaf cell:
		// explore reads it whole.
		s.todo.push(-1, region{id: leaf})
	} else {
		home := leaf.Parent(level)
		lo, hi := home.RangeMin(), home.RangeMax()
		for _, e := range s.buf {
			if e.cell >= lo && e.cell <= hi {
				s.cands.push(s.q.hav(e.p), e.item())
			}
		}
		leaf = home
	}
	s.todo.push(boundaryHav(s.target, leaf), region{id: leaf, outside: true})
}

// run yields every finite item nearest first and reports whether the caller
// wants more.
func (s *search[V]) run(yield func(Item[V], float64) bool) bool {
	for {
		s.explore()
		if len(s.cands) == 0 {
			return true // explore stops only when nothing is left to read
		}
		// A candidate can go once nothing unread could be closer.
		bound := math.Inf(1)
		if len(s.todo) > 0 {
			bound = s.todo[0].k
		}
		for len(s.cands) > 0 && s.cands[0].k <= bound {
			c := s.cands.pop()
			if !yield(c.v, kmFromHav(c.k)) {
				return false
			}
		}
	}
}

// explore reads regions, nearest bound first, until the best candidate is
// no farther than everything unread, under one read lock because nothing
// can be yielded before then anyway.
//
// Every bound pushed is at least the bound of the region it came from: a
// part is never nearer than the whole, and taking the larger keeps rounding
// from making it so, which keeps yielded distances in order even while
// writers move items between the reads.
func (s *search[V]) explore() {
	x := s.x
	x.mu.RLock()
	defer x.mu.RUnlock()
	for len(s.todo) > 0 && (len(s.cands) == 0 || s.todo[0].k < s.cands[0].k) {
		r := s.todo.pop()
		id := r.v.id
		if r.v.outside {
			// Outside a cell is its three siblings and outside its
			// parent, or the other five faces outside a face.
			if id.Level() == 0 {
				for f := range 6 {
					if face := s2.CellIDFromFace(f); face != id {
						s.todo.push(max(cellHav(s.target, face), r.k), region{id: face})
					}
				}
				continue
			}
			parent := id.Parent(id.Level() - 1)
			for _, sib := range parent.Children() {
				if sib != id {
					s.todo.push(max(cellHav(s.target, sib), r.k), region{id: sib})
				}
			}
			s.todo.push(max(boundaryHav(s.target, parent), r.k), region{id: parent, outside: true})
			continue
		}

		last := id.RangeMax()
		// A leaf cell cannot be split, so items stacked on one spot are
		// read together however many there are.
		all := id.IsLeaf()
		s.buf = s.buf[:0]
		x.tree.AscendGreaterOrEqual(entry[V]{cell: id.RangeMin()}, func(e entry[V]) bool {
			if e.cell > last {
				return false
			}
			s.buf = append(s.buf, e)
			return all || len(s.buf) <= x.leafCap
		})
		s.read += len(s.buf)
		if all || len(s.buf) <= x.leafCap {
			for _, e := range s.buf {
				s.cands.push(s.q.hav(e.p), e.item())
			}
			continue
		}
		for _, child := range id.Children() {
			s.todo.push(max(cellHav(s.target, child), r.k), region{id: child})
		}
	}
}

// unmeasured yields, at distance +Inf, the items filed under cells below
// end: those with non-finite coordinates when end is 1. It reads leafCap
// items at a time, continuing after the last one yielded.
func (s *search[V]) unmeasured(end s2.CellID, yield func(Item[V], float64) bool) {
	x := s.x
	var from entry[V]
	first := true
	for {
		s.buf = s.buf[:0]
		x.mu.RLock()
		x.tree.AscendGreaterOrEqual(from, func(e entry[V]) bool {
			if e.cell >= end {
				return false
			}
			if first || lessEntry(from, e) {
				s.buf = append(s.buf, e)
			}
			return len(s.buf) < x.leafCap
		})
		x.mu.RUnlock()
		if len(s.buf) == 0 {
			return
		}
		for _, e := range s.buf {
			if !yield(e.item(), math.Inf(1)) {
				return
			}
		}
		from, first = s.buf[len(s.buf)-1], false
	}
}

// keyed is a heap entry: candidates and cells are both ordered by hav of a
// distance.
type keyed[T any] struct {
	k float64
	v T
}

// minHeap is hand-rolled because container/heap's interface calls and boxing
// show up when a query heaps hundreds of entries.
type minHeap[T any] []keyed[T]

func (h *minHeap[T]) push(k float64, v T) {
	*h = append(*h, keyed[T]{k, v})
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if s[p].k <= s[i].k {
			return
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *minHeap[T]) pop() keyed[T] {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	var zero keyed[T]
	s[last] = zero // let the GC have the value
	s = s[:last]
	*h = s
	for i := 0; ; {
		l := 2*i + 1
		if l >= len(s) {
			break
		}
		m := l
		if r := l + 1; r < len(s) && s[r].k < s[l].k {
			m = r
		}
		if s[i].k <= s[m].k {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	return top
}
