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

	"github.com/fabrikam/dronedelivery/shared/adapters/droneindex"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// fleet stores drones like any collection and keeps the dispatchable ones
// in an in-memory spatial index, so that finding a drone for a delivery
// costs no query: a cross-partition query per delivery would cost RUs in
// proportion to the fleet and add a round trip before every claim.
//
// The index is loaded on first use (Ready, NearestAvailable), so a process
// that never dispatches never reads the fleet, and it then follows the
// drones container's change feed (ContainerClient.ReadChangeFeed, GA in
// azcosmos v1.5.0: sdk/data/azcosmos/cosmos_container.go and
// cosmos_container_change_feed.go). The load is the feed read from the
// beginning, which holds the latest version of every drone ("only the most
// recent change for a given item is included", and deletes are not, which
// suits drones, never deleted: https://learn.microsoft.com/azure/cosmos-db/change-feed);
// from then on the continuation token names the point reached, and a read
// that finds nothing is one small request per physical partition (a 304),
// so what following costs grows with the rate of change, not the size of
// the fleet. The index also learns of this Store's own writes, and of the
// drones its updates read, at once.
//
// That is safe because the scheduler re-checks every candidate in Update,
// which writes conditionally on the stored ETag; a stale entry costs only a
// wasted claim attempt (which reads the drone and mends the entry), or a
// freed drone going unused here until the feed brings it, at most FeedPoll
// later. One such gap outlasts the poll: a read of this Store that was
// answered before another process's write but observed after the feed
// brought that write keeps the older version until the drone changes again.
type fleet struct {
	*collection[domain.Drone]
	index *droneindex.Index
	// waiting holds the drones awaiting takeoff (domain.Drone.AwaitsTakeoff),
	// which an expedited delivery may take, kept from the same feed and
	// observations as index.
	waiting *droneindex.Index
	log     *slog.Logger
	poll    time.Duration

	// mu orders index changes: this Store's observations and feed pages.
	mu sync.Mutex
	// following is set when the index starts to be loaded; until then
	// nothing is indexed, so a process that never dispatches keeps none.
	following bool
	// etags holds the version of every indexed drone, so that a claim
	// can write conditionally on it without reading the drone first.
	etags map[string]azcore.ETag
	// loaded is set once the first read of the feed reached its end;
	// until then loadErr is the failure of the last attempt (nil while the
	// first runs), and attempt is closed when the running attempt ends.
	loaded  bool
	loadErr error
	attempt chan struct{}

	start  sync.Once          // starts follow, or marks a closed fleet
	bg     context.Context    // ends when the Store closes
	cancel context.CancelFunc // ends bg
	done   chan struct{}      // closed when follow has returned (or never will run)

	// unordered is set once the gateway refused List's ORDER BY query
	// (a container spread over several physical partitions), so later
	// calls go straight to the query it can serve.
	unordered atomic.Bool
}

var _ ports.Fleet = (*fleet)(nil)

// feedPage is the most drones one change feed page brings.
const feedPage = 1000

// wholeContainer is the feed range of every partition key; the SDK
// expands it to the container's physical partitions.
var wholeContainer = azcosmos.FeedRange{MinInclusive: "", MaxExclusive: "FF"}

// feedBackoff bounds the waits after failed feed reads.
const (
	feedBackoffMin = 500 * time.Millisecond
	feedBackoffMax = 30 * time.Second
)

func newFleet(c *azcosmos.ContainerClient, log *slog.Logger, poll time.Duration) *fleet {
	bg, cancel := context.WithCancel(context.Background())
	f := &fleet{
		collection: newCollection[domain.Drone](c, topology.ContainerDrones),
		index:      droneindex.New(),
		waiting:    droneindex.New(),
		log:        log,
		poll:       poll,
		etags:      make(map[string]azcore.ETag),
		attempt:    make(chan struct{}),
		bg:         bg,
		cancel:     cancel,
		done:       make(chan struct{}),
	}
	f.observe = f.track
	f.hint = f.indexed
	f.carried = true
	return f
}

// close stops following the feed and waits for it.
func (f *fleet) close() {
	f.cancel()
	f.start.Do(func() { close(f.done) }) // never started: nothing to wait for
	<-f.done
}

