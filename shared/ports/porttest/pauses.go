package porttest

import (
	"strings"
	"testing"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/stretchr/testify/require"
)

// Pauses checks what the pause store adds to a collection: delete and the
// listing of every pause in id order, with the fields a pause round-trips.
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
}
