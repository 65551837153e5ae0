package handlers_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/adapters/messaging"
	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/adapters/webhook"
	"github.com/fabrikam/dronedelivery/shared/apidoc"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
	"github.com/fabrikam/dronedelivery/tools/testdoubles"
)

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// t0 is the fake clock's start: the real time, so that messages the steps
// delay with it become visible in the embedded queue a real second later.
var t0 = time.Now().UTC().Truncate(time.Second)

type fixture struct {
	db    *embedded.DB
	store ports.Store
	bus   *embedded.Bus
	clock *clock
	h     *handlers.Handlers
	reg   functionapp.Registry
	// acct and key are the account every business call acts for.
	acct, key string
	// delayed holds, by queue, the outputs drain kept aside because a step
	// delayed them (NotBefore), for receiveDelayed.
	delayed map[string][]ports.Message
	// rewrite, when set, edits each message's body before drain runs its
	// step, as a message from another build would differ.
	rewrite func([]byte) []byte
}

// patience bounds every wait for the embedded bus: only a hang reaches it.
const patience = time.Minute

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	t.Cleanup(cancel)
	return ctx
}

// operatorKey opens the fleet endpoints in these tests.
const operatorKey = "test-operator-key-0123456789"

// newFixture is a fixture over a fresh embedded backend, with drones
// registered (see putDrone for what each leaves out).
func newFixture(t *testing.T, drones ...domain.Drone) *fixture {
	t.Helper()
	f := newFixtureWith(t, nil)
	for _, d := range drones {
		f.putDrone(t, d)
	}
	return f
}

// newFixtureWith is newFixture with the handlers' dependencies adjusted by
// edit before they are built.
func newFixtureWith(t *testing.T, edit func(*handlers.Deps)) *fixture {
	t.Helper()
	db, err := embedded.Open(filepath.Join(t.TempDir(), "test.db"), embedded.Options{LockDuration: 30 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	c := &clock{}
	c.Set(t0)
	f := &fixture{db: db, store: db.Store(), bus: db.Bus(), clock: c, delayed: map[string][]ports.Message{}}
	// Messages the handlers publish for later (a charge check) are set
	// aside like the steps' delayed outputs (see drain).
	deps := handlers.Deps{Store: f.store, Bus: fixtureBus{delayAside{f}, f.bus}, DeadLetters: f.bus, Clock: c, IDs: platform.IDs{},
		Log: slog.New(undeclaredSends(t)), Config: handlers.Config{OperatorKey: operatorKey}}
	if edit != nil {
		edit(&deps)
	}
	wireSenders(&deps)
	f.h = handlers.New(deps)
	f.reg = f.h.Registry()
	f.acct, f.key = f.signUp(t, `{"name":"Fabrikam","contactEmail":"ops@fabrikam.example"}`)
	return f
}

// undeclaredSends is the fixture's log: it fails the test that logged a
// send the chain's table does not declare (ports.CheckEmits), which a
// function that only warns about a failed publish would otherwise hide.
func undeclaredSends(t *testing.T) slog.Handler {
	var first atomic.Pointer[string]
	t.Cleanup(func() {
		if msg := first.Load(); msg != nil {
			t.Errorf("a function sent to a queue topology.Chain does not let it: %s", *msg)
		}
	})
	return sendWatch{&first}
}

type sendWatch struct{ first *atomic.Pointer[string] }

func (w sendWatch) Enabled(context.Context, slog.Level) bool { return true }
func (w sendWatch) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w sendWatch) WithGroup(string) slog.Handler            { return w }
func (w sendWatch) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if msg := a.Value.String(); strings.Contains(msg, "(see topology.Chain)") {
			w.first.CompareAndSwap(nil, &msg)
			return false
		}
		return true
	})
	return nil
}

// wireSenders gives deps what a service runs with for the senders it
// leaves unset: webhooks over HTTP, and customer messages kept in an
// outbox that GET …/outbox reads.
func wireSenders(deps *handlers.Deps) {
	if deps.Webhooks == nil {
		deps.Webhooks = webhook.NewSender(webhook.Options{AllowPrivate: deps.Config.AllowPrivateWebhooks}, webhook.FairOptions{Log: deps.Log})
	}
	if deps.Messenger == nil {
		o := messaging.NewOutbox(deps.Log, 0)
		deps.Messenger, deps.Outbox = o, o
	}
}

// signUp creates an account and returns its id and API key.
func (f *fixture) signUp(t *testing.T, body string) (string, string) {
	t.Helper()
	resp := f.call("CreateAccount", "", &functionapp.Request{Method: "POST", Body: []byte(body)})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	var out struct{ AccountID, APIKey string }
	require.NoError(t, json.Unmarshal(resp.Body, &out))
	return out.AccountID, out.APIKey
}

// signUpOther creates a second account, Contoso, and returns its id and
// API key.
func (f *fixture) signUpOther(t *testing.T) (string, string) {
	t.Helper()
	return f.signUp(t, `{"name":"Contoso","contactEmail":"ops@contoso.example"}`)
}

// call runs a function as a runtime would: through its registry entry,
// with key (if any) as the bearer token and a JSON body declared as such.
func (f *fixture) call(name, key string, req *functionapp.Request) *functionapp.Response {
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if len(req.Body) > 0 && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return functionapp.Call(context.Background(), f.reg[name].HTTP, req)
}

// biz calls a business function as the fixture's account.
func (f *fixture) biz(name string, req *functionapp.Request) *functionapp.Response {
	return f.call(name, f.key, req)
}

