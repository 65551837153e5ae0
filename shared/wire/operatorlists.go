package wire

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// WaitingListing is a validated GET /api/operator/deliveries query.
type WaitingListing struct {
	Oldest bool    // order=oldest; newest first otherwise
	After  *Cursor // nil on the first page
	Limit  int
}

// ParseWaitingListing decodes and validates the query of GET
// /api/operator/deliveries: stage (only "waiting", the default), order
// (newest, the default, or oldest), limit (1 to MaxListLimit, default
// DefaultListLimit) and cursor (a nextCursor of the same listing). Every
// error names the parameter at fault.
func ParseWaitingListing(q url.Values) (*WaitingListing, error) {
	if err := CheckQuery(q, "stage", "order", "limit", "cursor"); err != nil {
		return nil, err
	}
	l := &WaitingListing{Limit: DefaultListLimit}
	if v, ok := one(q, "stage"); ok && v != "waiting" {
		return nil, domain.Invalid("stage", "must be waiting, the only listing of deliveries across accounts")
	}
	if v, ok := one(q, "order"); ok {
		switch v {
		case "newest":
		case "oldest":
			l.Oldest = true
		default:
			return nil, domain.Invalid("order", "must be newest or oldest")
		}
	}
	var err error
	if l.Limit, err = queryLimit(q, DefaultListLimit, MaxListLimit); err != nil {
		return nil, err
	}
	if v, ok := one(q, "cursor"); ok {
		if l.After, err = DecodeCursor(v); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Page sizes of GET /api/deadletters, per queue: each message listed is
// locked while it is read.
const (
	DefaultDeadLetterLimit = 20
	MaxDeadLetterLimit     = 100
)

// DeadLetterListing is a validated GET /api/deadletters query.
type DeadLetterListing struct {
	Queues []string // the queues to list: the one asked for, or all
	Limit  int      // per queue
}

// ParseDeadLetterListing decodes and validates the query of GET
// /api/deadletters: queue (one of queues; all of them when left out) and
// limit (per queue, 1 to MaxDeadLetterLimit, default
// DefaultDeadLetterLimit).
func ParseDeadLetterListing(q url.Values, queues []string) (*DeadLetterListing, error) {
	if err := CheckQuery(q, "queue", "limit"); err != nil {
		return nil, err
	}
	l := &DeadLetterListing{Queues: queues}
	if v, ok := one(q, "queue"); ok {
		if err := KnownQueue("queue", v, queues); err != nil {
			return nil, err
		}
		l.Queues = []string{v}
	}
	var err error
	if l.Limit, err = queryLimit(q, DefaultDeadLetterLimit, MaxDeadLetterLimit); err != nil {
		return nil, err
	}
	return l, nil
}

// KnownQueue checks that v, the value of field, is one of queues.
func KnownQueue(field, v string, queues []string) error {
	for _, q := range queues {
		if q == v {
			return nil
		}
	}
	return domain.Invalid(field, "must be one of %s", strings.Join(queues, ", "))
}

// ValidMessageID checks a message id given in a path: not empty and no
// longer than MaxMessageIDLength plus a replay's suffix.
func ValidMessageID(field, v string) error {
	if v == "" || len(v) > MaxMessageIDLength+64 {
		return domain.Invalid(field, "must be a message id of 1 to %d characters", MaxMessageIDLength+64)
	}
	return nil
}

// queryLimit reads the limit parameter: an integer from 1 to most, def
// when left out.
func queryLimit(q url.Values, def, most int) (int, error) {
	v, ok := one(q, "limit")
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most || strconv.Itoa(n) != v {
		return 0, domain.Invalid("limit", "must be an integer from 1 to %d", most)
	}
	return n, nil
}
