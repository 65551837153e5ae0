package handlers

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/logctx"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// signedUp is the 201 body of a sign-up: the only time the key and the
// webhook secret are shown. The key is named by prefix, as everywhere else
// in the API; keyPrefix repeats it for the clients written when sign-up
// alone called it that (the README's walkthrough among them).
type signedUp struct {
	AccountID     string `json:"accountId"`
	Name          string `json:"name"`
	ContactEmail  string `json:"contactEmail"`
	WebhookURL    string `json:"webhookUrl,omitempty"`
	APIKey        string `json:"apiKey"`
	Prefix        string `json:"prefix"`
	KeyPrefix     string `json:"keyPrefix"` // deprecated: the same as Prefix
	WebhookSecret string `json:"webhookSecret"`
}

// issuedKey is the 201 body of POST /api/accounts/{id}/keys.
type issuedKey struct {
	Prefix    string    `json:"prefix"`
	APIKey    string    `json:"apiKey"`
	CreatedAt time.Time `json:"createdAt"`
}

var keyEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return strings.ToLower(keyEncoding.EncodeToString(b))
}

// newWebhookSecret returns a secret to sign an account's webhooks with:
// 192 random bits, tagged so that a leaked one is recognised for what it is.
func newWebhookSecret() string { return "whsec_" + randomToken(24) }

// newAPIKey returns a key's secret text and its stored form. The key reads
// "dd_<prefix>_<secret>": the prefix names the key in lists and revocations,
// the 160-bit secret is kept only as a SHA-256 hash (a fast hash is right
// for a high-entropy secret; slow hashes are for passwords).
func newAPIKey(accountID string, now time.Time) (string, *domain.APIKey) {
	prefix := randomToken(10)
	secret := randomToken(20)
	plain := domain.APIKeyTag + prefix + "_" + secret
	sum := sha256.Sum256([]byte(plain))
	return plain, &domain.APIKey{Prefix: prefix, AccountID: accountID, Hash: hex.EncodeToString(sum[:]), CreatedAt: now}
}

// CreateAccount serves POST /api/accounts: a business signs up and gets its
// account id, an API key and the secret that signs its webhooks. The
// account is written before its key, so a failure in between leaves an
// account nobody can use rather than a key for an account that does not
// exist.
func (h *Handlers) CreateAccount(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	s, err := wire.ParseSignUp(req.Body, h.cfg.AllowPrivateWebhooks)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	now := h.clock.Now()
	a := &domain.Account{
		ID:            h.ids.NewID(),
		Name:          s.Name,
		ContactEmail:  s.ContactEmail,
		WebhookURL:    s.WebhookURL,
		WebhookSecret: newWebhookSecret(),
		CreatedAt:     now,
	}
	plain, key := newAPIKey(a.ID, now)
	a.Keys = []domain.KeyInfo{{Prefix: key.Prefix, CreatedAt: now}}
	ctx = logctx.With(ctx, "accountId", a.ID)
	if err := h.store.Accounts.Create(ctx, a.ID, a); err != nil {
		return h.errorResponse(ctx, err)
	}
	if err := h.storeKey(ctx, key); err != nil {
		return h.errorResponse(ctx, err)
	}
	h.log.InfoContext(ctx, "account created", "keyPrefix", key.Prefix)
	resp := functionapp.JSON(http.StatusCreated, signedUp{AccountID: a.ID, Name: a.Name, ContactEmail: a.ContactEmail,
		WebhookURL: a.WebhookURL, APIKey: plain, Prefix: key.Prefix, KeyPrefix: key.Prefix, WebhookSecret: a.WebhookSecret})
	resp.Header.Set("Location", "/api/accounts/"+a.ID)
	resp.Header.Set("Cache-Control", "no-store")
	return resp
}

