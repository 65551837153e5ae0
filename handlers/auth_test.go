package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

func problemOf(t *testing.T, resp *functionapp.Response) functionapp.ProblemDetails {
	t.Helper()
	assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	var p functionapp.ProblemDetails
	require.NoError(t, json.Unmarshal(resp.Body, &p), string(resp.Body))
	return p
}

func TestEveryBusinessAndFleetFunctionNeedsItsKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	wellFormedUnknown := domain.APIKeyTag + strings.Repeat("a", domain.KeyPrefixLength) + "_" + strings.Repeat("b", domain.KeySecretLength)
	// The fixture's key with its secret changed: the prefix exists.
	prefix, _ := domain.SplitAPIKey(f.key)
	wrongSecret := domain.APIKeyTag + prefix + "_" + strings.Repeat("c", domain.KeySecretLength)
	for name, fn := range f.reg {
		if fn.HTTP == nil || fn.Public {
			continue
		}
		for _, header := range []string{"", "Basic " + f.key, "Bearer", "Bearer ", "bearer nonsense", "Bearer " + wellFormedUnknown, "Bearer " + wrongSecret, "Bearer " + operatorKey + "x"} {
			req := &functionapp.Request{Method: "GET", Params: map[string]string{"id": "x"}, Header: http.Header{}}
			if header != "" {
				req.Header.Set("Authorization", header)
			}
			resp := functionapp.Call(context.Background(), fn.HTTP, req)
			require.Equal(t, http.StatusUnauthorized, resp.Status, "%s with %q: %s", name, header, resp.Body)
			assert.Equal(t, "Authorization", problemOf(t, resp).Field, name)
			assert.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer", name)
		}
	}
	fleetFns := []string{"PutDrone", "GetDrone", "ListDrones", "PostTelemetry", "GetPause", "ListPauses"}
	for _, name := range fleetFns {
		resp := f.biz(name, &functionapp.Request{Method: "GET", Params: map[string]string{"id": "x"}})
		assert.Equal(t, http.StatusForbidden, resp.Status, "%s with a business key", name)
	}
	for _, name := range []string{"IngestDelivery", "GetPackage", "CancelDelivery", "CreateApiKey", "RevokeApiKey", "PutWebhook"} {
		resp := f.fleet(name, &functionapp.Request{Method: "GET", Params: map[string]string{"id": "x"}})
		assert.Equal(t, http.StatusForbidden, resp.Status, "%s with the operator key", name)
	}
	// The operator's drones fly any delivery, so it may read one, and its
	// history, which audits the operator's actions.
	f.putDrone(t, domain.Drone{ID: "op", Location: at(0.001, 0)})
	f.scheduled(t, "flown", at(0, 0), at(0.01, 0))
	for _, name := range []string{"GetDelivery", "GetDeliveryStatus", "GetHistory"} {
		assert.Equal(t, http.StatusOK, f.fleet(name, &functionapp.Request{Method: "GET", Params: map[string]string{"id": "flown"}}).Status, name)
	}
}

