package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// newBacklogFixture is a fixture whose ingest sheds load once three
// messages wait in the chain's queues.
func newBacklogFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, func(d *handlers.Deps) { d.Config.MaxBacklog = 3 })
}

func TestIngestShedsLoadPastTheBacklogBound(t *testing.T) {
	t.Parallel()
	f := newBacklogFixture(t)

	// Nothing consumes the queue, so the backlog grows with every delivery.
	for i := range 3 {
		f.clock.Advance(time.Second)
		resp := f.ingest(t, requestBody("bp-"+string(rune('a'+i)), at(0, 0), at(0.01, 0), "Small", 1))
		require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	}
	f.clock.Advance(time.Second)
	resp := f.ingest(t, requestBody("bp-shed", at(0, 0), at(0.01, 0), "Small", 1))
	assert.Equal(t, http.StatusServiceUnavailable, resp.Status)
	assert.Equal(t, "2", resp.Header.Get("Retry-After"))
	var p functionapp.ProblemDetails
	require.NoError(t, json.Unmarshal(resp.Body, &p))
	assert.Contains(t, p.Detail, "busy")
	_, err := f.store.Deliveries.Find(context.Background(), "bp-shed")
	assert.True(t, domain.IsCode(err, domain.ENOTFOUND), "a shed request stores nothing")
	active, _, err := f.bus.Depth(context.Background(), topology.QueueDeliveryRequests)
	require.NoError(t, err)
	assert.Equal(t, 3, active, "and queues nothing")

	// Once the backlog drains, ingest accepts again.
	msgs := f.receive(t, topology.QueueDeliveryRequests)
	for _, m := range msgs {
		require.NoError(t, f.bus.Complete(context.Background(), m))
	}
	f.clock.Advance(time.Second)
	assert.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("bp-later", at(0, 0), at(0.01, 0), "Small", 1)).Status)
}

// Deliveries waiting for a drone sit in the queue as delayed retries; they
// do not count toward the bound, so they cannot shut ingest for everyone.
func TestDelayedRetriesDoNotCountTowardTheBacklog(t *testing.T) {
	t.Parallel()
	f := newBacklogFixture(t)
	ctx := context.Background()
	for i := range 5 {
		require.NoError(t, f.bus.Publish(ctx, ports.Message{ID: fmt.Sprint("waiting-", i), Queue: topology.QueueDeliveryRequests,
			Body: []byte(`{}`), NotBefore: time.Now().Add(time.Hour)}))
	}
	active, _, err := f.bus.Depth(ctx, topology.QueueDeliveryRequests)
	require.NoError(t, err)
	require.Equal(t, 5, active)
	ready, err := f.bus.Ready(ctx, topology.QueueDeliveryRequests)
	require.NoError(t, err)
	assert.Zero(t, ready)
	for i := range 3 {
		f.clock.Advance(time.Second)
		resp := f.ingest(t, requestBody(fmt.Sprint("new-", i), at(0, 0), at(0.01, 0), "Small", 1))
		require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	}
	f.clock.Advance(time.Second)
	assert.Equal(t, http.StatusServiceUnavailable, f.ingest(t, requestBody("shed", at(0, 0), at(0.01, 0), "Small", 1)).Status,
		"the three ready ones do count")
}

// probedAccounts counts the reads of the accounts collection, holds them
// while hold is set, and fails them with EUNAVAILABLE while down is set.
type probedAccounts struct {
	ports.Accounts
	reads  *atomic.Int32
	down   *atomic.Bool
	hold   *atomic.Pointer[chan struct{}]
	panics *atomic.Bool
}

func (a probedAccounts) Find(ctx context.Context, id string) (*domain.Account, error) {
	a.reads.Add(1)
	if a.panics != nil && a.panics.Load() {
		panic("a fault in the store's adapter")
	}
	if held := a.hold.Load(); held != nil {
		<-*held
	}
	if a.down.Load() {
		return nil, domain.Unavailable(errors.New("connection refused by cosmos.internal:443"), "the store is unavailable")
	}
	return a.Accounts.Find(ctx, id)
}

// Readiness answers 200 while the store, the drone index and the queue
// answer; 503 with Retry-After naming the store while it does not, without
// its reason; and, however many probes ask, reads the store once a second
// at most.
func TestReadinessFollowsTheStoreOnceASecond(t *testing.T) {
	t.Parallel()
	var reads atomic.Int32
	var down atomic.Bool
	var hold atomic.Pointer[chan struct{}]
	var panics atomic.Bool
	f := newFixtureWith(t, func(d *handlers.Deps) {
		d.Store.Accounts = probedAccounts{Accounts: d.Store.Accounts, reads: &reads, down: &down, hold: &hold, panics: &panics}
	})
	ready := func() *functionapp.Response {
		return f.call("Readyz", "", &functionapp.Request{Method: http.MethodGet})
	}

	resp := ready()
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var body struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	require.NoError(t, json.Unmarshal(resp.Body, &body))
	assert.Equal(t, "ready", body.Status)
	assert.Equal(t, map[string]string{"store": "ok", "queue": "ok"}, body.Checks)

	before := reads.Load()
	for range 5 {
		require.Equal(t, http.StatusOK, ready().Status)
	}
	assert.Equal(t, before, reads.Load(), "answered from the last check within the second")

	down.Store(true)
	require.Equal(t, http.StatusOK, ready().Status, "the last answer holds for its second")
	f.clock.Advance(time.Second)
	resp = ready()
	require.Equal(t, http.StatusServiceUnavailable, resp.Status, string(resp.Body))
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.Contains(t, string(resp.Body), "not ready: the store did not answer; retry")
	assert.NotContains(t, string(resp.Body), "cosmos.internal", "the reason stays in the log")
	assert.Equal(t, before+1, reads.Load(), "one read for the new second")

	// A panic in the check, which runs in a goroutine of its own, is the
	// store not answering, not the end of the process.
	panics.Store(true)
	f.clock.Advance(time.Second)
	resp = ready()
	require.Equal(t, http.StatusServiceUnavailable, resp.Status, string(resp.Body))
	assert.Contains(t, string(resp.Body), "the store did not answer")
	panics.Store(false)

	down.Store(false)
	f.clock.Advance(time.Second)
	assert.Equal(t, http.StatusOK, ready().Status)

	// A check that hangs holds only the probe that started it: the others
	// get the last answer meanwhile.
	held := make(chan struct{})
	hold.Store(&held)
	f.clock.Advance(time.Second)
	first := make(chan int)
	go func() { first <- ready().Status }()
	require.Eventually(t, func() bool { return reads.Load() == before+4 }, 10*time.Second, time.Millisecond, "the check under way reads the store")
	assert.Equal(t, http.StatusOK, ready().Status, "the last answer, at once")
	hold.Store(nil)
	close(held)
	assert.Equal(t, http.StatusOK, <-first)
}