// accountView is the 200 body of GET /api/accounts/{id}: the account as
// its owner may see it again, its keys by prefix, without the webhook's
// secret (shown only at sign-up and when rotated) or any key.
type accountView struct {
	AccountID    string           `json:"accountId"`
	Name         string           `json:"name"`
	ContactEmail string           `json:"contactEmail"`
	WebhookURL   string           `json:"webhookUrl,omitempty"`
	Keys         []domain.KeyInfo `json:"keys"`
	CreatedAt    time.Time        `json:"createdAt"`
}

// GetAccount serves GET /api/accounts/{id} (200) with the account's own
// key: its name, contact, webhook URL and keys (prefix, when issued and,
// for the revoked ones it still lists, when revoked). Another account's
// id answers as a missing one does.
func (h *Handlers) GetAccount(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	acct, err := ownAccount(ctx, req.Params["id"])
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	a, err := h.store.Accounts.Find(ctx, acct)
	if err != nil {
		return h.errorResponse(ctx, notFoundAs(err, "account %s not found", acct))
	}
	keys := a.Keys
	if keys == nil {
		keys = []domain.KeyInfo{}
	}
	resp := functionapp.JSON(http.StatusOK, accountView{AccountID: a.ID, Name: a.Name, ContactEmail: a.ContactEmail,
		WebhookURL: a.WebhookURL, Keys: keys, CreatedAt: a.CreatedAt})
	resp.Header.Set("Cache-Control", "no-store")
	return resp
}

// storeKey writes a new key document and drops any memory of its prefix
// having been absent.
func (h *Handlers) storeKey(ctx context.Context, k *domain.APIKey) error {
	defer h.keys.forget(k.Prefix)
	if err := h.store.APIKeys.Create(ctx, k.Prefix, k); err != nil {
		return domain.Unavailable(err, "the API key could not be stored; retry")
	}
	return nil
}

// revokeKey marks the key document under prefix revoked at now, and drops
// it from this process's key cache. It answers notFound for a key that
// owned rejects (another account's or drone's), and leaves a key revoked
// already as it is.
func (h *Handlers) revokeKey(ctx context.Context, prefix string, now time.Time, notFound error, owned func(*domain.APIKey) bool) error {
	defer h.keys.forget(prefix)
	_, err := h.store.APIKeys.Update(ctx, prefix, func(k *domain.APIKey) error {
		if !owned(k) {
			return notFound
		}
		if k.RevokedAt != nil {
			return ports.ErrSkip
		}
		k.RevokedAt = &now
		return nil
	})
	return err
}

// ownAccount checks that the {id} of an account route is the caller's own
// account; any other id answers as a missing account does.
func ownAccount(ctx context.Context, id string) (string, error) {
	acct, err := callerAccount(ctx)
	if err != nil {
		return "", err
	}
	if err := domain.ValidID("id", id); err != nil {
		return "", err
	}
	if id != acct {
		return "", domain.Errorf(domain.ENOTFOUND, "account %s not found", id)
	}
	return acct, nil
}

// CreateAPIKey serves POST /api/accounts/{id}/keys (201): another key for
// the caller's account, shown only in this answer. The body, if any, must
// be an empty JSON object. An account holds at most domain.MaxActiveKeys
// unrevoked keys (409 beyond).
func (h *Handlers) CreateAPIKey(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	acct, err := ownAccount(ctx, req.Params["id"])
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	if len(req.Body) > 0 {
		if err := wire.DecodeStrict(req.Body, &struct{}{}); err != nil {
			return h.errorResponse(ctx, err)
		}
	}
	now := h.clock.Now()
	plain, key := newAPIKey(acct, now)
	// The account lists the key before the key exists, so the limit holds
	// under concurrent requests; a failure in between leaves a listed key
	// that never worked, which revoking clears.
	_, err = h.store.Accounts.Update(ctx, acct, func(a *domain.Account) error {
		if a.ActiveKeys() >= domain.MaxActiveKeys {
			return domain.Errorf(domain.ECONFLICT, "the account already has %d active keys; revoke one first", domain.MaxActiveKeys)
		}
		a.Keys = append(a.Keys, domain.KeyInfo{Prefix: key.Prefix, CreatedAt: now})
		return nil
	})
	if err != nil {
		return h.errorResponse(ctx, notFoundAs(err, "account %s not found", acct))
	}
	if err := h.storeKey(ctx, key); err != nil {
		return h.errorResponse(ctx, err)
	}
	h.log.InfoContext(ctx, "API key issued", "keyPrefix", key.Prefix)
	resp := functionapp.JSON(http.StatusCreated, issuedKey{Prefix: key.Prefix, APIKey: plain, CreatedAt: now})
	resp.Header.Set("Location", "/api/accounts/"+acct+"/keys/"+key.Prefix)
	resp.Header.Set("Cache-Control", "no-store")
	return resp
}

