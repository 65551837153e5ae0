// Package apiclient is the one client of the drone delivery HTTP API that
// the tools and the end-to-end tests share: the simulator, the load
// generator and the tests all send their requests through Client.Send,
// and the calls they have in common (sign up, post a delivery request, read
// a delivery, report telemetry, list and register drones) are typed here.
// It is test and measurement tooling, never imported by the product.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// Client calls the API at Base. It is a small value: copy it to call with
// another key (WithKey). Callers that need more of an exchange, such as a
// check of every request against the OpenAPI document, give it an
// http.Client whose Transport does that.
type Client struct {
	// Base is the service's address, http://host:port, without a
	// trailing slash; paths are appended to it. Empty makes every path a
	// whole URL.
	Base string
	// Key is sent as `Authorization: Bearer <Key>`; empty sends none.
	Key string
	// HTTP sends the requests; nil means http.DefaultClient.
	HTTP *http.Client
	// UserAgent, when set, names the caller in each request.
	UserAgent string
	// Header holds more headers for every request, such as a trace
	// context.
	Header http.Header
}

// New returns a client of the service at base with key.
func New(base, key string, hc *http.Client) Client {
	return Client{Base: strings.TrimSuffix(base, "/"), Key: key, HTTP: hc}
}

// WithKey returns a copy of c that sends key instead.
func (c Client) WithKey(key string) Client {
	c.Key = key
	return c
}

// Response is one answer, read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// maxBody bounds how much of an answer is read.
const maxBody = 64 << 20

