package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/tools/simulator"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/browser"
)

// browserTurn lets one test at a time drive Chromium: two browsers starting
// at once on a small machine take long enough that a flight the page is
// meant to follow may be over before it opens.
var browserTurn sync.Mutex

// TestTrackingPageInBrowser opens a customer's tracking page in headless
// Chromium while the simulator flies the delivery, and checks that the page
// follows it live: the drone marker moves and the stage reaches Completed.
// Nothing is left to timing: the flight starts only once the page has
// rendered the scheduled delivery, and each report waits until the page
// has shown it (or the delivery's end) before the drone flies on.
// The screenshot is kept in the test's artifact directory (go test
// -artifacts keeps it after the run) or in $SCREENSHOT_DIR.
func TestTrackingPageInBrowser(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir())
	a := signUp(t, p.base)
	trackingID := pageFlight.schedule(t, a, "browser-drone", "browser")

	dir := t.ArtifactDir()
	if env := os.Getenv("SCREENSHOT_DIR"); env != "" {
		dir = env
	}
	shot := filepath.Join(dir, "tracking-page.png")
	page := browser.StartBrowser(t, p.base+"/api/track/"+trackingID+"?interval=300", shot, patience)
	first := page.Ready(t)
	require.Equal(t, string(domain.StageScheduled), first.Stage, "the page shows the scheduled delivery before the flight")

	// About 1.4 km at 12 m/s, a report every 10 s of simulated time: some
	// fifteen reports, each shown on the page before the next is sent.
	ctx, cancel := context.WithCancel(context.Background())
	simDone := make(chan error, 1)
	go func() {
		simDone <- simulator.Run(ctx, simulator.Options{BaseURL: p.base, Interval: 100 * time.Millisecond, Step: 10 * time.Second,
			Out: io.Discard, UntilIdle: true, OperatorKey: e2eOperatorKey, HTTPClient: checkedClient(t, 10*time.Second),
			AfterReport: func(ctx context.Context, r simulator.Report) {
				page.Await(ctx, func(s browser.BrowserState) bool {
					return s.HasShown(r.Latitude, r.Longitude) || s.Stage == string(domain.StageCompleted)
				})
			}})
	}()
	defer func() { cancel(); <-simDone }()

	res := page.Result(t)
	t.Logf("stages seen by the page: %v; marker positions: %d; screenshot: %s", res.Stages, len(res.Positions), shot)

	assert.Equal(t, string(domain.StageCompleted), res.FinalStage)
	assert.Contains(t, res.Stages, string(domain.StageHeadedToDropoff), "the page saw the flight, not just its end")
	require.GreaterOrEqual(t, len(res.Positions), 2, "the drone marker moved")
	start, last := res.Positions[0], res.Positions[len(res.Positions)-1]
	assert.NotEqual(t, start, last)
	info, err := os.Stat(shot)
	require.NoError(t, err)
	assert.Greater(t, info.Size(), int64(1000), "a real screenshot")
	assert.Empty(t, res.Errors, "no errors in the page")
}

