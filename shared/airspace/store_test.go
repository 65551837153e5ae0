package airspace_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/airspace"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

func openDB(t testing.TB, path string) *embedded.DB {
	t.Helper()
	db, err := embedded.Open(path, embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// TestStoreSeesEveryWrite: a zone put or deleted through one handle of
// the file shows in the next Current of a Store over another handle, as
// it would in another process, with no restart.
func TestStoreSeesEveryWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "airspace.db")
	writer, reader := openDB(t, path).Store().Zones, openDB(t, path).Store().Zones
	st := airspace.NewStore(reader)

	a, err := st.Current(ctx)
	require.NoError(t, err)
	assert.Equal(t, domain.OpenAirspace{}, a, "no zones: the open airspace")

	zone := nfz("stadium", box(seattle, 0.3, 0.3))
	require.NoError(t, writer.Create(ctx, zone.Key(), zone))
	a, err = st.Current(ctx)
	require.NoError(t, err)
	assert.Error(t, a.Admit("pickupLocation", seattle, now), "the new zone is in force")
	again, err := st.Current(ctx)
	require.NoError(t, err)
	assert.Same(t, a, again, "nothing changed: the same snapshot")

	_, err = writer.Update(ctx, zone.Key(), func(z *domain.Zone) error {
		z.Polygons = []domain.Polygon{{box(offset(seattle, 5, 5), 0.3, 0.3)}}
		return nil
	})
	require.NoError(t, err)
	a, err = st.Current(ctx)
	require.NoError(t, err)
	assert.NoError(t, a.Admit("pickupLocation", seattle, now), "the zone moved away")
	assert.Error(t, a.Admit("pickupLocation", offset(seattle, 5, 5), now))

	require.NoError(t, writer.Delete(ctx, zone.Key()))
	a, err = st.Current(ctx)
	require.NoError(t, err)
	assert.NoError(t, a.Admit("pickupLocation", offset(seattle, 5, 5), now), "the zone is gone")
}

func TestForAStoreWithoutZones(t *testing.T) {
	t.Parallel()
	a, err := airspace.For(ports.Store{}).Current(context.Background())
	require.NoError(t, err)
	assert.Equal(t, domain.OpenAirspace{}, a)
}
