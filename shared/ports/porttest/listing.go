package porttest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/stretchr/testify/require"
)

// Listing checks Deliveries.PageByOwner: pages walk an owner's deliveries
// newest first, each once, and never another owner's; the stage and
// creation-time filters follow every write of a delivery. open may return
// one shared store or a new one per test.
func Listing(t *testing.T, open func(t *testing.T) ports.Store) {
	t.Run("PagesWalkEveryDeliveryOnceNewestFirst", func(t *testing.T) {
		t.Parallel()
		st := open(t)
		owner, other := unique("owner"), unique("owner")
		var want []string
		// Three share a creation time, so the id breaks the tie; the
		// other owner's deliveries are created in between.
		for i := range 13 {
			at := listAt.Add(time.Duration(i/3) * time.Minute)
			id := fmt.Sprintf("%s-%02d", owner, i)
			require.NoError(t, st.Deliveries.Create(ctxFor(t), id, listed(id, owner, at)), "create")
			want = append(want, id)
			oid := fmt.Sprintf("%s-%02d", other, i)
			require.NoError(t, st.Deliveries.Create(ctxFor(t), oid, listed(oid, other, at)), "create another owner's")
		}
		slices.Reverse(want)
		for _, limit := range []int{1, 4, 13, 20} {
			got := walk(t, st.Deliveries, ports.DeliveryFilter{OwnerID: owner, Limit: limit})
			require.Equal(t, want, got, fmt.Sprintf("ids listed %d a page", limit))
		}
		got, pages := walkPages(t, st.Deliveries, ports.DeliveryFilter{OwnerID: owner, Limit: 13})
		require.Equal(t, want, got, "one full page")
		require.Equal(t, 1, pages, "pages of a listing that fits one page exactly")
		none, _ := walkPages(t, st.Deliveries, ports.DeliveryFilter{OwnerID: unique("owner"), Limit: 5})
		require.Equal(t, 0, len(none), "deliveries of an owner with none")
	})

	t.Run("PagesCarryTheDeliveries", func(t *testing.T) {
		t.Parallel()
		st := open(t)
		owner := unique("owner")
		id := owner + "-only"
		want := listed(id, owner, listAt)
		want.Request.PackageInfo.Tag = "fragile"
		require.NoError(t, st.Deliveries.Create(ctxFor(t), id, want), "create")
		page, err := st.Deliveries.PageByOwner(ctxFor(t), ports.DeliveryFilter{OwnerID: owner, Limit: 10})
		require.NoError(t, err, "page")
		require.Equal(t, []*domain.Delivery{want}, page.Deliveries, "the page")
		require.Nil(t, page.Next, "a page holding the only delivery has a next")
	})

	t.Run("CreationTimeRangeIsHalfOpen", func(t *testing.T) {
		t.Parallel()
		st := open(t)
		owner := unique("owner")
		ids := createListed(t, st, owner, 6, func(i int) time.Time {
			// Fractions of a second, whose RFC 3339 text would not sort.
			return listAt.Add(time.Duration(i)*time.Second + time.Duration(i%2)*500*time.Millisecond)
		})
		from := listAt.Add(time.Second + 500*time.Millisecond) // delivery 1 exactly
		to := listAt.Add(4 * time.Second)                      // delivery 4 exactly
		got := walk(t, st.Deliveries, ports.DeliveryFilter{OwnerID: owner, CreatedFrom: from, CreatedTo: to, Limit: 2})
		require.Equal(t, []string{ids[3], ids[2], ids[1]}, got, "from (inclusive) to (exclusive)")
		got = walk(t, st.Deliveries, ports.DeliveryFilter{OwnerID: owner, CreatedFrom: to, Limit: 2})
		require.Equal(t, []string{ids[5], ids[4]}, got, "from only")
		got = walk(t, st.Deliveries, ports.DeliveryFilter{OwnerID: owner, CreatedTo: from, Limit: 2})
		require.Equal(t, []string{ids[0]}, got, "to only")
		got = walk(t, st.Deliveries, ports.DeliveryFilter{OwnerID: owner, CreatedFrom: to, CreatedTo: from, Limit: 2})
		require.Equal(t, 0, len(got), "an empty range")
	})

	t.Run("StageFilterFollowsWrites", func(t *testing.T) {
		t.Parallel()
		st := open(t)
		owner := unique("owner")
		ids := createListed(t, st, owner, 8, func(i int) time.Time { return listAt.Add(time.Duration(i) * time.Second) })
		move := func(id string, s domain.Stage) {
			t.Helper()
			_, err := st.Deliveries.Update(ctxFor(t), id, func(d *domain.Delivery) error {
				d.SetStage(s, listAt.Add(time.Hour), "")
				return nil
			})
			require.NoError(t, err, "move "+id+" to "+string(s))
		}
		for _, i := range []int{1, 4, 6} {
			move(ids[i], domain.StageScheduled)
		}
		stage := func(s domain.Stage) []string {
			t.Helper()
			return walk(t, st.Deliveries, ports.DeliveryFilter{OwnerID: owner, Stage: s, Limit: 2})
		}
		require.Equal(t, []string{ids[6], ids[4], ids[1]}, stage(domain.StageScheduled), "Scheduled")
		require.Equal(t, []string{ids[7], ids[5], ids[3], ids[2], ids[0]}, stage(domain.StageCreated), "Created")

		move(ids[4], domain.StageCancelled)
		require.Equal(t, []string{ids[6], ids[1]}, stage(domain.StageScheduled), "Scheduled after a cancel")
		require.Equal(t, []string{ids[4]}, stage(domain.StageCancelled), "Cancelled")

		// Writes that leave the stage, and updates that skip, change nothing.
		_, err := st.Deliveries.Update(ctxFor(t), ids[6], func(d *domain.Delivery) error { d.ScheduleAttempts++; return nil })
		require.NoError(t, err, "update without a stage change")
		_, err = st.Deliveries.Update(ctxFor(t), ids[1], func(d *domain.Delivery) error {
			d.SetStage(domain.StageFailed, listAt, "")
			return ports.ErrSkip
		})
		require.NoError(t, err, "skipped update")
		require.Equal(t, []string{ids[6], ids[1]}, stage(domain.StageScheduled), "Scheduled after writes that keep the stage")
		require.Equal(t, 0, len(stage(domain.StageFailed)), "Failed after a skipped update")

		// Stage and creation time combine.
		got := walk(t, st.Deliveries, ports.DeliveryFilter{OwnerID: owner, Stage: domain.StageCreated,
			CreatedFrom: listAt.Add(2 * time.Second), CreatedTo: listAt.Add(6 * time.Second), Limit: 1})
		require.Equal(t, []string{ids[5], ids[3], ids[2]}, got, "Created between 2 s and 6 s")
	})

	t.Run("UpsertedDeliveriesAreListed", func(t *testing.T) {
		t.Parallel()
		st := open(t)
		owner := unique("owner")
		id := owner + "-up"
		_, err := st.Deliveries.Upsert(ctxFor(t), id, func(cur *domain.Delivery) (*domain.Delivery, error) {
			return listed(id, owner, listAt), nil
		})
		require.NoError(t, err, "creating upsert")
		require.Equal(t, []string{id}, walk(t, st.Deliveries, ports.DeliveryFilter{OwnerID: owner, Limit: 5}), "after the creating upsert")
		_, err = st.Deliveries.Upsert(ctxFor(t), id, func(cur *domain.Delivery) (*domain.Delivery, error) {
			cur.SetStage(domain.StageFailed, listAt, "")
			return cur, nil
		})
		require.NoError(t, err, "updating upsert")
		require.Equal(t, []string{id}, walk(t, st.Deliveries, ports.DeliveryFilter{OwnerID: owner, Stage: domain.StageFailed, Limit: 5}), "Failed")
		require.Equal(t, 0, len(walk(t, st.Deliveries, ports.DeliveryFilter{OwnerID: owner, Stage: domain.StageCreated, Limit: 5})), "Created")
	})

	t.Run("ConcurrentStageChangesEndWhereTheDeliveryIs", func(t *testing.T) {
		t.Parallel()
		st := open(t)
		owner := unique("owner")
		id := owner + "-busy"
		require.NoError(t, st.Deliveries.Create(ctxFor(t), id, listed(id, owner, listAt)), "create")
		stages := []domain.Stage{domain.StageScheduled, domain.StageRescheduled}
		hammer(t, 4, 5, func() error {
			_, err := st.Deliveries.Update(ctxFor(t), id, func(d *domain.Delivery) error {
				d.SetStage(stages[len(d.History)%2], listAt, "")
				return nil
			})
			return err
		})
		d, err := st.Deliveries.Find(ctxFor(t), id)
		require.NoError(t, err, "find")
		require.Equal(t, 21, len(d.History), "history length after 20 stage changes")
		require.Equal(t, []string{id}, walk(t, st.Deliveries, ports.DeliveryFilter{OwnerID: owner, Stage: d.Stage, Limit: 5}), "listed in its last stage")
		other := stages[0]
		if d.Stage == other {
			other = stages[1]
		}
		require.Equal(t, 0, len(walk(t, st.Deliveries, ports.DeliveryFilter{OwnerID: owner, Stage: other, Limit: 5})), "listed in the stage it left")
	})
}