// TestTrackingPageIsPushedTo opens the tracking page in headless Chromium
// on the standalone runtime and checks that it takes its updates by push
// (server-sent events), not by polling: after each telemetry report the
// drone marker moves to the reported position with a feed that came
// through the event stream. The delay from sending each report to the
// page showing it is measured in the browser (its Date.now() when the
// marker moved, against the test's clock when it sent the report, on the
// same machine) and logged, never asserted.
func TestTrackingPageIsPushedTo(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir())
	a := signUp(t, p.base)
	trackingID := pageFlight.schedule(t, a, "push-drone", "push-page")

	browserTurn.Lock()
	defer browserTurn.Unlock()
	shot := filepath.Join(t.ArtifactDir(), "tracking-page-pushed.png")
	// ?interval=50 asks for polling 20 times a second; the page polls
	// every 2 s at most, and here not at all while push works.
	page := browser.StartBrowser(t, p.base+"/api/track/"+trackingID+"?interval=50", shot, patience)
	page.Ready(t)
	ctx := ctxFor(t)
	_, err := page.Await(ctx, func(s browser.BrowserState) bool { return s.Push == "sse" })
	require.NoError(t, err, "the page opened its event stream")

	clock := time.Now().UTC()
	// The page shows the drone at home already: the flight starts one
	// step out.
	route := pageFlight.route(5, 8)[1:]
	var delays []time.Duration
	for i, loc := range route {
		clock = clock.Add(10 * time.Second)
		sent := time.Now()
		postReport(t, a, "push-drone", loc, float64(100-i), clock)
		s, err := page.Await(ctx, func(s browser.BrowserState) bool { return s.HasShown(loc.Latitude, loc.Longitude) })
		require.NoError(t, err, "report %d shown", i)
		pos, _ := s.ShownAt(loc.Latitude, loc.Longitude)
		assert.Equal(t, "push", pos.Via, "report %d reached the page by push", i)
		delays = append(delays, time.UnixMilli(int64(pos.At)).Sub(sent))
	}
	res := page.Result(t)
	assert.Equal(t, string(domain.StageCompleted), res.FinalStage)
	assert.Empty(t, res.Errors, "no errors in the page")
	slices.Sort(delays)
	t.Logf("report sent → marker moved on the page, over %d reports: min %v, median %v, max %v (push poll interval %v)",
		len(delays), delays[0], delays[len(delays)/2], delays[len(delays)-1], handlers.DefaultPushPollInterval)
}

// TestTrackingPageCountsDownOnTheServersTime: a pickup booked ahead and
// not changed since is opened on the tracking page a while later; once the
// event stream's first feed has been applied, the countdown still counts
// to the planned pickup from now, not from when the delivery last changed
// (before, the pushed feed, which has no Date header, set the page's clock
// back to the feed's updatedAt).
func TestTrackingPageCountsDownOnTheServersTime(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir())
	a := signUp(t, p.base)
	pickup := domain.Location{Latitude: 47.6062, Longitude: -122.3321}
	registerFleet(t, a, map[string]droneSpec{
		"countdown": {Location: domain.Location{Latitude: 47.60629, Longitude: -122.3321}, MaxPayloadKg: 5, MaxPackageSize: "Large",
			RangeKm: 30, CruiseSpeedMps: 20, BatteryPercent: 100},
	})
	trackingID := bookPickup(t, a, "later", pickup, domain.Location{Latitude: 47.6162, Longitude: -122.3321},
		time.Now().Add(40*time.Minute).UTC().Truncate(time.Second))
	var booked struct {
		DispatchAt *time.Time `json:"dispatchAt"`
		PickupETA  *time.Time `json:"pickupETA"`
		UpdatedAt  time.Time  `json:"updatedAt"`
	}
	eventually(t, "the pickup to be booked", func() bool {
		a.call(t, "GET", "/api/deliveries/later/status", nil).decode(t, &booked)
		return booked.DispatchAt != nil
	})
	require.NotNil(t, booked.PickupETA)
	eventually(t, "ten seconds to pass since the delivery last changed", func() bool {
		return time.Since(booked.UpdatedAt) >= 10*time.Second
	})

	browserTurn.Lock()
	defer browserTurn.Unlock()
	page := browser.OpenPage(t, p.base+"/api/track/"+trackingID+"?interval=500", 800, 900, patience)
	page.Wait(t, "a pushed feed applied", `document.body.getAttribute('data-via') === 'push'`)
	var shown string
	before := time.Until(*booked.PickupETA)
	page.Eval(t, `document.getElementById('eta-count').firstChild.textContent`, &shown)
	after := time.Until(*booked.PickupETA)
	var m, s int
	_, err := fmt.Sscanf(shown, "%d:%d", &m, &s)
	require.NoError(t, err, "countdown %q", shown)
	got := time.Duration(m)*time.Minute + time.Duration(s)*time.Second
	// The page's clock is the Date header's whole second plus half a
	// second, set when the answer arrived; the countdown is rounded up and
	// drawn once a second. So it may show up to about 3 s more than is left
	// when it is read, and a little less; a clock set back to updatedAt
	// would show 10 s more or worse.
	assert.GreaterOrEqual(t, got, after-2*time.Second, "the page counts %s to the pickup; %s are left", got, after.Round(time.Second))
	assert.LessOrEqual(t, got, before+5*time.Second, "the page counts %s to the pickup; %s are left", got, before.Round(time.Second))
}
