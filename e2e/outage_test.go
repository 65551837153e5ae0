package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/tools/apiclient"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/cosmosdouble"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/servicebusdouble"
)

// outageWindows are the lengths of the outages TestOutagesUnderLoad
// causes: short by default, so that make test stays quick;
// DRONEDELIVERY_LONG_OUTAGE=1 gives the 30 s throttle storm and
// 20 s outages, and DRONEDELIVERY_OUTAGE_WINDOW (a Go duration) sets every
// window to one length.
func outageWindows(t *testing.T) (throttle, outage time.Duration) {
	throttle, outage = 6*time.Second, 6*time.Second
	if os.Getenv("DRONEDELIVERY_LONG_OUTAGE") != "" {
		throttle, outage = 30*time.Second, 20*time.Second
	}
	if v := os.Getenv("DRONEDELIVERY_OUTAGE_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "DRONEDELIVERY_OUTAGE_WINDOW")
		throttle, outage = d, d
	}
	return throttle, outage
}

// outageFleet is the seeded fleet and outageLoadMax the deliveries one run
// posts at most, so that drones never run out: the simulator frees them
// as it flies.
const (
	outageFleet   = "400"
	outageLoadMax = 300
)

// patientLoad posts deliveries from several clients as a well-behaved
// client would: a 503 is retried with the same deliveryId after its
// Retry-After (the POST is idempotent), and so is a request that got no
// answer. It counts every answer and the 503s that came without
// Retry-After, and keeps the ids answered 202 with the time of the 202.
type patientLoad struct {
	a      api
	prefix string
	client apiclient.Client

	answered
	acceptedAt   []time.Time // under answered's lock, as accepted
	noRetryAfter int
	sent         atomic.Int64
}

func (l *patientLoad) run(stop <-chan struct{}, clients int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				if l.sent.Load() >= outageLoadMax {
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					continue
				}
				l.sent.Add(1)
				id := fmt.Sprintf("%s-%d-%d", l.prefix, c, i)
				if !l.post(stop, id, loadRequest(id, c, i)) {
					return
				}
			}
		}()
	}
	return &wg
}

// post sends one delivery until it is answered with something other than
// 503, or stop closes; it reports false when it stopped.
func (l *patientLoad) post(stop <-chan struct{}, id string, body any) bool {
	for {
		select {
		case <-stop:
			return false
		default:
		}
		resp, err := l.client.Send(context.Background(), "POST", "/api/deliveryrequests", body)
		if err != nil {
			if !pause(stop, 100*time.Millisecond) {
				return false
			}
			continue
		}
		l.count(id, resp.Status, func() {
			if resp.Status == http.StatusAccepted {
				l.acceptedAt = append(l.acceptedAt, time.Now())
			}
			if resp.Status == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
				l.noRetryAfter++
			}
		})
		if resp.Status != http.StatusServiceUnavailable {
			return true
		}
		// Retry-After is 1 or 2 s here; a shorter wait keeps the load up
		// without changing what is tested.
		if !pause(stop, 250*time.Millisecond) {
			return false
		}
	}
}

// pause paces the load: it waits d, or returns false at once when the
// load is stopped.
func pause(stop <-chan struct{}, d time.Duration) bool {
	select {
	case <-stop:
		return false
	case <-time.After(d):
		return true
	}
}

// acceptedSince returns the first delivery accepted after t, if any.
func (l *patientLoad) acceptedSince(t time.Time) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, at := range l.acceptedAt {
		if at.After(t) {
			return l.accepted[i], true
		}
	}
	return "", false
}

// outagePhase is one window of failure: start opens it, ended reports
// whether it is over. Reads are probed during the window unless frozen
// (a stopped process would hold the probe until the window ends).
type outagePhase struct {
	start  func()
	ended  func() bool
	frozen bool
}

// outageService is the service under test and how to look into its queues.
type outageService struct {
	p *proc
	a api
	// pending counts the messages waiting, scheduled or locked in the
	// chain's queues; deadLettered those in their dead-letter queues.
	pending, deadLettered func() int
	// queues describes the queues, for the log of a failed run.
	queues func() string
}

