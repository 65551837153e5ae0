package handlers

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// Webhook headers. The signature is HMAC-SHA256, keyed with the account's
// webhook secret, over "<timestamp>.<body>", so a receiver can check both
// that we sent it and that it is fresh.
const (
	HeaderSignature      = "X-Drone-Delivery-Signature"
	HeaderTimestamp      = "X-Drone-Delivery-Timestamp"
	HeaderNotificationID = "X-Drone-Delivery-Notification-Id"
)

// webhookBody is what a business's webhook receives.
type webhookBody struct {
	domain.Notification
	DeliveryID string `json:"deliveryId"`
	TrackingID string `json:"trackingId"`
	OwnerID    string `json:"ownerId"`
}

// Sign returns the signature header value for body sent at ts.
func Sign(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "%d.", ts)
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// SendNotification offers one notification to the owner's webhook, when the
// owner has one. A failed attempt is tried again through the queue with a
// growing delay; after Config.WebhookAttempts the message is a permanent
// failure, which the runtime dead-letters. Delivery is at least once:
// receivers dedupe on the notification id header.
func (h *Handlers) SendNotification(ctx context.Context, msg *ports.Delivered) ([]ports.Message, error) {
	ctx, env, d, err := h.loadEnvelope(ctx, msg)
	if err != nil {
		return nil, err
	}
	if env.Operation != wire.OpNotify {
		return nil, &domain.Permanent{Err: domain.Invalid("operation", "must be notify")}
	}
	var n *domain.Notification
	for i := range d.Notifications {
		if d.Notifications[i].ID == env.NotificationID {
			n = &d.Notifications[i]
		}
	}
	if n == nil {
		return nil, &domain.Permanent{Err: fmt.Errorf("delivery %s has no notification %s", d.ID, env.NotificationID)}
	}
	acct, err := h.store.Accounts.Find(ctx, d.OwnerID)
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
	werr := h.postWebhook(ctx, acct, n.ID, body, now)
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

func (h *Handlers) postWebhook(ctx context.Context, acct *domain.Account, id string, body []byte, now time.Time) error {
	ts := now.Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, acct.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "dronedelivery-webhook/1")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(acct.WebhookSecret, ts, body))
	req.Header.Set(HeaderNotificationID, id)
	resp, err := h.cfg.WebhookClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook answered %d", resp.StatusCode)
	}
	return nil
}
