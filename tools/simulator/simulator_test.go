package simulator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/geo"
	"github.com/fabrikam/dronedelivery/tools/apiclient"
	"github.com/fabrikam/dronedelivery/tools/testdoubles"
)

// patience bounds every wait for the simulator: only a hang reaches it.
const patience = time.Minute

// step is the simulated time between two reports in the tests that check a
// flight's path: with it the path is the same however busy the machine is.
const step = 2 * time.Second

// fakeAPI is the part of the public API the simulator uses, with the
// backend's tracking rules in miniature: the first report moves a delivery
// to HeadedToPickup, one within 50 m of the pickup to HeadedToDropoff, one
// within 50 m of the dropoff to Completed and frees the drone.
type fakeAPI struct {
	t          *testing.T
	mu         sync.Mutex
	drones     map[string]*domain.Drone
	deliveries map[string]*apiclient.Delivery
	reports    map[string][]gotReport // by drone, every report posted
	auth       map[string]bool        // Authorization headers seen
	pageSize   int                    // the list's page size, to exercise paging
	listStatus int                    // when set, GET /api/drones answers it
	failEvery  int                    // answer every n-th report 503
	failLand   int                    // answer this many reports at the dropoff 503
	failPickup int                    // answer this many reports at the pickup 503
	posted     int
	lists      int // GET /api/drones answered
}

type gotReport struct {
	apiclient.Report
	at       time.Time // parsed timestamp
	accepted bool      // newer than the drone's last one
	stage    string    // the delivery's stage after it
}

const radiusKm = 0.05

func newFakeAPI(t *testing.T) (*fakeAPI, *httptest.Server) {
	f := &fakeAPI{t: t, drones: map[string]*domain.Drone{}, deliveries: map[string]*apiclient.Delivery{},
		reports: map[string][]gotReport{}, auth: map[string]bool{}, pageSize: 2}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/drones", f.list)
	mux.HandleFunc("GET /api/deliveries/{id}", f.getDelivery)
	mux.HandleFunc("POST /api/drones/{id}/telemetry", f.telemetry)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.auth[r.Header.Get("Authorization")] = true
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return f, srv
}

// assign books a drone at from for a delivery from pickup to dropoff.
func (f *fakeAPI) assign(droneID, deliveryID string, from, pickup, dropoff geo.Point) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drones[droneID] = &domain.Drone{ID: droneID, Location: loc(from), RangeKm: 16, FullRangeKm: 20, CruiseSpeedMps: 15,
		BatteryPercent: 90, Status: "Assigned", CurrentDeliveryID: deliveryID}
	f.deliveries[deliveryID] = &apiclient.Delivery{ID: deliveryID, Stage: "Scheduled", DroneID: droneID,
		PickupLocation: loc(pickup), DropoffLocation: loc(dropoff)}
}

func loc(p geo.Point) domain.Location { return domain.Location{Latitude: p.Lat, Longitude: p.Lon} }

