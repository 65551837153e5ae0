package embedded

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// scheduleStep opens a database holding delivery d1, just created, and
// receives the message that asks to schedule it.
func scheduleStep(t *testing.T) (*DB, *ports.Delivered) {
	t.Helper()
	db := MustOpen(t, Options{})
	bus, ctx := db.Bus(), ctxFor(t)
	q := topology.QueueDeliveryRequests
	require.NoError(t, db.Store().Deliveries.Create(ctx, "d1", &domain.Delivery{ID: "d1", Stage: domain.StageCreated}))
	must(t, bus.Publish(ctx, ports.Message{ID: "d1:requested", Queue: q, Body: []byte(`{}`)}), "publish")
	return db, receive(t, bus, q, 1)[0]
}

func TestAUnitOfWorkCommitsWritesMessagesAndCompletionInOneWrite(t *testing.T) {
	t.Parallel()
	db, m := scheduleStep(t)
	bus, ctx := db.Bus(), ctxFor(t)
	q, next := topology.QueueDeliveryRequests, topology.QueueDroneScheduled

	uow := bus.Begin()
	st := uow.Store()
	_, err := st.Deliveries.Update(ctx, "d1", func(d *domain.Delivery) error { return d.Reserve("drone-1", "", d.CreatedAt) })
	require.NoError(t, err)
	got, err := st.Deliveries.Find(ctx, "d1")
	require.NoError(t, err)
	assert.Equal(t, "drone-1", got.DroneID, "the unit of work reads its own writes")
	require.NoError(t, st.Packages.Create(ctx, "p1", &domain.Package{ID: "p1", DeliveryID: "d1"}))
	stored, err := db.Store().Deliveries.Find(ctx, "d1")
	require.NoError(t, err)
	assert.Empty(t, stored.DroneID, "nothing is written before Commit")

	before := db.Stats()
	require.NoError(t, uow.Commit(ctx, m, ports.Message{ID: "d1:drone-scheduled", Queue: next, Body: []byte(`{}`)}))
	assert.Equal(t, int64(1), db.Stats().Commits-before.Commits, "one transaction")
	stored, err = db.Store().Deliveries.Find(ctx, "d1")
	require.NoError(t, err)
	assert.Equal(t, "drone-1", stored.DroneID)
	_, err = db.Store().Packages.Find(ctx, "p1")
	require.NoError(t, err)
	expectDepth(t, bus, q, 0, 0)
	assert.Equal(t, "d1:drone-scheduled", receive(t, bus, next, 1)[0].ID)
}

func TestAUnitOfWorkThatLostARaceWritesNothing(t *testing.T) {
	t.Parallel()
	db, m := scheduleStep(t)
	bus, ctx := db.Bus(), ctxFor(t)
	q, next := topology.QueueDeliveryRequests, topology.QueueDroneScheduled

	uow := bus.Begin()
	require.NoError(t, uow.Store().Packages.Create(ctx, "p1", &domain.Package{ID: "p1"}))
	_, err := uow.Store().Deliveries.Update(ctx, "d1", func(d *domain.Delivery) error { return d.Reserve("drone-1", "", d.CreatedAt) })
	require.NoError(t, err)
	// Another writer gets to the delivery first.
	_, err = db.Store().Deliveries.Update(ctx, "d1", func(d *domain.Delivery) error { return d.Reserve("drone-2", "", d.CreatedAt) })
	require.NoError(t, err)

	err = uow.Commit(ctx, m, ports.Message{ID: "d1:drone-scheduled", Queue: next, Body: []byte(`{}`)})
	require.ErrorIs(t, err, ports.ErrStale)
	stored, err := db.Store().Deliveries.Find(ctx, "d1")
	require.NoError(t, err)
	assert.Equal(t, "drone-2", stored.DroneID)
	_, err = db.Store().Packages.Find(ctx, "p1")
	assert.True(t, domain.IsCode(err, domain.ENOTFOUND), "the package written before the conflict was undone: %v", err)
	expectDepth(t, bus, next, 0, 0)
	expectDepth(t, bus, q, 1, 0) // still locked: not completed

	// The lock is the message's still: a fresh run commits.
	again := bus.Begin()
	_, err = again.Store().Deliveries.Update(ctx, "d1", func(d *domain.Delivery) error { return d.DropReservation("drone-2", d.CreatedAt) })
	require.NoError(t, err)
	require.NoError(t, again.Commit(ctx, m))
	expectDepth(t, bus, q, 0, 0)
}

