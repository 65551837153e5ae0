package wire

import (
	"github.com/fabrikam/dronedelivery/shared/domain"

	"encoding/json"
)

// ParseConfirmation decodes and validates a POST
// /api/deliveries/{id}/confirmations body.
func ParseConfirmation(body []byte) (*domain.Confirmation, error) {
	var w struct {
		DateTime         *string         `json:"dateTime"`
		GeoCoordinates   json.RawMessage `json:"geoCoordinates"`
		ConfirmationType *string         `json:"confirmationType"`
		ConfirmationBlob *string         `json:"confirmationBlob"`
	}
	if err := DecodeStrict(body, &w); err != nil {
		return nil, err
	}
	var c domain.Confirmation
	t, err := parseTime("dateTime", w.DateTime)
	if err != nil {
		return nil, err
	}
	if t.IsZero() {
		return nil, domain.Invalid("dateTime", "is required")
	}
	c.DateTime = t
	if c.GeoCoordinates, err = ParseLocation("geoCoordinates", w.GeoCoordinates); err != nil {
		return nil, err
	}
	if w.ConfirmationType == nil {
		return nil, domain.Invalid("confirmationType", "is required")
	}
	switch ct := domain.ConfirmationType(*w.ConfirmationType); ct {
	case domain.ConfirmationFingerPrint, domain.ConfirmationPicture, domain.ConfirmationVoice, domain.ConfirmationNone:
		c.ConfirmationType = ct
	default:
		return nil, domain.Invalid("confirmationType", "must be one of FingerPrint, Picture, Voice, None")
	}
	if w.ConfirmationBlob != nil {
		if len(*w.ConfirmationBlob) > 256*1024 {
			return nil, domain.Invalid("confirmationBlob", "must be at most 256 KiB")
		}
		c.ConfirmationBlob = *w.ConfirmationBlob
	}
	return &c, nil
}
