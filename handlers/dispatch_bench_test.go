package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/airspace"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/fleetgen"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
	"github.com/fabrikam/dronedelivery/tools/loadgen"
)

// The dispatch benchmarks use a metro-sized fleet: drones based within
// 30 km of Seattle, pickups within 25 km, as in a city-wide service.
const (
	dispatchFleetKm  = 30
	dispatchPickupKm = 25
	dispatchRadiusKm = 200 // the handlers' default search radius
)

var dispatchSizes = []int{1_000, 10_000, 100_000}

// dispatchWorld is a seeded store, built once per fleet size.
type dispatchWorld struct {
	db     *embedded.DB
	drones []*domain.Drone // the fleet as seeded, for the linear scan
	reqs   []*domain.DeliveryRequest
	seq    int // deliveries created so far, since a benchmark runs more than once
}

type dispatchWorlds struct {
	dir string
	mu  sync.Mutex
	m   map[int]*dispatchWorld
}

func (w *dispatchWorlds) get(b *testing.B, n int) *dispatchWorld {
	w.mu.Lock()
	defer w.mu.Unlock()
	if x, ok := w.m[n]; ok {
		return x
	}
	db, err := embedded.Open(filepath.Join(w.dir, strconv.Itoa(n)+".db"), embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	drones := fleetgen.Generate(n, seattle, dispatchFleetKm, 1, now)
	seedConcurrently(b, db.Store().Fleet, drones)
	r := rand.New(rand.NewPCG(7, uint64(n)))
	x := &dispatchWorld{db: db, drones: drones}
	// Every request is one ingest would accept under benchZones: neither
	// end in a zone.
	zones := benchZones()
	for len(x.reqs) < 1024 {
		pickup := randomNear(r, seattle, dispatchPickupKm)
		dropoff := randomNear(r, pickup, 3)
		if zones.Admit("pickupLocation", pickup, now) != nil || zones.Admit("dropoffLocation", dropoff, now) != nil {
			continue
		}
		x.reqs = append(x.reqs, &domain.DeliveryRequest{
			OwnerID: "owner-1", PickupLocation: pickup, DropoffLocation: dropoff,
			PickupTime: now, Deadline: now.Add(2 * time.Hour), ConfirmationRequired: domain.ConfirmationNone,
			PackageInfo: domain.PackageInfo{PackageID: "p", Size: domain.SizeSmall, Weight: 1.5},
		})
	}
	w.m[n] = x
	return x
}

func (w *dispatchWorlds) close() {
	for _, x := range w.m {
		x.db.Close()
	}
}

// seedConcurrently creates the drones from several goroutines, so that the
// embedded store commits them in groups and 100,000 take seconds.
func seedConcurrently(b *testing.B, f ports.Fleet, drones []*domain.Drone) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(drones) {
					return
				}
				if err := f.Create(context.Background(), drones[i].ID, drones[i]); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func randomNear(r *rand.Rand, c domain.Location, km float64) domain.Location {
	d, bearing := km*math.Sqrt(r.Float64()), 2*math.Pi*r.Float64()
	return domain.Location{
		Latitude:  c.Latitude + d*math.Cos(bearing)/111.32,
		Longitude: c.Longitude + d*math.Sin(bearing)/(111.32*math.Cos(c.Latitude*math.Pi/180)),
	}
}

// BenchmarkDispatchSearch is ScheduleDrone's candidate search alone, the
// nearest drone that passes domain.Unfit: through the embedded fleet's
// spatial index (NearestAvailable), and as a linear scan of every drone,
// which is what the index saves.
func BenchmarkDispatchSearch(b *testing.B) {
	worlds := &dispatchWorlds{dir: b.TempDir(), m: map[int]*dispatchWorld{}}
	defer worlds.close()
	ctx := context.Background()
	for _, n := range dispatchSizes {
		b.Run(fmt.Sprintf("index/drones=%d", n), func(b *testing.B) {
			w := worlds.get(b, n)
			f := w.db.Store().Fleet
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				req := w.reqs[i%len(w.reqs)]
				i++
				found := false
				for d, km := range f.NearestAvailable(ctx, req.PickupLocation) {
					if km > dispatchRadiusKm {
						break
					}
					if domain.Unfit(d, req) == "" {
						found = true
						break
					}
				}
				if !found {
					b.Fatal("no drone found")
				}
			}
		})
		b.Run(fmt.Sprintf("linear/drones=%d", n), func(b *testing.B) {
			w := worlds.get(b, n)
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				req := w.reqs[i%len(w.reqs)]
				i++
				best, bestKm := -1, math.Inf(1)
				for k, d := range w.drones {
					if domain.Unfit(d, req) != "" {
						continue
					}
					if km := domain.DistanceKm(d.Location, req.PickupLocation); km < bestKm && km <= dispatchRadiusKm {
						best, bestKm = k, km
					}
				}
				if best < 0 {
					b.Fatal("no drone found")
				}
			}
		})
	}
}

