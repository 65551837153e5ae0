package cosmos

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// deliveries adds the owner queries to the delivery collection, and keeps
// the owner index that listings read: one small entry per delivery in the
// deliveriesbyowner container, partitioned by owner.
//
// Cosmos DB cannot write a delivery and its entry in one transaction (they
// are in different containers), so the order of the writes and the listing
// make up for it:
//   - A new delivery's entry is written before the delivery, so a delivery
//     that exists always has one; an entry whose delivery was never
//     written is skipped by the listing, which reads every delivery anyway.
//   - A write that changes the stage writes the entry after the delivery,
//     conditionally on the entry's version, and only when the entry is of
//     an earlier version of the delivery (seq, the length of its history,
//     which only grows), so entries never move backwards when two writers'
//     entry writes cross. When that write fails the update fails; the
//     step's retry finds the delivery written and skips, and a skipped
//     update brings the entry up to date too, unless this process knows it
//     is.
//   - The listing takes each delivery, not its entry, as the truth: it
//     leaves out a delivery that no longer matches the filter and rewrites
//     the entry that said it did.
type deliveries struct {
	*collection[domain.Delivery]
	owners *collection[ownerEntry]
	// analytics learns of the writes that may hold a contribution not yet
	// added (see analytics); nil adds nothing.
	analytics *analytics
}

// counted adds the contributions of delivery v not yet added, after a
// write in stage Created or a terminal stage, or an update that skipped
// (a retry that may find its earlier attempt's analytics missing).
func (d deliveries) counted(ctx context.Context, id string, v *domain.Delivery, skipped bool) error {
	if d.analytics == nil || !skipped && v.Stage != domain.StageCreated && !v.Stage.Terminal() {
		return nil
	}
	err := d.analytics.apply(ctx, id, v, skipped)
	if err != nil && !skipped && v.Stage == domain.StageCreated {
		// The delivery is stored: refusing the request now would leave it
		// unqueued until the client retried. Its acceptance is counted later
		// instead, by the delivery's terminal write (apply adds every
		// contribution whose marker is missing) or by reaggregate; until
		// then the month's figures miss it.
		d.analytics.log.WarnContext(ctx, "cosmos: a delivery's acceptance is not counted yet; its end will count it",
			"deliveryId", id, "err", brief(err))
		return nil
	}
	return err
}

func newDeliveries(docs, index *azcosmos.ContainerClient) deliveries {
	owners := newCollection[ownerEntry](index, topology.ContainerDeliveriesByOwner)
	owners.locate = locateOwnerEntry
	docsColl := newCollection[domain.Delivery](docs, topology.ContainerDeliveries)
	docsColl.carried = true
	return deliveries{collection: docsColl, owners: owners}
}

// ownerEntry is what the owner index keeps of a delivery.
type ownerEntry struct {
	ID        string       `json:"id"`      // the delivery id
	OwnerID   string       `json:"ownerId"` // the partition key
	CreatedAt string       `json:"createdAt"`
	SortKey   string       `json:"sortKey"`
	Stage     domain.Stage `json:"stage"`
	Seq       int          `json:"seq"`
}

// sortableTime writes a time in UTC with all nine fractional digits, so
// that its text sorts as the time does: RFC 3339 text with trimmed
// fractions does not ("…:05Z" sorts after "…:05.5Z").
const sortableTime = "2006-01-02T15:04:05.000000000Z"

func sortable(t time.Time) string { return t.UTC().Format(sortableTime) }

// sortKey orders the listing by one property, creation time then id: the
// time has a fixed width, so comparing keys compares times first. One
// property is what a single-partition ORDER BY needs without a composite
// index, and a key of a time alone also bounds a range of times.
func sortKey(createdAt, id string) string { return createdAt + " " + id }

func entryOf(id string, d *domain.Delivery) *ownerEntry {
	at := sortable(d.CreatedAt)
	return &ownerEntry{ID: id, OwnerID: d.OwnerID, CreatedAt: at, SortKey: sortKey(at, id), Stage: d.Stage, Seq: d.EventCount()}
}

// supersedes reports whether entry e should replace cur: it comes from a
// later version of the delivery, or from the same one and differs.
func (e *ownerEntry) supersedes(cur *ownerEntry) bool {
	return cur.Seq < e.Seq || cur.Seq == e.Seq && *cur != *e
}

// ownerKey names an entry in the owners collection: the owner (the
// partition key) and the delivery id (the document id). Delivery ids
// contain no '/', so the last one separates them.
func ownerKey(ownerID, deliveryID string) string { return ownerID + "/" + deliveryID }

func locateOwnerEntry(key string) (string, azcosmos.PartitionKey) {
	i := strings.LastIndexByte(key, '/')
	return key[i+1:], azcosmos.NewPartitionKeyString(key[:i])
}

