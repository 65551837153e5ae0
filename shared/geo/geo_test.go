package geo

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDistanceKm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		a, b  Point
		want  float64
		delta float64
	}{
		{"seattle to portland", Point{47.6062, -122.3321}, Point{45.5152, -122.6784}, 233.8, 1},
		{"identical points", Point{47.6062, -122.3321}, Point{47.6062, -122.3321}, 0, 0},
		{"antipodes on equator", Point{0, 0}, Point{0, 180}, math.Pi * EarthRadiusKm, 1e-6},
		{"antipodes through poles", Point{90, 0}, Point{-90, 0}, math.Pi * EarthRadiusKm, 1e-6},
		{"antipodes oblique", Point{47.6062, -122.3321}, Point{-47.6062, 57.6679}, math.Pi * EarthRadiusKm, 1e-3},
		{"across the antimeridian", Point{0, 179.9}, Point{0, -179.9}, 22.239, 0.01},
		{"one degree of latitude", Point{10, 20}, Point{11, 20}, math.Pi / 180 * EarthRadiusKm, 1e-9},
		{"pole to pole longitude is irrelevant", Point{90, 0}, Point{90, 123}, 0, 1e-9},
		{"longitude given past 180", Point{0, 190}, Point{0, -170}, 0, 1e-9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := DistanceKm(tt.a, tt.b)
			assert.InDelta(t, tt.want, got, tt.delta)
			assert.InDelta(t, got, DistanceKm(tt.b, tt.a), 1e-9, "distance must be symmetric")
		})
	}
}

type scenario struct {
	name string
	gen  func(r *rand.Rand) Point
}

func uniformSphere(r *rand.Rand) Point {
	return Point{Lat: math.Asin(2*r.Float64()-1) / degToRad, Lon: r.Float64()*360 - 180}
}

var scenarios = []scenario{
	{"city", func(r *rand.Rand) Point {
		return Point{47.6 + r.Float64() - 0.5, -122.3 + r.Float64() - 0.5}
	}},
	{"global", uniformSphere},
	{"poles", func(r *rand.Rand) Point {
		lat := 80 + 10*r.Float64()
		if r.IntN(2) == 0 {
			lat = -lat
		}
		return Point{lat, r.Float64()*360 - 180}
	}},
	{"antimeridian", func(r *rand.Rand) Point {
		lon := 175 + 5*r.Float64()
		if r.IntN(2) == 0 {
			lon = -lon
		}
		return Point{r.Float64()*20 - 10, lon}
	}},
	{"stacked", func(r *rand.Rand) Point {
		// A handful of distinct positions forces many exact ties.
		return Point{float64(r.IntN(3)) * 0.01, float64(r.IntN(3)) * 0.01}
	}},
}

type yielded struct {
	item Item[int]
	dist float64
}

func collect(x *Index[int], q Point, limit int) []yielded {
	var out []yielded
	for it, d := range x.Nearest(q) {
		out = append(out, yielded{it, d})
		if len(out) == limit {
			break
		}
	}
	return out
}

// TestNearestMatchesLinearScan is the property that matters: whatever the
// data, cell size and query, Nearest yields exactly the linear scan's order.
func TestNearestMatchesLinearScan(t *testing.T) {
	t.Parallel()
	cellSizes := []float64{0, 0.01, 0.3, 2, 10, 45, 200}
	for _, sc := range scenarios {
		for _, cellDeg := range cellSizes {
			t.Run(fmt.Sprintf("%s/cell=%g", sc.name, cellDeg), func(t *testing.T) {
				t.Parallel()
				for seed := range uint64(40) {
					checkAgainstLinear(t, sc, cellDeg, seed)
				}
			})
		}
	}
}

