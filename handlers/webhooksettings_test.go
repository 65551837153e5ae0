package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/adapters/webhook"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// hookAccount is an account signed up with a webhook, as the tests below
// use it.
type hookAccount struct {
	AccountID, APIKey, WebhookSecret string
}

func (f *fixture) signUpWithHook(t *testing.T, url string) hookAccount {
	t.Helper()
	resp := f.call("CreateAccount", "", &functionapp.Request{Method: "POST",
		Body: fmt.Appendf(nil, `{"name":"Contoso","contactEmail":"ops@contoso.example","webhookUrl":%q}`, url)})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	var a hookAccount
	require.NoError(t, json.Unmarshal(resp.Body, &a))
	return a
}

// putWebhook calls PutWebhook for account id with key.
func (f *fixture) putWebhook(key, id, body string) *functionapp.Response {
	return f.call("PutWebhook", key, &functionapp.Request{Method: "PUT", Params: map[string]string{"id": id}, Body: []byte(body)})
}

// settled reads a 200 answer of PutWebhook.
func settled(t *testing.T, resp *functionapp.Response) (url *string, secret string) {
	t.Helper()
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"), "a secret must not be cached on the way")
	var out map[string]any
	require.NoError(t, json.Unmarshal(resp.Body, &out))
	require.Contains(t, out, "webhookUrl", "the URL is always there, null when none")
	if s, ok := out["webhookUrl"].(string); ok {
		url = &s
	}
	secret, _ = out["webhookSecret"].(string)
	return url, secret
}

// deliverOne sends one delivery of a through the chain, which notifies its
// webhook once (the scheduled notice).
func (f *fixture) deliverOne(t *testing.T, a hookAccount, id string) {
	t.Helper()
	resp := f.call("IngestDelivery", a.APIKey, &functionapp.Request{Method: "POST", Body: requestBody(id, at(0, 0), at(0.01, 0), "Small", 1)})
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	f.drain(t)
	require.Len(t, f.delivery(t, id).Notifications, 1, "one notice, kept on the delivery whether or not it was sent")
}

// received returns a copy of what r has been sent so far.
func (r *webhookReceiver) received() []webhookCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]webhookCall(nil), r.calls...)
}

// A business moves its webhook, rotates its secret and removes the
// webhook; each change holds from the next notification on in the process
// that made it, although the settings were cached there.
func TestWebhookIsChangedRotatedAndRemoved(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, allowPrivateWebhooks)
	for i := range 5 { // a drone for each delivery below
		f.putDrone(t, domain.Drone{ID: fmt.Sprint("wh-", i), Location: at(0.001*float64(i+1), 0)})
	}
	oldRecv, newRecv := &webhookReceiver{}, &webhookReceiver{}
	oldSrv, newSrv := listen(t, oldRecv), listen(t, newRecv)
	a := f.signUpWithHook(t, oldSrv.URL)

	f.deliverOne(t, a, "before")
	require.Len(t, oldRecv.received(), 1, "the settings are cached now")

	// A new URL: the next notice goes there, signed with the same secret.
	url, secret := settled(t, f.putWebhook(a.APIKey, a.AccountID, fmt.Sprintf(`{"webhookUrl":%q}`, newSrv.URL)))
	require.NotNil(t, url)
	assert.Equal(t, newSrv.URL, *url)
	assert.Empty(t, secret, "a secret not rotated is not shown again")
	f.deliverOne(t, a, "moved")
	assert.Len(t, oldRecv.received(), 1, "nothing more to the old URL")
	calls := newRecv.received()
	require.Len(t, calls, 1)
	assert.Equal(t, "moved:n1", calls[0].id)
	assert.Equal(t, webhook.Sign(a.WebhookSecret, calls[0].ts, calls[0].body), calls[0].signature)

	// A rotated secret: the next notice verifies with it and not the old.
	url, rotated := settled(t, f.putWebhook(a.APIKey, a.AccountID, fmt.Sprintf(`{"webhookUrl":%q,"rotateSecret":true}`, newSrv.URL)))
	require.NotNil(t, url)
	assert.Equal(t, newSrv.URL, *url)
	require.NotEmpty(t, rotated)
	assert.NotEqual(t, a.WebhookSecret, rotated)
	assert.True(t, strings.HasPrefix(rotated, "whsec_"), rotated)
	f.deliverOne(t, a, "rotated")
	calls = newRecv.received()
	require.Len(t, calls, 2)
	last := calls[1]
	assert.Equal(t, "rotated:n1", last.id)
	assert.Equal(t, webhook.Sign(rotated, last.ts, last.body), last.signature, "signed with the new secret")
	assert.NotEqual(t, webhook.Sign(a.WebhookSecret, last.ts, last.body), last.signature, "not with the old one")

	// Removed: the next notice is kept on the delivery and sent nowhere.
	url, secret = settled(t, f.putWebhook(a.APIKey, a.AccountID, `{"webhookUrl":null}`))
	assert.Nil(t, url)
	assert.Empty(t, secret)
	f.deliverOne(t, a, "removed")
	assert.Len(t, oldRecv.received(), 1)
	assert.Len(t, newRecv.received(), 2, "no webhook, no call")

	stored, err := f.store.Accounts.Find(context.Background(), a.AccountID)
	require.NoError(t, err)
	assert.Empty(t, stored.WebhookURL)
	assert.Equal(t, rotated, stored.WebhookSecret, "removing the URL keeps the secret for a later one")
	assert.Len(t, stored.Keys, 1, "the keys are untouched")

	// Set again, it is used again, with the secret rotated last.
	settled(t, f.putWebhook(a.APIKey, a.AccountID, fmt.Sprintf(`{"webhookUrl":%q}`, oldSrv.URL)))
	f.deliverOne(t, a, "back")
	calls = oldRecv.received()
	require.Len(t, calls, 2)
	assert.Equal(t, webhook.Sign(rotated, calls[1].ts, calls[1].body), calls[1].signature)
}