// The operator reads the audit of its own actions in any delivery's
// history; a business still reads only its own deliveries' histories, and
// another account's answers as a missing one does.
func TestOperatorReadsDeliveryHistory(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "near", Location: at(0.011, 0)}, domain.Drone{ID: "far", Location: at(0.03, 0)})
	f.scheduled(t, "d", at(0.01, 0), at(0.02, 0))
	f.act(t, "DroneAction", "near", map[string]any{"action": "ground", "reason": "bird strike"})
	f.drain(t)

	history := func(key, id string) *functionapp.Response {
		return f.call("GetHistory", key, &functionapp.Request{Method: "GET", Params: map[string]string{"id": id}})
	}
	resp := history(operatorKey, "d")
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var h struct {
		DeliveryID string
		Events     []domain.Event
	}
	require.NoError(t, json.Unmarshal(resp.Body, &h))
	assert.Equal(t, "d", h.DeliveryID)
	var audits []domain.Event
	for _, e := range h.Events {
		if e.Kind == domain.EventOperator {
			audits = append(audits, e)
		}
	}
	require.Len(t, audits, 1, "the ground, audited: %s", resp.Body)
	assert.Equal(t, "operator", audits[0].By)
	assert.Equal(t, "ground: bird strike", audits[0].Note)
	assert.Equal(t, "near", audits[0].DroneID)
	assert.False(t, audits[0].At.IsZero())
	assert.Equal(t, string(history(f.key, "d").Body), string(resp.Body), "the owner reads the same history")
	assert.Equal(t, http.StatusNotFound, history(operatorKey, "nothing-here").Status)

	_, other := f.signUpOther(t)
	theirs, missing := history(other, "d"), history(other, "nothing-here")
	require.Equal(t, http.StatusNotFound, theirs.Status, string(theirs.Body))
	assert.Equal(t, strings.ReplaceAll(string(missing.Body), "nothing-here", "d"), string(theirs.Body), "indistinguishable from a missing one")
}

func TestNoOperatorKeyClosesTheFleet(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	h := handlers.New(handlers.Deps{Store: f.store, Bus: f.bus, Clock: f.clock, IDs: platform.IDs{}, Log: slog.New(slog.DiscardHandler)})
	for _, token := range []string{"", " ", operatorKey} {
		req := &functionapp.Request{Method: "GET", Header: http.Header{"Authorization": {"Bearer " + token}}}
		assert.Equal(t, http.StatusUnauthorized, functionapp.Call(context.Background(), h.Registry()["ListDrones"].HTTP, req).Status, "%q", token)
	}
}

func TestContentTypeIsChecked(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	body := requestBody("ct", at(0, 0), at(0.01, 0), "Small", 1)
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1", "application/jsonx", "json", ";;"} {
		resp := f.biz("IngestDelivery", &functionapp.Request{Method: "POST", Header: http.Header{"Content-Type": {ct}}, Body: body})
		require.Equal(t, http.StatusUnsupportedMediaType, resp.Status, ct)
		assert.Equal(t, "Content-Type", problemOf(t, resp).Field)
	}
	req := &functionapp.Request{Method: "POST", Header: http.Header{}, Body: body}
	req.Header.Set("Authorization", "Bearer "+f.key)
	resp := functionapp.Call(context.Background(), f.reg["IngestDelivery"].HTTP, req)
	assert.Equal(t, http.StatusUnsupportedMediaType, resp.Status, "a body without a Content-Type")
	_, err := f.store.Deliveries.Find(context.Background(), "ct")
	assert.True(t, domain.IsCode(err, domain.ENOTFOUND), "nothing stored")

	resp = f.biz("IngestDelivery", &functionapp.Request{Method: "POST", Header: http.Header{"Content-Type": {"Application/JSON; Charset=UTF-8"}}, Body: body})
	assert.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	resp = f.call("Healthz", "", &functionapp.Request{Method: "GET", Header: http.Header{"Content-Type": {"text/plain"}}})
	assert.Equal(t, http.StatusOK, resp.Status, "no body, no media type to check")
}

func TestOwnerComesFromTheKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	other, _ := f.signUpOther(t)
	with := func(owner string) []byte {
		var m map[string]any
		require.NoError(t, json.Unmarshal(requestBody("own-1", at(0, 0), at(0.01, 0), "Small", 1), &m))
		m["ownerId"] = owner
		b, _ := json.Marshal(m)
		return b
	}
	resp := f.biz("IngestDelivery", &functionapp.Request{Method: "POST", Body: with(other)})
	require.Equal(t, http.StatusForbidden, resp.Status)
	assert.Equal(t, "ownerId", problemOf(t, resp).Field)
	_, err := f.store.Deliveries.Find(context.Background(), "own-1")
	assert.True(t, domain.IsCode(err, domain.ENOTFOUND), "nothing stored")

	first := f.biz("IngestDelivery", &functionapp.Request{Method: "POST", Body: with(f.acct)})
	require.Equal(t, http.StatusAccepted, first.Status, string(first.Body))
	assert.Equal(t, f.acct, f.delivery(t, "own-1").OwnerID)
	again := f.ingest(t, requestBody("own-1", at(0, 0), at(0.01, 0), "Small", 1))
	assert.Equal(t, http.StatusAccepted, again.Status, "naming the owner or not is the same request")
	assert.JSONEq(t, string(first.Body), string(again.Body))
}

