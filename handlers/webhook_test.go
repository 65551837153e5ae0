package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// scripted answers every webhook with its current err.
type scripted struct {
	mu    sync.Mutex
	err   error
	calls []ports.Webhook
}

func (s *scripted) Post(_ context.Context, w ports.Webhook) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, w)
	return s.err
}

func (s *scripted) answer(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func attemptOf(t *testing.T, m ports.Message) int {
	t.Helper()
	var env wire.Envelope
	require.NoError(t, json.Unmarshal(m.Body, &env))
	return env.Attempt
}

// TestWebhookOutcomes: a webhook held back for its account's share waits
// without spending an attempt, under an id drawn from the message's; one
// held by an open circuit spends one and waits at least the cool-down;
// a refused address ends the notification at once.
func TestWebhookOutcomes(t *testing.T) {
	t.Parallel()
	hooks := &scripted{err: &ports.WebhookHeld{Busy: true, RetryAfter: 7 * time.Second}}
	f := newFixtureWith(t, func(d *handlers.Deps) { d.Webhooks = hooks })
	acct, key := f.signUp(t, `{"name":"Contoso","contactEmail":"ops@contoso.example","webhookUrl":"https://hooks.contoso.example/h?token=x"}`)
	f.putDrone(t, domain.Drone{ID: "w3", Location: at(0.001, 0)})
	body, _ := json.Marshal(map[string]any{"deliveryId": "held", "pickupLocation": at(0, 0),
		"dropOffLocation": at(0.01, 0), "packageInfo": map[string]any{"size": "Small", "weight": 1}})
	require.Equal(t, http.StatusAccepted, f.call("IngestDelivery", key, &functionapp.Request{Method: "POST", Body: body}).Status)
	f.drain(t)

	require.Len(t, hooks.calls, 1)
	assert.Equal(t, acct, hooks.calls[0].AccountID, "fairness is keyed by the account")
	require.Len(t, f.delayed[topology.QueueNotifications], 1)
	wait := f.delayed[topology.QueueNotifications][0]
	assert.True(t, strings.HasPrefix(wait.ID, "held:n1:wait-"), wait.ID)
	assert.Equal(t, t0.Add(7*time.Second), wait.NotBefore)
	assert.Zero(t, attemptOf(t, wait), "waiting its turn spends no attempt")

	msg := f.receiveDelayed(t, topology.QueueNotifications)
	again, err := f.h.SendNotification(context.Background(), msg)
	require.NoError(t, err)
	require.Len(t, again, 1)
	assert.NotEqual(t, wait.ID, again[0].ID, "each wait is a new message")
	redelivered, err := f.h.SendNotification(context.Background(), msg)
	require.NoError(t, err)
	assert.Equal(t, again[0].ID, redelivered[0].ID, "a redelivery makes the same copy, which duplicate detection drops")

	hooks.answer(&ports.WebhookHeld{RetryAfter: 10 * time.Minute})
	out, err := f.h.SendNotification(context.Background(), msg)
	require.NoError(t, err)
	require.Len(t, out, 1)
	assert.Equal(t, "held:n1:retry-1", out[0].ID)
	assert.Equal(t, 1, attemptOf(t, out[0]), "an open circuit spends an attempt")
	assert.Equal(t, t0.Add(10*time.Minute), out[0].NotBefore, "not before the cool-down, which is longer than the backoff")

	hooks.answer(fmt.Errorf("webhook to https://hooks.contoso.example: %w: 10.0.0.8 is a private address", ports.ErrWebhookRefused))
	out, err = f.h.SendNotification(context.Background(), msg)
	assert.True(t, domain.IsPermanent(err), "a refused address is not tried again: %v", err)
	assert.Empty(t, out)
}

func TestSignUpRefusesPrivateWebhooks(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, u := range []string{"http://127.0.0.1:7071/api/deliveryrequests", "http://localhost/", "http://169.254.169.254/", "http://2130706433/"} {
		resp := f.call("CreateAccount", "", &functionapp.Request{Method: "POST",
			Body: fmt.Appendf(nil, `{"name":"A","contactEmail":"a@b.example","webhookUrl":%q}`, u)})
		assert.Equal(t, http.StatusBadRequest, resp.Status, u)
		assert.Contains(t, string(resp.Body), `"webhookUrl"`, u)
	}
	allowed := newFixtureWith(t, allowPrivateWebhooks)
	resp := allowed.call("CreateAccount", "", &functionapp.Request{Method: "POST",
		Body: []byte(`{"name":"A","contactEmail":"a@b.example","webhookUrl":"http://127.0.0.1:7071/h"}`)})
	assert.Equal(t, http.StatusCreated, resp.Status, "allowed for development")
}
