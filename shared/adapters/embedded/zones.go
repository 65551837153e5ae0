package embedded

import (
	"context"
	"strconv"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// zones stores service areas and no-fly zones like any collection, and
// counts their writes in a version row of the same collection, bumped in
// the transaction of each write, so Version is never ahead of or behind
// the zones, whichever process wrote them.
type zones struct {
	*collection[domain.Zone]
}

var _ ports.Zones = (*zones)(nil)

// zoneVersionID names the version row; zone keys always hold a colon
// (domain.ZoneKey), so it is never taken for a zone.
const zoneVersionID = "~version"

// zonesWhere names the collection literally, as dronesWhere does.
const zonesWhere = "collection = '" + topology.ContainerAirspace + "'"

func newZones(db *DB) *zones {
	z := &zones{collection: newCollection[domain.Zone](db, topology.ContainerAirspace)}
	z.index = func(w *writeTx, _ string, _ *domain.Zone) error { return z.bump(w) }
	return z
}

func (z *zones) bump(w *writeTx) error {
	_, err := w.stmt(z.db.st.zoneBump).Exec(time.Now().UnixNano())
	return err
}

// Delete implements ports.Zones.
func (z *zones) Delete(ctx context.Context, key string) error {
	var n int64
	err := z.db.commit.write(ctx, "delete "+z.name+"/"+key, func(w *writeTx) error {
		res, err := w.stmt(z.db.st.docDelete).Exec(z.name, key)
		if n = affected(res, err); n == 0 || err != nil {
			return err
		}
		return z.bump(w)
	})
	if err != nil {
		return z.wrap(err, "delete", key)
	}
	if n == 0 {
		return domain.Errorf(domain.ENOTFOUND, "%s %s not found", z.name, key)
	}
	return nil
}

// List implements ports.Zones.
func (z *zones) List(ctx context.Context, kind domain.ZoneKind, after string, limit int) ([]*domain.Zone, error) {
	if limit <= 0 {
		return nil, nil
	}
	pattern := "*:*"
	if kind != "" {
		pattern = string(kind) + ":*"
	}
	rows, err := z.db.st.zoneList.QueryContext(ctx, after, pattern, limit)
	if err != nil {
		return nil, z.db.fail(err, "list %s", z.name)
	}
	out, err := decodeRows(rows, z.decode)
	return out, z.db.fail(err, "list %s", z.name)
}

// Version implements ports.Zones with a point read of the version row.
func (z *zones) Version(ctx context.Context) (string, error) {
	version, _, err := z.read(ctx, zoneVersionID)
	if domain.IsCode(err, domain.ENOTFOUND) {
		return "0", nil
	}
	if err != nil {
		return "", err
	}
	return strconv.FormatInt(version, 10), nil
}
