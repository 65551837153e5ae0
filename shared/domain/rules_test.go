package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

func TestUnfit(t *testing.T) {
	t.Parallel()
	seattle := domain.Location{Latitude: 47.6062, Longitude: -122.3321}
	req := &domain.DeliveryRequest{
		PickupLocation:  domain.Location{Latitude: 47.6101, Longitude: -122.3421},
		DropoffLocation: domain.Location{Latitude: 47.6205, Longitude: -122.3493},
		PackageInfo:     domain.PackageInfo{Size: domain.SizeMedium, Weight: 3},
	}
	good := domain.Drone{ID: "a", Location: seattle, HomeBase: seattle, MaxPayloadKg: 5, MaxPackageSize: domain.SizeLarge, RangeKm: 10, CruiseSpeedMps: 15, Status: domain.DroneAvailable}
	need := domain.MissionKm(&good, req)
	legs := domain.DistanceKm(seattle, req.PickupLocation) + domain.DistanceKm(req.PickupLocation, req.DropoffLocation) + domain.DistanceKm(req.DropoffLocation, seattle)
	assert.InDelta(t, legs, need, 1e-9, "drone to pickup to dropoff to home")
	cases := []struct {
		name  string
		edit  func(*domain.Drone)
		unfit bool
	}{
		{"fits", func(*domain.Drone) {}, false},
		{"exact payload", func(d *domain.Drone) { d.MaxPayloadKg = 3 }, false},
		{"too heavy", func(d *domain.Drone) { d.MaxPayloadKg = 2.9 }, true},
		{"same size", func(d *domain.Drone) { d.MaxPackageSize = domain.SizeMedium }, false},
		{"too big", func(d *domain.Drone) { d.MaxPackageSize = domain.SizeSmall }, true},
		{"range just enough", func(d *domain.Drone) { d.RangeKm = need + 0.001 }, false},
		{"range short", func(d *domain.Drone) { d.RangeKm = need - 0.001 }, true},
		{"home far away", func(d *domain.Drone) { d.HomeBase = domain.Location{Latitude: 47.7, Longitude: -122.3} }, true},
		{"charging", func(d *domain.Drone) { d.Status = domain.DroneCharging }, true},
		{"busy", func(d *domain.Drone) { d.CurrentDeliveryID = "x" }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := good
			tc.edit(&d)
			assert.Equal(t, tc.unfit, domain.Unfit(&d, req) != "", domain.Unfit(&d, req))
		})
	}
}

func TestComputeETA(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	from := domain.Location{Latitude: 47.6062, Longitude: -122.3321}
	req := &domain.DeliveryRequest{
		PickupLocation:  domain.Location{Latitude: 47.6062, Longitude: -122.3321 + 0.1}, // about 7.5 km east
		DropoffLocation: domain.Location{Latitude: 47.6062 + 0.05, Longitude: -122.3321 + 0.1},
	}
	eta := domain.ComputeETA(now, from, 10, req)
	leg1 := domain.DistanceKm(from, req.PickupLocation) * 100 // seconds at 10 m/s
	wantPickup := now.Add(time.Duration(leg1*float64(time.Second)) + domain.TakeoffDuration + domain.LandingDuration)
	assert.WithinDuration(t, wantPickup, eta.Pickup, time.Second)
	leg2 := domain.DistanceKm(req.PickupLocation, req.DropoffLocation) * 100
	wantDelivery := eta.Pickup.Add(domain.PickupHandling + domain.TakeoffDuration + domain.LandingDuration + time.Duration(leg2*float64(time.Second)))
	assert.WithinDuration(t, wantDelivery, eta.Delivery, time.Second)
	assert.Zero(t, eta.Pickup.Nanosecond(), "whole seconds")

	// A drone early for the requested pickup time waits for it.
	req.PickupTime = now.Add(3 * time.Hour)
	late := domain.ComputeETA(now, from, 10, req)
	assert.Equal(t, req.PickupTime, late.Pickup)
	assert.True(t, late.Delivery.After(late.Pickup))
}

func TestValidIDRefusesDotSegments(t *testing.T) {
	for _, id := range []string{".", ".."} {
		err := domain.ValidID("deliveryId", id)
		require.Error(t, err, id)
		assert.Equal(t, "deliveryId", domain.ErrorField(err))
	}
	for _, id := range []string{"...", ".a", "a.b", "v1.2~x"} {
		assert.NoError(t, domain.ValidID("deliveryId", id), id)
	}
}
