package porttest

import (
	"strings"
	"testing"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/stretchr/testify/require"
)

// Zones checks what the zone store adds to a collection: delete, the
// listing by kind in key order, and a version token that changes with
// every write. open may return one shared store or a new one per test.
func Zones(t *testing.T, open func(t *testing.T) ports.Store) {
	zone := func(kind domain.ZoneKind, id string) *domain.Zone {
		z := zoneKind().make(id)
		z.Kind = kind
		return z
	}
	// mine lists the zones of kind whose ids start with prefix.
	mine := func(t *testing.T, zs ports.Zones, kind domain.ZoneKind, prefix, after string, limit int) []string {
		t.Helper()
		if after == "" {
			after = domain.ZoneKey(kind, prefix)
		}
		got, err := zs.List(ctxFor(t), kind, after, limit)
		require.NoError(t, err, "list")
		var ids []string
		for _, z := range got {
			require.Equal(t, kind, z.Kind, "the kind of a zone in the listing")
			if strings.HasPrefix(z.ID, prefix) {
				ids = append(ids, z.ID)
			}
		}
		return ids
	}

	t.Run("DeleteAndList", func(t *testing.T) {
		t.Parallel()
		zs := open(t).Zones
		ctx := ctxFor(t)
		prefix := unique("zone")
		for _, id := range []string{"c", "a", "b"} {
			require.NoError(t, zs.Create(ctx, domain.ZoneKey(domain.NoFlyZone, prefix+id), zone(domain.NoFlyZone, prefix+id)), "create no-fly zone")
		}
		require.NoError(t, zs.Create(ctx, domain.ZoneKey(domain.ServiceArea, prefix+"a"), zone(domain.ServiceArea, prefix+"a")), "create service area")

		require.Equal(t, []string{prefix + "a", prefix + "b", prefix + "c"}, mine(t, zs, domain.NoFlyZone, prefix, "", 100), "no-fly zones in key order")
		require.Equal(t, []string{prefix + "a"}, mine(t, zs, domain.ServiceArea, prefix, "", 100), "service areas")
		require.Equal(t, []string{prefix + "b", prefix + "c"}, mine(t, zs, domain.NoFlyZone, prefix, domain.ZoneKey(domain.NoFlyZone, prefix+"a"), 100), "after a cursor")
		require.Equal(t, []string{prefix + "a", prefix + "b"}, mine(t, zs, domain.NoFlyZone, prefix, "", 2), "limited")

		require.NoError(t, zs.Delete(ctx, domain.ZoneKey(domain.NoFlyZone, prefix+"b")), "delete")
		_, err := zs.Find(ctx, domain.ZoneKey(domain.NoFlyZone, prefix+"b"))
		mustCode(t, err, domain.ENOTFOUND, "find a deleted zone")
		mustCode(t, zs.Delete(ctx, domain.ZoneKey(domain.NoFlyZone, prefix+"b")), domain.ENOTFOUND, "delete again")
		require.Equal(t, []string{prefix + "a", prefix + "c"}, mine(t, zs, domain.NoFlyZone, prefix, "", 100), "after the delete")
		_, err = zs.Find(ctx, domain.ZoneKey(domain.ServiceArea, prefix+"a"))
		require.NoError(t, err, "the service area of the same id is another document")
	})

	t.Run("VersionChangesWithEveryWrite", func(t *testing.T) {
		t.Parallel()
		zs := open(t).Zones
		ctx := ctxFor(t)
		key := domain.ZoneKey(domain.NoFlyZone, unique("zone"))
		seen := map[string]string{}
		step := func(what string, write func() error) {
			t.Helper()
			before, err := zs.Version(ctx)
			require.NoError(t, err, "version")
			require.NoError(t, write(), what)
			after, err := zs.Version(ctx)
			require.NoError(t, err, "version")
			require.NotEqual(t, before, after, "the version stayed the same across %s", what)
			if prev, ok := seen[after]; ok {
				t.Fatalf("%s returned the version %q again, first seen after %s", what, after, prev)
			}
			seen[after] = what
		}
		step("create", func() error { return zs.Create(ctx, key, zone(domain.NoFlyZone, key)) })
		step("update", func() error {
			_, err := zs.Update(ctx, key, func(z *domain.Zone) error { z.Name = "renamed"; return nil })
			return err
		})
		step("upsert", func() error {
			_, err := zs.Upsert(ctx, key, func(*domain.Zone) (*domain.Zone, error) { return zone(domain.NoFlyZone, key), nil })
			return err
		})
		step("delete", func() error { return zs.Delete(ctx, key) })
	})
}