// outageRow is one line of docs/RELIABILITY.md's outage table.
type outageRow struct {
	fault                       string
	window                      time.Duration
	sent, accepted, failed      int
	statuses                    map[int]int
	firstScheduled, backlogDone time.Duration
}

func (r outageRow) String() string {
	var answers []string
	for _, status := range slices.Sorted(maps.Keys(r.statuses)) {
		answers = append(answers, fmt.Sprintf("%d×%d", status, r.statuses[status]))
	}
	return fmt.Sprintf("| %s | %v | %d sent, answers %s | %d | 0 | 0 | 0 | %d | first new delivery Scheduled %v, backlog Scheduled %v after the window |",
		r.fault, r.window, r.sent, strings.Join(answers, ", "), r.accepted, r.failed, r.firstScheduled.Round(100*time.Millisecond), r.backlogDone.Round(100*time.Millisecond))
}

// runOutage puts the service under load with the simulator flying its
// drones, opens the phases one after the other while probing reads, and
// once they are over measures the recovery and checks the promises: no
// answer 5xx but 503, every 503 with Retry-After, every accepted delivery
// Scheduled or further and none Failed, no drone on two deliveries,
// nothing dead-lettered.
func runOutage(t *testing.T, s *outageService, fault string, window time.Duration, phases ...outagePhase) outageRow {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			// The service's log is long; keep it beside the test's output.
			f := filepath.Join(os.TempDir(), fmt.Sprintf("outage-%d.log", time.Now().UnixNano()))
			if os.WriteFile(f, []byte(s.p.logs.String()), 0o644) == nil {
				t.Logf("the service's log: %s", f)
			}
			if s.queues != nil {
				t.Logf("the queues: %s", s.queues())
			}
		}
	})
	l := &patientLoad{a: s.a, prefix: "outage", client: timedClient(t, s.a, 30*time.Second)}
	stop := make(chan struct{})
	wg := l.run(stop, 4)
	stopSimulator := sync.OnceFunc(flyFleet(t, s.p.base, 30*time.Second))
	stopLoad := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopSimulator()
	defer stopLoad()
	eventually(t, "deliveries accepted before the outage", func() bool { return l.acceptedCount() >= 20 })

	probe := timedClient(t, s.a, 30*time.Second)
	reads := map[int]int{}
	for _, ph := range phases {
		ph.start()
		for !ph.ended() {
			if ph.frozen {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			// Reads during the outage: served, or 503 with Retry-After.
			l.mu.Lock()
			id := l.accepted[len(l.accepted)/2]
			l.mu.Unlock()
			resp, err := probe.Send(context.Background(), "GET", "/api/deliveries/"+id, nil)
			require.NoError(t, err)
			reads[resp.Status]++
			assert.Contains(t, []int{http.StatusOK, http.StatusServiceUnavailable}, resp.Status, "a read during the outage")
			if resp.Status == http.StatusServiceUnavailable {
				assert.NotEmpty(t, resp.Header.Get("Retry-After"), "a 503 read says when to retry")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	healed := time.Now()

	var fresh string
	eventually(t, "a delivery accepted after the outage", func() bool {
		var ok bool
		fresh, ok = l.acceptedSince(healed)
		return ok
	})
	waitStage(t, s.a, fresh, domain.StageScheduled, domain.StageHeadedToPickup, domain.StageHeadedToDropoff, domain.StageCompleted)
	row := outageRow{fault: fault, window: window, firstScheduled: time.Since(healed)}
	stopLoad()
	for _, id := range l.accepted {
		waitStage(t, s.a, id, domain.StageScheduled, domain.StageHeadedToPickup, domain.StageHeadedToDropoff, domain.StageCompleted, domain.StageFailed)
	}
	row.backlogDone = time.Since(healed)
	stopSimulator()
	eventually(t, "every queue to drain", func() bool { return s.pending() == 0 })

	row.failed = checkSettled(t, s.a, l.accepted)
	assert.Zero(t, row.failed, "no delivery failed because of the outage")
	assert.Zero(t, s.deadLettered(), "no message was dead-lettered because of the outage")
	for status, n := range l.statuses {
		assert.Contains(t, []int{http.StatusAccepted, http.StatusServiceUnavailable}, status, "%d answers of %d to a POST", n, status)
	}
	assert.Zero(t, l.noRetryAfter, "every 503 says when to retry")
	row.sent, row.accepted, row.statuses = int(l.sent.Load()), len(l.accepted), l.statuses
	t.Logf("%s: %d posted, answers %v; reads during the outage %v; a new delivery Scheduled %v and every accepted one %v after the window ended",
		fault, row.sent, l.statuses, reads, row.firstScheduled.Round(time.Millisecond), row.backlogDone.Round(time.Millisecond))
	return row
}

// startOnAzureDoubles starts the binary on the Cosmos DB and Service Bus
// doubles with a seeded fleet.
func startOnAzureDoubles(t *testing.T) (*outageService, *cosmosdouble.Cosmos, *servicebusdouble.ServiceBus) {
	t.Helper()
	cosmos := cosmosdouble.StartCosmosDouble(t)
	sb := servicebusdouble.StartServiceBus(t)
	p := startServeEnv(t, t.TempDir(), []string{
		"CosmosDBConnection=" + cosmos.ConnectionString(),
		"ServiceBusConnection=" + sb.ConnectionString(),
		fmt.Sprintf("COSMOS_DATABASE=outage%d", time.Now().UnixNano()),
		"COSMOS_BOOTSTRAP=true",
		"LOG_LEVEL=" + os.Getenv("DRONEDELIVERY_OUTAGE_LOG_LEVEL"),
	}, "-seed", outageFleet)
	require.Contains(t, p.logs.String(), `"backend":"Cosmos DB`, "the binary opened the Azure backends")
	count := func(f func(servicebusdouble.QueueStats) int) int {
		n := 0
		for _, q := range topology.Queues {
			n += f(sb.Stats(t, q))
		}
		return n
	}
	return &outageService{
		p: p, a: signUp(t, p.base),
		pending: func() int {
			return count(func(s servicebusdouble.QueueStats) int { return s.Active + s.Scheduled + s.Locked })
		},
		deadLettered: func() int { return count(func(s servicebusdouble.QueueStats) int { return s.DeadLettered }) },
		queues: func() string {
			var b strings.Builder
			for _, q := range topology.Queues {
				fmt.Fprintf(&b, "%s %+v; ", q, sb.Stats(t, q))
			}
			return b.String()
		},
	}, cosmos, sb
}

// embeddedService is the serve process p on the embedded backend, whose
// queues are read from its data folder dir.
func embeddedService(t *testing.T, p *proc, dir string) *outageService {
	db := openReadOnly(t, dir)
	return &outageService{p: p, a: signUp(t, p.base),
		pending:      func() int { return queuedMessages(t, db) },
		deadLettered: func() int { return deadLetteredMessages(t, db) },
	}
}

// heldFor is a phase that applies a fault at its start and lifts it once
// outage has passed.
func heldFor(t *testing.T, outage time.Duration, apply, lift func() error) outagePhase {
	var began time.Time
	return outagePhase{
		start: func() {
			require.NoError(t, apply())
			began = time.Now()
		},
		ended: func() bool {
			if time.Since(began) < outage {
				return false
			}
			require.NoError(t, lift())
			return true
		},
	}
}

func cosmosPhase(t *testing.T, c *cosmosdouble.Cosmos, f cosmosdouble.CosmosFault) outagePhase {
	return outagePhase{start: func() { c.Fault(t, f) }, ended: func() bool { return !c.FaultState(t).Active }}
}

func serviceBusOutage(window time.Duration) servicebusdouble.ServiceBusFault {
	return servicebusdouble.ServiceBusFault{DetachLinks: true, RefuseLinks: true, For: window}
}

// TestOutagesUnderLoad takes away what the service depends on while
// deliveries arrive and drones fly, one fault at a time, each on a fresh
// service: on the Azure adapters over the doubles, a Cosmos DB throttle
// storm (429 with x-ms-retry-after-ms), a Cosmos DB outage (503, then
// refused connections), a Service Bus outage (links detached and new ones
// refused), both at once; on the embedded backend, every write of the
// store failing as on a full disk. runOutage checks the promises after
// each and prints the recovery; the rows are docs/RELIABILITY.md's table.
// The windows are short unless DRONEDELIVERY_LONG_OUTAGE is set (see
// outageWindows).
func TestOutagesUnderLoad(t *testing.T) {
	t.Parallel()
	throttle, outage := outageWindows(t)
	var rows []string
	defer func() { t.Logf("outage table:\n%s", strings.Join(rows, "\n")) }()

	t.Run("CosmosThrottleStorm", func(t *testing.T) {
		s, cosmos, _ := startOnAzureDoubles(t)
		row := runOutage(t, s, "Cosmos DB 429 storm (x-ms-retry-after-ms 250)", throttle,
			cosmosPhase(t, cosmos, cosmosdouble.CosmosFault{Kind: cosmosdouble.CosmosThrottle, RetryAfter: 250 * time.Millisecond, For: throttle}))
		rows = append(rows, row.String())
	})
	t.Run("CosmosOutage", func(t *testing.T) {
		s, cosmos, _ := startOnAzureDoubles(t)
		row := runOutage(t, s, "Cosmos DB outage (503, then connections refused)", outage,
			cosmosPhase(t, cosmos, cosmosdouble.CosmosFault{Kind: cosmosdouble.CosmosUnavailable, For: outage / 2}),
			cosmosPhase(t, cosmos, cosmosdouble.CosmosFault{Kind: cosmosdouble.CosmosRefuse, For: outage / 2}))
		rows = append(rows, row.String())
	})
	t.Run("ServiceBusOutage", func(t *testing.T) {
		s, _, sb := startOnAzureDoubles(t)
		row := runOutage(t, s, "Service Bus outage (links detached, new ones refused)", outage, outagePhase{
			start: func() { sb.Fault(t, serviceBusOutage(outage)) },
			ended: func() bool { return !sb.FaultState(t).Active },
		})
		rows = append(rows, row.String())
	})
	t.Run("BothOutages", func(t *testing.T) {
		s, cosmos, sb := startOnAzureDoubles(t)
		row := runOutage(t, s, "Cosmos DB 503 and Service Bus outage at once", outage, outagePhase{
			start: func() {
				cosmos.Fault(t, cosmosdouble.CosmosFault{Kind: cosmosdouble.CosmosUnavailable, For: outage})
				sb.Fault(t, serviceBusOutage(outage))
			},
			ended: func() bool { return !cosmos.FaultState(t).Active && !sb.FaultState(t).Active },
		})
		rows = append(rows, row.String())
	})
	t.Run("ProcessFreeze", func(t *testing.T) {
		// SIGSTOP for longer than the queue's lock: every message the
		// process held comes back to the queue while it sleeps, and after
		// SIGCONT its workers finish work whose locks are gone.
		dir := t.TempDir()
		p := startServe(t, dir, "-seed", outageFleet, "-lock-duration", "2s")
		phase := heldFor(t, outage,
			func() error { return p.cmd.Process.Signal(syscall.SIGSTOP) },
			func() error { return p.cmd.Process.Signal(syscall.SIGCONT) })
		phase.frozen = true
		row := runOutage(t, embeddedService(t, p, dir), "process frozen (SIGSTOP, lock 2 s), embedded", outage, phase)
		rows = append(rows, row.String())
	})
	t.Run("EmbeddedStoreOutage", func(t *testing.T) {
		dir := t.TempDir()
		sw := filepath.Join(t.TempDir(), "store-fault")
		p := startServeEnv(t, dir, []string{"DRONEDELIVERY_TEST_STORE_FAULT=" + sw}, "-seed", outageFleet)
		row := runOutage(t, embeddedService(t, p, dir), "embedded store: every write fails (disk full)", outage, heldFor(t, outage,
			func() error { return os.WriteFile(sw, nil, 0o644) },
			func() error { return os.Remove(sw) }))
		rows = append(rows, row.String())
	})
}

// deadLetteredMessages counts the messages in every dead-letter queue of
// the embedded database.
func deadLetteredMessages(t *testing.T, db *sql.DB) int {
	t.Helper()
	dead := make([]any, len(topology.Queues))
	for i, q := range topology.Queues {
		dead[i] = ports.DeadLetterQueue(q)
	}
	var n int
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM messages WHERE queue IN (?`+strings.Repeat(`, ?`, len(dead)-1)+`)`, dead...).Scan(&n))
	return n
}

// TestAHungCosmosDBIsAnsweredInTime: Cosmos DB stops answering (its
// connections stay open and its requests get no answer). Readiness says
// so within its check's time, while liveness stays 200. A business's
// request and a read are answered 503 with Retry-After within
// functionapp.HandlerTimeout, while Cosmos DB still hangs; before, each
// was held until the server's write timeout closed its connection with no
// answer. Once Cosmos DB answers again, the same request sent again is
// accepted, and the service is ready again.
func TestAHungCosmosDBIsAnsweredInTime(t *testing.T) {
	t.Parallel()
	s, cosmos, _ := startOnAzureDoubles(t)
	pickup := domain.Location{Latitude: 47.6062, Longitude: -122.3321}
	body := deliveryRequest("hung-1", pickup, domain.Location{Latitude: 47.6162, Longitude: -122.3321}, "Small", 1)
	require.Equal(t, http.StatusNotFound, s.a.call(t, "GET", "/api/deliveries/hung-1/status", nil).Status, "the key is checked before the hang")

	ready := call(t, "GET", s.p.base+"/api/readyz", nil)
	require.Equal(t, http.StatusOK, ready.Status, string(ready.Body))
	assert.JSONEq(t, `{"status":"ready","checks":{"store":"ok"}}`, string(ready.Body), "Service Bus is not asked")

	cosmos.Fault(t, cosmosdouble.CosmosFault{Kind: cosmosdouble.CosmosHang})
	// Not ready, said within the check's 3 s (and the answer kept for a
	// second), while Cosmos DB still hangs.
	eventually(t, "readiness to say the store does not answer", func() bool {
		resp := call(t, "GET", s.p.base+"/api/readyz", nil)
		if resp.Status == http.StatusOK {
			return false
		}
		require.Equal(t, http.StatusServiceUnavailable, resp.Status, string(resp.Body))
		assert.Equal(t, "1", resp.Header.Get("Retry-After"))
		assert.Contains(t, string(resp.Body), "not ready: the store did not answer")
		return true
	})
	assert.True(t, cosmos.FaultState(t).Active, "said while Cosmos DB still hangs")
	assert.Equal(t, http.StatusOK, call(t, "GET", s.p.base+"/api/healthz", nil).Status, "alive all the same")
	for _, r := range []struct {
		method, path string
		body         any
	}{{"POST", "/api/deliveryrequests", body}, {"GET", "/api/deliveries/hung-1/status", nil}} {
		started := time.Now()
		// A client that waits a little longer than the handler may: an
		// answer held past that fails here rather than hanging the test.
		c := apiclient.Client{Key: s.a.key, HTTP: checkedClient(t, functionapp.HandlerTimeout+15*time.Second)}
		sent, err := c.Send(context.Background(), r.method, s.a.base+r.path, r.body)
		require.NoError(t, err, "%s %s answered", r.method, r.path)
		resp := (*response)(sent)
		assert.True(t, cosmos.FaultState(t).Active, "%s %s answered while Cosmos DB still hangs", r.method, r.path)
		require.Equal(t, http.StatusServiceUnavailable, resp.Status, "%s %s: %s", r.method, r.path, resp.Body)
		assert.Equal(t, "1", resp.Header.Get("Retry-After"))
		t.Logf("%s %s answered 503 after %v: %s", r.method, r.path, time.Since(started).Round(time.Millisecond), resp.Body)
	}

	cosmos.Heal(t)
	eventually(t, "the request sent again to be accepted", func() bool {
		return s.a.call(t, "POST", "/api/deliveryrequests", body).Status == http.StatusAccepted
	})
	eventually(t, "ready again", func() bool { return call(t, "GET", s.p.base+"/api/readyz", nil).Status == http.StatusOK })
}
