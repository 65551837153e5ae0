package airspace_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/airspace"
	"github.com/fabrikam/dronedelivery/shared/domain"
)

// benchZones is the load: 50 city-sized no-fly zones of 6 to 14
// corners, often concave, spread over 20 km by 20 km around Seattle.
func benchZones() []*domain.Zone {
	r := rand.New(rand.NewPCG(50, 50))
	zones := make([]*domain.Zone, 50)
	for i := range zones {
		c := offset(seattle, r.Float64()*20-10, r.Float64()*20-10)
		zones[i] = nfz(fmt.Sprint("z", i), star(r, c, 6+r.IntN(9), 0.2, 1))
	}
	return zones
}

// benchLegs are legs of up to 15 km between admitted points: about half
// of them meet a zone (BenchmarkRoute50Zones reports the share).
func benchLegs(a *airspace.Airspace, n int) [][2]domain.Location {
	r := rand.New(rand.NewPCG(1, 1))
	var legs [][2]domain.Location
	for len(legs) < n {
		from := offset(seattle, r.Float64()*20-10, r.Float64()*20-10)
		to := offset(from, r.Float64()*20-10, r.Float64()*20-10)
		if a.Admit("", from, now) == nil && a.Admit("", to, now) == nil {
			legs = append(legs, [2]domain.Location{from, to})
		}
	}
	return legs
}

// reportP99 adds the 99th percentile of the per-call times to the
// benchmark's figures.
func reportP99(b *testing.B, took []time.Duration) {
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds()), "p99-ns/op")
}

func BenchmarkAdmit50Zones(b *testing.B) {
	a := airspace.New(benchZones())
	legs := benchLegs(a, 1000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = a.Admit("pickupLocation", legs[i%len(legs)][0], now)
		i++
	}
}

// BenchmarkRoute50Zones routes legs over a snapshot in use: the graph's
// nodes have learned whom they see, as they do after the first routes.
func BenchmarkRoute50Zones(b *testing.B) {
	a := airspace.New(benchZones())
	legs := benchLegs(a, 1000)
	turned := 0
	for _, l := range legs {
		r, err := a.Route(l[0], l[1], now)
		require.NoError(b, err)
		if len(r.Points) > 2 {
			turned++
		}
	}
	took := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l := legs[i%len(legs)]
		start := time.Now()
		_, _ = a.Route(l[0], l[1], now)
		took = append(took, time.Since(start))
		i++
	}
	reportP99(b, took)
	b.ReportMetric(float64(turned)/float64(len(legs)), "turning-share")
}

// BenchmarkRouteFirstAfterChange is the first route that turns after a
// zone changed: a new snapshot, its graph built, and the nodes the search
// reaches learning whom they see.
func BenchmarkRouteFirstAfterChange(b *testing.B) {
	zones := benchZones()
	legs := benchLegs(airspace.New(zones), 1000)
	var turning [][2]domain.Location
	probe := airspace.New(zones)
	for _, l := range legs {
		if r, err := probe.Route(l[0], l[1], now); err == nil && len(r.Points) > 2 {
			turning = append(turning, l)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l := turning[i%len(turning)]
		_, _ = airspace.New(zones).Route(l[0], l[1], now)
		i++
	}
}

// BenchmarkCurrent is what every dispatch pays to learn the airspace on
// the embedded backend: one read of the version row, the zones unchanged.
func BenchmarkCurrent(b *testing.B) {
	ctx := context.Background()
	db := openDB(b, filepath.Join(b.TempDir(), "bench.db"))
	zs := db.Store().Zones
	for _, z := range benchZones() {
		require.NoError(b, zs.Create(ctx, z.Key(), z))
	}
	st := airspace.NewStore(zs)
	_, err := st.Current(ctx)
	require.NoError(b, err)
	took := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if _, err := st.Current(ctx); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	reportP99(b, took)
}

// BenchmarkDispatchAirspace is the airspace's share of one dispatch on the
// embedded backend with the 50 zones stored: Current, then Admit of the
// pickup and the dropoff and a Route for each of the two legs (the drone
// to the pickup, the pickup to the dropoff), over legs of up to 15 km.
func BenchmarkDispatchAirspace(b *testing.B) {
	ctx := context.Background()
	db := openDB(b, filepath.Join(b.TempDir(), "bench.db"))
	zs := db.Store().Zones
	zones := benchZones()
	for _, z := range zones {
		require.NoError(b, zs.Create(ctx, z.Key(), z))
	}
	st := airspace.NewStore(zs)
	legs := benchLegs(airspace.New(zones), 1000)
	r := rand.New(rand.NewPCG(9, 9))
	drones := make([]domain.Location, len(legs))
	for i, l := range legs {
		drones[i] = offset(l[0], r.Float64()*6-3, r.Float64()*6-3)
	}
	dispatch := func(i int) {
		a, err := st.Current(ctx)
		if err != nil {
			b.Fatal(err)
		}
		l := legs[i%len(legs)]
		_ = a.Admit("pickupLocation", l[0], now)
		_ = a.Admit("dropoffLocation", l[1], now)
		_, _ = a.Route(drones[i%len(legs)], l[0], now)
		_, _ = a.Route(l[0], l[1], now)
	}
	for i := range legs {
		dispatch(i) // the graph's nodes learn whom they see
	}
	took := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		start := time.Now()
		dispatch(i)
		took = append(took, time.Since(start))
		i++
	}
	reportP99(b, took)
}