// RevokeAPIKey serves DELETE /api/accounts/{id}/keys/{prefix} (204). The
// account's last active key cannot be revoked (409), because nothing could
// then issue another; revoking a revoked key again is a no-op while the
// account still records it, which it does for its domain.MaxRevokedKeys
// most recently revoked keys (an older one answers 404, as an unknown key
// does). The key stops working in this process at once and in others
// within the key cache's TTL.
func (h *Handlers) RevokeAPIKey(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	acct, err := ownAccount(ctx, req.Params["id"])
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	prefix := req.Params["prefix"]
	if err := domain.ValidID("prefix", prefix); err != nil {
		return h.errorResponse(ctx, err)
	}
	notFound := domain.Errorf(domain.ENOTFOUND, "key %s not found", prefix)
	if !domain.ValidKeyPrefix(prefix) {
		return h.errorResponse(ctx, notFound) // no key has it, so no read is needed to say so
	}
	now := h.clock.Now()
	stale, err := h.retireStaleKeys(ctx, acct, prefix, now)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	// The account is marked first: it is where the last-key rule can be
	// held against concurrent revocations. A retry after a failure below
	// finds it marked and finishes the key document.
	_, err = h.store.Accounts.Update(ctx, acct, func(a *domain.Account) error {
		i := -1
		for j := range a.Keys {
			if a.Keys[j].Prefix == prefix {
				i = j
			}
		}
		switch {
		case i < 0:
			return notFound
		case a.Keys[i].RevokedAt != nil:
			return ports.ErrSkip
		case a.ActiveKeys() <= 1:
			return domain.Errorf(domain.ECONFLICT, "key %s is the account's only active key; issue another before revoking it", prefix)
		}
		t := now
		a.Keys[i].RevokedAt = &t
		a.DropRevokedKeys(stale)
		return nil
	})
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	err = h.revokeKey(ctx, prefix, now, notFound, func(k *domain.APIKey) bool { return k.AccountID == acct })
	if err != nil && !domain.IsCode(err, domain.ENOTFOUND) {
		return h.errorResponse(ctx, domain.Unavailable(err, "the key could not be revoked; send the DELETE again"))
	}
	h.log.InfoContext(ctx, "API key revoked", "keyPrefix", prefix)
	return &functionapp.Response{Status: http.StatusNoContent, Header: http.Header{}}
}

// maxRetiredPerRevoke bounds the stale key records one revocation drops,
// and so the key documents it checks first: an account that grew before
// the records were bounded shrinks over a few revocations rather than in
// one long request.
const maxRetiredPerRevoke = 100

