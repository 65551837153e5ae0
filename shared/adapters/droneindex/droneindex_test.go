package droneindex

import (
	"context"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// A drone comes back from the index exactly as it went in, packed when it
// packs and whole when it does not, and no copy handed out shares memory
// with what the index keeps.
func TestIndexedDronesComeBackExactly(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 4, 20, 30, 0, 123456789, time.UTC)
	alt := 120.5
	plain := &domain.Drone{ID: "d1", Location: domain.Location{Latitude: 47.6, Longitude: -122.3}, HomeBase: domain.Location{Latitude: 47.61, Longitude: -122.31},
		MaxPayloadKg: 5, MaxPackageSize: domain.SizeMedium, RangeKm: 40, CruiseSpeedMps: 18.5, BatteryPercent: 87.25, Status: domain.DroneAvailable, UpdatedAt: at}
	full := plain.Clone()
	full.Location.Altitude, full.HomeBase.Altitude = &alt, &alt
	full.FullRangeKm, full.CurrentGeneration, full.Recalled = 42, 3, true
	full.ClaimedAfterReport, full.LastTelemetryAt, full.ChargeDueAt = &at, &at, &at
	zoned := plain.Clone()
	zoned.UpdatedAt = at.In(time.FixedZone("CET", 3600))
	unknownSize := plain.Clone()
	unknownSize.MaxPackageSize = "Huge"
	for name, tc := range map[string]struct {
		d      *domain.Drone
		packed bool
	}{
		"plain":                    {plain, true},
		"every optional field set": {full, true},
		"never updated":            {&domain.Drone{ID: "d2", Status: domain.DroneAvailable}, true},
		"serving a delivery":       {func() *domain.Drone { d := plain.Clone(); d.CurrentDeliveryID = "x"; return d }(), false},
		"with a reason":            {func() *domain.Drone { d := plain.Clone(); d.StatusReason = "back from repair"; return d }(), false},
		"a time with a zone":       {zoned, false},
		"an unknown size":          {unknownSize, false},
	} {
		x := indexDrone(tc.d)
		assert.Equal(t, tc.packed, x.packed != nil, name)
		got := x.drone(tc.d.ID)
		require.Equal(t, tc.d, got, name)
		if got.Location.Altitude != nil {
			*got.Location.Altitude = -1
			assert.Equal(t, tc.d, x.drone(tc.d.ID), "%s: a copy handed out changes nothing kept", name)
		}
	}
}

// A packed drone fits the allocator's 128-byte class.
func TestPackedDroneSize(t *testing.T) {
	assert.LessOrEqual(t, unsafe.Sizeof(packedDrone{}), uintptr(128))
}

// Nearest yields copies, nearest first, and skips a drone its caller took
// out during the walk.
func TestNearestYieldsCopiesAndSkipsWhatWasTakenOut(t *testing.T) {
	t.Parallel()
	x := New()
	at := func(lat float64) domain.Location { return domain.Location{Latitude: lat, Longitude: -122.3} }
	for i, id := range []string{"near", "middle", "far"} {
		x.Put(id, &domain.Drone{ID: id, Location: at(47.6 + 0.01*float64(i)), Status: domain.DroneAvailable, MaxPayloadKg: 5})
	}
	var got []string
	for d, km := range x.Nearest(context.Background(), at(47.6)) {
		got = append(got, d.ID)
		assert.GreaterOrEqual(t, km, 0.0)
		d.MaxPayloadKg = 99
		if d.ID == "near" {
			x.Remove("middle")
		}
	}
	assert.Equal(t, []string{"near", "far"}, got)
	near, ok := x.Get("near")
	require.True(t, ok)
	assert.Equal(t, 5.0, near.MaxPayloadKg, "a copy handed out changes nothing kept")
	assert.False(t, x.Has("middle"))
	assert.Equal(t, 2, x.Len())
}