func TestAccountsSeeOnlyTheirOwn(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "iso", Location: at(0.001, 0)})
	f.scheduled(t, "mine", at(0, 0), at(0.01, 0))
	_, intruder := f.signUp(t, `{"name":"Mallory","contactEmail":"m@mallory.example"}`)
	ctx := context.Background()
	sub := f.biz("PostNotifyMeRequest", &functionapp.Request{Method: "POST", Params: map[string]string{"id": "mine"}, Body: []byte(`{"emailAddress":"me@example.com"}`)})
	require.Equal(t, http.StatusCreated, sub.Status, string(sub.Body))
	var mySub struct{ ID string }
	require.NoError(t, json.Unmarshal(sub.Body, &mySub))
	before := f.snapshot(t, []string{"mine"}, []string{"iso"})

	as := func(key, name, method, id, body string) *functionapp.Response {
		req := &functionapp.Request{Method: method, Params: map[string]string{"id": id, "subscriptionId": mySub.ID}}
		if body != "" {
			req.Body = []byte(body)
		}
		return f.call(name, key, req)
	}
	calls := []struct{ name, method, id, body string }{
		{"GetDelivery", "GET", "", ""},
		{"GetDeliveryStatus", "GET", "", ""},
		{"GetHistory", "GET", "", ""},
		{"GetNotifications", "GET", "", ""},
		{"GetPackage", "GET", "pkg-", ""},
		{"CancelDelivery", "DELETE", "", ""},
		{"RescheduleDelivery", "PATCH", "", `{"pickupTime":"2030-01-01T00:00:00Z"}`},
		{"PostNotifyMeRequest", "POST", "", `{"emailAddress":"m@mallory.example"}`},
		{"ListNotifyMeRequests", "GET", "", ""},
		{"DeleteNotifyMeRequest", "DELETE", "", ""},
		{"GetOutbox", "GET", "", ""},
		{"PostConfirmation", "POST", "", `{"dateTime":"2026-11-26T10:00:00Z","geoCoordinates":{"latitude":47.61,"longitude":-122.33},"confirmationType":"None"}`},
	}
	for _, c := range calls {
		theirs := as(intruder, c.name, c.method, c.id+"mine", c.body)
		missing := as(intruder, c.name, c.method, c.id+"nothing-here", c.body)
		require.Equal(t, http.StatusNotFound, theirs.Status, "%s of another account's delivery: %s", c.name, theirs.Body)
		// Indistinguishable: the same answer, bar the id it names.
		assert.Equal(t, strings.ReplaceAll(string(missing.Body), "nothing-here", "mine"), string(theirs.Body), c.name)
		assert.Equal(t, missing.Header, theirs.Header, c.name)
	}
	assert.Equal(t, before, f.snapshot(t, []string{"mine"}, []string{"iso"}), "another account changed nothing")
	d := f.delivery(t, "mine")
	require.Len(t, d.Subscriptions, 1, "the owner's subscription is still there")
	assert.Equal(t, "me@example.com", d.Subscriptions[0].EmailAddress)
	assert.Nil(t, d.Confirmation)

	// A delivery id is one space for all accounts: reusing another's id is
	// a conflict that shows nothing of the delivery.
	resp := f.call("IngestDelivery", intruder, &functionapp.Request{Method: "POST", Body: requestBody("mine", at(0, 0), at(0.01, 0), "Small", 1)})
	assert.Equal(t, http.StatusConflict, resp.Status)
	assert.NotContains(t, string(resp.Body), f.acct)
	assert.Equal(t, before, f.snapshot(t, []string{"mine"}, []string{"iso"}))

	// The owner still reaches everything.
	for _, c := range calls[:5] {
		assert.Equal(t, http.StatusOK, f.biz(c.name, &functionapp.Request{Method: c.method, Params: map[string]string{"id": c.id + "mine"}}).Status, c.name)
	}
	_, err := f.store.Deliveries.Find(ctx, "mine")
	require.NoError(t, err)
}

