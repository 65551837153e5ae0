package geo

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRemainingKm(t *testing.T) {
	t.Parallel()
	// A detour: north, east, south round something in the way.
	a, b, c, d := Point{0, 0}, Point{0.1, 0}, Point{0.1, 0.1}, Point{0, 0.1}
	path := []Point{a, b, c, d}
	leg := DistanceKm(a, b) // about 11.1 km; the path is three of them
	assert.InDelta(t, 3*leg, RemainingKm(path, a), 0.01, "at the start, the whole path")
	assert.InDelta(t, 2.5*leg, RemainingKm(path, Point{0.05, 0}), 0.01, "halfway up the first side")
	assert.InDelta(t, 1*leg, RemainingKm(path, c), 0.01, "at the last corner")
	assert.InDelta(t, 0, RemainingKm(path, d), 1e-9, "arrived")
	off := Point{0.12, 0.05} // 2.2 km off the middle side
	assert.InDelta(t, DistanceKm(off, Point{0.1, 0.05})+0.5*leg+leg, RemainingKm(path, off), 0.02, "back to the path, then along it")
	beside := Point{0.01, 0.09} // near the end, but nearest the last side
	assert.GreaterOrEqual(t, RemainingKm(path, beside), DistanceKm(beside, d), "never less than the straight line")
	assert.InDelta(t, DistanceKm(b, d), RemainingKm([]Point{d}, b), 1e-9, "one point: the straight line")
	assert.Zero(t, RemainingKm(nil, b))
}

// On a narrow detour, out along one side and back along the other 200 m
// away, a drone between the two, a little nearer the way back than the way
// out, is counted on its way out: what is left is most of the detour, not
// its end. One by the way back is on its way back.
func TestRemainingKmOnANarrowDetour(t *testing.T) {
	t.Parallel()
	out, far, back, end := Point{0, 0}, Point{0.1, 0}, Point{0.1, 0.0018}, Point{0, 0.0018}
	path := []Point{out, far, back, end}
	side := DistanceKm(out, far)
	p := Point{0.06, 0.0011} // 122 m from the way out, 78 m from the way back
	onOut := Point{0.06, 0}
	assert.InDelta(t, DistanceKm(p, onOut)+DistanceKm(onOut, far)+DistanceKm(far, back)+side, RemainingKm(path, p), 0.01, "on its way out")
	q := Point{0.06, 0.0017} // 11 m from the way back, 189 m from the way out
	onBack := Point{0.06, 0.0018}
	assert.InDelta(t, DistanceKm(q, onBack)+DistanceKm(onBack, end), RemainingKm(path, q), 0.01, "on its way back")
}
