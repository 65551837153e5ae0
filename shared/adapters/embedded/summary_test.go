package embedded

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// The fleet keeps its summary as drones are written: a new drone counts
// at once, a changed one after a rebuild from memory, and a reopened file
// counts every drone in it, whatever its status.
func TestTheFleetKeepsItsSummaryAsDronesAreWritten(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "db")
	db := mustOpenAt(t, path, Options{})
	db.fleet.summary.rebuildEvery = time.Nanosecond
	ctx := ctxFor(t)
	speedFor := func(db *DB, kg float64) float64 {
		t.Helper()
		s, err := db.fleet.Summary(ctx)
		require.NoError(t, err)
		return s.MaxSpeedMps(&domain.PackageInfo{Size: domain.SizeSmall, Weight: kg})
	}
	assert.Zero(t, speedFor(db, 1), "no drone yet")

	home := domain.Location{Latitude: 47.6, Longitude: -122.3}
	drone := func(id string, kg, speed float64, status domain.DroneStatus) *domain.Drone {
		return &domain.Drone{ID: id, Status: status, Location: home, HomeBase: home, MaxPayloadKg: kg,
			MaxPackageSize: domain.SizeLarge, RangeKm: 50, CruiseSpeedMps: speed, BatteryPercent: 100}
	}
	require.NoError(t, db.Store().Fleet.Create(ctx, "a", drone("a", 5, 10, domain.DroneAvailable)))
	assert.Equal(t, 10.0, speedFor(db, 4))
	assert.Zero(t, speedFor(db, 8))

	_, err := db.Store().Fleet.Update(ctx, "a", func(d *domain.Drone) error { d.MaxPayloadKg = 10; return nil })
	require.NoError(t, err)
	assert.Equal(t, 10.0, speedFor(db, 8), "a drone that lifts more counts")
	_, err = db.Store().Fleet.Update(ctx, "a", func(d *domain.Drone) error { d.MaxPayloadKg = 2; return nil })
	require.NoError(t, err)
	assert.Zero(t, speedFor(db, 4), "what a drone no longer lifts is not counted")

	require.NoError(t, db.Store().Fleet.Create(ctx, "b", drone("b", 5, 30, domain.DroneMaintenance)))

	// A retired drone leaves the summary; put back, it counts at once,
	// before any rebuild.
	require.NoError(t, db.Store().Fleet.Create(ctx, "c", drone("c", 20, 40, domain.DroneRetired)))
	assert.Zero(t, speedFor(db, 15), "a retired drone is not counted")
	db.fleet.summary.rebuildEvery = time.Hour
	_, err = db.Store().Fleet.Update(ctx, "c", func(d *domain.Drone) error { d.Status = domain.DroneAvailable; return nil })
	require.NoError(t, err)
	assert.Equal(t, 40.0, speedFor(db, 15), "put back, it counts without waiting for a rebuild")
	_, err = db.Store().Fleet.Update(ctx, "c", func(d *domain.Drone) error { d.Status = domain.DroneRetired; return nil })
	require.NoError(t, err)
	db.fleet.summary.rebuildEvery = time.Nanosecond
	assert.Zero(t, speedFor(db, 15), "retired again, it leaves at the rebuild")

	require.NoError(t, db.Close())
	again := mustOpenAt(t, path, Options{})
	assert.Equal(t, 30.0, speedFor(again, 4), "a drone in maintenance counts after a reopen")
	assert.Zero(t, speedFor(again, 15), "a retired one does not")
	s, err := again.fleet.Summary(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, s.Drones())
}

// A drone whose capabilities change is still one drone: the summary's
// count of drones in an area, of which the operator's fair-share cap is a
// share, stays exact between rebuilds. And a report that moves a drone's
// range and battery by rounding alone is no change.
func TestACapabilityChangeCountsNoDroneTwice(t *testing.T) {
	t.Parallel()
	db := mustOpenAt(t, filepath.Join(t.TempDir(), "db"), Options{})
	db.fleet.summary.rebuildEvery = time.Hour
	ctx := ctxFor(t)
	home := domain.Location{Latitude: 47.6, Longitude: -122.3}
	for _, id := range []string{"a", "b"} {
		require.NoError(t, db.Store().Fleet.Create(ctx, id, &domain.Drone{ID: id, Status: domain.DroneAvailable, Location: home, HomeBase: home,
			MaxPayloadKg: 5, MaxPackageSize: domain.SizeLarge, RangeKm: 48.96, FullRangeKm: 54.4, CruiseSpeedMps: 15, BatteryPercent: 100}))
	}
	dronesIn := func() int {
		t.Helper()
		s, err := db.fleet.Summary(ctx)
		require.NoError(t, err)
		return s.DronesIn(domain.AreaOf(home))
	}
	// A change, read: the summary is rebuilt now, and not again for an
	// hour (rebuildEvery).
	_, err := db.Store().Fleet.Update(ctx, "b", func(d *domain.Drone) error { d.MaxPayloadKg = 6; return nil })
	require.NoError(t, err)
	require.Equal(t, 2, dronesIn())

	_, err = db.Store().Fleet.Update(ctx, "a", func(d *domain.Drone) error { d.MaxPayloadKg = 10; return nil })
	require.NoError(t, err)
	assert.Equal(t, 2, dronesIn(), "a drone that lifts more is one drone still")
	s, err := db.fleet.Summary(ctx)
	require.NoError(t, err)
	assert.Equal(t, 15.0, s.MaxSpeedMps(&domain.PackageInfo{Size: domain.SizeSmall, Weight: 8}), "and what it lifts now counts at once")

	db.fleet.mu.Lock()
	db.fleet.summary.stale = false
	db.fleet.mu.Unlock()
	cfg := domain.TrackingConfig{}.WithDefaults()
	for battery := 99.0; battery > 20; battery -= 7.3 { // 48.96 km, and 48.959999999999994 and 48.96000000000001

		_, err := db.Store().Fleet.Update(ctx, "b", func(d *domain.Drone) error { d.SetBattery(battery, cfg); return nil })
		require.NoError(t, err)
	}
	db.fleet.mu.Lock()
	assert.False(t, db.fleet.summary.stale, "reports change no capability")
	db.fleet.mu.Unlock()

	// Based elsewhere, a drone counts there, and no more where it was, at
	// once.
	away := domain.Location{Latitude: 48.6, Longitude: -122.3}
	_, err = db.Store().Fleet.Update(ctx, "b", func(d *domain.Drone) error { d.HomeBase, d.Location = away, away; return nil })
	require.NoError(t, err)
	s, err = db.fleet.Summary(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, s.DronesIn(domain.AreaOf(home)))
	assert.Equal(t, 1, s.DronesIn(domain.AreaOf(away)))
}
