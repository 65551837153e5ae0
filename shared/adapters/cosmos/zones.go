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

// zones stores service areas and no-fly zones like any collection, beside
// a version document in the same container that every write of a zone
// replaces after it, so that the version's ETag changes with every write.
// No transaction spans the two documents (they live in different logical
// partitions), so the order carries the promise of ports.Zones: the zone is
// written first and the version second, and the write returns only when
// both are done. A reader that sees the new version therefore reloads and
// finds the new zone: infra/modules/cosmos.bicep gives the account Strong
// consistency, under which a read returns the latest committed write
// (learn.microsoft.com/azure/cosmos-db/consistency-levels);
// when the version write fails the write reports the failure, and the
// operator's retry, which PUT and DELETE allow, bumps it.
type zones struct {
	*collection[domain.Zone]
}

var _ ports.Zones = (*zones)(nil)

// zoneVersionID names the version document; zone keys always hold a
// colon (domain.ZoneKey), so it is never taken for a zone.
const zoneVersionID = "~version"

func newZones(c *azcosmos.ContainerClient) *zones {
	return &zones{collection: newCollection[domain.Zone](c, topology.ContainerAirspace)}
}

// bump rewrites the version document, which gives it a new ETag.
func (z *zones) bump(ctx context.Context) error {
	_, err := z.c.UpsertItem(ctx, partition(zoneVersionID), []byte(`{"id":"`+zoneVersionID+`"}`), nil)
	if err != nil {
		return z.fail(err, "bump the version of", zoneVersionID)
	}
	return nil
}

// Create implements ports.Collection and bumps the version.
func (z *zones) Create(ctx context.Context, key string, v *domain.Zone) error {
	if err := z.collection.Create(ctx, key, v); err != nil {
		return err
	}
	return z.bump(ctx)
}

// Update implements ports.Collection and bumps the version.
func (z *zones) Update(ctx context.Context, key string, fn func(*domain.Zone) error) (*domain.Zone, error) {
	v, err := z.collection.Update(ctx, key, fn)
	if err != nil {
		return nil, err
	}
	return v, z.bump(ctx)
}

// Upsert implements ports.Collection and bumps the version.
func (z *zones) Upsert(ctx context.Context, key string, fn func(*domain.Zone) (*domain.Zone, error)) (*domain.Zone, error) {
	v, err := z.collection.Upsert(ctx, key, fn)
	if err != nil {
		return nil, err
	}
	return v, z.bump(ctx)
}

// Delete implements ports.Zones.
func (z *zones) Delete(ctx context.Context, key string) error {
	unlock, err := z.turns.Take(ctx, key)
	if err != nil {
		return z.fail(err, "delete", key)
	}
	defer unlock()
	_, err = z.c.DeleteItem(ctx, partition(key), key, nil)
	z.cache.drop(key)
	if err != nil {
		return z.fail(err, "delete", key)
	}
	return z.bump(ctx)
}

// List implements ports.Zones with one cross-partition query that filters
// in Cosmos and sorts here: the container holds an operator's few zones,
// and the gateway cannot merge ORDER BY across physical partitions (see
// fleet.listUnordered).
func (z *zones) List(ctx context.Context, kind domain.ZoneKind, after string, limit int) ([]*domain.Zone, error) {
	if limit <= 0 {
		return nil, nil
	}
	where := "IS_DEFINED(c.kind) AND c.id > @after"
	params := []azcosmos.QueryParameter{{Name: "@after", Value: after}}
	if kind != "" {
		where = "c.kind = @kind AND c.id > @after"
		params = append(params, azcosmos.QueryParameter{Name: "@kind", Value: string(kind)})
	}
	type keyed struct {
		key  string
		zone *domain.Zone
	}
	var all []keyed
	pager := z.c.NewQueryItemsPager("SELECT * FROM c WHERE "+where, azcosmos.NewPartitionKey(), &azcosmos.QueryOptions{
		QueryParameters: params,
		PageSizeHint:    1000,
	})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, z.fail(err, "list", "")
		}
		for _, item := range page.Items {
			var probe struct {
				ID string `json:"id"`
			}
			v := new(domain.Zone)
			if json.Unmarshal(item, &probe) != nil || json.Unmarshal(item, v) != nil {
				return nil, domain.Errorf(domain.EINTERNAL, "decode a zone of %s", z.name)
			}
			all = append(all, keyed{probe.ID, v})
		}
	}
	slices.SortFunc(all, func(a, b keyed) int { return cmp.Compare(a.key, b.key) })
	out := make([]*domain.Zone, 0, min(limit, len(all)))
	for _, k := range all[:min(limit, len(all))] {
		out = append(out, k.zone)
	}
	return out, nil
}

// Version implements ports.Zones: the ETag of the version document, read
// with one point read of a tiny item. That is 1 RU at the weaker
// consistency levels (a point read of a 1 KB item is one request unit,
// learn.microsoft.com/azure/cosmos-db/request-units) and about 2 RU under
// the Strong consistency the account uses, whose reads cost about twice as
// many RUs (learn.microsoft.com/azure/cosmos-db/consistency-levels,
// "Consistency levels and throughput").
func (z *zones) Version(ctx context.Context) (string, error) {
	resp, err := z.c.ReadItem(ctx, partition(zoneVersionID), zoneVersionID, nil)
	if statusOf(err) == http.StatusNotFound {
		return "0", nil
	}
	if err != nil {
		return "", z.fail(err, "read", zoneVersionID)
	}
	return string(resp.ETag), nil
}
