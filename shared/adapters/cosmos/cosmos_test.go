package cosmos

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/airspace"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/ports/porttest"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/cosmosdouble"
)

// TestCosmos runs everything against one Cosmos DB double: its subtests run
// in parallel, each in a database of its own unless it says otherwise, and
// the double stops when the last of them ends.
func TestCosmos(t *testing.T) {
	e := &env{conn: cosmosdouble.StartCosmos(t)}
	e.client = e.newClient(t, nil)

	porttest.Store(t, func(t *testing.T) ports.Store { return e.open(t, e.client, e.freshDB(t), Options{}).Store() })
	t.Run("AnalyticsCost", func(t *testing.T) { t.Parallel(); testAnalyticsCost(t, e) })
	t.Run("KeptBucketsNoDeliverySupports", func(t *testing.T) { t.Parallel(); testKeptBucketsNoDeliverySupports(t, e) })
	t.Run("BatchAllOrNothing", func(t *testing.T) { t.Parallel(); testBatchAllOrNothing(t, e) })
	t.Run("SharedDatabase", func(t *testing.T) {
		t.Parallel()
		testSharedDatabase(t, e)
	})
	t.Run("ErrorMapping", func(t *testing.T) { t.Parallel(); testErrorMapping(t, e) })
	t.Run("ExpiredPausePutAgainIsKept", func(t *testing.T) { t.Parallel(); testExpiredPausePutAgain(t, e) })
	t.Run("LostRaceRetries", func(t *testing.T) { t.Parallel(); testLostRace(t, e) })
	t.Run("ConcurrentStoresLoseNothing", func(t *testing.T) { t.Parallel(); testConcurrentStores(t, e) })
	t.Run("LostRacesAreBounded", func(t *testing.T) { t.Parallel(); testLostRacesBounded(t, e) })
	t.Run("ThrottledOnceSucceeds", func(t *testing.T) { t.Parallel(); testThrottledOnce(t, e) })
	t.Run("ThrottledAlwaysUnavailable", func(t *testing.T) { t.Parallel(); testThrottledAlways(t, e) })
	t.Run("IndexSeesOtherStores", func(t *testing.T) { t.Parallel(); testIndexSeesOtherStores(t, e) })
	t.Run("AirspaceSeesOtherStores", func(t *testing.T) { t.Parallel(); testAirspaceSeesOtherStores(t, e) })
	t.Run("StaleIndexEntryCostsOneRead", func(t *testing.T) { t.Parallel(); testStaleIndexEntry(t, e) })
	t.Run("CountingPolicy", func(t *testing.T) { t.Parallel(); testCounting(t, e) })
	t.Run("ScheduleCostsFourPointOperations", func(t *testing.T) { t.Parallel(); testScheduleCost(t, e) })
	t.Run("ListWithoutGatewayOrderBy", func(t *testing.T) { t.Parallel(); testListFallback(t, e) })
	t.Run("ListingCost", func(t *testing.T) { t.Parallel(); testListingCost(t, e) })
	t.Run("FailedEntryWriteIsMended", func(t *testing.T) { t.Parallel(); testFailedEntryWrite(t, e) })
	t.Run("ListingMendsTrailingEntries", func(t *testing.T) { t.Parallel(); testListingMendsTrailingEntries(t, e) })
	t.Run("ListingSkipsStrayEntries", func(t *testing.T) { t.Parallel(); testListingSkipsStrayEntries(t, e) })
	t.Run("BootstrapIsIdempotent", func(t *testing.T) { t.Parallel(); testBootstrapTwice(t, e) })
	t.Run("CarriedVersions", func(t *testing.T) { t.Parallel(); testCarriedVersions(t, e) })
}

// testCarriedVersions: a step whose message names the version of a
// delivery this Store wrote starts from it without a read; where another
// Store wrote since, the step's conditional write fails, reads, and
// applies its change to what is stored now; a version this Store does not
// remember costs a read, as before.
func testCarriedVersions(t *testing.T, e *env) {
	db := e.freshDB(t)
	counts := &CountingPolicy{}
	a := e.open(t, e.newClient(t, &azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{PerCallPolicies: []policy.Policy{counts}}}),
		db, Options{}).Store()
	b := e.open(t, e.newClient(t, nil), db, Options{}).Store()
	id := uniqueID("carried")
	now := time.Now().UTC()

	// The sending step: its create is noted, and its messages carry it.
	sending, sent := ports.WithVersions(ctxFor(t), "")
	must(t, a.Deliveries.Create(sending, id, newDelivery(id, "owner-1", now)), "create")
	carried := sent.Encode()
	require.Contains(t, carried, topology.ContainerDeliveries+"/"+id, "the create's version is carried")

	// The next step on the same Store: no read.
	step, _ := ports.WithVersions(ctxFor(t), carried)
	before := counts.Snapshot()
	d, err := a.Deliveries.Find(step, id)
	must(t, err, "find from the carried version")
	require.Equal(t, id, d.ID)
	require.Equal(t, domain.StageCreated, d.Stage)
	require.Zero(t, delta(before, counts.Snapshot())[OpRead], "a find of the carried version reads nothing")

	// Another Store cancels the delivery meanwhile. The step, which found
	// it Created, updates it; the update sees the cancel and refuses.
	_, err = b.Deliveries.Update(ctxFor(t), id, func(cur *domain.Delivery) error {
		cur.SetStage(domain.StageCancelled, now, "cancelled elsewhere")
		return nil
	})
	must(t, err, "cancel through the other store")
	stale, _ := ports.WithVersions(ctxFor(t), carried)
	d, err = a.Deliveries.Find(stale, id)
	must(t, err, "find from the carried version")
	require.Equal(t, domain.StageCreated, d.Stage, "the carried version is the Created it names")
	var applied []domain.Stage
	got, err := a.Deliveries.Update(stale, id, func(cur *domain.Delivery) error {
		applied = append(applied, cur.Stage)
		if cur.Stage.Terminal() {
			return ports.ErrSkip
		}
		cur.DroneID = "drone-1"
		return nil
	})
	must(t, err, "update after the other store's write")
	require.Equal(t, "[Created Cancelled]", fmt.Sprint(applied), "the update sees the carried version, then the stored one")
	require.Equal(t, domain.StageCancelled, got.Stage, "the update leaves the delivery cancelled")
	require.Empty(t, got.DroneID, "the update leaves no drone")

	// A Store that does not remember the carried version reads.
	c := e.open(t, e.newClient(t, nil), db, Options{}).Store()
	fresh, _ := ports.WithVersions(ctxFor(t), carried)
	d, err = c.Deliveries.Find(fresh, id)
	must(t, err, "find on a store without the version")
	require.Equal(t, domain.StageCancelled, d.Stage, "a store without the version reads the stored one")
}