// fleet calls a fleet function with the operator key.
func (f *fixture) fleet(name string, req *functionapp.Request) *functionapp.Response {
	return f.call(name, operatorKey, req)
}

var seattle = domain.Location{Latitude: 47.6062, Longitude: -122.3321}

func at(dLat, dLon float64) domain.Location {
	return domain.Location{Latitude: seattle.Latitude + dLat, Longitude: seattle.Longitude + dLon}
}

func (f *fixture) putDrone(t *testing.T, d domain.Drone) {
	t.Helper()
	// What a test leaves out is a ready, capable drone based where it is.
	d.HomeBase = cmp.Or(d.HomeBase, d.Location)
	d.Status = cmp.Or(d.Status, domain.DroneAvailable)
	d.CruiseSpeedMps = cmp.Or(d.CruiseSpeedMps, 15)
	d.MaxPayloadKg = cmp.Or(d.MaxPayloadKg, 5)
	d.MaxPackageSize = cmp.Or(d.MaxPackageSize, domain.SizeLarge)
	d.RangeKm = cmp.Or(d.RangeKm, 50)
	d.BatteryPercent = cmp.Or(d.BatteryPercent, 100)
	body, err := json.Marshal(d)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(body, &m))
	delete(m, "id")
	delete(m, "updatedAt")
	body, _ = json.Marshal(m)
	resp := f.fleet("PutDrone", &functionapp.Request{Method: "PUT", Params: map[string]string{"id": d.ID}, Body: body})
	require.Contains(t, []int{200, 201}, resp.Status, string(resp.Body))
}

func requestBody(id string, pickup, drop domain.Location, size string, weight float64) []byte {
	b, _ := json.Marshal(map[string]any{
		"deliveryId":      id,
		"pickupLocation":  pickup,
		"dropOffLocation": drop,
		"packageInfo":     map[string]any{"packageId": "pkg-" + id, "size": size, "weight": weight},
	})
	return b
}

func (f *fixture) ingest(t *testing.T, body []byte) *functionapp.Response {
	t.Helper()
	return f.biz("IngestDelivery", &functionapp.Request{Method: "POST", Body: body})
}

// drain runs every message through its step until the queues are empty, as
// a runtime would, and returns how many messages it processed. An output a
// step delays (a retry, with NotBefore) is kept aside rather than queued:
// the bus would hold it back by the real clock, and whether it fell due
// during the drain would depend on how long the drain took. A test plays it
// with receiveDelayed.
func (f *fixture) drain(t *testing.T) int {
	t.Helper()
	// Each step as the registry serves it, so that what the chain's table
	// (topology.Chain) forbids a step to send fails here as it would in
	// a runtime.
	steps := map[string]functionapp.QueueFunc{}
	for _, fn := range f.reg {
		if fn.Queue != nil && fn.Reads != "" {
			steps[fn.Reads] = fn.Queue
		}
	}
	n := 0
	for progress := true; progress; {
		progress = false
		for _, q := range topology.Queues {
			for {
				active, _, err := f.bus.Depth(context.Background(), q)
				require.NoError(t, err)
				if active == 0 {
					break
				}
				msgs, err := f.bus.Receive(ctxFor(t), q, 10)
				require.NoError(t, err)
				require.NotNil(t, steps[q], "no function of the registry reads queue %s", q)
				for _, m := range msgs {
					if f.rewrite != nil {
						m.Body = f.rewrite(m.Body)
					}
					outcome, err := functionapp.Process(context.Background(), steps[q], delayAside{f}, m)
					require.Equal(t, functionapp.Done, outcome, "%s: %v", m.ID, err)
					require.NoError(t, f.bus.Complete(context.Background(), m))
					n++
					progress = true
				}
			}
		}
	}
	return n
}

// step runs the messages waiting on q through fn, as drain does, and
// leaves the messages they send queued.
func (f *fixture) step(t *testing.T, q string, fn functionapp.QueueFunc) {
	t.Helper()
	msgs := f.receive(t, q)
	require.NotEmpty(t, msgs, "nothing waits on %s", q)
	for _, m := range msgs {
		outcome, err := functionapp.Process(context.Background(), fn, delayAside{f}, m)
		require.Equal(t, functionapp.Done, outcome, "%s: %v", m.ID, err)
		require.NoError(t, f.bus.Complete(context.Background(), m))
	}
}

// fixtureBus is the bus the fixture's handlers publish to: delayed
// messages aside, the rest onto the embedded bus, whose backlog it counts.
type fixtureBus struct {
	delayAside
	ports.Backlog
}

// delayAside publishes a step's outputs as drain wants them: delayed ones
// into the fixture's delayed, the others onto the bus.
type delayAside struct{ f *fixture }

func (d delayAside) Publish(ctx context.Context, msgs ...ports.Message) error {
	var now []ports.Message
	for _, m := range msgs {
		if m.NotBefore.IsZero() {
			now = append(now, m)
		} else {
			d.f.delayed[m.Queue] = append(d.f.delayed[m.Queue], m)
		}
	}
	if len(now) == 0 {
		return nil
	}
	return d.f.bus.Publish(ctx, now...)
}

func (f *fixture) delivery(t *testing.T, id string) *domain.Delivery {
	t.Helper()
	d, err := f.store.Deliveries.Find(context.Background(), id)
	require.NoError(t, err)
	return d
}

