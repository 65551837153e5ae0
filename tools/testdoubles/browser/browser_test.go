package browser

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fabrikam/dronedelivery/tools/testdoubles"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tracking page's regression tests: handlers/assets/track.html served
// by a fake of GET /api/track/{id} and its feed, watched in Chromium.

type fakeLoc struct {
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
}

type fakeTrailPoint struct {
	Latitude  float64   `json:"latitude"`
	Longitude float64   `json:"longitude"`
	At        time.Time `json:"at"`
}

type fakeEvent struct {
	Stage string    `json:"stage"`
	At    time.Time `json:"at"`
}

type fakeDrone struct {
	ID             string  `json:"id"`
	Location       fakeLoc `json:"location"`
	BatteryPercent float64 `json:"batteryPercent"`
}

// fakeFeed has the shape of GET /api/track/{trackingId}/feed.
type fakeFeed struct {
	TrackingID      string           `json:"trackingId"`
	Stage           string           `json:"stage"`
	PickupLocation  fakeLoc          `json:"pickupLocation"`
	DropoffLocation fakeLoc          `json:"dropOffLocation"`
	Drone           *fakeDrone       `json:"drone"`
	Trail           []fakeTrailPoint `json:"trail"`
	PickupETA       *time.Time       `json:"pickupETA"`
	DeliveryETA     *time.Time       `json:"deliveryETA"`
	UpdatedAt       time.Time        `json:"updatedAt"`
	History         []fakeEvent      `json:"history"`
	FailureReason   string           `json:"failureReason,omitempty"`
	Outcome         string           `json:"outcome,omitempty"`
}

// script is a delivery told one feed per poll, so the test does not depend
// on how fast the machine runs the page.
type script struct {
	mu    sync.Mutex
	feeds []fakeFeed
	fail  map[int]bool // poll numbers answered 503, to exercise the retry
	polls int
	held  bool // while set, every poll is told the first feed again
}

func (s *script) next() (fakeFeed, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held {
		return s.feeds[0], true
	}
	n := s.polls
	s.polls++
	if s.fail[n] {
		return fakeFeed{}, false
	}
	return s.feeds[min(n-countBefore(s.fail, n), len(s.feeds)-1)], true
}

func (s *script) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = false
}

// pageTimeout only ends a page that hangs: the driver returns as soon as the
// page is done.
const pageTimeout = 2 * time.Minute

func countBefore(fail map[int]bool, n int) int {
	c := 0
	for i := range n {
		if fail[i] {
			c++
		}
	}
	return c
}

var (
	pickup  = fakeLoc{47.6101, -122.3421}
	dropoff = fakeLoc{47.6205, -122.3493}
	home    = fakeLoc{47.6032, -122.3305}
)

