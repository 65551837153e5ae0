// Package acs sends customer e-mail and SMS through Azure Communication
// Services, calling its data-plane REST API with a Microsoft Entra token
// (the app's managed identity in Azure): the ACS adapter of
// ports.Messenger. The Azure SDK for Go has no data-plane client for
// Communication Services e-mail or SMS, so the requests are built here,
// following Microsoft's REST reference:
//
//   - Email - Send: POST {endpoint}/emails:send?api-version=2023-03-31
//     https://learn.microsoft.com/rest/api/communication/email/send
//   - Sms - Send: POST {endpoint}/sms?api-version=2021-03-07
//     https://learn.microsoft.com/rest/api/communication/dataplane/sms/send?view=rest-communication-dataplane-2021-03-07
//
// The current version of each area is listed at
// https://learn.microsoft.com/rest/api/communication (Email 2023-03-31,
// SMS 2021-03-07).
package acs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// The REST API versions this adapter speaks.
const (
	EmailAPIVersion = "2023-03-31"
	SMSAPIVersion   = "2021-03-07"
)

// Scope is the Microsoft Entra scope of Communication Services' data plane.
// The double slash is not a typo: it is the resource URI with a trailing
// slash followed by /.default, as Microsoft's Communication Services SDKs
// request it (Azure SDK for .NET, Azure.Communication common,
// BearerTokenAuthenticationPolicy(credential, "https://communication.azure.com//.default")).
const Scope = "https://communication.azure.com//.default"

// Config is how to reach a Communication Services resource.
type Config struct {
	// Endpoint is the resource's endpoint,
	// https://<resource>.<geography>.communication.azure.com.
	Endpoint string
	// EmailSender is the From address, in a domain linked to the resource
	// (DoNotReply@<guid>.azurecomm.net for an Azure-managed domain); ""
	// means this resource sends no e-mail.
	EmailSender string
	// SMSSender is a number the resource owns, in E.164 form; "" means it
	// sends no SMS.
	SMSSender string
	// Credential gets tokens for Scope: a managed identity in Azure.
	Credential azcore.TokenCredential
	// Client sends the requests; nil means one with a 30 s timeout.
	Client *http.Client
}

// Client sends through one Communication Services resource.
type Client struct {
	cfg      Config
	endpoint *url.URL

	mu    sync.Mutex
	token azcore.AccessToken
	// quietUntil holds, per API path, when the quota a 429 reported used
	// up is over: the sends before then are not asked of the service,
	// since each would count against the quota too.
	quietUntil map[string]time.Time
}

// New checks cfg and returns a client; nothing is called until Send.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.Endpoint, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" || u.RawQuery != "" {
		return nil, fmt.Errorf("acs: endpoint %q must be a URL such as https://<resource>.communication.azure.com", cfg.Endpoint)
	}
	if cfg.Credential == nil {
		return nil, errors.New("acs: no credential")
	}
	if cfg.EmailSender == "" && cfg.SMSSender == "" {
		return nil, errors.New("acs: give an e-mail sender, an SMS sender, or both")
	}
	if cfg.EmailSender != "" && !domain.ValidEmailAddress(cfg.EmailSender) {
		return nil, fmt.Errorf("acs: e-mail sender %q must be an address in a domain linked to the resource", cfg.EmailSender)
	}
	if cfg.SMSSender != "" && !domain.ValidPhoneNumber(cfg.SMSSender) {
		return nil, fmt.Errorf("acs: SMS sender %q must be a number of the resource in E.164 form (+18005550123)", cfg.SMSSender)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{cfg: cfg, endpoint: u, quietUntil: map[string]time.Time{}}, nil
}

// Describe names the resource and what it sends, for logs and banners.
func (c *Client) Describe() string {
	var what []string
	if c.cfg.EmailSender != "" {
		what = append(what, "e-mail from "+c.cfg.EmailSender)
	}
	if c.cfg.SMSSender != "" {
		what = append(what, "SMS from "+c.cfg.SMSSender)
	}
	return "Azure Communication Services " + c.endpoint.Host + " (" + strings.Join(what, ", ") + ")"
}

// Send hands one message to Communication Services. Its answer decides
// what happens next: 2xx is sent; 429 is a *ports.MessageThrottled with
// the wait the answer names, and the sends of that API before the wait is
// over get the same without a request; 408 and 5xx, or no answer, are
// worth another attempt; any other 4xx (a malformed address, an unknown
// sender) wraps ports.ErrUndeliverable. Delivery itself happens later and
// is not watched: a message the provider accepts and then cannot deliver
// is not retried.
func (c *Client) Send(ctx context.Context, m ports.Outgoing) error {
	switch m.Channel {
	case domain.ChannelEmail:
		if c.cfg.EmailSender == "" {
			return fmt.Errorf("acs: no e-mail sender configured: %w", ports.ErrUndeliverable)
		}
		return c.sendEmail(ctx, m)
	case domain.ChannelSMS:
		if c.cfg.SMSSender == "" {
			return fmt.Errorf("acs: no SMS sender configured: %w", ports.ErrUndeliverable)
		}
		return c.sendSMS(ctx, m)
	}
	return fmt.Errorf("acs: unknown channel %q: %w", m.Channel, ports.ErrUndeliverable)
}