// pkg reads the package record the fixture's account holds for packageID.
func (f *fixture) pkg(t *testing.T, packageID string) *domain.Package {
	t.Helper()
	p, err := f.store.Packages.Find(context.Background(), domain.PackageKey(f.acct, packageID))
	require.NoError(t, err)
	return p
}

func (f *fixture) drone(t *testing.T, id string) *domain.Drone {
	t.Helper()
	d, err := f.store.Fleet.Find(context.Background(), id)
	require.NoError(t, err)
	return d
}

func TestChainPicksNearestFitAndComputesETA(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pickup, drop := at(0.01, 0), at(0.03, 0.01)
	// Nearest first: too small, too weak, too short-ranged, then the one that fits,
	// then a farther one that also fits.
	f.putDrone(t, domain.Drone{ID: "small", Location: at(0.0101, 0), MaxPackageSize: domain.SizeSmall})
	f.putDrone(t, domain.Drone{ID: "weak", Location: at(0.0102, 0), MaxPayloadKg: 1})
	f.putDrone(t, domain.Drone{ID: "short", Location: at(0.0103, 0), RangeKm: 3})
	f.putDrone(t, domain.Drone{ID: "fits", Location: at(0.0110, 0), CruiseSpeedMps: 12})
	f.putDrone(t, domain.Drone{ID: "far", Location: at(0.05, 0)})
	f.putDrone(t, domain.Drone{ID: "resting", Location: at(0.01, 0), Status: domain.DroneCharging, BatteryPercent: 30})

	resp := f.ingest(t, requestBody("d1", pickup, drop, "Medium", 2))
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	assert.Equal(t, "/api/deliveries/d1", resp.Header.Get("Location"))
	assert.Equal(t, 4, f.drain(t), "three steps and the scheduled notice")

	d := f.delivery(t, "d1")
	assert.Equal(t, domain.StageScheduled, d.Stage)
	assert.Equal(t, "fits", d.DroneID)
	drone := f.drone(t, "fits")
	assert.Equal(t, domain.DroneAssigned, drone.Status)
	assert.Equal(t, "d1", drone.CurrentDeliveryID)
	want := domain.ComputeETA(t0, drone.Location, 12, &d.Request)
	assert.Equal(t, want.Pickup, *d.PickupETA)
	assert.Equal(t, want.Delivery, *d.DeliveryETA)
	pkg := f.pkg(t, "pkg-d1")
	assert.Equal(t, "d1", pkg.DeliveryID)
	assert.Equal(t, 2.0, pkg.Weight)

	// The next delivery at the same place gets the farther drone.
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("d2", pickup, drop, "Medium", 2)).Status)
	f.drain(t)
	assert.Equal(t, "far", f.delivery(t, "d2").DroneID)
}

func TestIngestIdempotentByDeliveryID(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	body := requestBody("same", at(0, 0), at(0.01, 0), "Small", 1)
	first := f.ingest(t, body)
	require.Equal(t, http.StatusAccepted, first.Status)
	f.clock.Advance(time.Minute)
	again := f.ingest(t, body)
	assert.Equal(t, http.StatusAccepted, again.Status)
	assert.JSONEq(t, string(first.Body), string(again.Body))
	active, _, err := f.bus.Depth(context.Background(), topology.QueueDeliveryRequests)
	require.NoError(t, err)
	assert.Equal(t, 1, active, "the retry's message is a duplicate and dropped")

	other := f.ingest(t, requestBody("same", at(0, 0), at(0.02, 0), "Small", 1))
	assert.Equal(t, http.StatusConflict, other.Status)
	assert.Equal(t, "application/problem+json", other.Header.Get("Content-Type"))
	assert.Equal(t, "deliveryId", problemOf(t, other).Field)

	// Another body under the id is a conflict even when that body is one
	// the fleet could never serve.
	heavy := f.ingest(t, requestBody("same", at(0, 0), at(0.01, 0), "Small", 50))
	assert.Equal(t, http.StatusConflict, heavy.Status, string(heavy.Body))
	assert.Equal(t, "deliveryId", problemOf(t, heavy).Field)
}

// A retry that names the default package id (the delivery's own, which
// the 202 shows back) is the request that left it out, and the other way
// round; naming another package is another request.
func TestARetryMayNameTheDefaultPackageID(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	body := func(id string, pkg any) []byte {
		info := map[string]any{"size": "Small", "weight": 1}
		if pkg != nil {
			info["packageId"] = pkg
		}
		b, _ := json.Marshal(map[string]any{"deliveryId": id, "pickupLocation": at(0, 0), "dropOffLocation": at(0.01, 0), "packageInfo": info})
		return b
	}
	for _, tc := range []struct {
		name, id     string
		first, retry any
	}{
		{"left out, then named", "d-left", nil, "d-left"},
		{"named, then left out", "d-named", "d-named", nil},
	} {
		id := tc.id
		first := f.ingest(t, body(id, tc.first))
		require.Equal(t, http.StatusAccepted, first.Status, "%s: %s", tc.name, first.Body)
		again := f.ingest(t, body(id, tc.retry))
		assert.Equal(t, http.StatusAccepted, again.Status, "%s: %s", tc.name, again.Body)
		assert.JSONEq(t, string(first.Body), string(again.Body), tc.name)
		other := f.ingest(t, body(id, "another-parcel"))
		assert.Equal(t, http.StatusConflict, other.Status, "%s: %s", tc.name, other.Body)
	}
}

// packageRequest is a request for delivery id carrying package pkg.
func packageRequest(id, pkg string) []byte {
	b, _ := json.Marshal(map[string]any{
		"deliveryId":      id,
		"pickupLocation":  at(0.01, 0),
		"dropOffLocation": at(0.02, 0),
		"packageInfo":     map[string]any{"packageId": pkg, "size": "Small", "weight": 1},
	})
	return b
}

