package cosmos

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// analytics keeps the running totals in the analytics container, one
// logical partition per bucket and month (partition key /bucket, the value
// "<bucket>|<month>"). The partition holds the month's aggregate document
// (id "aggregate": the totals and a bucket per day, so at most 31 entries
// whatever the traffic) and one small marker per contribution added to it
// (id "<delivery>:<stage>").
//
// A contribution is added by one transactional batch in that partition:
// create the marker, and patch the aggregate with increments (or create it,
// for the month's first; see add). A batch is all or nothing
// (https://learn.microsoft.com/azure/cosmos-db/nosql/transactional-batch),
// so the aggregate holds a contribution exactly when its marker exists:
// a replay finds the marker (409) and adds nothing. An increment reads
// nothing and needs no ETag, so writers of one aggregate do not race.
//
// The deliveries collection calls apply after a write of a delivery in
// stage Created or a terminal stage, and after every skipped update: a
// batch that failed leaves the step to fail and be retried, and the
// retry's skipped update adds what is missing. The acceptance's count is
// the exception (see deliveries.counted): the terminal write adds it.
type analytics struct {
	c          *azcosmos.ContainerClient
	deliveries deliveries
	log        *slog.Logger
}

var _ ports.Analytics = (*analytics)(nil)

// aggregateID is the id of a partition's aggregate document.
const aggregateID = "aggregate"

// aggregateDoc is a bucket's month as stored.
type aggregateDoc struct {
	ID     string           `json:"id"`
	Bucket string           `json:"bucket"` // the partition key: "<bucket>|<month>"
	Kind   string           `json:"kind"`   // "aggregate"
	Name   string           `json:"name"`   // the bucket alone
	Month  string           `json:"month"`
	Total  domain.Figures   `json:"total"`
	Days   []domain.Figures `json:"days"`
}

// markerDoc says one contribution was added to its partition's aggregate.
type markerDoc struct {
	ID     string `json:"id"` // "<delivery>:<stage>"
	Bucket string `json:"bucket"`
	Kind   string `json:"kind"` // "applied"
}

func partitionOf(bucket, month string) string { return bucket + "|" + month }

func markerID(deliveryID string, stage domain.Stage) string { return deliveryID + ":" + string(stage) }

// analyticsAttempts bounds the retries of one contribution after lost races.
const analyticsAttempts = 32

// apply adds the contributions of delivery v not yet added to its buckets.
// The contribution of the stage v is in was most likely made by the write
// that called; an earlier one (the acceptance, at the end) most likely
// added already, so its marker is read first, one small point read rather
// than an aggregate read and a batch that fails; after a skipped update
// (a replay) every marker is.
func (a *analytics) apply(ctx context.Context, id string, v *domain.Delivery, replay bool) error {
	month, day := v.AnalyticsDay()
	for _, c := range v.Contributions() {
		for _, b := range v.Buckets() {
			if replay || c.Stage != v.Stage {
				added, err := a.marked(ctx, partitionOf(b, month), markerID(id, c.Stage))
				if err != nil {
					return unavailable(err, "delivery %s is stored but its analytics (%s, %s) are not; retry", id, b, c.Stage)
				}
				if added {
					continue
				}
			}
			if err := a.add(ctx, b, month, day, id, c); err != nil {
				return unavailable(err, "delivery %s is stored but its analytics (%s, %s) are not; retry", id, b, c.Stage)
			}
		}
	}
	return nil
}

// add adds one contribution to one bucket's month, exactly once, with one
// transactional batch: create the marker, and patch the aggregate with an
// increment of each figure the contribution changes (in the month's total
// and in its day). An increment needs no read and no ETag: Cosmos DB applies
// it to the stored value, so concurrent writers of one aggregate do not
// race (partial document update, "Increment" and the ten operations a
// patch may hold: https://learn.microsoft.com/azure/cosmos-db/partial-document-update;
// a patch in a batch: TransactionalBatch.PatchItem, azcosmos v1.5.0
// cosmos_transactional_batch.go). The month's first contribution finds no
// aggregate (404 on the patch): the batch then creates it holding the
// contribution; a writer that created it first makes that create fail with
// 409, and the patch is tried again.
func (a *analytics) add(ctx context.Context, bucket, month string, day int, deliveryID string, c domain.Contribution) error {
	part := partitionOf(bucket, month)
	pk := azcosmos.NewPartitionKeyString(part)
	marker, err := json.Marshal(markerDoc{ID: markerID(deliveryID, c.Stage), Bucket: part, Kind: "applied"})
	if err != nil {
		return err
	}
	patches := increments(day, c.Figures)
	create := false
	for range analyticsAttempts {
		b := a.c.NewTransactionalBatch(pk)
		b.CreateItem(marker, nil)
		if create {
			doc, err := newAggregate(bucket, month)
			if err != nil {
				return err
			}
			m := doc.figures()
			m.AddDay(day, c.Figures)
			doc.Total, doc.Days = m.Total, m.Days
			body, err := json.Marshal(doc)
			if err != nil {
				return err
			}
			b.CreateItem(body, nil)
		} else {
			for _, p := range patches {
				b.PatchItem(aggregateID, p, nil)
			}
		}
		resp, err := a.c.ExecuteTransactionalBatch(ctx, b, nil)
		if err != nil {
			return err
		}
		if resp.Success {
			return nil
		}
		results := resp.OperationResults
		if len(results) < 2 {
			return fmt.Errorf("analytics batch in %s: %d results", part, len(results))
		}
		if results[0].StatusCode == http.StatusConflict {
			return nil // added before
		}
		failed := slices.IndexFunc(results[1:], func(r azcosmos.TransactionalBatchResult) bool {
			return r.StatusCode != http.StatusFailedDependency
		})
		status := 0
		if failed >= 0 {
			status = int(results[1+failed].StatusCode)
		}
		switch {
		case !create && status == http.StatusNotFound:
			create = true // the month's first contribution
			continue
		case create && status == http.StatusConflict:
			create = false // another writer created the aggregate first
			continue
		}
		return fmt.Errorf("analytics batch in %s failed: marker %d, aggregate %d", part, results[0].StatusCode, status)
	}
	return fmt.Errorf("analytics of %s: lost %d races in a row", part, analyticsAttempts)
}