func TestKeysAreIssuedAndRevoked(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	issue := func(key, acct string) *functionapp.Response {
		return f.call("CreateApiKey", key, &functionapp.Request{Method: "POST", Params: map[string]string{"id": acct}})
	}
	revoke := func(key, acct, prefix string) *functionapp.Response {
		return f.call("RevokeApiKey", key, &functionapp.Request{Method: "DELETE", Params: map[string]string{"id": acct, "prefix": prefix}})
	}
	works := func(key string) bool {
		return f.call("GetDeliveriesSummary", key, &functionapp.Request{Method: "GET"}).Status == http.StatusOK
	}
	first, _ := domain.SplitAPIKey(f.key)

	resp := issue(f.key, f.acct)
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	var second struct{ Prefix, APIKey string }
	require.NoError(t, json.Unmarshal(resp.Body, &second))
	p, ok := domain.SplitAPIKey(second.APIKey)
	require.True(t, ok, second.APIKey)
	assert.Equal(t, second.Prefix, p)
	assert.True(t, works(f.key))
	assert.True(t, works(second.APIKey))

	// The key just used, revoked with the other, stops working at once.
	require.True(t, works(f.key)) // cached now
	require.Equal(t, http.StatusNoContent, revoke(second.APIKey, f.acct, first).Status)
	assert.False(t, works(f.key), "a revoked key is refused")
	assert.Equal(t, http.StatusNoContent, revoke(second.APIKey, f.acct, first).Status, "revoking again is a no-op")
	stored, err := f.store.APIKeys.Find(context.Background(), first)
	require.NoError(t, err)
	assert.NotNil(t, stored.RevokedAt)

	// The account lists its keys by prefix, the revoked one as revoked,
	// and shows neither a key nor its webhook secret again.
	resp = f.call("GetAccount", second.APIKey, &functionapp.Request{Method: "GET", Params: map[string]string{"id": f.acct}})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var account struct {
		AccountID string
		Keys      []domain.KeyInfo
	}
	require.NoError(t, json.Unmarshal(resp.Body, &account))
	assert.Equal(t, f.acct, account.AccountID)
	revokedAt := map[string]bool{}
	for _, k := range account.Keys {
		revokedAt[k.Prefix] = k.RevokedAt != nil
	}
	assert.Equal(t, map[string]bool{first: true, second.Prefix: false}, revokedAt)
	assert.NotContains(t, string(resp.Body), "webhookSecret")
	assert.NotContains(t, string(resp.Body), second.APIKey)

	resp = revoke(second.APIKey, f.acct, second.Prefix)
	assert.Equal(t, http.StatusConflict, resp.Status, "the last active key stays")
	assert.True(t, works(second.APIKey))

	// Another account's key or account is not there for this one.
	otherAcct, otherKey := f.signUpOther(t)
	otherPrefix, _ := domain.SplitAPIKey(otherKey)
	assert.Equal(t, http.StatusNotFound, revoke(second.APIKey, f.acct, otherPrefix).Status)
	assert.Equal(t, http.StatusNotFound, revoke(second.APIKey, otherAcct, otherPrefix).Status)
	assert.Equal(t, http.StatusNotFound, issue(second.APIKey, otherAcct).Status)
	assert.Equal(t, http.StatusNotFound, f.call("GetAccount", second.APIKey, &functionapp.Request{Method: "GET", Params: map[string]string{"id": otherAcct}}).Status)
	assert.True(t, works(otherKey))
	assert.Equal(t, http.StatusBadRequest, revoke(second.APIKey, f.acct, "../x").Status)
	assert.Equal(t, http.StatusNotFound, revoke(second.APIKey, f.acct, "NOT-A-PREFIX").Status, "no key has that shape")
	assert.Equal(t, http.StatusBadRequest, f.call("CreateApiKey", second.APIKey, &functionapp.Request{Method: "POST",
		Params: map[string]string{"id": f.acct}, Body: []byte(`{"name":"x"}`)}).Status, "the body, if any, is empty")

	// At most MaxActiveKeys.
	for i := 1; i < domain.MaxActiveKeys; i++ {
		require.Equal(t, http.StatusCreated, issue(second.APIKey, f.acct).Status, "key %d", i+1)
	}
	assert.Equal(t, http.StatusConflict, issue(second.APIKey, f.acct).Status)
	acct, err := f.store.Accounts.Find(context.Background(), f.acct)
	require.NoError(t, err)
	assert.Equal(t, domain.MaxActiveKeys, acct.ActiveKeys())
	assert.Len(t, acct.Keys, domain.MaxActiveKeys+1)
}