func (f *fakeAPI) list(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	if f.listStatus != 0 {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(f.listStatus)
		fmt.Fprintf(w, `{"title":%q,"status":%d}`, http.StatusText(f.listStatus), f.listStatus)
		return
	}
	assert.Equal(f.t, "1000", r.URL.Query().Get("limit"), "the drone list's page size")
	status, after := r.URL.Query().Get("status"), r.URL.Query().Get("after")
	var ids []string
	for id, d := range f.drones {
		if string(d.Status) == status && id > after {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	var page struct {
		Drones []domain.Drone `json:"drones"`
		Next   string         `json:"next,omitempty"`
	}
	page.Drones = []domain.Drone{}
	for i, id := range ids {
		if i == f.pageSize {
			page.Next = ids[i-1]
			break
		}
		page.Drones = append(page.Drones, *f.drones[id])
	}
	json.NewEncoder(w).Encode(page)
}

func (f *fakeAPI) getDelivery(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.deliveries[r.PathValue("id")]
	if !ok {
		http.Error(w, `{"title":"Not Found","status":404}`, http.StatusNotFound)
		return
	}
	json.NewEncoder(w).Encode(d)
}

func (f *fakeAPI) telemetry(w http.ResponseWriter, r *http.Request) {
	var rep apiclient.Report
	if err := json.NewDecoder(r.Body).Decode(&rep); !assert.NoError(f.t, err, "telemetry body") {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	at, err := time.Parse(time.RFC3339, rep.Timestamp)
	if !assert.NoError(f.t, err, "telemetry timestamp %q is not RFC 3339", rep.Timestamp) {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	assert.True(f.t, rep.BatteryPercent >= 0 && rep.BatteryPercent <= 100, "battery %v out of range", rep.BatteryPercent)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.posted++
	landing := geo.DistanceKm(point(rep.Location), dropoff) <= radiusKm
	atPickup := geo.DistanceKm(point(rep.Location), pickup) <= radiusKm
	if (f.failEvery > 0 && f.posted%f.failEvery == 0) || (landing && f.failLand > 0) || (atPickup && f.failPickup > 0) {
		if landing {
			f.failLand--
		}
		if atPickup {
			f.failPickup--
		}
		http.Error(w, `{"title":"Service Unavailable","status":503}`, http.StatusServiceUnavailable)
		return
	}
	id := r.PathValue("id")
	dr, ok := f.drones[id]
	if !ok {
		http.Error(w, `{"title":"Not Found","status":404}`, http.StatusNotFound)
		return
	}
	g := gotReport{Report: rep, at: at}
	if dr.LastTelemetryAt == nil || at.After(*dr.LastTelemetryAt) {
		g.accepted = true
		dr.LastTelemetryAt = &at
		dr.Location, dr.BatteryPercent = rep.Location, rep.BatteryPercent
		if dr.Recalled && dr.CurrentDeliveryID == "" && geo.DistanceKm(point(rep.Location), point(dr.HomeBase)) <= radiusKm {
			dr.Status, dr.Recalled = "Available", false // a recalled drone lands at home
		}
		if d := f.deliveries[dr.CurrentDeliveryID]; d != nil {
			p := point(rep.Location)
			if d.Stage == "Scheduled" {
				d.Stage = "HeadedToPickup"
			}
			if d.Stage == "HeadedToPickup" && geo.DistanceKm(p, point(d.PickupLocation)) <= radiusKm {
				d.Stage = "HeadedToDropoff"
			}
			if d.Stage == "HeadedToDropoff" && geo.DistanceKm(p, point(d.DropoffLocation)) <= radiusKm {
				d.Stage = "Completed"
				dr.Status, dr.CurrentDeliveryID = "Available", ""
			} else {
				dr.Status = "InFlight"
				eta := at.Add(time.Duration(geo.DistanceKm(p, point(d.DropoffLocation)) / 0.015 * float64(time.Second)))
				d.DeliveryETA = &eta
			}
			g.stage = string(d.Stage)
		}
	}
	f.reports[id] = append(f.reports[id], g)
	w.WriteHeader(http.StatusAccepted)
	w.Write([]byte(`{"accepted":1}`))
}

func (f *fakeAPI) snapshot(droneID string) ([]gotReport, domain.Drone, apiclient.Delivery) {
	f.mu.Lock()
	defer f.mu.Unlock()
	dr := *f.drones[droneID]
	var d apiclient.Delivery
	for _, x := range f.deliveries {
		if x.DroneID == droneID {
			d = *x
		}
	}
	return slices.Clone(f.reports[droneID]), dr, d
}

// Points about 1 km apart around Seattle.
var (
	base    = geo.Point{Lat: 47.6030, Lon: -122.3300}
	pickup  = geo.Point{Lat: 47.6101, Lon: -122.3421}
	dropoff = geo.Point{Lat: 47.6205, Lon: -122.3493}
)

// checkFlight asserts the physics of one drone's reports: time only moves
// forward, the drone closes in on the pickup and then on the dropoff at its
// speed, lands within the radius of each, and the battery only drains.
func checkFlight(t *testing.T, reps []gotReport, speedMps float64) {
	t.Helper()
	require.GreaterOrEqual(t, len(reps), 5, "reports")
	for i, r := range reps {
		assert.True(t, r.accepted, "report %d (%s) was not newer than the one before and would be ignored", i, r.Timestamp)
		if i > 0 {
			assert.True(t, r.at.After(reps[i-1].at), "report %d at %s is not after report %d at %s", i, r.Timestamp, i-1, reps[i-1].Timestamp)
			assert.LessOrEqual(t, r.BatteryPercent, reps[i-1].BatteryPercent, "the battery rose at report %d", i)
		}
	}
	atPickup := slices.IndexFunc(reps, func(r gotReport) bool {
		return geo.DistanceKm(point(r.Location), pickup) <= radiusKm
	})
	require.GreaterOrEqual(t, atPickup, 0, "no report within %g km of the pickup", radiusKm)
	for i := 1; i <= atPickup; i++ {
		before, after := geo.DistanceKm(point(reps[i-1].Location), pickup), geo.DistanceKm(point(reps[i].Location), pickup)
		assert.Less(t, after, before, "report %d moved away from the pickup (km)", i)
	}
	for i := atPickup + 1; i < len(reps); i++ {
		before, after := geo.DistanceKm(point(reps[i-1].Location), dropoff), geo.DistanceKm(point(reps[i].Location), dropoff)
		assert.Less(t, after, before, "report %d moved away from the dropoff (km)", i)
	}
	last := reps[len(reps)-1]
	assert.LessOrEqual(t, geo.DistanceKm(point(last.Location), dropoff), radiusKm, "the last report's distance from the dropoff (km)")
	assert.Equal(t, "Completed", last.stage, "the stage after the last report")
	// Speed: each hop is the cruise speed times the simulated time between
	// the reports, shorter only when it ends on the pickup or the dropoff.
	for i := 1; i < len(reps); i++ {
		hop := geo.DistanceKm(point(reps[i-1].Location), point(reps[i].Location)) * 1000
		want := speedMps * reps[i].at.Sub(reps[i-1].at).Seconds()
		// The hop onto the pad may be up to landingKm longer, never shorter
		// than the radius allows.
		ends := i == atPickup || i == len(reps)-1
		if ends {
			assert.LessOrEqual(t, hop, want+landingKm*1000+0.5, "hop %d (m) in %s simulated at %g m/s", i, reps[i].at.Sub(reps[i-1].at), speedMps)
		} else {
			assert.InDelta(t, want, hop, 0.5, "hop %d (m) in %s simulated at %g m/s", i, reps[i].at.Sub(reps[i-1].at), speedMps)
		}
	}
	if alt := reps[atPickup].Location.Altitude; assert.NotNil(t, alt, "the altitude at the pickup") {
		assert.Zero(t, *alt, "the drone did not land at the pickup")
	}
}

func TestFliesAnAssignedDroneToCompletion(t *testing.T) {
	t.Parallel()
	api, srv := newFakeAPI(t)
	api.assign("drone-001", "order-1", base, pickup, dropoff)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()

	err := Run(ctx, Options{BaseURL: srv.URL + "/", Interval: 20 * time.Millisecond, Step: step,
		Out: &out, OperatorKey: "op-key", UntilIdle: true})
	require.NoError(t, err, "Run\n%s", out.String())
	require.NoError(t, ctx.Err(), "Run returned only at the deadline: UntilIdle did not stop it\n%s", out.String())

	reps, dr, del := api.snapshot("drone-001")
	checkFlight(t, reps, 15)
	assert.Equal(t, domain.StageCompleted, del.Stage)
	assert.Equal(t, domain.DroneAvailable, dr.Status)
	for i := 1; i < len(reps); i++ {
		assert.Equal(t, step, reps[i].at.Sub(reps[i-1].at), "reports %d and %d apart in simulated time", i-1, i)
	}
	simSpan := reps[len(reps)-1].at.Sub(reps[0].at)
	routeKm := geo.DistanceKm(base, pickup) + geo.DistanceKm(pickup, dropoff)
	// Each of the two legs may end with a hop stretched by landingKm.
	assert.GreaterOrEqual(t, simSpan, time.Duration((routeKm-2*landingKm)*1000/15*float64(time.Second)), "flew %.2f km faster than 15 m/s", routeKm)
	// The service's range model: 100 % per full range (20 km) flown, so a
	// drone that flies its 16 km range from 90 % lands at the 10 % reserve.
	assert.InDelta(t, 90-routeKm/20*100, reps[len(reps)-1].BatteryPercent, 0.05, "battery at the end (%.2f km of a 20 km full range from 90%%)", routeKm)
	assert.Equal(t, map[string]bool{"Bearer op-key": true}, api.auth, "Authorization headers")
	text := out.String()
	t.Logf("progress:\n%s", text)
	assert.Contains(t, text, "order-1  Completed        ██████████ 100%", "progress shows order-1 completed")
	assert.Contains(t, text, "HeadedToDropoff", "plain progress shows the stages")
	assert.NotContains(t, text, "\x1b[", "plain progress does not move the cursor")
}

// A delivery whose planned route goes round a no-fly zone is flown round
// it: the drone passes each corner of the route, in flight, and lands only
// at the pickup and the dropoff.
func TestFliesThePlannedRouteRoundAZone(t *testing.T) {
	t.Parallel()
	api, srv := newFakeAPI(t)
	api.assign("drone-001", "order-1", base, pickup, dropoff)
	// A corner 600 m east of the straight line from the pickup.
	corner := geo.Point{Lat: (pickup.Lat + dropoff.Lat) / 2, Lon: (pickup.Lon+dropoff.Lon)/2 + 0.008}
	api.mu.Lock()
	api.deliveries["order-1"].PlannedRoute = &domain.PlannedRoute{
		Pickup:  domain.Route{Points: []domain.Location{loc(base), loc(pickup)}},
		Dropoff: domain.Route{Points: []domain.Location{loc(pickup), loc(corner), loc(dropoff)}},
	}
	api.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	var out bytes.Buffer
	require.NoError(t, Run(ctx, Options{BaseURL: srv.URL, Interval: 20 * time.Millisecond, Step: step, Out: &out, OperatorKey: "k", UntilIdle: true}), out.String())

	reps, _, del := api.snapshot("drone-001")
	require.Equal(t, domain.StageCompleted, del.Stage, out.String())
	passed := false
	for _, r := range reps {
		if geo.DistanceKm(point(r.Location), corner) <= landingKm {
			passed = true
			require.NotNil(t, r.Location.Altitude)
			assert.Positive(t, *r.Location.Altitude, "in flight at the corner, not landed")
		}
	}
	assert.True(t, passed, "a report at the corner")
	routed := geo.DistanceKm(base, pickup) + geo.DistanceKm(pickup, corner) + geo.DistanceKm(corner, dropoff)
	assert.Contains(t, out.String(), fmt.Sprintf("%.2f km to fly", routed), "the routed length")
}

// A drone the operator recalled serves no delivery; the simulator flies it
// to its home base, where the backend lands it, and then is idle.
func TestFliesARecalledDroneHome(t *testing.T) {
	t.Parallel()
	api, srv := newFakeAPI(t)
	api.mu.Lock()
	api.drones["drone-009"] = &domain.Drone{ID: "drone-009", Location: loc(dropoff), HomeBase: loc(base), RangeKm: 20, CruiseSpeedMps: 15,
		BatteryPercent: 80, Status: domain.DroneInFlight, Recalled: true}
	api.mu.Unlock()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()

	err := Run(ctx, Options{BaseURL: srv.URL, Interval: 20 * time.Millisecond, Step: step, Out: &out, OperatorKey: "op-key", UntilIdle: true})
	require.NoError(t, err, "Run\n%s", out.String())
	require.NoError(t, ctx.Err(), "Run returned only at the deadline\n%s", out.String())

	reps, dr, _ := api.snapshot("drone-009")
	require.GreaterOrEqual(t, len(reps), 3, "it flew, reporting")
	assert.Equal(t, domain.DroneAvailable, dr.Status, "landed at home")
	assert.False(t, dr.Recalled)
	last := reps[len(reps)-1]
	assert.LessOrEqual(t, geo.DistanceKm(point(last.Location), base), radiusKm)
	for i := 1; i < len(reps); i++ {
		assert.Less(t, geo.DistanceKm(point(reps[i].Location), base), geo.DistanceKm(point(reps[i-1].Location), base)+1e-9, "report %d comes no farther from home", i)
	}
	assert.Contains(t, out.String(), "drone-009 (recalled): landed at its home base")
}

// TestSimulatedClockRunsTimeScaleTimesFaster reads a flight's clock
// between two readings of the real one: however long the reading took, the
// simulated time gone lies between TimeScale times each.
func TestSimulatedClockRunsTimeScaleTimesFaster(t *testing.T) {
	t.Parallel()
	s := &sim{opts: Options{TimeScale: 100}}
	c := s.clockFor(&domain.Drone{ID: "d"})
	before := time.Since(c.began)
	got := c.now().Sub(c.from)
	after := time.Since(c.began)
	assert.GreaterOrEqual(t, got, 100*before, "not slower than ×100")
	assert.LessOrEqual(t, got, 100*after, "not faster than ×100")
}

// TestEachFlightsClockStartsAtTheRealTime: a flight's clock starts at the
// real time, however long the simulator has run, so the simulated time
// does not drift ahead without bound; after a drone whose last report is
// dated ahead of the real time, it starts just after that report.
func TestEachFlightsClockStartsAtTheRealTime(t *testing.T) {
	t.Parallel()
	s := &sim{opts: Options{TimeScale: 1000}}
	before := time.Now().UTC()
	c := s.clockFor(&domain.Drone{ID: "d"})
	assert.False(t, c.from.Before(before), "not before the real time")
	assert.WithinDuration(t, before, c.from, time.Second, "at the real time")

	past := before.Add(-time.Hour)
	c = s.clockFor(&domain.Drone{ID: "d", LastTelemetryAt: &past})
	assert.WithinDuration(t, before, c.from, time.Second, "an old report does not hold the clock back")

	ahead := before.Add(time.Hour)
	c = s.clockFor(&domain.Drone{ID: "d", LastTelemetryAt: &ahead})
	assert.Equal(t, ahead.Add(time.Millisecond), c.from, "after a report dated ahead, just after it")
	assert.True(t, s.reportTime(c, ahead).After(ahead))
}

// TestAfterReportPacesTheFlight holds each report in AfterReport until the
// test lets it go: no report is posted while the one before is held, and
// every accepted report is seen there once, in order.
func TestAfterReportPacesTheFlight(t *testing.T) {
	t.Parallel()
	api, srv := newFakeAPI(t)
	api.assign("drone-001", "order-1", base, pickup, dropoff)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	var seen []Report
	err := Run(ctx, Options{BaseURL: srv.URL, Interval: 10 * time.Millisecond, Step: step, UntilIdle: true,
		AfterReport: func(_ context.Context, r Report) {
			reps, _, _ := api.snapshot("drone-001")
			assert.Len(t, reps, len(seen)+1, "one report posted per call")
			seen = append(seen, r)
		}})
	require.NoError(t, err)
	require.NoError(t, ctx.Err(), "UntilIdle stopped the run")
	reps, _, _ := api.snapshot("drone-001")
	require.Len(t, seen, len(reps))
	for i, r := range reps {
		assert.Equal(t, Report{DroneID: "drone-001", DeliveryID: "order-1", Latitude: r.Location.Latitude, Longitude: r.Location.Longitude, At: r.at}, seen[i], "report %d", i)
	}
}

func TestFliesOnThroughFailedReports(t *testing.T) {
	t.Parallel()
	api, srv := newFakeAPI(t)
	api.assign("drone-001", "order-1", base, pickup, dropoff)
	api.failEvery, api.failLand, api.failPickup = 7, 2, 2
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	err := Run(ctx, Options{BaseURL: srv.URL, Interval: 20 * time.Millisecond, Step: step, Out: &out, UntilIdle: true})
	require.NoError(t, err, "Run\n%s", out.String())
	require.NoError(t, ctx.Err(), "Run returned only at the deadline\n%s", out.String())
	// The reports the API took still make a consistent flight, and the one
	// at the dropoff was sent again until it was taken.
	reps, _, del := api.snapshot("drone-001")
	checkFlight(t, reps, 15)
	assert.Equal(t, domain.StageCompleted, del.Stage, out.String())
	assert.Contains(t, out.String(), "telemetry failed, flying on", "the failures are reported")
}

func TestPicksUpDronesAsTheyAreAssigned(t *testing.T) {
	t.Parallel()
	api, srv := newFakeAPI(t)
	// Enough drones for the list to take several pages, none assigned.
	for i := range 5 {
		api.mu.Lock()
		id := fmt.Sprintf("idle-%d", i)
		api.drones[id] = &domain.Drone{ID: id, Location: loc(base), Status: "Available", CruiseSpeedMps: 15, RangeKm: 20, BatteryPercent: 100}
		api.mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out testdoubles.LockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{BaseURL: srv.URL, Interval: 20 * time.Millisecond, Step: step, Out: &out})
	}()

	// The simulator has looked for work (both lists) and found none.
	require.Eventually(t, func() bool {
		api.mu.Lock()
		defer api.mu.Unlock()
		return api.lists >= 2
	}, patience, 5*time.Millisecond, "the simulator listed the drones")
	for i := range 3 {
		id := fmt.Sprintf("drone-%03d", i)
		api.assign(id, "order-"+strconv.Itoa(i), geo.Point{Lat: base.Lat + float64(i)*0.001, Lon: base.Lon}, pickup, dropoff)
	}
	require.Eventually(t, func() bool {
		for i := range 3 {
			if _, _, d := api.snapshot(fmt.Sprintf("drone-%03d", i)); d.Stage != "Completed" {
				return false
			}
		}
		return true
	}, patience, 10*time.Millisecond, "every delivery completed\n%s", &out)
	cancelRun(t, cancel, done)
	for i := range 3 {
		reps, _, _ := api.snapshot(fmt.Sprintf("drone-%03d", i))
		checkFlight(t, reps, 15)
	}
	for i := range 5 {
		reps, _, _ := api.snapshot(fmt.Sprintf("idle-%d", i))
		assert.Empty(t, reps, "idle-%d, never assigned, reported", i)
	}
}

// countingTransport counts the simulator's requests from its own side: how
// many it started and how many have not returned yet.
type countingTransport struct {
	base            http.RoundTripper
	started, active atomic.Int64
}

func newCountingClient(t *testing.T) (*http.Client, *countingTransport) {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := &countingTransport{base: tr}
	return &http.Client{Transport: c}, c
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.started.Add(1)
	c.active.Add(1)
	defer c.active.Add(-1)
	return c.base.RoundTrip(r)
}

// expectStopped checks that Run, which has just returned, left no request
// of its own running and starts none afterwards. The second half can only
// watch for a while: passing does not depend on how long.
func expectStopped(t *testing.T, c *countingTransport) {
	t.Helper()
	assert.Zero(t, c.active.Load(), "requests still running when Run returned")
	started := c.started.Load()
	assert.Never(t, func() bool { return c.started.Load() != started }, 200*time.Millisecond, 10*time.Millisecond,
		"a request started after Run returned")
}

func TestStopsCleanlyWhenCancelled(t *testing.T) {
	t.Parallel()
	api, srv := newFakeAPI(t)
	far := geo.Point{Lat: 48.5, Lon: -122.3} // about 100 km: never reached here
	api.assign("drone-001", "order-1", base, far, dropoff)
	hc, requests := newCountingClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{BaseURL: srv.URL, Interval: 10 * time.Millisecond, TimeScale: 10, HTTPClient: hc})
	}()
	require.Eventually(t, func() bool {
		reps, _, _ := api.snapshot("drone-001")
		return len(reps) >= 3
	}, patience, 5*time.Millisecond, "the drone is flying")
	cancelRun(t, cancel, done)
	expectStopped(t, requests)
	reps, _, _ := api.snapshot("drone-001")
	for i := 1; i < len(reps); i++ {
		require.Less(t, geo.DistanceKm(point(reps[i].Location), far), geo.DistanceKm(point(reps[i-1].Location), far), "report %d did not get closer to the pickup", i)
	}
}

func TestStopsFlyingACancelledDelivery(t *testing.T) {
	t.Parallel()
	api, srv := newFakeAPI(t)
	far := geo.Point{Lat: 48.5, Lon: -122.3}
	api.assign("drone-001", "order-1", base, far, dropoff)
	hc, requests := newCountingClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	var out testdoubles.LockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{BaseURL: srv.URL, Interval: 10 * time.Millisecond, Out: &out, UntilIdle: true, HTTPClient: hc})
	}()
	require.Eventually(t, func() bool {
		reps, _, _ := api.snapshot("drone-001")
		return len(reps) >= 3
	}, patience, 5*time.Millisecond, "the drone is flying")
	api.mu.Lock()
	api.deliveries["order-1"].Stage = "Cancelled"
	api.drones["drone-001"].Status, api.drones["drone-001"].CurrentDeliveryID = "Available", ""
	api.mu.Unlock()
	require.NoError(t, <-done, "Run\n%s", out.String())
	require.NoError(t, ctx.Err(), "Run returned only at the deadline\n%s", out.String())
	expectStopped(t, requests)
}

