package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/wire"
	"github.com/fabrikam/dronedelivery/tools/loadgen"
)

// The analytics scenario's two accounts: the same month holds a thousand
// deliveries of one and a hundred thousand of the other.
const (
	analyticsSmall = "analytics-1k"
	analyticsLarge = "analytics-100k"
)

// analyticsScenario times GET /api/deliveries/summary and GET
// /api/dronedeliveries/utilization over HTTP for an account with 1,000
// deliveries in the month and one with -analytics-deliveries (100,000), in
// one server. The deliveries are real delivery documents, written through
// the store's Create, whose commit adds each to the analytics as every
// write of a delivery does; the scenario then checks the maintained
// figures against the ones re-derived from the documents. The reads go with
// the operator key naming the account (ownerId), which reads the same
// per-account aggregate a business's key does.
func (b *benchRun) analyticsScenario(ctx context.Context) error {
	dir := filepath.Join(b.work, "analytics")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	month := time.Now().UTC().AddDate(0, -1, 0)
	month = time.Date(month.Year(), month.Month(), 1, 0, 0, 0, 0, time.UTC)
	start := time.Now()
	db, err := embedded.Open(filepath.Join(dir, benchDataFile), embedded.Options{})
	if err != nil {
		return err
	}
	sizes := map[string]int{analyticsSmall: 1000, analyticsLarge: b.o.analyticsLarge}
	for owner, n := range sizes {
		if err := seedDeliveries(ctx, db.Store(), owner, n, month); err != nil {
			db.Close()
			return err
		}
	}
	seeded := time.Since(start)
	derived, err := db.Store().Analytics.Derive(ctx, month)
	if err == nil {
		for owner, n := range sizes {
			bucket := domain.BucketKey(domain.ScopeAccount, owner)
			kept, merr := db.Store().Analytics.Month(ctx, bucket, month)
			switch {
			case merr != nil:
				err = merr
			case kept.Total != derived[bucket].Total || kept.Total.Count != int64(n):
				err = fmt.Errorf("account %s: maintained %+v, derived %+v from %d deliveries", owner, kept.Total, derived[bucket].Total, n)
			}
		}
	}
	if err = errors.Join(err, db.Close()); err != nil {
		return err
	}
	b.say("   %d + %d deliveries written through the store in %.1fs; maintained figures equal the derived ones", sizes[analyticsSmall], sizes[analyticsLarge], seeded.Seconds())
	b.note("Analytics: %d + %d delivery documents written through the store's Create (which adds each to the aggregates in its commit) in %.1f s; the maintained figures equal those re-derived from the documents.",
		sizes[analyticsSmall], sizes[analyticsLarge], seeded.Seconds())

	s, err := b.startServer(ctx, "analytics", "")
	if err != nil {
		return err
	}
	defer s.stop()
	c := loadgen.NewClient(s.p.Base, loadgen.ClientOptions{Connections: 1, OperatorKey: s.key,
		OperatorPaths: []string{"/api/deliveries/summary", "/api/dronedeliveries/utilization"}})
	defer c.Close()
	for _, ep := range []struct{ name, path string }{
		{"summary", "/api/deliveries/summary"}, {"utilization", "/api/dronedeliveries/utilization"},
	} {
		for _, owner := range []string{analyticsSmall, analyticsLarge} {
			path := fmt.Sprintf("%s?ownerId=%s&year=%d&month=%d", ep.path, owner, month.Year(), int(month.Month()))
			want := sizes[owner]
			op := func(ctx context.Context, _ int) error {
				status, body, err := c.Do(ctx, http.MethodGet, path, nil, true)
				if err != nil {
					return err
				}
				if status != http.StatusOK {
					return fmt.Errorf("status %d", status)
				}
				var got struct {
					Count *int  `json:"count"`
					Ended int64 `json:"ended"`
				}
				if err := json.Unmarshal(body, &got); err != nil {
					return err
				}
				switch {
				case got.Count != nil && *got.Count != want:
					return fmt.Errorf("a summary of %d deliveries, want %d", *got.Count, want)
				case got.Count == nil && got.Ended == 0:
					return errors.New("a utilisation of no ended delivery")
				}
				return nil
			}
			// A warm-up, so connections and caches are not what is timed.
			loadgen.Run(ctx, loadgen.Config{Name: "warm-up", Concurrency: 1, Duration: time.Minute, MaxOps: 200}, op)
			r := loadgen.Run(ctx, loadgen.Config{Name: analyticsRunName(ep.name, want), Concurrency: 1, Duration: time.Minute,
				MaxOps: b.o.analyticsReads, Progress: b.progress}, op)
			b.rep.Runs = append(b.rep.Runs, r)
			if r.Failed > 0 {
				return fmt.Errorf("%s: %d of %d reads failed: %v", r.Name, r.Failed, r.Sent, r.Errors)
			}
		}
	}
	return nil
}

