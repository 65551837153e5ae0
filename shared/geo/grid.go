package geo

import "math"

const (
	// defaultCellDeg is about 2.2 km north–south and 1.5 km east–west at
	// Seattle's latitude. Nothing can be yielded before the 3×3 block around
	// the query has been read, so for a 100,000-drone metro fleet (±0.5°)
	// that is ~360 candidates here against ~2,250 at 0.05°, measured at
	// ~20 µs against ~115 µs for the first eight drones. Going down to 0.01°
	// gains little in the city but quadruples the cells a query beyond the
	// fleet's edge walks and then ranks (~0.6 ms against ~0.2 ms).
	defaultCellDeg = 0.02

	// minCellDeg keeps row and column numbers inside 32 bits each, and
	// nothing is gained from cells far smaller than GPS error anyway.
	minCellDeg = 1e-4
)

// grid maps positions to cells whose width divides 360° exactly, so that
// columns wrap at the antimeridian without a narrow leftover column that would
// invalidate the distance bounds.
type grid struct {
	deg        float64
	rows, cols int
}

func newGrid(cellDeg float64) grid {
	if !(cellDeg > 0) || math.IsInf(cellDeg, 1) {
		cellDeg = defaultCellDeg
	}
	cellDeg = max(cellDeg, minCellDeg)
	f := 360 / cellDeg
	n := math.Round(f)
	if math.Abs(f-n) > 1e-9*f {
		n = math.Ceil(f)
	}
	cols := max(int(n), 1)
	// Rows cover 180° with the same width; when cols is odd the top row pokes
	// past the pole, which is harmless because latitudes are clamped.
	return grid{deg: 360 / float64(cols), rows: (cols + 1) / 2, cols: cols}
}

// clampLat keeps stored and query latitudes on the sphere: haversine would
// treat 95° as the reflected point across the pole, which the grid cannot
// bound. NaN is left alone and sorts last.
func clampLat(lat float64) float64 {
	return min(max(lat, -90), 90)
}

func (g grid) cellOf(p Point) (row, col int) {
	lat := p.Lat
	if math.IsNaN(lat) {
		lat = 0
	}
	row = int(math.Floor((clampLat(lat) + 90) / g.deg))
	row = min(max(row, 0), g.rows-1)

	lon := p.Lon
	if math.IsNaN(lon) || math.IsInf(lon, 0) {
		lon = 0
	}
	lon = math.Mod(lon+180, 360)
	if lon < 0 {
		lon += 360
	}
	col = int(lon / g.deg)
	col = min(max(col, 0), g.cols-1)
	return row, col
}

func cellKey(row, col int) uint64 { return uint64(row)<<32 | uint64(uint32(col)) }

func splitKey(k uint64) (row, col int) { return int(k >> 32), int(uint32(k)) }

func (g grid) keyOf(p Point) uint64 { return cellKey(g.cellOf(p)) }

func (g grid) wrapCol(c int) int {
	c %= g.cols
	if c < 0 {
		c += g.cols
	}
	return c
}

// ringOf is the Chebyshev distance in cells, with columns measured the short
// way round the globe, so every cell belongs to exactly one ring.
func (g grid) ringOf(qr, qc int, k uint64) int {
	row, col := splitKey(k)
	dr := row - qr
	if dr < 0 {
		dr = -dr
	}
	dc := col - qc
	if dc < 0 {
		dc = -dc
	}
	dc = min(dc, g.cols-dc)
	return max(dr, dc)
}

// appendRing lists each cell of ring r once: rows stop at the poles instead of
// wrapping, and columns that wrap onto each other are emitted only once.
func (g grid) appendRing(keys []uint64, qr, qc, r int) []uint64 {
	if r == 0 {
		return append(keys, cellKey(qr, qc))
	}
	for _, row := range [2]int{qr - r, qr + r} {
		if row < 0 || row >= g.rows {
			continue
		}
		if 2*r+1 >= g.cols {
			for c := range g.cols {
				keys = append(keys, cellKey(row, c))
			}
			continue
		}
		for dc := -r; dc <= r; dc++ {
			keys = append(keys, cellKey(row, g.wrapCol(qc+dc)))
		}
	}
	if 2*r > g.cols {
		return keys // no column is r away the short way round
	}
	west, east := g.wrapCol(qc-r), g.wrapCol(qc+r)
	for row := max(qr-r+1, 0); row <= min(qr+r-1, g.rows-1); row++ {
		keys = append(keys, cellKey(row, west))
		if east != west {
			keys = append(keys, cellKey(row, east))
		}
	}
	return keys
}

