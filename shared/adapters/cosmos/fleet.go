package cosmos

import (
	"context"
	"encoding/json"
	"errors"
	"iter"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/geo"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// fleet stores drones like any collection and keeps the dispatchable ones
// in an in-memory spatial index, so that finding a drone for a delivery
// costs no query: a cross-partition query per delivery would cost RUs in
// proportion to the fleet and add a round trip before every claim.
//
// The index learns of this Store's own writes (and of the drones its
// updates read) at once, and of other processes' writes by a reload every
// IndexRefresh. That is safe because the scheduler re-checks every candidate
// in Update, which writes conditionally on the stored ETag; a stale entry
// costs only a wasted claim attempt, or a freed drone going unused until the
// next reload. In production a change-feed processor would replace the poll
// (the double has no change feed, and azcosmos v1.5.0 has no processor), so
// that a reload's cost would follow the rate of change, not the fleet size.
type fleet struct {
	*collection[domain.Drone]
	index *geo.Index[*domain.Drone]
	// waiting holds the drones awaiting takeoff (domain.Drone.AwaitsTakeoff),
	// which an expedited delivery may take, kept as index is; waitingIDs
	// names them, for the reload to drop those no longer waiting.
	waiting    *geo.Index[*domain.Drone]
	waitingIDs map[string]struct{}
	log        *slog.Logger

	// mu orders index changes: this Store's observations, and reloads
	// that must not overwrite an observation newer than their query.
	mu sync.Mutex
	// seq numbers observations; touched holds, for the drones observed
	// since the running reload began, the number of the latest one.
	seq     uint64
	touched map[string]uint64
	// etags holds the version of every indexed drone, so that a claim
	// can write conditionally on it without reading the drone first.
	etags map[string]azcore.ETag

	reloading sync.Mutex // one reload at a time, so touched can be pruned

	// unordered is set once the gateway refused List's ORDER BY query
	// (a container spread over several physical partitions), so later
	// calls go straight to the query it can serve.
	unordered atomic.Bool
}

var _ ports.Fleet = (*fleet)(nil)

func newFleet(c *azcosmos.ContainerClient, log *slog.Logger) *fleet {
	f := &fleet{
		collection: newCollection[domain.Drone](c, topology.ContainerDrones),
		index:      geo.NewIndex[*domain.Drone](),
		waiting:    geo.NewIndex[*domain.Drone](),
		waitingIDs: make(map[string]struct{}),
		log:        log,
		touched:    make(map[string]uint64),
		etags:      make(map[string]azcore.ETag),
	}
	f.observe = f.track
	f.hint = f.indexed
	return f
}

// track brings the index up to date with a version of drone d this Store
// read or wrote; the collection calls it under the drone's turn, so the
// versions of one drone arrive in order.
func (f *fleet) track(id string, etag azcore.ETag, d *domain.Drone) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	f.touched[id] = f.seq
	f.apply(id, etag, d)
}

// apply indexes or unindexes one drone; the caller holds mu.
func (f *fleet) apply(id string, etag azcore.ETag, d *domain.Drone) {
	if d.Dispatchable() && etag != "" {
		// A copy: the caller keeps d and may change it.
		f.index.Upsert(id, d.Location.Point(), d.Clone())
		f.etags[id] = etag
	} else {
		f.index.Remove(id)
		delete(f.etags, id)
	}
	if d.AwaitsTakeoff() {
		f.waiting.Upsert(id, d.Location.Point(), d.Clone())
		f.waitingIDs[id] = struct{}{}
	} else if _, ok := f.waitingIDs[id]; ok {
		f.waiting.Remove(id)
		delete(f.waitingIDs, id)
	}
}

