package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	goruntime "runtime"
	"sync/atomic"
	"time"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
	"github.com/fabrikam/dronedelivery/tools/loadgen"
)

// dispatchScenario times the scheduling step in this process on a fleet of
// -dispatch-fleet drones: the whole ScheduleDrone handler per assignment
// (search, reservation, claim, record), its candidate search alone through
// the spatial index, and the same search as a linear scan of the fleet.
func (b *benchRun) dispatchScenario(ctx context.Context) error {
	dir := filepath.Join(b.work, "dispatch")
	if err := copyData(b.large, dir); err != nil {
		return err
	}
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
		p.Request.Defaults(now, fmt.Sprintf("dispatch-%d", i))
		reqs[i] = &p.Request
	}
	tag := fmt.Sprintf("%dk drones", len(all)/1000)

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
	msgs := make([]*ports.Delivered, n)
	for i := range n {
		id := fmt.Sprintf("dispatch-%d", i)
		d := &domain.Delivery{ID: id, TrackingID: randomHex(10), OwnerID: "bench", CorrelationID: id, Request: *reqs[i],
			Stage: domain.StageCreated, CreatedAt: now, UpdatedAt: now, History: []domain.Event{{Stage: domain.StageCreated, At: now}}}
		if err := store.Deliveries.Create(ctx, id, d); err != nil {
			return err
		}
		body, _ := json.Marshal(wire.Envelope{Operation: wire.OpDelivery, DeliveryID: id, CorrelationID: id})
		msgs[i] = &ports.Delivered{Message: ports.Message{ID: id + ":requested", Queue: topology.QueueDeliveryRequests, Body: body, CorrelationID: id}, DeliveryCount: 1}
	}
	// Each assigned drone is freed again, untimed, so that every
	// assignment searches a fleet of the full size.
	whole := loadgen.Measure(ctx, "dispatch ScheduleDrone, "+tag, n, func(ctx context.Context, i int) (time.Duration, error) {
		start := time.Now()
		out, err := h.ScheduleDrone(ctx, msgs[i])
		took := time.Since(start)
		if err != nil {
			return 0, err
		}
		if len(out) != 1 || out[0].Queue != topology.QueueDroneScheduled {
			return 0, errors.New("no drone assigned")
		}
		d, err := store.Deliveries.Find(ctx, msgs[i].CorrelationID)
		if err != nil {
			return 0, err
		}
		_, err = store.Fleet.Update(ctx, d.DroneID, func(dr *domain.Drone) error {
			dr.Status, dr.CurrentDeliveryID = domain.DroneAvailable, ""
			return nil
		})
		return took, err
	})
	b.rep.Runs = append(b.rep.Runs, whole, index, linear)
	b.say("   ScheduleDrone p99 %.3f ms; search p99 %.3f ms with the index, %.3f ms by linear scan (%s)",
		whole.Latency.P99Ms, index.Latency.P99Ms, linear.Latency.P99Ms, tag)
	return nil
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
