package domain

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on client-supplied values.
const (
	MaxIDLength     = 128
	MaxTagLength    = 256
	MaxWeightKg     = 1000
	DefaultDeadline = 2 * time.Hour // after the pickup time, when the client names none
)

// Defaults fills what the client left out, as of the moment of acceptance:
// the pickup is as soon as possible, the deadline DefaultDeadline after it
// but not past the booking horizon (now + horizon; zero means
// DefaultMaxHorizon) when the pickup is within it, so that a late booking
// is not refused for a deadline its client never named, and the package id
// is the delivery id.
func (r *DeliveryRequest) Defaults(now time.Time, deliveryID string, horizon time.Duration) {
	if r.PickupTime.IsZero() {
		r.PickupTime = now.UTC().Truncate(time.Second)
	}
	if r.Deadline.IsZero() {
		r.Deadline = defaultDeadline(r.PickupTime, now, horizon)
	}
	if r.PackageInfo.PackageID == "" {
		r.PackageInfo.PackageID = deliveryID
	}
}

// defaultDeadline is the deadline of a request that names none:
// DefaultDeadline after its pickup, but not past the booking horizon (now
// + horizon; zero means DefaultMaxHorizon) when the pickup is within it.
func defaultDeadline(pickup, now time.Time, horizon time.Duration) time.Time {
	deadline := pickup.Add(DefaultDeadline)
	end := now.Add(positiveOr(horizon, DefaultMaxHorizon)).UTC().Truncate(time.Second)
	if deadline.After(end) && end.After(pickup) {
		return end
	}
	return deadline
}

// Who set a delivery's deadline (Delivery.DeadlineBy).
const (
	DeadlineByService = "service"
	DeadlineByClient  = "client"
)

// ValidID checks an identifier chosen by a client: it becomes part of URLs,
// queue message ids and database keys, so only URL-safe characters pass.
func ValidID(field, id string) error {
	if id == "" || len(id) > MaxIDLength {
		return Invalid(field, "must be 1 to %d characters", MaxIDLength)
	}
	if id == "." || id == ".." {
		// A path segment of its own that every URL resolver removes.
		return Invalid(field, "must not be . or ..")
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.~", c)) {
			return Invalid(field, "may contain only letters, digits and - _ . ~")
		}
	}
	return nil
}

// ValidText checks free text: valid UTF-8, no control characters, no
// bidirectional embeddings, overrides or isolates (which make a name or a
// tag display in another order than it reads, the "Trojan Source" trick),
// bounded. Zero-width joiners stay allowed: emoji sequences and some
// scripts need them.
func ValidText(field, s string, max int) error {
	if !utf8.ValidString(s) {
		return Invalid(field, "must be valid UTF-8")
	}
	if utf8.RuneCountInString(s) > max {
		return Invalid(field, "must be at most %d characters", max)
	}
	for _, c := range s {
		if unicode.IsControl(c) {
			return Invalid(field, "must not contain control characters")
		}
		if c >= '\u202a' && c <= '\u202e' || c >= '\u2066' && c <= '\u2069' {
			return Invalid(field, "must not contain bidirectional formatting characters (U+%04X)", c)
		}
	}
	return nil
}

// Reschedule is a validated PATCH /api/deliveryrequests/{id} body: the
// fields the client wants changed.
type Reschedule struct {
	PickupLocation  *Location
	DropoffLocation *Location
	PickupTime      *time.Time
	Deadline        *time.Time
}

// Apply changes req as asked, keeping the deadline after the pickup time.
// A deadline the service set (serviceDeadline: the client never named one)
// moves with a new pickup time unless the change names one, as Defaults
// sets it as of now within horizon: the client never chose it, so must not
// be told it is now too early.
func (r *Reschedule) Apply(req *DeliveryRequest, serviceDeadline bool, now time.Time, horizon time.Duration) error {
	if r.PickupLocation != nil {
		req.PickupLocation = *r.PickupLocation
	}
	if r.DropoffLocation != nil {
		req.DropoffLocation = *r.DropoffLocation
	}
	if r.PickupTime != nil {
		req.PickupTime = *r.PickupTime
		if r.Deadline == nil && serviceDeadline {
			req.Deadline = defaultDeadline(req.PickupTime, now, horizon)
		}
	}
	if r.Deadline != nil {
		req.Deadline = *r.Deadline
	}
	if !req.Deadline.After(req.PickupTime) {
		return Invalid("deadline", "must be after pickupTime")
	}
	switch {
	case r.DropoffLocation != nil:
		return DistinctPlaces(req.PickupLocation, req.DropoffLocation, "dropOffLocation")
	case r.PickupLocation != nil:
		return DistinctPlaces(req.PickupLocation, req.DropoffLocation, "pickupLocation")
	}
	return nil
}

// DistinctPlaces refuses a pickup and a dropoff at the very same
// coordinates, naming field (the one given last, pickupLocation or
// dropOffLocation): nothing would be carried anywhere, so it is a client's
// mistake, not a delivery.
func DistinctPlaces(pickup, dropoff Location, field string) error {
	if pickup.Latitude == dropoff.Latitude && pickup.Longitude == dropoff.Longitude {
		other := "pickupLocation"
		if field == "pickupLocation" {
			other = "dropOffLocation"
		}
		return Invalid(field, "must differ from %s", other)
	}
	return nil
}