func TestResumesAfterAFutureTimestamp(t *testing.T) {
	t.Parallel()
	api, srv := newFakeAPI(t)
	api.assign("drone-001", "order-1", base, pickup, dropoff)
	future := time.Now().Add(3 * time.Hour).UTC()
	api.mu.Lock()
	api.drones["drone-001"].LastTelemetryAt = &future
	api.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	require.NoError(t, Run(ctx, Options{BaseURL: srv.URL, Interval: 20 * time.Millisecond, TimeScale: 100, Step: step, UntilIdle: true}))
	reps, _, _ := api.snapshot("drone-001")
	checkFlight(t, reps, 15)
	assert.True(t, reps[0].at.After(future), "first report at %s, not after the drone's last one at %s", reps[0].at, future)
}

func TestRefusedKeyAndUnreachableAPIAreErrors(t *testing.T) {
	t.Parallel()
	api, srv := newFakeAPI(t)
	api.listStatus = http.StatusUnauthorized
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	err := Run(ctx, Options{BaseURL: srv.URL, Interval: 10 * time.Millisecond})
	assert.ErrorContains(t, err, "operator key", "a refused key")

	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	err = Run(ctx, Options{BaseURL: dead.URL, Interval: 10 * time.Millisecond})
	assert.ErrorContains(t, err, "is the service running", "an unreachable API")

	assert.Error(t, Run(ctx, Options{BaseURL: "127.0.0.1:7071"}), "a base URL without a scheme")
}