// maxPatchOperations is the most operations one patch may hold
// (https://learn.microsoft.com/azure/cosmos-db/partial-document-update).
const maxPatchOperations = 10

// increments returns the patches that add f to an aggregate's total and to
// its day: an increment per figure that is not zero, at most
// maxPatchOperations to a patch.
func increments(day int, f domain.Figures) []azcosmos.PatchOperations {
	type figure struct {
		name  string
		value int64
	}
	figures := []figure{{"count", f.Count}, {"completed", f.Completed}, {"cancelled", f.Cancelled}, {"failed", f.Failed},
		{"onTime", f.OnTime}, {"durationMs", f.DurationMs}, {"traveledM", f.TraveledM}, {"assignedMs", f.AssignedMs}}
	var out []azcosmos.PatchOperations
	var p azcosmos.PatchOperations
	n := 0
	add := func(path string, v int64) {
		if n == maxPatchOperations {
			out = append(out, p)
			p, n = azcosmos.PatchOperations{}, 0
		}
		p.AppendIncrement(path, v)
		n++
	}
	for _, g := range figures {
		if g.value == 0 {
			continue
		}
		add("/total/"+g.name, g.value)
		add(fmt.Sprintf("/days/%d/%s", day-1, g.name), g.value)
	}
	if n > 0 {
		out = append(out, p)
	}
	return out
}

// marked reports whether the marker id exists in partition part.
func (a *analytics) marked(ctx context.Context, part, id string) (bool, error) {
	_, err := a.c.ReadItem(ctx, azcosmos.NewPartitionKeyString(part), id, nil)
	switch {
	case err == nil:
		return true, nil
	case statusOf(err) == http.StatusNotFound && (subStatusOf(err) == "" || subStatusOf(err) == "0"):
		return false, nil
	}
	return false, err
}

// read returns a bucket's month as stored with its ETag, or a new empty
// one and a nil ETag.
func (a *analytics) read(ctx context.Context, bucket, month string) (*aggregateDoc, *azcore.ETag, error) {
	part := partitionOf(bucket, month)
	resp, err := a.c.ReadItem(ctx, azcosmos.NewPartitionKeyString(part), aggregateID, nil)
	if err != nil {
		if statusOf(err) == http.StatusNotFound && (subStatusOf(err) == "" || subStatusOf(err) == "0") {
			doc, err := newAggregate(bucket, month)
			return doc, nil, err
		}
		return nil, nil, err
	}
	doc := new(aggregateDoc)
	if err := json.Unmarshal(resp.Value, doc); err != nil {
		return nil, nil, domain.Errorf(domain.EINTERNAL, "decode analytics %s: %v", part, err)
	}
	etag := resp.ETag
	return doc, &etag, nil
}

// newAggregate returns a bucket's month with nothing added yet.
func newAggregate(bucket, month string) (*aggregateDoc, error) {
	first, err := time.Parse("2006-01", month)
	if err != nil {
		return nil, err
	}
	m := domain.NewMonthFigures(bucket, first)
	return &aggregateDoc{ID: aggregateID, Bucket: partitionOf(bucket, month), Kind: "aggregate", Name: bucket, Month: month, Days: m.Days}, nil
}

func (d *aggregateDoc) figures() *domain.MonthFigures {
	m := &domain.MonthFigures{Bucket: d.Name, Month: d.Month, Total: d.Total, Days: append([]domain.Figures(nil), d.Days...)}
	return m
}

// Month implements ports.Analytics: one point read.
func (a *analytics) Month(ctx context.Context, bucket string, month time.Time) (*domain.MonthFigures, error) {
	doc, _, err := a.read(ctx, bucket, domain.MonthKey(month))
	if err != nil {
		return nil, unavailable(err, "read analytics %s %s", bucket, domain.MonthKey(month))
	}
	return doc.figures(), nil
}

