package wire

import "github.com/fabrikam/dronedelivery/shared/domain"

// NotifyMe is a validated POST /api/deliveries/{id}/notifymerequests
// body: where the customer wants to hear of the delivery's milestones.
type NotifyMe struct {
	EmailAddress string
	SMS          string
}

// ParseNotifyMe decodes and validates a notify-me request: an e-mail
// address (domain.ValidEmailAddress), an SMS number in E.164 form
// (domain.ValidPhoneNumber), or both.
func ParseNotifyMe(body []byte) (*NotifyMe, error) {
	var w struct {
		EmailAddress *string `json:"emailAddress"`
		SMS          *string `json:"sms"`
	}
	if err := DecodeStrict(body, &w); err != nil {
		return nil, err
	}
	var r NotifyMe
	if w.EmailAddress != nil && *w.EmailAddress != "" {
		if !domain.ValidEmailAddress(*w.EmailAddress) {
			return nil, domain.Invalid("emailAddress", "must be an e-mail address such as name@example.com")
		}
		r.EmailAddress = *w.EmailAddress
	}
	if w.SMS != nil && *w.SMS != "" {
		if !domain.ValidPhoneNumber(*w.SMS) {
			return nil, domain.Invalid("sms", "must be a phone number in E.164 form: + and 7 to 15 digits, country code first, no spaces (+14255550123)")
		}
		r.SMS = *w.SMS
	}
	if r.EmailAddress == "" && r.SMS == "" {
		return nil, domain.Invalid("emailAddress", "is required unless sms is given: give either or both")
	}
	return &r, nil
}
