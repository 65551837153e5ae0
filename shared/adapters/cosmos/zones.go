package cosmos

import (
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

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
// both are done. A reader that sees the new version (its own write at once,
// another process's through the change feed, see Version) therefore
// reloads and finds the new zone: infra/modules/cosmos.bicep gives the account Strong
// consistency, under which a read returns the latest committed write
// (learn.microsoft.com/azure/cosmos-db/consistency-levels);
// when the version write fails the write reports the failure, and the
// operator's retry, which PUT and DELETE allow, bumps it.
type zones struct {
	*collection[domain.Zone]
	log  *slog.Logger
	poll time.Duration

	mu    sync.Mutex
	gen   uint64    // the version while the feed is followed (see Version)
	fedAt time.Time // when the last successful read of the feed began

	start  sync.Once
	bg     context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when follow has returned (or never will run)
}

var _ ports.Zones = (*zones)(nil)

// zoneVersionID names the version document; zone keys always hold a
// colon (domain.ZoneKey), so it is never taken for a zone.
const zoneVersionID = "~version"

func newZones(c *azcosmos.ContainerClient, log *slog.Logger, poll time.Duration) *zones {
	bg, cancel := context.WithCancel(context.Background())
	return &zones{collection: newCollection[domain.Zone](c, topology.ContainerAirspace), log: log, poll: poll,
		bg: bg, cancel: cancel, done: make(chan struct{})}
}

// bump rewrites the version document, which gives it a new ETag, and
// tells this process's Version at once.
func (z *zones) bump(ctx context.Context) error {
	z.changed()
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
	if err := z.delete(ctx, key); err != nil {
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

// Version implements ports.Zones. While the airspace container's change
// feed is followed and its last read is recent, the version is a counter
// this process keeps: bumped by its own writes of a zone at once, and by
// every page of the feed that brings a change, so a write through another
// process shows here within FeedPoll, at no request per call. The feed is
// followed from the first call on (read from the beginning once: the
// container holds an operator's few zones and the version document) and
// polled like the drone index's (see fleet): a quiet read is one small
// request per physical partition. Deletes do not appear in the feed
// (learn.microsoft.com/azure/cosmos-db/change-feed), but every delete of a
// zone rewrites the version document, which does. Until the feed's first
// read has succeeded, or when its reads have failed for longer than
// staleFeed, the version is read as before: the ETag of the version
// document, one point read of a tiny item, 1 RU at the weaker consistency
// levels (a point read of a 1 KB item is one request unit,
// learn.microsoft.com/azure/cosmos-db/request-units) and about 2 RU under
// the Strong consistency the account uses
// (learn.microsoft.com/azure/cosmos-db/consistency-levels, "Consistency
// levels and throughput").
func (z *zones) Version(ctx context.Context) (string, error) {
	z.start.Do(func() { go z.follow(z.bg) })
	z.mu.Lock()
	fresh, gen := !z.fedAt.IsZero() && time.Since(z.fedAt) < z.staleAfter(), z.gen
	z.mu.Unlock()
	if fresh {
		return "feed:" + strconv.FormatUint(gen, 10), nil
	}
	resp, err := z.c.ReadItem(ctx, partition(zoneVersionID), zoneVersionID, nil)
	if statusOf(err) == http.StatusNotFound {
		return "0", nil
	}
	if err != nil {
		return "", z.fail(err, "read", zoneVersionID)
	}
	return string(resp.ETag), nil
}

// staleAfter is how long after the feed's last successful read Version
// stops trusting it and reads the version document again.
func (z *zones) staleAfter() time.Duration { return max(staleFeed, 5*z.poll) }

// staleFeed is the least of staleAfter.
const staleFeed = 5 * time.Second

// changed bumps the counter Version returns while the feed is followed.
func (z *zones) changed() {
	z.mu.Lock()
	z.gen++
	z.mu.Unlock()
}

// follow reads the airspace container's change feed until ctx ends:
// FeedPoll after a read that reached the end, backing off after a failure.
func (z *zones) follow(ctx context.Context) {
	defer close(z.done)
	followFeed(ctx, z.poll, z.drain, func(err error, retryIn time.Duration) {
		if err != nil {
			z.log.WarnContext(ctx, "cosmos: reading the airspace's change feed failed; reading its version document meanwhile",
				"err", brief(err), "retryIn", retryIn.String())
		}
	})
}

// drain reads the feed from *token (the beginning when empty) until a read
// finds nothing; a page with changes bumps the version.
func (z *zones) drain(ctx context.Context, token *string) error {
	began := time.Now()
	err := drainFeed(ctx, z.c, z.name, token, func(items [][]byte) {
		if len(items) > 0 {
			z.changed()
		}
	})
	if err != nil {
		return err
	}
	z.mu.Lock()
	// The start of this drain, not its end: a change made while it ran may
	// be in no page it read.
	z.fedAt = began
	z.mu.Unlock()
	return nil
}

// close stops following the feed and waits for it.
func (z *zones) close() {
	z.cancel()
	z.start.Do(func() { close(z.done) }) // never started: nothing to wait for
	<-z.done
}