// env is the double and what the subtests share of it.
type env struct {
	conn   string
	client *azcosmos.Client
}

// base is the HTTP client under every test client; keep-alive with room for
// the parallel tests keeps them from exhausting ephemeral ports.
var base = &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second}}

// newClient connects to the double; o may add policies, a transport or
// retry options.
func (e *env) newClient(t testing.TB, o *azcosmos.ClientOptions) *azcosmos.Client {
	t.Helper()
	if o == nil {
		o = &azcosmos.ClientOptions{}
	}
	if o.Transport == nil {
		o.Transport = base
	}
	c, err := azcosmos.NewClientFromConnectionString(e.conn, o)
	require.NoError(t, err, "connect to the Cosmos DB double")
	return c
}

// freshDB bootstraps a database no other test uses.
func (e *env) freshDB(t testing.TB) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	name := "test-" + hex.EncodeToString(b[:])
	require.NoError(t, Bootstrap(context.Background(), e.client, name), "bootstrap %s", name)
	return name
}

func (e *env) open(t testing.TB, client *azcosmos.Client, db string, o Options) *Store {
	t.Helper()
	s, err := Open(ctxFor(t), client, db, o)
	require.NoError(t, err, "open %s", db)
	t.Cleanup(s.Close)
	return s
}

// patience bounds every wait for the Cosmos DB double: only a hang reaches
// it.
const patience = time.Minute

func ctxFor(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	t.Cleanup(cancel)
	return ctx
}

func uniqueID(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

func mustCode(t *testing.T, err error, code, what string) {
	t.Helper()
	require.Equal(t, code, domain.ErrorCode(err), "%s: the code of %v", what, err)
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	require.NoError(t, err, what)
}

var at = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

func testPackage(id string) *domain.Package {
	return &domain.Package{ID: id, OwnerID: "owner-1", DeliveryID: "del-" + id, Size: domain.SizeSmall, CreatedAt: at, UpdatedAt: at}
}

func testDrone(id string, loc domain.Location) *domain.Drone {
	return &domain.Drone{ID: id, Location: loc, HomeBase: loc, MaxPayloadKg: 5, MaxPackageSize: domain.SizeLarge,
		RangeKm: 100, CruiseSpeedMps: 20, BatteryPercent: 90, Status: domain.DroneAvailable, UpdatedAt: at}
}

// nearestIDs lists the ids NearestAvailable yields that start with prefix.
func nearestIDs(ctx context.Context, f ports.Fleet, loc domain.Location, prefix string) []string {
	var ids []string
	for d := range f.NearestAvailable(ctx, loc) {
		if strings.HasPrefix(d.ID, prefix) {
			ids = append(ids, d.ID)
		}
	}
	return ids
}

// testSharedDatabase runs both suites on one database through two Stores,
// as the suites allow, so every test also meets the others' documents and
// the fleet tests meet drones another Store wrote.
func testSharedDatabase(t *testing.T, e *env) {
	db := e.freshDB(t)
	stores := []*Store{
		e.open(t, e.client, db, Options{FeedPoll: 100 * time.Millisecond}),
		e.open(t, e.newClient(t, nil), db, Options{FeedPoll: 100 * time.Millisecond}),
	}
	var n atomic.Int64
	open := func(*testing.T) ports.Store { return stores[n.Add(1)%2].Store() }
	porttest.SharedStore(t, open)
}

// testExpiredPausePutAgain holds DeleteExpired to its condition: a pause
// put again after the listing read it expired is not deleted, since the
// delete names the ETag read.
func testExpiredPausePutAgain(t *testing.T, e *env) {
	ctx := ctxFor(t)
	ps := e.open(t, e.client, e.freshDB(t), Options{}).pauses
	now := time.Now().UTC()
	id := uniqueID("pause")
	must(t, ps.Create(ctx, id, &domain.Pause{ID: id, Reason: "storm", Until: now.Add(-time.Hour)}), "create")
	read, err := ps.all(ctx)
	must(t, err, "list")
	require.Len(t, read, 1, "the one pause")
	require.False(t, read[0].pause.ActiveAt(now), "the pause is expired")
	_, err = ps.Upsert(ctx, id, func(cur *domain.Pause) (*domain.Pause, error) {
		cur.Until = now.Add(time.Hour)
		return cur, nil
	})
	must(t, err, "put again")
	require.Equal(t, http.StatusPreconditionFailed, statusOf(ps.deleteIf(ctx, id, read[0].etag)), "delete on the ETag read")
	n, err := ps.DeleteExpired(ctx, now)
	must(t, err, "delete expired")
	_, err = ps.Find(ctx, id)
	require.NoError(t, err, "the pause put again is kept")
	require.Zero(t, n, "the pause put again is not removed")
}

func testErrorMapping(t *testing.T, e *env) {
	ctx := ctxFor(t)
	db := e.freshDB(t)
	st := e.open(t, e.client, db, Options{}).Store()
	id := uniqueID("pkg")

	_, err := st.Packages.Find(ctx, id)
	mustCode(t, err, domain.ENOTFOUND, "find of a missing package (404)")
	_, err = st.Packages.Update(ctx, id, func(*domain.Package) error { return nil })
	mustCode(t, err, domain.ENOTFOUND, "update of a missing package (404)")
	must(t, st.Packages.Create(ctx, id, testPackage(id)), "create")
	mustCode(t, st.Packages.Create(ctx, id, testPackage(id)), domain.ECONFLICT, "second create (409)")

	// A missing database is a deployment fault, never a missing document:
	// a step that took it for one would drop the delivery's message.
	orphan := newCollection[domain.Delivery](container(t, e.client, uniqueID("nodb"), topology.ContainerDeliveries), topology.ContainerDeliveries)
	_, err = orphan.Find(ctx, id)
	mustCode(t, err, domain.EUNAVAILABLE, "find in a missing database (404, sub-status 1003)")
	require.NotContains(t, err.Error(), "\n", "a log line carries Cosmos DB's answer in one line, not the SDK's dump of it")
	require.ErrorContains(t, err, "Cosmos DB answered 404")
	require.ErrorContains(t, err, "(sub-status 1003)")
	require.ErrorContains(t, err, "Owner resource does not exist", "with what the answer says is missing")
	// Opening asks nothing of Cosmos DB (a process starts whatever state
	// it is in); the drone index's first load finds the database missing.
	missing, err := Open(ctx, e.client, uniqueID("nodb"), Options{})
	must(t, err, "open of a missing database")
	defer missing.Close()
	mustCode(t, missing.Store().Fleet.Ready(ctx), domain.EUNAVAILABLE, "the drone index of a missing database")

	// Server failures keep their cause, and say what failed.
	failing := &faultTransport{next: base, inject: func(r *http.Request, _ []byte) *http.Response {
		if Operation(r) == OpReplace {
			return respond(r, http.StatusServiceUnavailable, nil, `{"code":"ServiceUnavailable","message":"injected"}`)
		}
		return nil
	}}
	fast := policy.RetryOptions{MaxRetries: 1, RetryDelay: time.Millisecond, MaxRetryDelay: 10 * time.Millisecond}
	c := e.newClient(t, &azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: failing, Retry: fast}})
	other, err := Open(ctx, c, db, Options{})
	must(t, err, "open through the failing transport")
	defer other.Close()
	_, err = other.Store().Packages.Update(ctx, id, func(p *domain.Package) error { p.Weight++; return nil })
	mustCode(t, err, domain.EUNAVAILABLE, "update answered 503")
	var re *azcore.ResponseError
	require.ErrorAs(t, err, &re, "the 503 is in the error's chain")
	require.Equal(t, http.StatusServiceUnavailable, re.StatusCode, "the 503 is in the error's chain")
	require.ErrorContains(t, err, "replace packages/"+id, "the error says what failed")
	require.NotContains(t, err.Error(), "\n", "in one line")
	require.ErrorContains(t, err, "Cosmos DB answered 503 Service Unavailable to PUT /dbs/", "with the answer and the request")
	require.ErrorContains(t, brief(err), "replace packages/"+id, "told in one line again, as a log line does, it keeps what it says")

	// A transport failure is as transient as a 503.
	dead := e.newClient(t, &azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{Retry: fast,
		Transport: &faultTransport{next: base, fail: errors.New("injected: connection refused")}}})
	_, err = newCollection[domain.Package](container(t, dead, db, topology.ContainerPackages), topology.ContainerPackages).Find(ctx, id)
	mustCode(t, err, domain.EUNAVAILABLE, "find over a failing network")
}