// flight builds the feeds of a normal delivery: Created, Scheduled, then
// the drone flies home → pickup → dropoff in small steps.
func flight(tid string, start time.Time) []fakeFeed {
	const speedMps = 15.0
	t := start
	f := fakeFeed{TrackingID: tid, Stage: "Created", PickupLocation: pickup, DropoffLocation: dropoff, UpdatedAt: t,
		History: []fakeEvent{{"Created", t}}, Trail: []fakeTrailPoint{}}
	var out []fakeFeed
	snap := func() {
		c := f
		c.Trail = slices.Clone(f.Trail)
		c.History = slices.Clone(f.History)
		if f.Drone != nil {
			d := *f.Drone
			c.Drone = &d
		}
		out = append(out, c)
	}
	eta := func(from fakeLoc) {
		toPickup := time.Duration(distKm(from, pickup) * 1000 / speedMps * float64(time.Second))
		leg := time.Duration(distKm(pickup, dropoff) * 1000 / speedMps * float64(time.Second))
		var p, d time.Time
		if f.Stage == "HeadedToDropoff" {
			d = t.Add(time.Duration(distKm(from, dropoff)*1000/speedMps*float64(time.Second)) + 30*time.Second)
			f.DeliveryETA = &d
			return
		}
		p = t.Add(toPickup + 30*time.Second)
		d = p.Add(leg + 2*time.Minute)
		f.PickupETA, f.DeliveryETA = &p, &d
	}
	snap()
	t = t.Add(2 * time.Second)
	f.Stage, f.UpdatedAt = "Scheduled", t
	f.History = append(f.History, fakeEvent{"Scheduled", t})
	f.Drone = &fakeDrone{ID: "drone-042", Location: home, BatteryPercent: 96}
	eta(home)
	snap()
	snap()
	fly := func(from, to fakeLoc, steps int, stageOnLeave string) {
		for i := 1; i <= steps; i++ {
			t = t.Add(20 * time.Second)
			k := float64(i) / float64(steps)
			p := fakeLoc{from.Latitude + (to.Latitude-from.Latitude)*k, from.Longitude + (to.Longitude-from.Longitude)*k}
			if i == 1 && f.Stage != stageOnLeave {
				f.Stage = stageOnLeave
				f.History = append(f.History, fakeEvent{stageOnLeave, t})
			}
			f.Drone.Location, f.UpdatedAt = p, t
			f.Drone.BatteryPercent -= 1.5
			f.Trail = append(f.Trail, fakeTrailPoint{p.Latitude, p.Longitude, t})
			eta(p)
			snap()
		}
	}
	f.Trail = append(f.Trail, fakeTrailPoint{home.Latitude, home.Longitude, t})
	fly(home, pickup, 6, "HeadedToPickup")
	fly(pickup, dropoff, 8, "HeadedToDropoff")
	f.Stage = "Completed"
	f.History = append(f.History, fakeEvent{"Completed", t})
	f.DeliveryETA = &t
	snap()
	return out
}

func distKm(a, b fakeLoc) float64 {
	const r = math.Pi / 180
	dLat, dLon := (b.Latitude-a.Latitude)*r, (b.Longitude-a.Longitude)*r
	h := math.Pow(math.Sin(dLat/2), 2) + math.Cos(a.Latitude*r)*math.Cos(b.Latitude*r)*math.Pow(math.Sin(dLon/2), 2)
	return 2 * 6371.0088 * math.Asin(math.Sqrt(h))
}

// serveTrack serves the page and its feed the way handlers.TrackPage and
// TrackFeed do, CSP included, so a page that breaks the policy fails here.
func serveTrack(t *testing.T, tid string, s *script) *httptest.Server {
	t.Helper()
	page, err := os.ReadFile(filepath.Join(testdoubles.Dir(), "..", "..", "handlers", "assets", "track.html"))
	require.NoError(t, err)
	mux := http.NewServeMux()
	// Unlike TrackPage, the page is served for any id, so that a test can
	// watch it meet an unknown one in its feed.
	mux.HandleFunc("GET /api/track/{tid}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'")
		w.Write(page)
	})
	// No push here: the page polls, as it does wherever push fails.
	mux.HandleFunc("GET /api/track/{tid}/negotiate", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"transport":"poll","pollIntervalMs":2000}`))
	})
	mux.HandleFunc("GET /api/track/{tid}/feed", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("tid") != tid {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"title":"Not Found","status":404,"detail":"tracking id not found"}`))
			return
		}
		f, ok := s.next()
		if !ok {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		var b bytes.Buffer
		json.NewEncoder(&b).Encode(f)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(b.Bytes())
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// screenshotPath keeps the screenshots in BROWSER_SCREENSHOTS when set, so
// a person can look at them, and in the test's temporary folder otherwise.
func screenshotPath(t *testing.T, name string) string {
	if dir := os.Getenv("BROWSER_SCREENSHOTS"); dir != "" {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		return filepath.Join(dir, name)
	}
	return filepath.Join(t.TempDir(), name)
}

func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err, "no screenshot")
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 10_000 {
		t.Fatalf("screenshot %s is not a plausible PNG (%d bytes)", path, len(b))
	}
	t.Logf("screenshot: %s", path)
}

