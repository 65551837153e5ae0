// Package webpubsub relays messages to browsers through Azure Web PubSub,
// calling its data-plane REST API with a Microsoft Entra token (the app's
// managed identity in Azure): the Web PubSub adapter of ports.Push. The
// Functions host cannot hold a browser's connection open, so the service
// holds it and this adapter sends to it. Requests follow Microsoft's REST
// reference (api-version 2024-01-01):
//
//   - Send To Group: POST {endpoint}/api/hubs/{hub}/groups/{group}/:send
//     https://learn.microsoft.com/rest/api/webpubsub/dataplane/web-pub-sub/send-to-group
//   - Generate Client Token: POST {endpoint}/api/hubs/{hub}/:generateToken
//     with userId, role, minutesToExpire and group, answering {"token": …}
//     https://learn.microsoft.com/rest/api/webpubsub/dataplane/web-pub-sub/generate-client-token
//
// The browser connects to wss://{host}/client/hubs/{hub}?access_token={token}
// (https://learn.microsoft.com/azure/azure-web-pubsub/howto-generate-client-access-url);
// a token generated with group joins that group on connect, and a plain
// WebSocket without a subprotocol receives each message's data as sent
// (https://learn.microsoft.com/azure/azure-web-pubsub/concept-client-protocols).
// The identity needs the "Web PubSub Service Owner" role
// (infra/modules/webpubsub.bicep), which includes generating client tokens.
package webpubsub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// APIVersion is the REST API version this adapter speaks.
const APIVersion = "2024-01-01"

// Scope is the Microsoft Entra scope of Web PubSub's data plane, as the
// Azure SDKs request it (Azure SDK for Java, WebPubSubServiceClientBuilder,
// "https://webpubsub.azure.com/.default").
const Scope = "https://webpubsub.azure.com/.default"

// hubName is the pattern the REST API gives hub names.
var hubName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,127}$`)

// Config is how to reach a Web PubSub resource.
type Config struct {
	// Endpoint is the resource's endpoint, https://<resource>.webpubsub.azure.com.
	Endpoint string
	// Hub isolates this app's connections within the resource.
	Hub string
	// Credential gets tokens for Scope: a managed identity in Azure.
	Credential azcore.TokenCredential
	// Client sends the requests; nil means one with a 10 s timeout.
	Client *http.Client
}

// Client sends through one Web PubSub hub.
type Client struct {
	cfg      Config
	endpoint *url.URL
}

// New checks cfg and returns a client; nothing is called until a send.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.Endpoint, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" || u.RawQuery != "" {
		return nil, fmt.Errorf("webpubsub: endpoint %q must be a URL such as https://<resource>.webpubsub.azure.com", cfg.Endpoint)
	}
	if !hubName.MatchString(cfg.Hub) {
		return nil, fmt.Errorf("webpubsub: hub %q must start with a letter and hold only letters, digits and underscores", cfg.Hub)
	}
	if cfg.Credential == nil {
		return nil, errors.New("webpubsub: no credential")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Client{cfg: cfg, endpoint: u}, nil
}

// Describe names the resource and hub, for logs.
func (c *Client) Describe() string {
	return "Azure Web PubSub " + c.endpoint.Host + " hub " + c.cfg.Hub
}

// Origin is where browsers connect: the endpoint with ws or wss.
func (c *Client) Origin() string {
	scheme := "wss"
	if c.endpoint.Scheme == "http" {
		scheme = "ws"
	}
	return scheme + "://" + c.endpoint.Host
}

// SendToGroup sends body (JSON) to every connection in group. The service
// answers 202 once it has taken the message.
func (c *Client) SendToGroup(ctx context.Context, group string, body []byte) error {
	u := c.url("/api/hubs/"+url.PathEscape(c.cfg.Hub)+"/groups/"+url.PathEscape(group)+"/:send", nil)
	_, err := c.do(ctx, u, "application/json", body)
	return err
}

type tokenAnswer struct {
	Token string `json:"token"`
}

// ClientURL asks the service for a token that joins group on connect and
// may do nothing else (no role: the connection cannot send or join other
// groups), valid for ttl, and returns the client URL carrying it.
func (c *Client) ClientURL(ctx context.Context, group string, ttl time.Duration) (string, error) {
	minutes := max(int(ttl/time.Minute), 1)
	u := c.url("/api/hubs/"+url.PathEscape(c.cfg.Hub)+"/:generateToken", url.Values{
		"group":           {group},
		"minutesToExpire": {strconv.Itoa(minutes)},
	})
	b, err := c.do(ctx, u, "", nil)
	if err != nil {
		return "", err
	}
	var t tokenAnswer
	if err := json.Unmarshal(b, &t); err != nil || t.Token == "" {
		return "", fmt.Errorf("webpubsub: generateToken answered no token")
	}
	return c.Origin() + "/client/hubs/" + url.PathEscape(c.cfg.Hub) + "?access_token=" + url.QueryEscape(t.Token), nil
}

func (c *Client) url(path string, q url.Values) string {
	if q == nil {
		q = url.Values{}
	}
	q.Set("api-version", APIVersion)
	u := *c.endpoint
	u.RawPath = path
	u.Path, _ = url.PathUnescape(path)
	u.RawQuery = q.Encode()
	return u.String()
}

// do POSTs to u and returns the answer's body; an answer other than 2xx,
// or none, is an error (EUNAVAILABLE for 429 and 5xx).
func (c *Client) do(ctx context.Context, u, contentType string, body []byte) ([]byte, error) {
	tok, err := c.cfg.Credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{Scope}})
	if err != nil {
		return nil, domain.Unavailable(err, "webpubsub: no token")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.cfg.Client.Do(req)
	if err != nil {
		return nil, domain.Unavailable(err, "webpubsub: no answer")
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return b, nil
	}
	err = fmt.Errorf("webpubsub: %s answered %d: %.200s", req.URL.Path, resp.StatusCode, b)
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		return nil, domain.Unavailable(err, "webpubsub is unavailable")
	}
	return nil, err
}
