package cosmos

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// newDelivery is a delivery of owner as ingest stores one.
func newDelivery(id, owner string, created time.Time) *domain.Delivery {
	return &domain.Delivery{ID: id, TrackingID: "T" + id, OwnerID: owner, Stage: domain.StageCreated,
		Request:   domain.DeliveryRequest{OwnerID: owner, PickupTime: created, Deadline: created.Add(time.Hour)},
		CreatedAt: created, UpdatedAt: created, History: []domain.Event{{Stage: domain.StageCreated, At: created}}}
}

// pageIDs lists one page of owner's deliveries, in stage when it is set.
func pageIDs(t *testing.T, ds ports.Deliveries, owner string, stage domain.Stage, limit int) []string {
	t.Helper()
	page, err := ds.PageByOwner(ctxFor(t), ports.DeliveryFilter{OwnerID: owner, Stage: stage, Limit: limit})
	must(t, err, "page")
	ids := []string{}
	for _, d := range page.Deliveries {
		ids = append(ids, d.ID)
	}
	return ids
}

// setStage moves a delivery to stage s through the adapter.
func setStage(ctx context.Context, ds ports.Deliveries, id string, s domain.Stage) error {
	_, err := ds.Update(ctx, id, func(d *domain.Delivery) error {
		d.SetStage(s, d.CreatedAt.Add(time.Minute), "")
		return nil
	})
	return err
}

// testListingCost counts what the owner index costs: the writes that keep
// it and a page that reads it, which must be one query in the owner's
// partition and a point read per delivery.
func testListingCost(t *testing.T, e *env) {
	ctx := ctxFor(t)
	counts := &CountingPolicy{}
	var mu sync.Mutex
	var queries []http.Header
	spy := &faultTransport{next: base, inject: func(r *http.Request, _ []byte) *http.Response {
		if Operation(r) == OpQuery && strings.Contains(r.URL.Path, "/colls/"+topology.ContainerDeliveriesByOwner+"/") {
			mu.Lock()
			queries = append(queries, r.Header.Clone())
			mu.Unlock()
		}
		return nil
	}}
	c := e.newClient(t, &azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: spy, PerCallPolicies: []policy.Policy{counts}}})
	ds := e.open(t, c, e.freshDB(t), Options{}).Store().Deliveries
	step := func(what string, want map[string]int, op func()) {
		t.Helper()
		before := counts.Snapshot()
		op()
		require.Equal(t, want, delta(before, counts.Snapshot()), "%s cost", what)
	}
	owner := uniqueID("owner")
	var ids []string
	for i := range 7 {
		id := fmt.Sprintf("%s-%d", owner, i)
		ids = append(ids, id)
		// The entry and the delivery; then the analytics count the
		// acceptance: per bucket a batch (two for the month's first
		// delivery, whose patch finds no aggregate and which creates it).
		want := map[string]int{OpCreate: 2, OpBatch: 3}
		if i == 0 {
			want[OpBatch] = 6
		}
		step("create", want, func() {
			must(t, ds.Create(ctx, id, newDelivery(id, owner, at.Add(time.Duration(i)*time.Second))), "create")
		})
	}
	step("a stage change", map[string]int{OpReplace: 2}, func() { must(t, setStage(ctx, ds, ids[0], domain.StageScheduled), "schedule") })
	step("a write that keeps the stage", map[string]int{OpReplace: 1}, func() {
		_, err := ds.Update(ctx, ids[0], func(d *domain.Delivery) error { d.ScheduleAttempts++; return nil })
		must(t, err, "update")
	})
	// The read, then the acceptance's marker in each bucket (a replay
	// makes sure its analytics were added).
	step("a skipped update", map[string]int{OpRead: 4}, func() {
		_, err := ds.Update(ctx, ids[0], func(*domain.Delivery) error { return ports.ErrSkip })
		must(t, err, "skip")
	})
	var got []string
	step("a page of 5", map[string]int{OpQuery: 1, OpRead: 5}, func() { got = pageIDs(t, ds, owner, "", 5) })
	mustEqualIDs(t, []string{ids[6], ids[5], ids[4], ids[3], ids[2]}, got)
	step("a page of Scheduled", map[string]int{OpQuery: 1, OpRead: 1}, func() { got = pageIDs(t, ds, owner, domain.StageScheduled, 5) })
	mustEqualIDs(t, []string{ids[0]}, got)

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, queries, 2, "queries that reached the owner index")
	for _, h := range queries {
		require.Equal(t, `["`+owner+`"]`, h.Get("x-ms-documentdb-partitionkey"), "a listing query's partition, want the owner's")
		require.False(t, strings.EqualFold(h.Get("x-ms-documentdb-query-enablecrosspartition"), "true"),
			"a listing query asked for a cross-partition query")
	}
}

func mustEqualIDs(t *testing.T, want, got []string) {
	t.Helper()
	require.Equal(t, fmt.Sprint(want), fmt.Sprint(got), "listed")
}