// A change made through one process reaches another, which cached the
// settings, once its entry expires: until then it sends as before, as it
// accepts a revoked key.
func TestWebhookChangeReachesOtherProcessesWithinTheCacheTTL(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, allowPrivateWebhooks)
	f.putDrone(t, domain.Drone{ID: "wh-ttl", Location: at(0.001, 0)})
	oldRecv, newRecv := &webhookReceiver{}, &webhookReceiver{}
	oldSrv, newSrv := listen(t, oldRecv), listen(t, newRecv)
	a := f.signUpWithHook(t, oldSrv.URL)
	f.deliverOne(t, a, "ttl")

	ttl := 10 * time.Second
	deps := handlers.Deps{Store: f.store, Bus: f.bus, Clock: f.clock, IDs: platform.IDs{}, Log: slog.New(slog.DiscardHandler),
		Config: handlers.Config{KeyCacheTTL: ttl, AllowPrivateWebhooks: true}}
	wireSenders(&deps)
	other := handlers.New(deps)
	// The delivery's notice offered to the other process again, as a
	// redelivery would be.
	d := f.delivery(t, "ttl")
	body, err := json.Marshal(wire.Envelope{Operation: wire.OpNotify, DeliveryID: d.ID, CorrelationID: d.CorrelationID, NotificationID: d.Notifications[0].ID})
	require.NoError(t, err)
	resend := func() {
		t.Helper()
		out, err := other.SendNotification(context.Background(), &ports.Delivered{Message: ports.Message{ID: d.Notifications[0].ID, Body: body}, DeliveryCount: 1})
		require.NoError(t, err)
		require.Empty(t, out, "delivered at once")
	}
	resend()
	require.Len(t, oldRecv.received(), 2, "the other process cached the settings")

	_, rotated := settled(t, f.putWebhook(a.APIKey, a.AccountID, fmt.Sprintf(`{"webhookUrl":%q,"rotateSecret":true}`, newSrv.URL)))
	resend()
	calls := oldRecv.received()
	require.Len(t, calls, 3, "still cached in the other process")
	assert.Equal(t, webhook.Sign(a.WebhookSecret, calls[2].ts, calls[2].body), calls[2].signature)
	assert.Empty(t, newRecv.received())

	f.clock.Advance(ttl)
	resend()
	assert.Len(t, oldRecv.received(), 3)
	calls = newRecv.received()
	require.Len(t, calls, 1, "the new settings once the entry expires")
	assert.Equal(t, webhook.Sign(rotated, calls[0].ts, calls[0].body), calls[0].signature)
}

