package wire

import (
	"github.com/fabrikam/dronedelivery/shared/domain"

	"encoding/json"
	"strings"
	"time"
)

// MaxNotifyMeRequests bounds the notify-me requests one delivery keeps.
const MaxNotifyMeRequests = 10

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

// ParseNotifyMe decodes and validates a POST
// /api/deliveries/{id}/notifymerequests body: an e-mail address, an SMS
// number, or both.
func ParseNotifyMe(body []byte, now time.Time) (*domain.NotifyMeRequest, error) {
	var w struct {
		EmailAddress *string `json:"emailAddress"`
		SMS          *string `json:"sms"`
	}
	if err := DecodeStrict(body, &w); err != nil {
		return nil, err
	}
	r := domain.NotifyMeRequest{At: now}
	if w.EmailAddress != nil && *w.EmailAddress != "" {
		if !validEmail(*w.EmailAddress) {
			return nil, domain.Invalid("emailAddress", "must be an e-mail address")
		}
		r.EmailAddress = *w.EmailAddress
	}
	if w.SMS != nil && *w.SMS != "" {
		digits := strings.TrimPrefix(*w.SMS, "+")
		if len(digits) < 6 || len(digits) > 15 || strings.Trim(digits, "0123456789") != "" {
			return nil, domain.Invalid("sms", "must be a phone number of 6 to 15 digits, optionally starting with +")
		}
		r.SMS = *w.SMS
	}
	if r.EmailAddress == "" && r.SMS == "" {
		return nil, domain.Invalid("emailAddress", "give an emailAddress, an sms number, or both")
	}
	return &r, nil
}