// Ready implements ports.Fleet: the first call starts loading the index
// and following the feed; each waits for the first load to end, and
// returns EUNAVAILABLE at once while it keeps failing (it is retried in the
// background, backing off).
func (f *fleet) Ready(ctx context.Context) error {
	f.start.Do(func() {
		f.mu.Lock()
		f.following = true
		f.mu.Unlock()
		go f.follow(f.bg)
	})
	f.mu.Lock()
	loaded, err, attempt := f.loaded, f.loadErr, f.attempt
	f.mu.Unlock()
	switch {
	case loaded:
		return nil
	case err != nil:
		return err
	case f.bg.Err() != nil:
		return domain.Unavailable(f.bg.Err(), "the drone index of %s: the store is closed", f.name)
	}
	select {
	case <-attempt:
	case <-ctx.Done():
		return domain.Unavailable(ctx.Err(), "wait for the drone index of %s", f.name)
	case <-f.bg.Done():
		return domain.Unavailable(f.bg.Err(), "the drone index of %s: the store is closed", f.name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loaded {
		return nil
	}
	return f.loadErr
}

// follow reads the change feed until ctx ends: at once again after a page
// of changes, FeedPoll after a read that found none, and backing off after
// a failure, which leaves the index as it was.
func (f *fleet) follow(ctx context.Context) {
	defer close(f.done)
	began := time.Now()
	followFeed(ctx, f.poll, f.drain, func(err error, retryIn time.Duration) {
		f.attempted(err, began)
		if err != nil {
			f.log.WarnContext(ctx, "cosmos: reading the drone index's change feed failed; keeping the index and retrying",
				"err", brief(err), "retryIn", retryIn.String())
		}
	})
}

// followFeed calls drain, which reads a change feed from *token until it
// finds nothing, until ctx ends: poll after a read that succeeded, backing
// off from feedBackoffMin to feedBackoffMax after failures in a row. Each
// read's outcome goes to done with the wait before the next.
func followFeed(ctx context.Context, poll time.Duration, drain func(context.Context, *string) error, done func(err error, retryIn time.Duration)) {
	token := ""
	failures := 0
	for {
		err := drain(ctx, &token)
		if ctx.Err() != nil {
			return
		}
		wait := poll
		if err != nil {
			failures++
			wait = min(feedBackoffMin<<min(failures-1, 10), feedBackoffMax)
		} else {
			failures = 0
		}
		done(err, wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// attempted records the end of a read of the feed for Ready, until the
// first one has succeeded.
func (f *fleet) attempted(err error, began time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loaded {
		return
	}
	if err == nil {
		f.loaded, f.loadErr = true, nil
		f.log.Info("cosmos: drone index loaded from the change feed", "available", len(f.etags),
			"took", time.Since(began).Round(time.Millisecond).String())
	} else {
		f.loadErr = err
	}
	close(f.attempt)
	f.attempt = make(chan struct{})
}

// drain reads the feed from *token (the beginning when empty) until a read
// finds nothing, applying each page and advancing *token past it.
func (f *fleet) drain(ctx context.Context, token *string) error {
	return drainFeed(ctx, f.c, f.name, token, func(items [][]byte) { f.applyPage(ctx, items) })
}

// drainFeed reads the change feed of c, the container name, from *token
// (the beginning when empty) until a read finds nothing, handing each
// page's items to page (the empty one last) and advancing *token past it.
func drainFeed(ctx context.Context, c *azcosmos.ContainerClient, name string, token *string, page func(items [][]byte)) error {
	for {
		opts := &azcosmos.ChangeFeedOptions{MaxItemCount: feedPage}
		if *token == "" {
			opts.FeedRange = &wholeContainer
		} else {
			opts.Continuation = token
		}
		resp, err := c.ReadChangeFeed(ctx, opts)
		if err != nil {
			return unavailable(err, "read the change feed of %s", name)
		}
		page(resp.Items)
		if resp.ContinuationToken != "" {
			*token = resp.ContinuationToken
		}
		if len(resp.Items) == 0 {
			return nil
		}
	}
}

// applyPage brings the index up to date with a page of the feed. A page
// may be older than a write this Store made while it was on its way; the
// write then follows in a later page, which drain reads at once.
func (f *fleet) applyPage(ctx context.Context, items [][]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, item := range items {
		d := new(storedDrone)
		if err := json.Unmarshal(item, d); err != nil || d.ID == "" {
			f.log.WarnContext(ctx, "cosmos: a document of the drones container is no drone; left out of the index", "err", err)
			continue
		}
		f.apply(d.ID, d.ETag, &d.Drone)
	}
}

// track brings the index up to date with a version of drone d this Store
// read or wrote; the collection calls it under the drone's turn, so the
// versions of one drone arrive in order.
func (f *fleet) track(id string, etag azcore.ETag, d *domain.Drone) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.following {
		f.apply(id, etag, d)
	}
}

// apply indexes or unindexes one drone; the caller holds mu.
func (f *fleet) apply(id string, etag azcore.ETag, d *domain.Drone) {
	if d.Dispatchable() && etag != "" {
		// A copy: the caller keeps d and may change it.
		f.index.Put(id, d)
		f.etags[id] = etag
	} else {
		f.index.Remove(id)
		delete(f.etags, id)
	}
	if d.AwaitsTakeoff() {
		f.waiting.Put(id, d)
	} else {
		f.waiting.Remove(id)
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
	d, ok := f.index.Get(id)
	if !ok {
		return version{}, false
	}
	body, err := json.Marshal(d)
	if err != nil {
		return version{}, false
	}
	return version{etag: etag, body: body}, true
}

// storedDrone is a drone as a query or the change feed returns it, with
// its ETag.
type storedDrone struct {
	domain.Drone
	ETag azcore.ETag `json:"_etag"`
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
	return unavailable(err, "list %s", f.name)
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
	return f.nearestIn(ctx, f.index, loc)
}

// NearestAwaitingTakeoff implements ports.Fleet, as NearestAvailable does.
func (f *fleet) NearestAwaitingTakeoff(ctx context.Context, loc domain.Location) iter.Seq2[*domain.Drone, float64] {
	return f.nearestIn(ctx, f.waiting, loc)
}

// nearestIn walks index from loc once the index is loaded.
func (f *fleet) nearestIn(ctx context.Context, index *droneindex.Index, loc domain.Location) iter.Seq2[*domain.Drone, float64] {
	return func(yield func(*domain.Drone, float64) bool) {
		if f.Ready(ctx) != nil {
			return // the caller learns why from Ready
		}
		for d, km := range index.Nearest(ctx, loc) {
			if !yield(d, km) {
				return
			}
		}
	}
}
