package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/adapters/webhook"
)

// signedHook is one webhook call as its receiver saw it.
type signedHook struct {
	id, signature string
	ts            int64
	body          []byte
}

// signedHooks records the webhook calls a loopback endpoint receives.
type signedHooks struct {
	mu    sync.Mutex
	calls []signedHook
}

func (s *signedHooks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	ts, _ := strconv.ParseInt(r.Header.Get(webhook.HeaderTimestamp), 10, 64)
	s.mu.Lock()
	s.calls = append(s.calls, signedHook{id: r.Header.Get(webhook.HeaderNotificationID), signature: r.Header.Get(webhook.HeaderSignature), ts: ts, body: body})
	s.mu.Unlock()
}

func (s *signedHooks) received() []signedHook {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]signedHook(nil), s.calls...)
}

// TestWebhookIsMovedAndResignedThroughTheBinary: a business moves its
// webhook and rotates its secret through the running service, whose
// answers are held to the OpenAPI document; the next notice goes to the
// new URL signed with the new secret, and once the webhook is removed the
// answer says so with a null URL.
func TestWebhookIsMovedAndResignedThroughTheBinary(t *testing.T) {
	t.Parallel()
	p := startServeEnv(t, t.TempDir(), []string{"WEBHOOK_ALLOW_PRIVATE=true"})
	registerFleet(t, signUp(t, p.base), testFleet(4))
	before, after := &signedHooks{}, &signedHooks{}
	beforeSrv, afterSrv := httptest.NewServer(before), httptest.NewServer(after)
	defer beforeSrv.Close()
	defer afterSrv.Close()

	resp := call(t, "POST", p.base+"/api/accounts", map[string]any{"name": "Hooked", "contactEmail": "ops@hooked.example", "webhookUrl": beforeSrv.URL + "/hook"})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	var acct struct{ AccountID, APIKey, WebhookSecret string }
	resp.decode(t, &acct)
	a := api{base: p.base, key: acct.APIKey}
	location := resp.Header.Get("Location")
	assert.Equal(t, "/api/accounts/"+acct.AccountID, location)
	submit(t, a, "first", 1)
	eventually(t, "the first notice at the first URL", func() bool { return len(before.received()) == 1 })

	path := "/api/accounts/" + acct.AccountID + "/webhook"
	resp = a.call(t, "PUT", path, map[string]any{"webhookUrl": afterSrv.URL + "/hook", "rotateSecret": true})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	var set struct {
		WebhookURL    *string
		WebhookSecret string
	}
	resp.decode(t, &set)
	require.NotNil(t, set.WebhookURL)
	assert.Equal(t, afterSrv.URL+"/hook", *set.WebhookURL)
	require.NotEmpty(t, set.WebhookSecret)
	assert.NotEqual(t, acct.WebhookSecret, set.WebhookSecret)

	// The sign-up's Location reads the account back: the new URL, and
	// neither secret.
	resp = a.call(t, "GET", location, nil)
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var read struct{ AccountID, WebhookURL string }
	resp.decode(t, &read)
	assert.Equal(t, acct.AccountID, read.AccountID)
	assert.Equal(t, afterSrv.URL+"/hook", read.WebhookURL)
	assert.NotContains(t, string(resp.Body), set.WebhookSecret)
	assert.NotContains(t, string(resp.Body), acct.WebhookSecret)

	submit(t, a, "second", 1)
	eventually(t, "the second notice at the new URL", func() bool { return len(after.received()) == 1 })
	got := after.received()[0]
	assert.Equal(t, "second-0:n1", got.id)
	assert.Equal(t, webhook.Sign(set.WebhookSecret, got.ts, got.body), got.signature, "signed with the new secret")
	assert.NotEqual(t, webhook.Sign(acct.WebhookSecret, got.ts, got.body), got.signature)
	assert.Len(t, before.received(), 1, "nothing more at the old URL")

	resp = a.call(t, "PUT", path, map[string]any{"webhookUrl": nil})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	assert.JSONEq(t, `{"webhookUrl":null}`, string(resp.Body))
}
