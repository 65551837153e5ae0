package standalone_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp/standalone"
	"github.com/fabrikam/dronedelivery/shared/functionapp/standalone/standalonetest"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/ports/porttest"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

const operatorKey = "faults-operator-key"

// world is one in-process instance of the service on the embedded backend,
// with its bus wrapped by the faults under test.
type world struct {
	t     *testing.T
	base  string
	key   string
	db    *embedded.DB
	file  *sql.DB // the same database, read-only, to count across queues at once
	store ports.Store
}

func startWorld(t *testing.T, wrap func(ports.Bus) ports.Bus) *world {
	t.Helper()
	path := filepath.Join(t.TempDir(), "faults.db")
	db, err := embedded.Open(path, embedded.Options{PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	file, err := sql.Open("sqlite", path+"?_pragma=query_only(1)&_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	t.Cleanup(func() { file.Close() })
	base := standalonetest.ServeApp(t, "../../..", wrap(db.Bus()), handlers.Deps{Store: db.Store(), Clock: platform.Clock{}, IDs: platform.IDs{},
		Log: slog.New(slog.DiscardHandler), Config: handlers.Config{OperatorKey: operatorKey}}, standalone.Options{Workers: 8})
	w := &world{t: t, base: base, db: db, file: file, store: db.Store()}
	var acct struct{ APIKey string }
	w.decode(w.do("", "POST", "/api/accounts", map[string]any{"name": "Faults Inc", "contactEmail": "ops@faults.example"}, http.StatusCreated), &acct)
	w.key = acct.APIKey
	return w
}

func (w *world) do(key, method, path string, body any, want int) []byte {
	w.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, w.base+path, rd)
	require.NoError(w.t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(w.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Equal(w.t, want, resp.StatusCode, "%s %s: %s", method, path, b)
	return b
}

func (w *world) decode(b []byte, v any) { require.NoError(w.t, json.Unmarshal(b, v), string(b)) }

func (w *world) delivery(id string) *domain.Delivery {
	d, err := w.store.Deliveries.Find(context.Background(), id)
	require.NoError(w.t, err)
	return d
}

// until polls cond until it holds; only a hang outlasts a minute.
func (w *world) until(what string, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		require.True(w.t, time.Now().Before(deadline), "timed out waiting for %s", what)
		<-tick.C
	}
}

// quiet waits until no message is left on any queue, delayed or locked
// ones included. The count is one statement, one snapshot of the file, and
// a step's outputs are in the file before its message leaves it, so zero
// means no work is left, not that a message was between two queues when
// each was counted.
func (w *world) quiet() {
	w.t.Helper()
	args := make([]any, len(topology.Queues))
	for i, q := range topology.Queues {
		args[i] = q
	}
	query := `SELECT count(*) FROM messages WHERE queue IN (?` + strings.Repeat(`, ?`, len(args)-1) + `)`
	w.until("the queues to drain", func() bool {
		var n int
		require.NoError(w.t, w.file.QueryRow(query, args...).Scan(&n))
		return n == 0
	})
}

// scenario drives the same story through a world: eight deliveries each
// with its own nearest drone, four flown to completion (all but each
// landing report sent at once, so faults can reorder them), one cancelled
// and one rescheduled. It returns the outcome with the wall-clock times
// of processing left out, as those differ from run to run by nature.
func scenario(t *testing.T, w *world) map[string]any {
	const n = 8
	drone := func(i int) domain.Location {
		return domain.Location{Latitude: 47.55 + 0.01*float64(i), Longitude: -122.33}
	}
	pickup := func(i int) domain.Location {
		return domain.Location{Latitude: drone(i).Latitude + 0.003, Longitude: -122.33}
	}
	drop := func(i int) domain.Location {
		return domain.Location{Latitude: drone(i).Latitude + 0.003, Longitude: -122.32}
	}
	for i := range n {
		w.do(operatorKey, "PUT", fmt.Sprintf("/api/drones/f%d", i), map[string]any{"location": drone(i), "maxPayloadKg": 5,
			"maxPackageSize": "Large", "rangeKm": 40, "cruiseSpeedMps": 15}, http.StatusCreated)
	}
	for i := range n {
		w.do(w.key, "POST", "/api/deliveryrequests", map[string]any{"deliveryId": fmt.Sprintf("fd%d", i),
			"pickupLocation": pickup(i), "dropOffLocation": drop(i), "packageInfo": map[string]any{"size": "Small", "weight": 1}}, http.StatusAccepted)
	}
	for i := range n {
		id := fmt.Sprintf("fd%d", i)
		w.until(id+" scheduled", func() bool { return w.delivery(id).Stage == domain.StageScheduled })
	}

	// Reports are dated from now, as a pickup counts only from the pickup
	// time on; the outcome keeps times as offsets from start so that runs
	// at different moments compare.
	start := time.Now().UTC().Truncate(time.Second)
	for i := range 4 {
		var route []map[string]any
		at := func(loc domain.Location) {
			route = append(route, map[string]any{"location": loc, "batteryPercent": 90 - len(route),
				"timestamp": start.Add(time.Duration(len(route)+1) * 10 * time.Second).Format(time.RFC3339)})
		}
		for k := range 4 {
			f := float64(k) / 4
			at(domain.Location{Latitude: drone(i).Latitude + f*0.003, Longitude: -122.33})
		}
		for k := range 5 {
			f := float64(k) / 5
			at(domain.Location{Latitude: pickup(i).Latitude, Longitude: -122.33 + f*0.01})
		}
		at(drop(i))
		id, droneID := fmt.Sprintf("fd%d", i), fmt.Sprintf("f%d", i)
		w.do(operatorKey, "POST", "/api/drones/"+droneID+"/telemetry", route[:len(route)-1], http.StatusAccepted)
		w.until(id+" to file the flight", func() bool { return len(w.delivery(id).Trail) == len(route)-1 })
		w.do(operatorKey, "POST", "/api/drones/"+droneID+"/telemetry", route[len(route)-1], http.StatusAccepted)
		w.until(id+" completed", func() bool { return w.delivery(id).Stage == domain.StageCompleted })
	}
	w.do(w.key, "DELETE", "/api/deliveryrequests/fd4", nil, http.StatusNoContent)
	w.do(w.key, "PATCH", "/api/deliveryrequests/fd5", map[string]any{"dropOffLocation": domain.Location{Latitude: drop(5).Latitude, Longitude: -122.31}}, http.StatusAccepted)
	w.until("fd5 scheduled again", func() bool {
		d := w.delivery("fd5")
		return d.Stage == domain.StageScheduled && d.Generation == 1
	})
	w.quiet()

	since := func(t *time.Time) any {
		if t == nil {
			return nil
		}
		return t.Sub(start)
	}
	out := map[string]any{}
	for i := range n {
		d := w.delivery(fmt.Sprintf("fd%d", i))
		var stages []domain.Stage
		for _, e := range d.History {
			stages = append(stages, e.Stage)
		}
		require.NoError(t, domain.LegalHistory(d.History), d.ID)
		var kinds []string
		for _, n := range d.Notifications {
			if n.Kind != domain.NotifyETAChanged { // depends on the order reports are read in, by design
				kinds = append(kinds, n.Kind)
			}
		}
		var trail []map[string]any
		for _, p := range d.Trail {
			trail = append(trail, map[string]any{"lat": p.Latitude, "lon": p.Longitude, "at": p.At.Sub(start)})
		}
		pkg, err := w.store.Packages.Find(context.Background(), domain.PackageKey(d.OwnerID, d.Request.PackageInfo.PackageID))
		require.NoError(t, err)
		out[d.ID] = map[string]any{
			"stage": d.Stage, "drone": d.DroneID, "generation": d.Generation, "history": stages, "trail": trail,
			"km": math.Round(d.TraveledKm * 1e6), "pickedUp": since(d.PickedUpAt), "completed": since(d.CompletedAt),
			"notices": kinds, "package": pkg.Status, "packageDelivery": pkg.DeliveryID, "dropoff": d.Request.DropoffLocation,
		}
	}
	for i := range n {
		dr, err := w.store.Fleet.Find(context.Background(), fmt.Sprintf("f%d", i))
		require.NoError(t, err)
		out[dr.ID] = map[string]any{"status": dr.Status, "delivery": dr.CurrentDeliveryID, "at": dr.Location}
	}
	return out
}

// TestFaultsLeaveTheSameOutcome runs the scenario on a clean bus and then on
// buses that deliver every message twice, reorder messages, and both, and
// expects the same outcome each time.
func TestFaultsLeaveTheSameOutcome(t *testing.T) {
	t.Parallel()
	clean := scenario(t, startWorld(t, func(b ports.Bus) ports.Bus { return b }))
	require.Equal(t, domain.StageCompleted, clean["fd0"].(map[string]any)["stage"])
	require.Equal(t, domain.StageCancelled, clean["fd4"].(map[string]any)["stage"])

	cases := []struct {
		name      string
		duplicate bool
		reorder   time.Duration
	}{
		{"every message twice", true, 0},
		{"reordered", false, 300 * time.Millisecond},
		{"twice and reordered", true, 300 * time.Millisecond},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var fb *porttest.FaultyBus
			got := scenario(t, startWorld(t, func(b ports.Bus) ports.Bus {
				fb = porttest.NewFaultyBus(b, tc.duplicate, tc.reorder, uint64(i+1))
				return fb
			}))
			t.Logf("%s: %d duplicates injected, %d messages delayed", tc.name, fb.Duplicates.Load(), fb.Delayed.Load())
			if tc.duplicate {
				assert.Positive(t, fb.Duplicates.Load())
			}
			for k, want := range clean {
				assert.Equal(t, want, got[k], "%s differs from the clean run", k)
			}
		})
	}
}