func container(t *testing.T, c *azcosmos.Client, db, name string) *azcosmos.ContainerClient {
	t.Helper()
	d, err := c.NewDatabase(db)
	must(t, err, "database client")
	cc, err := d.NewContainer(name)
	must(t, err, "container client")
	return cc
}

// pair opens two Stores with separate clients on one fresh database, as two
// processes would, so that only ETags keep their writes apart, and creates
// through a the package both are to race for.
func pair(t *testing.T, e *env) (a, b ports.Store, pkg string) {
	db := e.freshDB(t)
	a = e.open(t, e.client, db, Options{}).Store()
	b = e.open(t, e.newClient(t, nil), db, Options{}).Store()
	pkg = uniqueID("pkg")
	must(t, a.Packages.Create(ctxFor(t), pkg, testPackage(pkg)), "create")
	return a, b, pkg
}

// meddle adds kg to the weight of package id through b, the other store of
// a pair, as another process's write in the middle of a's update.
func meddle(ctx context.Context, t *testing.T, b ports.Store, id string, kg float64) {
	t.Helper()
	_, err := b.Packages.Update(ctx, id, func(p *domain.Package) error { p.Weight += kg; return nil })
	must(t, err, "the other store's update")
}

func testLostRace(t *testing.T, e *env) {
	ctx := ctxFor(t)
	a, b, id := pair(t, e)

	// The first run of fn lets the other Store write in between, so the
	// replace must fail its ETag check (412), re-read and re-apply fn.
	runs := 0
	got, err := a.Packages.Update(ctx, id, func(p *domain.Package) error {
		runs++
		if runs == 1 {
			meddle(ctx, t, b, id, 10)
		}
		p.Weight++
		return nil
	})
	must(t, err, "update that lost a race")
	require.Equal(t, 2, runs, "fn runs again after the lost race")
	require.Equal(t, 11.0, got.Weight)
	found, err := b.Packages.Find(ctx, id)
	must(t, err, "find")
	require.Equal(t, 11.0, found.Weight, "stored weight")

	// The same for an Upsert of an existing document, and for one that
	// creates: a concurrent create (409) makes it run again as an update.
	runs = 0
	got, err = a.Packages.Upsert(ctx, id, func(cur *domain.Package) (*domain.Package, error) {
		runs++
		if runs == 1 {
			meddle(ctx, t, b, id, 10)
		}
		cur.Weight++
		return cur, nil
	})
	must(t, err, "upsert that lost a race")
	require.Equal(t, 2, runs, "fn runs again after the lost race")
	require.Equal(t, 22.0, got.Weight)
	fresh := uniqueID("pkg")
	var seen []bool
	got, err = a.Packages.Upsert(ctx, fresh, func(cur *domain.Package) (*domain.Package, error) {
		seen = append(seen, cur != nil)
		if cur == nil {
			must(t, b.Packages.Create(ctx, fresh, testPackage(fresh)), "the other store's create")
			cur = testPackage(fresh)
		}
		cur.Weight++
		return cur, nil
	})
	must(t, err, "upsert that lost a create race")
	require.Equal(t, "[false true]", fmt.Sprint(seen), "fn sees no document, then the one created meanwhile")
	require.Equal(t, 1.0, got.Weight)
}

