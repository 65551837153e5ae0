package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

func TestIngestShedsLoadPastTheBacklogBound(t *testing.T) {
	t.Parallel()
	db, err := embedded.Open(filepath.Join(t.TempDir(), "bp.db"), embedded.Options{})
	require.NoError(t, err)
	defer db.Close()
	c := &clock{}
	c.Set(t0)
	h := handlers.New(handlers.Deps{Store: db.Store(), Bus: db.Bus(), Clock: c, IDs: platform.IDs{}, Log: slog.New(slog.DiscardHandler),
		Config: handlers.Config{OperatorKey: operatorKey, MaxBacklog: 3}})
	f := &fixture{db: db, store: db.Store(), bus: db.Bus(), clock: c, h: h, reg: h.Registry()}
	f.acct, f.key = f.signUp(t, `{"name":"Busy","contactEmail":"ops@busy.example"}`)

	// Nothing consumes the queue, so the backlog grows with every delivery.
	for i := range 3 {
		c.Advance(time.Second)
		resp := f.ingest(t, requestBody("bp-"+string(rune('a'+i)), at(0, 0), at(0.01, 0), "Small", 1))
		require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	}
	c.Advance(time.Second)
	resp := f.ingest(t, requestBody("bp-shed", at(0, 0), at(0.01, 0), "Small", 1))
	assert.Equal(t, http.StatusServiceUnavailable, resp.Status)
	assert.Equal(t, "2", resp.Header.Get("Retry-After"))
	var p functionapp.ProblemDetails
	require.NoError(t, json.Unmarshal(resp.Body, &p))
	assert.Contains(t, p.Detail, "busy")
	_, err = db.Store().Deliveries.Find(context.Background(), "bp-shed")
	assert.True(t, domain.IsCode(err, domain.ENOTFOUND), "a shed request stores nothing")
	active, _, err := db.Bus().Depth(context.Background(), topology.QueueDeliveryRequests)
	require.NoError(t, err)
	assert.Equal(t, 3, active, "and queues nothing")

	// Once the backlog drains, ingest accepts again.
	msgs := f.receive(t, topology.QueueDeliveryRequests)
	for _, m := range msgs {
		require.NoError(t, db.Bus().Complete(context.Background(), m))
	}
	c.Advance(time.Second)
	assert.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("bp-later", at(0, 0), at(0.01, 0), "Small", 1)).Status)
}

// Deliveries waiting for a drone sit in the queue as delayed retries; they
// do not count toward the bound, so they cannot shut ingest for everyone.
func TestDelayedRetriesDoNotCountTowardTheBacklog(t *testing.T) {
	t.Parallel()
	db, err := embedded.Open(filepath.Join(t.TempDir(), "bp.db"), embedded.Options{})
	require.NoError(t, err)
	defer db.Close()
	c := &clock{}
	c.Set(t0)
	h := handlers.New(handlers.Deps{Store: db.Store(), Bus: db.Bus(), Clock: c, IDs: platform.IDs{}, Log: slog.New(slog.DiscardHandler),
		Config: handlers.Config{OperatorKey: operatorKey, MaxBacklog: 3}})
	f := &fixture{db: db, store: db.Store(), bus: db.Bus(), clock: c, h: h, reg: h.Registry()}
	f.acct, f.key = f.signUp(t, `{"name":"Patient","contactEmail":"ops@patient.example"}`)
	ctx := context.Background()
	for i := range 5 {
		require.NoError(t, db.Bus().Publish(ctx, ports.Message{ID: fmt.Sprint("waiting-", i), Queue: topology.QueueDeliveryRequests,
			Body: []byte(`{}`), NotBefore: time.Now().Add(time.Hour)}))
	}
	active, _, err := db.Bus().Depth(ctx, topology.QueueDeliveryRequests)
	require.NoError(t, err)
	require.Equal(t, 5, active)
	ready, err := db.Bus().Ready(ctx, topology.QueueDeliveryRequests)
	require.NoError(t, err)
	assert.Zero(t, ready)
	for i := range 3 {
		c.Advance(time.Second)
		resp := f.ingest(t, requestBody(fmt.Sprint("new-", i), at(0, 0), at(0.01, 0), "Small", 1))
		require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	}
	c.Advance(time.Second)
	assert.Equal(t, http.StatusServiceUnavailable, f.ingest(t, requestBody("shed", at(0, 0), at(0.01, 0), "Small", 1)).Status,
		"the three ready ones do count")
}
