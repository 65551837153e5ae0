package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
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