// retireStaleKeys prepares the revocation of prefix: it returns the
// prefixes of the account's revoked keys whose record the revocation may
// drop, those beyond the domain.MaxRevokedKeys-1 most recently revoked (the
// key being revoked makes them domain.MaxRevokedKeys again). It first makes
// sure that each of their key documents is revoked, since a revocation
// that marked the account but failed before the key document (its caller
// told to send the DELETE again) would otherwise leave a key that works
// and that no DELETE could reach once its record is gone. It returns none
// when prefix is not an active key of the account as read: the update
// then answers as it would have. Their key documents are deleted, so that
// the key store stays bounded too.
func (h *Handlers) retireStaleKeys(ctx context.Context, acct, prefix string, now time.Time) ([]string, error) {
	a, err := h.store.Accounts.Find(ctx, acct)
	if err != nil {
		return nil, notFoundAs(err, "account %s not found", acct)
	}
	active := false
	for _, k := range a.Keys {
		if k.Prefix == prefix && k.RevokedAt == nil {
			active = true
		}
	}
	if !active || a.ActiveKeys() <= 1 {
		return nil, nil
	}
	stale := a.StaleRevokedKeys(domain.MaxRevokedKeys - 1)
	if len(stale) > maxRetiredPerRevoke {
		stale = stale[:maxRetiredPerRevoke]
	}
	for _, p := range stale {
		gone := domain.Errorf(domain.ENOTFOUND, "key %s not found", p)
		err := h.revokeKey(ctx, p, now, gone, func(k *domain.APIKey) bool { return k.AccountID == acct })
		if domain.IsCode(err, domain.ENOTFOUND) {
			continue // gone already, or not this account's to delete
		}
		if err == nil {
			// Revoked first, so that a delete that fails leaves it refused;
			// deleted, so that issuing and revoking keys does not grow the
			// key store either. A deleted key is refused as unknown.
			err = h.store.APIKeys.Delete(ctx, p)
			h.keys.forget(p)
		}
		if err != nil && !domain.IsCode(err, domain.ENOTFOUND) {
			return nil, domain.Unavailable(err, "the key could not be revoked; send the DELETE again")
		}
	}
	return stale, nil
}

// webhookSettings is the 200 body of PUT /api/accounts/{id}/webhook. The
// URL is null once the webhook is removed; the secret is there only when
// this request rotated it, the one time the new secret is shown.
type webhookSettings struct {
	WebhookURL    *string `json:"webhookUrl"`
	WebhookSecret string  `json:"webhookSecret,omitempty"`
}

// PutWebhook serves PUT /api/accounts/{id}/webhook (200): it sets, changes
// or (with null) removes the caller's webhook URL, held to sign-up's rule,
// and with rotateSecret replaces the secret that signs webhooks, shown only
// in this answer. This process sends the next notification with the new
// settings; another process keeps using the ones it cached, old secret
// included, for up to Config.KeyCacheTTL, as it keeps accepting a revoked
// key. Setting what is already set, without a rotation, writes nothing.
func (h *Handlers) PutWebhook(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	acct, err := ownAccount(ctx, req.Params["id"])
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	c, err := wire.ParseWebhookChange(req.Body, h.cfg.AllowPrivateWebhooks)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	var secret string
	if c.RotateSecret {
		secret = newWebhookSecret()
	}
	// Forgotten whatever the outcome, since a write whose answer was lost
	// may still have happened: the entry, any read in flight (it may have
	// read the settings before the write, and will not be remembered), and
	// the shared read later notifications would otherwise join.
	defer func() {
		h.hooks.forget(acct)
		h.hookReads.Forget(acct)
	}()
	_, err = h.store.Accounts.Update(ctx, acct, func(a *domain.Account) error {
		if a.WebhookURL == c.URL && secret == "" {
			return ports.ErrSkip
		}
		a.WebhookURL = c.URL
		if secret != "" {
			a.WebhookSecret = secret
		}
		return nil
	})
	if err != nil {
		return h.errorResponse(ctx, notFoundAs(err, "account %s not found", acct))
	}
	// The URL is not logged: receivers put tokens in it (docs/SECURITY.md).
	h.log.InfoContext(ctx, "webhook set", "hasWebhook", c.URL != "", "secretRotated", secret != "")
	out := webhookSettings{WebhookSecret: secret}
	if c.URL != "" {
		out.WebhookURL = &c.URL
	}
	resp := functionapp.JSON(http.StatusOK, out)
	resp.Header.Set("Cache-Control", "no-store")
	return resp
}