func TestProgressOnATerminalRedrawsInPlace(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	p := newProgress(&b)
	p.tty = true
	p.set("order-1", status{stage: "HeadedToPickup", frac: 0.3, eta: 192 * time.Second})
	p.set("order-22", status{stage: "HeadedToDropoff", frac: 0.7, eta: -1})
	p.render()
	first := b.String()
	require.Contains(t, first, "order-1   HeadedToPickup   ███░░░░░░░  30%  ETA 3m12s\n", "first frame")
	require.Contains(t, first, "order-22  HeadedToDropoff  ███████░░░  70%  ETA ?\n", "first frame")
	b.Reset()
	p.done("order-1", "order-1 done")
	p.render()
	second := b.String()
	assert.True(t, strings.HasPrefix(second, "\x1b[2A"), "second frame does not move back over the two live lines: %q", second)
	assert.Contains(t, second, "order-1 done\n", "second frame")
	assert.Contains(t, second, "order-22  HeadedToDropoff", "second frame")
	assert.Equal(t, "x  HeadedToDropoff  ██████████ 100%  ETA 0s", formatLine("x", 1, status{stage: "HeadedToDropoff", frac: 1, eta: 0}))
}

func TestTowardFollowsTheGreatCircle(t *testing.T) {
	t.Parallel()
	a, b := geo.Point{Lat: 47.6, Lon: -122.3}, geo.Point{Lat: 51.5, Lon: -0.1} // Seattle → London
	total := geo.DistanceKm(a, b)
	for _, f := range []float64{0.1, 0.25, 0.5, 0.9} {
		m := toward(a, b, f)
		assert.InDelta(t, f*total, geo.DistanceKm(a, m), 1e-6*total, "f=%g: km from the start", f)
		assert.InDelta(t, total, geo.DistanceKm(a, m)+geo.DistanceKm(m, b), 1e-6*total, "f=%g: the point is off the great circle", f)
	}
	// The great circle from Seattle to London passes north of both.
	assert.GreaterOrEqual(t, toward(a, b, 0.5).Lat, 60.0, "the midpoint's latitude: not a great circle")
}

