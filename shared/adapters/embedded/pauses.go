package embedded

import (
	"context"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// pauses stores the operator's service pauses like any collection, with a
// delete and a listing of all of them.
type pauses struct {
	*collection[domain.Pause]
}

var _ ports.Pauses = (*pauses)(nil)

func newPauses(db *DB) *pauses {
	return &pauses{collection: newCollection[domain.Pause](db, topology.ContainerPauses)}
}

// List implements ports.Pauses.
func (p *pauses) List(ctx context.Context) ([]*domain.Pause, error) {
	rows, err := p.db.st.pauseList.QueryContext(ctx)
	if err != nil {
		return nil, p.db.fail(err, "list %s", p.name)
	}
	out, err := decodeRows(rows, p.decode)
	return out, p.db.fail(err, "list %s", p.name)
}

// DeleteExpired implements ports.Pauses: it reads every pause and, in one
// transaction, deletes each expired one whose JSON is still the one read.
func (p *pauses) DeleteExpired(ctx context.Context, now time.Time) (int, error) {
	rows, err := p.db.st.pauseList.QueryContext(ctx)
	if err != nil {
		return 0, p.db.fail(err, "list %s", p.name)
	}
	type read struct{ id, body string }
	var expired []read
	_, err = decodeRows(rows, func(id string, body []byte) (*domain.Pause, error) {
		v, err := p.decode(id, body)
		if err == nil && !v.ActiveAt(now) {
			expired = append(expired, read{id, string(body)})
		}
		return v, err
	})
	if err != nil {
		return 0, p.db.fail(err, "list %s", p.name)
	}
	if len(expired) == 0 {
		return 0, nil
	}
	var n int64
	err = p.db.commit.write(ctx, "delete expired "+p.name, func(w *writeTx) error {
		n = 0 // a group that failed runs this again alone
		for _, e := range expired {
			res, err := w.stmt(p.db.st.pauseDeleteIf).Exec(e.id, e.body)
			if err != nil {
				return err
			}
			n += affected(res, nil)
		}
		return nil
	})
	if err != nil {
		return 0, p.db.fail(err, "delete expired %s", p.name)
	}
	return int(n), nil
}
