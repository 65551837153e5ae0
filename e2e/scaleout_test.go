package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/tools/apiclient"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/cosmosdouble"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/servicebusdouble"
)

// scaleCenter is where the scale-out tests' drones and deliveries are.
var scaleCenter = domain.Location{Latitude: 47.62, Longitude: -122.35}

// near is a point east and north of scaleCenter by the given offsets in
// thousandths of a degree (about 75 m east, 110 m north each).
func near(east, north int) domain.Location {
	return domain.Location{Latitude: scaleCenter.Latitude + float64(north)*0.001, Longitude: scaleCenter.Longitude + float64(east)*0.001}
}

// putScaleDrone registers a drone at loc through a.
func putScaleDrone(t *testing.T, a api, id string, loc domain.Location) {
	t.Helper()
	resp := a.fleet(t, "PUT", "/api/drones/"+id, droneSpec{Location: loc, MaxPayloadKg: 5, MaxPackageSize: "Large",
		RangeKm: 60, CruiseSpeedMps: 15, BatteryPercent: 100})
	require.Contains(t, []int{http.StatusCreated, http.StatusOK}, resp.Status, string(resp.Body))
}

// TestIndexFollowsOtherInstance runs two instances of the binary on one
// Cosmos DB double, each with a Service Bus namespace of its own, so that
// each dispatches only the deliveries posted to it. A's dispatch claims the
// only drone; the telemetry that completes the delivery goes to B, whose
// track step frees the drone. A learns that from the drones container's
// change feed alone (its index polls no query; the adapter's tests count
// that), and dispatches the drone again.
func TestIndexFollowsOtherInstance(t *testing.T) {
	t.Parallel()
	cosmos := cosmosdouble.StartCosmos(t)
	sb := servicebusdouble.StartServiceBus(t)
	db := fmt.Sprintf("COSMOS_DATABASE=follow%d", time.Now().UnixNano())
	start := func(bus string) *proc {
		return startServeEnv(t, t.TempDir(), []string{"CosmosDBConnection=" + cosmos, "ServiceBusConnection=" + bus, db, "COSMOS_BOOTSTRAP=true"})
	}
	pa := start(sb.ConnectionString())
	pb := start(sb.Namespace(t, servicebusdouble.QueueProperties{}))
	a := signUp(t, pa.base)
	b := api{base: pb.base, key: a.key}

	home := near(0, 0)
	putScaleDrone(t, a, "solo", home)
	pickup, drop := near(2, 0), near(2, 6)
	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("first", pickup, drop, "Small", 1)).Status)
	require.Equal(t, "solo", waitStage(t, a, "first", domain.StageScheduled).DroneID)

	// A knows the drone is taken: it claimed it. The next delivery waits.
	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("second", pickup, drop, "Small", 1)).Status)
	eventually(t, "the second delivery to wait for a drone", func() bool {
		return strings.Contains(pa.logs.String(), `"msg":"no drone available; retrying later"`)
	})

	// B completes the first delivery and frees the drone.
	now := time.Now().UTC()
	for i, loc := range []domain.Location{pickup, drop} {
		resp := b.fleet(t, "POST", "/api/drones/solo/telemetry",
			map[string]any{"location": loc, "batteryPercent": 95, "timestamp": now.Add(time.Duration(i) * time.Millisecond).Format(time.RFC3339Nano)})
		require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	}
	waitStage(t, b, "first", domain.StageCompleted)
	assert.NotContains(t, pa.logs.String(), `"msg":"drone lost`, "A never tried the drone it knew was taken")

	d := waitStage(t, a, "second", domain.StageScheduled)
	assert.Equal(t, "solo", d.DroneID, "A dispatched the drone B freed")
	assert.Contains(t, pa.logs.String(), "drone index loaded from the change feed")
	assert.NotContains(t, pb.logs.String(), "drone index loaded", "B never dispatched, so it never loaded the index")
	assert.NotContains(t, pa.logs.String(), "change feed failed")
}

