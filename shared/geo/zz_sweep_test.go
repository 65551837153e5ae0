package geo

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
)

func BenchmarkZZSweep(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		for _, c := range []float64{0.01, 0.02, 0.05} {
			for _, spread := range []float64{1, 3, 20} {
			b.Run(fmt.Sprintf("n=%d/cell=%g/q=±%g", n, c, spread/2), func(b *testing.B) {
				r := rand.New(rand.NewPCG(uint64(n), 1))
				x := NewIndex[int](c)
				for i := range n {
					x.Upsert(strconv.Itoa(i), cityPoint(r), i)
				}
				qs := make([]Point, 1024)
				for i := range qs {
					qs[i] = Point{47.6 + (r.Float64()-0.5)*spread, -122.3 + (r.Float64()-0.5)*spread}
				}
				i := 0
				for b.Loop() {
					k := 0
					for range x.Nearest(qs[i%1024]) {
						k++
						if k == 8 {
							break
						}
					}
					i++
				}
			})
			}
		}
	}
}