// emailRequest is the EmailMessage of the Email - Send reference.
type emailRequest struct {
	SenderAddress string `json:"senderAddress"`
	Recipients    struct {
		To []emailAddress `json:"to"`
	} `json:"recipients"`
	Content struct {
		Subject   string `json:"subject"`
		PlainText string `json:"plainText"`
	} `json:"content"`
	Headers                        map[string]string `json:"headers,omitempty"`
	UserEngagementTrackingDisabled bool              `json:"userEngagementTrackingDisabled"`
}

type emailAddress struct {
	Address string `json:"address"`
}

func (c *Client) sendEmail(ctx context.Context, m ports.Outgoing) error {
	var body emailRequest
	body.SenderAddress = c.cfg.EmailSender
	body.Recipients.To = []emailAddress{{Address: m.To}}
	body.Content.Subject = m.Subject
	body.Content.PlainText = m.Text
	if m.UnsubscribeURL != "" {
		// Custom headers travel in "headers" (Microsoft's "Adding Reserved
		// Custom headers",
		// https://learn.microsoft.com/azure/communication-services/concepts/email/email-headers);
		// RFC 2369's lets mail clients offer an unsubscribe button, and
		// RFC 8058's says that button may post to it in one click.
		body.Headers = map[string]string{
			"List-Unsubscribe":      "<" + m.UnsubscribeURL + ">",
			"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
		}
	}
	// Tracking pixels and rewritten links have no place in a delivery
	// notice, and rewriting would break the unsubscribe link's token.
	body.UserEngagementTrackingDisabled = true
	header := http.Header{}
	// Operation-Id names the send operation (a UUID the caller may
	// choose): deriving it from the message id makes every attempt of one
	// message name the same operation.
	header.Set("Operation-Id", uuidFrom(m.ID))
	_, err := c.post(ctx, "/emails:send", EmailAPIVersion, header, body)
	return err
}

// smsRequest is the SendMessageRequest of the Sms - Send reference.
type smsRequest struct {
	From          string         `json:"from"`
	SMSRecipients []smsRecipient `json:"smsRecipients"`
	Message       string         `json:"message"`
	Options       struct {
		EnableDeliveryReport bool   `json:"enableDeliveryReport"`
		Tag                  string `json:"tag,omitempty"`
	} `json:"smsSendOptions"`
}

type smsRecipient struct {
	To string `json:"to"`
	// The repeatability pair makes a retried request safe: the service
	// sends a request id it has seen once only (repeatabilityResult
	// "rejected" on the repeat).
	RepeatabilityRequestID string `json:"repeatabilityRequestId"`
	RepeatabilityFirstSent string `json:"repeatabilityFirstSent"`
}

// smsResponse is the SmsSendResponse: one result per recipient.
type smsResponse struct {
	Value []struct {
		To                  string `json:"to"`
		MessageID           string `json:"messageId"`
		HTTPStatusCode      int    `json:"httpStatusCode"`
		Successful          bool   `json:"successful"`
		ErrorMessage        string `json:"errorMessage"`
		RepeatabilityResult string `json:"repeatabilityResult"`
	} `json:"value"`
}

func (c *Client) sendSMS(ctx context.Context, m ports.Outgoing) error {
	var body smsRequest
	body.From = c.cfg.SMSSender
	// The milestone's time is the same on every attempt, as the first-sent
	// time of one request id must be.
	body.SMSRecipients = []smsRecipient{{To: m.To, RepeatabilityRequestID: uuidFrom(m.ID), RepeatabilityFirstSent: m.At.UTC().Format(http.TimeFormat)}}
	body.Message = m.Text
	body.Options.Tag = "dronedelivery"
	resp, err := c.post(ctx, "/sms", SMSAPIVersion, nil, body)
	if err != nil {
		return err
	}
	var r smsResponse
	if err := json.Unmarshal(resp, &r); err != nil || len(r.Value) != 1 {
		return fmt.Errorf("acs: SMS answer %q is not one result", truncate(resp))
	}
	v := r.Value[0]
	switch {
	case v.Successful, strings.EqualFold(v.RepeatabilityResult, "rejected"):
		// "rejected" repeatability: this request id was sent before.
		return nil
	case retryable(v.HTTPStatusCode):
		return fmt.Errorf("acs: SMS to %s: %d %s", v.To, v.HTTPStatusCode, v.ErrorMessage)
	default:
		return fmt.Errorf("acs: SMS to %s: %d %s: %w", v.To, v.HTTPStatusCode, v.ErrorMessage, ports.ErrUndeliverable)
	}
}

