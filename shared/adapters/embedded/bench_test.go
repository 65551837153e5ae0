package embedded

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/fleetgen"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/ports/porttest"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

func BenchmarkDeliveryCreate(b *testing.B) {
	deliveries := MustOpen(b, Options{}).Store().Deliveries
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		id := "d" + strconv.Itoa(i)
		if err := deliveries.Create(ctx, id, porttest.Delivery(id)); err != nil {
			b.Fatal(err)
		}
	}
}

// seededDeliveries opens a store that holds the deliveries d0 to d<n-1>.
func seededDeliveries(b *testing.B, n int) ports.Deliveries {
	deliveries := MustOpen(b, Options{}).Store().Deliveries
	for i := range n {
		id := "d" + strconv.Itoa(i)
		if err := deliveries.Create(context.Background(), id, porttest.Delivery(id)); err != nil {
			b.Fatal(err)
		}
	}
	return deliveries
}

func BenchmarkDeliveryFind(b *testing.B) {
	const n = 1000
	deliveries, ctx := seededDeliveries(b, n), context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := deliveries.Find(ctx, "d"+strconv.Itoa(i%n)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDeliveryUpdate(b *testing.B) {
	const n = 1000
	deliveries, ctx := seededDeliveries(b, n), context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := deliveries.Update(ctx, "d"+strconv.Itoa(i%n), func(d *domain.Delivery) error {
			d.ScheduleAttempts++
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}

func benchMessage(i int) ports.Message {
	id := "delivery-" + strconv.Itoa(i)
	body, _ := json.Marshal(wire.Envelope{Operation: wire.OpDelivery, DeliveryID: id, CorrelationID: "corr-" + id})
	return ports.Message{ID: id + "/schedule", Queue: topology.QueueDeliveryRequests, Body: body,
		CorrelationID: "corr-" + id, Operation: string(wire.OpDelivery)}
}

func BenchmarkPublish(b *testing.B) {
	bus := MustOpen(b, Options{}).Bus()
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := bus.Publish(ctx, benchMessage(i)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPublishBatch100(b *testing.B) {
	bus := MustOpen(b, Options{}).Bus()
	ctx := context.Background()
	batch := make([]ports.Message, 100)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		for j := range batch {
			batch[j] = benchMessage(n)
			n++
		}
		if err := bus.Publish(ctx, batch...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkReceiveComplete measures one message's round trip through a
// one-message receive and its completion, the shape of a queue trigger.
func BenchmarkReceiveComplete(b *testing.B) {
	benchReceiveSettle(b, func(ctx context.Context, bus *Bus, m *ports.Delivered, _ int) error {
		return bus.Complete(ctx, m)
	})
}

// benchReceiveSettle times b.N one-message receives from a full queue,
// settling the i-th message received with settle.
func benchReceiveSettle(b *testing.B, settle func(ctx context.Context, bus *Bus, m *ports.Delivered, i int) error) {
	bus := MustOpen(b, Options{}).Bus()
	ctx := context.Background()
	fillQueue(b, bus, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		msgs, err := bus.Receive(ctx, topology.QueueDeliveryRequests, 1)
		if err != nil {
			b.Fatal(err)
		}
		if err := settle(ctx, bus, msgs[0], i); err != nil {
			b.Fatal(err)
		}
	}
}

// seedFleet writes n available drones spread over a metro area in one
// transaction, then loads the index as Open would; creating them one by
// one would make the 100k case take minutes of setup.
func seedFleet(b *testing.B, db *DB, n int) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	insert := tx.StmtContext(ctx, db.st.docInsert)
	for i := range n {
		id := fmt.Sprintf("drone-%06d", i)
		d := testDrone(id, 47.6+r.Float64()-0.5, -122.3+r.Float64()-0.5)
		body, err := json.Marshal(d)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := insert.ExecContext(ctx, topology.ContainerDrones, id, string(body), time.Now().UnixNano()); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	if err := db.fleet.load(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkNearestAvailable measures what dispatch pays to find its first
// candidate in fleets of growing size.
func BenchmarkNearestAvailable(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			db := MustOpen(b, Options{})
			seedFleet(b, db, n)
			fleet := db.Store().Fleet
			ctx := context.Background()
			r := rand.New(rand.NewPCG(3, 4))
			b.ReportAllocs()
			for b.Loop() {
				loc := domain.Location{Latitude: 47.6 + r.Float64() - 0.5, Longitude: -122.3 + r.Float64() - 0.5}
				found := false
				for range fleet.NearestAvailable(ctx, loc) {
					found = true
					break
				}
				if !found {
					b.Fatal("no drone found")
				}
			}
		})
	}
}

// BenchmarkDeliveryUpdateParallel measures updates of different documents
// from many goroutines at once, the shape of the queue consumers' load,
// where group commit lets concurrent writers share transactions.
func BenchmarkDeliveryUpdateParallel(b *testing.B) {
	const n = 4096
	deliveries, ctx := seededDeliveries(b, n), context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := "d" + strconv.Itoa(int(next.Add(1))%n)
			if _, err := deliveries.Update(ctx, id, func(d *domain.Delivery) error {
				d.ScheduleAttempts++
				return nil
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// fillQueue publishes n messages in batches of 100.
func fillQueue(b *testing.B, bus *Bus, n int) {
	ctx := context.Background()
	batch := make([]ports.Message, 0, 100)
	for i := range n {
		batch = append(batch, benchMessage(i))
		if len(batch) == cap(batch) || i == n-1 {
			if err := bus.Publish(ctx, batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// BenchmarkReceiveBatchComplete receives 100 messages at a time and
// completes them from 16 goroutines at once, as the standalone runtime's
// workers do, so that group commit can put many completions in one commit.
func BenchmarkReceiveBatchComplete(b *testing.B) {
	db := MustOpen(b, Options{})
	bus := db.Bus()
	ctx := context.Background()
	fillQueue(b, bus, b.N)
	st0 := db.Stats()
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		msgs, err := bus.Receive(ctx, topology.QueueDeliveryRequests, 100)
		if err != nil {
			b.Fatal(err)
		}
		work := make(chan *ports.Delivered)
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for m := range work {
					if err := bus.Complete(ctx, m); err != nil {
						b.Error(err)
					}
				}
			}()
		}
		for _, m := range msgs {
			work <- m
		}
		close(work)
		wg.Wait()
		done += len(msgs)
	}
	st := db.Stats()
	b.ReportMetric(float64(st.Writes-st0.Writes)/float64(st.Commits-st0.Commits), "writes/commit")
}

// BenchmarkCompleteWith measures a step's settlement on the embedded bus:
// its output published and its input completed in one write.
func BenchmarkCompleteWith(b *testing.B) {
	benchReceiveSettle(b, func(ctx context.Context, bus *Bus, m *ports.Delivered, i int) error {
		out := benchMessage(i)
		out.Queue = topology.QueueDroneScheduled
		return bus.CompleteWith(ctx, m, out)
	})
}

// BenchmarkFleetMemory reports the Go heap the fleet holds per drone once
// a file of n available drones is open: the dispatch index, the versions
// and the summary. It is a measurement of memory, not of time.
func BenchmarkFleetMemory(b *testing.B) {
	for _, n := range []int{25_000, 100_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "fleet.db")
			db := mustOpenAt(b, path, Options{})
			drones := fleetgen.Generate(n, domain.Location{Latitude: 47.6062, Longitude: -122.3321}, 20, 1, time.Now().UTC())
			ctx := context.Background()
			for _, d := range drones {
				if err := db.Store().Fleet.Create(ctx, d.ID, d); err != nil {
					b.Fatal(err)
				}
			}
			drones = nil
			var perDrone float64
			for b.Loop() {
				empty := heapInUse()
				again, err := Open(path, Options{})
				if err != nil {
					b.Fatal(err)
				}
				perDrone = float64(heapInUse()-empty) / float64(n)
				runtime.KeepAlive(again)
				if err := again.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(perDrone, "heap-B/drone")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// heapInUse is the heap's live bytes after a full collection.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