func TestAUnitOfWorkWhoseLockWasLostWritesNothing(t *testing.T) {
	t.Parallel()
	db := MustOpen(t, Options{})
	bus, ctx := db.Bus(), ctxFor(t)
	q := topology.QueueDeliveryRequests
	must(t, bus.Publish(ctx, ports.Message{ID: "m1", Queue: q, Body: []byte(`{}`)}), "publish")
	m := receive(t, bus, q, 1)[0]
	require.NoError(t, bus.Complete(ctx, m))

	uow := bus.Begin()
	require.NoError(t, uow.Store().Packages.Create(ctx, "p1", &domain.Package{ID: "p1"}))
	err := uow.Commit(ctx, m)
	assert.True(t, domain.IsCode(err, domain.ECONFLICT), "%v", err)
	_, err = db.Store().Packages.Find(ctx, "p1")
	assert.True(t, domain.IsCode(err, domain.ENOTFOUND), "%v", err)
}

func TestAUnitOfWorkKeepsTheDispatchIndexCurrent(t *testing.T) {
	t.Parallel()
	db := MustOpen(t, Options{})
	ctx := ctxFor(t)
	home := domain.Location{Latitude: 47.6, Longitude: -122.3}
	require.NoError(t, db.Store().Fleet.Create(ctx, "drone-1", &domain.Drone{ID: "drone-1", Status: domain.DroneAvailable, Location: home, HomeBase: home,
		MaxPayloadKg: 5, MaxPackageSize: domain.SizeLarge, RangeKm: 50, CruiseSpeedMps: 10, BatteryPercent: 100}))
	req := &domain.DeliveryRequest{PickupLocation: home, DropoffLocation: home, PackageInfo: domain.PackageInfo{Size: domain.SizeSmall, Weight: 1}}

	uow := db.Begin()
	_, err := uow.Store().Fleet.Update(ctx, "drone-1", func(dr *domain.Drone) error { return dr.Claim("d1", 0, req, dr.UpdatedAt) })
	require.NoError(t, err)
	assert.Len(t, nearestIDs(ctx, db.Store().Fleet, home), 1, "not claimed until committed")
	require.NoError(t, uow.Commit(ctx, nil))
	assert.Empty(t, nearestIDs(ctx, db.Store().Fleet, home), "the claim left the index with the commit")
}

func TestAUnitOfWorkFindsTheDronesItFreed(t *testing.T) {
	t.Parallel()
	db := MustOpen(t, Options{})
	ctx := ctxFor(t)
	home := domain.Location{Latitude: 47.6, Longitude: -122.3}
	far := domain.Location{Latitude: 47.7, Longitude: -122.3}
	req := &domain.DeliveryRequest{PickupLocation: home, DropoffLocation: home, PackageInfo: domain.PackageInfo{Size: domain.SizeSmall, Weight: 1}}
	for id, at := range map[string]domain.Location{"near": home, "far": far} {
		require.NoError(t, db.Store().Fleet.Create(ctx, id, &domain.Drone{ID: id, Status: domain.DroneAvailable, Location: at, HomeBase: at,
			MaxPayloadKg: 5, MaxPackageSize: domain.SizeLarge, RangeKm: 50, CruiseSpeedMps: 10, BatteryPercent: 100}))
	}
	_, err := db.Store().Fleet.Update(ctx, "near", func(dr *domain.Drone) error { return dr.Claim("d1", 0, req, dr.UpdatedAt) })
	require.NoError(t, err)
	require.Equal(t, []string{"far"}, nearestIDs(ctx, db.Store().Fleet, home))

	uow := db.Begin()
	fleet := uow.Store().Fleet
	_, err = fleet.Update(ctx, "near", func(dr *domain.Drone) error { return dr.Release("d1", domain.TrackingConfig{}, dr.UpdatedAt) })
	require.NoError(t, err)
	assert.Equal(t, []string{"near", "far"}, nearestIDs(ctx, fleet, home), "the drone it freed, nearest first")
	_, err = fleet.Update(ctx, "far", func(dr *domain.Drone) error { return dr.Claim("d2", 0, req, dr.UpdatedAt) })
	require.NoError(t, err)
	assert.Equal(t, []string{"near"}, nearestIDs(ctx, fleet, home), "not the drone it claimed")
	assert.Equal(t, []string{"far"}, nearestIDs(ctx, db.Store().Fleet, home), "others see the index as committed")
}

