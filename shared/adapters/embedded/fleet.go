package embedded

import (
	"context"
	"database/sql"
	"iter"
	"sync"

	"github.com/fabrikam/dronedelivery/shared/adapters/droneindex"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// fleet stores drones like any collection and keeps the dispatchable ones
// in an in-memory spatial index, because finding the nearest of 100,000
// drones by scanning rows would cost milliseconds per delivery.
//
// The index learns only of writes committed through this DB and of rows a
// unit of work read: a drone that another process claims or frees is seen
// here after the next reopen, or after a unit of work's commit found it
// changed. That is safe because a claim is a conditional write on the
// version the scheduler started from (the row's, or in a unit of work the
// index's); it only costs a wasted claim attempt, or a drone freed
// elsewhere going unused until then.
type fleet struct {
	*collection[domain.Drone]

	// mu orders the updates of everything below by version, since writers
	// report their commits concurrently and possibly out of order.
	mu sync.Mutex
	// members holds, for every drone this process has seen, the version it
	// saw last and what the summary counts of it.
	members map[string]member
	// index holds the dispatchable drones (domain.Drone.Dispatchable).
	index *droneindex.Index
	// waiting holds the drones awaiting takeoff (domain.Drone.AwaitsTakeoff),
	// the ones an expedited delivery may take.
	waiting *droneindex.Index
	summary fleetSummary
}

// member is what the fleet keeps of every drone, indexed or not.
type member struct {
	version int64
	caps    capabilities
}

var _ ports.Fleet = (*fleet)(nil)

func newFleet(db *DB) *fleet {
	f := &fleet{
		collection: newCollection[domain.Drone](db, topology.ContainerDrones),
		members:    make(map[string]member),
		index:      droneindex.New(),
		waiting:    droneindex.New(),
	}
	f.written = f.track
	f.clone = (*domain.Drone).Clone
	// The drones flying, which the index does not hold, come from recent.
	f.recent = newRecent(recentDocs)
	f.cached = f.indexed
	return f
}

// indexed returns a copy of a drone from the index of available drones,
// or else from the recent ones, at the version held there. Dispatch
// claims drones the index yielded, so a claim in a unit of work reads no
// row.
func (f *fleet) indexed(id string) (int64, *domain.Drone, bool) {
	f.mu.Lock()
	d, ok := f.index.Get(id)
	version := f.members[id].version
	f.mu.Unlock()
	if !ok {
		return f.recentCopy(id)
	}
	return version, d, true
}

// load fills the indexes and the summary from the file at open.
func (f *fleet) load(ctx context.Context) error {
	for _, status := range []domain.DroneStatus{domain.DroneAvailable, domain.DroneAssigned,
		domain.DroneInFlight, domain.DroneCharging, domain.DroneMaintenance, domain.DroneRetired} {
		if err := f.loadStatus(ctx, status); err != nil {
			return err
		}
	}
	return nil
}

func (f *fleet) loadStatus(ctx context.Context, status domain.DroneStatus) error {
	rows, err := f.db.st.droneLoad.QueryContext(ctx, string(status))
	if err != nil {
		return f.db.fail(err, "load fleet")
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var version int64
		var body []byte
		if err := rows.Scan(&id, &version, &body); err != nil {
			return f.db.fail(err, "load fleet")
		}
		d, err := f.decode(id, body)
		if err != nil {
			return err
		}
		f.track(id, version, d)
	}
	return f.db.fail(rows.Err(), "load fleet")
}

// track brings the indexes and the summary up to date with a committed
// write of drone d.
func (f *fleet) track(id string, version int64, d *domain.Drone) {
	c := capabilitiesOf(d)
	f.mu.Lock()
	defer f.mu.Unlock()
	old, known := f.members[id]
	if version <= old.version {
		return
	}
	f.members[id] = member{version: version, caps: c}
	f.summary.note(old.caps, known, c)
	if d.Dispatchable() {
		f.index.Put(id, d)
	} else {
		f.index.Remove(id)
	}
	if d.AwaitsTakeoff() {
		f.waiting.Put(id, d)
	} else {
		f.waiting.Remove(id)
	}
}

// Summary implements the handlers' fleet summariser: the summary kept as
// drones are written, which no caller has to build by listing the fleet.
func (f *fleet) Summary(context.Context) (*domain.FleetSummary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.summary.summary(f.members), nil
}

// List implements ports.Fleet.
func (f *fleet) List(ctx context.Context, status domain.DroneStatus, after string, limit int) ([]*domain.Drone, error) {
	if limit <= 0 {
		return nil, nil
	}
	var rows *sql.Rows
	var err error
	if status == "" {
		rows, err = f.db.st.droneListAny.QueryContext(ctx, after, limit)
	} else {
		rows, err = f.db.st.droneList.QueryContext(ctx, string(status), after, limit)
	}
	if err != nil {
		return nil, f.db.fail(err, "list drones")
	}
	defer rows.Close()
	var out []*domain.Drone
	for rows.Next() {
		var body []byte
		if err := rows.Scan(&body); err != nil {
			return nil, f.db.fail(err, "list drones")
		}
		d, err := f.decode("", body)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, f.db.fail(rows.Err(), "list drones")
}

// Ready implements ports.Fleet: the index is loaded when the store opens.
func (f *fleet) Ready(context.Context) error { return nil }

// NearestAvailable implements ports.Fleet. It yields copies, so a caller
// that edits a drone before claiming it cannot corrupt the index, and holds
// no lock while the caller's loop body runs, so the body may Update.
func (f *fleet) NearestAvailable(ctx context.Context, loc domain.Location) iter.Seq2[*domain.Drone, float64] {
	return f.index.Nearest(ctx, loc)
}

// NearestAwaitingTakeoff implements ports.Fleet, as NearestAvailable does.
func (f *fleet) NearestAwaitingTakeoff(ctx context.Context, loc domain.Location) iter.Seq2[*domain.Drone, float64] {
	return f.waiting.Nearest(ctx, loc)
}
