package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// BenchmarkTrackReportCost applies 5,000 telemetry reports to one delivery
// through the tracking step on the embedded store, each moving the ETA by
// minutes (a notice each), and reports the median cost of a report among
// the first 100, the 100 from the 2,500th and the last 100, and the
// document's size at the end. The delivery's trail, history and notices are
// capped: once they are full (a few hundred reports) a report costs the
// same however many came before (last/mid near 1), and at most about twice
// what it did on a new delivery (last/first), where an uncapped document
// made the 5,000th report cost some 100 times the first. Run it alone: -run '^$' -bench TrackReportCost
// -benchtime 1x.
func BenchmarkTrackReportCost(b *testing.B) {
	const reports, window = 5000, 100
	db, err := embedded.Open(filepath.Join(b.TempDir(), "bench.db"), embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	st := db.Store()
	start := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	c := &clock{}
	c.Set(start.Add(reports * time.Second))
	h := handlers.New(handlers.Deps{Store: st, Bus: db.Bus(), Clock: c, IDs: platform.IDs{}, Log: slog.New(slog.DiscardHandler)})
	ctx := context.Background()

	pickup := domain.Location{Latitude: 47.605, Longitude: -122.33}
	near := domain.Location{Latitude: pickup.Latitude + 0.018, Longitude: pickup.Longitude}
	far := domain.Location{Latitude: pickup.Latitude + 0.09, Longitude: pickup.Longitude}
	var first, mid, last []time.Duration
	size := 0
	for i := range b.N {
		id := fmt.Sprintf("bench-%d", i)
		assigned, told := start, start.Add(20*time.Minute)
		d := &domain.Delivery{NotifiedDeliveryETA: &told, ID: id, TrackingID: "t." + id, OwnerID: "owner-1", Stage: domain.StageScheduled, DroneID: "bench-drone",
			DroneAssignedAt: &assigned, CreatedAt: start, UpdatedAt: start,
			Request: domain.DeliveryRequest{OwnerID: "owner-1", PickupLocation: pickup, DropoffLocation: domain.Location{Latitude: 47.615, Longitude: -122.33},
				PickupTime: start, Deadline: start.Add(2 * time.Hour), PackageInfo: domain.PackageInfo{PackageID: "p", Size: domain.SizeSmall, Weight: 1}},
			History: []domain.Event{{Stage: domain.StageCreated, At: start}, {Stage: domain.StageScheduled, At: start}}}
		if err := st.Deliveries.Create(ctx, id, d); err != nil {
			b.Fatal(err)
		}
		if _, err := st.Fleet.Upsert(ctx, "bench-drone", func(*domain.Drone) (*domain.Drone, error) {
			return &domain.Drone{ID: "bench-drone", Location: near, HomeBase: near, MaxPayloadKg: 5, MaxPackageSize: domain.SizeLarge,
				RangeKm: 200, CruiseSpeedMps: 15, BatteryPercent: 90, Status: domain.DroneAssigned, CurrentDeliveryID: id, UpdatedAt: start}, nil
		}); err != nil {
			b.Fatal(err)
		}
		msgs := make([]*ports.Delivered, reports)
		for n := range msgs {
			loc := far
			if n%2 == 1 {
				loc = near
			}
			body, _ := json.Marshal(domain.Telemetry{DroneID: "bench-drone", Location: loc, BatteryPercent: 90, Timestamp: start.Add(time.Duration(n) * time.Second)})
			msgs[n] = &ports.Delivered{Message: ports.Message{ID: fmt.Sprint(n), Body: body}, DeliveryCount: 1}
		}
		for n, m := range msgs {
			began := time.Now()
			if _, err := h.TrackDrone(ctx, m); err != nil {
				b.Fatal(err)
			}
			took := time.Since(began)
			switch {
			case n < window:
				first = append(first, took)
			case n >= reports/2 && n < reports/2+window:
				mid = append(mid, took)
			case n >= reports-window:
				last = append(last, took)
			}
		}
		got, err := st.Deliveries.Find(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := json.Marshal(got)
		size = len(body)
	}
	// Medians: the machine is shared, and a neighbour's burst would
	// otherwise decide a mean of a hundred.
	perFirst, perMid, perLast := float64(median(first)), float64(median(mid)), float64(median(last))
	b.ReportMetric(perFirst, "first100-ns/report")
	b.ReportMetric(perLast, "last100-ns/report")
	b.ReportMetric(perLast/perFirst, "last/first")
	b.ReportMetric(perLast/perMid, "last/mid")
	b.ReportMetric(float64(size), "doc-bytes")
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