// post sends one JSON request and returns the answer's body when it is 2xx.
func (c *Client) post(ctx context.Context, path, apiVersion string, header http.Header, body any) ([]byte, error) {
	now := time.Now()
	c.mu.Lock()
	until := c.quietUntil[path]
	c.mu.Unlock()
	if now.Before(until) {
		return nil, &ports.MessageThrottled{RetryAfter: until.Sub(now),
			Detail: fmt.Sprintf("acs: %s answered 429 lately; not asked again before its wait is over", path)}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	u := *c.endpoint
	u.Path = path
	u.RawQuery = url.Values{"api-version": {apiVersion}}.Encode()
	token, err := c.bearer(ctx)
	if err != nil {
		return nil, fmt.Errorf("acs: token for %s: %w", Scope, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "dronedelivery-acs/1")
	resp, err := c.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("acs: %s: %w", path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		return out, nil
	case resp.StatusCode == http.StatusTooManyRequests:
		// The subscription's sending quota is used up; every request,
		// retries too, counts against it, so the next try waits for the
		// time the answer names ("Service limits for Azure Communication
		// Services", Email: https://learn.microsoft.com/azure/communication-services/concepts/service-limits#email).
		now := time.Now()
		wait := retryAfter(resp.Header, now)
		c.mu.Lock()
		// Sends in flight together may be told different waits (the
		// minute's quota, the hour's): the longest holds.
		if until := now.Add(wait); until.After(c.quietUntil[path]) {
			c.quietUntil[path] = until
		}
		c.mu.Unlock()
		return nil, &ports.MessageThrottled{RetryAfter: wait,
			Detail: fmt.Sprintf("acs: %s answered 429: %s", path, truncate(out))}
	case retryable(resp.StatusCode):
		return nil, fmt.Errorf("acs: %s answered %d: %s", path, resp.StatusCode, truncate(out))
	default:
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			// A role assignment can take minutes to reach the service after
			// a deployment: worth another attempt, not a dead letter.
			return nil, fmt.Errorf("acs: %s answered %d (does the app's identity have its role on the resource?): %s", path, resp.StatusCode, truncate(out))
		}
		return nil, fmt.Errorf("acs: %s answered %d: %s: %w", path, resp.StatusCode, truncate(out), ports.ErrUndeliverable)
	}
}

// bearer returns a token for Scope, reusing one until five minutes before
// it expires, so a busy queue does not ask the identity endpoint each time.
func (c *Client) bearer(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token.Token != "" && time.Until(c.token.ExpiresOn) > 5*time.Minute {
		return c.token.Token, nil
	}
	t, err := c.cfg.Credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{Scope}})
	if err != nil {
		return "", err
	}
	c.token = t
	return t.Token, nil
}

// defaultRetryAfter is the wait after a 429 that names none.
const defaultRetryAfter = time.Minute

// retryAfter reads how long a 429 asks the sender to wait, from the
// headers azcore's retry policy reads, in its order (retry-after-ms,
// x-ms-retry-after-ms, then Retry-After in seconds or as an HTTP date;
// azcore v1.23.3, internal/shared/shared.go, RetryAfter), or
// defaultRetryAfter. A wait beyond a day is taken as a day.
func retryAfter(h http.Header, now time.Time) time.Duration {
	const most = 24 * time.Hour
	for _, k := range []string{"retry-after-ms", "x-ms-retry-after-ms"} {
		if ms, err := strconv.ParseInt(h.Get(k), 10, 64); err == nil && ms > 0 {
			return time.Duration(min(ms, most.Milliseconds())) * time.Millisecond
		}
	}
	v := h.Get("Retry-After")
	if s, err := strconv.ParseInt(v, 10, 64); err == nil && s > 0 {
		return time.Duration(min(s, int64(most.Seconds()))) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil && at.After(now) {
		return min(at.Sub(now), most)
	}
	return defaultRetryAfter
}

func retryable(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// uuidFrom derives a UUID from a message id: the first 16 bytes of a
// SHA-256, marked as a custom (version 8) RFC 9562 UUID. The same id always
// gives the same UUID.
func uuidFrom(id string) string {
	sum := sha256.Sum256([]byte("dronedelivery/acs/" + id))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x80 // version 8
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func truncate(b []byte) string {
	const max = 512
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}