// scaleLoad posts deliveries to whichever instances are up, and drives
// each to Completed with two telemetry reports once it is Scheduled.
type scaleLoad struct {
	client apiclient.Client // the business's; paths go to base()

	mu       sync.Mutex
	bases    []string // the instances that are up
	accepted []string
	driven   map[string]bool
	statuses map[int]int
	next     atomic.Int64
}

func (l *scaleLoad) base() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bases[int(l.next.Add(1))%len(l.bases)]
}

func (l *scaleLoad) setBases(bases ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bases = bases
}

// send makes one request to an instance that is up, trying another when
// one does not answer (it was killed) or answers 503, and returns the
// status and body; stop ends the tries.
func (l *scaleLoad) send(stop <-chan struct{}, key, method, path string, body any) (int, []byte, bool) {
	for {
		select {
		case <-stop:
			return 0, nil, false
		default:
		}
		resp, err := l.client.WithKey(key).Send(context.Background(), method, l.base()+path, body)
		if err != nil {
			if !pause(stop, 20*time.Millisecond) {
				return 0, nil, false
			}
			continue
		}
		if resp.Status == http.StatusServiceUnavailable {
			if !pause(stop, 50*time.Millisecond) {
				return 0, nil, false
			}
			continue
		}
		return resp.Status, resp.Body, true
	}
}

func (l *scaleLoad) count(status int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.statuses[status]++
}

// post sends n deliveries from a client, each pickup a short hop from
// the drones' area, and records the accepted ones. It posts only while
// fewer than maxInFlight accepted deliveries are not yet driven to their
// end, so that most find a drone at once: the test is about many
// dispatchers at once, not about deliveries waiting.
func (l *scaleLoad) post(stop <-chan struct{}, client, n, maxInFlight int) {
	rng := rand.New(rand.NewPCG(uint64(client), 7))
	for i := range n {
		for l.inFlight() >= maxInFlight {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		id := fmt.Sprintf("scale-%d-%d", client, i)
		pickup := near(rng.IntN(21)-10, rng.IntN(21)-10)
		drop := near(rng.IntN(21)-10, rng.IntN(21)-10)
		status, _, ok := l.send(stop, l.client.Key, "POST", "/api/deliveryrequests", deliveryRequest(id, pickup, drop, "Small", 1))
		if !ok {
			return
		}
		l.count(status)
		if status == http.StatusAccepted {
			l.mu.Lock()
			l.accepted = append(l.accepted, id)
			l.mu.Unlock()
		}
	}
}

func (l *scaleLoad) inFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted) - len(l.driven)
}

func (l *scaleLoad) acceptedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted)
}

// drive reports, for each accepted delivery once it is Scheduled, its
// drone at the pickup and then at the dropoff, dated now: the delivery
// completes and the drone is freed, through whichever instances take the
// reports. It returns when stop closes.
func (l *scaleLoad) drive(t *testing.T, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
		l.mu.Lock()
		var todo []string
		for _, id := range l.accepted {
			if !l.driven[id] {
				todo = append(todo, id)
			}
		}
		l.mu.Unlock()
		for _, id := range todo {
			status, body, ok := l.send(stop, l.client.Key, "GET", "/api/deliveries/"+id, nil)
			if !ok {
				return
			}
			var d deliveryDoc
			if status != http.StatusOK || json.Unmarshal(body, &d) != nil {
				t.Errorf("read %s: %d %s", id, status, body)
				continue
			}
			if d.Stage != domain.StageScheduled {
				continue
			}
			now := time.Now().UTC()
			for i, loc := range []domain.Location{d.PickupLocation, d.DropoffLocation} {
				status, body, ok := l.send(stop, e2eOperatorKey, "POST", "/api/drones/"+d.DroneID+"/telemetry",
					map[string]any{"location": loc, "batteryPercent": 95, "timestamp": now.Add(time.Duration(i) * time.Millisecond).Format(time.RFC3339Nano)})
				if !ok {
					return
				}
				if status != http.StatusAccepted {
					t.Errorf("telemetry of %s: %d %s", d.DroneID, status, body)
				}
			}
			l.mu.Lock()
			l.driven[id] = true
			l.mu.Unlock()
		}
	}
}

