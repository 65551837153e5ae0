package cosmos

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
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

// List implements ports.Pauses with one cross-partition query, sorted
// here as zones.List is: the container holds at most domain.MaxPauses.
func (p *pauses) List(ctx context.Context) ([]*domain.Pause, error) {
	read, err := p.all(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*domain.Pause, len(read))
	for i, r := range read {
		out[i] = r.pause
	}
	return out, nil
}

// DeleteExpired implements ports.Pauses: it reads every pause and deletes
// each expired one on condition of the ETag read.
func (p *pauses) DeleteExpired(ctx context.Context, now time.Time) (int, error) {
	read, err := p.all(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range read {
		if r.pause.ActiveAt(now) {
			continue
		}
		switch err := p.deleteIf(ctx, r.pause.ID, r.etag); statusOf(err) {
		case http.StatusNotFound, http.StatusPreconditionFailed:
			// Deleted, or put again, since it was read.
		default:
			if err != nil {
				return n, p.fail(err, "delete expired", r.pause.ID)
			}
			n++
		}
	}
	return n, nil
}

// storedPause is a pause as the listing read it, with the ETag that makes
// its deletion conditional.
type storedPause struct {
	pause *domain.Pause
	etag  azcore.ETag
}

// all reads every pause, in id order.
func (p *pauses) all(ctx context.Context) ([]storedPause, error) {
	var out []storedPause
	pager := p.c.NewQueryItemsPager("SELECT * FROM c", azcosmos.NewPartitionKey(), &azcosmos.QueryOptions{PageSizeHint: 1000})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, p.fail(err, "list", "")
		}
		for _, item := range page.Items {
			v := new(domain.Pause)
			var meta struct {
				ETag azcore.ETag `json:"_etag"`
			}
			if json.Unmarshal(item, v) != nil || json.Unmarshal(item, &meta) != nil {
				return nil, domain.Errorf(domain.EINTERNAL, "decode a pause of %s", p.name)
			}
			out = append(out, storedPause{pause: v, etag: meta.ETag})
		}
	}
	slices.SortFunc(out, func(a, b storedPause) int { return cmp.Compare(a.pause.ID, b.pause.ID) })
	return out, nil
}

// deleteIf deletes the pause id if its ETag is still etag.
func (p *pauses) deleteIf(ctx context.Context, id string, etag azcore.ETag) error {
	unlock, err := p.turns.Take(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	docID, pk := p.where(id)
	_, err = p.c.DeleteItem(ctx, pk, docID, &azcosmos.ItemOptions{IfMatchEtag: &etag})
	p.cache.drop(id)
	return err
}
