package handlers

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/runtime"
)

// signedUp is the 201 body of a sign-up: the only time the key and the
// webhook secret are shown.
type signedUp struct {
	AccountID     string `json:"accountId"`
	Name          string `json:"name"`
	ContactEmail  string `json:"contactEmail"`
	WebhookURL    string `json:"webhookUrl,omitempty"`
	APIKey        string `json:"apiKey"`
	WebhookSecret string `json:"webhookSecret"`
}

var keyEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return strings.ToLower(keyEncoding.EncodeToString(b))
}

// newAPIKey returns a key's secret text and its stored form. The key reads
// "dd_<prefix>_<secret>": the prefix names the key in lists and revocations,
// the 160-bit secret is kept only as a SHA-256 hash (a fast hash is right
// for a high-entropy secret; slow hashes are for passwords).
func newAPIKey(a domain.Account) (string, domain.APIKey) {
	prefix := randomToken(5)
	secret := randomToken(20)
	plain := "dd_" + prefix + "_" + secret
	sum := sha256.Sum256([]byte(plain))
	return plain, domain.APIKey{Prefix: prefix, Hash: hex.EncodeToString(sum[:]), CreatedAt: a.CreatedAt}
}

// CreateAccount serves POST /api/accounts: a business signs up and gets its
// account id, an API key and the secret that signs its webhooks.
func (h *Handlers) CreateAccount(ctx context.Context, req *runtime.Request) *runtime.Response {
	s, err := domain.ParseSignUp(req.Body)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	a := &domain.Account{
		ID:            h.ids.NewID(),
		Name:          s.Name,
		ContactEmail:  s.ContactEmail,
		WebhookURL:    s.WebhookURL,
		WebhookSecret: "whsec_" + randomToken(24),
		CreatedAt:     h.clock.Now(),
	}
	plain, key := newAPIKey(*a)
	a.Keys = []domain.APIKey{key}
	if err := h.store.Accounts.Create(ctx, a.ID, a); err != nil {
		return h.errorResponse(ctx, err)
	}
	resp := runtime.JSON(http.StatusCreated, signedUp{AccountID: a.ID, Name: a.Name, ContactEmail: a.ContactEmail,
		WebhookURL: a.WebhookURL, APIKey: plain, WebhookSecret: a.WebhookSecret})
	resp.Header.Set("Location", "/api/accounts/"+a.ID)
	return resp
}
