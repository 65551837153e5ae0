package wire

import (
	"encoding/json"
	"strings"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// SignUp is a validated POST /api/accounts body.
type SignUp struct {
	Name         string
	ContactEmail string
	WebhookURL   string
}

// ParseSignUp decodes and validates a sign-up. Its webhook URL must name
// a public host unless privateWebhooks (a development setting) allows
// loopback and private ones: see domain.ValidWebhookURL.
func ParseSignUp(body []byte, privateWebhooks bool) (*SignUp, error) {
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
		return nil, domain.Invalid("name", "is required")
	}
	if err := domain.ValidText("name", *w.Name, 200); err != nil {
		return nil, err
	}
	s.Name = strings.TrimSpace(*w.Name)
	if w.ContactEmail == nil || strings.TrimSpace(*w.ContactEmail) == "" {
		return nil, domain.Invalid("contactEmail", "is required: an address the operator can reach the business at")
	}
	if !domain.ValidEmailAddress(*w.ContactEmail) {
		return nil, domain.Invalid("contactEmail", "must be an e-mail address such as ops@example.com")
	}
	s.ContactEmail = *w.ContactEmail
	if w.WebhookURL != nil && *w.WebhookURL != "" {
		if err := domain.ValidWebhookURL("webhookUrl", *w.WebhookURL, privateWebhooks); err != nil {
			return nil, err
		}
		s.WebhookURL = *w.WebhookURL
	}
	return &s, nil
}

// WebhookChange is a validated PUT /api/accounts/{id}/webhook body.
type WebhookChange struct {
	URL          string // "" removes the webhook
	RotateSecret bool
}

// ParseWebhookChange decodes and validates a change of an account's
// webhook: {"webhookUrl": URL or null, "rotateSecret"?: bool}. The URL is
// held to sign-up's rule (see ParseSignUp); null, or "" as sign-up reads
// it, removes the webhook. webhookUrl must be given even to rotate the
// secret alone, so that a body that forgot it cannot remove the webhook.
func ParseWebhookChange(body []byte, privateWebhooks bool) (*WebhookChange, error) {
	var w struct {
		// Raw, to tell null (remove) from a missing field.
		WebhookURL   json.RawMessage `json:"webhookUrl"`
		RotateSecret *bool           `json:"rotateSecret"`
	}
	if err := DecodeStrict(body, &w); err != nil {
		return nil, err
	}
	if w.WebhookURL == nil {
		return nil, domain.Invalid("webhookUrl", "is required: the URL to send webhooks to, or null to remove the webhook")
	}
	var c WebhookChange
	if string(w.WebhookURL) != "null" {
		if json.Unmarshal(w.WebhookURL, &c.URL) != nil {
			return nil, domain.Invalid("webhookUrl", "must be a URL or null")
		}
		if c.URL != "" {
			if err := domain.ValidWebhookURL("webhookUrl", c.URL, privateWebhooks); err != nil {
				return nil, err
			}
		}
	}
	c.RotateSecret = w.RotateSecret != nil && *w.RotateSecret
	return &c, nil
}