func checkAgainstLinear(t *testing.T, sc scenario, cellDeg float64, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, uint64(len(sc.name))))
	x := NewIndex[int](cellDeg)
	n := r.IntN(300)
	pts := make([]Point, n)
	for i := range pts {
		pts[i] = sc.gen(r)
		x.Upsert(strconv.Itoa(i), pts[i], i)
	}
	require.Equal(t, n, x.Len())

	queries := []Point{sc.gen(r), sc.gen(r), uniformSphere(r), {90, 0}, {-90, 45}, {0, 180}, {0, -180}}
	if n > 0 {
		queries = append(queries, pts[r.IntN(n)])
	}
	for _, q := range queries {
		msg := fmt.Sprintf("seed=%d n=%d query=%+v", seed, n, q)
		want := make([]float64, n)
		for i, p := range pts {
			want[i] = DistanceKm(q, p)
		}
		slices.Sort(want)

		got := collect(x, q, -1)
		require.Len(t, got, n, msg)
		seen := make(map[string]bool, n)
		for i, y := range got {
			require.False(t, seen[y.item.ID], "%s: %s yielded twice", msg, y.item.ID)
			seen[y.item.ID] = true
			require.Equal(t, pts[y.item.Value], y.item.Point, msg)
			require.Equal(t, DistanceKm(q, y.item.Point), y.dist, msg)
			// Ties may come in any order, so compare the distance sequence.
			require.InDelta(t, want[i], y.dist, 1e-9, "%s: position %d", msg, i)
		}

		// Stopping early must give a prefix of the same sequence.
		if n > 0 {
			k := 1 + r.IntN(n)
			prefix := collect(x, q, k)
			require.Len(t, prefix, k, msg)
			for i := range prefix {
				require.InDelta(t, want[i], prefix[i].dist, 1e-9, "%s: prefix position %d", msg, i)
			}
		}
	}
}

func TestNearestEmptyIndex(t *testing.T) {
	t.Parallel()
	x := NewIndex[int](0)
	assert.Empty(t, collect(x, Point{47.6, -122.3}, -1))
}

// TestBounds checks the ring and cell bounds directly against random point
// pairs, because an over-optimistic bound only shows up in Nearest as a rare
// misordering.
func TestBounds(t *testing.T) {
	t.Parallel()
	for _, cellDeg := range []float64{0.05, 1, 7.5, 15, 20, 30, 100} {
		t.Run(fmt.Sprint(cellDeg), func(t *testing.T) {
			t.Parallel()
			g := newGrid(cellDeg)
			r := rand.New(rand.NewPCG(1, 2))
			// Points on cell edges and corners are where a bound that is
			// only slightly too optimistic gets caught.
			within := func() float64 {
				switch r.IntN(4) {
				case 0:
					return 0
				case 1:
					return 1
				default:
					return r.Float64()
				}
			}
			inCell := func(row, col int) Point {
				lat := min(float64(row)*g.deg-90+within()*g.deg, 90)
				return Point{lat, float64(col)*g.deg - 180 + within()*g.deg}
			}
			for range 20000 {
				qr, qc := r.IntN(g.rows), r.IntN(g.cols)
				if r.IntN(4) == 0 {
					qr = []int{0, g.rows - 1}[r.IntN(2)] // stress the poles
				}
				row, col := r.IntN(g.rows), r.IntN(g.cols)
				if r.IntN(2) == 0 { // stay near the query, where bounds are tight
					row = min(max(qr+r.IntN(9)-4, 0), g.rows-1)
					col = g.wrapCol(qc + r.IntN(9) - 4)
				}
				a, b := inCell(qr, qc), inCell(row, col)
				require.LessOrEqual(t, g.cellHav(newOrigin(a), cellKey(row, col)), newOrigin(a).hav(b),
					"query %v, cell (%d,%d) %v", a, row, col, b)
				ring := g.ringOf(qr, qc, cellKey(row, col))
				for _, k := range []int{1, 2, 1 + r.IntN(max(ring, 1)), ring} {
					if k < 1 || k > ring {
						continue
					}
					require.LessOrEqual(t, g.boundKm(qr, k), DistanceKm(a, b),
						"query cell (%d,%d) %v, cell (%d,%d) %v, ring %d, k %d", qr, qc, a, row, col, b, ring, k)
				}
			}
		})
	}
}

// TestRingsPartitionGrid checks that rings visit every cell exactly once,
// including where columns wrap and rows stop at the poles.
func TestRingsPartitionGrid(t *testing.T) {
	t.Parallel()
	for _, cellDeg := range []float64{360, 180, 120, 90, 45, 30, 7.5} {
		g := newGrid(cellDeg)
		for qr := range g.rows {
			for qc := range g.cols {
				seen := map[uint64]int{}
				for r := 0; ; r++ {
					for _, k := range g.appendRing(nil, qr, qc, r) {
						seen[k]++
						require.Equal(t, r, g.ringOf(qr, qc, k), "cell %d query (%d,%d)", cellDeg, qr, qc)
					}
					if math.IsInf(g.boundKm(qr, r+1), 1) {
						break
					}
				}
				require.Len(t, seen, g.rows*g.cols, "cell %g query (%d,%d)", cellDeg, qr, qc)
				for k, n := range seen {
					require.Equal(t, 1, n, "cell %x visited twice, cell %g query (%d,%d)", k, cellDeg, qr, qc)
				}
			}
		}
	}
}

func TestNewIndexCellSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cellDeg float64
		wantDeg float64
	}{
		{0, 0.02},
		{-1, 0.02},
		{math.NaN(), 0.02},
		{0.05, 0.05},
		{1, 1},
		{0.7, 360.0 / 515}, // narrowed so that columns tile 360° exactly
		{1e-9, 1e-4},
		{1000, 360},
	}
	for _, tt := range tests {
		g := NewIndex[int](tt.cellDeg).g
		assert.InDelta(t, tt.wantDeg, g.deg, 1e-12, "cellDeg %g", tt.cellDeg)
		assert.InDelta(t, 360, g.deg*float64(g.cols), 1e-9, "cellDeg %g", tt.cellDeg)
		assert.GreaterOrEqual(t, g.deg*float64(g.rows), 180-1e-9, "cellDeg %g", tt.cellDeg)
	}
}

// checkInvariants verifies the bookkeeping that Upsert and Remove maintain
// between byID and the cells.
func checkInvariants[V any](t *testing.T, x *Index[V]) {
	t.Helper()
	x.mu.RLock()
	defer x.mu.RUnlock()
	total := 0
	for k, c := range x.cells {
		require.NotEmpty(t, c.items, "empty cell %x kept", k)
		for i, it := range c.items {
			require.Equal(t, slot{key: k, i: i}, x.byID[it.ID], "slot of %s", it.ID)
			require.Equal(t, k, x.g.keyOf(it.Point), "%s is in the wrong cell", it.ID)
		}
		total += len(c.items)
	}
	require.Len(t, x.byID, total)
}

func cellHolds[V any](x *Index[V], p Point, id string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	c, ok := x.cells[x.g.keyOf(p)]
	return ok && slices.ContainsFunc(c.items, func(it Item[V]) bool { return it.ID == id })
}

func TestIndexUpsertMovesItem(t *testing.T) {
	t.Parallel()
	x := NewIndex[string](0)
	seattle, portland := Point{47.6062, -122.3321}, Point{45.5152, -122.6784}

	x.Upsert("d1", seattle, "idle")
	x.Upsert("d2", seattle, "idle")
	x.Upsert("d3", seattle, "idle")
	x.Upsert("d1", portland, "busy")

	assert.False(t, cellHolds(x, seattle, "d1"), "old cell still holds the moved item")
	assert.True(t, cellHolds(x, portland, "d1"))
	p, v, ok := x.Get("d1")
	require.True(t, ok)
	assert.Equal(t, portland, p)
	assert.Equal(t, "busy", v)
	assert.Equal(t, 3, x.Len())
	checkInvariants(t, x)

	// A move within the same cell replaces in place.
	nudged := Point{seattle.Lat + 1e-4, seattle.Lon}
	x.Upsert("d2", nudged, "charging")
	p, v, ok = x.Get("d2")
	require.True(t, ok)
	assert.Equal(t, nudged, p)
	assert.Equal(t, "charging", v)
	assert.Equal(t, 3, x.Len())
	checkInvariants(t, x)

	// Latitudes past the poles are clamped so the grid can reason about them.
	x.Upsert("d4", Point{95, 10}, "glitch")
	p, _, _ = x.Get("d4")
	assert.Equal(t, Point{90, 10}, p)
	checkInvariants(t, x)
}

func TestIndexRemove(t *testing.T) {
	t.Parallel()
	x := NewIndex[int](0)
	p := Point{47.6, -122.3}
	for i := range 5 {
		x.Upsert(strconv.Itoa(i), p, i) // one cell, so removal swaps items around
	}
	x.Remove("1")
	x.Remove("1")
	x.Remove("missing")
	assert.Equal(t, 4, x.Len())
	_, _, ok := x.Get("1")
	assert.False(t, ok)
	assert.False(t, cellHolds(x, p, "1"))
	for _, id := range []string{"0", "2", "3", "4"} {
		_, v, ok := x.Get(id)
		require.True(t, ok, id)
		assert.Equal(t, id, strconv.Itoa(v))
	}
	checkInvariants(t, x)

	for _, id := range []string{"0", "2", "3", "4"} {
		x.Remove(id)
	}
	assert.Zero(t, x.Len())
	assert.Empty(t, x.cells, "emptied cells must be dropped")
	assert.Empty(t, collect(x, p, -1))
}