func testConcurrentStores(t *testing.T, e *env) {
	ctx := ctxFor(t)
	a, b, id := pair(t, e)
	const workers, each = 4, 15
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers*each)
	for _, st := range []ports.Store{a, b} {
		for range workers {
			wg.Go(func() {
				for range each {
					if _, err := st.Packages.Update(ctx, id, func(p *domain.Package) error { p.Weight++; return nil }); err != nil {
						errs <- err
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err, "update")
	}
	got, err := a.Packages.Find(ctx, id)
	must(t, err, "find")
	require.Equal(t, float64(2*workers*each), got.Weight, "weight after %d updates from two stores", 2*workers*each)
}

func testLostRacesBounded(t *testing.T, e *env) {
	ctx := ctxFor(t)
	a, b, id := pair(t, e)
	runs := 0
	_, err := a.Packages.Update(ctx, id, func(p *domain.Package) error {
		runs++
		meddle(ctx, t, b, id, 1)
		return nil
	})
	mustCode(t, err, domain.EUNAVAILABLE, "update that always loses")
	require.LessOrEqual(t, runs, maxAttempts+1, "the loop should give up after %d attempts", maxAttempts)
}

// throttle answers 429 with a retry-after hint to the first `times`
// replaces, and counts the attempts the transport sees.
func throttle(times int) *faultTransport {
	var left atomic.Int64
	left.Store(int64(times))
	return &faultTransport{next: base, inject: func(r *http.Request, _ []byte) *http.Response {
		if Operation(r) == OpReplace && left.Add(-1) >= 0 {
			h := http.Header{"X-Ms-Retry-After-Ms": {"25"}, "X-Ms-Substatus": {"3200"}}
			return respond(r, http.StatusTooManyRequests, h, `{"code":"TooManyRequests","message":"Request rate is large"}`)
		}
		return nil
	}}
}

func testThrottledOnce(t *testing.T, e *env) {
	ctx := ctxFor(t)
	tr := throttle(1)
	counts := &CountingPolicy{}
	c := e.newClient(t, &azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: tr, PerCallPolicies: []policy.Policy{counts}}})
	st := e.open(t, c, e.freshDB(t), Options{}).Store()
	id := uniqueID("pkg")
	must(t, st.Packages.Create(ctx, id, testPackage(id)), "create")

	before := counts.Snapshot()
	got, err := st.Packages.Update(ctx, id, func(p *domain.Package) error { p.Weight++; return nil })
	must(t, err, "update throttled once")
	require.Equal(t, 1.0, got.Weight)
	require.Equal(t, 2, tr.attempts(OpReplace), "the transport sees the throttled replace and its retry")
	// The SDK's retry policy resent it below the per-call counter.
	d := delta(before, counts.Snapshot())
	require.Equal(t, 1, d[OpReplace], "counted %v; want one replace", d)
}

func testThrottledAlways(t *testing.T, e *env) {
	ctx := ctxFor(t)
	tr := throttle(1 << 30)
	c := e.newClient(t, &azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: tr, Retry: policy.RetryOptions{MaxRetries: 2}}})
	st := e.open(t, c, e.freshDB(t), Options{}).Store()
	id := uniqueID("pkg")
	must(t, st.Packages.Create(ctx, id, testPackage(id)), "create")
	_, err := st.Packages.Update(ctx, id, func(p *domain.Package) error { p.Weight++; return nil })
	mustCode(t, err, domain.EUNAVAILABLE, "update throttled past the SDK's retries")
	require.Equal(t, http.StatusTooManyRequests, statusOf(err), "the 429 is in the error's chain: %v", err)
	require.Equal(t, 3, tr.attempts(OpReplace), "the transport sees 1 + MaxRetries (2) replaces")
}

// testAirspaceSeesOtherStores puts a zone written or deleted through another
// Store in force here within the feed's poll, and a zone written through
// this Store at once; once the feed is followed, asking for the airspace
// reads nothing (no point read of the version document per call).
func testAirspaceSeesOtherStores(t *testing.T, e *env) {
	ctx := ctxFor(t)
	db := e.freshDB(t)
	counts := &CountingPolicy{}
	a := e.open(t, e.newClient(t, &azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{PerCallPolicies: []policy.Policy{counts}}}),
		db, Options{FeedPoll: 50 * time.Millisecond}).Store()
	b := e.open(t, e.newClient(t, nil), db, Options{}).Store()
	air := airspace.NewStore(a.Zones)
	spot := domain.Location{Latitude: 51.5, Longitude: -0.12}
	admitted := func() bool {
		snap, err := air.Current(ctx)
		must(t, err, "current airspace")
		return snap.Admit("pickupLocation", spot, time.Now()) == nil
	}
	require.True(t, admitted(), "no zones, yet the spot is refused")
	z := &domain.Zone{ID: "city", Kind: domain.NoFlyZone, GeometryType: "Polygon", Polygons: []domain.Polygon{{{
		{-0.13, 51.49}, {-0.11, 51.49}, {-0.11, 51.51}, {-0.13, 51.51}, {-0.13, 51.49}}}}}
	must(t, b.Zones.Create(ctx, z.Key(), z), "create a zone through the other store")
	porttest.Eventually(t, "the zone written elsewhere in force", func() error {
		if admitted() {
			return errors.New("the spot is still admitted")
		}
		return nil
	})
	must(t, b.Zones.Delete(ctx, z.Key()), "delete it there")
	porttest.Eventually(t, "the zone deleted elsewhere out of force", func() error {
		if !admitted() {
			return errors.New("the spot is still refused")
		}
		return nil
	})
	must(t, a.Zones.Create(ctx, z.Key(), z), "create the zone through this store")
	require.False(t, admitted(), "the zone written here is not in force at once")

	before := counts.Snapshot()
	for range 20 {
		_, err := air.Current(ctx)
		must(t, err, "current airspace")
	}
	after := counts.Snapshot()
	require.Zero(t, after[OpRead]-before[OpRead], "20 calls of Current read documents; want none while the feed is followed")
}

