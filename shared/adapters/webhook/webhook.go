// Package webhook delivers notifications to businesses' webhook endpoints
// over HTTP, signed with each account's secret: the HTTP adapter of
// ports.Webhooks.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/fabrikam/dronedelivery/shared/ports"
)

// Webhook headers. The signature is HMAC-SHA256, keyed with the account's
// webhook secret, over "<timestamp>.<body>", so a receiver can check both
// that we sent it and that it is fresh.
const (
	HeaderSignature      = "X-Drone-Delivery-Signature"
	HeaderTimestamp      = "X-Drone-Delivery-Timestamp"
	HeaderNotificationID = "X-Drone-Delivery-Notification-Id"
)

// Sign returns the signature header value for body sent at ts.
func Sign(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "%d.", ts)
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// DefaultTimeout bounds one attempt when no client is given.
const DefaultTimeout = 5 * time.Second

// HTTP posts webhooks with its client, whose timeout bounds each attempt.
type HTTP struct {
	Client *http.Client
}

// New returns the adapter over client, or over a client with DefaultTimeout
// when client is nil.
func New(client *http.Client) *HTTP {
	if client == nil {
		client = &http.Client{Timeout: DefaultTimeout}
	}
	return &HTTP{Client: client}
}

// Post sends w as a JSON POST with the signature headers; any answer but
// 2xx is an error. At most 64 KiB of the answer is read, so a receiver
// cannot make us read without end.
func (a *HTTP) Post(ctx context.Context, w ports.Webhook) error {
	ts := w.At.Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(w.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "dronedelivery-webhook/1")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(w.Secret, ts, w.Body))
	req.Header.Set(HeaderNotificationID, w.NotificationID)
	resp, err := a.Client.Do(req)
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
