package domain_test

import (
	"testing"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/fleetgen"
)

var sinkETA domain.ETA

// BenchmarkComputeETA measures the ETA step's arithmetic: two great-circle
// legs and the rounding, for a drone a few kilometres from its pickup.
func BenchmarkComputeETA(b *testing.B) {
	now := time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC)
	req := &domain.DeliveryRequest{
		PickupLocation:  domain.Location{Latitude: 47.6101, Longitude: -122.3421},
		DropoffLocation: domain.Location{Latitude: 47.6205, Longitude: -122.3493},
		PickupTime:      now,
	}
	from := domain.Location{Latitude: 47.5900, Longitude: -122.3100}
	b.ReportAllocs()
	for b.Loop() {
		sinkETA = domain.ComputeETA(now, from, 15, req)
	}
}

var sinkWhy string

// BenchmarkUnfit measures the dispatch rule a scheduler applies to every
// candidate drone, for a drone that passes every check (the costliest case).
func BenchmarkUnfit(b *testing.B) {
	req := &domain.DeliveryRequest{
		PickupLocation:  domain.Location{Latitude: 47.6101, Longitude: -122.3421},
		DropoffLocation: domain.Location{Latitude: 47.6205, Longitude: -122.3493},
		PackageInfo:     domain.PackageInfo{Size: domain.SizeSmall, Weight: 1.2},
	}
	loc := domain.Location{Latitude: 47.5900, Longitude: -122.3100}
	d := &domain.Drone{ID: "drone-1", Location: loc, HomeBase: loc, MaxPayloadKg: 5, MaxPackageSize: domain.SizeMedium,
		RangeKm: 40, CruiseSpeedMps: 15, BatteryPercent: 100, Status: domain.DroneAvailable}
	b.ReportAllocs()
	for b.Loop() {
		sinkWhy = domain.Unfit(d, req)
	}
	if sinkWhy != "" {
		b.Fatal(sinkWhy)
	}
}

var sinkErr error

// BenchmarkFeasible is ingest's check of a request against what a fleet of
// 100,000 drones (fleetgen's mix, based within 30 km) could ever serve:
// it reads the fleet's summary, not the drones. Summarize is the cost of
// building that summary once.
func BenchmarkFeasible(b *testing.B) {
	now := time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC)
	center := domain.Location{Latitude: 47.6062, Longitude: -122.3321}
	drones := fleetgen.Generate(100_000, center, 30, 1, now)
	b.Run("check", func(b *testing.B) {
		s := domain.NewFleetSummary()
		for _, d := range drones {
			s.Add(d)
		}
		req := &domain.DeliveryRequest{
			PickupLocation:  domain.Location{Latitude: 47.6101, Longitude: -122.3421},
			DropoffLocation: domain.Location{Latitude: 47.6205, Longitude: -122.3493},
			PickupTime:      now, Deadline: now.Add(2 * time.Hour),
			PackageInfo: domain.PackageInfo{Size: domain.SizeMedium, Weight: 3},
		}
		b.ReportAllocs()
		for b.Loop() {
			sinkErr = domain.Feasible(req, s, domain.OpenAirspace{}, domain.FeasibilityRules{}, now)
		}
	})
	b.Run("summarize", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s := domain.NewFleetSummary()
			for _, d := range drones {
				s.Add(d)
			}
		}
	})
}