// testIndexSeesOtherStores follows drones another Store creates, claims,
// frees and moves into this Store's index through the change feed alone:
// this Store sends no query after its index is loaded.
func testIndexSeesOtherStores(t *testing.T, e *env) {
	ctx := ctxFor(t)
	counts := &CountingPolicy{}
	db := e.freshDB(t)
	a := e.open(t, e.newClient(t, &azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{PerCallPolicies: []policy.Policy{counts}}}),
		db, Options{FeedPoll: 50 * time.Millisecond}).Store()
	b := e.open(t, e.newClient(t, nil), db, Options{}).Store()
	center := domain.Location{Latitude: 51.5, Longitude: -0.12}
	must(t, a.Fleet.Ready(ctx), "load the index")
	id := uniqueID("other")
	must(t, b.Fleet.Create(ctx, id, testDrone(id, center)), "create through the other store")

	want := func(ids ...string) func() error {
		return func() error {
			got := nearestIDs(ctx, a.Fleet, center, "other-")
			if fmt.Sprint(got) != fmt.Sprint(ids) {
				return fmt.Errorf("store A yields %v, want %v", got, ids)
			}
			return nil
		}
	}
	porttest.Eventually(t, "a drone created elsewhere", want(id))
	_, err := b.Fleet.Update(ctx, id, func(d *domain.Drone) error {
		d.Status, d.CurrentDeliveryID = domain.DroneAssigned, "del-1"
		return nil
	})
	must(t, err, "claim elsewhere")
	porttest.Eventually(t, "a drone claimed elsewhere", want())
	_, err = b.Fleet.Update(ctx, id, func(d *domain.Drone) error {
		d.Status, d.CurrentDeliveryID = domain.DroneAvailable, ""
		d.Location.Latitude += 0.01
		return nil
	})
	must(t, err, "release elsewhere")
	porttest.Eventually(t, "a drone freed and moved elsewhere", func() error {
		if err := want(id)(); err != nil {
			return err
		}
		for d := range a.Fleet.NearestAvailable(ctx, center) {
			if d.ID == id && d.Location.Latitude != center.Latitude+0.01 {
				return fmt.Errorf("store A has the drone at %v", d.Location)
			}
		}
		return nil
	})
	got := counts.Snapshot()
	require.Zero(t, got[OpQuery], "store A sent %v; want no query", got)
	require.NotZero(t, got[OpChangeFeed], "store A sent %v; want change feed reads", got)
	t.Logf("store A's requests while following: %v", got)
}

func testStaleIndexEntry(t *testing.T, e *env) {
	ctx := ctxFor(t)
	tr := &faultTransport{next: base}
	counts := &CountingPolicy{}
	c := e.newClient(t, &azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: tr, PerCallPolicies: []policy.Policy{counts}}})
	db := e.freshDB(t)
	// A never reloads during the test, so only its own reads can teach it.
	a := e.open(t, c, db, Options{FeedPoll: time.Hour}).Store()
	b := e.open(t, e.newClient(t, nil), db, Options{}).Store()
	center := domain.Location{Latitude: -33.9, Longitude: 18.4}
	id := uniqueID("stale")
	must(t, a.Fleet.Create(ctx, id, testDrone(id, center)), "create")
	must(t, a.Fleet.Ready(ctx), "load A's index")
	_, err := b.Fleet.Update(ctx, id, func(d *domain.Drone) error {
		d.Status, d.CurrentDeliveryID = domain.DroneAssigned, "del-b"
		return nil
	})
	must(t, err, "claim through the other store")
	require.Len(t, nearestIDs(ctx, a.Fleet, center, "stale-"), 1, "store A should still think the drone available")

	errTaken := errors.New("taken")
	before := counts.Snapshot()
	_, err = a.Fleet.Update(ctx, id, func(d *domain.Drone) error {
		if d.Status != domain.DroneAvailable {
			return errTaken
		}
		d.Status, d.CurrentDeliveryID = domain.DroneAssigned, "del-a"
		return nil
	})
	require.Same(t, errTaken, err, "claim of a drone claimed elsewhere: %v, want the function's error", err)
	// The claim tried the indexed version (412), then read the drone.
	require.Equal(t, map[string]int{OpReplace: 1, OpRead: 1}, delta(before, counts.Snapshot()),
		"a claim from a stale index entry costs one replace and one read")
	require.Empty(t, nearestIDs(ctx, a.Fleet, center, "stale-"), "the read should have taken the drone out of A's index")
}

