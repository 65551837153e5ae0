// Package webhook delivers notifications to businesses' webhook endpoints
// over HTTP, signed with each account's secret: the HTTP adapter of
// ports.Webhooks. Sign-up is open, so anybody chooses where these POSTs
// go: the client sends only to public addresses, checked when it dials,
// follows no redirect, and reads little of an answer; Fair keeps one
// account's slow or dead endpoint from delaying the others'.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
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

// DefaultTimeout bounds one attempt when Options.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// maxAnswer is how much of an answer is read: enough to reuse the
// connection after a short body, never a receiver's endless stream.
const maxAnswer = 64 << 10

// Options configure the HTTP adapter.
type Options struct {
	// Timeout bounds one attempt, from dialling to the end of the answer's
	// headers and the read of its body; zero means DefaultTimeout.
	Timeout time.Duration
	// AllowPrivate lets webhooks reach loopback, private and link-local
	// addresses: for development and tests on one machine, never in
	// production (the WEBHOOK_ALLOW_PRIVATE setting).
	AllowPrivate bool
}

// HTTP posts webhooks.
type HTTP struct {
	client *http.Client
}

// New returns the adapter. Its client dials only addresses that
// domain.WebhookAddrRefused accepts (unless o.AllowPrivate), judged after
// name resolution on each address it connects to, so a name that resolves
// to a private address, at sign-up or only later (DNS rebinding), is
// refused. It uses no proxy, which would connect on its behalf past that
// check, and follows no redirect.
func New(o Options) *HTTP {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	dialer := &net.Dialer{Timeout: o.Timeout, KeepAlive: 30 * time.Second}
	if !o.AllowPrivate {
		dialer.Control = refusePrivate
	}
	transport := &http.Transport{
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    o.Timeout,
		ResponseHeaderTimeout:  o.Timeout,
		MaxResponseHeaderBytes: 16 << 10,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
	}
	return &HTTP{client: &http.Client{
		Transport: transport,
		Timeout:   o.Timeout,
		// A redirect is answered as it is: a failure like any other
		// answer but 2xx. Following one would send the body (307) or a
		// GET (302) to an address the account never registered.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// refusePrivate is the dialer's Control: it runs after the name is
// resolved, on each address the dialer is about to connect to.
func refusePrivate(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q is not an IP address and port", ports.ErrWebhookRefused, address)
	}
	if why := domain.WebhookAddrRefused(ap.Addr()); why != "" {
		return fmt.Errorf("%w: %s is a %s address", ports.ErrWebhookRefused, ap.Addr(), why)
	}
	return nil
}

// Redact returns what of a webhook URL may be logged or kept in an error:
// its scheme and host. Paths and queries often carry the receiver's
// tokens.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparseable URL)"
	}
	return u.Scheme + "://" + u.Host
}

// Post sends w as a JSON POST with the signature headers; any answer but
// 2xx is an error, a redirect included. No error names more of the URL
// than Redact does.
func (a *HTTP) Post(ctx context.Context, w ports.Webhook) error {
	target := Redact(w.URL)
	ts := w.At.Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(w.Body))
	if err != nil {
		return fmt.Errorf("webhook to %s: %w: the URL does not parse", target, ports.ErrWebhookRefused)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "dronedelivery-webhook/1")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(w.Secret, ts, w.Body))
	req.Header.Set(HeaderNotificationID, w.NotificationID)
	resp, err := a.client.Do(req)
	if err != nil {
		// A *url.Error quotes the whole URL; what it wraps names at most
		// the address dialled.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("webhook to %s: %w", target, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode <= 399:
		return fmt.Errorf("webhook to %s answered %d; redirects are not followed", target, resp.StatusCode)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return fmt.Errorf("webhook to %s answered %d", target, resp.StatusCode)
	}
	return nil
}
