package e2e

// End-to-end tests: each starts the real binary, as a user or the Functions
// host would, and talks to it only through its public entry points (HTTP and,
// for the host protocol, invocation payloads). The embedded store is opened
// beside the process only to observe queues, never to change state.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/tools/apiclient"
	"github.com/fabrikam/dronedelivery/tools/testdoubles"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dronedelivery-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "dronedelivery")
	build := exec.Command("go", "build", "-o", binary, "..")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
	code := m.Run()
	if testing.Verbose() {
		fmt.Println(exercised.summary())
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// e2eOperatorKey is the operator key every instance these tests start has.
const e2eOperatorKey = "e2e-operator-key-7c1f09d2b5"

// patience bounds every wait for the binary: for a start, a stage, a queue
// to drain. Each wait is for a condition and returns as soon as it holds,
// so only a hang, never a busy machine, reaches this.
const patience = 2 * time.Minute

// proc is a running instance of the binary.
type proc struct {
	cmd  *exec.Cmd
	base string // http://127.0.0.1:port
	done chan struct{}
	logs *testdoubles.LockedBuffer
	out  *testdoubles.LockedBuffer // stdout: the banner
}

// startServe runs `dronedelivery serve` on a free port and waits until it
// answers.
func startServe(t testing.TB, dataDir string, args ...string) *proc {
	t.Helper()
	return startServeEnv(t, dataDir, nil, args...)
}

// startServeEnv is startServe with extra environment settings. Rate
// limits are off unless env or args set them: these tests poll far faster
// than a client should.
func startServeEnv(t testing.TB, dataDir string, env []string, args ...string) *proc {
	t.Helper()
	args = append([]string{"serve", "-addr", "127.0.0.1:0", "-data-dir", dataDir}, args...)
	cmd := exec.Command(binary, args...)
	testdoubles.DieWithTest(cmd)
	cmd.Env = append(os.Environ(), "FUNCTIONS_CUSTOMHANDLER_PORT=", "FUNCTIONS_HTTPWORKER_PORT=",
		"OPERATOR_KEY="+e2eOperatorKey, "RATE_LIMIT=off", "SIGNUP_RATE_LIMIT=off")
	cmd.Env = append(cmd.Env, env...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	p := &proc{cmd: cmd, done: make(chan struct{}), logs: &testdoubles.LockedBuffer{}, out: &testdoubles.LockedBuffer{}}
	cmd.Stdout = p.out
	require.NoError(t, cmd.Start())
	addr := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(p.logs, line)
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "standalone runtime listening" {
				addr <- rec.Addr
			}
		}
	}()
	// Wait closes the pipe, so it waits for the last line to be read
	// (os/exec, Cmd.StderrPipe).
	go func() { <-scanned; cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("the service's last log lines:\n%s", lastLines(p.logs.String(), 150))
		}
	})
	select {
	case p.base = <-addr:
	case <-p.done:
		t.Fatalf("serve exited early:\n%s", p.logs)
	case <-time.After(patience):
		t.Fatalf("serve did not start:\n%s", p.logs)
	}
	return p
}

// logged reports whether one line of the service's log holds every part.
func (p *proc) logged(parts ...string) bool {
	for line := range strings.Lines(p.logs.String()) {
		if !slices.ContainsFunc(parts, func(s string) bool { return !strings.Contains(line, s) }) {
			return true
		}
	}
	return false
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// startHost runs the binary as the Functions host would: no arguments, the
// port in FUNCTIONS_CUSTOMHANDLER_PORT. The host counts any HTTP answer as
// ready; these tests wait until the backend is open too (healthz 200).
func startHost(t *testing.T, dataDir string) *proc {
	t.Helper()
	p := launchHost(t, []string{"OPERATOR_KEY=" + e2eOperatorKey, "DATA_DIR=" + dataDir})
	waitReady(t, p)
	return p
}

// launchHost starts the binary under the host's protocol with extra
// environment settings and arguments, and returns without waiting: its
// stderr is p.logs and its stdout p.out.
func launchHost(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	testdoubles.DieWithTest(cmd)
	// The tests play the host's Service Bus triggers on the embedded
	// queues, so the handler must leave them alone.
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("FUNCTIONS_CUSTOMHANDLER_PORT=%d", freePort(t)),
		"FUNCTIONS_CUSTOMHANDLER_WORKER_ID=worker-1", "CONSUME_EMBEDDED_QUEUES=false")
	cmd.Env = append(cmd.Env, env...)
	port := ""
	for _, kv := range cmd.Env {
		if v, ok := strings.CutPrefix(kv, "FUNCTIONS_CUSTOMHANDLER_PORT="); ok {
			port = v // the last one wins, as in the process
		}
	}
	p := &proc{cmd: cmd, base: "http://127.0.0.1:" + port, done: make(chan struct{}), logs: &testdoubles.LockedBuffer{}, out: &testdoubles.LockedBuffer{}}
	cmd.Stderr = p.logs
	cmd.Stdout = p.out
	require.NoError(t, cmd.Start())
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	return p
}

