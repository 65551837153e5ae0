package ports

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// Outgoing is one message to one customer about one milestone.
type Outgoing struct {
	// ID is the same on every attempt to send this message, so that a
	// provider that takes an idempotency key, and a receiver that reads
	// Message-ID, can drop a repeat.
	ID         string
	DeliveryID string
	// OwnerID is the account of the delivery: an outbox keeps each
	// account's messages apart from the others'.
	OwnerID string
	Channel domain.Channel
	To      string // an e-mail address, or an E.164 number
	Subject string // e-mail only
	Text    string // plain text, with the tracking and unsubscribe links in it
	// UnsubscribeURL ends the subscription when followed; an e-mail also
	// carries it as its List-Unsubscribe header.
	UnsubscribeURL string
	// KeptUnsubscribeURL replaces UnsubscribeURL, in the text too, when the
	// message is kept rather than sent (an Outbox): it ends the subscription
	// but suppresses no address, as none received the message. "" withholds
	// the link from a kept message.
	KeptUnsubscribeURL string
	// At is when the milestone happened: the same on every attempt.
	At time.Time
}

// ErrUndeliverable marks a send the provider refused for good (an address
// it will never deliver to, a sender it does not know): trying again cannot
// help, so the message is dead-lettered at once. Adapters wrap it.
var ErrUndeliverable = errors.New("the provider refused the message for good")

// MessageThrottled is the error of a message the provider would not take
// yet: the sender's quota for the minute or the hour is used up. Trying
// again before RetryAfter counts against the quota too, and trying again
// after it is no failed attempt.
type MessageThrottled struct {
	// RetryAfter is how long the provider asks the sender to wait.
	RetryAfter time.Duration
	// Detail is the provider's answer, for the log.
	Detail string
}

func (e *MessageThrottled) Error() string {
	return fmt.Sprintf("the provider's sending quota is used up for now; try again in %s: %s", e.RetryAfter, e.Detail)
}

// Messenger sends messages to customers by e-mail or SMS.
type Messenger interface {
	// Send hands one message to the provider of its channel. An error
	// wrapping ErrUndeliverable is permanent; a *MessageThrottled says when
	// to try again; any other error may pass on another attempt. A nil
	// error means the provider accepted the message, not that it reached
	// the customer.
	Send(ctx context.Context, m Outgoing) error
}

// Outbox keeps the messages that have no provider to go to (neither SMTP
// nor Azure Communication Services is configured for their channel), so
// that they can be read back over the API.
type Outbox interface {
	// Kept returns the kept messages of a delivery, oldest first.
	Kept(ctx context.Context, deliveryID string) ([]Outgoing, error)
}
