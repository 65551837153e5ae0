package porttest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// kind describes one collection to the generic tests: how to reach it, how
// to make a document, and one counter in the document to change and read.
type kind[T any] struct {
	name  string
	coll  func(ports.Store) ports.Collection[T]
	make  func(id string) *T
	bump  func(*T)
	count func(*T) int
}

// at is a fixed instant in UTC, so documents compare equal after a round
// trip through JSON.
var at = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

// Delivery is a delivery as ingest stores it, with every field a request
// sets, for tests and benchmarks that need a realistic document.
func Delivery(id string) *domain.Delivery {
	alt := 120.0
	eta := at.Add(time.Hour)
	return &domain.Delivery{
		ID: id, TrackingID: "T" + id, OwnerID: "owner-1", CorrelationID: "corr-" + id,
		Request: domain.DeliveryRequest{
			OwnerID:              "owner-1",
			PickupLocation:       domain.Location{Latitude: 47.6, Longitude: -122.3, Altitude: &alt},
			DropoffLocation:      domain.Location{Latitude: 47.7, Longitude: -122.2},
			PickupTime:           at,
			Deadline:             at.Add(2 * time.Hour),
			ConfirmationRequired: domain.ConfirmationNone,
			PackageInfo:          domain.PackageInfo{PackageID: "pkg-" + id, Size: domain.SizeSmall, Weight: 1.5},
		},
		RequestHash: "hash",
		Stage:       domain.StageCreated,
		PickupETA:   &eta,
		CreatedAt:   at,
		UpdatedAt:   at,
	}
}

func deliveryKind() kind[domain.Delivery] {
	return kind[domain.Delivery]{
		name:  "Deliveries",
		coll:  func(s ports.Store) ports.Collection[domain.Delivery] { return s.Deliveries },
		make:  Delivery,
		bump:  func(d *domain.Delivery) { d.ScheduleAttempts++ },
		count: func(d *domain.Delivery) int { return d.ScheduleAttempts },
	}
}

func packageKind() kind[domain.Package] {
	return kind[domain.Package]{
		name: "Packages",
		coll: func(s ports.Store) ports.Collection[domain.Package] { return s.Packages },
		make: func(id string) *domain.Package {
			return &domain.Package{ID: id, OwnerID: "owner-1", DeliveryID: "del-" + id, Size: domain.SizeMedium,
				Weight: 0, Tag: "fragile", CreatedAt: at, UpdatedAt: at}
		},
		bump:  func(p *domain.Package) { p.Weight++ },
		count: func(p *domain.Package) int { return int(p.Weight) },
	}
}

func droneKind() kind[domain.Drone] {
	return kind[domain.Drone]{
		name: "Fleet",
		coll: func(s ports.Store) ports.Collection[domain.Drone] { return s.Fleet },
		make: func(id string) *domain.Drone {
			// Far from anywhere the Fleet suite searches, and not
			// dispatchable, so these never disturb its answers.
			return &domain.Drone{ID: id, Location: domain.Location{Latitude: -89, Longitude: 0},
				HomeBase: domain.Location{Latitude: -89, Longitude: 0}, MaxPayloadKg: 5, MaxPackageSize: domain.SizeMedium,
				RangeKm: 0, CruiseSpeedMps: 20, BatteryPercent: 80, Status: domain.DroneMaintenance, UpdatedAt: at}
		},
		bump:  func(d *domain.Drone) { d.RangeKm++ },
		count: func(d *domain.Drone) int { return int(d.RangeKm) },
	}
}

func accountKind() kind[domain.Account] {
	return kind[domain.Account]{
		name: "Accounts",
		coll: func(s ports.Store) ports.Collection[domain.Account] { return s.Accounts },
		make: func(id string) *domain.Account {
			revoked := at.Add(time.Hour)
			return &domain.Account{ID: id, Name: "Contoso ✈", ContactEmail: "ops@contoso.example", WebhookURL: "https://contoso.example/hook",
				WebhookSecret: "whsec_x", CreatedAt: at, Keys: []domain.KeyInfo{
					{Prefix: "aaaaaaaaaaaaaaaa", CreatedAt: at, RevokedAt: &revoked}, {Prefix: "bbbbbbbbbbbbbbbb", CreatedAt: at}}}
		},
		bump: func(a *domain.Account) {
			a.Keys = append(a.Keys, domain.KeyInfo{Prefix: "cccccccccccccccc", CreatedAt: at})
		},
		count: func(a *domain.Account) int { return len(a.Keys) - 2 },
	}
}

