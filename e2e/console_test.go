package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/browser"
)

// openConsole opens the operator console on base with query in headless
// Chromium, 1280 pixels wide, and waits until it asks for the key. It
// holds browserTurn until the test ends.
func openConsole(t *testing.T, base, query string, height int) *browser.Page {
	t.Helper()
	browserTurn.Lock()
	t.Cleanup(browserTurn.Unlock)
	page := browser.OpenPage(t, base+"/api/console?"+query, 1280, height, patience)
	page.Wait(t, "the page asks for the key", `document.body.dataset.state === 'locked'`)
	return page
}

// TestConsoleInBrowser opens the operator console in headless Chromium as
// an operator would: it pastes the operator key, sees a drone move on the
// map after a telemetry report, grounds the drone that holds a delivery
// from the page with a reason, and sees through the API that the delivery
// went to another drone with the reason in its history. Every step waits
// for what the page or the API shows. The screenshot is kept in the test's
// artifact directory, or in $SCREENSHOT_DIR (docs/console.png comes from
// SCREENSHOT_DIR=docs; see README, Operating the fleet).
func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir())
	a := signUp(t, p.base)
	putDrone(t, a, "console-near", shortFlight.home, "Small")
	putDrone(t, a, "console-far", domain.Location{Latitude: 47.595, Longitude: -122.338}, "Small")
	// A no-fly zone between the drones and the dropoff, for the map.
	require.Equal(t, http.StatusCreated, a.fleet(t, "PUT", "/api/noflyzones/stadium", map[string]any{
		"name": "Stadium", "geometry": map[string]any{"type": "Polygon", "coordinates": [][][2]float64{{
			{-122.3335, 47.6140}, {-122.3315, 47.6140}, {-122.3315, 47.6160}, {-122.3335, 47.6160}, {-122.3335, 47.6140}}}},
	}).Status)
	// One for tonight, not yet in force: drawn apart.
	tonight := time.Now().UTC().Add(time.Hour)
	require.Equal(t, http.StatusCreated, a.fleet(t, "PUT", "/api/noflyzones/tonight", map[string]any{
		"name": "Concert", "validFrom": tonight, "validTo": tonight.Add(3 * time.Hour),
		"geometry": map[string]any{"type": "Polygon", "coordinates": [][][2]float64{{
			{-122.3435, 47.6040}, {-122.3415, 47.6040}, {-122.3415, 47.6060}, {-122.3435, 47.6060}, {-122.3435, 47.6040}}}},
	}).Status)
	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("console", shortFlight.pickup, shortFlight.drop, "Small", 1)).Status)
	d := waitStage(t, a, "console", domain.StageScheduled)
	require.Equal(t, "console-near", d.DroneID)

	page := openConsole(t, p.base, "interval=500&silent=1500", 900)
	var url string
	page.Eval(t, `location.href`, &url)
	assert.NotContains(t, url, e2eOperatorKey)
	// A business's key is not the operator key: the page says so and
	// forgets it.
	page.Fill(t, "#key", a.key)
	page.Click(t, "#connect")
	page.Wait(t, "the page refuses a business key", `document.body.dataset.state === 'unauthorized' &&
		sessionStorage.length === 0 && document.getElementById('gate-error').textContent.includes('403')`)
	page.Fill(t, "#key", e2eOperatorKey)
	page.Click(t, "#connect")
	page.Wait(t, "the fleet on the map", `document.body.dataset.state === 'ok' &&
		document.querySelectorAll('#map g.drone').length === 2 &&
		document.querySelector('#map polyline.route[data-delivery="console"]') !== null &&
		document.querySelector('#map polygon.zone.inForce[data-zone="stadium"]') !== null &&
		document.querySelector('#map polygon.zone.upcoming[data-zone="tonight"]') !== null &&
		document.getElementById('zones').textContent.includes('upcoming')`)
	page.Eval(t, `location.href`, &url)
	assert.NotContains(t, url, e2eOperatorKey, "the key never goes into the URL")

	// The drone reports from further along: the map moves it.
	moved := domain.Location{Latitude: 47.6075, Longitude: -122.3300}
	postReport(t, a, "console-near", moved, 92, time.Now().UTC())
	page.Wait(t, "console-near at its reported position", fmt.Sprintf(`(() => {
		const g = document.querySelector('#map g.drone[data-id="console-near"]');
		return g && Number(g.dataset.lat) === %v && Number(g.dataset.lon) === %v;
	})()`, moved.Latitude, moved.Longitude))

	// It flies the delivery and reports no more: the page marks it silent
	// once its last report is older than ?silent= ms.
	page.Wait(t, "console-near marked silent in flight", `(() => {
		const tr = document.querySelector('tr[data-drone="console-near"]');
		return tr && tr.classList.contains('silent') && tr.querySelector('td.lastreport').textContent.startsWith('silent') &&
			document.body.dataset.silent === '1';
	})()`)
	var farSilent bool
	page.Eval(t, `document.querySelector('tr[data-drone="console-far"]').classList.contains('silent')`, &farSilent)
	assert.False(t, farSilent, "a drone on no delivery is not watched")

	dir := t.ArtifactDir()
	if env := os.Getenv("SCREENSHOT_DIR"); env != "" {
		dir = env
	}
	shot := filepath.Join(dir, "console.png")
	page.Screenshot(t, shot)
	info, err := os.Stat(shot)
	require.NoError(t, err)
	assert.Greater(t, info.Size(), int64(1000), "a real screenshot")

	// Ground it from the page, with a reason.
	page.Fill(t, `tr[data-drone="console-near"] input.reason`, "rotor vibration")
	page.Click(t, `tr[data-drone="console-near"] button[data-action="ground"]`)
	page.Wait(t, "the action accepted", `document.body.dataset.lastAction === 'ground console-near 202'`)
	page.Wait(t, "console-near shown grounded", `(() => {
		const g = document.querySelector('#map g.drone[data-id="console-near"]');
		return g && g.dataset.status === 'Maintenance';
	})()`)

	eventually(t, "the delivery on the other drone", func() bool {
		d = getDelivery(t, a, "console")
		return d.Stage == domain.StageScheduled && d.DroneID == "console-far"
	})
	var hist struct {
		Events []domain.Event `json:"events"`
	}
	a.call(t, "GET", "/api/deliveries/console/history", nil).decode(t, &hist)
	var notes []string
	for _, e := range hist.Events {
		if e.Kind == domain.EventOperator {
			notes = append(notes, e.Note)
		}
	}
	assert.Equal(t, []string{"ground: rotor vibration"}, notes, "the page's reason is audited")
	page.Wait(t, "the page shows the delivery on console-far", `(() => {
		const tr = document.querySelector('tr[data-delivery="console"]');
		return tr && tr.children[2].textContent === 'console-far';
	})()`)
	// The browser reports the refused key's 403 as a failed load; nothing
	// else may go wrong.
	var errs []string
	for _, e := range page.Errors(t) {
		if !strings.Contains(e, "status of 403") {
			errs = append(errs, e)
		}
	}
	assert.Empty(t, errs, "no errors in the page")
}

