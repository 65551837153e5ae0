package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
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
)

// probedAccounts counts the reads of the accounts collection, and fails
// them with EUNAVAILABLE while down is set.
type probedAccounts struct {
	ports.Accounts
	reads *atomic.Int32
	down  *atomic.Bool
}

func (a probedAccounts) Find(ctx context.Context, id string) (*domain.Account, error) {
	a.reads.Add(1)
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
	f := newFixtureWith(t, func(d *handlers.Deps) {
		d.Store.Accounts = probedAccounts{Accounts: d.Store.Accounts, reads: &reads, down: &down}
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
	assert.Equal(t, map[string]string{"store": "ok", "droneIndex": "ok", "queue": "ok"}, body.Checks)

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

	down.Store(false)
	f.clock.Advance(time.Second)
	assert.Equal(t, http.StatusOK, ready().Status)
}