// A package travels on one delivery at a time: a request naming a package
// that another delivery of the account carries is refused until that
// delivery has ended, and the package record is left alone.
func TestAPackageTravelsOnOneDeliveryAtATime(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "a", Location: at(0.01, 0)}, domain.Drone{ID: "b", Location: at(0.011, 0)})
	ctx := context.Background()
	require.Equal(t, http.StatusAccepted, f.ingest(t, packageRequest("first", "parcel")).Status)
	f.drain(t)
	require.Equal(t, domain.StageScheduled, f.delivery(t, "first").Stage)

	again := f.ingest(t, packageRequest("second", "parcel"))
	require.Equal(t, http.StatusConflict, again.Status, string(again.Body))
	p := problemOf(t, again)
	assert.Equal(t, "packageInfo.packageId", p.Field)
	assert.Contains(t, p.Detail, "first")
	_, err := f.store.Deliveries.Find(ctx, "second")
	assert.True(t, domain.IsCode(err, domain.ENOTFOUND), "nothing stored: %v", err)
	pkg := f.pkg(t, "parcel")
	assert.Equal(t, "first", pkg.DeliveryID)

	// Once the first delivery has ended, the package may ship again.
	require.Equal(t, http.StatusNoContent, f.cancel(t, "first").Status)
	f.drain(t)
	require.Equal(t, http.StatusAccepted, f.ingest(t, packageRequest("second", "parcel")).Status)
	f.drain(t)
	assert.Equal(t, domain.StageScheduled, f.delivery(t, "second").Stage)
	pkg = f.pkg(t, "parcel")
	assert.Equal(t, "second", pkg.DeliveryID)
}

// getPackageOf reads package id through GetPackage as the business.
func getPackageOf(t *testing.T, f *fixture, id string) domain.Package {
	t.Helper()
	resp := f.biz("GetPackage", &functionapp.Request{Method: "GET", Params: map[string]string{"id": id}})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var pkg domain.Package
	require.NoError(t, json.Unmarshal(resp.Body, &pkg))
	return pkg
}

// refusedForItsPackage checks that request body, for delivery id, is
// refused with 409 naming packageInfo.packageId because delivery holder
// carries the package, and that nothing of it is stored.
func (f *fixture) refusedForItsPackage(t *testing.T, body []byte, id, holder string) {
	t.Helper()
	resp := f.ingest(t, body)
	require.Equal(t, http.StatusConflict, resp.Status, string(resp.Body))
	assert.Equal(t, "packageInfo.packageId", problemOf(t, resp).Field)
	assert.Contains(t, problemOf(t, resp).Detail, "delivery "+holder)
	_, err := f.store.Deliveries.Find(context.Background(), id)
	assert.True(t, domain.IsCode(err, domain.ENOTFOUND), "nothing stored: %v", err)
}

// A package is booked when its request is accepted, so a second request
// for it is refused while the first waits for a drone or for its pickup
// time, before any drone is assigned; the package can be looked up from
// the moment it is booked.
func TestAPackageIsBookedWhenItsRequestIsAccepted(t *testing.T) {
	t.Parallel()
	f := newFixture(t) // no drone: the first delivery waits
	require.Equal(t, http.StatusAccepted, f.ingest(t, packageRequest("one", "parcel")).Status)

	f.refusedForItsPackage(t, packageRequest("two", "parcel"), "two", "one")

	resp := f.biz("GetPackage", &functionapp.Request{Method: "GET", Params: map[string]string{"id": "parcel"}})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var pkg domain.Package
	require.NoError(t, json.Unmarshal(resp.Body, &pkg))
	assert.Equal(t, "one", pkg.DeliveryID)
	assert.Equal(t, "Booked", pkg.Status)

	// A retry of the accepted request is its 202 again.
	assert.Equal(t, http.StatusAccepted, f.ingest(t, packageRequest("one", "parcel")).Status)

	// Cancelled before any drone was assigned, the delivery frees the
	// package, and its record says so until another request books it.
	require.Equal(t, http.StatusNoContent, f.cancel(t, "one").Status)
	f.drain(t)
	p := f.pkg(t, "parcel")
	assert.Equal(t, "Cancelled", p.Status)
	require.Equal(t, http.StatusAccepted, f.ingest(t, packageRequest("two", "parcel")).Status)
	p = f.pkg(t, "parcel")
	assert.Equal(t, "two", p.DeliveryID)
	assert.Equal(t, "Booked", p.Status)
}

