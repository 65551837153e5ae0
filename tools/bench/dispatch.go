package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/fleetgen"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
	"github.com/fabrikam/dronedelivery/tools/loadgen"
)

// The dense dispatch fleets pack -dispatch-fleet drones and every pickup
// within this radius of the centre, the shape that made a fixed-grid index
// slow down (issue 17).
const denseFleetRadiusKm = 5

// dispatchScenario times the scheduling step in this process on three
// fleets of -dispatch-fleet drones: the bench fleet spread over 20 km, a
// dense one within 5 km, and the dense one with the half nearest the centre
// unavailable, as a busy spell of pickups around the centre leaves it.
func (b *benchRun) dispatchScenario(ctx context.Context) error {
	dir := filepath.Join(b.work, "dispatch")
	if err := copyData(b.large, dir); err != nil {
		return err
	}
	if err := b.dispatchOn(ctx, dir, dispatchShapes[0], benchPickupRadiusKm); err != nil {
		return err
	}

	start := time.Now()
	now := time.Now().UTC()
	dense := fleetgen.Generate(b.o.dispatchFleet, benchCenter, denseFleetRadiusKm, 2, now)
	dir = filepath.Join(b.work, "dispatch-dense")
	if err := seedTemplate(ctx, dir, dense); err != nil {
		return err
	}
	taken := slices.Clone(dense)
	slices.SortFunc(taken, func(a, b *domain.Drone) int {
		return cmp.Compare(domain.DistanceKm(benchCenter, a.Location), domain.DistanceKm(benchCenter, b.Location))
	})
	for _, d := range taken[:len(taken)/2] {
		d.Status = domain.DroneMaintenance
	}
	depleted := filepath.Join(b.work, "dispatch-depleted")
	if err := seedTemplate(ctx, depleted, dense); err != nil {
		return err
	}
	b.say("   dense fleets: 2 × %d drones seeded in %.1fs", len(dense), time.Since(start).Seconds())
	dense, taken = nil, nil
	if err := b.dispatchOn(ctx, dir, dispatchShapes[1], denseFleetRadiusKm); err != nil {
		return err
	}
	return b.dispatchOn(ctx, depleted, dispatchShapes[2], denseFleetRadiusKm)
}

// dispatchShapes are the fleets dispatchScenario measures, as they appear
// in run names after the fleet size.
var dispatchShapes = []string{"", fmt.Sprintf(" within %d km", denseFleetRadiusKm), fmt.Sprintf(" within %d km, nearest half taken", denseFleetRadiusKm)}

// dispatchTag names a dispatch fleet in run names: its size and shape.
func dispatchTag(fleet int, shape string) string {
	return fmt.Sprintf("%dk drones%s", fleet/1000, shape)
}

