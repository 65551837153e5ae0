package domain

import (
	"crypto/subtle"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Channel is a way of telling a customer about a delivery's milestones.
type Channel string

// The channels a subscription may use.
const (
	ChannelEmail Channel = "email"
	ChannelSMS   Channel = "sms"
)

// MaxSubscriptions bounds the subscriptions one delivery keeps, so that a
// business cannot make one milestone fan out to an unbounded number of
// messages.
const MaxSubscriptions = 10

// MaxSubscriptionsMade bounds the subscriptions a delivery is ever given,
// ended ones included: a subscription the business ends is kept
// (EndedSubscription), so the document stays bounded and a business cannot
// end and make subscriptions until the links it sent no longer work.
const MaxSubscriptionsMade = 20

// EndedSubscription is what is kept of a link of a subscription that
// ended (by its business, or by another of its links): the unsubscribe
// link of every message sent for it still works, and records the
// suppression of the addresses it was sent to.
type EndedSubscription struct {
	Token string `json:"token"`
	// Suppress are the SuppressionKey of each address the link went to.
	Suppress []string `json:"suppress"`
}

// Subscription is a customer's request to hear of a delivery's milestones
// by e-mail, by SMS or both (the reference API's notify-me request).
type Subscription struct {
	ID           string `json:"id"`
	EmailAddress string `json:"emailAddress,omitempty"`
	SMS          string `json:"sms,omitempty"`
	// Token is the unguessable secret of the unsubscribe link the messages
	// sent to the e-mail address carry (to the phone number, when that is
	// the only address); whoever holds it may end the subscription and
	// suppress that address, and nothing else.
	Token string `json:"token"`
	// SMSToken is the same for the messages sent to the phone number of a
	// subscription with both addresses. Each link suppresses only the
	// address it was sent to: one link for both let a business suppress
	// anyone's number, for every business, by subscribing it beside an
	// address of its own and pressing the link its own address received.
	// A subscription made before it has one link for both addresses.
	SMSToken string `json:"smsToken,omitempty"`
	// KeptToken is the secret of the link a message carries instead when it
	// is kept in an outbox rather than sent (its channel has no provider):
	// that link ends the subscription and suppresses no address, since no
	// address received it, and the business that reads its outbox holds
	// it. Without it the business could stop the service messaging any
	// address, for every business, by subscribing the address and pressing
	// the link it keeps.
	KeptToken string    `json:"keptToken,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// Address returns where the subscription sends on channel c, or "".
func (s *Subscription) Address(c Channel) string {
	switch c {
	case ChannelEmail:
		return s.EmailAddress
	case ChannelSMS:
		return s.SMS
	}
	return ""
}

// LinkToken is the token of the unsubscribe link a message sent on
// channel c carries.
func (s *Subscription) LinkToken(c Channel) string {
	if c == ChannelSMS && s.SMSToken != "" {
		return s.SMSToken
	}
	return s.Token
}

// links are the unsubscribe links of the messages sent for the
// subscription, each with the suppression keys of the addresses it went to.
func (s *Subscription) links() []EndedSubscription {
	if s.SMSToken == "" || s.EmailAddress == "" || s.SMS == "" {
		return []EndedSubscription{{Token: s.Token, Suppress: s.SuppressionKeys()}}
	}
	return []EndedSubscription{
		{Token: s.Token, Suppress: []string{SuppressionKey(ChannelEmail, s.EmailAddress)}},
		{Token: s.SMSToken, Suppress: []string{SuppressionKey(ChannelSMS, s.SMS)}},
	}
}

// Channels lists the channels the subscription sends on, e-mail first.
func (s *Subscription) Channels() []Channel {
	var out []Channel
	if s.EmailAddress != "" {
		out = append(out, ChannelEmail)
	}
	if s.SMS != "" {
		out = append(out, ChannelSMS)
	}
	return out
}

// Subscribe adds s to the delivery and returns it. A subscription to the
// same addresses already there is returned with ErrNoChange, so a client
// repeating its request does not make every message arrive twice; one that
// shares an address with another subscription is ECONFLICT for the same
// reason. An ended delivery, or one holding MaxSubscriptions, takes no more
// (ECONFLICT).
func (d *Delivery) Subscribe(s Subscription) (Subscription, error) {
	for _, cur := range d.Subscriptions {
		if strings.EqualFold(cur.EmailAddress, s.EmailAddress) && cur.SMS == s.SMS {
			return cur, ErrNoChange
		}
	}
	if d.Stage.Terminal() {
		return Subscription{}, Errorf(ECONFLICT, "delivery %s has ended", d.ID)
	}
	for _, cur := range d.Subscriptions {
		if s.EmailAddress != "" && strings.EqualFold(cur.EmailAddress, s.EmailAddress) {
			return Subscription{}, &Error{Code: ECONFLICT, Field: "emailAddress", Message: "is already subscribed to this delivery (subscription " + cur.ID + ")"}
		}
		if s.SMS != "" && cur.SMS == s.SMS {
			return Subscription{}, &Error{Code: ECONFLICT, Field: "sms", Message: "is already subscribed to this delivery (subscription " + cur.ID + ")"}
		}
		if cur.ID == s.ID {
			return Subscription{}, Errorf(ECONFLICT, "subscription %s exists", s.ID)
		}
	}
	if len(d.Subscriptions) >= MaxSubscriptions {
		return Subscription{}, Errorf(ECONFLICT, "delivery %s already has %d subscriptions", d.ID, MaxSubscriptions)
	}
	made := d.subscriptionsMade()
	if made >= MaxSubscriptionsMade {
		return Subscription{}, Errorf(ECONFLICT, "delivery %s has had %d subscriptions, which is as many as a delivery takes", d.ID, MaxSubscriptionsMade)
	}
	if len(s.Channels()) == 0 {
		return Subscription{}, Invalid("emailAddress", "is required unless sms is given: give either or both")
	}
	d.Subscriptions = append(d.Subscriptions, s)
	d.SubscriptionsMade = made + 1
	return s, nil
}

// subscriptionsMade is how many subscriptions the delivery was ever given:
// SubscriptionsMade, or, stored before that was counted, those it holds
// live and ended (each ended one then kept one link).
func (d *Delivery) subscriptionsMade() int {
	if d.SubscriptionsMade > 0 {
		return d.SubscriptionsMade
	}
	return len(d.Subscriptions) + len(d.EndedSubscriptions)
}

// Subscription returns the subscription with the given id.
func (d *Delivery) Subscription(id string) (*Subscription, bool) {
	for i := range d.Subscriptions {
		if d.Subscriptions[i].ID == id {
			return &d.Subscriptions[i], true
		}
	}
	return nil, false
}

// Unsubscribe removes the subscription with the given id, or returns
// ENOTFOUND: its customer followed its link. Ended deliveries allow it too:
// it only ever stops messages.
func (d *Delivery) Unsubscribe(id string) error {
	i := slices.IndexFunc(d.Subscriptions, func(s Subscription) bool { return s.ID == id })
	if i < 0 {
		return &Error{Code: ENOTFOUND, Field: "subscriptionId", Message: fmt.Sprintf("%s names no subscription of this delivery", id)}
	}
	d.Subscriptions = slices.Delete(d.Subscriptions, i, i+1)
	return nil
}

// EndSubscription is Unsubscribe by the business: the subscription is kept
// as an EndedSubscription, so that the links already sent for it still
// work.
func (d *Delivery) EndSubscription(id string) error {
	s, ok := d.Subscription(id)
	if !ok {
		return d.Unsubscribe(id)
	}
	ended := s.links()
	if err := d.Unsubscribe(id); err != nil {
		return err
	}
	d.EndedSubscriptions = append(d.EndedSubscriptions, ended...)
	return nil
}

// ByToken finds the subscription, live or ended by the business, whose
// unsubscribe token is token: the live one's id ("" for an ended one) and
// the suppression keys of its addresses (none for the KeptToken of a live
// one: the link of a message that was not sent). Every token is compared in full,
// in constant time, so the time taken says nothing about how much of a
// guess was right.
func (d *Delivery) ByToken(token string) (id string, suppress []string, ok bool) {
	for _, s := range d.Subscriptions {
		for _, l := range s.links() {
			if l.Token != "" && subtle.ConstantTimeCompare([]byte(l.Token), []byte(token)) == 1 {
				id, suppress, ok = s.ID, l.Suppress, true
			}
		}
		if s.KeptToken != "" && subtle.ConstantTimeCompare([]byte(s.KeptToken), []byte(token)) == 1 {
			id, suppress, ok = s.ID, nil, true
		}
	}
	for _, e := range d.EndedSubscriptions {
		if e.Token != "" && subtle.ConstantTimeCompare([]byte(e.Token), []byte(token)) == 1 {
			id, suppress, ok = "", e.Suppress, true
		}
	}
	return id, suppress, ok
}

// Unlink ends what token names, once its addresses are suppressed: the
// live subscription, or what is kept of an ended one, so that the link is
// spent. The subscription's other links (the one sent to its other
// address, or that of a kept message) still work: it ends as its business
// would end it, and the link used is then spent. The link of a kept message
// (KeptToken) ends the subscription as its business would. It returns
// ErrNoChange when token names neither.
func (d *Delivery) Unlink(token string) error {
	id, keys, ok := d.ByToken(token)
	switch {
	case !ok:
		return ErrNoChange
	case id != "" && len(keys) == 0:
		return d.EndSubscription(id)
	case id != "":
		if err := d.EndSubscription(id); err != nil {
			return err
		}
	}
	d.EndedSubscriptions = slices.DeleteFunc(d.EndedSubscriptions, func(e EndedSubscription) bool {
		return subtle.ConstantTimeCompare([]byte(e.Token), []byte(token)) == 1
	})
	return nil
}

// Address limits: RFC 5321 allows 64 characters before the @ and 254 in
// all; E.164 numbers have at most 15 digits.
const (
	maxEmailLength = 254
	maxLocalLength = 64
	maxLabelLength = 63
)

// ValidEmailAddress reports whether s is an e-mail address the service
// sends to: a dot-atom local part, an @, and a domain name of at least two
// labels of letters, digits and hyphens. Quoted local parts, address
// literals, display names, comments and non-ASCII addresses are refused:
// they are legal in some header but not something a customer types, and
// every character allowed here is safe in an SMTP command and a header.
func ValidEmailAddress(s string) bool {
	if len(s) > maxEmailLength {
		return false
	}
	local, host, ok := strings.Cut(s, "@")
	if !ok || local == "" || len(local) > maxLocalLength || strings.Contains(host, "@") {
		return false
	}
	for _, atom := range strings.Split(local, ".") {
		if atom == "" {
			return false // a leading, trailing or doubled dot
		}
		for _, c := range atom {
			if !(isAlnum(c) || strings.ContainsRune("!#$%&'*+/=?^_`{|}~-", c)) {
				return false
			}
		}
	}
	labels := strings.Split(host, ".")
	// A top-level domain is never all digits; this refuses 1.2.3.4.
	return len(labels) >= 2 && hostLabels(labels, "") && strings.Trim(labels[len(labels)-1], "0123456789") != ""
}

// hostLabels reports whether labels are those of a host name (RFC 1123):
// each 1 to 63 letters, digits, hyphens and the characters of also, not
// beginning or ending with a hyphen.
func hostLabels(labels []string, also string) bool {
	for _, l := range labels {
		if l == "" || len(l) > maxLabelLength || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(isAlnum(c) || c == '-' || strings.ContainsRune(also, c)) {
				return false
			}
		}
	}
	return true
}

// ValidPhoneNumber reports whether s is an E.164 number as SMS providers
// take it: a +, a country code that does not start with 0, and 7 to 15
// digits in all, without spaces or punctuation.
func ValidPhoneNumber(s string) bool {
	digits, ok := strings.CutPrefix(s, "+")
	if !ok || len(digits) < 7 || len(digits) > 15 || digits[0] == '0' {
		return false
	}
	return strings.Trim(digits, "0123456789") == ""
}

func isAlnum(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