// A request that leaves its package id out carries a package named after
// the delivery: that package is booked with it too, before its record is
// written (with the drone's assignment), so another request naming it is
// refused while the delivery has not ended, and it can be looked up.
func TestAPackageNamedAfterItsDeliveryIsBookedWithIt(t *testing.T) {
	t.Parallel()
	f := newFixture(t) // no drone: the delivery waits
	ctx := context.Background()
	b, _ := json.Marshal(map[string]any{"deliveryId": "one", "pickupLocation": at(0.01, 0), "dropOffLocation": at(0.02, 0),
		"packageInfo": map[string]any{"size": "Small", "weight": 1}})
	require.Equal(t, http.StatusAccepted, f.ingest(t, b).Status)
	f.drain(t)

	getPackage := func() domain.Package { return getPackageOf(t, f, "one") }
	pkg := getPackage()
	assert.Equal(t, "one", pkg.ID)
	assert.Equal(t, "one", pkg.DeliveryID)
	assert.Equal(t, "Booked", pkg.Status)

	f.refusedForItsPackage(t, packageRequest("two", "one"), "two", "one")
	_, err := f.store.Packages.Find(ctx, domain.PackageKey(f.acct, "one"))
	assert.True(t, domain.IsCode(err, domain.ENOTFOUND), "no record written: %v", err)

	// Another account's delivery of that name books nothing of this one's.
	_, otherKey := f.signUpOther(t)
	resp := f.call("IngestDelivery", otherKey, &functionapp.Request{Method: "POST", Body: packageRequest("other", "one")})
	assert.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))

	// Once the delivery has ended the package may ship again.
	require.Equal(t, http.StatusNoContent, f.cancel(t, "one").Status)
	f.drain(t)
	assert.Equal(t, "Cancelled", getPackage().Status)
	require.Equal(t, http.StatusAccepted, f.ingest(t, packageRequest("two", "one")).Status)
	p := f.pkg(t, "one")
	assert.Equal(t, "two", p.DeliveryID)
	assert.Equal(t, "Booked", p.Status)

	// The other order: a delivery named after a package another delivery
	// carries, leaving its package id out, is refused the same way.
	noPackage := func(id string) []byte {
		b, _ := json.Marshal(map[string]any{"deliveryId": id, "pickupLocation": at(0.01, 0), "dropOffLocation": at(0.02, 0),
			"packageInfo": map[string]any{"size": "Small", "weight": 1}})
		return b
	}
	require.Equal(t, http.StatusAccepted, f.ingest(t, packageRequest("three", "later")).Status)
	f.refusedForItsPackage(t, noPackage("later"), "later", "three")

	// A record an ended delivery left does not hold the package back, and
	// once the delivery named after it is accepted it carries it: the
	// package reads as its, and a request naming it is refused.
	require.Equal(t, http.StatusNoContent, f.cancel(t, "three").Status)
	f.drain(t)
	require.Equal(t, http.StatusAccepted, f.ingest(t, noPackage("later")).Status)
	pkg = getPackageOf(t, f, "later")
	assert.Equal(t, "later", pkg.DeliveryID)
	assert.Equal(t, "Booked", pkg.Status)
	f.refusedForItsPackage(t, packageRequest("four", "later"), "four", "later")
}

// An aborted delivery fails, and so does its package: it is not marked
// Cancelled as a business's cancel marks it.
func TestAnAbortedDeliveryFailsItsPackage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0.01, 0)})
	require.Equal(t, http.StatusAccepted, f.ingest(t, packageRequest("ab", "parcel")).Status)
	f.drain(t)
	require.Equal(t, domain.StageScheduled, f.delivery(t, "ab").Stage)
	f.act(t, "DeliveryAction", "ab", map[string]any{"action": "abort", "reason": "storm"})
	f.drain(t)
	assert.Equal(t, domain.StageFailed, f.delivery(t, "ab").Stage)
	p := f.pkg(t, "parcel")
	assert.Equal(t, "Failed", p.Status)
	assert.Equal(t, domain.DroneAvailable, f.drone(t, "d1").Status, "the drone is released")
}

// Requests for one package sent at the same moment: exactly one is
// accepted, and the package is booked for it.
func TestAPackageRequestedByManyAtOnceIsBookedOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const n = 6
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			statuses[i] = f.biz("IngestDelivery", &functionapp.Request{Method: "POST", Body: packageRequest(fmt.Sprint("at-once-", i), "parcel")}).Status
		})
	}
	wg.Wait()
	accepted := -1
	for i, st := range statuses {
		if st == http.StatusAccepted {
			assert.Equal(t, -1, accepted, "more than one accepted: %v", statuses)
			accepted = i
		} else {
			assert.Equal(t, http.StatusConflict, st, "the others are conflicts: %v", statuses)
		}
	}
	require.NotEqual(t, -1, accepted, "none accepted: %v", statuses)
	p := f.pkg(t, "parcel")
	assert.Equal(t, fmt.Sprint("at-once-", accepted), p.DeliveryID)
}

// A delivery accepted without booking its package (by a build from before
// packages were booked at acceptance, during a rolling deploy) that
// reaches the package step while another delivery holds the package
// fails, gives its drone back, and the package stays with its holder.
func TestAPackageHeldByAnotherDeliveryFailsTheLaterOne(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "a", Location: at(0.01, 0)}, domain.Drone{ID: "b", Location: at(0.011, 0)})
	ctx := context.Background()
	require.Equal(t, http.StatusAccepted, f.ingest(t, packageRequest("one", "parcel")).Status)
	require.Equal(t, http.StatusAccepted, f.ingest(t, packageRequest("two", "other")).Status)
	// What an older build stores: "two" names the package, unbooked.
	_, err := f.store.Deliveries.Update(ctx, "two", func(d *domain.Delivery) error {
		d.Request.PackageInfo.PackageID = "parcel"
		return nil
	})
	require.NoError(t, err)
	f.drain(t)

	one, two := f.delivery(t, "one"), f.delivery(t, "two")
	pkg := f.pkg(t, "parcel")
	assert.Equal(t, "one", pkg.DeliveryID)
	assert.Equal(t, domain.StageScheduled, one.Stage)
	assert.Equal(t, domain.StageFailed, two.Stage)
	assert.Contains(t, two.FailureReason, "parcel")
	assert.Contains(t, two.FailureReason, "one")
	for _, id := range []string{"a", "b"} {
		dr := f.drone(t, id)
		if dr.CurrentDeliveryID != "" {
			assert.Equal(t, "one", dr.CurrentDeliveryID, "only the holder's delivery holds a drone")
		} else {
			assert.Equal(t, domain.DroneAvailable, dr.Status, "the other's drone is given back")
		}
	}
}