// indexed offers the indexed version of a drone as the starting point of an
// update, which saves the scheduler's claim a read when the index is current.
func (f *fleet) indexed(id string) (version, bool) {
	f.mu.Lock()
	etag, ok := f.etags[id]
	f.mu.Unlock()
	if !ok {
		return version{}, false
	}
	_, d, ok := f.index.Get(id)
	if !ok {
		return version{}, false
	}
	body, err := json.Marshal(d)
	if err != nil {
		return version{}, false
	}
	return version{etag: etag, body: body}, true
}

// storedDrone is a drone as a query returns it, with its ETag.
type storedDrone struct {
	domain.Drone
	ETag azcore.ETag `json:"_etag"`
}

// refresh reloads the index from the container. Drones this Store
// observed after the query began keep what it observed, since the query
// may have read them before that.
func (f *fleet) refresh(ctx context.Context) error {
	f.reloading.Lock()
	defer f.reloading.Unlock()
	f.mu.Lock()
	start := f.seq
	f.mu.Unlock()

	// The indexes hold the Available drones and the Assigned ones
	// (awaiting takeoff): one query reads both.
	query := "SELECT * FROM c WHERE c.status = @available OR c.status = @assigned"
	params := []azcosmos.QueryParameter{{Name: "@available", Value: string(domain.DroneAvailable)},
		{Name: "@assigned", Value: string(domain.DroneAssigned)}}
	found := map[string]*storedDrone{}
	err := f.query(ctx, query, params, func(d *storedDrone) {
		if d.Drone.Dispatchable() || d.Drone.AwaitsTakeoff() {
			found[d.ID] = d
		}
	})
	if err != nil {
		return domain.Unavailable(err, "load the drone index from %s", f.name)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	for id, d := range found {
		if f.touched[id] <= start {
			f.apply(id, d.ETag, &d.Drone)
		}
	}
	for id := range f.etags {
		if _, ok := found[id]; !ok && f.touched[id] <= start {
			f.index.Remove(id)
			delete(f.etags, id)
		}
	}
	for id := range f.waitingIDs {
		if _, ok := found[id]; !ok && f.touched[id] <= start {
			f.waiting.Remove(id)
			delete(f.waitingIDs, id)
		}
	}
	// No later reload can begin before start, so these no longer matter.
	for id, seq := range f.touched {
		if seq <= start {
			delete(f.touched, id)
		}
	}
	return nil
}

// poll reloads the index every period until ctx ends; a failed reload
// leaves the index as it was, to be mended by the next one.
func (f *fleet) poll(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := f.refresh(ctx); err != nil && ctx.Err() == nil {
			f.log.WarnContext(ctx, "cosmos: drone index reload failed; keeping the previous index", "err", err)
		}
	}
}

// query runs a query over every partition and hands each drone to each.
// The pager is drained to its end because the gateway may return empty
// pages before later full ones.
func (f *fleet) query(ctx context.Context, query string, params []azcosmos.QueryParameter, each func(*storedDrone)) error {
	pager := f.c.NewQueryItemsPager(query, azcosmos.NewPartitionKey(), &azcosmos.QueryOptions{
		QueryParameters: params,
		PageSizeHint:    1000,
	})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, item := range page.Items {
			d := new(storedDrone)
			if err := json.Unmarshal(item, d); err != nil {
				return domain.Errorf(domain.EINTERNAL, "decode a drone of %s: %v", f.name, err)
			}
			each(d)
		}
	}
	return nil
}

// List implements ports.Fleet.
func (f *fleet) List(ctx context.Context, status domain.DroneStatus, after string, limit int) ([]*domain.Drone, error) {
	if limit <= 0 {
		return nil, nil
	}
	where := "c.id > @after"
	params := []azcosmos.QueryParameter{{Name: "@after", Value: after}}
	if status != "" {
		where += " AND c.status = @status"
		params = append(params, azcosmos.QueryParameter{Name: "@status", Value: string(status)})
	}
	if !f.unordered.Load() {
		out, err := f.listOrdered(ctx, where, params, limit)
		if !notServableByGateway(err) {
			return out, err
		}
		f.unordered.Store(true)
	}
	return f.listUnordered(ctx, where, params, limit)
}