// TestWaitsAtThePickupUntilThePickupTime: a drone that reaches the pickup
// before the package's pickupTime stays on the pad, reporting, and leaves
// for the dropoff only from that time on.
func TestWaitsAtThePickupUntilThePickupTime(t *testing.T) {
	t.Parallel()
	api, srv := newFakeAPI(t)
	api.assign("drone-001", "order-1", base, pickup, dropoff)
	// The flight to the pickup takes about 100 s of simulated time; the
	// package is ready 5 minutes after the simulation starts.
	ready := time.Now().Add(5 * time.Minute).UTC().Truncate(time.Second)
	api.mu.Lock()
	api.deliveries["order-1"].PickupTime = ready
	api.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	var out bytes.Buffer
	err := Run(ctx, Options{BaseURL: srv.URL, Interval: 5 * time.Millisecond, Step: 10 * time.Second, Out: &out, UntilIdle: true})
	require.NoError(t, err, out.String())

	reps, _, del := api.snapshot("drone-001")
	require.Equal(t, domain.StageCompleted, del.Stage)
	arrived, left := -1, -1
	for i, r := range reps {
		at := geo.DistanceKm(point(r.Location), pickup) <= radiusKm
		if at && arrived < 0 {
			arrived = i
		}
		if arrived >= 0 && !at && left < 0 {
			left = i
		}
	}
	require.Positive(t, arrived)
	require.Positive(t, left)
	assert.True(t, reps[arrived].at.Before(ready), "the drone was early, at %s for %s", reps[arrived].at, ready)
	assert.Greater(t, left-arrived, 2, "it waited several reports at the pickup")
	assert.False(t, reps[left-1].at.Before(ready), "it left no earlier than the pickup time: last report at the pickup %s, ready %s", reps[left-1].at, ready)
}

