package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// Page sizes of GET /api/deliveries.
const (
	DefaultListLimit = 50
	MaxListLimit     = 200
)

// DeliveryListing is a validated GET /api/deliveries query.
type DeliveryListing struct {
	OwnerID string // as given, or empty; the caller checks it names its own account
	Stage   domain.Stage
	// CreatedFrom (inclusive) and CreatedTo (exclusive); zero when not given.
	CreatedFrom, CreatedTo time.Time
	After                  *Cursor // nil on the first page
	Limit                  int
}

// Cursor is where a listing page ended: the creation time and id of its
// last delivery. Clients see it only encoded (EncodeCursor), as an opaque
// string.
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// listingParams are the query parameters GET /api/deliveries takes.
var listingParams = []string{"ownerId", "stage", "createdFrom", "createdTo", "cursor", "limit"}

// ParseDeliveryListing decodes and validates the query of GET
// /api/deliveries. Every error names the parameter at fault: an unknown or
// repeated parameter, or a malformed value, is refused rather than
// ignored, since ignoring a misspelt filter would answer a different
// question than the one asked.
func ParseDeliveryListing(q url.Values) (*DeliveryListing, error) {
	if err := CheckQuery(q, listingParams...); err != nil {
		return nil, err
	}
	l := &DeliveryListing{Limit: DefaultListLimit}
	if v, ok := one(q, "ownerId"); ok {
		if err := domain.ValidID("ownerId", v); err != nil {
			return nil, err
		}
		l.OwnerID = v
	}
	if v, ok := one(q, "stage"); ok {
		if s := domain.Stage(v); s.Valid() {
			l.Stage = s
		} else {
			names := make([]string, len(domain.Stages))
			for i, s := range domain.Stages {
				names[i] = string(s)
			}
			return nil, domain.Invalid("stage", "must be one of %s", strings.Join(names, ", "))
		}
	}
	var err error
	if l.CreatedFrom, err = queryTime(q, "createdFrom"); err != nil {
		return nil, err
	}
	if l.CreatedTo, err = queryTime(q, "createdTo"); err != nil {
		return nil, err
	}
	if !l.CreatedFrom.IsZero() && !l.CreatedTo.IsZero() && l.CreatedTo.Before(l.CreatedFrom) {
		return nil, domain.Invalid("createdTo", "must not be before createdFrom")
	}
	if v, ok := one(q, "limit"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxListLimit || strconv.Itoa(n) != v {
			return nil, domain.Invalid("limit", "must be an integer from 1 to %d", MaxListLimit)
		}
		l.Limit = n
	}
	if v, ok := one(q, "cursor"); ok {
		c, err := DecodeCursor(v)
		if err != nil {
			return nil, err
		}
		l.After = c
	}
	return l, nil
}

// one returns the parameter's single value and whether it was given.
func one(q url.Values, k string) (string, bool) {
	vs, ok := q[k]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

// queryTime reads an RFC 3339 parameter; given but empty is malformed.
func queryTime(q url.Values, k string) (time.Time, error) {
	v, ok := one(q, k)
	if !ok {
		return time.Time{}, nil
	}
	if v == "" {
		return time.Time{}, domain.Invalid(k, "must be an RFC 3339 date-time such as 2026-11-26T15:04:05Z")
	}
	return parseTime(k, &v)
}

// cursorWire is a cursor before base64: short names, as it travels in URLs.
type cursorWire struct {
	CreatedAt string `json:"c"`
	ID        string `json:"i"`
}

// EncodeCursor makes the opaque nextCursor of a listing page.
func EncodeCursor(c Cursor) string {
	b, _ := json.Marshal(cursorWire{CreatedAt: c.CreatedAt.UTC().Format(time.RFC3339Nano), ID: c.ID}) // strings always encode
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor reads a cursor EncodeCursor made; anything else is a 400
// naming cursor.
func DecodeCursor(s string) (*Cursor, error) {
	bad := domain.Invalid("cursor", "must be a nextCursor from an earlier page of this listing")
	if len(s) > 512 { // a time and an id of at most 128 characters, encoded
		return nil, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	var w cursorWire
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if dec.Decode(&w) != nil || dec.More() {
		return nil, bad
	}
	at, err := time.Parse(time.RFC3339Nano, w.CreatedAt)
	if err != nil || domain.ValidID("cursor", w.ID) != nil {
		return nil, bad
	}
	if _, err := inRange("cursor", at); err != nil {
		return nil, bad
	}
	return &Cursor{CreatedAt: at.UTC(), ID: w.ID}, nil
}

// IDPage is a validated page of a listing ordered by id (drones, zones):
// the id to start after ("" for the first page) and how many to show.
type IDPage struct {
	After string
	Limit int
}

// Page sizes of the listings ordered by id.
const (
	DefaultIDPageLimit = 100
	MaxIDPageLimit     = 1000
)

// ParseIDPage decodes and validates the query of a listing ordered by id,
// which takes after and limit besides the named filters, whose values the
// caller checks.
func ParseIDPage(q url.Values, filters ...string) (IDPage, error) {
	p := IDPage{Limit: DefaultIDPageLimit}
	if err := CheckQuery(q, append([]string{"after", "limit"}, filters...)...); err != nil {
		return p, err
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxIDPageLimit || strconv.Itoa(n) != s {
			return p, domain.Invalid("limit", "must be an integer from 1 to %d", MaxIDPageLimit)
		}
		p.Limit = n
	}
	if a := q.Get("after"); a != "" {
		if err := domain.ValidID("after", a); err != nil {
			return p, err
		}
		p.After = a
	}
	return p, nil
}