func testCounting(t *testing.T, e *env) {
	ctx := ctxFor(t)
	counts := &CountingPolicy{}
	c := e.newClient(t, &azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{PerCallPolicies: []policy.Policy{counts}}})
	db := e.freshDB(t)
	before := counts.Snapshot()
	st := e.open(t, c, db, Options{FeedPoll: time.Hour}).Store()
	step := func(what string, want map[string]int, op func()) {
		t.Helper()
		before := counts.Snapshot()
		op()
		after := counts.Snapshot()
		require.Equal(t, want, delta(before, after), "%s cost", what)
		require.GreaterOrEqual(t, counts.Total(), sum(after), "%s: Total is below the snapshot before it", what)
	}
	require.Empty(t, delta(before, counts.Snapshot()), "open costs nothing: the drone index loads on first use")

	id := uniqueID("pkg")
	step("create", map[string]int{OpCreate: 1}, func() { must(t, st.Packages.Create(ctx, id, testPackage(id)), "create") })
	step("find", map[string]int{OpRead: 1}, func() { _, err := st.Packages.Find(ctx, id); must(t, err, "find") })
	step("update after find", map[string]int{OpReplace: 1}, func() {
		_, err := st.Packages.Update(ctx, id, func(p *domain.Package) error { p.Weight++; return nil })
		must(t, err, "update")
	})
	step("skipped update", map[string]int{OpRead: 1}, func() {
		_, err := st.Packages.Update(ctx, id, func(*domain.Package) error { return ports.ErrSkip })
		must(t, err, "update")
	})
	other := uniqueID("pkg")
	// Packages are upserted create first (newPackages): a new one costs
	// the create alone, one that exists a failed create and a read first.
	step("creating upsert", map[string]int{OpCreate: 1}, func() {
		_, err := st.Packages.Upsert(ctx, other, func(*domain.Package) (*domain.Package, error) { return testPackage(other), nil })
		must(t, err, "upsert")
	})
	forgotten := e.open(t, c, db, Options{}).Store()
	step("upsert of a package this Store has not seen", map[string]int{OpCreate: 1, OpRead: 1, OpReplace: 1}, func() {
		_, err := forgotten.Packages.Upsert(ctx, other, func(cur *domain.Package) (*domain.Package, error) {
			if cur == nil {
				return testPackage(other), nil
			}
			cur.Weight++
			return cur, nil
		})
		must(t, err, "upsert")
	})
	step("list", map[string]int{OpQuery: 1}, func() {
		_, err := st.Fleet.List(ctx, domain.DroneAvailable, "", 10)
		must(t, err, "list")
	})
	// Drones written before the index is wanted cost their writes only.
	drone := uniqueID("drone")
	step("drone create before the index loads", map[string]int{OpCreate: 1}, func() {
		must(t, st.Fleet.Create(ctx, drone, testDrone(drone, domain.Location{})), "create a drone")
	})
	// The first search loads the index from the change feed: the
	// container's metadata (for its resource id), its partition key
	// ranges (read until 304), then the feed until a read finds nothing.
	before = counts.Snapshot()
	require.Len(t, nearestIDs(ctx, st.Fleet, domain.Location{}, drone), 1, "the first search yields the drone")
	load := delta(before, counts.Snapshot())
	require.Zero(t, load[OpQuery], "loading the index cost %v; want no query", load)
	require.GreaterOrEqual(t, load[OpChangeFeed], 2, "loading the index cost %v; want change feed reads (a page, then an empty read)", load)
	t.Logf("loading the index: %v", load)
	step("nearest once loaded", map[string]int{}, func() { nearestIDs(ctx, st.Fleet, domain.Location{}, "") })
	require.Equal(t, OpChangeFeed, Operation(mustRequest(t, http.MethodGet, "/dbs/d/colls/c/docs", "A-IM", "Incremental feed")), "a change feed read")

	require.Equal(t, OpAccount, Operation(mustRequest(t, http.MethodGet, "/")), "the root")
	require.Equal(t, "POST colls", Operation(mustRequest(t, http.MethodPost, "/dbs/d/colls")), "a container create")
}

// mustRequest makes a request with headers given as name, value pairs.
func mustRequest(t *testing.T, method, path string, headers ...string) *http.Request {
	r, err := http.NewRequest(method, "http://127.0.0.1"+path, nil)
	must(t, err, "request")
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	return r
}

// testScheduleCost replays, through the ports, what the schedule step
// (handlers/schedule.go) does for one delivery, and counts what it costs in
// Cosmos: the figure the docs quote. It copies the step's calls rather than
// importing it, so that this package's tests do not break while the
// handlers change.
func testScheduleCost(t *testing.T, e *env) {
	ctx := ctxFor(t)
	counts := &CountingPolicy{}
	c := e.newClient(t, &azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{PerCallPolicies: []policy.Policy{counts}}})
	db := e.freshDB(t)
	now := time.Now().UTC().Truncate(time.Second)
	pickup := domain.Location{Latitude: 47.6, Longitude: -122.3}

	// One drone written by another process, which this Store knows only
	// from its index load, and one written through this Store.
	seed := e.open(t, e.client, db, Options{}).Store()
	cold, warm := uniqueID("cold"), uniqueID("warm")
	must(t, seed.Fleet.Create(ctx, cold, testDrone(cold, pickup)), "create a drone elsewhere")
	st := e.open(t, c, db, Options{FeedPoll: time.Hour}).Store()
	must(t, st.Fleet.Ready(ctx), "load the index")
	must(t, st.Fleet.Create(ctx, warm, testDrone(warm, domain.Location{Latitude: 47.601, Longitude: -122.3})), "create a drone here")

	for _, want := range []string{cold, warm} {
		id := uniqueID("del")
		d := &domain.Delivery{ID: id, TrackingID: "T" + id, OwnerID: "owner-1", CorrelationID: "corr-" + id,
			Request: domain.DeliveryRequest{OwnerID: "owner-1", PickupLocation: pickup,
				DropoffLocation: domain.Location{Latitude: 47.65, Longitude: -122.25},
				PickupTime:      now, Deadline: now.Add(time.Hour), ConfirmationRequired: domain.ConfirmationNone,
				PackageInfo: domain.PackageInfo{PackageID: "pkg-" + id, Size: domain.SizeSmall, Weight: 1}},
			Stage: domain.StageCreated, CreatedAt: now, UpdatedAt: now}
		// Written elsewhere, as ingest would in another instance.
		must(t, seed.Deliveries.Create(ctx, id, d), "create the delivery elsewhere")

		before := counts.Snapshot()
		got := schedule(t, ctx, st, id, now)
		cost := delta(before, counts.Snapshot())
		require.Equal(t, want, got.DroneID, "the delivery's drone")
		require.NotNil(t, got.DroneAssignedAt, "the delivery's assignment time")
		// Find the delivery, then reserve, claim and record, each a
		// conditional replace on a version already in hand.
		require.Equal(t, map[string]int{OpRead: 1, OpReplace: 3}, cost, "scheduling with drone %s", want)
		t.Logf("schedule with drone %s: %v", want, cost)
		stored, err := seed.Fleet.Find(ctx, want)
		must(t, err, "find the drone")
		require.Equal(t, id, stored.CurrentDeliveryID, "the delivery of drone %s", want)
	}
}