func TestTrackingPageFollowsADelivery(t *testing.T) {
	tid := "k3q9Zr1xVb.order-1001"
	s := &script{feeds: flight(tid, time.Now().UTC().Truncate(time.Second)), fail: map[int]bool{5: true, 6: true}}
	srv := serveTrack(t, tid, s)
	shot := screenshotPath(t, "track-completed.png")

	res := RunBrowser(t, srv.URL+"/api/track/"+tid+"?interval=120", shot, pageTimeout)

	if res.FinalStage != "Completed" {
		t.Fatalf("final stage %q, want Completed; stages %v; errors %v", res.FinalStage, res.Stages, res.Errors)
	}
	want := []string{"Created", "Scheduled", "HeadedToPickup", "HeadedToDropoff", "Completed"}
	if !slices.Equal(res.Stages, want) {
		t.Errorf("stages %v, want %v", res.Stages, want)
	}
	if errs := pageErrors(res); len(errs) > 0 {
		t.Errorf("the page reported errors: %v", errs)
	}
	// Home, six steps to the pickup, eight to the dropoff.
	if len(res.Positions) < 15 {
		t.Fatalf("the drone marker moved %d times, want 15: %v", len(res.Positions), res.Positions)
	}
	first, last := res.Positions[0], res.Positions[len(res.Positions)-1]
	if first.Lat != home.Latitude || first.Lon != home.Longitude {
		t.Errorf("first marker position %v, want the drone's home %v", first, home)
	}
	if d := distKm(fakeLoc{last.Lat, last.Lon}, dropoff); d > 0.001 {
		t.Errorf("last marker position %v is %.3f km from the dropoff", last, d)
	}
	if !slices.Contains(res.Connections, "lost") || res.Connections[len(res.Connections)-1] != "ok" {
		t.Errorf("connection states %v: want the 503s shown as lost, then recovered", res.Connections)
	}
	if !strings.Contains(res.Text, "Your package has arrived") {
		t.Errorf("the page does not say the package arrived:\n%s", res.Text)
	}
	checkScreenshot(t, shot)

	// A terminal stage ends the polling: browser.js lingers 600 ms (five
	// intervals) after Completed, and the page must not ask again in them.
	s.mu.Lock()
	defer s.mu.Unlock()
	if want := len(s.feeds) + len(s.fail); s.polls != want {
		t.Errorf("the page polled the feed %d times, want %d (one per feed and failure): it went on after Completed", s.polls, want)
	}
}

// failAfterTakeOff has a delivery fail on the way to its pickup, for
// reason and with outcome, and returns what the page showed of it.
func failAfterTakeOff(t *testing.T, tid, reason, outcome, shotName string) (BrowserResult, string) {
	t.Helper()
	feeds := flight(tid, time.Now().UTC().Truncate(time.Second))[:6]
	failed := feeds[len(feeds)-1]
	failed.Stage, failed.FailureReason, failed.Outcome = "Failed", reason, outcome
	failed.History = append(slices.Clone(failed.History), fakeEvent{"Failed", failed.UpdatedAt.Add(5 * time.Second)})
	failed.PickupETA, failed.DeliveryETA = nil, nil
	srv := serveTrack(t, tid, &script{feeds: append(feeds, failed)})
	shot := screenshotPath(t, shotName)

	res := RunBrowser(t, srv.URL+"/api/track/"+tid+"?interval=120", shot, pageTimeout)

	if res.FinalStage != "Failed" {
		t.Fatalf("final stage %q, want Failed; stages %v; errors %v", res.FinalStage, res.Stages, res.Errors)
	}
	return res, shot
}

func TestTrackingPageShowsAFailure(t *testing.T) {
	reason := "the drone reported a fault and returned to base"
	res, shot := failAfterTakeOff(t, "Fq82mZ0aLw.order-1002", reason, "", "track-failed.png")
	if !strings.Contains(res.Text, reason) {
		t.Errorf("the page does not show the failure reason %q:\n%s", reason, res.Text)
	}
	if errs := pageErrors(res); len(errs) > 0 {
		t.Errorf("the page reported errors: %v", errs)
	}
	checkScreenshot(t, shot)
}

// A delivery aborted with its package going back tells the recipient so,
// not just that it failed.
func TestTrackingPageShowsAReturnToSender(t *testing.T) {
	res, shot := failAfterTakeOff(t, "Rt5Lk9sPqe.order-1004", "wrong address", "returnedToSender", "track-returned.png")
	assert.Contains(t, res.Text, "Your package is being returned to the sender.")
	assert.Contains(t, res.Text, "Reason: wrong address")
	assert.NotContains(t, res.Text, "Delivery failed")
	assert.Empty(t, pageErrors(res), "the page reported errors")
	checkScreenshot(t, shot)
}

