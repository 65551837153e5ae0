package embedded

import (
	"context"
	"sort"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// deliveries adds the owner query to the delivery collection.
type deliveries struct {
	*collection[domain.Delivery]
}

// ListByOwner implements ports.Deliveries. The owner is matched by an
// expression index; the creation time, stored as RFC 3339 text whose
// fractional seconds do not sort as text, is filtered after decoding.
func (d deliveries) ListByOwner(ctx context.Context, ownerID string, from, to time.Time, limit int) ([]*domain.Delivery, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := d.db.r.QueryContext(ctx,
		`SELECT id, body FROM documents WHERE collection = 'deliveries' AND json_extract(body, '$.ownerId') = ?`, ownerID)
	if err != nil {
		return nil, d.db.fail(err, "list deliveries by owner")
	}
	defer rows.Close()
	var out []*domain.Delivery
	for rows.Next() {
		var id string
		var body []byte
		if err := rows.Scan(&id, &body); err != nil {
			return nil, d.db.fail(err, "list deliveries by owner")
		}
		v, err := d.decode(id, body)
		if err != nil {
			return nil, err
		}
		if !v.CreatedAt.Before(from) && v.CreatedAt.Before(to) {
			out = append(out, v)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, d.db.fail(err, "list deliveries by owner")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