// Create implements ports.Collection, writing the owner index entry first.
func (d deliveries) Create(ctx context.Context, id string, v *domain.Delivery) error {
	key := ownerKey(v.OwnerID, id)
	err := d.owners.Create(ctx, key, entryOf(id, v))
	if err != nil && !domain.IsCode(err, domain.ECONFLICT) {
		return err
	}
	// An entry that was there already is this owner's earlier attempt.
	fresh := err == nil
	err = d.collection.Create(ctx, id, v)
	if err == nil {
		return d.counted(ctx, id, v, false)
	}
	if fresh && domain.IsCode(err, domain.ECONFLICT) {
		// The id is another owner's: take back the entry that would point
		// this owner's listing at it. Should that fail, the listing skips
		// the entry anyway, as it checks the owner of what it reads.
		if cur, ferr := d.collection.Find(ctx, id); ferr == nil && cur.OwnerID != v.OwnerID {
			_ = d.owners.remove(ctx, key)
		}
	}
	return err
}

// Update implements ports.Collection, bringing the owner index entry up to
// date when the update changed the stage or skipped.
func (d deliveries) Update(ctx context.Context, id string, fn func(*domain.Delivery) error) (*domain.Delivery, error) {
	var before domain.Stage
	var skipped bool
	v, err := d.collection.Update(ctx, id, func(cur *domain.Delivery) error {
		before = cur.Stage
		err := fn(cur)
		skipped = errors.Is(err, ports.ErrSkip)
		return err
	})
	if err != nil {
		return v, err
	}
	if skipped || v.Stage != before {
		if err := d.sync(ctx, id, v); err != nil {
			return nil, err
		}
		if err := d.counted(ctx, id, v, skipped); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// Upsert implements ports.Collection as Update does; a created delivery's
// entry is written after it.
func (d deliveries) Upsert(ctx context.Context, id string, fn func(cur *domain.Delivery) (*domain.Delivery, error)) (*domain.Delivery, error) {
	var before domain.Stage
	var created, skipped bool
	v, err := d.collection.Upsert(ctx, id, func(cur *domain.Delivery) (*domain.Delivery, error) {
		created = cur == nil
		if cur != nil {
			before = cur.Stage
		}
		next, err := fn(cur)
		skipped = errors.Is(err, ports.ErrSkip)
		return next, err
	})
	if err != nil || v == nil {
		return v, err
	}
	if created || skipped || v.Stage != before {
		if err := d.sync(ctx, id, v); err != nil {
			return nil, err
		}
		if err := d.counted(ctx, id, v, skipped); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// sync makes the owner index entry of delivery v say what v says, unless
// this process knows it does or the entry is of a later version.
func (d deliveries) sync(ctx context.Context, id string, v *domain.Delivery) error {
	e := entryOf(id, v)
	key := ownerKey(v.OwnerID, id)
	if cur, _, ok := d.owners.Recall(key); ok && !e.supersedes(cur) {
		return nil
	}
	_, err := d.owners.Upsert(ctx, key, func(cur *ownerEntry) (*ownerEntry, error) {
		if cur != nil && !e.supersedes(cur) {
			return nil, ports.ErrSkip
		}
		return e, nil
	})
	if err != nil {
		return unavailable(err, "delivery %s is stored but its owner index entry is not; retry", id)
	}
	return nil
}

// pageReaders bounds the point reads one page runs at once.
const pageReaders = 8

// PageByOwner implements ports.Deliveries: one query in the owner's
// partition of the owner index, ordered by sortKey and cut at limit+1
// entries (the last only says whether another page follows), then a point
// read of each delivery, which is what the page shows.
func (d deliveries) PageByOwner(ctx context.Context, f ports.DeliveryFilter) (ports.DeliveryPage, error) {
	if f.Limit <= 0 {
		return ports.DeliveryPage{}, domain.Errorf(domain.EINTERNAL, "page of deliveries: limit %d", f.Limit)
	}
	where := "c.ownerId = @owner"
	params := []azcosmos.QueryParameter{{Name: "@owner", Value: f.OwnerID}, {Name: "@n", Value: f.Limit + 1}}
	if f.After != nil {
		where += " AND c.sortKey < @after"
		params = append(params, azcosmos.QueryParameter{Name: "@after", Value: sortKey(sortable(f.After.CreatedAt), f.After.ID)})
	}
	// A key is its time followed by more, so >= from keeps a delivery
	// created at from, and < to leaves out one created at to.
	if !f.CreatedFrom.IsZero() {
		where += " AND c.sortKey >= @from"
		params = append(params, azcosmos.QueryParameter{Name: "@from", Value: sortable(f.CreatedFrom)})
	}
	if !f.CreatedTo.IsZero() {
		where += " AND c.sortKey < @to"
		params = append(params, azcosmos.QueryParameter{Name: "@to", Value: sortable(f.CreatedTo)})
	}
	if f.Stage != "" {
		where += " AND c.stage = @stage"
		params = append(params, azcosmos.QueryParameter{Name: "@stage", Value: string(f.Stage)})
	}
	// No cross-partition flag: the service then refuses to fan the query
	// out, so a page can never turn into a scan of every owner.
	single := false
	pager := d.owners.c.NewQueryItemsPager("SELECT TOP @n * FROM c WHERE "+where+" ORDER BY c.sortKey DESC",
		azcosmos.NewPartitionKeyString(f.OwnerID), &azcosmos.QueryOptions{
			QueryParameters: params, PageSizeHint: int32(f.Limit + 1), EnableCrossPartitionQuery: &single})
	var entries []*ownerEntry
	for pager.More() && len(entries) <= f.Limit {
		resp, err := pager.NextPage(ctx)
		if err != nil {
			return ports.DeliveryPage{}, d.owners.fail(err, "query", "owner "+f.OwnerID)
		}
		for _, item := range resp.Items {
			e, err := d.owners.decode("", item)
			if err != nil {
				return ports.DeliveryPage{}, err
			}
			entries = append(entries, e)
		}
	}
	// Without a composite index Cosmos DB sorts this query itself; sorting
	// again costs nothing and keeps the page in order should a gateway
	// return the partition's results unmerged.
	sort.Slice(entries, func(i, j int) bool { return entries[i].SortKey > entries[j].SortKey })
	var page ports.DeliveryPage
	if len(entries) > f.Limit {
		entries = entries[:f.Limit]
		last := entries[f.Limit-1]
		at, err := time.Parse(time.RFC3339Nano, last.CreatedAt)
		if err != nil {
			return ports.DeliveryPage{}, domain.Errorf(domain.EINTERNAL, "owner index entry %s: createdAt %q", last.ID, last.CreatedAt)
		}
		page.Next = &ports.DeliveryPosition{CreatedAt: at, ID: last.ID}
	}
	found, err := d.readAll(ctx, entries)
	if err != nil {
		return ports.DeliveryPage{}, err
	}
	for i, e := range entries {
		v := found[i]
		if v == nil || v.OwnerID != f.OwnerID {
			continue // written before a delivery that never came, or another owner's id
		}
		if now := entryOf(e.ID, v); now.supersedes(e) {
			// The entry trails its delivery (an entry write that failed,
			// or one still on its way). Mend it; should that fail, the
			// next write of the delivery or the next listing tries again,
			// and this page is right either way.
			_, _ = d.owners.Upsert(ctx, ownerKey(f.OwnerID, e.ID), func(cur *ownerEntry) (*ownerEntry, error) {
				if cur != nil && !now.supersedes(cur) {
					return nil, ports.ErrSkip
				}
				return now, nil
			})
		}
		if f.Stage != "" && v.Stage != f.Stage ||
			!f.CreatedFrom.IsZero() && v.CreatedAt.Before(f.CreatedFrom) ||
			!f.CreatedTo.IsZero() && !v.CreatedAt.Before(f.CreatedTo) {
			continue
		}
		page.Deliveries = append(page.Deliveries, v)
	}
	return page, nil
}

// readAll reads the delivery of each entry, a few at a time; a delivery
// that does not exist is nil.
func (d deliveries) readAll(ctx context.Context, entries []*ownerEntry) ([]*domain.Delivery, error) {
	out := make([]*domain.Delivery, len(entries))
	errs := make([]error, len(entries))
	sem := make(chan struct{}, pageReaders)
	var wg sync.WaitGroup
	for i, e := range entries {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			v, err := d.collection.Find(ctx, e.ID)
			if domain.IsCode(err, domain.ENOTFOUND) {
				err = nil
			}
			out[i], errs[i] = v, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// ListByOwner implements ports.Deliveries with one cross-partition query
// filtered on the owner; reports call it, the chain never does. The month is
// filtered after decoding because RFC 3339 text with fractional seconds does
// not sort as text.
func (d deliveries) ListByOwner(ctx context.Context, ownerID string, from, to time.Time, limit int) ([]*domain.Delivery, error) {
	if limit <= 0 {
		return nil, nil
	}
	pager := d.c.NewQueryItemsPager("SELECT * FROM c WHERE c.ownerId = @owner", azcosmos.NewPartitionKey(), &azcosmos.QueryOptions{
		QueryParameters: []azcosmos.QueryParameter{{Name: "@owner", Value: ownerID}},
		PageSizeHint:    1000,
	})
	var out []*domain.Delivery
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, d.fail(err, "query", "owner "+ownerID)
		}
		for _, item := range page.Items {
			v, err := d.decode("", item)
			if err != nil {
				return nil, err
			}
			if !v.CreatedAt.Before(from) && v.CreatedAt.Before(to) {
				out = append(out, v)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