func TestTrackingPageUnknownTrackingID(t *testing.T) {
	s := &script{feeds: flight("known", time.Now())}
	srv := serveTrack(t, "known", s)
	shot := screenshotPath(t, "track-unknown.png")

	// The driver stops watching once the page says the id is unknown.
	res := RunBrowser(t, srv.URL+"/api/track/nobody.order-9?interval=100", shot, pageTimeout)

	assert.Empty(t, res.FinalStage, "no stage for an unknown tracking id")
	assert.Empty(t, res.Stages, "no stage for an unknown tracking id")
	assert.Contains(t, res.Text, "can’t find this delivery", "the page says the delivery is unknown")
	assert.Empty(t, pageErrors(res), "the page reported errors")
	checkScreenshot(t, shot)
}

// TestBrowserIsReadyBeforeThePageMoves is how a browser test starts what
// the page is to follow: the feed stays at its first state until the page
// has rendered it (Ready), and each later state is awaited, not hoped for.
func TestBrowserIsReadyBeforeThePageMoves(t *testing.T) {
	tid := "Rd7Qp2vNcx.order-1003"
	s := &script{feeds: flight(tid, time.Now().UTC().Truncate(time.Second)), held: true}
	srv := serveTrack(t, tid, s)
	shot := screenshotPath(t, "track-ready.png")

	b := StartBrowser(t, srv.URL+"/api/track/"+tid+"?interval=100", shot, pageTimeout)
	first := b.Ready(t)
	assert.Equal(t, "Created", first.Stage, "ready once the first feed is on the page")
	assert.Equal(t, []string{"Created"}, first.Stages)

	s.release()
	pickedUp, err := b.Await(t.Context(), func(s BrowserState) bool { return s.HasShown(pickup.Latitude, pickup.Longitude) })
	require.NoError(t, err)
	assert.Contains(t, pickedUp.Stages, "HeadedToPickup", "the page showed the flight to the pickup on the way")

	res := b.Result(t)
	assert.Equal(t, []string{"Created", "Scheduled", "HeadedToPickup", "HeadedToDropoff", "Completed"}, res.Stages)
	assert.Equal(t, "Completed", res.FinalStage)
	assert.Empty(t, pageErrors(res), "the page reported errors")
	checkScreenshot(t, shot)

	_, err = b.Await(t.Context(), func(s BrowserState) bool { return s.Stage == "Cancelled" })
	assert.Error(t, err, "awaiting what a finished page never shows fails instead of hanging")
}

// pageErrors drops Chromium's own console line for a failed request, which
// the tests provoke on purpose (503, 404) and the page handles; what is left
// is the page's own failures: exceptions, CSP violations.
func pageErrors(res BrowserResult) []string {
	var out []string
	for _, e := range res.Errors {
		if !strings.Contains(e, "Failed to load resource") {
			out = append(out, e)
		}
	}
	return out
}

// A drone that has not reported since its ETA passed leaves the page
// saying the pickup is late, and when it was due, not "any moment" for
// as long as the drone stays silent.
func TestTrackingPageSaysWhenADroneIsLate(t *testing.T) {
	tid := "Lt4Wc8rPza.order-1004"
	now := time.Now().UTC().Truncate(time.Second)
	f := flight(tid, now.Add(-30*time.Minute))[2] // Scheduled, its drone at home
	require.Equal(t, "Scheduled", f.Stage)
	due := now.Add(-10 * time.Minute)
	f.PickupETA = &due
	srv := serveTrack(t, tid, &script{feeds: []fakeFeed{f}})

	page := OpenPage(t, srv.URL+"/api/track/"+tid+"?interval=500", 800, 900, pageTimeout)
	page.Wait(t, "the page says the pickup is late", `document.getElementById('eta-count').textContent === 'Running late'`)
	var at, label string
	page.Eval(t, `document.getElementById('eta-at').textContent`, &at)
	page.Eval(t, `document.getElementById('eta-at-label').textContent`, &label)
	assert.Equal(t, "Was due at", label)
	assert.NotEmpty(t, at)
	assert.Empty(t, page.Errors(t))
}