// listOrdered lets Cosmos sort and cut, which costs RUs for limit drones
// only; the gateway serves it when the container has one physical partition.
func (f *fleet) listOrdered(ctx context.Context, where string, params []azcosmos.QueryParameter, limit int) ([]*domain.Drone, error) {
	params = append(params, azcosmos.QueryParameter{Name: "@limit", Value: limit})
	var out []*domain.Drone
	err := f.query(ctx, "SELECT TOP @limit * FROM c WHERE "+where+" ORDER BY c.id", params, func(d *storedDrone) {
		if len(out) < limit {
			out = append(out, &d.Drone)
		}
	})
	if err != nil {
		return nil, f.listFailed(err)
	}
	return out, nil
}

// listUnordered filters in Cosmos and sorts here, because the gateway
// cannot merge ORDER BY or TOP across physical partitions (azcosmos v1.5.0
// has no client query engine). It reads every drone past the cursor, so it
// suits the operator's listing, never a per-delivery path.
func (f *fleet) listUnordered(ctx context.Context, where string, params []azcosmos.QueryParameter, limit int) ([]*domain.Drone, error) {
	byID := func(a, b *domain.Drone) int { return strings.Compare(a.ID, b.ID) }
	var out []*domain.Drone
	err := f.query(ctx, "SELECT * FROM c WHERE "+where, params, func(d *storedDrone) {
		out = append(out, &d.Drone)
		if len(out) >= 2*limit+64 {
			// Keep memory in proportion to the page, not the fleet.
			slices.SortFunc(out, byID)
			clear(out[limit:])
			out = out[:limit]
		}
	})
	if err != nil {
		return nil, f.listFailed(err)
	}
	slices.SortFunc(out, byID)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (f *fleet) listFailed(err error) error {
	if notServableByGateway(err) {
		return err
	}
	var de *domain.Error
	if errors.As(err, &de) {
		return err
	}
	return domain.Unavailable(err, "list %s", f.name)
}

// notServableByGateway reports the gateway's refusal of a cross-partition
// query that needs a client query engine (400 with sub-status 1004).
func notServableByGateway(err error) bool {
	return statusOf(err) == http.StatusBadRequest && subStatusOf(err) == "1004"
}

// NearestAvailable implements ports.Fleet. It yields copies, so a caller
// that edits a drone before claiming it cannot corrupt the index, and holds
// no lock while the caller's loop body runs, so the body may Update.
func (f *fleet) NearestAvailable(ctx context.Context, loc domain.Location) iter.Seq2[*domain.Drone, float64] {
	return nearestIn(ctx, f.index, loc)
}

// NearestAwaitingTakeoff implements ports.Fleet, as NearestAvailable does.
func (f *fleet) NearestAwaitingTakeoff(ctx context.Context, loc domain.Location) iter.Seq2[*domain.Drone, float64] {
	return nearestIn(ctx, f.waiting, loc)
}

// nearestIn walks index from loc, yielding copies.
func nearestIn(ctx context.Context, index *geo.Index[*domain.Drone], loc domain.Location) iter.Seq2[*domain.Drone, float64] {
	return func(yield func(*domain.Drone, float64) bool) {
		// The index may yield a drone that moved during the walk twice.
		seen := map[string]struct{}{}
		for it, km := range index.Nearest(loc.Point()) {
			if ctx.Err() != nil {
				return
			}
			// Skip drones claimed since their cell was read, most likely
			// by this caller's loop body: it would only lose the race.
			if _, _, ok := index.Get(it.ID); !ok {
				continue
			}
			if _, dup := seen[it.ID]; dup {
				continue
			}
			seen[it.ID] = struct{}{}
			if !yield(it.Value.Clone(), km) {
				return
			}
		}
	}
}