// TestConsoleIsServedToAnyone checks the page itself: served without a key,
// self-contained (nothing from another origin) and not frameable.
func TestConsoleIsServedToAnyone(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir())
	resp := call(t, "GET", p.base+"/api/console", nil)
	require.Equal(t, http.StatusOK, resp.Status)
	assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	csp := resp.Header.Get("Content-Security-Policy")
	assert.Contains(t, csp, "default-src 'none'")
	assert.Contains(t, csp, "connect-src 'self'")
	assert.Contains(t, csp, "frame-ancestors 'none'")
	assert.NotContains(t, string(resp.Body), "https://", "no assets from the internet")
	assert.NotContains(t, string(resp.Body), e2eOperatorKey)
}

// platformGate stands in front of base as the Functions platform does for
// functions of authLevel function: every call under /api but the
// console's page needs the function key, as x-functions-key, or it is
// answered 401 before the handler runs.
func platformGate(t *testing.T, base, functionKey string) string {
	t.Helper()
	target, err := url.Parse(base)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/console" && r.Header.Get("x-functions-key") != functionKey {
			http.Error(w, "function key required", http.StatusUnauthorized)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestConsoleSendsTheFunctionKey: on Azure Functions the platform wants a
// function key before it passes the console's calls on. Given only the
// operator key the page says the function key is needed too; given both it
// opens, and sends the function key with every call. It had no place for
// it, so on Azure it kept asking for the operator key.
func TestConsoleSendsTheFunctionKey(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir())
	a := signUp(t, p.base)
	putDrone(t, a, "gated", shortFlight.home, "Small")
	page := openConsole(t, platformGate(t, p.base, "fk-e2e-0123"), "interval=500", 700)

	page.Fill(t, "#key", e2eOperatorKey)
	page.Click(t, "#connect")
	page.Wait(t, "the page asks for the function key", `document.body.dataset.state === 'unauthorized' &&
		document.getElementById('gate-error').textContent.includes('function key is needed')`)

	page.Fill(t, "#key", e2eOperatorKey)
	page.Fill(t, "#fnkey", "fk-wrong")
	page.Click(t, "#connect")
	page.Wait(t, "the page says a key is wrong", `document.body.dataset.state === 'unauthorized' && sessionStorage.length === 0 &&
		document.getElementById('gate-error').textContent.includes('or the function key is wrong')`)

	page.Fill(t, "#key", e2eOperatorKey)
	page.Fill(t, "#fnkey", "fk-e2e-0123")
	page.Click(t, "#connect")
	page.Wait(t, "the fleet on the map", `document.body.dataset.state === 'ok' &&
		document.querySelectorAll('#map g.drone[data-id="gated"]').length === 1`)
	var url string
	page.Eval(t, `location.href`, &url)
	assert.NotContains(t, url, "fk-e2e-0123", "the function key never goes into the URL")
}
