package e2e

import (
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// TestAnalyticsAgreeWithDeliveries runs deliveries with duplicate requests,
// duplicate and reordered telemetry, cancels (twice) and a reschedule on
// the embedded backend, then holds the maintained figures to the
// deliveries and to what `reaggregate` re-derives from them.
func TestAnalyticsAgreeWithDeliveries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startServe(t, dir)
	analyticsAgreement(t, p, dir)
}

// TestAnalyticsAgreeOnAzureAdapters is the same run on the Cosmos DB and
// Service Bus adapters, over the local doubles.
func TestAnalyticsAgreeOnAzureAdapters(t *testing.T) {
	t.Parallel()
	p := startOnAzure(t)
	analyticsAgreement(t, p, t.TempDir())
}

func analyticsAgreement(t *testing.T, p *proc, dir string) {
	a, b := signUp(t, p.base), signUp(t, p.base)
	registerFleet(t, a, testFleet(6))
	near := domain.Location{Latitude: 47.6062, Longitude: -122.3321}
	drop := domain.Location{Latitude: 47.61, Longitude: -122.33}
	post := func(who api, id string) {
		body := deliveryRequest(id, near, drop, "Small", 1)
		for range 2 { // the second is a client's retry: the same 202
			r := who.call(t, "POST", "/api/deliveryrequests", body)
			require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
		}
	}

	post(a, "an-done")
	post(a, "an-cancel")
	post(a, "an-resched")
	post(a, "an-early")
	post(b, "bn-done")
	require.Equal(t, http.StatusNoContent, a.call(t, "DELETE", "/api/deliveryrequests/an-early", nil).Status)
	for _, id := range []string{"an-done", "an-cancel", "an-resched"} {
		waitStage(t, a, id, domain.StageScheduled)
	}
	waitStage(t, b, "bn-done", domain.StageScheduled)
	for range 2 {
		require.Equal(t, http.StatusNoContent, a.call(t, "DELETE", "/api/deliveryrequests/an-cancel", nil).Status)
	}
	r := a.call(t, "PATCH", "/api/deliveryrequests/an-resched", map[string]any{"dropOffLocation": domain.Location{Latitude: 47.612, Longitude: -122.331}})
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	eventually(t, "the rescheduled delivery to be scheduled again", func() bool {
		g := getDelivery(t, a, "an-resched")
		return g.Stage == domain.StageScheduled && g.DropoffLocation.Latitude == 47.612
	})
	fly(t, a, "an-done")
	fly(t, a, "an-resched")
	fly(t, b, "bn-done")
	for _, id := range []string{"an-done", "an-resched"} {
		waitStage(t, a, id, domain.StageCompleted)
	}
	waitStage(t, b, "bn-done", domain.StageCompleted)

	// The figures are bucketed by the UTC day and month a delivery was
	// created on, so they are read for that day, which all five share
	// unless the run began just before midnight.
	days := map[string]bool{}
	var created time.Time
	for _, d := range []struct {
		who api
		id  string
	}{{a, "an-done"}, {a, "an-cancel"}, {a, "an-resched"}, {a, "an-early"}, {b, "bn-done"}} {
		created = getDelivery(t, d.who, d.id).CreatedAt.UTC()
		days[created.Format(time.DateOnly)] = true
	}
	require.False(t, created.IsZero())
	if len(days) > 1 {
		t.Skipf("the deliveries were created on both sides of UTC midnight (%v), so no one day holds all five", days)
	}
	period := fmt.Sprintf("year=%d&month=%d", created.Year(), int(created.Month()))
	type figures struct {
		summary, utilization map[string]any
	}
	read := func() map[string]figures {
		out := map[string]figures{}
		for name, q := range map[string]struct {
			who   api
			fleet bool
			query string
		}{
			"a": {a, false, ""}, "b": {b, false, ""}, "fleet": {a, true, ""},
			"unzoned": {a, true, "&areaId=" + domain.UnzonedArea},
		} {
			var f figures
			get := a.call
			if q.fleet {
				get = a.fleet
			} else {
				get = q.who.call
			}
			s := get(t, "GET", "/api/deliveries/summary?"+period+q.query, nil)
			require.Equal(t, http.StatusOK, s.Status, string(s.Body))
			s.decode(t, &f.summary)
			u := get(t, "GET", "/api/dronedeliveries/utilization?"+period+q.query, nil)
			require.Equal(t, http.StatusOK, u.Status, string(u.Body))
			u.decode(t, &f.utilization)
			out[name] = f
		}
		return out
	}
	// On Cosmos DB a delivery's contributions follow its stage write, a
	// batch per bucket: the figures are read once every bucket has counted
	// every delivery's end.
	var kept map[string]figures
	eventually(t, "every bucket to count every delivery's end", func() bool {
		kept = read()
		for _, f := range kept {
			if f.summary["inProgress"] != 0.0 {
				return false
			}
		}
		return true
	})
	counts := func(f figures) []any {
		return []any{f.summary["count"], f.summary["completed"], f.summary["cancelled"], f.summary["failed"], f.summary["inProgress"]}
	}
	assert.Equal(t, []any{4.0, 2.0, 2.0, 0.0, 0.0}, counts(kept["a"]), "account a")
	assert.Equal(t, []any{1.0, 1.0, 0.0, 0.0, 0.0}, counts(kept["b"]), "account b")
	assert.Equal(t, []any{5.0, 3.0, 2.0, 0.0, 0.0}, counts(kept["fleet"]), "fleet")
	assert.Equal(t, kept["fleet"].summary["count"], kept["unzoned"].summary["count"], "no service areas: every pickup is unzoned")
	assert.Greater(t, kept["a"].utilization["traveledMiles"], 0.0)
	assert.Greater(t, kept["fleet"].utilization["assignedHours"], 0.0)
	byDay := kept["fleet"].summary["days"].([]any)
	assert.EqualValues(t, 5, byDay[created.Day()-1].(map[string]any)["count"], "the day's bucket")

	// A business reaches only its own account.
	assert.Equal(t, http.StatusForbidden, a.call(t, "GET", "/api/deliveries/summary?areaId=unzoned", nil).Status)

	month := created.Format("2006-01")
	cli := func(args ...string) (string, error) {
		cmd := exec.Command(binary, append([]string{"reaggregate", "-data-dir", dir, "-month", month}, args...)...)
		cmd.Env = p.cmd.Env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := cli("-check")
	require.NoError(t, err, out)
	assert.Equal(t, 0, strings.Count(out, "DIFFERS"), out)
	assert.GreaterOrEqual(t, strings.Count(out, "agrees"), 4, out) // two accounts, one area, the fleet
	out, err = cli()
	require.NoError(t, err, out)
	assert.Equal(t, kept, read(), "re-derived figures equal the maintained ones")
}

// fly reports the flight of the delivery's drone to its pickup and dropoff:
// every report twice, and two of them swapped.
func fly(t *testing.T, a api, id string) {
	d := getDelivery(t, a, id)
	var dr domain.Drone
	a.fleet(t, "GET", "/api/drones/"+d.DroneID, nil).decode(t, &dr)
	route := append(flightPath(dr.Location, d.PickupLocation, 4), flightPath(d.PickupLocation, d.DropoffLocation, 5)[1:]...)
	clock := time.Now().UTC()
	type report struct {
		loc domain.Location
		at  time.Time
	}
	reports := make([]report, len(route))
	for i, loc := range route {
		reports[i] = report{loc, clock.Add(time.Duration(i+1) * 15 * time.Second)}
	}
	reports[1], reports[2] = reports[2], reports[1]
	for i, rp := range reports {
		for range 2 {
			postReport(t, a, d.DroneID, rp.loc, float64(100-i), rp.at)
		}
	}
}
