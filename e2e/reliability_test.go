package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
	"github.com/fabrikam/dronedelivery/tools/simulator"
)

// load posts deliveries from several clients until stop closes, and keeps
// the ids of those answered 202. A refused connection (the process is down)
// is not an error here; any 5xx answer is.
type load struct {
	t      testing.TB // whose exchanges are held to the OpenAPI document
	a      api
	prefix string
	max    int64 // requests to send at most, so the fleet never runs out of drones
	answered
	sent atomic.Int64
}

// answered counts a load's answers by status and keeps the ids answered
// 202.
type answered struct {
	mu       sync.Mutex
	accepted []string
	statuses map[int]int
}

// count records the answer to the request for id, and runs also, when
// set, under the same lock.
func (a *answered) count(id string, status int, also func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.statuses == nil {
		a.statuses = map[int]int{}
	}
	a.statuses[status]++
	if status == http.StatusAccepted {
		a.accepted = append(a.accepted, id)
	}
	if also != nil {
		also()
	}
}

// acceptedCount is how many deliveries have been answered 202 so far.
func (a *answered) acceptedCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.accepted)
}

// loadRequest is client c's i-th delivery request of a load: pickups spread
// over a few blocks of Seattle, one dropoff.
func loadRequest(id string, c, i int) map[string]any {
	return deliveryRequest(id,
		domain.Location{Latitude: 47.6062 + float64(i%40)*0.0005, Longitude: -122.3321 + float64(c)*0.001},
		domain.Location{Latitude: 47.6162, Longitude: -122.3221}, "Small", 1)
}

func (l *load) run(stop <-chan struct{}, clients int) *sync.WaitGroup {
	var wg sync.WaitGroup
	client := timedClient(l.t, l.a, 10*time.Second)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if l.sent.Load() >= l.max {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				id := fmt.Sprintf("%s-%d-%d", l.prefix, c, i)
				l.sent.Add(1)
				resp, err := client.Send(context.Background(), "POST", "/api/deliveryrequests", loadRequest(id, c, i))
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				l.count(id, resp.Status, nil)
			}
		}()
	}
	return &wg
}

// settle waits until every accepted delivery is Scheduled or further and
// then until no message is left in any queue, so the checks that follow
// read one consistent state: while messages are in flight, a delivery read
// early may complete and free its drone for one read later.
func settle(t *testing.T, a api, dataDir string, accepted []string) {
	t.Helper()
	for _, id := range accepted {
		waitStage(t, a, id, domain.StageScheduled, domain.StageHeadedToPickup,
			domain.StageHeadedToDropoff, domain.StageCompleted, domain.StageFailed)
	}
	db := openReadOnly(t, dataDir)
	eventually(t, "every queue to drain", func() bool { return queuedMessages(t, db) == 0 })
}