// A webhook change is refused as sign-up refuses its webhook, and only the
// account's own key may make it; nothing refused changes the account.
func TestWebhookChangeIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t) // private webhooks not allowed
	ctx := context.Background()
	before, err := f.store.Accounts.Find(ctx, f.acct)
	require.NoError(t, err)

	for field, body := range map[string]string{
		"webhookUrl":   `{"webhookUrl":"http://127.0.0.1:7071/api/deliveryrequests"}`,
		"rotateSecret": `{"webhookUrl":"https://hooks.example/x","rotateSecret":"yes"}`,
		"secret":       `{"webhookUrl":"https://hooks.example/x","secret":"mine"}`,
		"body":         `{"webhookUrl":null} {}`,
	} {
		resp := f.putWebhook(f.key, f.acct, body)
		require.Equal(t, http.StatusBadRequest, resp.Status, "%s: %s", body, resp.Body)
		assert.Equal(t, field, problemOf(t, resp).Field, body)
	}
	// Every address sign-up refuses, and a body that forgets the URL
	// (which would otherwise read as removing the webhook).
	for _, body := range []string{
		`{"webhookUrl":"http://localhost/"}`, `{"webhookUrl":"http://169.254.169.254/"}`, `{"webhookUrl":"http://2130706433/"}`,
		`{"webhookUrl":"http://[::1]/"}`, `{"webhookUrl":"http://intranet/"}`, `{"webhookUrl":"https://u:p@hooks.example/"}`,
		`{"webhookUrl":"ftp://hooks.example/"}`, `{"webhookUrl":42}`, `{"webhookUrl":{}}`, `{}`, `{"rotateSecret":true}`, `null`,
	} {
		resp := f.putWebhook(f.key, f.acct, body)
		require.Equal(t, http.StatusBadRequest, resp.Status, "%s: %s", body, resp.Body)
		assert.Equal(t, "webhookUrl", problemOf(t, resp).Field, body)
	}
	assert.Equal(t, "id", problemOf(t, f.putWebhook(f.key, "../x", `{"webhookUrl":null}`)).Field)

	// Another account's id answers as a missing account does, whichever
	// side holds the key; the operator key is not a business's.
	otherAcct, otherKey := f.signUpOther(t)
	change := `{"webhookUrl":"https://hooks.example/x","rotateSecret":true}`
	theirs, missing := f.putWebhook(f.key, otherAcct, change), f.putWebhook(f.key, "nothing-here", change)
	require.Equal(t, http.StatusNotFound, theirs.Status, string(theirs.Body))
	assert.Equal(t, strings.ReplaceAll(string(missing.Body), "nothing-here", otherAcct), string(theirs.Body), "indistinguishable from a missing one")
	mine := f.putWebhook(otherKey, f.acct, change)
	require.Equal(t, http.StatusNotFound, mine.Status, string(mine.Body))
	assert.NotContains(t, string(mine.Body), "webhookSecret")
	resp := f.putWebhook(operatorKey, f.acct, change)
	require.Equal(t, http.StatusForbidden, resp.Status)
	assert.Equal(t, "Authorization", problemOf(t, resp).Field)
	resp = f.putWebhook("", f.acct, change)
	require.Equal(t, http.StatusUnauthorized, resp.Status)
	assert.Equal(t, "Authorization", problemOf(t, resp).Field)

	after, err := f.store.Accounts.Find(ctx, f.acct)
	require.NoError(t, err)
	assert.Equal(t, before, after, "nothing refused changed the account")
	theirAcct, err := f.store.Accounts.Find(ctx, otherAcct)
	require.NoError(t, err)
	assert.Empty(t, theirAcct.WebhookURL, "nor the other account")

	// A public URL is taken without the development setting.
	url, secret := settled(t, f.putWebhook(f.key, f.acct, `{"webhookUrl":"https://hooks.example/x?token=1"}`))
	require.NotNil(t, url)
	assert.Equal(t, "https://hooks.example/x?token=1", *url)
	assert.Empty(t, secret)
	after, err = f.store.Accounts.Find(ctx, f.acct)
	require.NoError(t, err)
	assert.Equal(t, before.WebhookSecret, after.WebhookSecret)
}