// cancelRun cancels the context of a Run that reports to done, and waits
// for it to return without an error.
func cancelRun(t *testing.T, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, "Run after cancel")
	case <-time.After(patience):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

// A reschedule that keeps the drone (a new generation of the same
// delivery, to a new dropoff) is a flight of its own: the simulator drops
// the old route and flies the new one to the new dropoff. Before, it flew
// on to the old dropoff and left the delivery HeadedToDropoff.
func TestFliesTheNewRouteOfARescheduledDelivery(t *testing.T) {
	t.Parallel()
	api, srv := newFakeAPI(t)
	far := geo.Point{Lat: 48.5, Lon: -122.3}
	api.assign("drone-001", "order-1", base, far, dropoff)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	var out testdoubles.LockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{BaseURL: srv.URL, Interval: 10 * time.Millisecond, Out: &out, UntilIdle: true})
	}()
	require.Eventually(t, func() bool {
		reps, _, _ := api.snapshot("drone-001")
		return len(reps) >= 3
	}, patience, 5*time.Millisecond, "the drone is flying")

	// Rescheduled to a pickup and a dropoff near where the drone is, which
	// the dispatch gives back to the same drone.
	newDrop := geo.Point{Lat: base.Lat + 0.01, Lon: base.Lon + 0.01}
	api.mu.Lock()
	d := api.deliveries["order-1"]
	d.Stage, d.PickupLocation, d.DropoffLocation = "Scheduled", loc(base), loc(newDrop)
	api.drones["drone-001"].CurrentGeneration = 1
	api.mu.Unlock()

	require.NoError(t, <-done, "Run\n%s", out.String())
	require.NoError(t, ctx.Err(), "Run returned only at the deadline\n%s", out.String())
	reps, dr, del := api.snapshot("drone-001")
	assert.Equal(t, domain.StageCompleted, del.Stage)
	assert.Equal(t, domain.DroneAvailable, dr.Status)
	assert.LessOrEqual(t, geo.DistanceKm(point(reps[len(reps)-1].Location), newDrop), radiusKm, "landed at the new dropoff")
}
