package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/tools/testdoubles"
)

func TestStandaloneChain(t *testing.T) { onEmbedded(t, chainScenario) }

// chainScenario registers a fleet over HTTP, sends deliveries one at a time
// and then in a burst, and checks each reaches Scheduled with the drone the
// dispatch rule picks and ETAs that follow from its legs and speed.
func chainScenario(t *testing.T, p *proc) {
	a := signUp(t, p.base)
	fleet := testFleet(40)
	registerFleet(t, a, fleet)
	rng := rand.New(rand.NewPCG(7, 7))
	sizes := []string{"Small", "Medium", "Large"}
	near := func() domain.Location {
		return domain.Location{Latitude: 47.6062 + (rng.Float64()-0.5)*0.06, Longitude: -122.3321 + (rng.Float64()-0.5)*0.06}
	}

	// One at a time, so the expected drone is determined by the fleet as it is.
	for i := range 8 {
		id := fmt.Sprintf("seq-%d", i)
		body := deliveryRequest(id, near(), near(), sizes[i%3], 1+float64(i%4))
		req := &domain.DeliveryRequest{
			PickupLocation:  body["pickupLocation"].(domain.Location),
			DropoffLocation: body["dropOffLocation"].(domain.Location),
			PackageInfo:     domain.PackageInfo{Size: domain.PackageSize(sizes[i%3]), Weight: 1 + float64(i%4)},
		}
		want := expectedDrones(availableDrones(t, a), req)
		require.NotEmpty(t, want, "the test fleet must serve delivery %d", i)

		resp := a.call(t, "POST", "/api/deliveryrequests", body)
		require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
		assert.Equal(t, "/api/deliveries/"+id, resp.Header.Get("Location"))
		var acc map[string]any
		resp.decode(t, &acc)
		assert.Equal(t, id, acc["deliveryId"])
		assert.Len(t, acc["ownerId"], 32, "the account owns it")
		assert.GreaterOrEqual(t, len(acc["trackingId"].(string)), 26, "at least 128 bits")

		d := waitStage(t, a, id, domain.StageScheduled, domain.StageFailed)
		assert.Contains(t, want, d.DroneID, "delivery %s", id)
		checkSchedule(t, a, d)

		var st map[string]any
		a.call(t, "GET", "/api/deliveries/"+id+"/status", nil).decode(t, &st)
		assert.Equal(t, "Scheduled", st["stage"])
		assert.Equal(t, d.DroneID, st["droneId"])
		for _, k := range []string{"pickupETA", "deliveryETA", "updatedAt"} {
			_, err := time.Parse(time.RFC3339, st[k].(string))
			assert.NoError(t, err, k)
		}
		assert.NotNil(t, st["lastKnownLocation"])

		var pkg domain.Package
		a.call(t, "GET", "/api/packages/pkg-"+id, nil).decode(t, &pkg)
		assert.Equal(t, id, pkg.DeliveryID)
	}

	// A burst: every delivery gets its own drone, each one fit for it.
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := deliveryRequest(fmt.Sprintf("burst-%d", i), domain.Location{Latitude: 47.6062, Longitude: -122.3321},
				domain.Location{Latitude: 47.61, Longitude: -122.33}, "Small", 1)
			resp := a.call(t, "POST", "/api/deliveryrequests", body)
			assert.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
		}()
	}
	wg.Wait()
	seen := map[string]string{}
	for i := range 12 {
		id := fmt.Sprintf("burst-%d", i)
		d := waitStage(t, a, id, domain.StageScheduled)
		checkSchedule(t, a, d)
		prev, dup := seen[d.DroneID]
		assert.False(t, dup, "drone %s on %s and %s", d.DroneID, prev, id)
		seen[d.DroneID] = id
	}

	assert.Len(t, dronesIn(t, a, domain.DroneAssigned), 20)
	var page struct {
		Drones []*domain.Drone `json:"drones"`
		Next   string          `json:"next"`
	}
	a.fleet(t, "GET", "/api/drones?limit=5", nil).decode(t, &page)
	assert.Len(t, page.Drones, 5)
	assert.Equal(t, page.Drones[4].ID, page.Next)

	health := call(t, "GET", p.base+"/api/healthz", nil)
	assert.Equal(t, http.StatusOK, health.Status)
	var ready struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	resp := call(t, "GET", p.base+"/api/readyz", nil)
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	resp.decode(t, &ready)
	assert.Equal(t, "ready", ready.Status)
	assert.Equal(t, "ok", ready.Checks["store"])
	for check, v := range ready.Checks { // and the queue, on the embedded backend
		assert.Equal(t, "ok", v, check)
	}
}

