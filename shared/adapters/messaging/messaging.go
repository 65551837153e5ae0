// Package messaging routes customer messages to the provider of their
// channel and keeps, in an outbox, those whose channel has no provider: the
// glue between ports.Messenger and the SMTP and Azure Communication
// Services adapters.
package messaging

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// Router sends each message with the messenger of its channel.
type Router struct {
	Email ports.Messenger
	SMS   ports.Messenger
}

// Send implements ports.Messenger. A channel without a messenger is a
// wiring mistake that no retry mends, so it is ErrUndeliverable.
func (r Router) Send(ctx context.Context, m ports.Outgoing) error {
	var to ports.Messenger
	switch m.Channel {
	case domain.ChannelEmail:
		to = r.Email
	case domain.ChannelSMS:
		to = r.SMS
	}
	if to == nil {
		return fmt.Errorf("no messenger for channel %q: %w", m.Channel, ports.ErrUndeliverable)
	}
	return to.Send(ctx, m)
}

// DefaultOutboxSize is how many messages an outbox keeps before it forgets
// one: plenty for a laptop's day, and a bound on the memory a busy run can
// take.
const DefaultOutboxSize = 10000

// Outbox keeps messages in memory and logs that it kept each one (not its
// text, nor its full recipient): the messenger of a channel with no
// provider configured. It is for `make run` and tests; the messages do not
// outlive the process, and each process has its own.
//
// Past its bound it forgets the oldest message of the account that has the
// most kept, so that one account sending many cannot push another's few
// out.
type Outbox struct {
	log     *slog.Logger
	max     int
	mu      sync.Mutex
	seen    map[string]bool             // ids kept, so a retried send is kept once
	byID    map[string][]ports.Outgoing // delivery id → its messages, oldest first
	byOwner map[string][]string         // account → its messages' ids, oldest first
	kept    int                         // messages kept in all
	of      map[string]string           // id → delivery id
	order   map[string]uint64           // id → when it was kept, counted
	next    uint64
}

// NewOutbox returns an outbox that keeps up to max messages (DefaultOutboxSize
// when max ≤ 0) and logs each to log.
func NewOutbox(log *slog.Logger, max int) *Outbox {
	if max <= 0 {
		max = DefaultOutboxSize
	}
	if log == nil {
		log = slog.Default()
	}
	return &Outbox{log: log, max: max, seen: map[string]bool{}, byID: map[string][]ports.Outgoing{}, byOwner: map[string][]string{}, of: map[string]string{}, order: map[string]uint64{}}
}

// withheldLink stands in a kept message for an unsubscribe link it has no
// kept version of.
const withheldLink = "(no link: this message was kept, not sent)"

// keptNote ends the text of a kept message that had an unsubscribe link:
// the text says what the link does in a sent message, which the kept link
// does not.
const keptNote = "\n[Kept, not sent: its link ends this subscription only.]"

// Send keeps m and logs it; it never fails. The message is kept with the
// link for a message that was not sent (KeptUnsubscribeURL), which the
// business reading its outbox may press without suppressing the address
// for every business: the link that does is for whoever receives the
// message.
func (o *Outbox) Send(ctx context.Context, m ports.Outgoing) error {
	if m.UnsubscribeURL != "" {
		kept := m.KeptUnsubscribeURL
		if kept == "" {
			kept = withheldLink
		}
		m.Text = strings.ReplaceAll(m.Text, m.UnsubscribeURL, kept) + keptNote
		m.UnsubscribeURL = m.KeptUnsubscribeURL
	}
	m.KeptUnsubscribeURL = ""
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.seen[m.ID] {
		return nil
	}
	for o.kept >= o.max {
		o.forget(m.OwnerID)
	}
	o.seen[m.ID] = true
	o.of[m.ID] = m.DeliveryID
	o.byOwner[m.OwnerID] = append(o.byOwner[m.OwnerID], m.ID)
	o.kept++
	o.next++
	o.order[m.ID] = o.next
	o.byID[m.DeliveryID] = append(o.byID[m.DeliveryID], m)
	// The log says that a message was kept, not what it says: its text
	// carries the tracking link, whose id alone opens the delivery's
	// tracking page, and the unsubscribe link, whose token alone ends the
	// subscription, and logs are read by more people than the customer.
	// The outbox (Kept) has the message in full.
	o.log.InfoContext(ctx, "customer message kept in the outbox (no provider configured for its channel)",
		"customerMessageId", m.ID, "channel", string(m.Channel), "to", maskAddress(m.To), "subject", m.Subject, "textBytes", len(m.Text))
	return nil
}

// maskAddress is an e-mail address or a phone number as a log may show it:
// an address keeps its domain ("***@example.com"), a number its last four
// digits ("***0123"), anything else nothing ("***").
func maskAddress(to string) string {
	const hidden = "***"
	if at := strings.LastIndexByte(to, '@'); at >= 0 {
		return hidden + to[at:]
	}
	if n := len(to); n > 6 {
		return hidden + to[n-4:]
	}
	return hidden
}

// forget drops the oldest message of the account that has the most kept,
// counting the one adding is about to add (of two with as many, the one
// whose oldest came first).
func (o *Outbox) forget(adding string) {
	var owner string
	var ids []string
	most := 0
	for a, theirs := range o.byOwner {
		n := len(theirs)
		if a == adding {
			n++
		}
		if ids == nil || n > most || n == most && o.order[theirs[0]] < o.order[ids[0]] {
			owner, ids, most = a, theirs, n
		}
	}
	id := ids[0]
	if len(ids) == 1 {
		delete(o.byOwner, owner)
	} else {
		o.byOwner[owner] = ids[1:]
	}
	o.kept--
	delete(o.order, id)
	d := o.of[id]
	delete(o.of, id)
	delete(o.seen, id)
	kept := o.byID[d]
	for i := range kept {
		if kept[i].ID == id {
			kept = append(kept[:i:i], kept[i+1:]...)
			break
		}
	}
	if len(kept) == 0 {
		delete(o.byID, d)
	} else {
		o.byID[d] = kept
	}
}

// Kept implements ports.Outbox.
func (o *Outbox) Kept(_ context.Context, deliveryID string) ([]ports.Outgoing, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]ports.Outgoing{}, o.byID[deliveryID]...), nil
}
