package embedded

import (
	"context"
	"strconv"
	"sync"
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

	// known is the version row as this process last read it, for units of
	// work (see workZones); gen counts this process's zone writes, so that
	// a read that a write overtook is not kept.
	mu    sync.Mutex
	known int64
	ok    bool
	gen   uint64
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
	z.written = func(string, int64, *domain.Zone) { z.forget() }
	return z
}

// forget drops the known version after a write through this process.
func (z *zones) forget() {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.gen++
	z.ok = false
}

// readVersion reads the version row (0 when there is none) and keeps it
// as the known version, unless a write of this process overtook the read.
func (z *zones) readVersion(ctx context.Context) (int64, error) {
	z.mu.Lock()
	gen := z.gen
	z.mu.Unlock()
	version, _, err := z.read(ctx, zoneVersionID)
	if domain.IsCode(err, domain.ENOTFOUND) {
		version, err = 0, nil
	}
	if err != nil {
		return 0, err
	}
	z.mu.Lock()
	if z.gen == gen {
		z.known, z.ok = version, true
	}
	z.mu.Unlock()
	return version, nil
}

// knownVersion returns the known version, reading it when there is none.
func (z *zones) knownVersion(ctx context.Context) (int64, error) {
	z.mu.Lock()
	version, ok := z.known, z.ok
	z.mu.Unlock()
	if ok {
		return version, nil
	}
	return z.readVersion(ctx)
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
	z.forget()
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
// A unit of work's Version reads none (workZones).
func (z *zones) Version(ctx context.Context) (string, error) {
	version, err := z.readVersion(ctx)
	if err != nil {
		return "", err
	}
	return strconv.FormatInt(version, 10), nil
}
