package cosmos

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"slices"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

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

func newPauses(c *azcosmos.ContainerClient) *pauses {
	return &pauses{collection: newCollection[domain.Pause](c, topology.ContainerPauses)}
}

// Delete implements ports.Pauses.
func (p *pauses) Delete(ctx context.Context, id string) error {
	err := p.delete(ctx, id)
	if statusOf(err) == http.StatusNotFound {
		return domain.Errorf(domain.ENOTFOUND, "%s %s not found", p.name, id)
	}
	if err != nil {
		return p.fail(err, "delete", id)
	}
	return nil
}

// List implements ports.Pauses with one cross-partition query, sorted
// here as zones.List is: the container holds at most domain.MaxPauses.
func (p *pauses) List(ctx context.Context) ([]*domain.Pause, error) {
	var out []*domain.Pause
	pager := p.c.NewQueryItemsPager("SELECT * FROM c", azcosmos.NewPartitionKey(), &azcosmos.QueryOptions{PageSizeHint: 1000})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, p.fail(err, "list", "")
		}
		for _, item := range page.Items {
			v := new(domain.Pause)
			if json.Unmarshal(item, v) != nil {
				return nil, domain.Errorf(domain.EINTERNAL, "decode a pause of %s", p.name)
			}
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b *domain.Pause) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}