// A key revoked through one process keeps working in another only until
// that process's cache entry expires.
func TestRevocationReachesOtherProcessesWithinTheCacheTTL(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ttl := 10 * time.Second
	other := handlers.New(handlers.Deps{Store: f.store, Bus: f.bus, Clock: f.clock, IDs: platform.IDs{}, Log: slog.New(slog.DiscardHandler),
		Config: handlers.Config{KeyCacheTTL: ttl}})
	summary := func(reg functionapp.Registry, key string) int {
		req := &functionapp.Request{Method: "GET", Header: http.Header{"Authorization": {"Bearer " + key}}}
		return functionapp.Call(context.Background(), reg["GetDeliveriesSummary"].HTTP, req).Status
	}
	resp := f.biz("CreateApiKey", &functionapp.Request{Method: "POST", Params: map[string]string{"id": f.acct}})
	require.Equal(t, http.StatusCreated, resp.Status)
	var spare struct{ APIKey string }
	require.NoError(t, json.Unmarshal(resp.Body, &spare))
	reg := other.Registry()
	require.Equal(t, http.StatusOK, summary(reg, f.key))

	prefix, _ := domain.SplitAPIKey(f.key)
	require.Equal(t, http.StatusNoContent, f.call("RevokeApiKey", spare.APIKey, &functionapp.Request{Method: "DELETE",
		Params: map[string]string{"id": f.acct, "prefix": prefix}}).Status)
	assert.Equal(t, http.StatusOK, summary(reg, f.key), "still cached in the other process")
	f.clock.Advance(ttl)
	assert.Equal(t, http.StatusUnauthorized, summary(reg, f.key), "refused once the entry expires")
}

func TestSignUpValidates(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for field, body := range map[string]string{
		"name":         `{"contactEmail":"a@b.example"}`,
		"contactEmail": `{"name":"A","contactEmail":"not-an-address"}`,
		"webhookUrl":   `{"name":"A","contactEmail":"a@b.example","webhookUrl":"ftp://x.example"}`,
		"admin":        `{"name":"A","contactEmail":"a@b.example","admin":true}`,
		"body":         `{"name":"A","contactEmail":"a@b.example"} {}`,
	} {
		resp := f.call("CreateAccount", "", &functionapp.Request{Method: "POST", Body: []byte(body)})
		require.Equal(t, http.StatusBadRequest, resp.Status, field)
		assert.Equal(t, field, problemOf(t, resp).Field)
	}
	for body, detail := range map[string]string{
		`{"name":"A"}`:                        "contactEmail is required",
		`{"name":"A","contactEmail":" "}`:     "contactEmail is required",
		`{"name":"A","contactEmail":"a.b.c"}`: "contactEmail must be an e-mail address",
	} {
		resp := f.call("CreateAccount", "", &functionapp.Request{Method: "POST", Body: []byte(body)})
		require.Equal(t, http.StatusBadRequest, resp.Status, body)
		assert.Contains(t, problemOf(t, resp).Detail, detail, body)
	}
	resp := f.call("CreateAccount", "", &functionapp.Request{Method: "POST", Body: []byte(`{"name":"A","contactEmail":"a@b.example"}`)})
	require.Equal(t, http.StatusCreated, resp.Status)
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"), "the key must not be cached on the way")
	var out map[string]any
	require.NoError(t, json.Unmarshal(resp.Body, &out))
	key, _ := out["apiKey"].(string)
	prefix, ok := domain.SplitAPIKey(key)
	require.True(t, ok, key)
	assert.Equal(t, prefix, out["prefix"], "named as a new key names it")
	assert.Equal(t, prefix, out["keyPrefix"], "and as sign-up first named it")
	assert.Equal(t, fmt.Sprintf("/api/accounts/%s", out["accountId"]), resp.Header.Get("Location"))
}

