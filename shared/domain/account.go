package domain

import (
	"net/url"
	"strings"
	"time"
)

// Account is a business registered with the service.
type Account struct {
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	ContactEmail  string    `json:"contactEmail"`
	WebhookURL    string    `json:"webhookUrl,omitempty"`
	WebhookSecret string    `json:"webhookSecret,omitempty"` // signs webhook bodies; shown once at sign-up
	Keys          []APIKey  `json:"keys,omitempty"`
	CreatedAt     time.Time `json:"createdAt"`
}

// APIKey is one of an account's keys. Only a hash of the secret is kept;
// the prefix identifies the key in lists and revocations.
type APIKey struct {
	Prefix    string     `json:"prefix"`
	Hash      string     `json:"hash"`
	CreatedAt time.Time  `json:"createdAt"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
}

// SignUp is a validated POST /api/accounts body.
type SignUp struct {
	Name         string
	ContactEmail string
	WebhookURL   string
}

// ParseSignUp decodes and validates a sign-up.
func ParseSignUp(body []byte) (*SignUp, error) {
	var w struct {
		Name         *string `json:"name"`
		ContactEmail *string `json:"contactEmail"`
		WebhookURL   *string `json:"webhookUrl"`
	}
	if err := DecodeStrict(body, &w); err != nil {
		return nil, err
	}
	var s SignUp
	if w.Name == nil || strings.TrimSpace(*w.Name) == "" {
		return nil, Invalid("name", "is required")
	}
	if err := ValidText("name", *w.Name, 200); err != nil {
		return nil, err
	}
	s.Name = strings.TrimSpace(*w.Name)
	if w.ContactEmail == nil || !validEmail(*w.ContactEmail) {
		return nil, Invalid("contactEmail", "must be an e-mail address")
	}
	s.ContactEmail = *w.ContactEmail
	if w.WebhookURL != nil && *w.WebhookURL != "" {
		if err := ValidWebhookURL("webhookUrl", *w.WebhookURL); err != nil {
			return nil, err
		}
		s.WebhookURL = *w.WebhookURL
	}
	return &s, nil
}

func validEmail(s string) bool {
	if len(s) > 254 || ValidText("contactEmail", s, 254) != nil {
		return false
	}
	local, domainPart, ok := strings.Cut(s, "@")
	return ok && local != "" && strings.Contains(domainPart, ".") && !strings.ContainsAny(s, " <>\"(),;:[]\\")
}

// ValidWebhookURL checks a webhook address: absolute http(s), no
// credentials in it, at most 2048 characters.
func ValidWebhookURL(field, s string) error {
	if len(s) > 2048 {
		return Invalid(field, "must be at most 2048 characters")
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return Invalid(field, "must be an absolute http or https URL without credentials")
	}
	return nil
}