// logCount counts the log lines of the instances whose msg is msg.
func logCount(logs []string, msg string) int {
	n := 0
	for _, l := range logs {
		n += strings.Count(l, `"msg":"`+msg+`"`)
	}
	return n
}

// TestScaleOutUnderLoad runs three instances of the standalone runtime on
// one Cosmos DB double and one Service Bus double, as three containers of
// one app would run in Azure, puts them under load (deliveries posted to
// all three, each driven to Completed by telemetry posted to any of them),
// kills one with SIGKILL mid-run and starts it again. Every accepted
// delivery completes; by the deliveries' histories no drone was on two
// deliveries at once; and where an instance's drone index was stale (a
// drone claimed or freed by another instance and not yet brought by the
// change feed) the cost shows as claims lost and tried again, or waits
// for a drone, never as an error. The figures go to docs/RELIABILITY.md.
func TestScaleOutUnderLoad(t *testing.T) {
	t.Parallel()
	const (
		drones     = 24
		clients    = 4
		perClient  = 30
		killAfter  = 35 // accepted deliveries before the kill
		startAfter = 60 // accepted deliveries before the restart
	)
	cosmos := cosmosdouble.StartCosmos(t)
	sb := servicebusdouble.StartServiceBus(t)
	// Short locks, so the messages the killed instance held come back soon.
	for _, q := range topology.Queues {
		sb.CreateQueue(t, q, 3*time.Second, 0)
	}
	env := []string{"CosmosDBConnection=" + cosmos, "ServiceBusConnection=" + sb.ConnectionString(),
		fmt.Sprintf("COSMOS_DATABASE=scale%d", time.Now().UnixNano()), "COSMOS_BOOTSTRAP=true"}
	var all []*proc // every instance started, the killed one too, for the logs
	start := func() *proc {
		p := startServeEnv(t, t.TempDir(), env)
		all = append(all, p)
		return p
	}
	procs := []*proc{start(), start(), start()}
	t.Cleanup(func() {
		if t.Failed() {
			for i, p := range all {
				f := filepath.Join(os.TempDir(), fmt.Sprintf("scaleout-%d-%d.log", time.Now().UnixNano(), i))
				if os.WriteFile(f, []byte(p.logs.String()), 0o644) == nil {
					t.Logf("instance %d's log: %s", i, f)
				}
			}
		}
	})
	began := time.Now()
	a := signUp(t, procs[0].base)
	for i := range drones {
		putScaleDrone(t, a, fmt.Sprintf("scale-drone-%02d", i), near(4*(i%6)-10, 4*(i/6)-6))
	}

	l := &scaleLoad{client: apiclient.Client{Key: a.key, HTTP: checkedClient(t, 30*time.Second)}, driven: map[string]bool{}, statuses: map[int]int{}}
	l.setBases(procs[0].base, procs[1].base, procs[2].base)
	stop := make(chan struct{})
	var posting, driving sync.WaitGroup
	for c := range clients {
		posting.Go(func() { l.post(stop, c, perClient, drones*2/3) })
	}
	driving.Go(func() { l.drive(t, stop) })
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		posting.Wait()
		driving.Wait()
	}()

	eventually(t, "deliveries accepted before the kill", func() bool { return l.acceptedCount() >= killAfter })
	l.setBases(procs[0].base, procs[2].base)
	procs[1].kill()
	killedAt := l.acceptedCount()
	eventually(t, "deliveries accepted while an instance is down", func() bool { return l.acceptedCount() >= startAfter })
	procs[1] = start()
	l.setBases(procs[0].base, procs[1].base, procs[2].base)
	posting.Wait()

	accepted := slices.Clone(l.accepted)
	require.Len(t, accepted, clients*perClient, "every delivery is accepted: answers %v", l.statuses)
	pending := slices.Clone(accepted)
	var first *deliveryDoc // the first delivery not yet Completed, when the wait gives up
	defer func() {
		if t.Failed() && first != nil {
			t.Logf("%d deliveries not Completed; the first, %s, is %s with drone %q (%s)", len(pending), first.ID, first.Stage, first.DroneID, first.FailureReason)
			t.Logf("its history: %s", a.call(t, "GET", "/api/deliveries/"+first.ID+"/history", nil).Body)
			if first.DroneID != "" {
				t.Logf("its drone: %s", a.fleet(t, "GET", "/api/drones/"+first.DroneID, nil).Body)
			}
			l.mu.Lock()
			t.Logf("driven by the test: %v", l.driven[first.ID])
			l.mu.Unlock()
		}
	}()
	eventually(t, "every accepted delivery to be Completed", func() bool {
		for len(pending) > 0 {
			if first = getDelivery(t, a, pending[0]); first.Stage != domain.StageCompleted {
				return false
			}
			pending = pending[1:]
		}
		return true
	})
	close(stop)
	driving.Wait()
	elapsed := time.Since(began)

	checkSettled(t, a, accepted)
	checkNoOverlap(t, a, accepted)
	for _, q := range topology.Queues {
		assert.Zero(t, sb.Stats(t, q).DeadLettered, "dead-lettered in %s", q)
	}

	var logs []string
	for _, p := range all {
		logs = append(logs, p.logs.String())
	}
	lost := logCount(logs, "drone lost to a concurrent claim; trying the next")
	waits := logCount(logs, "no drone available; retrying later")
	errs := 0
	for _, text := range logs {
		for line := range strings.Lines(text) {
			if strings.Contains(line, `"level":"ERROR"`) {
				errs++
				t.Logf("error logged: %s", line)
			}
		}
	}
	assert.Zero(t, errs, "a stale index shows as retries, never as errors")
	assert.Zero(t, logCount(logs, "cosmos: reading the drone index's change feed failed; keeping the index and retrying"), "change feed reads")
	loads := logCount(logs, "cosmos: drone index loaded from the change feed")
	assert.LessOrEqual(t, loads, len(all), "each instance loaded its index once at most")
	t.Logf("scale-out: 3 instances, %d drones, %d deliveries accepted (answers %v), one instance killed after %d and restarted after %d; all Completed in %v; lost claims retried: %d; waits for a drone: %d; errors logged: %d; index loads: %d",
		drones, len(accepted), l.statuses, killedAt, startAfter, elapsed.Round(100*time.Millisecond), lost, waits, errs, loads)
}