// keyChurn issues and revokes keys of the fixture's account through the
// HTTP functions, as a tenant would.
type keyChurn struct {
	t *testing.T
	f *fixture
}

func (c keyChurn) issue(with string) (prefix, key string) {
	c.t.Helper()
	resp := c.f.call("CreateApiKey", with, &functionapp.Request{Method: "POST", Params: map[string]string{"id": c.f.acct}})
	require.Equal(c.t, http.StatusCreated, resp.Status, string(resp.Body))
	var out struct{ Prefix, APIKey string }
	require.NoError(c.t, json.Unmarshal(resp.Body, &out))
	return out.Prefix, out.APIKey
}

func (c keyChurn) revoke(with, prefix string) int {
	return c.f.call("RevokeApiKey", with, &functionapp.Request{Method: "DELETE",
		Params: map[string]string{"id": c.f.acct, "prefix": prefix}}).Status
}

func (c keyChurn) works(key string) bool {
	c.t.Helper()
	status := c.f.call("GetDeliveriesSummary", key, &functionapp.Request{Method: "GET"}).Status
	require.Contains(c.t, []int{http.StatusOK, http.StatusUnauthorized}, status)
	return status == http.StatusOK
}

func (c keyChurn) account() (*domain.Account, int) {
	c.t.Helper()
	a, err := c.f.store.Accounts.Find(context.Background(), c.f.acct)
	require.NoError(c.t, err)
	b, err := json.Marshal(a)
	require.NoError(c.t, err)
	return a, len(b)
}

func revokedRecords(a *domain.Account) int { return len(a.Keys) - a.ActiveKeys() }

