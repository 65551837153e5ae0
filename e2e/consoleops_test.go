package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/domain"
)

// TestConsoleShowsWaitingAndReplaysDeadLetters opens the console in
// headless Chromium with polling all but off (?interval= of ten minutes),
// so that what changes on the page after it opened came by push: it shows
// the stream connected, a delivery waiting for a drone with its reason,
// and a dead letter; a telemetry report moves a drone on the map; the
// operator replays the dead letter from the page, drones are added, and
// the waiting deliveries leave the page's list as they are scheduled.
func TestConsoleShowsWaitingAndReplaysDeadLetters(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Dispatch looks again every 2 s at most, so the waiting deliveries
	// take the drones added below soon.
	p := startServeEnv(t, dir, []string{"DISPATCH_RETRY_MAX=2s"})
	a := signUp(t, p.base)
	pickup, drop := shortFlight.pickup, shortFlight.drop
	putDrone(t, a, "cw-only", shortFlight.home, "Small")
	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("cw-first", pickup, drop, "Small", 1)).Status)
	waitStage(t, a, "cw-first", domain.StageScheduled)
	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("cw-second", pickup, drop, "Small", 1)).Status)

	// A dead letter: the message of a delivery not accepted yet.
	db, err := embedded.Open(filepath.Join(dir, "dronedelivery.db"), embedded.Options{})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.Bus().Publish(ctxFor(t), poisonEarly("cw-early")))
	eventually(t, "the message dead-lettered", func() bool { return len(deadLetters(t, a)) == 1 })
	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("cw-early", pickup, drop, "Small", 1)).Status)

	page := openConsole(t, p.base, "interval=600000", 1100)
	page.Fill(t, "#key", e2eOperatorKey)
	page.Click(t, "#connect")
	page.Wait(t, "the stream connected", `document.body.dataset.state === 'ok' && document.body.dataset.transport === 'push' &&
		Number(document.body.dataset.pushes) >= 1`)
	page.Wait(t, "cw-second waiting for a drone", `(() => {
		const tr = document.querySelector('tr[data-waiting="cw-second"]');
		return tr && tr.querySelector('.reason').textContent === 'no drone available';
	})()`)
	page.Wait(t, "the dead letter listed", `document.querySelector('tr[data-deadletter="cw-early:requested"] button[data-replay]') !== null`)

	// A report moves a drone: only a push can bring it within the wait.
	moved := domain.Location{Latitude: 47.6075, Longitude: -122.3300}
	postReport(t, a, "cw-only", moved, 92, time.Now().UTC())
	page.Wait(t, "cw-only pushed to its reported position", fmt.Sprintf(`(() => {
		const g = document.querySelector('#map g.drone[data-id="cw-only"]');
		return g && Number(g.dataset.lat) === %v && Number(g.dataset.lon) === %v && document.body.dataset.transport === 'push';
	})()`, moved.Latitude, moved.Longitude))

	// Replay from the page.
	page.Click(t, `tr[data-deadletter="cw-early:requested"] button[data-replay]`)
	page.Wait(t, "the replay accepted", `document.body.dataset.lastAction === 'replay cw-early:requested 202'`)
	page.Wait(t, "the dead letter gone from the page", `document.querySelector('tr[data-deadletter]') === null`)

	// Two more drones: both waiting deliveries are scheduled, and the
	// page's list empties by push.
	putDrone(t, a, "cw-spare-1", domain.Location{Latitude: 47.606, Longitude: -122.331}, "Small")
	putDrone(t, a, "cw-spare-2", domain.Location{Latitude: 47.604, Longitude: -122.329}, "Small")
	waitStage(t, a, "cw-early", domain.StageScheduled)
	waitStage(t, a, "cw-second", domain.StageScheduled)
	page.Wait(t, "no delivery waiting on the page", `document.querySelector('tr[data-waiting]') === null &&
		document.querySelector('#map g.drone[data-id="cw-spare-2"]') !== null`)
	var pushes int
	page.Eval(t, `Number(document.body.dataset.pushes)`, &pushes)
	assert.GreaterOrEqual(t, pushes, 3, "the page was updated by pushed events")
	assert.Empty(t, page.Errors(t), "no errors in the page")
}