// dispatchOn times, on the fleet in data folder dir with pickups within
// pickupKm of the centre, the whole ScheduleDrone handler per assignment
// (search, reservation, claim, record), writing each change through and
// in a unit of work as the runtime runs it, its candidate search alone
// through the spatial index, and the same search as a linear scan of the
// fleet.
// Drones beyond -dispatch-fleet are made unavailable first.
func (b *benchRun) dispatchOn(ctx context.Context, dir, shape string, pickupKm float64) error {
	db, err := embedded.Open(filepath.Join(dir, benchDataFile), embedded.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	store := db.Store()
	all, err := listFleet(ctx, store.Fleet)
	if err != nil {
		return err
	}
	if len(all) > b.o.dispatchFleet {
		// Drop the surplus so the fleet is the size asked for.
		for _, d := range all[b.o.dispatchFleet:] {
			if _, err := store.Fleet.Update(ctx, d.ID, func(d *domain.Drone) error { d.Status = domain.DroneMaintenance; return nil }); err != nil {
				return err
			}
		}
		all = all[:b.o.dispatchFleet]
	}
	n := b.o.dispatch
	now := time.Now().UTC()
	reqs := make([]*domain.DeliveryRequest, n)
	for i := range n {
		p, err := wire.ParseDeliveryRequest(requestBody(fmt.Sprintf("dispatch-%d", i), "bench", i))
		if err != nil {
			return err
		}
		if pickupKm != benchPickupRadiusKm {
			// The same draw as requestBody's, over the smaller disc.
			p.Request.PickupLocation = offsetKm(benchCenter, pickupKm*math.Sqrt(unit(i, 1)), 2*math.Pi*unit(i, 2))
			p.Request.DropoffLocation = offsetKm(p.Request.PickupLocation, benchDropoffKm*(0.05+0.95*unit(i, 3)), 2*math.Pi*unit(i, 4))
		}
		p.Request.Defaults(now, fmt.Sprintf("dispatch-%d", i), 0)
		reqs[i] = &p.Request
	}
	tag := dispatchTag(b.o.dispatchFleet, shape)

	// The searches first, on the untouched fleet.
	const radius = 200.0
	var sink atomic.Int64
	searches := min(n, 500)
	// Each timed run starts from a collected heap, so that garbage of the
	// setup (the whole fleet decoded for the linear scan) is not charged
	// to it as GC work.
	goruntime.GC()
	index := loadgen.Run(ctx, loadgen.Config{Name: "dispatch search, spatial index, " + tag, Concurrency: 1, Duration: time.Hour, MaxOps: n},
		func(ctx context.Context, i int) error {
			for d, km := range store.Fleet.NearestAvailable(ctx, reqs[i].PickupLocation) {
				if km > radius {
					break
				}
				if domain.Unfit(d, reqs[i]) == "" {
					sink.Add(1)
					return nil
				}
			}
			return errors.New("no drone")
		})

	linear := loadgen.Run(ctx, loadgen.Config{Name: "dispatch search, linear scan, " + tag, Concurrency: 1, Duration: time.Hour, MaxOps: searches},
		func(_ context.Context, i int) error {
			best, bestKm := -1, math.Inf(1)
			for k, d := range all {
				if domain.Unfit(d, reqs[i]) != "" {
					continue
				}
				if km := domain.DistanceKm(d.Location, reqs[i].PickupLocation); km < bestKm && km <= radius {
					best, bestKm = k, km
				}
			}
			if best < 0 {
				return errors.New("no drone")
			}
			sink.Add(int64(best))
			return nil
		})
	all = nil
	goruntime.GC()

	// Then whole assignments, which claim drones as a real run does.
	h := handlers.New(handlers.Deps{Store: store, Bus: db.Bus(), Clock: platform.Clock{}, IDs: platform.IDs{}, Log: slog.New(slog.DiscardHandler)})
	if err := createWaiting(ctx, store, "dispatch-", reqs, now); err != nil {
		return err
	}
	msgs := make([]*ports.Delivered, n)
	for i := range n {
		msgs[i] = &ports.Delivered{Message: requested(fmt.Sprintf("dispatch-%d", i)), DeliveryCount: 1}
	}
	// Each assigned drone is freed again, untimed, so that every
	// assignment searches a fleet of the full size. The setup's writes are
	// copied into the file first, so the timed steps do not wait on that.
	if err := db.Checkpoint(ctx); err != nil {
		return err
	}
	whole := loadgen.Measure(ctx, "dispatch ScheduleDrone, "+tag, n, func(ctx context.Context, i int) (time.Duration, error) {
		start := time.Now()
		out, err := h.ScheduleDrone(ctx, msgs[i])
		took := time.Since(start)
		if err != nil {
			return 0, err
		}
		return took, freeAssigned(ctx, store, msgs[i].CorrelationID, out)
	})

	// Then the same as the standalone runtime runs the step on this
	// backend: in a unit of work whose one commit holds the delivery, the
	// drone, the next message and the completion of the message handled.
	// Each message is received under a lock first, untimed.
	bus := db.Bus()
	if err := createWaiting(ctx, store, "dispatch-unit-", reqs, now); err != nil {
		return err
	}
	if err := db.Checkpoint(ctx); err != nil {
		return err
	}
	unit := loadgen.Measure(ctx, "dispatch ScheduleDrone in a unit of work, "+tag, n, func(ctx context.Context, i int) (time.Duration, error) {
		id := fmt.Sprintf("dispatch-unit-%d", i)
		if err := bus.Publish(ctx, requested(id)); err != nil {
			return 0, err
		}
		got, err := bus.Receive(ctx, topology.QueueDeliveryRequests, 1)
		if err != nil {
			return 0, err
		}
		if len(got) != 1 || got[0].CorrelationID != id {
			return 0, fmt.Errorf("received %d messages, not %s's", len(got), id)
		}
		start := time.Now()
		uow := db.Begin()
		out, err := h.ScheduleDrone(ports.WithStore(ctx, uow.Store()), got[0])
		if err == nil {
			err = uow.Commit(ctx, got[0], out...)
		}
		took := time.Since(start)
		if err != nil {
			return 0, err
		}
		return took, freeAssigned(ctx, store, id, out)
	})
	b.rep.Runs = append(b.rep.Runs, unit, whole, index, linear)
	b.say("   ScheduleDrone p99 %.3f ms in a unit of work, %.3f ms writing through; search p99 %.3f ms with the index, %.3f ms by linear scan (%s)",
		unit.Latency.P99Ms, whole.Latency.P99Ms, index.Latency.P99Ms, linear.Latency.P99Ms, tag)
	return nil
}

// createWaiting stores, for each of reqs, a delivery just accepted and
// waiting for a drone, with the id prefix followed by the request's index.
func createWaiting(ctx context.Context, store ports.Store, prefix string, reqs []*domain.DeliveryRequest, now time.Time) error {
	for i, r := range reqs {
		id := fmt.Sprintf("%s%d", prefix, i)
		d := &domain.Delivery{ID: id, TrackingID: randomHex(10), OwnerID: "bench", CorrelationID: id, Request: *r,
			Stage: domain.StageCreated, CreatedAt: now, UpdatedAt: now, History: []domain.Event{{Stage: domain.StageCreated, At: now}}}
		if err := store.Deliveries.Create(ctx, id, d); err != nil {
			return err
		}
	}
	return nil
}

// requested is the message that asks the scheduling step to find delivery
// id a drone.
func requested(id string) ports.Message {
	body, _ := json.Marshal(wire.Envelope{Operation: wire.OpDelivery, DeliveryID: id, CorrelationID: id})
	return ports.Message{ID: id + ":requested", Queue: topology.QueueDeliveryRequests, Body: body, CorrelationID: id}
}

// freeAssigned checks that ScheduleDrone gave delivery id a drone (out, what
// the step emitted, is its one message to the next step) and makes that
// drone available again.
func freeAssigned(ctx context.Context, store ports.Store, id string, out []ports.Message) error {
	if len(out) != 1 || out[0].Queue != topology.QueueDroneScheduled {
		return errors.New("no drone assigned")
	}
	d, err := store.Deliveries.Find(ctx, id)
	if err != nil {
		return err
	}
	_, err = store.Fleet.Update(ctx, d.DroneID, func(dr *domain.Drone) error {
		dr.Status, dr.CurrentDeliveryID = domain.DroneAvailable, ""
		return nil
	})
	return err
}

func listFleet(ctx context.Context, f ports.Fleet) ([]*domain.Drone, error) {
	var all []*domain.Drone
	after := ""
	for {
		page, err := f.List(ctx, domain.DroneAvailable, after, 1000)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < 1000 {
			return all, nil
		}
		after = page[len(page)-1].ID
	}
}

// --- the baseline server ------------------------------------------------
