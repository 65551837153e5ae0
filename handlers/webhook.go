package handlers

import (
	"context"
	"encoding/json"
	"fmt"

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

// SendNotification offers one notification to the owner's webhook, when the
// owner has one. A failed attempt is tried again through the queue with a
// growing delay; after Config.WebhookAttempts the message is a permanent
// failure. The standalone runtime then dead-letters it; under the Functions
// host, where a custom handler cannot dead-letter, it is acknowledged and an
// error line logged; on Lambda it is logged and acknowledged. Either way the
// notification stays on the delivery (GET …/notifications). Delivery is at
// least once: receivers dedupe on the notification id header.
func (h *Handlers) SendNotification(ctx context.Context, msg *ports.Delivered) ([]ports.Message, error) {
	ctx, env, d, err := h.loadEnvelope(ctx, msg)
	if err != nil {
		return nil, err
	}
	if env.Operation != wire.OpNotify {
		return nil, &domain.Permanent{Err: domain.Invalid("operation", "must be notify")}
	}
	n, dropped := d.Notification(env.NotificationID)
	if dropped {
		// Superseded by the newer notices the delivery keeps instead.
		h.log.InfoContext(ctx, "notice no longer kept; not sent", "notificationId", env.NotificationID)
		return nil, nil
	}
	if n == nil {
		return nil, &domain.Permanent{Err: fmt.Errorf("delivery %s has no notification %s", d.ID, env.NotificationID)}
	}
	acct, err := h.st(ctx).Accounts.Find(ctx, d.OwnerID)
	if domain.IsCode(err, domain.ENOTFOUND) {
		return nil, nil // no account, no webhook: the record is all there is
	}
	if err != nil {
		return nil, err
	}
	if acct.WebhookURL == "" {
		return nil, nil
	}

	body, _ := json.Marshal(webhookBody{Notification: *n, DeliveryID: d.ID, TrackingID: d.TrackingID, OwnerID: d.OwnerID})
	now := h.clock.Now()
	werr := h.webhooks.Post(ctx, ports.Webhook{URL: acct.WebhookURL, Secret: acct.WebhookSecret, NotificationID: n.ID, Body: body, At: now})
	if werr == nil {
		h.log.InfoContext(ctx, "webhook delivered", "notificationId", n.ID, "attempt", env.Attempt+1)
		return nil, nil
	}
	attempt := env.Attempt + 1
	if attempt >= h.cfg.WebhookAttempts {
		return nil, &domain.Permanent{Err: fmt.Errorf("webhook for %s failed %d times, last: %w", n.ID, attempt, werr)}
	}
	retry := *env
	retry.Attempt = attempt
	m := message(topology.QueueNotifications, "", retry)
	m.ID = wire.MessageID(n.ID, 0, fmt.Sprintf("retry-%d", attempt))
	m.NotBefore = now.Add(h.backoff(attempt - 1))
	h.log.WarnContext(ctx, "webhook failed; retrying later", "notificationId", n.ID, "attempt", attempt, "err", werr)
	return []ports.Message{m}, nil
}
