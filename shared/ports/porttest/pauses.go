package porttest

import (
	"strings"
	"testing"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/stretchr/testify/require"
)

// Pauses checks what the pause store adds to a collection: delete, the
// listing of every pause in id order, with the fields a pause round-trips,
// and the removal of the expired ones.
// open may return one shared store or a new one per test.
func Pauses(t *testing.T, open func(t *testing.T) ports.Store) {
	t.Run("DeleteAndList", func(t *testing.T) {
		t.Parallel()
		ps := open(t).Pauses
		ctx := ctxFor(t)
		prefix := unique("pause")
		mine := func() []*domain.Pause {
			t.Helper()
			all, err := ps.List(ctx)
			require.NoError(t, err, "list")
			var out []*domain.Pause
			for _, p := range all {
				if strings.HasPrefix(p.ID, prefix) {
					out = append(out, p)
				}
			}
			return out
		}
		for _, id := range []string{"c", "a", "b"} {
			p := &domain.Pause{ID: prefix + id, AreaID: "area-" + id, Reason: "storm " + id, Until: at.Add(3600e9), CreatedAt: at, UpdatedAt: at}
			require.NoError(t, ps.Create(ctx, p.ID, p), "create")
		}
		got := mine()
		ids := make([]string, len(got))
		for i, p := range got {
			ids[i] = p.ID
		}
		require.Equal(t, []string{prefix + "a", prefix + "b", prefix + "c"}, ids, "pauses in id order")
		require.Equal(t, domain.Pause{ID: prefix + "a", AreaID: "area-a", Reason: "storm a", Until: at.Add(3600e9), CreatedAt: at, UpdatedAt: at}, *got[0], "a pause round-trips")

		require.NoError(t, ps.Delete(ctx, prefix+"b"), "delete")
		_, err := ps.Find(ctx, prefix+"b")
		mustCode(t, err, domain.ENOTFOUND, "find a deleted pause")
		mustCode(t, ps.Delete(ctx, prefix+"b"), domain.ENOTFOUND, "delete again")
		require.Equal(t, 2, len(mine()), "after the delete")
	})
	t.Run("DeleteExpired", func(t *testing.T) {
		t.Parallel()
		ps := open(t).Pauses
		ctx := ctxFor(t)
		prefix := unique("expire")
		put := func(id string, until time.Time) {
			t.Helper()
			p := &domain.Pause{ID: prefix + id, Reason: "storm " + id, Until: until, CreatedAt: at.Add(-2 * time.Hour), UpdatedAt: at.Add(-2 * time.Hour)}
			require.NoError(t, ps.Create(ctx, p.ID, p), "create %s", id)
		}
		put("ended", at.Add(-time.Hour))
		put("ends-now", at)
		put("later", at.Add(30*time.Minute))
		put("forever", time.Time{})
		// The other tests' pauses end an hour after at: before then, only
		// this test's expired pauses are removed.
		n, err := ps.DeleteExpired(ctx, at)
		require.NoError(t, err, "delete expired")
		require.GreaterOrEqual(t, n, 2, "this test's two expired pauses at least")
		left := func() []string {
			t.Helper()
			all, err := ps.List(ctx)
			require.NoError(t, err, "list")
			var out []string
			for _, p := range all {
				if strings.HasPrefix(p.ID, prefix) {
					out = append(out, strings.TrimPrefix(p.ID, prefix))
				}
			}
			return out
		}
		require.Equal(t, []string{"forever", "later"}, left(), "the pauses still in force")
		_, err = ps.Find(ctx, prefix+"ended")
		mustCode(t, err, domain.ENOTFOUND, "find an expired pause")

		// Later, the one with an end expires too; the one without never does.
		_, err = ps.DeleteExpired(ctx, at.Add(30*time.Minute))
		require.NoError(t, err, "delete expired later")
		require.Equal(t, []string{"forever"}, left(), "a pause without an end never expires")
	})
}
