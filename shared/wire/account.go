package wire

import (
	"github.com/fabrikam/dronedelivery/shared/domain"

	"strings"
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
	if w.ContactEmail == nil || !domain.ValidEmailAddress(*w.ContactEmail) {
		return nil, domain.Invalid("contactEmail", "must be an e-mail address")
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
