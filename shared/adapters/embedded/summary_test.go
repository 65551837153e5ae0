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
