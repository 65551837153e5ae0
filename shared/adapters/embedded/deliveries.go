package embedded

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// deliveries adds the owner queries to the delivery collection.
type deliveries struct {
	*collection[domain.Delivery]
}

func newDeliveries(db *DB) deliveries {
	c := newCollection[domain.Delivery](db, topology.ContainerDeliveries)
	c.index = func(w *writeTx, id string, d *domain.Delivery) error {
		if err := indexDelivery(w.stmt(db.st.idxPut), id, d); err != nil {
			return err
		}
		return db.analytics.apply(w, id, d)
	}
	// A unit of work decodes a delivery once and clones it for each of
	// its step's changes (dispatch makes two or three).
	c.clone = (*domain.Delivery).Clone
	// And each step starts from the delivery as the step before it
	// committed it, when that was in this process.
	c.recent = newRecent(recentDocs)
	c.cached = c.recentCopy
	return deliveries{c}
}

// indexDelivery writes the owner index row of delivery d with put (the
// idxPut statement). It runs in the transaction that writes d, whether that
// is a write of the collection or a unit of work's commit.
func indexDelivery(put *sql.Stmt, id string, d *domain.Delivery) error {
	_, err := put.Exec(id, d.OwnerID, nanos(d.CreatedAt), string(d.Stage))
	if err != nil {
		return fmt.Errorf("index delivery %s: %w", id, err)
	}
	return nil
}

// nanos is t in unix nanoseconds, saturated at the ends of the int64 range
// (the years 1678 and 2262), so that a filter bound beyond them still
// compares correctly with every stored time.
func nanos(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// backfillDeliveryIndex gives every delivery stored before the owner index
// existed its row; migrate runs it once per file, in its transaction.
func backfillDeliveryIndex(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT id, body FROM documents WHERE collection = '`+topology.ContainerDeliveries+`'`)
	if err != nil {
		return err
	}
	// Only what the index keeps is decoded and held until the query ends:
	// a whole delivery, with its trail, is large.
	type row struct {
		id string
		d  domain.Delivery
	}
	var all []row
	for rows.Next() {
		var r row
		var body []byte
		if err := rows.Scan(&r.id, &body); err != nil {
			rows.Close()
			return err
		}
		var keys struct {
			OwnerID   string       `json:"ownerId"`
			CreatedAt time.Time    `json:"createdAt"`
			Stage     domain.Stage `json:"stage"`
		}
		if err := json.Unmarshal(body, &keys); err != nil {
			rows.Close()
			return fmt.Errorf("decode delivery %s: %w", r.id, err)
		}
		r.d = domain.Delivery{OwnerID: keys.OwnerID, CreatedAt: keys.CreatedAt, Stage: keys.Stage}
		all = append(all, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	put, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO delivery_index (id, owner, created, stage) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer put.Close()
	for _, r := range all {
		if err := indexDelivery(put, r.id, &r.d); err != nil {
			return err
		}
	}
	return nil
}

// PageByOwner implements ports.Deliveries with one statement: a range of
// the owner's rows of delivery_index (by owner and creation time, or by
// owner, stage and creation time), newest first, each joined to its
// document by primary key. It reads limit+1 rows, the last only to learn
// whether another page follows.
func (d deliveries) PageByOwner(ctx context.Context, f ports.DeliveryFilter) (ports.DeliveryPage, error) {
	if f.Limit <= 0 {
		return ports.DeliveryPage{}, domain.Errorf(domain.EINTERNAL, "page of deliveries: limit %d", f.Limit)
	}
	from, hi := int64(math.MinInt64), int64(math.MaxInt64)
	var below any // nil: every id at hi
	if !f.CreatedFrom.IsZero() {
		from = nanos(f.CreatedFrom)
	}
	if !f.CreatedTo.IsZero() {
		if to := nanos(f.CreatedTo); to > math.MinInt64 {
			hi = to - 1
		} else {
			return ports.DeliveryPage{}, nil
		}
	}
	if f.After != nil {
		if at := nanos(f.After.CreatedAt); at <= hi {
			hi, below = at, f.After.ID
		}
	}
	args := []any{f.OwnerID, from, hi, below, f.Limit + 1}
	stmt := d.db.st.idxPage
	if f.Stage != "" {
		stmt = d.db.st.idxPageStage
		args = append(args, string(f.Stage))
	}
	rows, err := stmt.QueryContext(ctx, args...)
	if err != nil {
		return ports.DeliveryPage{}, d.db.fail(err, "page deliveries of %s", f.OwnerID)
	}
	defer rows.Close()
	var page ports.DeliveryPage
	var last ports.DeliveryPosition
	for rows.Next() {
		var created int64
		var id string
		var body []byte
		if err := rows.Scan(&created, &id, &body); err != nil {
			return ports.DeliveryPage{}, d.db.fail(err, "page deliveries of %s", f.OwnerID)
		}
		if len(page.Deliveries) == f.Limit {
			next := last
			page.Next = &next
			break
		}
		v, err := d.decode(id, body)
		if err != nil {
			return ports.DeliveryPage{}, err
		}
		page.Deliveries = append(page.Deliveries, v)
		last = ports.DeliveryPosition{CreatedAt: time.Unix(0, created).UTC(), ID: id}
	}
	if err := rows.Err(); err != nil {
		return ports.DeliveryPage{}, d.db.fail(err, "page deliveries of %s", f.OwnerID)
	}
	return page, nil
}

// ListByOwner implements ports.Deliveries with one statement, as
// PageByOwner does: a range of the owner's rows of delivery_index, oldest
// first, each joined to its document by primary key. Serving it from that
// index rather than from an index on the documents' JSON spares every
// write of a delivery an expression to evaluate and an index page to
// write.
func (d deliveries) ListByOwner(ctx context.Context, ownerID string, from, to time.Time, limit int) ([]*domain.Delivery, error) {
	if limit <= 0 {
		return nil, nil
	}
	lo, hi := nanos(from), nanos(to)
	if hi == math.MinInt64 {
		return nil, nil // nothing is created before the earliest time kept
	}
	rows, err := d.db.st.idxList.QueryContext(ctx, ownerID, lo, hi-1, limit)
	if err != nil {
		return nil, d.db.fail(err, "list deliveries by owner")
	}
	out, err := decodeRows(rows, d.decode)
	if err != nil {
		return nil, d.db.fail(err, "list deliveries by owner")
	}
	return out, nil
}
