// Package fleet makes demonstration and test fleets: drones of mixed
// capability spread around a centre, generated deterministically from a seed.
package fleetgen

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// Generate returns n Available drones with ids drone-0001…, based within
// radiusKm of center. The same seed gives the same fleet.
func Generate(n int, center domain.Location, radiusKm float64, seed uint64, now time.Time) []*domain.Drone {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	sizes := []domain.PackageSize{domain.SizeSmall, domain.SizeMedium, domain.SizeMedium, domain.SizeLarge}
	out := make([]*domain.Drone, n)
	width := len(fmt.Sprint(n))
	if width < 4 {
		width = 4
	}
	for i := range out {
		// Uniform over the disc: the square root keeps the centre from crowding.
		dist := radiusKm * math.Sqrt(rng.Float64())
		bearing := rng.Float64() * 2 * math.Pi
		loc := offset(center, dist, bearing)
		size := sizes[rng.IntN(len(sizes))]
		out[i] = &domain.Drone{
			ID:             fmt.Sprintf("drone-%0*d", width, i+1),
			Location:       loc,
			HomeBase:       loc,
			MaxPayloadKg:   float64(2 + 2*size.Rank() + rng.IntN(3)),
			MaxPackageSize: size,
			RangeKm:        float64(30 + rng.IntN(31)),
			CruiseSpeedMps: float64(12 + rng.IntN(9)),
			BatteryPercent: 100,
			Status:         domain.DroneAvailable,
			UpdatedAt:      now,
		}
	}
	return out
}

// offset moves from c by km along bearing (radians from north).
func offset(c domain.Location, km, bearing float64) domain.Location {
	const r = 6371.0088
	lat1, lon1 := c.Latitude*math.Pi/180, c.Longitude*math.Pi/180
	d := km / r
	lat2 := math.Asin(math.Sin(lat1)*math.Cos(d) + math.Cos(lat1)*math.Sin(d)*math.Cos(bearing))
	lon2 := lon1 + math.Atan2(math.Sin(bearing)*math.Sin(d)*math.Cos(lat1), math.Cos(d)-math.Sin(lat1)*math.Sin(lat2))
	lon := math.Mod(lon2*180/math.Pi+540, 360) - 180
	return domain.Location{Latitude: round6(lat2 * 180 / math.Pi), Longitude: round6(lon)}
}

func round6(x float64) float64 { return math.Round(x*1e6) / 1e6 }

// Seed stores the drones that do not exist yet and returns how many it added,
// so seeding an already seeded store changes nothing.
func Seed(ctx context.Context, f ports.Fleet, drones []*domain.Drone) (int, error) {
	added := 0
	for _, d := range drones {
		created := false
		_, err := f.Upsert(ctx, d.ID, func(cur *domain.Drone) (*domain.Drone, error) {
			if cur != nil {
				return nil, ports.ErrSkip
			}
			created = true
			return d, nil
		})
		if err != nil {
			return added, fmt.Errorf("seed drone %s: %w", d.ID, err)
		}
		if created {
			added++
		}
	}
	return added, nil
}