func TestAUnitOfWorkCreatesOnlyWhatDoesNotExist(t *testing.T) {
	t.Parallel()
	db := MustOpen(t, Options{})
	ctx := ctxFor(t)
	require.NoError(t, db.Store().Deliveries.Create(ctx, "d1", &domain.Delivery{ID: "d1", Stage: domain.StageCreated}))

	uow := db.Begin()
	require.NoError(t, uow.Store().Deliveries.Create(ctx, "d1", &domain.Delivery{ID: "d1", Stage: domain.StageFailed}),
		"a document the unit of work has not read is checked at commit")
	require.ErrorIs(t, uow.Commit(ctx, nil), ports.ErrStale)
	stored, err := db.Store().Deliveries.Find(ctx, "d1")
	require.NoError(t, err)
	assert.Equal(t, domain.StageCreated, stored.Stage)

	read := db.Begin()
	_, err = read.Store().Deliveries.Find(ctx, "d1")
	require.NoError(t, err)
	err = read.Store().Deliveries.Create(ctx, "d1", &domain.Delivery{ID: "d1"})
	assert.True(t, domain.IsCode(err, domain.ECONFLICT), "one it has read is refused at once: %v", err)
}

// stageIDs lists owner's deliveries in stage, one page of up to 10.
func stageIDs(t *testing.T, db *DB, owner string, stage domain.Stage) []string {
	t.Helper()
	page, err := db.Store().Deliveries.PageByOwner(ctxFor(t), ports.DeliveryFilter{OwnerID: owner, Stage: stage, Limit: 10})
	require.NoError(t, err)
	ids := []string{}
	for _, d := range page.Deliveries {
		ids = append(ids, d.ID)
	}
	return ids
}

func TestAUnitOfWorkMovesTheOwnerIndexWithItsCommit(t *testing.T) {
	t.Parallel()
	db := MustOpen(t, Options{})
	ctx := ctxFor(t)
	// Ingest's way: the delivery is created in a unit of work.
	uow := db.Begin()
	require.NoError(t, uow.Store().Deliveries.Create(ctx, "d1", &domain.Delivery{ID: "d1", OwnerID: "o1", Stage: domain.StageCreated}))
	assert.Empty(t, stageIDs(t, db, "o1", ""), "not listed before the commit")
	require.NoError(t, uow.Commit(ctx, nil))
	assert.Equal(t, []string{"d1"}, stageIDs(t, db, "o1", domain.StageCreated))

	schedule := func(uow ports.UnitOfWork) {
		_, err := uow.Store().Deliveries.Update(ctx, "d1", func(d *domain.Delivery) error {
			d.SetStage(domain.StageScheduled, d.CreatedAt, "")
			return nil
		})
		require.NoError(t, err)
	}
	uow = db.Begin()
	schedule(uow)
	assert.Equal(t, []string{"d1"}, stageIDs(t, db, "o1", domain.StageCreated), "still Created before the commit")

	// A unit of work that lost its race leaves the index as it was.
	lost := db.Begin()
	schedule(lost)
	require.NoError(t, uow.Commit(ctx, nil))
	require.ErrorIs(t, lost.Commit(ctx, nil), ports.ErrStale)
	assert.Equal(t, []string{"d1"}, stageIDs(t, db, "o1", domain.StageScheduled))
	assert.Empty(t, stageIDs(t, db, "o1", domain.StageCreated))

	// A rerun that finds the stage already changed skips: the index keeps
	// its one row.
	again := db.Begin()
	_, err := again.Store().Deliveries.Update(ctx, "d1", func(d *domain.Delivery) error {
		if d.Stage == domain.StageScheduled {
			return ports.ErrSkip
		}
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, again.Commit(ctx, nil))
	assert.Equal(t, []string{"d1"}, stageIDs(t, db, "o1", ""))
}

// TestOpenIndexesDeliveriesStoredBeforeTheIndex opens a file as an older
// binary left it, deliveries without owner index rows, and finds them
// listed.
func TestOpenIndexesDeliveriesStoredBeforeTheIndex(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := Open(path, Options{})
	require.NoError(t, err)
	ctx := ctxFor(t)
	at := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	for i, stage := range []domain.Stage{domain.StageCompleted, domain.StageCreated} {
		id := fmt.Sprintf("old-%d", i)
		require.NoError(t, db.Store().Deliveries.Create(ctx, id, &domain.Delivery{ID: id, OwnerID: "o1", Stage: stage, CreatedAt: at.Add(time.Duration(i))}))
	}
	_, err = db.w.ExecContext(ctx, "DELETE FROM delivery_index; PRAGMA user_version = 0")
	require.NoError(t, err)
	assert.Empty(t, stageIDs(t, db, "o1", ""), "the old file has no index rows")
	require.NoError(t, db.Close())

	db = mustOpenAt(t, path, Options{})
	assert.Equal(t, []string{"old-1", "old-0"}, stageIDs(t, db, "o1", ""))
	assert.Equal(t, []string{"old-0"}, stageIDs(t, db, "o1", domain.StageCompleted))
	var version int
	require.NoError(t, db.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version))
	assert.Equal(t, schemaVersion, version)
}