// testFailedEntryWrite loses the entry write of a stage change, as a crash
// or an outage of the index container would: the update fails, and its
// retry, which finds the delivery written and skips, mends the entry.
func testFailedEntryWrite(t *testing.T, e *env) {
	ctx := ctxFor(t)
	var failing atomic.Bool
	tr := &faultTransport{next: base, inject: func(r *http.Request, _ []byte) *http.Response {
		if failing.Load() && r.Method != http.MethodGet && strings.Contains(r.URL.Path, "/colls/"+topology.ContainerDeliveriesByOwner+"/") {
			return respond(r, http.StatusServiceUnavailable, nil, `{"code":"ServiceUnavailable","message":"injected"}`)
		}
		return nil
	}}
	c := e.newClient(t, &azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: tr, Retry: policy.RetryOptions{MaxRetries: -1}}})
	db := e.freshDB(t)
	ds := e.open(t, c, db, Options{}).Store().Deliveries
	owner := uniqueID("owner")
	id := owner + "-1"
	must(t, ds.Create(ctx, id, newDelivery(id, owner, at)), "create")

	failing.Store(true)
	mustCode(t, setStage(ctx, ds, id, domain.StageCancelled), domain.EUNAVAILABLE, "a stage change whose entry write fails")
	failing.Store(false)
	d, err := ds.Find(ctx, id)
	must(t, err, "find")
	require.Equal(t, domain.StageCancelled, d.Stage, "the delivery's stage; the failure came after its write")
	// The step runs again: the stage is already changed, so it skips.
	_, err = ds.Update(ctx, id, func(d *domain.Delivery) error {
		if d.Stage == domain.StageCancelled {
			return ports.ErrSkip
		}
		return fmt.Errorf("stage %s", d.Stage)
	})
	must(t, err, "the retry")
	// Another process's view of the index: no listing has mended it.
	other := e.open(t, e.newClient(t, nil), db, Options{}).Store().Deliveries
	mustEqualIDs(t, []string{id}, pageIDs(t, other, owner, domain.StageCancelled, 5))
}

// testListingMendsTrailingEntries changes deliveries behind the index's
// back: the listing shows each as it is and rewrites its entry.
func testListingMendsTrailingEntries(t *testing.T, e *env) {
	ctx := ctxFor(t)
	db := e.freshDB(t)
	st := e.open(t, e.client, db, Options{})
	ds := st.Store().Deliveries
	owner := uniqueID("owner")
	a, b := owner+"-a", owner+"-b"
	must(t, ds.Create(ctx, a, newDelivery(a, owner, at)), "create a")
	must(t, ds.Create(ctx, b, newDelivery(b, owner, at.Add(time.Second))), "create b")
	// b moves on through a plain collection, which knows no index.
	plain := newCollection[domain.Delivery](container(t, e.client, db, topology.ContainerDeliveries), topology.ContainerDeliveries)
	_, err := plain.Update(ctx, b, func(d *domain.Delivery) error { d.SetStage(domain.StageFailed, at, "gone"); return nil })
	must(t, err, "move b behind the index")

	mustEqualIDs(t, []string{a}, pageIDs(t, ds, owner, domain.StageCreated, 5))
	mustEqualIDs(t, []string{b}, pageIDs(t, ds, owner, domain.StageFailed, 5))
	mustEqualIDs(t, []string{b, a}, pageIDs(t, ds, owner, "", 5))
}

// testListingSkipsStrayEntries: an entry whose delivery never came, and a
// create that found the id taken by another owner.
func testListingSkipsStrayEntries(t *testing.T, e *env) {
	ctx := ctxFor(t)
	db := e.freshDB(t)
	s := e.open(t, e.client, db, Options{})
	ds := s.Store().Deliveries
	owner, other := uniqueID("owner"), uniqueID("owner")

	ghost := owner + "-ghost"
	must(t, s.deliveries.owners.Create(ctx, ownerKey(owner, ghost), entryOf(ghost, newDelivery(ghost, owner, at))), "an entry without its delivery")
	real := owner + "-real"
	must(t, ds.Create(ctx, real, newDelivery(real, owner, at.Add(-time.Second))), "create")
	mustEqualIDs(t, []string{real}, pageIDs(t, ds, owner, "", 5))

	taken := uniqueID("taken")
	must(t, ds.Create(ctx, taken, newDelivery(taken, owner, at)), "create")
	mustCode(t, ds.Create(ctx, taken, newDelivery(taken, other, at)), domain.ECONFLICT, "another owner's create of a taken id")
	mustEqualIDs(t, []string{}, pageIDs(t, ds, other, "", 5))
	_, err := s.deliveries.owners.Find(ctx, ownerKey(other, taken))
	mustCode(t, err, domain.ENOTFOUND, "the entry of the refused create")
	_, err = s.deliveries.owners.Find(ctx, ownerKey(owner, taken))
	must(t, err, "the owner's entry of the taken id")
}