// Issuing and revoking keys over and over, as a hostile tenant might, does
// not grow the account document: it records at most MaxRevokedKeys revoked
// keys, the most recent, besides its active ones. Every revoked key keeps
// failing authentication, whether the account still records it or not,
// and the active keys, the last-key rule and the active-key limit are as
// they were.
func TestKeyChurnKeepsTheAccountBounded(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := keyChurn{t, f}
	const cycles = 200
	var revoked []string // keys, oldest first
	var prefixes []string
	for i := range cycles {
		f.clock.Advance(time.Second)
		p, key := c.issue(f.key)
		require.True(t, c.works(key), "cycle %d", i)
		require.Equal(t, http.StatusNoContent, c.revoke(f.key, p), "cycle %d", i)
		revoked = append(revoked, key)
		prefixes = append(prefixes, p)
		a, size := c.account()
		require.LessOrEqual(t, revokedRecords(a), domain.MaxRevokedKeys, "cycle %d", i)
		require.LessOrEqual(t, len(a.Keys), domain.MaxActiveKeys+domain.MaxRevokedKeys, "cycle %d", i)
		require.Less(t, size, 4096, "cycle %d: the account document stays small", i)
	}
	a, _ := c.account()
	assert.Equal(t, 1, a.ActiveKeys())
	assert.Equal(t, domain.MaxRevokedKeys, revokedRecords(a))
	// The records kept are of the most recently revoked keys.
	for _, k := range a.Keys {
		if k.RevokedAt != nil {
			assert.Contains(t, prefixes[cycles-domain.MaxRevokedKeys:], k.Prefix)
		}
	}

	// Revoked keys are refused, recorded or not; the documents of the
	// recorded ones say so, and those of the others are deleted, so the
	// key store is bounded too.
	assert.True(t, c.works(f.key), "the active key works")
	for i, key := range revoked {
		assert.False(t, c.works(key), "revoked key %d", i)
		k, err := f.store.APIKeys.Find(context.Background(), prefixes[i])
		if i < cycles-domain.MaxRevokedKeys {
			assert.Equal(t, domain.ENOTFOUND, domain.ErrorCode(err), "key %d: %v", i, err)
			continue
		}
		require.NoError(t, err)
		assert.NotNil(t, k.RevokedAt, "key %d", i)
	}
	// Revoking a recorded key again is a no-op; a key no longer recorded
	// answers as an unknown one.
	assert.Equal(t, http.StatusNoContent, c.revoke(f.key, prefixes[cycles-1]))
	assert.Equal(t, http.StatusNoContent, c.revoke(f.key, prefixes[cycles-domain.MaxRevokedKeys]))
	assert.Equal(t, http.StatusNotFound, c.revoke(f.key, prefixes[0]))

	// The last active key stays, and the limit on active keys holds.
	first, _ := domain.SplitAPIKey(f.key)
	assert.Equal(t, http.StatusConflict, c.revoke(f.key, first))
	var active []string
	for range domain.MaxActiveKeys - 1 {
		_, key := c.issue(f.key)
		active = append(active, key)
	}
	resp := f.call("CreateApiKey", f.key, &functionapp.Request{Method: "POST", Params: map[string]string{"id": f.acct}})
	assert.Equal(t, http.StatusConflict, resp.Status, string(resp.Body))
	for _, key := range append(active, f.key) {
		assert.True(t, c.works(key))
	}
	a, size := c.account()
	assert.Equal(t, domain.MaxActiveKeys, a.ActiveKeys())
	assert.Len(t, a.Keys, domain.MaxActiveKeys+domain.MaxRevokedKeys)
	assert.Less(t, size, 4096)
}

// A revocation that marked the account but never reached the key document
// (its DELETE failed half way and was not sent again) is finished when the
// account drops the key's record: the key does not outlive the last trace
// that would let a DELETE reach it.
func TestDroppingAKeyRecordFinishesItsRevocation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := keyChurn{t, f}
	half, halfKey := c.issue(f.key)
	f.clock.Advance(time.Second)
	_, err := f.store.Accounts.Update(context.Background(), f.acct, func(a *domain.Account) error {
		for i := range a.Keys {
			if a.Keys[i].Prefix == half {
				at := f.clock.Now()
				a.Keys[i].RevokedAt = &at
			}
		}
		return nil
	})
	require.NoError(t, err)
	require.True(t, c.works(halfKey), "only the account is marked")

	for range domain.MaxRevokedKeys {
		f.clock.Advance(time.Second)
		p, _ := c.issue(f.key)
		require.Equal(t, http.StatusNoContent, c.revoke(f.key, p))
	}
	a, _ := c.account()
	for _, k := range a.Keys {
		assert.NotEqual(t, half, k.Prefix, "the oldest revoked key's record is dropped")
	}
	assert.False(t, c.works(halfKey), "and the key with it")
	_, err = f.store.APIKeys.Find(context.Background(), half)
	assert.Equal(t, domain.ENOTFOUND, domain.ErrorCode(err), "its document deleted: %v", err)
}

