package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fabrikam/dronedelivery/tools/apiclient"
)

// Credentials is what signing up yields: the key to send as a bearer token
// and the owner id the business's requests must carry.
type Credentials struct {
	Key   string
	Owner string
}

// Client sends requests to the service under test over keep-alive
// connections, and gets an API key when the service asks for one: a 401
// makes it sign up once (however many requests were refused at the same
// time) and retry with the key. Requests under an operator path carry the
// operator key instead, when one is set.
type Client struct {
	api           apiclient.Client
	operatorKey   string
	operatorPaths []string
	signUp        func(ctx context.Context, c *Client) (Credentials, error)

	creds atomic.Pointer[Credentials]
	mu    sync.Mutex // held while signing up
}

// ClientOptions configures NewClient.
type ClientOptions struct {
	// Connections bounds the idle keep-alive connections kept, which
	// should match the load's concurrency so none is reopened.
	Connections int
	// OperatorKey is sent as a bearer token on OperatorPaths.
	OperatorKey   string
	OperatorPaths []string
	// SignUp obtains credentials when the service answers 401; nil means
	// a 401 is returned like any other status.
	SignUp func(ctx context.Context, c *Client) (Credentials, error)
	// Owner is the owner id to use before any sign-up.
	Owner string
}

// NewClient returns a client of the service at base (http://host:port).
func NewClient(base string, o ClientOptions) *Client {
	conns := max(o.Connections, 2)
	tr := &http.Transport{
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	c := &Client{api: apiclient.New(base, "", &http.Client{Transport: tr, Timeout: 30 * time.Second}),
		operatorKey: o.OperatorKey, operatorPaths: o.OperatorPaths, signUp: o.SignUp}
	c.creds.Store(&Credentials{Owner: o.Owner})
	return c
}

// Base returns the service's base URL.
func (c *Client) Base() string { return c.api.Base }

// Owner returns the owner id requests should carry: the signed-up
// account's once there is one.
func (c *Client) Owner() string { return c.creds.Load().Owner }

// Authenticated reports whether the client holds an API key.
func (c *Client) Authenticated() bool { return c.creds.Load().Key != "" }

// Close drops the idle connections.
func (c *Client) Close() { c.api.HTTP.CloseIdleConnections() }

// API returns the client of the service's typed calls, without a key.
func (c *Client) API() apiclient.Client { return c.api }

// Do sends one request. body, when not nil, builds the request body; it is
// called again for the retry after a sign-up, since the body may name the
// owner. It returns the status and, when keep is set, the response body.
func (c *Client) Do(ctx context.Context, method, path string, body func(owner string) []byte, keep bool) (int, []byte, error) {
	for attempt := 0; ; attempt++ {
		creds := c.creds.Load()
		status, resp, err := c.send(ctx, method, path, body, creds, keep)
		if err != nil || status != http.StatusUnauthorized || c.signUp == nil || attempt > 0 || c.operatorPath(path) {
			return status, resp, err
		}
		if err := c.renew(ctx, creds); err != nil {
			return status, resp, err
		}
	}
}

func (c *Client) operatorPath(path string) bool {
	for _, p := range c.operatorPaths {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

func (c *Client) send(ctx context.Context, method, path string, body func(string) []byte, creds *Credentials, keep bool) (int, []byte, error) {
	var b any
	if body != nil {
		b = body(creds.Owner)
	}
	key := creds.Key
	if c.operatorPath(path) {
		key = c.operatorKey
	}
	resp, err := c.api.WithKey(key).Send(ctx, method, path, b)
	if err != nil {
		return 0, nil, transportError(err)
	}
	if !keep {
		return resp.Status, nil, nil
	}
	return resp.Status, resp.Body, nil
}

// renew signs up unless another request already did since creds were read.
func (c *Client) renew(ctx context.Context, seen *Credentials) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.creds.Load() != seen {
		return nil
	}
	got, err := c.signUp(ctx, c)
	if err != nil {
		return fmt.Errorf("sign up: %w", err)
	}
	if got.Owner == "" {
		got.Owner = seen.Owner
	}
	c.creds.Store(&got)
	return nil
}

// transportError names a failed exchange by kind, so that a run's error
// tally does not list every connection separately.
func transportError(err error) error {
	msg := err.Error()
	for _, kind := range []string{"connection refused", "connection reset", "timeout", "EOF", "broken pipe"} {
		if strings.Contains(msg, kind) {
			return fmt.Errorf("transport: %s", kind)
		}
	}
	return fmt.Errorf("transport: %w", err)
}