// benchZones is the product's airspace with 50 no-fly zones across the
// benchmark's city, as many as a city's stadiums, hospitals and prisons:
// regular 12-gons 400 m from centre to corner.
func benchZones() *airspace.Airspace {
	r := rand.New(rand.NewPCG(50, 50))
	zones := make([]*domain.Zone, 50)
	for i := range zones {
		c := randomNear(r, seattle, dispatchPickupKm)
		ring := make([]domain.Position, 0, 13)
		for k := range 12 {
			a := 2 * math.Pi * float64(k) / 12
			l := offsetKm(c, 0.4*math.Cos(a), 0.4*math.Sin(a))
			ring = append(ring, domain.Position{l.Longitude, l.Latitude})
		}
		ring = append(ring, ring[0])
		zones[i] = &domain.Zone{ID: fmt.Sprint("zone-", i), Kind: domain.NoFlyZone, GeometryType: "Polygon", Polygons: []domain.Polygon{{ring}}}
	}
	return airspace.New(zones)
}

// offsetKm is loc moved north and east by the given distances.
func offsetKm(loc domain.Location, northKm, eastKm float64) domain.Location {
	return domain.Location{
		Latitude:  loc.Latitude + northKm/111.32,
		Longitude: loc.Longitude + eastKm/(111.32*math.Cos(loc.Latitude*math.Pi/180)),
	}
}

// BenchmarkScheduleDrone is a whole assignment by the ScheduleDrone
// handler on the embedded backend: the search and the dispatch rule
// (domain.Choose over routed legs), the reservation on the delivery, the
// conditional claim of the drone and the recorded assignment; in open
// airspace and with 50 no-fly zones (the product's airspace, as the
// handlers have it from the store). Each runs two ways: as the standalone
// runtime runs the step on the embedded backend ("unit": in a unit of
// work whose one commit holds the delivery, the drone, the next message
// and the completion of the message handled), and writing each change
// through as it goes ("direct": each its own commit, the way the step
// runs where store and queue cannot share a transaction), which is the
// same-run baseline. The drones are freed again after each batch of
// assignments (not timed), so the fleet keeps its size, and the WAL is
// checkpointed before each batch, so the timed commits do not wait on the
// copying of the setup's writes. One assignment runs untimed first,
// since the first builds the fleet summary. It reports the 99th
// percentile besides the mean, since the target is a p99.
func BenchmarkScheduleDrone(b *testing.B) {
	worlds := &dispatchWorlds{dir: b.TempDir(), m: map[int]*dispatchWorld{}}
	defer worlds.close()
	ctx := context.Background()
	airspaces := []struct {
		name string
		air  domain.Airspace
	}{{"open", domain.OpenAirspace{}}, {"zones=50", benchZones()}}
	for _, n := range dispatchSizes {
		for _, as := range airspaces {
			for _, unit := range []bool{true, false} {
				mode := "direct"
				if unit {
					mode = "unit"
				}
				b.Run(fmt.Sprintf("drones=%d/%s/%s", n, as.name, mode), func(b *testing.B) {
					scheduleDroneBench(b, ctx, worlds.get(b, n), n, as.air, unit)
				})
			}
		}
	}
}

type fixedAirspaceBench struct{ a domain.Airspace }

func (f fixedAirspaceBench) Current(context.Context) (domain.Airspace, error) { return f.a, nil }