// openReadOnly opens the binary's embedded database beside it, to look.
func openReadOnly(t *testing.T, dataDir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dataDir, "dronedelivery.db")+"?_pragma=query_only(1)&_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// queuedMessages counts the messages waiting in, delayed in or locked on
// every queue, dead-letter queues aside, in one statement: one snapshot of
// the file. A step's outputs go into the file in the same commit that
// completes its message, so zero means no work is left anywhere, not that a
// message was between two queues when each was counted.
func queuedMessages(t *testing.T, db *sql.DB) int {
	t.Helper()
	args := make([]any, len(topology.Queues))
	for i, q := range topology.Queues {
		args[i] = q
	}
	var n int
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM messages WHERE queue IN (?`+strings.Repeat(`, ?`, len(args)-1)+`)`, args...).Scan(&n))
	return n
}

// checkOutcome asserts the guarantees on every accepted delivery once the
// service has settled: it exists and is Scheduled or further, or Failed
// with a reason; its history is legal; its package belongs to it; and no
// drone serves two active deliveries.
func checkOutcome(t *testing.T, a api, dataDir string, accepted []string) {
	t.Helper()
	settle(t, a, dataDir, accepted)
	checkSettled(t, a, accepted)
}

// checkSettled is checkOutcome's checks, for a service that has settled:
// every queue drained. It returns how many deliveries ended Failed.
func checkSettled(t *testing.T, a api, accepted []string) (failed int) {
	t.Helper()
	heldBy := map[string]string{}
	for _, id := range accepted {
		d := getDelivery(t, a, id)
		if d.Stage == domain.StageFailed {
			assert.NotEmpty(t, d.FailureReason, id)
			failed++
			continue
		}
		var hist struct {
			Events []domain.Event `json:"events"`
		}
		a.call(t, "GET", "/api/deliveries/"+id+"/history", nil).decode(t, &hist)
		assert.NoError(t, domain.LegalHistory(hist.Events), id)
		drones := map[string]bool{}
		for _, e := range hist.Events {
			if e.DroneID != "" {
				drones[e.DroneID] = true
			}
		}
		assert.LessOrEqual(t, len(drones), 1, "%s was flown by %v", id, drones)
		var pkg domain.Package
		a.call(t, "GET", "/api/packages/pkg-"+id, nil).decode(t, &pkg)
		assert.Equal(t, id, pkg.DeliveryID, "the package of %s", id)
		if d.Stage != domain.StageCompleted {
			prev, dup := heldBy[d.DroneID]
			assert.False(t, dup, "drone %s on active deliveries %s and %s", d.DroneID, prev, id)
			heldBy[d.DroneID] = id
		}
	}
	for _, status := range []domain.DroneStatus{domain.DroneAssigned, domain.DroneInFlight} {
		for _, dr := range dronesIn(t, a, status) {
			d := getDelivery(t, a, dr.CurrentDeliveryID)
			assert.Equal(t, dr.ID, d.DroneID, "drone %s holds %s, which does not know it", dr.ID, d.ID)
			assert.NotEqual(t, domain.StageCompleted, d.Stage)
		}
	}
	return failed
}

// TestCrashUnderLoad kills the process with SIGKILL at random moments while
// deliveries arrive and the simulator flies drones and reports telemetry,
// restarts it each time, and then checks that nothing accepted was lost and
// nothing was double-booked. DRONEDELIVERY_LONG_CRASH=1 runs 25 kills.
func TestCrashUnderLoad(t *testing.T) {
	t.Parallel()
	kills := 6
	if os.Getenv("DRONEDELIVERY_LONG_CRASH") != "" {
		kills = 25
	}
	dir := t.TempDir()
	args := []string{"-seed", "4000", "-lock-duration", "2s"}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	l := &load{t: t, prefix: "kill", max: int64(500 * kills)}
	for round := range kills {
		p := startServe(t, dir, args...)
		if round == 0 {
			l.a = signUp(t, p.base)
		}
		l.a.base = p.base
		l.prefix = fmt.Sprintf("kill%d", round) // a fresh id space: a repeated id would be an idempotent retry
		before := l.acceptedCount()
		stop := make(chan struct{})
		wg := l.run(stop, 4)
		stopSimulator := flyFleet(t, p.base, 10*time.Second)
		// The kill comes while deliveries arrive: after this round's first
		// is accepted, at a random moment in the load's own pace.
		eventually(t, "a delivery accepted in this round", func() bool { return l.acceptedCount() > before })
		time.Sleep(time.Duration(500+rng.IntN(2500)) * time.Millisecond)
		p.kill() // mid-request, mid-message, mid-flight
		close(stop)
		stopSimulator()
		wg.Wait()
	}
	p := startServe(t, dir, args...)
	l.a.base = p.base
	for status := range l.statuses {
		assert.Less(t, status, 500, "an answer of %d", status)
	}
	t.Logf("%d kills, %d requests sent, %d accepted; answers %v", kills, l.sent.Load(), len(l.accepted), l.statuses)
	require.NotEmpty(t, l.accepted)
	checkOutcome(t, l.a, dir, l.accepted)
}

// flyFleet runs the simulator against the instance at base in the
// background, at 30 times real speed with each exchange given up after
// timeout, until the function it returns is called; that call waits for
// the simulator to end.
func flyFleet(t *testing.T, base string, timeout time.Duration) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		simulator.Run(ctx, simulator.Options{BaseURL: base, OperatorKey: e2eOperatorKey, Interval: 200 * time.Millisecond, TimeScale: 30, Out: io.Discard,
			HTTPClient: checkedClient(t, timeout)})
	}()
	return func() {
		cancel()
		<-done
	}
}

// TestGracefulShutdownUnderLoad sends SIGTERM while requests pour in: no
// request sees a 5xx, the process exits cleanly (status 0, which it gives
// only when in-flight work finished within its drain timeout), and after a
// restart every accepted delivery finishes its chain.
func TestGracefulShutdownUnderLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startServe(t, dir, "-seed", "4000")
	l := &load{t: t, prefix: "term", a: signUp(t, p.base), max: 3000}
	stop := make(chan struct{})
	wg := l.run(stop, 8)
	eventually(t, "the load to pour in", func() bool { return l.acceptedCount() >= 200 })
	began := time.Now()
	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	select {
	case <-p.done:
	case <-time.After(patience):
		t.Fatal("the process did not exit after SIGTERM")
	}
	exited := time.Since(began)
	close(stop)
	wg.Wait()
	assert.Equal(t, 0, p.cmd.ProcessState.ExitCode(), "a clean exit: drained within its drain timeout")
	assert.Equal(t, 1, logLines(p, `"shutting down`), "the log says it is shutting down\n%s", p.logs.String())
	assert.Equal(t, 1, logLines(p, `"stopped"`, "drainedIn"), "and when it has stopped")
	for status := range l.statuses {
		assert.Less(t, status, 500, "an answer of %d during shutdown", status)
	}
	t.Logf("exited %v after SIGTERM; %d requests, %d accepted; answers %v", exited.Round(time.Millisecond), l.sent.Load(), len(l.accepted), l.statuses)

	p = startServe(t, dir, "-seed", "4000")
	l.a.base = p.base
	checkOutcome(t, l.a, dir, l.accepted)
}