// TestEveryFunctionRefusesWhatItDoesNotTake sends a query parameter the
// API document does not declare, and a body where it declares none, to
// functions that take neither: each answers 400 naming it and does
// nothing, where before the request went ahead. The Functions host's own
// key (code), a declared parameter and an empty body object still pass.
func TestEveryFunctionRefusesWhatItDoesNotTake(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pickup, drop := at(0, 0), at(0.01, 0)
	q := url.Values{"foo": {"1"}}

	resp := f.biz("IngestDelivery", &functionapp.Request{Method: http.MethodPost, Query: q, Body: requestBody("q1", pickup, drop, "Small", 1)})
	require.Equal(t, http.StatusBadRequest, resp.Status, string(resp.Body))
	assert.Equal(t, "foo", problemOf(t, resp).Field)
	get := f.biz("GetDelivery", &functionapp.Request{Method: http.MethodGet, Params: map[string]string{"id": "q1"}})
	assert.Equal(t, http.StatusNotFound, get.Status, "nothing was accepted")

	resp = f.fleet("PutDrone", &functionapp.Request{Method: http.MethodPut, Params: map[string]string{"id": "qd"}, Query: q,
		Body: []byte(`{"location":{"latitude":47.6,"longitude":-122.3}}`)})
	require.Equal(t, http.StatusBadRequest, resp.Status, string(resp.Body))
	assert.Equal(t, "foo", problemOf(t, resp).Field)
	get = f.fleet("GetDrone", &functionapp.Request{Method: http.MethodGet, Params: map[string]string{"id": "qd"}})
	assert.Equal(t, http.StatusNotFound, get.Status, "nothing was stored")

	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("q2", pickup, drop, "Small", 1)).Status)
	resp = f.biz("CancelDelivery", &functionapp.Request{Method: http.MethodDelete, Params: map[string]string{"id": "q2"}, Query: url.Values{"force": {"true"}}})
	require.Equal(t, http.StatusBadRequest, resp.Status, string(resp.Body))
	assert.Equal(t, "force", problemOf(t, resp).Field)
	assert.Equal(t, domain.StageCreated, f.delivery(t, "q2").Stage, "not cancelled")

	// A body where the operation takes none is refused too; an empty
	// object, which some clients send with every request, says nothing.
	resp = f.biz("CancelDelivery", &functionapp.Request{Method: http.MethodDelete, Params: map[string]string{"id": "q2"}, Body: []byte(`{"reason":"x"}`)})
	require.Equal(t, http.StatusBadRequest, resp.Status, string(resp.Body))
	assert.Equal(t, "body", problemOf(t, resp).Field)
	assert.Equal(t, domain.StageCreated, f.delivery(t, "q2").Stage, "not cancelled")

	// The Functions host's key, in any case, is the host's.
	get = f.biz("GetDelivery", &functionapp.Request{Method: http.MethodGet, Params: map[string]string{"id": "q2"}, Query: url.Values{"Code": {"k"}}})
	assert.Equal(t, http.StatusOK, get.Status, string(get.Body))
	d := f.delivery(t, "q2")
	resp = f.biz("CancelDelivery", &functionapp.Request{Method: http.MethodDelete, Params: map[string]string{"id": "q2"}, Body: []byte(" {\n } ")})
	require.Equal(t, http.StatusNoContent, resp.Status, string(resp.Body))
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("q3", pickup, drop, "Small", 1)).Status)
	d = f.delivery(t, "q3")

	// A page opened from a link takes what whoever passed the link on added.
	for _, q := range []url.Values{{"interval": {"5000"}}, {"utm_source": {"newsletter"}}} {
		page := f.call("TrackPage", "", &functionapp.Request{Method: http.MethodGet, Params: map[string]string{"trackingId": d.TrackingID}, Query: q})
		assert.Equal(t, http.StatusOK, page.Status, "%v: %s", q, page.Body)
	}
	// The feed the page reads is the API's, held to the document.
	feed := f.call("TrackFeed", "", &functionapp.Request{Method: http.MethodGet, Params: map[string]string{"trackingId": d.TrackingID}, Query: q})
	assert.Equal(t, http.StatusBadRequest, feed.Status, string(feed.Body))
}