// waitReady waits until the health endpoint answers 200: the handler is
// listening and its backend is open.
func waitReady(t *testing.T, p *proc) {
	t.Helper()
	eventually(t, "the handler to be ready", func() bool {
		select {
		case <-p.done:
			t.Fatalf("handler exited early:\nstderr:\n%s\nstdout:\n%s", p.logs, p.out)
		default:
		}
		resp, err := http.Get(p.base + "/api/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// kill ends the process with SIGKILL: no chance to flush or drain.
func (p *proc) kill() {
	if p.cmd.Process != nil {
		p.cmd.Process.Kill()
	}
	<-p.done
}

// stop ends the process with SIGINT (Ctrl-C; SIGTERM does the same) and
// waits for it to drain.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	select {
	case <-p.done:
	case <-time.After(patience):
		t.Fatal("process did not stop on SIGTERM")
	}
}

// openEmbedded opens, beside the instance whose data folder is dir, its
// embedded store, to observe its queues (or feed them, playing the host);
// it is closed when the test ends.
func openEmbedded(t *testing.T, dir string) *embedded.DB {
	t.Helper()
	db, err := embedded.Open(filepath.Join(dir, "dronedelivery.db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// response is one answer, read whole.
type response apiclient.Response

func (r *response) decode(t testing.TB, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.Body, v), string(r.Body))
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// call sends a request without credentials.
func call(t testing.TB, method, url string, body any) *response {
	t.Helper()
	return callAs(t, "", method, url, body)
}

// callAs sends a request with key as the bearer token (none when empty)
// and a body, if any, as JSON; the exchange is held to the OpenAPI document.
func callAs(t testing.TB, key, method, url string, body any) *response {
	t.Helper()
	resp, err := clientOf(t, key).Send(context.Background(), method, url, body)
	require.NoError(t, err)
	return (*response)(resp)
}

// clientOf is the API client for t's exchanges with key, which are held to
// the OpenAPI document; its paths are whole URLs.
func clientOf(t testing.TB, key string) apiclient.Client {
	return apiclient.Client{Key: key, HTTP: checkedClient(t, 0)}
}

// api is one business calling a running instance with its API key; fleet
// calls go with the operator key.
type api struct {
	base, key string
}

// signUp registers a business with the instance at base.
func signUp(t testing.TB, base string) api {
	t.Helper()
	c := clientOf(t, "")
	c.Base = base
	acct, err := c.SignUp(context.Background(), apiclient.Registration{Name: "Fabrikam", ContactEmail: "ops@fabrikam.example"})
	require.NoError(t, err)
	return api{base: base, key: acct.APIKey}
}

// client is the API client of the business, held to the OpenAPI document.
func (a api) client(t testing.TB) apiclient.Client { return timedClient(t, a, 0) }

// timedClient is the business's client for a load: every exchange is held
// to the OpenAPI document and given up after timeout (0: never).
func timedClient(t testing.TB, a api, timeout time.Duration) apiclient.Client {
	return apiclient.Client{Base: a.base, Key: a.key, HTTP: checkedClient(t, timeout)}
}

// operator is the API client with the operator key.
func (a api) operator(t testing.TB) apiclient.Client { return a.client(t).WithKey(e2eOperatorKey) }

// call sends a request as the business.
func (a api) call(t *testing.T, method, path string, body any) *response {
	t.Helper()
	return callAs(t, a.key, method, a.base+path, body)
}

// fleet sends a request with the operator key.
func (a api) fleet(t *testing.T, method, path string, body any) *response {
	t.Helper()
	return callAs(t, e2eOperatorKey, method, a.base+path, body)
}

// eventually polls cond until it holds; only a hang outlasts patience.
// Unlike require.Eventually it calls cond on the test's goroutine, so cond
// may use require.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after %s", what, patience)
		}
		<-tick.C
	}
}

// droneSpec is the PUT /api/drones/{id} body.
type droneSpec = apiclient.DroneSpec

// testFleet is a fleet of varied drones around Seattle, placed on a
// deterministic spiral so every distance differs.
func testFleet(n int) map[string]droneSpec {
	sizes := []string{"Small", "Medium", "Large"}
	out := map[string]droneSpec{}
	for i := range n {
		angle := float64(i) * 2.39996
		r := 0.002 + 0.0015*float64(i)
		out[fmt.Sprintf("drone-%02d", i)] = droneSpec{
			Location:       domain.Location{Latitude: 47.6062 + r*math.Sin(angle), Longitude: -122.3321 + r*math.Cos(angle)},
			MaxPayloadKg:   float64(2 + i%4*2),
			MaxPackageSize: sizes[i%3],
			RangeKm:        float64(6 + (i*7)%20),
			CruiseSpeedMps: float64(10 + i%7),
			BatteryPercent: 100,
		}
	}
	return out
}

func registerFleet(t *testing.T, a api, fleet map[string]droneSpec) {
	t.Helper()
	for id, spec := range fleet {
		require.NoError(t, a.operator(t).PutDrone(context.Background(), id, spec))
	}
}

// expectedDrones applies the dispatch rule by a linear scan over drones as
// of now (open airspace): the drone with the earliest delivery ETA, then
// any whose ETA is within two seconds of it, since the service dispatches
// a moment later and its ETAs are rounded to the second. req's times are
// filled in as ingest fills them.
func expectedDrones(drones []*domain.Drone, req *domain.DeliveryRequest) []string {
	now := time.Now().UTC()
	r := *req
	r.Defaults(now, "expected", 0)
	leg := domain.StraightRoute(r.PickupLocation, r.DropoffLocation)
	sort.Slice(drones, func(i, j int) bool { return drones[i].ID < drones[j].ID })
	var plans []domain.Plan
	for _, d := range drones {
		if p, why := domain.PlanFor(d, domain.DistanceKm(d.Location, r.PickupLocation), &r, domain.OpenAirspace{}, leg, now); why == "" {
			plans = append(plans, p)
		}
	}
	sort.SliceStable(plans, func(i, j int) bool {
		if !plans[i].ETA.Delivery.Equal(plans[j].ETA.Delivery) {
			return plans[i].ETA.Delivery.Before(plans[j].ETA.Delivery)
		}
		return plans[i].Km < plans[j].Km
	})
	var out []string
	for _, p := range plans {
		if p.ETA.Delivery.Sub(plans[0].ETA.Delivery) <= 2*time.Second {
			out = append(out, p.Drone.ID)
		}
	}
	return out
}

func availableDrones(t *testing.T, a api) []*domain.Drone {
	t.Helper()
	return dronesIn(t, a, domain.DroneAvailable)
}

// dronesIn lists the drones with the status.
func dronesIn(t *testing.T, a api, status domain.DroneStatus) []*domain.Drone {
	t.Helper()
	drones, err := a.operator(t).ListDrones(context.Background(), status)
	require.NoError(t, err)
	return drones
}

// deliveryDoc is GET /api/deliveries/{id}.
type deliveryDoc = apiclient.Delivery

func getDelivery(t *testing.T, a api, id string) *deliveryDoc {
	t.Helper()
	d, err := a.client(t).GetDelivery(context.Background(), id)
	require.NoError(t, err)
	return d
}

func waitStage(t *testing.T, a api, id string, stages ...domain.Stage) *deliveryDoc {
	t.Helper()
	var d *deliveryDoc
	eventually(t, id+" to reach "+fmt.Sprint(stages), func() bool {
		d = getDelivery(t, a, id)
		for _, s := range stages {
			if d.Stage == s {
				return true
			}
		}
		return false
	})
	return d
}

func deliveryRequest(id string, pickup, drop domain.Location, size string, weight float64) map[string]any {
	return map[string]any{
		"deliveryId":      id,
		"pickupLocation":  pickup,
		"dropOffLocation": drop,
		"packageInfo":     map[string]any{"packageId": "pkg-" + id, "size": size, "weight": weight, "tag": "e2e"},
	}
}

// checkSchedule asserts a Scheduled delivery's ETAs follow from its drone's
// position and speed at the moment it was scheduled.
func checkSchedule(t *testing.T, a api, d *deliveryDoc) {
	t.Helper()
	require.Equal(t, domain.StageScheduled, d.Stage)
	require.NotNil(t, d.ScheduledAt)
	drone, err := a.operator(t).GetDrone(context.Background(), d.DroneID)
	require.NoError(t, err)
	require.Equal(t, d.ID, drone.CurrentDeliveryID)
	req := &domain.DeliveryRequest{PickupLocation: d.PickupLocation, DropoffLocation: d.DropoffLocation, PickupTime: d.PickupTime}
	want := domain.ComputeETA(*d.ScheduledAt, drone.Location, drone.CruiseSpeedMps, req)
	require.True(t, want.Pickup.Equal(*d.PickupETA), "pickupETA %s, want %s", d.PickupETA, want.Pickup)
	require.True(t, want.Delivery.Equal(*d.DeliveryETA), "deliveryETA %s, want %s", d.DeliveryETA, want.Delivery)
}

// ctxFor is a context for the test's own calls that only a hang outlasts.
func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	t.Cleanup(cancel)
	return ctx
}