// TestAFailedPackageStepChargesTheDroneItGivesBack: the package step that
// fails its delivery gives the drone back, and a drone under the low
// battery mark goes on charge with its charge check, a message the chain's
// table lets that step send.
func TestAFailedPackageStepChargesTheDroneItGivesBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "a", Location: at(0.01, 0), BatteryPercent: 15}, domain.Drone{ID: "b", Location: at(0.011, 0), BatteryPercent: 15})
	require.Equal(t, http.StatusAccepted, f.ingest(t, packageRequest("one", "parcel")).Status)
	require.Equal(t, http.StatusAccepted, f.ingest(t, packageRequest("two", "other")).Status)
	// What an older build stores: "two" names the package, unbooked.
	_, err := f.store.Deliveries.Update(context.Background(), "two", func(d *domain.Delivery) error {
		d.Request.PackageInfo.PackageID = "parcel"
		return nil
	})
	require.NoError(t, err)
	f.drain(t)

	require.Equal(t, domain.StageFailed, f.delivery(t, "two").Stage)
	given := "a"
	if f.drone(t, "a").CurrentDeliveryID == "one" {
		given = "b"
	}
	dr := f.drone(t, given)
	assert.Empty(t, dr.CurrentDeliveryID)
	assert.Equal(t, domain.DroneCharging, dr.Status, "given back at 15 %%, it goes on charge")
	var checks []string
	for _, m := range f.delayed[topology.QueueDroneTelemetry] {
		checks = append(checks, m.CorrelationID)
	}
	assert.Contains(t, checks, given, "with its charge check")
}

func TestNoDroneRetriesWithBackoffThenFails(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	body, _ := json.Marshal(map[string]any{
		"deliveryId":     "lonely",
		"pickupLocation": at(0, 0), "dropOffLocation": at(0.01, 0),
		"pickupTime": t0.Format(time.RFC3339), "deadline": t0.Add(10 * time.Second).Format(time.RFC3339),
		"packageInfo": map[string]any{"size": "Small", "weight": 1},
	})
	require.Equal(t, http.StatusAccepted, f.ingest(t, body).Status)

	msgs := f.receive(t, topology.QueueDeliveryRequests)
	out, err := f.h.ScheduleDrone(context.Background(), msgs[0])
	require.NoError(t, err)
	require.Len(t, out, 1, "a retry is scheduled")
	assert.Equal(t, "lonely:retry-1", out[0].ID)
	assert.Equal(t, t0.Add(time.Second), out[0].NotBefore)
	var env wire.Envelope
	require.NoError(t, json.Unmarshal(out[0].Body, &env))
	assert.Equal(t, 1, env.Attempt)

	// Attempt 4 would wait 16 s, past the 10 s deadline: the delivery fails.
	env.Attempt = 4
	retry := *msgs[0]
	retry.Body, _ = json.Marshal(env)
	out, err = f.h.ScheduleDrone(context.Background(), &retry)
	require.NoError(t, err)
	require.Len(t, out, 1, "only the customer's notice")
	assert.Equal(t, topology.QueueNotifications, out[0].Queue)
	d := f.delivery(t, "lonely")
	assert.Equal(t, domain.StageFailed, d.Stage)
	assert.Contains(t, d.FailureReason, "deadline")
	require.Len(t, d.Notifications, 1)
	assert.Equal(t, domain.NotifyFailed, d.Notifications[0].Kind)
	assert.NoError(t, domain.LegalHistory(d.History))
}

func (f *fixture) receive(t *testing.T, q string) []*ports.Delivered {
	t.Helper()
	msgs, err := f.bus.Receive(ctxFor(t), q, 100)
	require.NoError(t, err)
	return msgs
}

// snapshot is every document the chain touches, as stored.
func (f *fixture) snapshot(t *testing.T, deliveryIDs, droneIDs []string) string {
	t.Helper()
	var all []any
	for _, id := range deliveryIDs {
		d := f.delivery(t, id)
		all = append(all, d)
		if p, err := f.store.Packages.Find(context.Background(), domain.PackageKey(d.OwnerID, d.Request.PackageInfo.PackageID)); err == nil {
			all = append(all, p)
		}
	}
	for _, id := range droneIDs {
		all = append(all, f.drone(t, id))
	}
	b, err := json.Marshal(all)
	require.NoError(t, err)
	return string(b)
}