// analyticsRunName names a run of the analytics scenario.
func analyticsRunName(endpoint string, deliveries int) string {
	return fmt.Sprintf("%s, %d deliveries in the month", endpoint, deliveries)
}

// seedDeliveries writes n deliveries of owner accepted in month, in the
// stages a month leaves them: most completed (some late), some cancelled,
// failed or still running. Several writers at once, so the store batches
// their commits.
func seedDeliveries(ctx context.Context, st ports.Store, owner string, n int, month time.Time) error {
	days := time.Date(month.Year(), month.Month()+1, 0, 0, 0, 0, 0, time.UTC).Day()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				d, err := benchDelivery(owner, i, month.Add(time.Duration(unit(i, 7)*float64(days)*24*float64(time.Hour))))
				if err == nil {
					err = st.Deliveries.Create(ctx, d.ID, d)
				}
				if err != nil && !domain.IsCode(err, domain.ECONFLICT) {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return errors.Join(<-errs, ctx.Err())
}

// benchDelivery is delivery i of owner as the chain leaves it, accepted at
// at.
func benchDelivery(owner string, i int, at time.Time) (*domain.Delivery, error) {
	id := fmt.Sprintf("%s-%06d", owner, i)
	p, err := wire.ParseDeliveryRequest(requestBody(id, owner, i))
	if err != nil {
		return nil, err
	}
	d := &domain.Delivery{ID: id, TrackingID: "bench." + id, OwnerID: owner, CorrelationID: id, Request: p.Request,
		RequestHash: p.Hash, Stage: domain.StageCreated, CreatedAt: at, UpdatedAt: at,
		History: []domain.Event{{Stage: domain.StageCreated, At: at}}}
	d.Request.OwnerID = owner
	d.Request.Defaults(at, id, 0)
	u := unit(i, 8)
	if u < 0.03 {
		return d, nil // still waiting
	}
	assigned := at.Add(20 * time.Second)
	d.DroneID, d.DroneAssignedAt, d.ScheduledAt = fmt.Sprintf("drone-%05d", i%5000), &assigned, &assigned
	d.SetStage(domain.StageScheduled, assigned, "")
	switch {
	case u < 0.08:
		_, err = d.Cancel(at.Add(5 * time.Minute))
	case u < 0.11:
		d.FailureReason = "the drone reported a fault"
		d.SetStage(domain.StageFailed, at.Add(8*time.Minute), d.FailureReason)
	default:
		picked := at.Add(time.Duration(5+int(10*unit(i, 9))) * time.Minute)
		done := picked.Add(time.Duration(5+int(40*unit(i, 10))) * time.Minute)
		d.PickedUpAt, d.CompletedAt = &picked, &done
		d.TraveledKm = domain.DistanceKm(d.Request.PickupLocation, d.Request.DropoffLocation) + 2*unit(i, 11)
		d.SetStage(domain.StageHeadedToPickup, assigned.Add(time.Second), "")
		d.SetStage(domain.StageHeadedToDropoff, picked, "package picked up")
		d.SetStage(domain.StageCompleted, done, "package delivered")
	}
	return d, err
}