// twoHandles opens one file twice, as two processes sharing it would.
func twoHandles(t *testing.T) (a, b *DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db")
	return mustOpenAt(t, path, Options{}), mustOpenAt(t, path, Options{})
}

// A unit of work claims a drone from the dispatch index's copy, reading
// no row; a claim that another process made first, which the index has
// not heard of, fails the commit as stale, after which the index knows
// it and the step's next run does not take the drone again.
func TestAUnitOfWorkClaimsFromTheIndexAndLearnsOfOtherProcesses(t *testing.T) {
	t.Parallel()
	a, b := twoHandles(t)
	ctx := ctxFor(t)
	home := domain.Location{Latitude: 47.6, Longitude: -122.3}
	req := &domain.DeliveryRequest{PickupLocation: home, DropoffLocation: home, PackageInfo: domain.PackageInfo{Size: domain.SizeSmall, Weight: 1}}
	claim := func(dr *domain.Drone) error { return dr.Claim("d1", 0, req, dr.UpdatedAt) }
	for _, id := range []string{"drone-1", "drone-2"} {
		require.NoError(t, a.Store().Fleet.Create(ctx, id, &domain.Drone{ID: id, Status: domain.DroneAvailable, Location: home, HomeBase: home,
			MaxPayloadKg: 5, MaxPackageSize: domain.SizeLarge, RangeKm: 50, CruiseSpeedMps: 10, BatteryPercent: 100}))
	}

	uow := a.Begin()
	before := a.Stats().Reads
	_, err := uow.Store().Fleet.Update(ctx, "drone-1", claim)
	require.NoError(t, err)
	assert.Equal(t, before, a.Stats().Reads, "the claim read no row")
	require.NoError(t, uow.Commit(ctx, nil))
	got, err := b.Store().Fleet.Find(ctx, "drone-1")
	require.NoError(t, err)
	assert.Equal(t, "d1", got.CurrentDeliveryID)

	// b claims drone-2; a's index still holds it as available.
	_, err = b.Store().Fleet.Update(ctx, "drone-2", func(dr *domain.Drone) error { return dr.Claim("d2", 0, req, dr.UpdatedAt) })
	require.NoError(t, err)
	require.Equal(t, []string{"drone-2"}, nearestIDs(ctx, a.Store().Fleet, home))
	uow = a.Begin()
	_, err = uow.Store().Fleet.Update(ctx, "drone-2", claim)
	require.NoError(t, err)
	require.ErrorIs(t, uow.Commit(ctx, nil), ports.ErrStale)
	assert.Empty(t, nearestIDs(ctx, a.Store().Fleet, home), "the stale commit taught the index")
	got, err = a.Store().Fleet.Find(ctx, "drone-2")
	require.NoError(t, err)
	assert.Equal(t, "d2", got.CurrentDeliveryID, "b's claim stands")

	// An update that decides on the index's copy and changes nothing
	// decides again on the file's, which no commit would check.
	require.NoError(t, a.Store().Fleet.Create(ctx, "drone-3", &domain.Drone{ID: "drone-3", Status: domain.DroneAvailable, Location: home, HomeBase: home,
		MaxPayloadKg: 5, MaxPackageSize: domain.SizeLarge, RangeKm: 50, CruiseSpeedMps: 10, BatteryPercent: 100}))
	_, err = b.Store().Fleet.Update(ctx, "drone-3", func(dr *domain.Drone) error { return dr.Claim("d3", 0, req, dr.UpdatedAt) })
	require.NoError(t, err)
	var seen []string
	_, err = a.Begin().Store().Fleet.Update(ctx, "drone-3", func(dr *domain.Drone) error {
		seen = append(seen, dr.CurrentDeliveryID)
		return ports.ErrSkip
	})
	require.NoError(t, err)
	assert.Equal(t, []string{"", "d3"}, seen, "decided on the index's copy, then on the file's")
}