func TestEveryStepTwiceLeavesTheSameState(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "a", Location: at(0.001, 0)}, domain.Drone{ID: "b", Location: at(0.002, 0)})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("twice", at(0, 0), at(0.01, 0), "Small", 1)).Status)

	steps := []struct {
		queue string
		fn    functionapp.QueueFunc
	}{
		{topology.QueueDeliveryRequests, f.h.ScheduleDrone},
		{topology.QueueDroneScheduled, f.h.UpdatePackage},
		{topology.QueuePackageUpdated, f.h.ComputeEta},
	}
	for _, s := range steps {
		msgs := f.receive(t, s.queue)
		require.Len(t, msgs, 1, s.queue)
		f.clock.Advance(time.Second)
		out1, err := s.fn(context.Background(), msgs[0])
		require.NoError(t, err)
		before := f.snapshot(t, []string{"twice"}, []string{"a", "b"})
		f.clock.Advance(time.Second)
		out2, err := s.fn(context.Background(), msgs[0])
		require.NoError(t, err)
		assert.Equal(t, before, f.snapshot(t, []string{"twice"}, []string{"a", "b"}), "%s redelivered changed state", s.queue)
		assert.Equal(t, out1, out2, "%s redelivered emits the same messages", s.queue)
		require.NoError(t, f.bus.Publish(context.Background(), append(out1, out2...)...))
		require.NoError(t, f.bus.Complete(context.Background(), msgs[0]))
	}
	d := f.delivery(t, "twice")
	assert.Equal(t, domain.StageScheduled, d.Stage)
	assert.Equal(t, "a", d.DroneID)
	assert.Equal(t, domain.DroneAvailable, f.drone(t, "b").Status, "one drone only")
}

func TestInterruptedAssignmentIsFinishedNotDuplicated(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "a", Location: at(0.001, 0)}, domain.Drone{ID: "b", Location: at(0.002, 0)})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("crash", at(0, 0), at(0.01, 0), "Small", 1)).Status)
	ctx := context.Background()
	// A scheduler reserved drone a and claimed it, then died before recording it.
	_, err := f.store.Deliveries.Update(ctx, "crash", func(d *domain.Delivery) error { d.DroneID = "a"; return nil })
	require.NoError(t, err)
	_, err = f.store.Fleet.Update(ctx, "a", func(d *domain.Drone) error {
		d.Status, d.CurrentDeliveryID = domain.DroneAssigned, "crash"
		return nil
	})
	require.NoError(t, err)
	f.drain(t)
	d := f.delivery(t, "crash")
	assert.Equal(t, domain.StageScheduled, d.Stage)
	assert.Equal(t, "a", d.DroneID)
	assert.Equal(t, domain.DroneAvailable, f.drone(t, "b").Status)
}

func TestRacingSchedulersNeverDoubleBook(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const drones, deliveries, schedulers = 10, 100, 8
	for i := range drones {
		f.putDrone(t, domain.Drone{ID: fmt.Sprintf("d%02d", i), Location: at(0.001*float64(i), 0)})
	}
	for i := range deliveries {
		require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody(fmt.Sprintf("r%03d", i), at(0, 0), at(0.01, 0), "Small", 1)).Status)
	}
	msgs := f.receive(t, topology.QueueDeliveryRequests)
	for len(msgs) < deliveries {
		msgs = append(msgs, f.receive(t, topology.QueueDeliveryRequests)...)
	}
	// Every message is handled by two schedulers at once, and all of them
	// compete for ten drones.
	// A run that leaves its drone to an older waiting delivery (the
	// fair-share rule) wakes that one at once: those wakes run after, and
	// a wake that finds its delivery already served hands the drone on to
	// the next waiting delivery, so the wakes alone use every drone; the
	// waiting deliveries' delayed retries are not run.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var wakes []*ports.Delivered
	keep := func(out []ports.Message) {
		for _, o := range out {
			if o.Queue == topology.QueueDeliveryRequests && o.NotBefore.IsZero() {
				wakes = append(wakes, &ports.Delivered{Message: o, DeliveryCount: 1})
			}
		}
	}
	work := make(chan *ports.Delivered)
	for range schedulers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range work {
				out, err := f.h.ScheduleDrone(context.Background(), m)
				assert.NoError(t, err)
				mu.Lock()
				keep(out)
				mu.Unlock()
			}
		}()
	}
	for _, m := range msgs {
		work <- m
		work <- m
	}
	close(work)
	wg.Wait()
	for handled := 0; len(wakes) > 0; handled++ {
		require.Less(t, handled, 10*deliveries, "the wakes end")
		m := wakes[0]
		wakes = wakes[1:]
		out, err := f.h.ScheduleDrone(context.Background(), m)
		require.NoError(t, err)
		keep(out)
	}

	holder := map[string]string{}
	assigned := 0
	for i := range deliveries {
		d := f.delivery(t, fmt.Sprintf("r%03d", i))
		if d.DroneAssignedAt == nil {
			continue
		}
		assigned++
		prev, dup := holder[d.DroneID]
		assert.False(t, dup, "drone %s booked by %s and %s", d.DroneID, prev, d.ID)
		holder[d.DroneID] = d.ID
		assert.Equal(t, d.ID, f.drone(t, d.DroneID).CurrentDeliveryID)
	}
	assert.Equal(t, drones, assigned, "every drone is used exactly once")
}

// During a deploy, instances of the old build and the new one take
// messages from the same queues. Every step carries out a message that has
// a field its build does not know, as one from a newer build would.
func TestStepsCarryOutMessagesWithFieldsOfANewerBuild(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rewritten := 0
	f.rewrite = func(body []byte) []byte {
		var m map[string]any
		require.NoError(t, json.Unmarshal(body, &m))
		m["fieldOfANewerBuild"] = map[string]any{"version": 2}
		out, err := json.Marshal(m)
		require.NoError(t, err)
		rewritten++
		return out
	}
	f.flown(t, "newer-1", "newer-d1", 90, 80) // asserts Completed
	d := f.delivery(t, "newer-d1")
	assert.Equal(t, "newer-1", d.DroneID)
	assert.NotNil(t, d.PickupETA)
	// Dispatch, package, ETA, notices, and the two reports at least.
	assert.GreaterOrEqual(t, rewritten, 6)
}

