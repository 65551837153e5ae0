package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// analytics keeps the running totals in the analytics table and the
// contributions already added in analytics_applied. Every write of a
// delivery (a collection write or a unit of work's commit) runs apply in
// its transaction, so a contribution is added exactly when the write that
// made it commits, and a replayed write finds its marker and adds nothing.
type analytics struct {
	db *DB
}

var _ ports.Analytics = (*analytics)(nil)

// apply adds the contributions of delivery d that were not added before.
// A write that holds none new costs one probe of the marker table per
// contribution.
func (a *analytics) apply(w *writeTx, id string, d *domain.Delivery) error {
	month, day := d.AnalyticsDay()
	for _, c := range d.Contributions() {
		res, err := w.stmt(a.db.st.aggMark).Exec(id, string(c.Stage))
		if err != nil {
			return fmt.Errorf("analytics of delivery %s: %w", id, err)
		}
		if affected(res, err) == 0 {
			continue // added by an earlier write
		}
		for _, b := range d.Buckets() {
			if err := addFigures(w.stmt(a.db.st.aggAdd), b, month, day, c.Figures); err != nil {
				return fmt.Errorf("analytics of delivery %s: %w", id, err)
			}
		}
	}
	return nil
}

func addFigures(add *sql.Stmt, bucket, month string, day int, f domain.Figures) error {
	_, err := add.Exec(bucket, month, day, f.Count, f.Completed, f.Cancelled, f.Failed, f.OnTime,
		f.DurationMs, f.TraveledM, f.AssignedMs)
	return err
}

// Month implements ports.Analytics: one range read of at most 31 rows.
func (a *analytics) Month(ctx context.Context, bucket string, month time.Time) (*domain.MonthFigures, error) {
	m := domain.NewMonthFigures(bucket, month)
	rows, err := a.db.st.aggMonth.QueryContext(ctx, bucket, m.Month)
	if err != nil {
		return nil, a.db.fail(err, "read analytics %s %s", bucket, m.Month)
	}
	defer rows.Close()
	for rows.Next() {
		var day int
		var f domain.Figures
		if err := rows.Scan(&day, &f.Count, &f.Completed, &f.Cancelled, &f.Failed, &f.OnTime,
			&f.DurationMs, &f.TraveledM, &f.AssignedMs); err != nil {
			return nil, a.db.fail(err, "read analytics %s %s", bucket, m.Month)
		}
		m.AddDay(day, f)
	}
	return m, a.db.fail(rows.Err(), "read analytics %s %s", bucket, m.Month)
}

// monthDeliveries reads the deliveries accepted in month through the owner
// index (every delivery has its row there), with q, which is the read pool
// or the writer's transaction.
func monthDeliveries(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, month time.Time) ([]*domain.Delivery, error) {
	from := time.Date(month.Year(), month.Month(), 1, 0, 0, 0, 0, time.UTC)
	rows, err := q.QueryContext(ctx, `SELECT d.id, d.body FROM delivery_index i CROSS JOIN documents d
		ON d.collection = '`+topology.ContainerDeliveries+`' AND d.id = i.id
		WHERE i.created >= ? AND i.created < ?`, nanos(from), nanos(from.AddDate(0, 1, 0)))
	if err != nil {
		return nil, err
	}
	return decodeRows(rows, func(id string, body []byte) (*domain.Delivery, error) {
		d := new(domain.Delivery)
		if err := decodeStored(body, d); err != nil {
			return nil, fmt.Errorf("decode delivery %s: %w", id, err)
		}
		return d, nil
	})
}

// Derive implements ports.Analytics.
func (a *analytics) Derive(ctx context.Context, month time.Time) (map[string]*domain.MonthFigures, error) {
	ds, err := monthDeliveries(ctx, a.db.r, month)
	if err != nil {
		return nil, a.db.fail(err, "derive analytics of %s", domain.MonthKey(month))
	}
	derived := domain.Derive(month, ds)
	return derived, a.db.fail(addKept(ctx, a.db.r, month, derived), "derive analytics of %s", domain.MonthKey(month))
}

// addKept adds to derived, empty, each bucket kept for month that no
// delivery supports (its deliveries are gone, or it was written wrongly),
// read with q, the read pool or the writer's transaction.
func addKept(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, month time.Time, derived map[string]*domain.MonthFigures) error {
	rows, err := q.QueryContext(ctx, `SELECT DISTINCT bucket FROM analytics WHERE month = ?`, domain.MonthKey(month))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			return err
		}
		if _, ok := derived[b]; !ok {
			derived[b] = domain.NewMonthFigures(b, month)
		}
	}
	return rows.Err()
}

// Reaggregate implements ports.Analytics in one transaction, which holds
// the write lock while it runs, so no write of a delivery can fall between
// what it reads and what it writes.
func (a *analytics) Reaggregate(ctx context.Context, month time.Time) (map[string]*domain.MonthFigures, error) {
	key := domain.MonthKey(month)
	var out map[string]*domain.MonthFigures
	err := a.db.commit.write(ctx, "reaggregate "+key, func(w *writeTx) error {
		ds, err := monthDeliveries(ctx, w.tx, month)
		if err != nil {
			return err
		}
		out = domain.Derive(month, ds)
		if err := addKept(ctx, w.tx, month, out); err != nil {
			return err
		}
		if _, err := w.tx.ExecContext(ctx, `DELETE FROM analytics WHERE month = ?`, key); err != nil {
			return err
		}
		for b, m := range out {
			for i, f := range m.Days {
				if f != (domain.Figures{}) {
					if err := addFigures(w.stmt(a.db.st.aggAdd), b, key, i+1, f); err != nil {
						return err
					}
				}
			}
		}
		for _, d := range ds {
			for _, c := range d.Contributions() {
				if _, err := w.stmt(a.db.st.aggMark).Exec(d.ID, string(c.Stage)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, a.db.fail(err, "reaggregate %s", key)
	}
	return out, nil
}