func TestStandaloneRejectsBadRequests(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startServe(t, dir)
	a := signUp(t, p.base)
	good := func() map[string]any {
		return deliveryRequest("bad-1", domain.Location{Latitude: 47.6, Longitude: -122.3}, domain.Location{Latitude: 47.61, Longitude: -122.31}, "Small", 1)
	}
	with := func(edit func(m map[string]any)) []byte {
		m := good()
		edit(m)
		b, _ := json.Marshal(m)
		return b
	}
	cases := []struct {
		name  string
		body  []byte
		field string
	}{
		{"malformed JSON", []byte(`{"deliveryId":"bad-1","ownerId":`), "body"},
		{"missing pickupLocation", with(func(m map[string]any) { delete(m, "pickupLocation") }), "pickupLocation"},
		{"weight zero", with(func(m map[string]any) { m["packageInfo"].(map[string]any)["weight"] = 0 }), "packageInfo.weight"},
		{"weight negative", with(func(m map[string]any) { m["packageInfo"].(map[string]any)["weight"] = -2 }), "packageInfo.weight"},
		{"unknown size", with(func(m map[string]any) { m["packageInfo"].(map[string]any)["size"] = "Enormous" }), "packageInfo.size"},
		{"latitude 91", with(func(m map[string]any) { m["pickupLocation"] = domain.Location{Latitude: 91, Longitude: 0} }), "pickupLocation.latitude"},
	}
	sendingMalformed(t, func() {
		for _, tc := range cases {
			resp := a.call(t, "POST", "/api/deliveryrequests", tc.body)
			assert.Equal(t, http.StatusBadRequest, resp.Status, tc.name)
			assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), tc.name)
			var prob functionapp.ProblemDetails
			resp.decode(t, &prob)
			assert.Equal(t, tc.field, prob.Field, tc.name)
			assert.Equal(t, 400, prob.Status, tc.name)
			assert.Contains(t, prob.Detail, tc.field, tc.name)
		}
	})
	assert.Equal(t, http.StatusNotFound, a.call(t, "GET", "/api/deliveries/bad-1", nil).Status, "nothing stored")
	assert.Equal(t, http.StatusNotFound, call(t, "GET", p.base+"/api/nowhere", nil).Status)
	assert.Equal(t, http.StatusMethodNotAllowed, call(t, "DELETE", p.base+"/api/healthz", nil).Status)

	// Nothing was queued either.
	db := openEmbedded(t, dir)
	for _, q := range topology.Queues {
		active, dead, err := db.Bus().Depth(ctxFor(t), q)
		require.NoError(t, err)
		assert.Zero(t, active+dead, q)
	}

	// The same id and body is idempotent; the same id with another body is a conflict.
	first := a.call(t, "POST", "/api/deliveryrequests", good())
	require.Equal(t, http.StatusAccepted, first.Status)
	again := a.call(t, "POST", "/api/deliveryrequests", good())
	assert.Equal(t, http.StatusAccepted, again.Status)
	assert.JSONEq(t, string(first.Body), string(again.Body))
	changed := a.call(t, "POST", "/api/deliveryrequests", with(func(m map[string]any) { m["expedited"] = true }))
	assert.Equal(t, http.StatusConflict, changed.Status)
}

// TestStandaloneRateLimits sends more than an account's burst and more
// sign-ups than an address may make: both get 429 with Retry-After, the
// account's second key shares its bucket, and other accounts are not held
// back.
func TestStandaloneRateLimits(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir(), "-rate-limit", "1/m", "-rate-burst", "3", "-signup-rate-limit", "1/h", "-signup-burst", "2")
	a, b := signUp(t, p.base), signUp(t, p.base)
	third := call(t, "POST", p.base+"/api/accounts", map[string]any{"name": "C", "contactEmail": "c@c.example"})
	require.Equal(t, http.StatusTooManyRequests, third.Status, string(third.Body))
	wait, err := strconv.Atoi(third.Header.Get("Retry-After"))
	require.NoError(t, err)
	assert.Greater(t, wait, 3000, "one sign-up an hour")

	// A key's first request, which authenticates it, is charged to the
	// client address; from then on its account's bucket is charged.
	first := a.call(t, "GET", "/api/deliveries/summary", nil)
	require.Equal(t, http.StatusOK, first.Status, "the first request")
	var s struct{ OwnerID string }
	first.decode(t, &s)
	resp := a.call(t, "POST", "/api/accounts/"+s.OwnerID+"/keys", nil)
	require.Equal(t, http.StatusCreated, resp.Status, "request 1 of the burst: %s", resp.Body)
	var second struct{ APIKey string }
	resp.decode(t, &second)
	for i := 2; i <= 3; i++ {
		require.Equal(t, http.StatusOK, a.call(t, "GET", "/api/deliveries/summary", nil).Status, "request %d of the burst", i)
	}
	limited := a.call(t, "GET", "/api/deliveries/summary", nil)
	require.Equal(t, http.StatusTooManyRequests, limited.Status)
	assert.Equal(t, "application/problem+json", limited.Header.Get("Content-Type"))
	assert.NotEmpty(t, limited.Header.Get("Retry-After"))
	// The account's other key: its first request authenticates it, on the
	// address's bucket; the next is the account's, which is spent.
	a2 := api{base: p.base, key: second.APIKey}
	require.Equal(t, http.StatusOK, a2.call(t, "GET", "/api/deliveries/summary", nil).Status, "the second key's first request")
	assert.Equal(t, http.StatusTooManyRequests, a2.call(t, "GET", "/api/deliveries/summary", nil).Status, "a second key adds nothing to the account's share")
	assert.Equal(t, http.StatusOK, b.call(t, "GET", "/api/deliveries/summary", nil).Status, "another account is not held back")
	assert.Equal(t, http.StatusOK, call(t, "GET", p.base+"/api/healthz", nil).Status, "health is never limited")
}