func TestPermanentFailures(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cases := map[string][]byte{
		"garbage":          []byte("{not json"),
		"unknown delivery": []byte(`{"operation":"delivery","deliveryId":"ghost","correlationId":"c"}`),
		"bad operation":    []byte(`{"operation":"launch","deliveryId":"x","correlationId":"c"}`),
	}
	for name, body := range cases {
		for _, fn := range []functionapp.QueueFunc{f.h.ScheduleDrone, f.h.UpdatePackage, f.h.ComputeEta} {
			_, err := fn(context.Background(), &ports.Delivered{Message: ports.Message{ID: "m", Body: body}, DeliveryCount: 3})
			assert.True(t, domain.IsPermanent(err), "%s: %v", name, err)
		}
	}
}

func TestPutDroneValidatesAndProtectsBusyDrones(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	put := func(id, body string) *functionapp.Response {
		return f.fleet("PutDrone", &functionapp.Request{Method: "PUT", Params: map[string]string{"id": id}, Body: []byte(body)})
	}
	good := `{"location":{"latitude":47.6,"longitude":-122.3},"maxPayloadKg":5,"maxPackageSize":"Medium","rangeKm":30,"cruiseSpeedMps":15,"batteryPercent":90}`
	resp := put("x1", good)
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	d := f.drone(t, "x1")
	assert.Equal(t, d.Location, d.HomeBase, "home base defaults to the location")
	assert.Equal(t, domain.DroneAvailable, d.Status)
	assert.Equal(t, http.StatusOK, put("x1", good).Status)

	for field, body := range map[string]string{
		"maxPackageSize":     `{"location":{"latitude":47.6,"longitude":-122.3},"maxPayloadKg":5,"maxPackageSize":"XL","rangeKm":30,"cruiseSpeedMps":15}`,
		"location.latitude":  `{"location":{"latitude":95,"longitude":-122.3},"maxPayloadKg":5,"maxPackageSize":"Small","rangeKm":30,"cruiseSpeedMps":15}`,
		"status":             `{"location":{"latitude":47.6,"longitude":-122.3},"maxPayloadKg":5,"maxPackageSize":"Small","rangeKm":30,"cruiseSpeedMps":15,"status":"Assigned"}`,
		"cruiseSpeedMps":     `{"location":{"latitude":47.6,"longitude":-122.3},"maxPayloadKg":5,"maxPackageSize":"Small","rangeKm":30}`,
		"homeBase.longitude": `{"location":{"latitude":47.6,"longitude":-122.3},"homeBase":{"latitude":47.6,"longitude":500},"maxPayloadKg":5,"maxPackageSize":"Small","rangeKm":30,"cruiseSpeedMps":15}`,
	} {
		resp := put("x2", body)
		assert.Equal(t, http.StatusBadRequest, resp.Status, field)
		var p functionapp.ProblemDetails
		require.NoError(t, json.Unmarshal(resp.Body, &p))
		assert.Equal(t, field, p.Field)
	}
	_, err := f.store.Fleet.Find(context.Background(), "x2")
	assert.True(t, domain.IsCode(err, domain.ENOTFOUND), "nothing stored by a bad request")

	_, err = f.store.Fleet.Update(context.Background(), "x1", func(d *domain.Drone) error { d.CurrentDeliveryID = "busy"; return nil })
	require.NoError(t, err)
	assert.Equal(t, http.StatusConflict, put("x1", good).Status)
}

// TestAPIDocumentsAreServed: the OpenAPI document and its reference page
// are open to anyone, and the page may load nothing from elsewhere.
func TestAPIDocumentsAreServed(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	doc := f.call("OpenApiDocument", "", &functionapp.Request{Method: "GET"})
	require.Equal(t, http.StatusOK, doc.Status)
	assert.Equal(t, "application/json", doc.Header.Get("Content-Type"))
	assert.Equal(t, apidoc.JSON(), doc.Body)

	page := f.call("ApiReference", "", &functionapp.Request{Method: "GET"})
	require.Equal(t, http.StatusOK, page.Status, string(page.Body))
	assert.Equal(t, "text/html; charset=utf-8", page.Header.Get("Content-Type"))
	assert.Equal(t, "default-src 'none'; style-src 'unsafe-inline'", page.Header.Get("Content-Security-Policy"))
	assert.Contains(t, string(page.Body), `<a href="openapi.json">`)
	assert.True(t, f.reg["OpenApiDocument"].Public)
	assert.True(t, f.reg["ApiReference"].Public)
}

// A request whose client hung up before it was served is not logged as an
// error of the service: nothing failed but the client's patience.
func TestARequestItsClientGaveUpIsNoError(t *testing.T) {
	t.Parallel()
	var logs testdoubles.LockedBuffer
	f := newFixtureWith(t, func(d *handlers.Deps) {
		d.Log = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	f.putDrone(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	body, _ := json.Marshal(map[string]any{"location": at(0, 0), "batteryPercent": 90, "timestamp": f.clock.Now().Format(time.RFC3339Nano)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	resp := functionapp.Call(ctx, f.reg["PostTelemetry"].HTTP, &functionapp.Request{Method: "POST", Params: map[string]string{"id": "d1"},
		Header: http.Header{"Authorization": {"Bearer " + operatorKey}, "Content-Type": {"application/json"}}, Body: body})
	assert.Equal(t, http.StatusServiceUnavailable, resp.Status, string(resp.Body))
	assert.NotContains(t, logs.String(), `"level":"ERROR"`)
	assert.Contains(t, logs.String(), "client gave up")
}
