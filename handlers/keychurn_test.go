package handlers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

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
