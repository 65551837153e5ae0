package geo

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
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
	f := &benchFleet{index: NewIndex[int]()}
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
		benchEachSize(b, func(f *benchFleet, q Point) {
			taken := 0
			for _, d := range f.index.Nearest(q) {
				sinkDist += d
				taken++
				if taken == takeFirst {
					break
				}
			}
		})
	})
	b.Run("linear", func(b *testing.B) {
		benchEachSize(b, func(f *benchFleet, q Point) {
			for _, c := range linearNearest(f.items, q) {
				sinkDist += c.dist
			}
		})
	})
}

// benchEachSize runs a sub-benchmark per fleet size, each calling search
// on the fleet's queries in turn.
func benchEachSize(b *testing.B, search func(f *benchFleet, q Point)) {
	for _, n := range benchSizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			f := fleet(n)
			i := 0
			for b.Loop() {
				search(f, f.queries[i%len(f.queries)])
				i++
			}
		})
	}
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
	x := NewIndex[int]()
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

// dispatchFleets are the fleets of issue 17: a city-wide one, and fleets
// packed within 5 km of the centre, where a fixed grid of 0.02° cells holds
// about 1,700 (40,000 drones) or 4,200 (100,000 drones) in each cell.
var dispatchFleets = []dispatchFleet{
	{"sparse-100k", 100000, cityPoint, Point{47.6, -122.3}},
	{"dense-40k", 40000, densePoint, seattle},
	{"dense-100k", 100000, densePoint, seattle},
}

type dispatchFleet struct {
	name   string
	n      int
	gen    func(*rand.Rand) Point
	centre Point // where gen's drones are densest
}

func densePoint(r *rand.Rand) Point { return discPoint(r, seattle, 5) }

var (
	dispatchIndexesMu sync.Mutex
	dispatchIndexes   = map[string]*benchFleet{}
)

// build makes the fleet once per state: fresh, or depleted, with the half
// of the drones nearest the centre taken, as pickups around the centre
// leave it after a busy spell. Queries are pickups drawn like the drones,
// so a depleted fleet's searches start inside the emptied middle about half
// of the time.
func (fl dispatchFleet) build(depleted bool) *benchFleet {
	key := fmt.Sprintf("%s/%v", fl.name, depleted)
	dispatchIndexesMu.Lock()
	defer dispatchIndexesMu.Unlock()
	if f, ok := dispatchIndexes[key]; ok {
		return f
	}
	r := rand.New(rand.NewPCG(uint64(fl.n), 17))
	f := &benchFleet{index: NewIndex[int]()}
	for i := range fl.n {
		f.items = append(f.items, Item[int]{ID: "drone-" + strconv.Itoa(i), Point: fl.gen(r), Value: i})
	}
	if depleted {
		slices.SortFunc(f.items, func(a, b Item[int]) int {
			return cmp.Compare(DistanceKm(fl.centre, a.Point), DistanceKm(fl.centre, b.Point))
		})
		f.items = f.items[fl.n/2:]
	}
	for _, it := range f.items {
		f.index.Upsert(it.ID, it.Point, it.Value)
	}
	for range 4096 {
		f.queries = append(f.queries, fl.gen(r))
	}
	dispatchIndexes[key] = f
	return f
}

// BenchmarkDispatchSearch times the nearest-first search as dispatch uses
// it, taking the first candidate or the first ten, and reports the 50th
// and 99th percentiles of single searches beside the mean.
func BenchmarkDispatchSearch(b *testing.B) {
	for _, fl := range dispatchFleets {
		for _, depleted := range []bool{false, true} {
			state := "fresh"
			if depleted {
				state = "depleted"
			}
			for _, first := range []int{1, 10} {
				b.Run(fmt.Sprintf("%s/%s/first=%d", fl.name, state, first), func(b *testing.B) {
					f := fl.build(depleted)
					samples := make([]time.Duration, 0, 1<<16)
					i := 0
					for b.Loop() {
						start := time.Now()
						taken := 0
						for _, d := range f.index.Nearest(f.queries[i%len(f.queries)]) {
							sinkDist += d
							taken++
							if taken == first {
								break
							}
						}
						samples = append(samples, time.Since(start))
						i++
					}
					reportPercentiles(b, samples)
				})
			}
		}
	}
}

// reportPercentiles adds p50 and p99 of the timed samples, in µs, to the
// benchmark's line.
func reportPercentiles(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	at := func(q float64) float64 {
		return float64(samples[int(q*float64(len(samples)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}