// TestBannerGeneratesAnOperatorKey: make run with no OPERATOR_KEY prints a
// fresh key that opens the fleet endpoints, keeps it in the data folder so
// that a restart prints the same one, and the simulator beside it finds it
// there.
func TestBannerGeneratesAnOperatorKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bannerKey := func(p *proc) string {
		var key string
		eventually(t, "the banner", func() bool {
			for _, line := range strings.Split(p.out.String(), "\n") {
				if k, ok := strings.CutPrefix(strings.TrimSpace(line), "OPERATOR_KEY="); ok {
					key = k
				}
			}
			return key != ""
		})
		return key
	}
	first := startServeEnv(t, dir, []string{"OPERATOR_KEY="}, "-banner")
	key := bannerKey(first)
	first.stop(t)
	info, err := os.Stat(filepath.Join(dir, "operator.key"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	p := startServeEnv(t, dir, []string{"OPERATOR_KEY="}, "-banner")
	assert.Equal(t, key, bannerKey(p), "a restart on the same data folder keeps the key")

	// A key file widened by a copy is made private again when it is read.
	require.NoError(t, os.Chmod(filepath.Join(dir, "operator.key"), 0o644))
	sim := exec.Command(binary, "simulate", "-api", p.base, "-data-dir", dir, "-until-idle", "-interval", "100ms")
	testdoubles.DieWithTest(sim)
	sim.Env = append(os.Environ(), "OPERATOR_KEY=")
	out, err := sim.CombinedOutput()
	require.NoError(t, err, "the simulator finds the kept key:\n%s", out)
	info, err = os.Stat(filepath.Join(dir, "operator.key"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	none := exec.Command(binary, "simulate", "-api", p.base, "-data-dir", t.TempDir())
	none.Env = append(os.Environ(), "OPERATOR_KEY=")
	out, err = none.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "no operator key")

	assert.NotEqual(t, e2eOperatorKey, key)
	assert.Contains(t, p.out.String(), "Authorization: Bearer $KEY", "the banner shows how to call with an API key")
	assert.Contains(t, p.out.String(), p.base+"/api/docs", "and where the API reference is")
	assert.Equal(t, http.StatusOK, callAs(t, key, "GET", p.base+"/api/drones?limit=1", nil).Status)
	assert.Equal(t, http.StatusUnauthorized, callAs(t, e2eOperatorKey, "GET", p.base+"/api/drones?limit=1", nil).Status)
}

// TestServeWritesACPUProfileWhenItStops: `serve -cpuprofile` leaves a
// profile of the whole run that go tool pprof reads once the server has
// stopped on a signal, as `make bench` stops it.
func TestServeWritesACPUProfileWhenItStops(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "cpu.prof")
	// A start that fails leaves an earlier profile as it was.
	require.NoError(t, os.WriteFile(file, []byte("an earlier profile"), 0o600))
	failed := exec.Command(binary, "serve", "-addr", "127.0.0.1:99999", "-data-dir", t.TempDir(), "-cpuprofile", file)
	failed.Env = append(os.Environ(), "FUNCTIONS_CUSTOMHANDLER_PORT=", "FUNCTIONS_HTTPWORKER_PORT=")
	out, err := failed.CombinedOutput()
	require.Error(t, err, "%s", out)
	kept, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, "an earlier profile", string(kept))

	p := startServe(t, t.TempDir(), "-cpuprofile", file)
	served := time.Now()
	for time.Since(served) < time.Second {
		require.Equal(t, http.StatusOK, call(t, "GET", p.base+"/api/healthz", nil).Status)
	}
	p.stop(t)
	assert.True(t, p.logged("CPU profile written", file), "the log says where the profile is")
	out, err = exec.Command("go", "tool", "pprof", "-top", binary, file).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "Type: cpu")
	_, rest, _ := strings.Cut(string(out), "Duration: ")
	spanned, err := time.ParseDuration(strings.TrimSpace(strings.Split(rest, ",")[0]))
	require.NoError(t, err, "%s", out)
	// The runtime stamps a profile's start when its writer goroutine first
	// runs (runtime/pprof's profileWriter), which a busy machine can delay
	// past the moment the server answers; so the recorded span is held to
	// half of the second the server was seen serving, not to all of it. A
	// profile begun at the stop would span a few milliseconds.
	assert.GreaterOrEqual(t, spanned, 500*time.Millisecond, "the profile spans the run, not only its end")
}
