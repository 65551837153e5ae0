package cosmos

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// waiting lists the waiting deliveries of every owner through the owner
// index (deliveriesbyowner), whose entries carry each delivery's stage.
type waiting struct{ d deliveries }

// waitingScan bounds the entries one page reads per delivery it may hold
// (see the embedded adapter's): a Scheduled delivery with a drone has an
// entry in a waiting stage but does not wait.
const waitingScan = 4

// PageWaiting implements ports.WaitingDeliveries: one cross-partition
// query of the owner index for the entries in a waiting stage past the
// cursor, sorted here (the gateway cannot merge ORDER BY across physical
// partitions, azcosmos v1.5.0 having no client query engine: see fleet.go),
// keeping at most waitingScan × limit of them, then a point read of each
// delivery kept, which is the truth the page shows. Its cost grows with the
// deliveries in those stages, not with every delivery ever stored; it is
// the operator's listing, never a per-delivery path (docs/data-layout.md).
func (w waiting) PageWaiting(ctx context.Context, f ports.WaitingFilter) (ports.DeliveryPage, error) {
	if f.Limit <= 0 {
		return ports.DeliveryPage{}, domain.Errorf(domain.EINTERNAL, "page of waiting deliveries: limit %d", f.Limit)
	}
	stages := make([]string, len(domain.WaitingStages))
	params := make([]azcosmos.QueryParameter, 0, len(stages)+1)
	for i, s := range domain.WaitingStages {
		name := "@s" + string(rune('0'+i))
		stages[i] = "c.stage = " + name
		params = append(params, azcosmos.QueryParameter{Name: name, Value: string(s)})
	}
	where := "(" + strings.Join(stages, " OR ") + ")"
	if f.After != nil {
		op := " < "
		if f.Oldest {
			op = " > "
		}
		where += " AND c.sortKey" + op + "@after"
		params = append(params, azcosmos.QueryParameter{Name: "@after", Value: sortKey(sortable(f.After.CreatedAt), f.After.ID)})
	}
	// In the listing's order: newest first unless Oldest.
	order := func(a, b *ownerEntry) int {
		if f.Oldest {
			return strings.Compare(a.SortKey, b.SortKey)
		}
		return strings.Compare(b.SortKey, a.SortKey)
	}
	scan := waitingScan * f.Limit
	var entries []*ownerEntry
	pager := w.d.owners.c.NewQueryItemsPager("SELECT * FROM c WHERE "+where, azcosmos.NewPartitionKey(),
		&azcosmos.QueryOptions{QueryParameters: params, PageSizeHint: 1000})
	for pager.More() {
		resp, err := pager.NextPage(ctx)
		if err != nil {
			return ports.DeliveryPage{}, w.d.owners.fail(err, "query", "waiting deliveries")
		}
		for _, item := range resp.Items {
			e, err := w.d.owners.decode("", item)
			if err != nil {
				return ports.DeliveryPage{}, err
			}
			entries = append(entries, e)
			if len(entries) >= 2*scan+64 {
				// Keep memory in proportion to the page, not to the backlog.
				slices.SortFunc(entries, order)
				clear(entries[scan+1:])
				entries = entries[:scan+1]
			}
		}
	}
	slices.SortFunc(entries, order)
	more := len(entries) > scan
	if more {
		entries = entries[:scan]
	}
	// Read in batches of limit, so that a page of waiting deliveries near
	// the front costs about limit point reads.
	var page ports.DeliveryPage
	for start := 0; start < len(entries); start += f.Limit {
		batch := entries[start:min(start+f.Limit, len(entries))]
		found, err := w.d.readAll(ctx, batch)
		if err != nil {
			return ports.DeliveryPage{}, err
		}
		for i, v := range found {
			if v == nil || v.OwnerID != batch[i].OwnerID || !v.Waiting() {
				continue
			}
			page.Deliveries = append(page.Deliveries, v)
			if len(page.Deliveries) == f.Limit {
				if start+i+1 < len(entries) || more {
					next, err := positionOf(batch[i])
					if err != nil {
						return ports.DeliveryPage{}, err
					}
					page.Next = &next
				}
				return page, nil
			}
		}
	}
	if more && len(entries) > 0 {
		next, err := positionOf(entries[len(entries)-1])
		if err != nil {
			return ports.DeliveryPage{}, err
		}
		page.Next = &next
	}
	return page, nil
}

// positionOf is the listing position of an owner index entry.
func positionOf(e *ownerEntry) (ports.DeliveryPosition, error) {
	at, err := time.Parse(time.RFC3339Nano, e.CreatedAt)
	if err != nil {
		return ports.DeliveryPosition{}, domain.Errorf(domain.EINTERNAL, "owner index entry %s: createdAt %q", e.ID, e.CreatedAt)
	}
	return ports.DeliveryPosition{CreatedAt: at, ID: e.ID}, nil
}