// listAt is the creation time the listing tests count from.
var listAt = time.Date(2026, 5, 17, 9, 30, 0, 0, time.UTC)

// listed is a new delivery of owner created at at, as ingest stores one.
func listed(id, owner string, at time.Time) *domain.Delivery {
	d := deliveryKind().make(id)
	d.OwnerID, d.Request.OwnerID = owner, owner
	d.CreatedAt, d.UpdatedAt = at, at
	d.History = []domain.Event{{Stage: domain.StageCreated, At: at}}
	return d
}

// walk follows a listing from its first page to its last and returns the
// ids in the order listed.
func walk(t *testing.T, ds ports.Deliveries, f ports.DeliveryFilter) []string {
	t.Helper()
	ids, _ := walkPages(t, ds, f)
	return ids
}

func walkPages(t *testing.T, ds ports.Deliveries, f ports.DeliveryFilter) (ids []string, pages int) {
	t.Helper()
	for {
		page, err := ds.PageByOwner(ctxFor(t), f)
		require.NoError(t, err, "page")
		pages++
		require.LessOrEqual(t, len(page.Deliveries), f.Limit, "deliveries in a page of the limit")
		for _, d := range page.Deliveries {
			require.Equal(t, f.OwnerID, d.OwnerID, "the owner of %s in the listing", d.ID)
			ids = append(ids, d.ID)
		}
		if page.Next == nil {
			if len(ids) == 0 {
				pages = 0
			}
			return ids, pages
		}
		if pages > 1000 {
			t.Fatal("the listing does not end")
		}
		f.After = page.Next
	}
}

// createListed creates n deliveries of owner, owner-0 to owner-<n-1>, the
// i-th created at(i), and returns their ids in that order.
func createListed(t *testing.T, st ports.Store, owner string, n int, at func(i int) time.Time) []string {
	t.Helper()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("%s-%d", owner, i)
		require.NoError(t, st.Deliveries.Create(ctxFor(t), id, listed(id, owner, at(i))), "create")
		ids = append(ids, id)
	}
	return ids
}
