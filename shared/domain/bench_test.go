package domain_test

import (
	"testing"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
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
