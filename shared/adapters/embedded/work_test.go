package embedded

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

func TestAUnitOfWorkCommitsWritesMessagesAndCompletionInOneWrite(t *testing.T) {
	t.Parallel()
	db := MustOpen(t, Options{})
	bus, ctx := db.Bus(), ctxFor(t)
	q, next := topology.QueueDeliveryRequests, topology.QueueDroneScheduled
	require.NoError(t, db.Store().Deliveries.Create(ctx, "d1", &domain.Delivery{ID: "d1", Stage: domain.StageCreated}))
	must(t, bus.Publish(ctx, ports.Message{ID: "d1:requested", Queue: q, Body: []byte(`{}`)}), "publish")
	m := receive(t, bus, q, 1)[0]

	uow := bus.Begin()
	st := uow.Store()
	_, err := st.Deliveries.Update(ctx, "d1", func(d *domain.Delivery) error { return d.Reserve("drone-1", d.CreatedAt) })
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
	db := MustOpen(t, Options{})
	bus, ctx := db.Bus(), ctxFor(t)
	q, next := topology.QueueDeliveryRequests, topology.QueueDroneScheduled
	require.NoError(t, db.Store().Deliveries.Create(ctx, "d1", &domain.Delivery{ID: "d1", Stage: domain.StageCreated}))
	must(t, bus.Publish(ctx, ports.Message{ID: "d1:requested", Queue: q, Body: []byte(`{}`)}), "publish")
	m := receive(t, bus, q, 1)[0]

	uow := bus.Begin()
	require.NoError(t, uow.Store().Packages.Create(ctx, "p1", &domain.Package{ID: "p1"}))
	_, err := uow.Store().Deliveries.Update(ctx, "d1", func(d *domain.Delivery) error { return d.Reserve("drone-1", d.CreatedAt) })
	require.NoError(t, err)
	// Another writer gets to the delivery first.
	_, err = db.Store().Deliveries.Update(ctx, "d1", func(d *domain.Delivery) error { return d.Reserve("drone-2", d.CreatedAt) })
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