// apiKeyKind stores key documents, which carry no id field of their own:
// the adapter must keep them under the prefix it is given.
func apiKeyKind() kind[domain.APIKey] {
	return kind[domain.APIKey]{
		name: "APIKeys",
		coll: func(s ports.Store) ports.Collection[domain.APIKey] { return s.APIKeys },
		make: func(id string) *domain.APIKey {
			return &domain.APIKey{Prefix: id, AccountID: "acct-" + id, Hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", CreatedAt: at}
		},
		bump: func(k *domain.APIKey) {
			t := at
			if k.RevokedAt != nil {
				t = k.RevokedAt.Add(time.Second)
			}
			k.RevokedAt = &t
		},
		count: func(k *domain.APIKey) int {
			if k.RevokedAt == nil {
				return 0
			}
			return int(k.RevokedAt.Sub(at)/time.Second) + 1
		},
	}
}

// confirmationKind stores blobs, whose data travels as base64 in JSON.
func confirmationKind() kind[domain.ConfirmationBlob] {
	return kind[domain.ConfirmationBlob]{
		name: "Confirmations",
		coll: func(s ports.Store) ports.Collection[domain.ConfirmationBlob] { return s.Confirmations },
		make: func(id string) *domain.ConfirmationBlob {
			return &domain.ConfirmationBlob{ID: id, DeliveryID: "del-" + id, OwnerID: "owner-1", ContentType: "image/png",
				Data: []byte("\x89PNG\r\n\x1a\n\x00\xff"), CreatedAt: at}
		},
		bump:  func(b *domain.ConfirmationBlob) { b.Data = append(b.Data, 0) },
		count: func(b *domain.ConfirmationBlob) int { return len(b.Data) - 10 },
	}
}

// zoneKind stores no-fly zones; their version token is checked by Zones.
func zoneKind() kind[domain.Zone] {
	return kind[domain.Zone]{
		name: "Zones",
		coll: func(s ports.Store) ports.Collection[domain.Zone] { return s.Zones },
		make: func(id string) *domain.Zone {
			return &domain.Zone{ID: id, Kind: domain.NoFlyZone, Name: "Stadium", GeometryType: "Polygon",
				Polygons:  []domain.Polygon{{{{-122.35, 47.60}, {-122.33, 47.60}, {-122.33, 47.62}, {-122.35, 47.60}}}},
				ValidFrom: at, UpdatedAt: at}
		},
		bump:  func(z *domain.Zone) { z.Polygons = append(z.Polygons, z.Polygons[0]) },
		count: func(z *domain.Zone) int { return len(z.Polygons) - 1 },
	}
}

// Collections checks the document semantics of every collection of a store:
// create, find, optimistic update with its skip and error paths, upsert,
// and that concurrent updates lose nothing. open may return one shared
// store or a new one per test.
func Collections(t *testing.T, open func(t *testing.T) ports.Store) {
	t.Run("Deliveries", func(t *testing.T) { collectionTests(t, open, deliveryKind()) })
	t.Run("Packages", func(t *testing.T) { collectionTests(t, open, packageKind()) })
	t.Run("Fleet", func(t *testing.T) { collectionTests(t, open, droneKind()) })
	t.Run("Accounts", func(t *testing.T) { collectionTests(t, open, accountKind()) })
	t.Run("APIKeys", func(t *testing.T) { collectionTests(t, open, apiKeyKind()) })
	t.Run("APIKeys/Delete", func(t *testing.T) { deleteTests(t, open(t).APIKeys, apiKeyKind()) })
	t.Run("Confirmations/Delete", func(t *testing.T) { deleteTests(t, open(t).Confirmations, confirmationKind()) })
	t.Run("Confirmations", func(t *testing.T) { collectionTests(t, open, confirmationKind()) })
	t.Run("Zones", func(t *testing.T) { collectionTests(t, open, zoneKind()) })
}

// deletable is a collection the port lets delete from.
type deletable[T any] interface {
	ports.Collection[T]
	Delete(ctx context.Context, id string) error
}

// deleteTests checks a collection's delete: the document is gone, a second
// delete is ENOTFOUND, and the id may be stored again.
func deleteTests[T any](t *testing.T, c deletable[T], k kind[T]) {
	t.Parallel()
	ctx := ctxFor(t)
	id := unique("doc")
	require.NoError(t, c.Create(ctx, id, k.make(id)))
	require.NoError(t, c.Delete(ctx, id))
	_, err := c.Find(ctx, id)
	require.Equal(t, domain.ENOTFOUND, domain.ErrorCode(err), "deleted: %v", err)
	require.Equal(t, domain.ENOTFOUND, domain.ErrorCode(c.Delete(ctx, id)), "deleted again")
	require.NoError(t, c.Create(ctx, id, k.make(id)), "the id may be stored again")
}

func collectionTests[T any](t *testing.T, open func(t *testing.T) ports.Store, k kind[T]) {
	t.Parallel()
	setup := func(t *testing.T) ports.Collection[T] {
		t.Parallel()
		return k.coll(open(t))
	}
	// created stores a new document and returns its id and content.
	created := func(t *testing.T, c ports.Collection[T]) (string, *T) {
		t.Helper()
		id := unique("doc")
		doc := k.make(id)
		require.NoError(t, c.Create(ctxFor(t), id, doc), "create")
		return id, k.make(id)
	}

	t.Run("CreateThenFind", func(t *testing.T) {
		c := setup(t)
		id, want := created(t, c)
		got, err := c.Find(ctxFor(t), id)
		require.NoError(t, err, "find")
		require.Equal(t, want, got, "found document")
	})

	t.Run("FindReturnsACopy", func(t *testing.T) {
		c := setup(t)
		id, want := created(t, c)
		got, err := c.Find(ctxFor(t), id)
		require.NoError(t, err, "find")
		k.bump(got)
		again, err := c.Find(ctxFor(t), id)
		require.NoError(t, err, "find again")
		require.Equal(t, want, again, "document after changing a found copy")
	})

	t.Run("FindMissing", func(t *testing.T) {
		c := setup(t)
		_, err := c.Find(ctxFor(t), unique("missing"))
		mustCode(t, err, domain.ENOTFOUND, "find of a missing id")
	})

	t.Run("CreateExisting", func(t *testing.T) {
		c := setup(t)
		id, want := created(t, c)
		other := k.make(id)
		k.bump(other)
		mustCode(t, c.Create(ctxFor(t), id, other), domain.ECONFLICT, "second create")
		got, err := c.Find(ctxFor(t), id)
		require.NoError(t, err, "find")
		require.Equal(t, want, got, "document after a refused create")
	})

	t.Run("UpdateAppliesAndPersists", func(t *testing.T) {
		c := setup(t)
		id, _ := created(t, c)
		for i := 1; i <= 2; i++ {
			got, err := c.Update(ctxFor(t), id, func(v *T) error { k.bump(v); return nil })
			require.NoError(t, err, "update")
			require.Equal(t, i, k.count(got), "the count update %d returned", i)
			found, err := c.Find(ctxFor(t), id)
			require.NoError(t, err, "find")
			require.Equal(t, got, found, "stored document after update")
		}
	})

	t.Run("UpdateMissing", func(t *testing.T) {
		c := setup(t)
		called := false
		_, err := c.Update(ctxFor(t), unique("missing"), func(*T) error { called = true; return nil })
		mustCode(t, err, domain.ENOTFOUND, "update of a missing id")
		require.False(t, called, "the update function ran for a missing document")
		_, err = c.Find(ctxFor(t), unique("missing"))
		mustCode(t, err, domain.ENOTFOUND, "find after update of a missing id")
	})

	t.Run("UpdateSkipWritesNothing", func(t *testing.T) {
		c := setup(t)
		id, want := created(t, c)
		got, err := c.Update(ctxFor(t), id, func(v *T) error {
			k.bump(v) // a change the skip must discard
			return ports.ErrSkip
		})
		require.NoError(t, err, "skipped update")
		require.Equal(t, want, got, "document returned by a skipped update")
		found, err := c.Find(ctxFor(t), id)
		require.NoError(t, err, "find")
		require.Equal(t, want, found, "stored document after a skipped update")
		// A write after the skip must not trip over it.
		got, err = c.Update(ctxFor(t), id, func(v *T) error { k.bump(v); return nil })
		require.NoError(t, err, "update after skip")
		require.Equal(t, 1, k.count(got), "count after skip and update")
	})

	t.Run("UpdateErrorAborts", func(t *testing.T) {
		c := setup(t)
		id, want := created(t, c)
		_, err := c.Update(ctxFor(t), id, func(v *T) error { k.bump(v); return errSentinel })
		require.Equal(t, errSentinel, err, "update returns the function's own error")
		found, err := c.Find(ctxFor(t), id)
		require.NoError(t, err, "find")
		require.Equal(t, want, found, "stored document after a failed update")
	})

	t.Run("UpsertCreatesThenUpdates", func(t *testing.T) {
		c := setup(t)
		id := unique("doc")
		want := k.make(id)
		got, err := c.Upsert(ctxFor(t), id, func(cur *T) (*T, error) {
			if cur != nil {
				return nil, fmt.Errorf("got %s for a missing document", show(cur))
			}
			return k.make(id), nil
		})
		require.NoError(t, err, "upsert of a missing document")
		require.Equal(t, want, got, "document returned by the creating upsert")
		found, err := c.Find(ctxFor(t), id)
		require.NoError(t, err, "find")
		require.Equal(t, want, found, "stored document after the creating upsert")

		got, err = c.Upsert(ctxFor(t), id, func(cur *T) (*T, error) {
			if cur == nil {
				return nil, errors.New("got nil for an existing document")
			}
			if k.count(cur) != 0 {
				return nil, fmt.Errorf("got %s, not the stored document", show(cur))
			}
			k.bump(cur)
			return cur, nil
		})
		require.NoError(t, err, "upsert of an existing document")
		require.Equal(t, 1, k.count(got), "count after the updating upsert")
		found, err = c.Find(ctxFor(t), id)
		require.NoError(t, err, "find")
		require.Equal(t, got, found, "stored document after the updating upsert")
	})

	t.Run("UpsertSkipAndError", func(t *testing.T) {
		c := setup(t)
		missing := unique("missing")
		got, err := c.Upsert(ctxFor(t), missing, func(*T) (*T, error) { return nil, ports.ErrSkip })
		require.NoError(t, err, "skipped upsert of a missing document")
		require.Nil(t, got, "skipped upsert of a missing document")
		_, err = c.Find(ctxFor(t), missing)
		mustCode(t, err, domain.ENOTFOUND, "find after a skipped upsert")

		id, want := created(t, c)
		got, err = c.Upsert(ctxFor(t), id, func(cur *T) (*T, error) { k.bump(cur); return nil, ports.ErrSkip })
		require.NoError(t, err, "skipped upsert of an existing document")
		require.Equal(t, want, got, "document returned by a skipped upsert")
		_, err = c.Upsert(ctxFor(t), id, func(cur *T) (*T, error) { k.bump(cur); return cur, errSentinel })
		require.Equal(t, errSentinel, err, "upsert returns the function's own error")
		found, err := c.Find(ctxFor(t), id)
		require.NoError(t, err, "find")
		require.Equal(t, want, found, "stored document after a skipped and a failed upsert")
	})

	t.Run("ConcurrentUpdatesLoseNothing", func(t *testing.T) {
		c := setup(t)
		id, _ := created(t, c)
		ctx := ctxFor(t)
		const workers, each = 8, 25
		hammer(t, workers, each, func() error {
			_, err := c.Update(ctx, id, func(v *T) error { k.bump(v); return nil })
			return err
		})
		got, err := c.Find(ctxFor(t), id)
		require.NoError(t, err, "find")
		require.Equal(t, workers*each, k.count(got), "count after concurrent updates")
	})

	t.Run("ConcurrentUpsertsCreateOnce", func(t *testing.T) {
		c := setup(t)
		id := unique("doc")
		ctx := ctxFor(t)
		const workers = 8
		hammer(t, workers, 1, func() error {
			_, err := c.Upsert(ctx, id, func(cur *T) (*T, error) {
				if cur == nil {
					cur = k.make(id)
				}
				k.bump(cur)
				return cur, nil
			})
			return err
		})
		got, err := c.Find(ctxFor(t), id)
		require.NoError(t, err, "find")
		require.Equal(t, workers, k.count(got), "count after concurrent upserts")
	})
}

// hammer runs op each times in each of workers goroutines at once.
func hammer(t *testing.T, workers, each int, op func() error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	start := make(chan struct{})
	for range workers {
		wg.Go(func() {
			<-start
			for range each {
				if err := op(); err != nil {
					errs <- err
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err, "concurrent operation")
	}
	if t.Failed() {
		t.FailNow()
	}
}