// Send sends one request and returns the answer whatever its status; the
// error is for a request that could not be made or answered. body is sent
// as it is when it is a string or []byte, as JSON otherwise, and not at all
// when nil; a body goes with Content-Type application/json.
func (c Client) Send(ctx context.Context, method, path string, body any) (*Response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode the body: %w", method, path, err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Key != "" {
		req.Header.Set("Authorization", "Bearer "+c.Key)
	}
	for k, v := range c.Header {
		req.Header[k] = v
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, err
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// Call sends one request and decodes a 2xx answer's JSON into out (unless
// out is nil); any other status is an *Error.
func (c Client) Call(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.Send(ctx, method, path, body)
	if err != nil {
		return err
	}
	if resp.Status < 200 || resp.Status > 299 {
		return &Error{Method: method, Path: path, Status: resp.Status, Detail: problemDetail(resp.Body)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(resp.Body, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// Error is an answer with a status other than 2xx, kept whole so callers
// can tell a missing resource or a refused key (which retrying cannot fix)
// from a hiccup.
type Error struct {
	Method, Path string
	Status       int
	Detail       string
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// StatusOf returns the status of an *Error in err's chain, 0 if none.
func StatusOf(err error) int {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// Unauthorized reports whether the API refused the key.
func Unauthorized(err error) bool {
	s := StatusOf(err)
	return s == http.StatusUnauthorized || s == http.StatusForbidden
}

// problemDetail pulls the human part out of an RFC 9457 body.
func problemDetail(b []byte) string {
	var p struct{ Title, Detail string }
	if json.Unmarshal(b, &p) == nil && (p.Detail != "" || p.Title != "") {
		if p.Detail != "" {
			return p.Detail
		}
		return p.Title
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// Registration is the POST /api/accounts body.
type Registration struct {
	Name         string `json:"name"`
	ContactEmail string `json:"contactEmail"`
	WebhookURL   string `json:"webhookUrl,omitempty"`
}

// Account is what signing up answers: the account and its first key.
type Account struct {
	AccountID     string `json:"accountId"`
	APIKey        string `json:"apiKey"`
	WebhookSecret string `json:"webhookSecret"`
}

// SignUp registers a business; the key it answers is the Account's APIKey
// (c.WithKey(acct.APIKey) calls as the business).
func (c Client) SignUp(ctx context.Context, r Registration) (Account, error) {
	var a Account
	if err := c.WithKey("").Call(ctx, http.MethodPost, "/api/accounts", r, &a); err != nil {
		return Account{}, err
	}
	if a.APIKey == "" {
		return Account{}, errors.New("POST /api/accounts: the answer has no apiKey")
	}
	return a, nil
}

// Accepted is the answer to a delivery request: the request as stored.
type Accepted struct {
	DeliveryID string `json:"deliveryId"`
	TrackingID string `json:"trackingId"`
	OwnerID    string `json:"ownerId"`
}

// PostDelivery submits a delivery request (a value sent as JSON, or its
// bytes).
func (c Client) PostDelivery(ctx context.Context, req any) (Accepted, error) {
	var a Accepted
	err := c.Call(ctx, http.MethodPost, "/api/deliveryrequests", req, &a)
	return a, err
}

// Delivery is GET /api/deliveries/{id}: the delivery as its business sees it.
type Delivery struct {
	ID                string             `json:"id"`
	TrackingID        string             `json:"trackingId"`
	Stage             domain.Stage       `json:"stage"`
	DroneID           string             `json:"droneId"`
	PickupLocation    domain.Location    `json:"pickupLocation"`
	DropoffLocation   domain.Location    `json:"dropOffLocation"`
	PickupTime        time.Time          `json:"pickupTime"`
	CreatedAt         time.Time          `json:"createdAt"`
	PickupETA         *time.Time         `json:"pickupETA"`
	DeliveryETA       *time.Time         `json:"deliveryETA"`
	ScheduledAt       *time.Time         `json:"scheduledAt"`
	LastKnownLocation *domain.Location   `json:"lastKnownLocation"`
	FailureReason     string             `json:"failureReason"`
	PackageInfo       domain.PackageInfo `json:"packageInfo"`
	// PlannedRoute is the path dispatch planned, round no-fly zones.
	PlannedRoute *domain.PlannedRoute `json:"plannedRoute"`
}

// GetDelivery reads one delivery.
func (c Client) GetDelivery(ctx context.Context, id string) (*Delivery, error) {
	var d Delivery
	if err := c.Call(ctx, http.MethodGet, "/api/deliveries/"+url.PathEscape(id), nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// Report is one telemetry report of a drone.
type Report struct {
	Location       domain.Location `json:"location"`
	BatteryPercent float64         `json:"batteryPercent"`
	Timestamp      string          `json:"timestamp"`
}

// PostTelemetry sends one report for the drone (with the operator's or
// the drone's key).
func (c Client) PostTelemetry(ctx context.Context, droneID string, r Report) error {
	return c.Call(ctx, http.MethodPost, "/api/drones/"+url.PathEscape(droneID)+"/telemetry", r, nil)
}

// DroneSpec is the PUT /api/drones/{id} body: a drone as the operator
// registers it.
type DroneSpec struct {
	Location       domain.Location `json:"location"`
	MaxPayloadKg   float64         `json:"maxPayloadKg"`
	MaxPackageSize string          `json:"maxPackageSize"`
	RangeKm        float64         `json:"rangeKm"`
	CruiseSpeedMps float64         `json:"cruiseSpeedMps"`
	BatteryPercent float64         `json:"batteryPercent"`
}

// PutDrone registers or replaces a drone (with the operator's key).
func (c Client) PutDrone(ctx context.Context, id string, s DroneSpec) error {
	return c.Call(ctx, http.MethodPut, "/api/drones/"+url.PathEscape(id), s, nil)
}

// GetDrone reads one drone (with the operator's key).
func (c Client) GetDrone(ctx context.Context, id string) (*domain.Drone, error) {
	var d domain.Drone
	if err := c.Call(ctx, http.MethodGet, "/api/drones/"+url.PathEscape(id), nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// ListDrones returns every drone with the status (all when empty),
// following the pages (with the operator's key).
func (c Client) ListDrones(ctx context.Context, status domain.DroneStatus) ([]*domain.Drone, error) {
	var all []*domain.Drone
	after := ""
	for {
		q := url.Values{"limit": {"1000"}}
		if status != "" {
			q.Set("status", string(status))
		}
		if after != "" {
			q.Set("after", after)
		}
		var page struct {
			Drones []*domain.Drone `json:"drones"`
			Next   string          `json:"next"`
		}
		if err := c.Call(ctx, http.MethodGet, "/api/drones?"+q.Encode(), nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Drones...)
		if page.Next == "" || page.Next == after || len(page.Drones) == 0 {
			return all, nil
		}
		after = page.Next
	}
}