// schedule makes the schedule step's calls for delivery id: find it,
// reserve the nearest fit drone on it, claim that drone, record the claim.
func schedule(t *testing.T, ctx context.Context, st ports.Store, id string, now time.Time) *domain.Delivery {
	t.Helper()
	d, err := st.Deliveries.Find(ctx, id)
	must(t, err, "find the delivery")
	for drone := range st.Fleet.NearestAvailable(ctx, d.Request.PickupLocation) {
		if domain.Unfit(drone, &d.Request) != "" {
			continue
		}
		_, err := st.Deliveries.Update(ctx, id, func(cur *domain.Delivery) error {
			if cur.DroneID == drone.ID {
				return ports.ErrSkip
			}
			cur.DroneID, cur.UpdatedAt = drone.ID, now
			return nil
		})
		must(t, err, "reserve")
		_, err = st.Fleet.Update(ctx, drone.ID, func(dr *domain.Drone) error {
			if why := domain.Unfit(dr, &d.Request); why != "" {
				return errors.New(why)
			}
			dr.Status, dr.CurrentDeliveryID, dr.UpdatedAt = domain.DroneAssigned, id, now
			return nil
		})
		must(t, err, "claim")
		got, err := st.Deliveries.Update(ctx, id, func(cur *domain.Delivery) error {
			cur.DroneAssignedAt, cur.UpdatedAt = &now, now
			return nil
		})
		must(t, err, "record")
		return got
	}
	require.FailNow(t, "no drone to schedule")
	return nil
}

func testListFallback(t *testing.T, e *env) {
	ctx := ctxFor(t)
	var refused atomic.Int64
	tr := &faultTransport{next: base, inject: func(r *http.Request, body []byte) *http.Response {
		if Operation(r) == OpQuery && bytes.Contains(body, []byte("ORDER BY")) {
			refused.Add(1)
			h := http.Header{"X-Ms-Substatus": {"1004"}}
			return respond(r, http.StatusBadRequest, h, `{"code":"BadRequest","message":"The provided cross partition query can not be directly served by the gateway."}`)
		}
		return nil
	}}
	c := e.newClient(t, &azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: tr}})
	st := e.open(t, c, e.freshDB(t), Options{}).Store()
	prefix := uniqueID("list")
	var all []string
	for i := 9; i >= 0; i-- { // created out of order on purpose
		id := fmt.Sprintf("%s-%d", prefix, i)
		d := testDrone(id, domain.Location{Latitude: 10, Longitude: float64(i)})
		if i%3 == 0 {
			d.Status = domain.DroneCharging
		}
		must(t, st.Fleet.Create(ctx, id, d), "create")
	}
	for i := range 10 {
		all = append(all, fmt.Sprintf("%s-%d", prefix, i))
	}
	list := func(status domain.DroneStatus, after string, limit int) string {
		got, err := st.Fleet.List(ctx, status, after, limit)
		must(t, err, "list")
		var ids []string
		for _, d := range got {
			ids = append(ids, d.ID)
		}
		return fmt.Sprint(ids)
	}
	require.Equal(t, fmt.Sprint(all[:4]), list("", "", 4), "first page")
	require.Equal(t, fmt.Sprint([]string{all[4], all[5], all[7]}), list(domain.DroneAvailable, all[2], 3), "available after %s", all[2])
	require.Equal(t, fmt.Sprint([]string{all[0], all[3], all[6], all[9]}), list(domain.DroneCharging, "", 200), "charging")
	require.Equal(t, int64(1), refused.Load(), "ORDER BY queries the gateway refused; the adapter should have stopped after the first")
}

func testBootstrapTwice(t *testing.T, e *env) {
	db := e.freshDB(t)
	must(t, Bootstrap(ctxFor(t), e.client, db), "second bootstrap")
	s := e.open(t, e.client, db, Options{})
	s.Close()
	s.Close() // Close is idempotent; the cleanup closes it a third time
}

