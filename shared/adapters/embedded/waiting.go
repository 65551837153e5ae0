package embedded

import (
	"context"
	"math"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// waiting lists the waiting deliveries of every owner through the partial
// index delivery_index_waiting, which holds only the rows of deliveries in
// a stage a waiting delivery can be in (domain.WaitingStages).
type waiting struct{ d deliveries }

// waitingScan bounds the index rows one page reads per delivery it may
// hold: a Scheduled delivery with a drone is in the index but does not
// wait, and a page of them is cut short rather than read on and on.
const waitingScan = 4

const waitingQuery = `SELECT i.created, i.id, d.body FROM delivery_index i
	JOIN documents d ON d.collection = 'deliveries' AND d.id = i.id
	WHERE i.stage IN ('Created', 'Rescheduled', 'Scheduled') AND `

// PageWaiting implements ports.WaitingDeliveries: one range read of the
// partial index, in the listing's order, of at most waitingScan × limit
// rows, each joined to its document by primary key.
func (w waiting) PageWaiting(ctx context.Context, f ports.WaitingFilter) (ports.DeliveryPage, error) {
	if f.Limit <= 0 {
		return ports.DeliveryPage{}, domain.Errorf(domain.EINTERNAL, "page of waiting deliveries: limit %d", f.Limit)
	}
	at, id := int64(math.MaxInt64), "\U0010FFFF"
	q := waitingQuery + "(i.created, i.id) < (?, ?) ORDER BY i.created DESC, i.id DESC LIMIT ?"
	if f.Oldest {
		at, id = math.MinInt64, ""
		q = waitingQuery + "(i.created, i.id) > (?, ?) ORDER BY i.created, i.id LIMIT ?"
	}
	if f.After != nil {
		at, id = nanos(f.After.CreatedAt), f.After.ID
	}
	scan := waitingScan * f.Limit
	rows, err := w.d.db.r.QueryContext(ctx, q, at, id, scan+1)
	if err != nil {
		return ports.DeliveryPage{}, w.d.db.fail(err, "page waiting deliveries")
	}
	defer rows.Close()
	var page ports.DeliveryPage
	var last ports.DeliveryPosition
	read := 0
	for rows.Next() {
		var created int64
		var rid string
		var body []byte
		if err := rows.Scan(&created, &rid, &body); err != nil {
			return ports.DeliveryPage{}, w.d.db.fail(err, "page waiting deliveries")
		}
		if len(page.Deliveries) == f.Limit || read == scan {
			next := last
			page.Next = &next
			break
		}
		read++
		last = ports.DeliveryPosition{CreatedAt: time.Unix(0, created).UTC(), ID: rid}
		v, err := w.d.decode(rid, body)
		if err != nil {
			return ports.DeliveryPage{}, err
		}
		if v.Waiting() {
			page.Deliveries = append(page.Deliveries, v)
		}
	}
	if err := rows.Err(); err != nil {
		return ports.DeliveryPage{}, w.d.db.fail(err, "page waiting deliveries")
	}
	return page, nil
}