// TestIndexRandomOps compares Get and Len with a plain map over a random mix
// of inserts, moves and removals.
func TestIndexRandomOps(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	x := NewIndex[int](0.5)
	ref := map[string]Point{}
	for i := range 20000 {
		id := strconv.Itoa(r.IntN(300))
		if r.IntN(3) == 0 {
			x.Remove(id)
			delete(ref, id)
			continue
		}
		p := scenarios[r.IntN(len(scenarios))].gen(r)
		x.Upsert(id, p, i)
		ref[id] = p
	}
	checkInvariants(t, x)
	require.Equal(t, len(ref), x.Len())
	for id, want := range ref {
		got, _, ok := x.Get(id)
		require.True(t, ok, id)
		require.Equal(t, want, got, id)
	}
	require.Len(t, collect(x, Point{}, -1), len(ref))
}

// withTimeout fails the test instead of hanging it when f deadlocks.
func withTimeout(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("deadlock: Nearest loop did not finish")
	}
}

// TestNearestClaimInsideLoop is the dispatcher's pattern: claiming (removing)
// each drone as it is yielded must neither deadlock nor disturb the order of
// the drones not yet reached.
func TestNearestClaimInsideLoop(t *testing.T) {
	t.Parallel()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(5, 6))
			x := NewIndex[int](0)
			const n = 2000
			for i := range n {
				x.Upsert(strconv.Itoa(i), sc.gen(r), i)
			}
			q := sc.gen(r)
			var got []yielded
			withTimeout(t, func() {
				for it, d := range x.Nearest(q) {
					x.Remove(it.ID)
					got = append(got, yielded{it, d})
				}
			})
			require.Len(t, got, n)
			require.True(t, slices.IsSortedFunc(got, func(a, b yielded) int { return cmp.Compare(a.dist, b.dist) }))
			ids := map[string]bool{}
			for _, y := range got {
				ids[y.item.ID] = true
			}
			assert.Len(t, ids, n)
			assert.Zero(t, x.Len())
		})
	}
}

func TestNearestUpsertInsideLoop(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(7, 8))
	x := NewIndex[int](0)
	city := scenarios[0].gen
	for i := range 2000 {
		x.Upsert(strconv.Itoa(i), city(r), i)
	}
	count := 0
	withTimeout(t, func() {
		for it := range x.Nearest(Point{47.6, -122.3}) {
			// Move the drone elsewhere in the city and add a new one: both
			// take the write lock while the iterator is suspended.
			x.Upsert(it.ID, city(r), it.Value)
			x.Upsert("new"+strconv.Itoa(count), city(r), -1)
			count++
		}
	})
	assert.Positive(t, count)
	checkInvariants(t, x)
}

// TestNearestConcurrentWriters runs queries against a fleet that is moving
// under them; with -race it checks that no index state escapes the lock. Even
// then the yielded distances never go down, because the bounds are about
// cells, not about any particular item.
func TestNearestConcurrentWriters(t *testing.T) {
	t.Parallel()
	x := NewIndex[int](0)
	city := scenarios[0].gen
	seed := rand.New(rand.NewPCG(9, 10))
	for i := range 5000 {
		x.Upsert(strconv.Itoa(i), city(seed), i)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 11))
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := strconv.Itoa(r.IntN(6000))
				if r.IntN(4) == 0 {
					x.Remove(id)
				} else {
					x.Upsert(id, city(r), w)
				}
			}
		})
	}
	var readers sync.WaitGroup
	for rd := range 4 {
		readers.Go(func() {
			r := rand.New(rand.NewPCG(uint64(rd), 12))
			for i := range 100 {
				prev, taken := 0.0, 0
				for _, d := range x.Nearest(city(r)) {
					assert.GreaterOrEqual(t, d, prev)
					prev = d
					taken++
					if i%10 != 0 && taken == 200 { // mostly dispatcher-sized reads
						break
					}
				}
			}
		})
	}
	readers.Wait()
	close(stop)
	wg.Wait()
	checkInvariants(t, x)
}

func TestNearestNonFinitePointsComeLast(t *testing.T) {
	t.Parallel()
	x := NewIndex[int](0)
	x.Upsert("nan", Point{math.NaN(), 0}, 0)
	x.Upsert("inf", Point{0, math.Inf(1)}, 0)
	x.Upsert("ok", Point{10, 10}, 0)
	got := collect(x, Point{}, -1)
	require.Len(t, got, 3)
	assert.Equal(t, "ok", got[0].item.ID)
	assert.True(t, math.IsInf(got[1].dist, 1))
	assert.True(t, math.IsInf(got[2].dist, 1))
}