// ListByOwner reads the owner index: the owner's deliveries created in
// [from, to), oldest first, at most limit of them; another owner's and
// those outside the range are left out.
func TestListByOwnerReadsTheOwnerIndexOldestFirst(t *testing.T) {
	t.Parallel()
	db := MustOpen(t, Options{})
	ctx := ctxFor(t)
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 500, time.UTC)
	for i, c := range []struct {
		id, owner string
		at        time.Duration
	}{{"d3", "o1", 3 * time.Minute}, {"d1", "o1", time.Minute}, {"d0", "o1", 0}, {"x2", "o2", 2 * time.Minute},
		{"d2", "o1", 2 * time.Minute}, {"d4", "o1", 4 * time.Minute}} {
		d := &domain.Delivery{ID: c.id, OwnerID: c.owner, Stage: domain.StageCreated, CreatedAt: t0.Add(c.at)}
		if i%2 == 0 {
			require.NoError(t, db.Store().Deliveries.Create(ctx, c.id, d))
			continue
		}
		uow := db.Begin() // the unit of work writes the index row too
		require.NoError(t, uow.Store().Deliveries.Create(ctx, c.id, d))
		require.NoError(t, uow.Commit(ctx, nil))
	}
	ids := func(from, to time.Time, limit int) []string {
		got, err := db.Store().Deliveries.ListByOwner(ctx, "o1", from, to, limit)
		require.NoError(t, err)
		var out []string
		for _, d := range got {
			assert.Equal(t, "o1", d.OwnerID)
			out = append(out, d.ID)
		}
		return out
	}
	// from is included, to is not, to the nanosecond.
	assert.Equal(t, []string{"d1", "d2", "d3"}, ids(t0.Add(time.Minute), t0.Add(4*time.Minute), 10))
	assert.Equal(t, []string{"d1", "d2", "d3", "d4"}, ids(t0.Add(time.Minute), t0.Add(4*time.Minute+1), 10))
	assert.Equal(t, []string{"d0", "d1"}, ids(time.Time{}, t0.Add(time.Hour), 2), "the oldest, up to the limit")
	assert.Equal(t, []string{"d0", "d1", "d2", "d3", "d4"}, ids(time.Time{}, time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), 10))
	assert.Empty(t, ids(t0.Add(time.Hour), t0.Add(2*time.Hour), 10))
	assert.Empty(t, ids(time.Time{}, time.Time{}, 10), "nothing is created before the earliest time")
	assert.Empty(t, ids(time.Time{}, t0.Add(time.Hour), 0))
}

// A step starts from the delivery as this process last committed it,
// reading no row; when another process has changed it since, the commit
// fails as stale even though the step only read it, and so does
// CheckReads, which a runtime asks when the step failed, after which the
// next unit of work sees the other process's version.
func TestAUnitOfWorkReadsRecentDeliveriesAndChecksThem(t *testing.T) {
	t.Parallel()
	a, b := twoHandles(t)
	ctx := ctxFor(t)
	require.NoError(t, a.Store().Deliveries.Create(ctx, "d1", &domain.Delivery{ID: "d1", Stage: domain.StageCreated}))

	find := func(uow ports.UnitOfWork) *domain.Delivery {
		t.Helper()
		d, err := uow.Store().Deliveries.Find(ctx, "d1")
		require.NoError(t, err)
		return d
	}
	uow := a.Begin()
	before := a.Stats().Reads
	assert.Equal(t, domain.StageCreated, find(uow).Stage)
	assert.Equal(t, before, a.Stats().Reads, "the delivery came from the cache")
	require.NoError(t, uow.(ports.ReadChecker).CheckReads(ctx), "nothing changed")
	require.NoError(t, uow.Commit(ctx, nil), "nothing changed")

	// b cancels it; a's cache still holds it as created.
	_, err := b.Store().Deliveries.Update(ctx, "d1", func(d *domain.Delivery) error { d.Stage = domain.StageCancelled; return nil })
	require.NoError(t, err)
	uow = a.Begin()
	assert.Equal(t, domain.StageCreated, find(uow).Stage, "the cache has not heard of b's write")
	require.ErrorIs(t, uow.Commit(ctx, nil, ports.Message{ID: "m1", Queue: topology.QueueDroneScheduled, Body: []byte(`{}`)}), ports.ErrStale,
		"a step that only read a stale copy does not commit")
	expectDepth(t, a.Bus(), topology.QueueDroneScheduled, 0, 0)
	assert.Equal(t, domain.StageCancelled, find(a.Begin()).Stage, "the stale commit taught the cache")

	_, err = b.Store().Deliveries.Update(ctx, "d1", func(d *domain.Delivery) error { d.Stage = domain.StageFailed; return nil })
	require.NoError(t, err)
	uow = a.Begin()
	assert.Equal(t, domain.StageCancelled, find(uow).Stage)
	require.ErrorIs(t, uow.(ports.ReadChecker).CheckReads(ctx), ports.ErrStale)
	assert.Equal(t, domain.StageFailed, find(a.Begin()).Stage, "CheckReads taught the cache")
}