// TestPoisonMessagesAreDeadLetteredAndReplayed puts two bad messages on the
// delivery-requests queue: garbage, and one that names a delivery that does
// not exist yet. Both end in the dead-letter queue with a reason; the
// operator's command lists them, and replaying the second once its delivery
// exists carries that delivery through the chain.
func TestPoisonMessagesAreDeadLetteredAndReplayed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startServe(t, dir)
	a := signUp(t, p.base)
	registerFleet(t, a, testFleet(5))

	db := openEmbedded(t, dir)
	early, _ := json.Marshal(wire.Envelope{Operation: wire.OpDelivery, DeliveryID: "early", CorrelationID: "c-early"})
	require.NoError(t, db.Bus().Publish(ctxFor(t),
		ports.Message{ID: "garbage-1", Queue: topology.QueueDeliveryRequests, Body: []byte("{not json"), Operation: "delivery"},
		// The same id ingest will give its message, so ingest's own is dropped as a duplicate.
		ports.Message{ID: "early:requested", Queue: topology.QueueDeliveryRequests, Body: early, CorrelationID: "c-early", Operation: "delivery"}))
	eventually(t, "both poison messages dead-lettered", func() bool {
		_, dead, err := db.Bus().Depth(context.Background(), topology.QueueDeliveryRequests)
		require.NoError(t, err)
		return dead == 2
	})

	deadletters := func(args ...string) string {
		cmd := exec.Command(binary, append([]string{"deadletters", "-data-dir", dir}, args...)...)
		cmd.Env = append(os.Environ(), "FUNCTIONS_CUSTOMHANDLER_PORT=", "OPERATOR_KEY="+e2eOperatorKey)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		return string(out)
	}
	list := deadletters()
	assert.Contains(t, list, "garbage-1")
	assert.Contains(t, list, "early:requested")
	assert.Contains(t, list, "ProcessingFailed")
	assert.Contains(t, list, "2 dead-lettered message(s)")

	// The delivery arrives; its own message is a duplicate of the dead one,
	// dropped before the 202 left: nothing is queued that could move it.
	body := deliveryRequest("early", domain.Location{Latitude: 47.6062, Longitude: -122.3321}, domain.Location{Latitude: 47.61, Longitude: -122.33}, "Small", 1)
	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests", body).Status)
	active, dead, err := db.Bus().Depth(ctxFor(t), topology.QueueDeliveryRequests)
	require.NoError(t, err)
	assert.Equal(t, [2]int{0, 2}, [2]int{active, dead}, "the ingest message was dropped as a duplicate")
	assert.Equal(t, domain.StageCreated, getDelivery(t, a, "early").Stage, "stuck until the operator acts")

	out := deadletters("-queue", topology.QueueDeliveryRequests, "-replay", "early:requested")
	assert.True(t, strings.HasPrefix(out, "replayed early:requested"), out)
	d := waitStage(t, a, "early", domain.StageScheduled)
	checkSchedule(t, a, d)
	list = deadletters()
	assert.NotContains(t, list, "early:requested")
	assert.Contains(t, list, "1 dead-lettered message(s)")
}

// TestDeadLettersToolNeedsTheServiceStore: the tool pointed at a folder
// without the service's store says so, rather than creating an empty one
// and answering that nothing is dead-lettered.
func TestDeadLettersToolNeedsTheServiceStore(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "elsewhere")
	cmd := exec.Command(binary, "deadletters", "-data-dir", dir)
	cmd.Env = append(os.Environ(), "FUNCTIONS_CUSTOMHANDLER_PORT=")
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "no embedded store at "+filepath.Join(dir, "dronedelivery.db"))
	assert.NoDirExists(t, dir)
}