// boundKm is a lower bound on the distance from any point in cell (qr, qc) to
// any point in a cell k or more rings away; Nearest may only release a
// candidate once it is no farther than this, or a closer item in an unread
// ring could still turn up. It is +Inf when no such cell exists.
//
// Such a cell is at least k rows or k columns away, so at least k-1 whole
// cells lie between them in latitude or in longitude. A latitude gap Δφ
// alone gives d ≥ Δφ. A longitude gap Δλ gives, from the haversine formula,
// sin(d/2) ≥ cos φ1·cos φ2·sin(Δλ/2) ≥ cos L·sin(Δλ/2), where L is the largest
// |latitude| either point can have: the far cell is fewer than k rows away
// in that case, so L is taken over the rows within k-1 of the query row.
// The flat-earth Δλ·cos L is avoided because great circles bulge towards the
// pole, so for two points at the same latitude it overestimates; it would
// only survive here thanks to the slack in L, which is fragile to rely on.
func (g grid) boundKm(qr, k int) float64 {
	gap := float64(k-1) * g.deg * degToRad
	b := math.Inf(1)
	if qr-k >= 0 || qr+k < g.rows {
		b = gap
	}
	if k <= g.cols/2 {
		south := float64(max(qr-k+1, 0))*g.deg - 90
		north := min(float64(min(qr+k, g.rows))*g.deg-90, 90)
		l := max(math.Abs(south), math.Abs(north))
		b = min(b, 2*math.Asin(math.Cos(l*degToRad)*math.Sin(gap/2)))
	}
	if math.IsInf(b, 1) {
		return b
	}
	// Shave off more than the rounding error of the haversine and of the
	// cell assignment, so a distance computed a hair short can never overtake
	// the bound.
	return b*EarthRadiusKm*(1-1e-9) - 1e-9
}

// cellHav is a lower bound on hav(d/R) for the distance d from the query to
// any point of cell k. Once the search falls back to ranking whole cells (the
// fleet is sparse or far away) it orders them by this rather than by ring,
// because rings are squares in degrees and so stretched east–west in
// kilometres: ranked by ring, a query far to the north or east of a fleet
// reads most of it before the bound lets anything out.
//
// From the haversine formula, hav d = hav Δφ + cos φ1·cos φ2·hav Δλ, and each
// term is at least its value at the cell's nearest edge, taking for cos φ2 the
// cell's latitude farthest from the equator.
func (g grid) cellHav(q origin, k uint64) float64 {
	row, col := splitKey(k)
	step := g.deg * degToRad
	south := float64(row)*step - math.Pi/2
	north := min(south+step, math.Pi/2)
	dLat := max(south-q.lat, q.lat-north, 0)

	// How far east of the cell's west edge the query is, the long way round
	// if need be.
	east := math.Mod(q.lon-(float64(col)*step-math.Pi), 2*math.Pi)
	if east < 0 {
		east += 2 * math.Pi
	}
	dLon := 0.0
	if east > step {
		dLon = min(east-step, 2*math.Pi-east)
	}

	sinLat, sinLon := math.Sin(dLat/2), math.Sin(dLon/2)
	h := sinLat*sinLat + q.cosLat*math.Cos(max(-south, north))*sinLon*sinLon
	if math.IsNaN(h) {
		return 0 // a non-finite query: claim nothing
	}
	// Shave more than the rounding in the cell edges, in assigning points to
	// cells and in measuring the items, so none can sneak under the bound.
	return h*(1-1e-9) - 1e-13
}