// The cache keeps the newest version it heard of and forgets the oldest
// document first when full.
func TestRecentKeepsTheNewestAndForgetsTheOldest(t *testing.T) {
	t.Parallel()
	r := newRecent(2)
	r.put("d1", 2, []byte(`{"v":2}`))
	r.put("d1", 1, []byte(`{"v":1}`))
	version, body, ok := r.get("d1")
	require.True(t, ok)
	assert.Equal(t, int64(2), version, "an older version is ignored")
	assert.JSONEq(t, `{"v":2}`, string(body))
	r.put("d1", 3, []byte(`{"v":3}`))
	version, body, _ = r.get("d1")
	assert.Equal(t, int64(3), version)
	assert.JSONEq(t, `{"v":3}`, string(body))

	r.put("d2", 1, []byte(`{}`))
	r.put("d3", 1, []byte(`{}`))
	_, _, ok = r.get("d1")
	assert.False(t, ok, "the oldest is forgotten")
	for _, id := range []string{"d2", "d3"} {
		_, _, ok = r.get(id)
		assert.True(t, ok, id)
	}
}

// A unit of work answers the zones' version this process knows without
// reading the row, and its commit checks it: a zone another process
// writes meanwhile, the first one included, makes the commit stale, after
// which the next unit of work knows the new version; a zone written
// through this process shows in the next unit of work at once.
func TestAUnitOfWorkChecksTheZonesVersionItDecidedUnder(t *testing.T) {
	t.Parallel()
	a, b := twoHandles(t)
	ctx := ctxFor(t)
	square := domain.Polygon{{{-122.3, 47.6}, {-122.2, 47.6}, {-122.2, 47.7}, {-122.3, 47.6}}}
	zone := func(id string) *domain.Zone {
		return &domain.Zone{ID: id, Kind: domain.NoFlyZone, GeometryType: "Polygon", Polygons: []domain.Polygon{square}}
	}
	version := func(uow ports.UnitOfWork) string {
		t.Helper()
		v, err := uow.Store().Zones.Version(ctx)
		require.NoError(t, err)
		return v
	}

	first := version(a.Begin())
	uow := a.Begin()
	before := a.Stats().Reads
	assert.Equal(t, first, version(uow))
	assert.Equal(t, first, version(uow), "asked twice")
	assert.Equal(t, before, a.Stats().Reads, "the known version: no row read")
	require.NoError(t, uow.Commit(ctx, nil), "no zone changed")

	// b writes the first zone of the file; a does not know of it.
	require.NoError(t, b.Store().Zones.Create(ctx, domain.ZoneKey(domain.NoFlyZone, "z1"), zone("z1")))
	uow = a.Begin()
	assert.Equal(t, first, version(uow))
	require.ErrorIs(t, uow.Commit(ctx, nil), ports.ErrStale, "decided under a version that has changed")
	second := version(a.Begin())
	assert.NotEqual(t, first, second, "the stale commit taught the version")

	_, err := b.Store().Zones.Update(ctx, domain.ZoneKey(domain.NoFlyZone, "z1"), func(z *domain.Zone) error { z.Name = "renamed"; return nil })
	require.NoError(t, err)
	uow = a.Begin()
	assert.Equal(t, second, version(uow))
	require.ErrorIs(t, uow.(ports.ReadChecker).CheckReads(ctx), ports.ErrStale)
	third := version(a.Begin())
	assert.NotEqual(t, second, third)

	// A zone written through a shows in a's next unit of work at once.
	require.NoError(t, a.Store().Zones.Delete(ctx, domain.ZoneKey(domain.NoFlyZone, "z1")))
	uow = a.Begin()
	fourth := version(uow)
	assert.NotEqual(t, third, fourth)
	require.NoError(t, uow.Commit(ctx, nil))
}