// monthDeliveries reads the deliveries accepted in month: a cross-partition
// query of the owner index, whose creation times sort as text, then a
// point read of each delivery.
func (a *analytics) monthDeliveries(ctx context.Context, month time.Time) ([]*domain.Delivery, error) {
	from := time.Date(month.Year(), month.Month(), 1, 0, 0, 0, 0, time.UTC)
	pager := a.deliveries.owners.c.NewQueryItemsPager("SELECT * FROM c WHERE c.sortKey >= @from AND c.sortKey < @to",
		azcosmos.NewPartitionKey(), &azcosmos.QueryOptions{
			QueryParameters: []azcosmos.QueryParameter{{Name: "@from", Value: sortable(from)}, {Name: "@to", Value: sortable(from.AddDate(0, 1, 0))}},
			PageSizeHint:    1000,
		})
	var entries []*ownerEntry
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, a.deliveries.owners.fail(err, "query", "month "+domain.MonthKey(month))
		}
		for _, item := range page.Items {
			e, err := a.deliveries.owners.decode("", item)
			if err != nil {
				return nil, err
			}
			entries = append(entries, e)
		}
	}
	found, err := a.deliveries.readAll(ctx, entries)
	if err != nil {
		return nil, err
	}
	out := make([]*domain.Delivery, 0, len(found))
	for i, v := range found {
		// An entry whose delivery never came, or another owner's id.
		if v != nil && v.OwnerID == entries[i].OwnerID {
			out = append(out, v)
		}
	}
	return out, nil
}

// Derive implements ports.Analytics.
func (a *analytics) Derive(ctx context.Context, month time.Time) (map[string]*domain.MonthFigures, error) {
	ds, err := a.monthDeliveries(ctx, month)
	if err != nil {
		return nil, err
	}
	derived := domain.Derive(month, ds)
	return derived, a.addKept(ctx, month, derived)
}

// addKept adds to derived, empty, each bucket kept for month that no
// delivery supports (its deliveries are gone, or it was written wrongly).
func (a *analytics) addKept(ctx context.Context, month time.Time, derived map[string]*domain.MonthFigures) error {
	key := domain.MonthKey(month)
	pager := a.c.NewQueryItemsPager("SELECT * FROM c WHERE c.kind = 'aggregate' AND c.month = @m", azcosmos.NewPartitionKey(),
		&azcosmos.QueryOptions{QueryParameters: []azcosmos.QueryParameter{{Name: "@m", Value: key}}})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return unavailable(err, "list the analytics of %s", key)
		}
		for _, item := range page.Items {
			var doc struct {
				Name string `json:"name"`
			}
			if err := json.Unmarshal(item, &doc); err != nil {
				return domain.Errorf(domain.EINTERNAL, "decode analytics: %v", err)
			}
			if _, ok := derived[doc.Name]; !ok {
				derived[doc.Name] = domain.NewMonthFigures(doc.Name, month)
			}
		}
	}
	return nil
}

// Reaggregate implements ports.Analytics. Cosmos DB has no transaction
// across partitions, so it writes each bucket's markers and then its
// aggregate; a delivery that changes meanwhile may be counted by both the
// repair and its own write, so a repair is for a month whose deliveries
// have ended, or is run again once they have.
func (a *analytics) Reaggregate(ctx context.Context, month time.Time) (map[string]*domain.MonthFigures, error) {
	ds, err := a.monthDeliveries(ctx, month)
	if err != nil {
		return nil, err
	}
	derived := domain.Derive(month, ds)
	key := domain.MonthKey(month)
	// Buckets kept but not derived (their deliveries are gone) are emptied.
	if err := a.addKept(ctx, month, derived); err != nil {
		return nil, err
	}
	for _, d := range ds {
		for _, c := range d.Contributions() {
			for _, b := range d.Buckets() {
				body, err := json.Marshal(markerDoc{ID: markerID(d.ID, c.Stage), Bucket: partitionOf(b, key), Kind: "applied"})
				if err != nil {
					return nil, err
				}
				if _, err := a.c.UpsertItem(ctx, azcosmos.NewPartitionKeyString(partitionOf(b, key)), body, nil); err != nil {
					return nil, unavailable(err, "reaggregate %s: mark %s", key, d.ID)
				}
			}
		}
	}
	for b, m := range derived {
		part := partitionOf(b, key)
		body, err := json.Marshal(aggregateDoc{ID: aggregateID, Bucket: part, Kind: "aggregate", Name: b, Month: key, Total: m.Total, Days: m.Days})
		if err != nil {
			return nil, err
		}
		if _, err := a.c.UpsertItem(ctx, azcosmos.NewPartitionKeyString(part), body, nil); err != nil {
			return nil, unavailable(err, "reaggregate %s: write %s", key, b)
		}
	}
	return derived, nil
}