// checkNoOverlap reads each delivery's history and checks that no drone
// flew two of them at once: the span from a delivery's Scheduled event to
// its Completed event (both carry the drone) lies within the drone's claim,
// so two spans of one drone must not overlap.
func checkNoOverlap(t *testing.T, a api, ids []string) {
	t.Helper()
	type span struct {
		id       string
		from, to time.Time
	}
	byDrone := map[string][]span{}
	for _, id := range ids {
		var hist struct {
			Events []domain.Event `json:"events"`
		}
		a.call(t, "GET", "/api/deliveries/"+id+"/history", nil).decode(t, &hist)
		s := span{id: id}
		drone := ""
		for _, e := range hist.Events {
			switch {
			case e.Stage == domain.StageScheduled && e.Kind == "":
				s.from, drone = e.At, e.DroneID
			case e.Stage == domain.StageCompleted && e.Kind == "":
				s.to = e.At
			}
		}
		if !assert.NotEmpty(t, drone, "%s has a Scheduled event with its drone", id) || !assert.False(t, s.to.IsZero(), "%s completed", id) {
			continue
		}
		byDrone[drone] = append(byDrone[drone], s)
	}
	for drone, spans := range byDrone {
		slices.SortFunc(spans, func(x, y span) int { return x.from.Compare(y.from) })
		for i := 1; i < len(spans); i++ {
			assert.False(t, spans[i].from.Before(spans[i-1].to), "drone %s on %s (%v–%v) and %s (%v–%v) at once",
				drone, spans[i-1].id, spans[i-1].from, spans[i-1].to, spans[i].id, spans[i].from, spans[i].to)
		}
	}
}
