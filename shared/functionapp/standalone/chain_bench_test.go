package standalone_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/fleetgen"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/functionapp/standalone"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/tracing"
	"github.com/fabrikam/dronedelivery/shared/wire"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/otlpdouble"
)

// BenchmarkQueueSteps carries b.N accepted deliveries through the queue
// steps (ScheduleDrone, UpdatePackage, ComputeEta, SendNotification) in this
// process, on the embedded backend, with the runtime's consumers. It
// reports the process's CPU time per delivery besides the wall time, since
// on a shared machine CPU time is the steadier figure; profile it with
// -cpuprofile to see where the steps spend it. Run with -benchtime 5000x.
// The sub-benchmarks size the consumers' worker pools: more workers per
// queue mean more writes waiting at once, so larger groups per commit.
func BenchmarkQueueSteps(b *testing.B) {
	for _, workers := range []int{8, 16, 32, 64} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			benchmarkQueueSteps(b, workers)
		})
	}
}

// BenchmarkQueueStepsTracing is BenchmarkQueueSteps (16 workers) with
// tracing off and on in the same run, so the two figures share the
// machine's state: on, every step's span goes through the batch span
// processor and the OTLP/HTTP exporter, as the binary's Setup builds them,
// to a receiver on loopback that decodes every request. spans/delivery
// counts what the receiver got: the batch processor drops spans when its
// queue is full, as it would in production, which the figure would show.
func BenchmarkQueueStepsTracing(b *testing.B) {
	b.Run("tracing=off", func(b *testing.B) { benchmarkQueueSteps(b, 16) })
	b.Run("tracing=on", func(b *testing.B) {
		rcv := otlpdouble.StartOTLPReceiver(b)
		exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(rcv.URL+"/v1/traces"))
		if err != nil {
			b.Fatal(err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
		restore := tracing.Use(tp)
		benchmarkQueueSteps(b, 16)
		restore()
		if err := tp.Shutdown(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(rcv.Spans()))/float64(b.N), "spans/delivery")
	})
}

func benchmarkQueueSteps(b *testing.B, workers int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := embedded.Open(filepath.Join(b.TempDir(), "bench.db"), embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	store, bus := db.Store(), db.Bus()
	center := domain.Location{Latitude: 47.6062, Longitude: -122.3321}
	now := time.Now().UTC()
	// The fleet outnumbers the deliveries and covers the area their pickups
	// are spread over, so no delivery waits for a drone.
	if _, err := fleetgen.Seed(ctx, store.Fleet, fleetgen.Generate(b.N*5/4+100, center, 20, 1, now)); err != nil {
		b.Fatal(err)
	}
	msgs := make([]ports.Message, b.N)
	ids := make([]string, b.N)
	pickups := fleetgen.Generate(b.N, center, 15, 2, now)
	for i := range b.N {
		// Ids as ingest makes them, since their order decides which pages
		// of the store's B-trees a batch of steps writes.
		id := platform.IDs{}.NewID()
		ids[i] = id
		d := &domain.Delivery{ID: id, TrackingID: "T" + id, OwnerID: "bench", CorrelationID: id, Stage: domain.StageCreated,
			CreatedAt: now, UpdatedAt: now, History: []domain.Event{{Stage: domain.StageCreated, At: now}},
			Request: domain.DeliveryRequest{OwnerID: "bench",
				PickupLocation:  pickups[i].Location,
				DropoffLocation: domain.Location{Latitude: pickups[i].Location.Latitude + 0.01, Longitude: pickups[i].Location.Longitude - 0.01},
				PickupTime:      now, Deadline: now.Add(2 * time.Hour), ConfirmationRequired: domain.ConfirmationNone,
				PackageInfo: domain.PackageInfo{PackageID: "pkg-" + id, Size: domain.SizeSmall, Weight: 1}}}
		if err := store.Deliveries.Create(ctx, id, d); err != nil {
			b.Fatal(err)
		}
		body, _ := json.Marshal(wire.Envelope{Operation: wire.OpDelivery, DeliveryID: id, CorrelationID: id})
		msgs[i] = ports.Message{ID: id + ":requested", Queue: topology.QueueDeliveryRequests, Body: body, CorrelationID: id, Operation: string(wire.OpDelivery)}
	}

	log := slog.New(slog.DiscardHandler)
	h := handlers.New(handlers.Deps{Store: store, Bus: bus, Clock: platform.Clock{}, IDs: platform.IDs{}, Log: log})
	fns, err := functionapp.LoadFunctions(os.DirFS("../../.."), "functions")
	if err != nil {
		b.Fatal(err)
	}
	srv, err := standalone.New(h.Registry(), fns, bus, log, standalone.Options{Workers: workers})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)

	cpu0, st0 := cpuTime(), db.Stats()
	b.ResetTimer()
	go func() { done <- srv.Run(ctx, ln) }()
	for i := 0; i < len(msgs); i += 500 {
		if err := bus.Publish(ctx, msgs[i:min(i+500, len(msgs))]...); err != nil {
			b.Fatal(err)
		}
	}
	queues := []string{topology.QueueDeliveryRequests, topology.QueueDroneScheduled, topology.QueuePackageUpdated, topology.QueueNotifications}
	for {
		busy := false
		for _, q := range queues {
			active, dead, err := bus.Depth(ctx, q)
			if err != nil {
				b.Fatal(err)
			}
			if dead > 0 {
				b.Fatalf("%d messages dead-lettered on %s", dead, q)
			}
			busy = busy || active > 0
		}
		if !busy {
			break
		}
		// Each poll counts every queue's messages, which this process's
		// CPU time includes: seldom enough to stay out of the figure.
		time.Sleep(50 * time.Millisecond)
	}
	b.StopTimer()
	cpu, st := cpuTime()-cpu0, db.Stats()
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/delivery")
	b.ReportMetric(float64(st.Commits-st0.Commits)/float64(b.N), "commits/delivery")
	b.ReportMetric(float64(st.Writes-st0.Writes)/float64(st.Commits-st0.Commits), "writes/commit")
	// A write is one transaction's worth of work for a step (a document, a
	// publish, a settlement, or a unit of work holding all three), which
	// would be a commit of its own without group commit.
	b.ReportMetric(float64(st.Writes-st0.Writes)/float64(b.N), "writes/delivery")
	b.ReportMetric(float64(st.Reads-st0.Reads)/float64(b.N), "reads/delivery")
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	for _, i := range []int{0, b.N / 2, b.N - 1} {
		d, err := store.Deliveries.Find(context.Background(), ids[i])
		if err != nil {
			b.Fatal(err)
		}
		if d.Stage != domain.StageScheduled {
			b.Fatalf("delivery %s is %s, not Scheduled", d.ID, d.Stage)
		}
	}
}

// cpuTime is the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
