package handlers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/logctx"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// subscriptionView is the public shape of a notify-me subscription; the
// unsubscribe token stays out of it, as it belongs to the customer.
type subscriptionView struct {
	ID           string    `json:"id"`
	DeliveryID   string    `json:"deliveryId"`
	EmailAddress string    `json:"emailAddress,omitempty"`
	SMS          string    `json:"sms,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
}

func viewSubscription(deliveryID string, s domain.Subscription) subscriptionView {
	return subscriptionView{ID: s.ID, DeliveryID: deliveryID, EmailAddress: s.EmailAddress, SMS: s.SMS, CreatedAt: s.CreatedAt}
}

// subscriptionIDLength keeps subscription ids short, as they are part of
// every customer message's id; 48 random bits are plenty among the ten
// subscriptions of one delivery.
const subscriptionIDLength = 12

// PostNotifyMeRequest serves POST /api/deliveries/{id}/notifymerequests:
// a customer asks to hear of the delivery's milestones by e-mail, SMS or
// both. 201 with the new subscription and its Location; 200 with the
// existing one when the same addresses are subscribed already.
func (h *Handlers) PostNotifyMeRequest(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	id, r, err := idAndBody(req, wire.ParseNotifyMe)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	now := h.clock.Now()
	// The subscription id is the end of a new id, which is random; its
	// start is the time.
	sid := h.ids.NewID()
	sid = sid[max(0, len(sid)-subscriptionIDLength):]
	// The token joins an unguessable part and the delivery id, like the
	// tracking id, so the unsubscribe link finds its delivery with one
	// point read.
	sub := domain.Subscription{
		ID:           sid,
		EmailAddress: r.EmailAddress,
		SMS:          r.SMS,
		Token:        h.ids.NewTrackingID() + "." + id,
		KeptToken:    h.ids.NewTrackingID() + "." + id,
		CreatedAt:    now,
	}
	if r.EmailAddress != "" && r.SMS != "" {
		sub.SMSToken = h.ids.NewTrackingID() + "." + id
	}
	var got domain.Subscription
	created := false
	_, err = h.updateOwnDelivery(ctx, id, func(d *domain.Delivery) error {
		var err error
		got, err = d.Subscribe(sub)
		created = err == nil
		if created {
			d.Touch(now)
		}
		return err
	})
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	if !created {
		return functionapp.JSON(http.StatusOK, viewSubscription(id, got))
	}
	h.log.InfoContext(logctx.With(ctx, "deliveryId", id), "customer subscribed", "subscriptionId", got.ID, "channels", fmt.Sprint(got.Channels()))
	resp := functionapp.JSON(http.StatusCreated, viewSubscription(id, got))
	resp.Header.Set("Location", "/api/deliveries/"+id+"/notifymerequests/"+got.ID)
	return resp
}

// ListNotifyMeRequests serves GET /api/deliveries/{id}/notifymerequests:
// the delivery's subscriptions, oldest first.
func (h *Handlers) ListNotifyMeRequests(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	d, err := h.findDelivery(ctx, req.Params["id"])
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	out := make([]subscriptionView, 0, len(d.Subscriptions))
	for _, s := range d.Subscriptions {
		out = append(out, viewSubscription(d.ID, s))
	}
	return functionapp.JSON(http.StatusOK, map[string]any{"deliveryId": d.ID, "subscriptions": out})
}

// DeleteNotifyMeRequest serves DELETE
// /api/deliveries/{id}/notifymerequests/{subscriptionId}: no more messages
// for that subscription (204), or 404 when the delivery has none by that id.
func (h *Handlers) DeleteNotifyMeRequest(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	id, sid := req.Params["id"], req.Params["subscriptionId"]
	if err := domain.ValidID("id", id); err != nil {
		return h.errorResponse(ctx, err)
	}
	if err := domain.ValidID("subscriptionId", sid); err != nil {
		return h.errorResponse(ctx, err)
	}
	now := h.clock.Now()
	_, err := h.updateOwnDelivery(ctx, id, func(d *domain.Delivery) error {
		if err := d.EndSubscription(sid); err != nil {
			return err
		}
		d.Touch(now)
		return nil
	})
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	h.log.InfoContext(logctx.With(ctx, "deliveryId", id), "subscription deleted by the business", "subscriptionId", sid)
	return &functionapp.Response{Status: http.StatusNoContent, Header: http.Header{}}
}

// maxTokenLength bounds an unsubscribe token: the random part and a
// delivery id.
const maxTokenLength = 64 + 1 + domain.MaxIDLength

// keptLinkNote begins what the link of a kept message says: it came in a
// message no address received (domain.Subscription.KeptToken).
const keptLinkNote = "This link is from a message the service kept rather than sent, as no provider is set up for its channel."

var errSpentLink = domain.Errorf(domain.ENOTFOUND, "this unsubscribe link is not valid, or was used already")

// UnsubscribePage serves GET /api/unsubscribe/{token}, the link in every
// customer message: it asks the person to confirm with a button that posts
// to the same address (Unsubscribe), and changes nothing itself. A GET must
// not act, because mail scanners and link previews fetch the links in a
// message before anyone reads it (RFC 8058, section 1:
// https://www.rfc-editor.org/rfc/rfc8058#section-1). A wrong or spent token
// is 404, whatever was wrong with it.
func (h *Handlers) UnsubscribePage(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	token := req.Params["token"]
	deliveryID, ok := unsubscribeDelivery(token)
	if !ok {
		return h.spentLink(ctx, req)
	}
	d, err := h.store.Deliveries.Find(ctx, deliveryID)
	if domain.IsCode(err, domain.ENOTFOUND) {
		return h.spentLink(ctx, req)
	}
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	_, keys, ok := d.ByToken(token)
	if !ok {
		return h.spentLink(ctx, req)
	}
	if len(keys) == 0 {
		return confirmForm("End this subscription?", keptLinkNote+" It ends this delivery's subscription only.", "End the subscription")
	}
	return confirmForm("Stop these messages?",
		"This service will send no more messages, about this delivery or any other, to "+linkAddresses(keys)+".", "Unsubscribe")
}

// Unsubscribe serves POST /api/unsubscribe/{token}: the page's button, or
// a mail client's one-click unsubscribe (RFC 8058: a POST of
// "List-Unsubscribe=One-Click" to the List-Unsubscribe address, as a form;
// https://www.rfc-editor.org/rfc/rfc8058#section-3.1). It suppresses the
// addresses of the subscription the token belongs to (live, or ended by
// the business), so that nothing more is sent to them by any business,
// ends the subscription, spends the link and says so; its body is not
// read. Anyone holding the link may post it, and it can do nothing else.
func (h *Handlers) Unsubscribe(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	token := req.Params["token"]
	deliveryID, ok := unsubscribeDelivery(token)
	if !ok {
		return h.spentLink(ctx, req)
	}
	now := h.clock.Now()
	// The addresses are suppressed before the subscription is ended, so
	// that a failure in between leaves the link live for another try.
	d, err := h.store.Deliveries.Find(ctx, deliveryID)
	if domain.IsCode(err, domain.ENOTFOUND) {
		return h.spentLink(ctx, req)
	}
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	sid, keys, ok := d.ByToken(token)
	if !ok {
		return h.spentLink(ctx, req)
	}
	for _, k := range keys {
		sup := domain.Suppression{ID: k, CreatedAt: now}
		if err := h.store.Suppressions.Create(ctx, k, &sup); err != nil && !domain.IsCode(err, domain.ECONFLICT) {
			return h.errorResponse(ctx, err)
		}
	}
	_, err = h.store.Deliveries.Update(ctx, deliveryID, func(d *domain.Delivery) error {
		if err := d.Unlink(token); err != nil {
			return err // ErrNoChange: spent meanwhile, by this link
		}
		d.Touch(now)
		return nil
	})
	if err != nil && !domain.IsCode(err, domain.ENOTFOUND) {
		return h.errorResponse(ctx, err)
	}
	if len(keys) == 0 {
		h.log.InfoContext(logctx.With(ctx, "deliveryId", deliveryID), "subscription ended through the link of a kept message", "subscriptionId", sid)
		return notice(http.StatusOK, "Subscription ended",
			keptLinkNote+" This delivery's subscription is ended; the addresses still get the messages of other subscriptions.")
	}
	h.log.InfoContext(logctx.With(ctx, "deliveryId", deliveryID), "customer unsubscribed through the link", "subscriptionId", sid)
	return notice(http.StatusOK, "You are unsubscribed",
		"This service will send no more messages, about this delivery or any other, to "+linkAddresses(keys)+".")
}

// linkAddresses names for a person what a link's keys suppress: the
// address it was sent to, or both addresses of a subscription made before
// each address had a link of its own.
func linkAddresses(keys []string) string {
	if len(keys) > 1 {
		return "the addresses this link was sent to (the e-mail address and the phone number given together)"
	}
	return "the address this link was sent to"
}

// suppressed reports whether address asked, by an unsubscribe link, for
// no more messages on channel.
func (h *Handlers) suppressed(ctx context.Context, ch domain.Channel, address string) (bool, error) {
	_, err := h.store.Suppressions.Find(ctx, domain.SuppressionKey(ch, address))
	if domain.IsCode(err, domain.ENOTFOUND) {
		return false, nil
	}
	return err == nil, err
}

// unsubscribeDelivery returns the delivery an unsubscribe token names, if
// the token has the shape of one.
func unsubscribeDelivery(token string) (string, bool) {
	_, deliveryID, ok := strings.Cut(token, ".")
	if !ok || len(token) > maxTokenLength || domain.ValidID("token", deliveryID) != nil {
		return "", false
	}
	return deliveryID, true
}

// spentLink answers a wrong or spent unsubscribe token: a page for a
// person (followed a second time, after a double click, the link says so),
// a problem document otherwise.
func (h *Handlers) spentLink(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	if wantsPage(req) {
		return notice(http.StatusNotFound, "Unsubscribe link",
			"This link is not valid, or was used already. If you followed it before, you are unsubscribed from what it stopped then; if messages come again, the sender has subscribed this address again since, and the link in them stops those.")
	}
	return h.errorResponse(ctx, errSpentLink)
}

// outboxMessage is one kept message as GET …/outbox shows it.
type outboxMessage struct {
	ID             string         `json:"id"`
	Channel        domain.Channel `json:"channel"`
	To             string         `json:"to"`
	Subject        string         `json:"subject,omitempty"`
	Text           string         `json:"text"`
	UnsubscribeURL string         `json:"unsubscribeUrl"`
	At             time.Time      `json:"at"`
}

// GetOutbox serves GET /api/deliveries/{id}/outbox: the customer messages
// of the delivery that were kept rather than sent, because no provider is
// configured for their channel. 404 when every channel has a provider.
func (h *Handlers) GetOutbox(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	d, err := h.findDelivery(ctx, req.Params["id"])
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	if h.outbox == nil {
		return h.errorResponse(ctx, domain.Errorf(domain.ENOTFOUND, "no outbox: e-mail and SMS both have a provider, so messages are sent, not kept"))
	}
	kept, err := h.outbox.Kept(ctx, d.ID)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	out := make([]outboxMessage, 0, len(kept))
	for _, m := range kept {
		out = append(out, outboxMessage{ID: m.ID, Channel: m.Channel, To: m.To, Subject: m.Subject, Text: m.Text, UnsubscribeURL: m.UnsubscribeURL, At: m.At})
	}
	return functionapp.JSON(http.StatusOK, map[string]any{"deliveryId": d.ID, "messages": out})
}

// customerMessageID names one milestone's message to one subscription on
// one channel; a retry adds its attempt, so that duplicate detection does
// not take it for the first.
func customerMessageID(env wire.Envelope) string {
	again := ""
	if env.Attempt > 0 {
		again = fmt.Sprintf("retry-%d", env.Attempt)
	}
	return customerMessageIDAgain(env, again)
}

// customerMessageIDAgain is customerMessageID for a message that tries
// env's again under the step name again ("" for the first try).
func customerMessageIDAgain(env wire.Envelope, again string) string {
	step := "to-" + env.SubscriptionID + "-" + string(env.Channel)
	if again != "" {
		step += "-" + env.RetryStep(again)
	}
	return wire.MessageID(env.NotificationID, 0, step)
}

// customerMessage builds the customer-messages queue message for env.
func customerMessage(env wire.Envelope) ports.Message {
	m := message(topology.QueueCustomerMessages, "", env)
	m.ID = customerMessageID(env)
	return m
}

// throttledMessageLimit is how long after the provider first throttled it
// a customer message is still tried: a day, after which the news is stale
// and the message a permanent failure.
const throttledMessageLimit = 24 * time.Hour

// SendCustomerMessage sends one milestone to one subscription on one
// channel through the messenger. A subscription ended since the milestone
// gets nothing. A failed attempt is tried again through the queue with a
// growing delay; a refusal the provider calls final, or
// Config.MessageAttempts failures, is a permanent failure, which the
// runtime dead-letters. A send the provider throttles (its quota for the
// minute or the hour used up) waits the time the provider names, and up to
// a quarter more (a minute at least) so that the messages it held do not
// all come back at once, without spending an attempt, since a try before
// then only counts against the quota again; that goes on until
// throttledMessageLimit after the first throttled try. Delivery is at
// least once.
func (h *Handlers) SendCustomerMessage(ctx context.Context, msg *ports.Delivered) ([]ports.Message, error) {
	ctx, env, d, n, err := h.loadNotification(ctx, msg, wire.OpCustomerMessage)
	if n == nil || err != nil {
		return nil, err
	}
	ctx = logctx.With(ctx, "notificationId", env.NotificationID, "subscriptionId", env.SubscriptionID, "channel", string(env.Channel))
	s, ok := d.Subscription(env.SubscriptionID)
	if !ok || s.Address(env.Channel) == "" {
		h.log.InfoContext(ctx, "subscription ended: customer message not sent")
		return nil, nil
	}
	if suppressed, err := h.suppressed(ctx, env.Channel, s.Address(env.Channel)); err != nil {
		return nil, err
	} else if suppressed {
		h.log.InfoContext(ctx, "the address asked for no more messages: customer message not sent")
		return nil, nil
	}
	out := h.composeMessage(d, n, s, env.Channel)
	attempt := env.Attempt + 1
	serr := h.messenger.Send(ctx, out)
	if serr == nil {
		// Sent, or kept in the outbox where no provider serves the channel
		// (the outbox logs each message it keeps).
		h.log.InfoContext(ctx, "customer message handed to the messenger", "customerMessageId", out.ID, "attempt", attempt)
		return nil, nil
	}
	if errors.Is(serr, ports.ErrUndeliverable) {
		return nil, &domain.Permanent{Err: fmt.Errorf("customer message %s refused: %w", out.ID, serr)}
	}
	var throttled *ports.MessageThrottled
	if errors.As(serr, &throttled) {
		now := h.clock.Now()
		since := now
		if env.ThrottledSince != nil {
			since = *env.ThrottledSince
		}
		if now.Sub(since) > throttledMessageLimit {
			return nil, &domain.Permanent{Err: fmt.Errorf("customer message %s throttled since %s: %w", out.ID, since.Format(time.RFC3339), serr)}
		}
		// The same message again, later, under an id drawn from this
		// message's (waitStep), as a webhook that waits its turn.
		again := *env
		again.ThrottledSince = &since
		m := customerMessage(again)
		m.ID = customerMessageIDAgain(*env, waitStep(msg.ID))
		// Spread over a quarter of the wait, and over a minute at least:
		// the messages an adapter holds until one instant (its quiet
		// period) do not all come back at once.
		wait := min(max(throttled.RetryAfter, time.Second), time.Hour)
		m.NotBefore = now.Add(wait + rand.N(max(wait/4, time.Minute)))
		h.log.WarnContext(ctx, "customer message throttled by its provider; waiting", "messageId", out.ID,
			"retryAfter", throttled.RetryAfter.String(), "err", serr)
		return []ports.Message{m}, nil
	}
	if attempt >= h.cfg.MessageAttempts {
		return nil, &domain.Permanent{Err: fmt.Errorf("customer message %s failed %d times, last: %w", out.ID, attempt, serr)}
	}
	retry := *env
	retry.Attempt = attempt
	m := customerMessage(retry)
	m.NotBefore = h.clock.Now().Add(h.backoff(attempt - 1))
	h.log.WarnContext(ctx, "customer message failed; retrying later", "messageId", out.ID, "attempt", attempt, "err", serr)
	return []ports.Message{m}, nil
}

// subjects are the e-mail subjects of the milestones.
var subjects = map[string]string{
	domain.NotifyScheduled:  "Your delivery is scheduled",
	domain.NotifyETAChanged: "Your delivery's time has changed",
	domain.NotifyPickedUp:   "Your package is on its way",
	domain.NotifyDelivered:  "Your package has been delivered",
	domain.NotifyFailed:     "We could not deliver your package",
	domain.NotifyCancelled:  "Your delivery was cancelled",
	domain.NotifyPreempted:  "Your delivery is getting another drone",
}

// composeMessage writes the message a subscription gets for a milestone:
// what happened, the tracking link, and the link that ends the
// subscription. Its id is the same on every attempt.
func (h *Handlers) composeMessage(d *domain.Delivery, n *domain.Notification, s *domain.Subscription, ch domain.Channel) ports.Outgoing {
	track := h.link("track/" + url.PathEscape(d.TrackingID))
	stop := h.link("unsubscribe/" + url.PathEscape(s.LinkToken(ch)))
	subject, ok := subjects[n.Kind]
	if !ok {
		subject = "News of your delivery"
	}
	var text string
	switch ch {
	case domain.ChannelSMS:
		// One line: every character costs on a phone.
		text = fmt.Sprintf("%s Follow it: %s Stop these texts: %s", n.Message, track, stop)
	default:
		text = fmt.Sprintf("%s\n\nFollow your delivery live: %s\n\n"+
			"You get these messages because they were asked for when this delivery was arranged.\n"+
			"To get no more messages from this sender, open %s\n", n.Message, track, stop)
	}
	out := ports.Outgoing{
		ID:         customerMessageID(wire.Envelope{NotificationID: n.ID, SubscriptionID: s.ID, Channel: ch}),
		DeliveryID: d.ID, OwnerID: d.OwnerID, Channel: ch, To: s.Address(ch),
		Subject: subject, Text: text, UnsubscribeURL: stop, At: n.At,
	}
	if s.KeptToken != "" {
		out.KeptUnsubscribeURL = h.link("unsubscribe/" + url.PathEscape(s.KeptToken))
	}
	return out
}

// link is an absolute URL of the API when Config.PublicBaseURL is known,
// and a path from the host's root otherwise.
func (h *Handlers) link(path string) string {
	return strings.TrimRight(h.cfg.PublicBaseURL, "/") + "/" + functionapp.RoutePrefix + "/" + path
}
