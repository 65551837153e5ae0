package geo

import (
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
)

// benchSizes spans a small depot up to the largest fleet the dispatcher has
// to serve.
var benchSizes = []int{1000, 10000, 100000}

// takeFirst is how many drones a dispatcher typically considers per pickup.
const takeFirst = 8

// cityPoint draws from a ±0.5° box around Seattle, the city-sized area the
// index is tuned for.
func cityPoint(r *rand.Rand) Point {
	return Point{47.6 + r.Float64() - 0.5, -122.3 + r.Float64() - 0.5}
}

type benchFleet struct {
	items   []Item[int]
	index   *Index[int]
	queries []Point
}

var (
	benchFleetsMu sync.Mutex
	benchFleets   = map[int]*benchFleet{}
)

// fleet builds each size once, since benchmarks are re-run to calibrate.
func fleet(n int) *benchFleet {
	benchFleetsMu.Lock()
	defer benchFleetsMu.Unlock()
	if f, ok := benchFleets[n]; ok {
		return f
	}
	r := rand.New(rand.NewPCG(uint64(n), 1))
	f := &benchFleet{index: NewIndex[int](0)}
	for i := range n {
		it := Item[int]{ID: "drone-" + strconv.Itoa(i), Point: cityPoint(r), Value: i}
		f.items = append(f.items, it)
		f.index.Upsert(it.ID, it.Point, it.Value)
	}
	for range 1024 {
		f.queries = append(f.queries, cityPoint(r))
	}
	benchFleets[n] = f
	return f
}

var sinkDist float64

func BenchmarkNearest(b *testing.B) {
	b.Run("index", func(b *testing.B) {
		for _, n := range benchSizes {
			b.Run(strconv.Itoa(n), func(b *testing.B) {
				f := fleet(n)
				i := 0
				for b.Loop() {
					taken := 0
					for _, d := range f.index.Nearest(f.queries[i%len(f.queries)]) {
						sinkDist += d
						taken++
						if taken == takeFirst {
							break
						}
					}
					i++
				}
			})
		}
	})
	b.Run("linear", func(b *testing.B) {
		for _, n := range benchSizes {
			b.Run(strconv.Itoa(n), func(b *testing.B) {
				f := fleet(n)
				i := 0
				for b.Loop() {
					for _, c := range linearNearest(f.items, f.queries[i%len(f.queries)]) {
						sinkDist += c.dist
					}
					i++
				}
			})
		}
	})
}

type linearCand struct {
	item *Item[int]
	dist float64
}

// linearNearest is the baseline: measure every item and keep the closest
// takeFirst by insertion into a short sorted array, which is cheaper than a
// full sort and so the stronger competitor.
func linearNearest(items []Item[int], q Point) []linearCand {
	best := make([]linearCand, 0, takeFirst)
	for i := range items {
		d := DistanceKm(q, items[i].Point)
		if len(best) == takeFirst && d >= best[takeFirst-1].dist {
			continue
		}
		if len(best) < takeFirst {
			best = append(best, linearCand{})
		}
		j := len(best) - 1
		for ; j > 0 && best[j-1].dist > d; j-- {
			best[j] = best[j-1]
		}
		best[j] = linearCand{&items[i], d}
	}
	return best
}

// BenchmarkUpsert moves drones anywhere in the city, so most moves change
// cell: the expensive path rather than the in-place update.
func BenchmarkUpsert(b *testing.B) {
	const n = 100000
	x := NewIndex[int](0)
	r := rand.New(rand.NewPCG(2, 3))
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "drone-" + strconv.Itoa(i)
		x.Upsert(ids[i], cityPoint(r), i)
	}
	moves := make([]Point, 4096)
	for i := range moves {
		moves[i] = cityPoint(r)
	}
	i := 0
	for b.Loop() {
		x.Upsert(ids[r.IntN(n)], moves[i%len(moves)], i)
		i++
	}
}