// delta is what happened between two snapshots, leaving out the SDK's own
// account metadata refreshes, which come on its schedule, not ours.
func delta(before, after map[string]int) map[string]int {
	d := map[string]int{}
	for k, v := range after {
		if n := v - before[k]; n != 0 && k != OpAccount {
			d[k] = n
		}
	}
	return d
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// faultTransport sits under the SDK's retry policy, where it can answer
// for the server (inject), fail like a network (fail), and count attempts.
type faultTransport struct {
	next   policy.Transporter
	inject func(r *http.Request, body []byte) *http.Response
	fail   error

	mu   sync.Mutex
	seen map[string]int
}

func (f *faultTransport) Do(r *http.Request) (*http.Response, error) {
	op := Operation(r)
	f.mu.Lock()
	if f.seen == nil {
		f.seen = map[string]int{}
	}
	f.seen[op]++
	f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	if f.inject != nil {
		var body []byte
		if r.Body != nil {
			var err error
			if body, err = io.ReadAll(r.Body); err != nil {
				return nil, err
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		if resp := f.inject(r, body); resp != nil {
			return resp, nil
		}
	}
	return f.next.Do(r)
}

func (f *faultTransport) attempts(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[op]
}

func respond(r *http.Request, status int, h http.Header, body string) *http.Response {
	if h == nil {
		h = http.Header{}
	}
	h.Set("Content-Type", "application/json")
	return &http.Response{
		StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: r,
	}
}

// testBatchAllOrNothing holds the double to what the analytics rely on: a
// transactional batch whose second operation fails leaves nothing of the
// first, and says which operation failed.
func testBatchAllOrNothing(t *testing.T, e *env) {
	ctx := ctxFor(t)
	db := e.freshDB(t)
	cc := container(t, e.client, db, topology.ContainerAnalytics)
	part := uniqueID("bucket")
	pk := azcosmos.NewPartitionKeyString(part)
	doc := func(id string) []byte {
		return []byte(`{"id":"` + id + `","bucket":"` + part + `"}`)
	}
	_, err := cc.CreateItem(ctx, pk, doc("aggregate"), nil)
	must(t, err, "create the aggregate")

	stale := azcore.ETag(`"stale"`)
	b := cc.NewTransactionalBatch(pk)
	b.CreateItem(doc("marker"), nil)
	b.ReplaceItem("aggregate", doc("aggregate"), &azcosmos.TransactionalBatchItemOptions{IfMatchETag: &stale})
	resp, err := cc.ExecuteTransactionalBatch(ctx, b, nil)
	must(t, err, "run the batch")
	require.False(t, resp.Success, "a batch with a stale ETag")
	require.Len(t, resp.OperationResults, 2, "a batch with a stale ETag")
	require.Equal(t, int32(http.StatusFailedDependency), resp.OperationResults[0].StatusCode, "a batch with a stale ETag: the first operation")
	require.Equal(t, int32(http.StatusPreconditionFailed), resp.OperationResults[1].StatusCode, "a batch with a stale ETag: the second operation")
	_, err = cc.ReadItem(ctx, pk, "marker", nil)
	require.Equal(t, http.StatusNotFound, statusOf(err), "the failed batch's first operation stayed: read error %v", err)

	b = cc.NewTransactionalBatch(pk)
	b.CreateItem(doc("marker"), nil)
	b.UpsertItem(doc("aggregate"), nil)
	resp, err = cc.ExecuteTransactionalBatch(ctx, b, nil)
	must(t, err, "run the batch")
	require.True(t, resp.Success, "a batch that can succeed: results %+v", resp.OperationResults)
	_, err = cc.ReadItem(ctx, pk, "marker", nil)
	must(t, err, "read the marker the batch created")
}

// testAnalyticsCost counts what the analytics add to a delivery's writes in
// Cosmos DB: the figures docs/data-layout.md quotes.
func testAnalyticsCost(t *testing.T, e *env) {
	ctx := ctxFor(t)
	counts := &CountingPolicy{}
	c := e.newClient(t, &azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{PerCallPolicies: []policy.Policy{counts}}})
	st := e.open(t, c, e.freshDB(t), Options{}).Store()
	now := time.Now().UTC()
	id := uniqueID("del")
	d := &domain.Delivery{ID: id, OwnerID: "owner-1", Stage: domain.StageCreated, CreatedAt: now, UpdatedAt: now,
		History: []domain.Event{{Stage: domain.StageCreated, At: now}}}
	step := func(what string, want map[string]int, op func() error) {
		t.Helper()
		before := counts.Snapshot()
		must(t, op(), what)
		require.Equal(t, want, delta(before, counts.Snapshot()), "%s cost", what)
	}
	// The month's first delivery finds no aggregate: per bucket (account,
	// area, fleet) a batch whose patch gets 404, then one that creates it.
	first := uniqueID("del")
	d0 := *d
	d0.ID = first
	step("the month's first create", map[string]int{OpCreate: 2, OpBatch: 6}, func() error { return st.Deliveries.Create(ctx, first, &d0) })
	// The owner index entry and the delivery, then per bucket one batch:
	// the marker and the aggregate's increments, with no read.
	step("create", map[string]int{OpCreate: 2, OpBatch: 3}, func() error { return st.Deliveries.Create(ctx, id, d) })
	complete := func(d *domain.Delivery) error {
		if d.Stage.Terminal() {
			return ports.ErrSkip
		}
		d.Stage = domain.StageCancelled
		d.CancelledAt = &now
		return nil
	}
	// The delivery and its entry, then per bucket the acceptance's marker
	// read and a batch.
	step("end", map[string]int{OpReplace: 2, OpRead: 3, OpBatch: 3}, func() error {
		_, err := st.Deliveries.Update(ctx, id, complete)
		return err
	})
	// A replay reads the delivery, then both markers of each bucket.
	step("replayed end", map[string]int{OpRead: 7}, func() error {
		_, err := st.Deliveries.Update(ctx, id, complete)
		return err
	})
	for _, b := range d.Buckets() {
		m, err := st.Analytics.Month(ctx, b, now)
		must(t, err, "read the month of "+b)
		want := domain.Figures{Count: 2, Cancelled: 1}
		require.Equal(t, want, m.Total, "bucket %s: total", b)
		require.Equal(t, want, m.Days[now.Day()-1], "bucket %s: day", b)
	}
}

// A bucket kept for a month that no delivery supports is derived empty, so
// `reaggregate -check` reports it as differing, and the repair empties it.
func testKeptBucketsNoDeliverySupports(t *testing.T, e *env) {
	ctx := ctxFor(t)
	s := e.open(t, e.client, e.freshDB(t), Options{})
	month := time.Date(2031, 3, 1, 0, 0, 0, 0, time.UTC)
	key := domain.MonthKey(month)
	ghost := domain.BucketKey(domain.ScopeArea, "ghost")
	planted := domain.NewMonthFigures(ghost, month)
	planted.AddDay(3, domain.Figures{Count: 7, Completed: 7})
	body, err := json.Marshal(aggregateDoc{ID: aggregateID, Bucket: partitionOf(ghost, key), Kind: "aggregate", Name: ghost,
		Month: key, Total: planted.Total, Days: planted.Days})
	must(t, err, "encode")
	_, err = s.analytics.c.UpsertItem(ctx, azcosmos.NewPartitionKeyString(partitionOf(ghost, key)), body, nil)
	must(t, err, "plant")

	derived, err := s.analytics.Derive(ctx, month)
	must(t, err, "derive")
	require.Contains(t, derived, ghost, "derived")
	require.Equal(t, domain.Figures{}, derived[ghost].Total, "derived %s, want it empty", ghost)
	out, err := s.analytics.Reaggregate(ctx, month)
	must(t, err, "reaggregate")
	require.Contains(t, out, ghost, "the repair reports it")
	kept, err := s.analytics.Month(ctx, ghost, month)
	must(t, err, "read")
	require.Equal(t, domain.Figures{}, kept.Total, "kept after the repair, want it empty")
}
