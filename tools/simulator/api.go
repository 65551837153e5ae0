package simulator

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
)

// location is the API's {latitude, longitude, altitude?}.
type location struct {
	Latitude  float64  `json:"latitude"`
	Longitude float64  `json:"longitude"`
	Altitude  *float64 `json:"altitude,omitempty"`
}

// drone is the part of GET /api/drones the simulator flies by.
type drone struct {
	ID                string     `json:"id"`
	Location          location   `json:"location"`
	RangeKm           float64    `json:"rangeKm"`
	CruiseSpeedMps    float64    `json:"cruiseSpeedMps"`
	BatteryPercent    float64    `json:"batteryPercent"`
	Status            string     `json:"status"`
	CurrentDeliveryID string     `json:"currentDeliveryId"`
	LastTelemetryAt   *time.Time `json:"lastTelemetryAt"` // not in every backend's answer
}

type dronePage struct {
	Drones []drone `json:"drones"`
	Next   string  `json:"next"`
}

// delivery is the part of GET /api/deliveries/{id} the simulator needs.
type delivery struct {
	ID              string     `json:"id"`
	Stage           string     `json:"stage"`
	PickupLocation  location   `json:"pickupLocation"`
	DropoffLocation location   `json:"dropOffLocation"`
	PickupTime      time.Time  `json:"pickupTime"`
	DroneID         string     `json:"droneId"`
	PickupETA       *time.Time `json:"pickupETA"`
	DeliveryETA     *time.Time `json:"deliveryETA"`
}

// report is one POST /api/drones/{id}/telemetry body.
type report struct {
	Location       location `json:"location"`
	BatteryPercent float64  `json:"batteryPercent"`
	Timestamp      string   `json:"timestamp"`
}

// apiError is a non-2xx answer, kept whole so callers can tell a missing
// resource or a refused key (which retrying cannot fix) from a hiccup.
type apiError struct {
	Method, Path string
	Status       int
	Detail       string
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

func statusOf(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// unauthorized reports whether the API refused the operator key.
func unauthorized(err error) bool {
	s := statusOf(err)
	return s == http.StatusUnauthorized || s == http.StatusForbidden
}

type client struct {
	base string
	key  string
	http *http.Client
}

func (c *client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "dronedelivery-simulator")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &apiError{Method: method, Path: path, Status: resp.StatusCode, Detail: problemDetail(data)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
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

// listDrones returns every drone with the status, following the pages.
func (c *client) listDrones(ctx context.Context, status string) ([]drone, error) {
	var all []drone
	after := ""
	for {
		q := url.Values{"status": {status}, "limit": {"1000"}}
		if after != "" {
			q.Set("after", after)
		}
		var page dronePage
		if err := c.do(ctx, http.MethodGet, "/api/drones?"+q.Encode(), nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Drones...)
		if page.Next == "" || page.Next == after || len(page.Drones) == 0 {
			return all, nil
		}
		after = page.Next
	}
}

func (c *client) getDelivery(ctx context.Context, id string) (*delivery, error) {
	var d delivery
	if err := c.do(ctx, http.MethodGet, "/api/deliveries/"+url.PathEscape(id), nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

func (c *client) postTelemetry(ctx context.Context, droneID string, r report) error {
	return c.do(ctx, http.MethodPost, "/api/drones/"+url.PathEscape(droneID)+"/telemetry", r, nil)
}
