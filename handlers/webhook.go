package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// webhookBody is what a business's webhook receives.
type webhookBody struct {
	domain.Notification
	DeliveryID string `json:"deliveryId"`
	TrackingID string `json:"trackingId"`
	OwnerID    string `json:"ownerId"`
}

// accountHook is what the notification step needs of an account.
type accountHook struct{ URL, Secret string }

// accountHook returns account id's webhook settings, or nil when it has no
// webhook or there is no such account: from the cache when it has them, or
// with one read, which notifications of the account that miss the cache at
// the same moment share. The settings change rarely (PutWebhook), and a
// change made through another process reaches this one when the entry
// expires, within Config.KeyCacheTTL, as a revoked key does; until then a
// notification may go to the old URL, signed with the old secret.
func (h *Handlers) accountHook(ctx context.Context, id string) (*accountHook, error) {
	if hook, ok := h.hooks.get(id, h.clock.Now()); ok {
		return hook, nil
	}
	v, err, _ := h.hookReads.Do(id, func() (any, error) {
		now, stamp := h.clock.Now(), h.hooks.stamp()
		acct, err := h.store.Accounts.Find(ctx, id)
		var hook *accountHook
		switch {
		case err == nil && acct.WebhookURL != "":
			hook = &accountHook{URL: acct.WebhookURL, Secret: acct.WebhookSecret}
		case err == nil, domain.IsCode(err, domain.ENOTFOUND):
		default:
			return nil, err
		}
		h.hooks.put(id, hook, now, stamp)
		return hook, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*accountHook), nil
}

// SendNotification offers one notification to the owner's webhook, when the
// owner has one. A failed attempt is tried again through the queue with a
// growing delay; after Config.WebhookAttempts the message is a permanent
// failure, which the runtime has dead-lettered (functionapp.Poisonous); the
// notification stays on the delivery (GET …/notifications). Delivery is at
// least once: receivers dedupe on the notification id header.
//
// A webhook whose address the service never sends to (ports.ErrWebhookRefused)
// is a permanent failure at once: no retry can change the answer, and
// retries would tell a prober which internal addresses answer. Of the
// notices an account's webhook is given up on (refused, or failing every
// attempt), only the first within givenUpHookMemory is dead-lettered, for
// the operator to see; the others are logged and acknowledged, so that a
// business whose webhook resolves to a private address, or answers 500 to
// everything, does not fill the dead-letter queue with one message per
// notice (each stays on its delivery). One held
// back because its account has its share of sends in flight waits its turn
// without spending an attempt; one held back by its account's open circuit
// spends one and is tried again after the cool-down or its backoff,
// whichever is later.
// givenUpHookMemory is how long a webhook a notice was given up on is
// remembered (per process, by account and URL) after that notice was
// dead-lettered.
const givenUpHookMemory = 10 * time.Minute

func (h *Handlers) SendNotification(ctx context.Context, msg *ports.Delivered) ([]ports.Message, error) {
	ctx, env, d, n, err := h.loadNotification(ctx, msg, wire.OpNotify)
	if n == nil || err != nil {
		return nil, err
	}
	hook, err := h.accountHook(ctx, d.OwnerID)
	if hook == nil || err != nil {
		return nil, err // no account or no webhook: the record is all there is
	}

	body, _ := json.Marshal(webhookBody{Notification: *n, DeliveryID: d.ID, TrackingID: d.TrackingID, OwnerID: d.OwnerID})
	now := h.clock.Now()
	werr := h.webhooks.Post(ctx, ports.Webhook{AccountID: d.OwnerID, URL: hook.URL, Secret: hook.Secret, NotificationID: n.ID, Body: body, At: now})
	if werr == nil {
		h.log.InfoContext(ctx, "webhook delivered", "notificationId", n.ID, "attempt", env.Attempt+1)
		return nil, nil
	}
	if errors.Is(werr, ports.ErrWebhookRefused) {
		return nil, h.giveUp(ctx, msg, env, d.OwnerID, hook.URL, fmt.Errorf("webhook for %s not sent: its address is refused: %w", n.ID, werr))
	}
	var held *ports.WebhookHeld
	if errors.As(werr, &held) && held.Busy {
		// The same message again, later, under an id drawn from this
		// message's (waitStep).
		m := message(topology.QueueNotifications, "", *env)
		m.ID = wire.MessageID(n.ID, 0, env.RetryStep(waitStep(msg.ID)))
		m.NotBefore = now.Add(held.RetryAfter)
		h.log.InfoContext(ctx, "webhook waits its turn", "notificationId", n.ID, "retryAfter", held.RetryAfter.String())
		return []ports.Message{m}, nil
	}
	attempt := env.Attempt + 1
	if attempt >= h.cfg.WebhookAttempts {
		return nil, h.giveUp(ctx, msg, env, d.OwnerID, hook.URL, fmt.Errorf("webhook for %s failed %d times, last: %w", n.ID, attempt, werr))
	}
	delay := h.backoff(attempt - 1)
	if held != nil {
		delay = max(delay, held.RetryAfter)
	}
	retry := *env
	retry.Attempt = attempt
	m := message(topology.QueueNotifications, "", retry)
	m.ID = wire.MessageID(n.ID, 0, env.RetryStep(fmt.Sprintf("retry-%d", attempt)))
	m.NotBefore = now.Add(delay)
	h.log.WarnContext(ctx, "webhook failed; retrying later", "notificationId", n.ID, "attempt", attempt, "err", werr)
	return []ports.Message{m}, nil
}

// waitStep names the step of a message that tries the one whose id is
// msgID again after a wait that spends no attempt: a redelivery of that
// message makes the same copy, which duplicate detection drops, and each
// wait gets a new name.
func waitStep(msgID string) string {
	sum := sha256.Sum256([]byte(msgID))
	return "wait-" + hex.EncodeToString(sum[:6])
}

// giveUp ends the notice env sends to account's webhook at url for err,
// in message msg: a permanent failure, which the runtime dead-letters,
// unless another message's notice to that webhook was given up on within
// givenUpHookMemory, when it is logged and acknowledged (nil). A message
// the bus delivers again is refused again, so that it does reach the
// dead-letter queue: under the Functions host a permanent failure is
// redelivered until Service Bus dead-letters it, perhaps to another
// instance, whose memory holds another message or none. A scheduled copy
// made after a transient failure is a first delivery to the bus, and the
// copies its count includes are taken off. A notice the operator replayed
// is dead-lettered again whatever came before: it is the one they are
// watching.
func (h *Handlers) giveUp(ctx context.Context, msg *ports.Delivered, env *wire.Envelope, account, url string, err error) error {
	key := account + "\x00" + url
	now := h.clock.Now()
	msgID := msg.ID
	_, copies := wire.Redelivery(msgID)
	if first, seen := h.givenUpHooks.get(key, now); seen && *first != msgID && msg.DeliveryCount-copies <= 1 && env.Replay == "" {
		h.log.WarnContext(ctx, "webhook given up; acknowledged, as a notice to it was dead-lettered lately",
			"notificationId", env.NotificationID, "err", err)
		return nil
	}
	h.givenUpHooks.put(key, &msgID, now, h.givenUpHooks.stamp())
	return &domain.Permanent{Err: err, Elsewhere: true}
}

// loadNotification loads a message of operation op (notify or
// customer-message), its delivery and the notification it names. The
// notification is nil, with no error, when the delivery no longer keeps
// it: newer notices superseded it and are sent instead. A message of
// another operation, or one naming a notification the delivery never had,
// is a permanent failure.
func (h *Handlers) loadNotification(ctx context.Context, msg *ports.Delivered, op wire.Operation) (context.Context, *wire.Envelope, *domain.Delivery, *domain.Notification, error) {
	ctx, env, d, err := h.loadEnvelope(ctx, msg)
	if err != nil {
		return ctx, env, d, nil, err
	}
	if env.Operation != op {
		return ctx, env, d, nil, &domain.Permanent{Err: domain.Invalid("operation", "must be %s", op)}
	}
	n, dropped := d.Notification(env.NotificationID)
	if dropped {
		h.log.InfoContext(ctx, "notice no longer kept; not sent", "notificationId", env.NotificationID)
		return ctx, env, d, nil, nil
	}
	if n == nil {
		return ctx, env, d, nil, &domain.Permanent{Err: fmt.Errorf("delivery %s has no notification %s", d.ID, env.NotificationID)}
	}
	return ctx, env, d, n, nil
}
