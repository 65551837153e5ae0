package cosmos

import (
	"context"
	"sort"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// deliveries adds the owner query to the delivery collection.
type deliveries struct {
	*collection[domain.Delivery]
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