// scheduleBatch is how many assignments run between two pauses of the
// timer. The deliveries and their messages are made ready before a batch
// and the drones freed after it, untimed: stopping and starting the timer
// reads the runtime's memory statistics, which stops the world and empties
// the allocation caches, so doing it around every assignment would add its
// own cost to the next one's latency.
const scheduleBatch = 64

// scheduleDroneBench measures assignments in world w with airspace air,
// in a unit of work each when unit is set.
func scheduleDroneBench(b *testing.B, ctx context.Context, w *dispatchWorld, n int, air domain.Airspace, unit bool) {
	store, bus := w.db.Store(), w.db.Bus()
	h := handlers.New(handlers.Deps{Store: store, Bus: bus, Clock: platform.Clock{}, IDs: platform.IDs{}, Log: slog.New(slog.DiscardHandler),
		Airspace: fixedAirspaceBench{air}})
	hist := loadgen.NewHistogram()
	now := time.Now().UTC()
	assign := func(msg *ports.Delivered) {
		var out []ports.Message
		var err error
		if unit {
			uow := w.db.Begin()
			out, err = h.ScheduleDrone(ports.WithStore(ctx, uow.Store()), msg)
			if err == nil {
				err = uow.Commit(ctx, msg, out...)
			}
		} else {
			out, err = h.ScheduleDrone(ctx, msg)
		}
		if err != nil {
			b.Fatal(err)
		}
		if len(out) != 1 || out[0].Queue != topology.QueueDroneScheduled {
			b.Fatalf("delivery %s got no drone: %+v", msg.ID, out)
		}
	}
	b.ReportAllocs()
	// One assignment runs untimed first: it builds the fleet summary.
	for done, warm := 0, true; done < b.N; warm = false {
		b.StopTimer()
		k := min(scheduleBatch, b.N-done)
		if warm {
			k = 1
		}
		msgs := make([]*ports.Delivered, 0, k)
		for i := range k {
			if i == k-1 {
				// The WAL is emptied before the batch's last delivery is
				// written: that write, not a timed one, starts the WAL
				// afresh, and the timed commits share the disk only with
				// the background checkpoints of their own frames, not of
				// the previous batch's and this one's setup.
				if err := w.db.Checkpoint(ctx); err != nil {
					b.Fatal(err)
				}
			}
			w.seq++
			id := fmt.Sprintf("sched-%d-%d", n, w.seq)
			d := &domain.Delivery{ID: id, TrackingID: "T" + id, OwnerID: "owner-1", CorrelationID: id, Stage: domain.StageCreated,
				Request: *w.reqs[w.seq%len(w.reqs)], CreatedAt: now, UpdatedAt: now}
			if err := store.Deliveries.Create(ctx, id, d); err != nil {
				b.Fatal(err)
			}
			body, _ := json.Marshal(wire.Envelope{Operation: wire.OpDelivery, DeliveryID: id, CorrelationID: id})
			msg := &ports.Delivered{Message: ports.Message{ID: id + ":requested", Queue: topology.QueueDeliveryRequests, Body: body}, DeliveryCount: 1}
			if unit {
				// The message is received under a lock, as a consumer has
				// it, so that the commit completes it.
				if err := bus.Publish(ctx, msg.Message); err != nil {
					b.Fatal(err)
				}
			}
			msgs = append(msgs, msg)
		}
		if unit {
			got, err := bus.Receive(ctx, topology.QueueDeliveryRequests, k)
			if err != nil || len(got) != k {
				b.Fatalf("receive %d: got %d, %v", k, len(got), err)
			}
			msgs = got
		}
		b.StartTimer()
		for _, msg := range msgs {
			start := time.Now()
			assign(msg)
			if !warm {
				hist.Record(time.Since(start))
			}
		}
		b.StopTimer()
		for _, msg := range msgs {
			got, err := store.Deliveries.Find(ctx, strings.TrimSuffix(msg.ID, ":requested"))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := store.Fleet.Update(ctx, got.DroneID, func(dr *domain.Drone) error {
				dr.Status, dr.CurrentDeliveryID = domain.DroneAvailable, ""
				return nil
			}); err != nil {
				b.Fatal(err)
			}
		}
		if warm {
			b.ResetTimer()
		} else {
			done += k
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(hist.Quantile(0.99))/1e6, "p99-ms")
}
