package porttest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/stretchr/testify/require"
)

// Analytics checks that the writes of deliveries keep Store.Analytics: a
// delivery counts once when accepted and once when it ends, however often
// the write is replayed; the maintained figures equal the derived ones;
// Reaggregate rebuilds them and leaves later transitions counted once.
// open must return a store of its own per call (the fleet's bucket is
// checked).
func Analytics(t *testing.T, open func(t *testing.T) ports.Store) {
	month := time.Date(2031, 3, 1, 0, 0, 0, 0, time.UTC)
	at := month.Add(4*24*time.Hour + 9*time.Hour) // the 5th
	// begin starts a case on a store of its own, with an owner new to it
	// and that owner's account bucket.
	begin := func(t *testing.T) (st ports.Store, ctx context.Context, owner, acct string) {
		t.Parallel()
		owner = unique("owner")
		return open(t), ctxFor(t), owner, domain.BucketKey(domain.ScopeAccount, owner)
	}
	// read reads the month's figures of bucket from st.
	read := func(t *testing.T, st ports.Store, bucket string) *domain.MonthFigures {
		t.Helper()
		m, err := st.Analytics.Month(ctxFor(t), bucket, month)
		require.NoError(t, err, "read "+bucket)
		return m
	}

	t.Run("EachTransitionCountsOnce", func(t *testing.T) {
		st, ctx, owner, acct := begin(t)
		empty := read(t, st, acct)
		require.Equal(t, 31, len(empty.Days), "days of March")
		require.Equal(t, domain.Figures{}, empty.Total, "figures of a bucket nothing counted in")

		done, cancelled := owner+"-done", owner+"-cancelled"
		for _, id := range []string{done, cancelled} {
			d := listed(id, owner, at)
			d.AreaID = "harbour"
			d.Request.Deadline = at.Add(time.Hour)
			require.NoError(t, st.Deliveries.Create(ctx, id, d), "create")
		}
		require.Equal(t, domain.Figures{Count: 2}, read(t, st, acct).Total, "two accepted")

		assigned := at.Add(time.Minute)
		finish := func(d *domain.Delivery) error {
			if d.Stage.Terminal() {
				return ports.ErrSkip
			}
			end := at.Add(31 * time.Minute)
			d.DroneAssignedAt, d.CompletedAt, d.TraveledKm = &assigned, &end, 2.5
			d.SetStage(domain.StageCompleted, end, "")
			return nil
		}
		for range 3 { // the step, then two replays of it
			_, err := st.Deliveries.Update(ctx, done, finish)
			require.NoError(t, err, "complete")
		}
		// A write in the terminal stage that changes something else.
		_, err := st.Deliveries.Update(ctx, done, func(d *domain.Delivery) error { d.UpdatedAt = d.UpdatedAt.Add(time.Second); return nil })
		require.NoError(t, err, "touch the completed delivery")
		_, err = st.Deliveries.Update(ctx, cancelled, func(d *domain.Delivery) error {
			_, err := d.Cancel(at.Add(2 * time.Minute))
			return err
		})
		require.NoError(t, err, "cancel")
		_, err = st.Deliveries.Update(ctx, cancelled, func(d *domain.Delivery) error {
			_, err := d.Cancel(at.Add(3 * time.Minute))
			if errors.Is(err, domain.ErrNoChange) {
				return ports.ErrSkip
			}
			return err
		})
		require.NoError(t, err, "cancel again")

		want := domain.Figures{Count: 2, Completed: 1, Cancelled: 1, OnTime: 1, DurationMs: (31 * time.Minute).Milliseconds(),
			TraveledM: 2500, AssignedMs: (30 * time.Minute).Milliseconds()}
		for _, b := range []string{acct, domain.BucketKey(domain.ScopeArea, "harbour"), domain.ScopeFleet} {
			m := read(t, st, b)
			require.Equal(t, want, m.Total, b+" total")
			require.Equal(t, want, m.Days[4], b+" on the 5th")
		}

		derived, err := st.Analytics.Derive(ctx, month)
		require.NoError(t, err, "derive")
		for b, m := range derived {
			require.Equal(t, m.Days, read(t, st, b).Days, "maintained and derived "+b)
		}
		require.Equal(t, 3, len(derived), "buckets derived")
	})

	t.Run("ReaggregateRepairsAndLaterTransitionsCountOnce", func(t *testing.T) {
		st, ctx, owner, acct := begin(t)
		running, ended := owner+"-running", owner+"-ended"
		for _, id := range []string{running, ended} {
			require.NoError(t, st.Deliveries.Create(ctx, id, listed(id, owner, at)), "create")
		}
		_, err := st.Deliveries.Update(ctx, ended, func(d *domain.Delivery) error {
			_, err := d.Fail("no drone", at.Add(time.Minute))
			return err
		})
		require.NoError(t, err, "fail")
		rebuilt, err := st.Analytics.Reaggregate(ctx, month)
		require.NoError(t, err, "reaggregate")
		want := domain.Figures{Count: 2, Failed: 1}
		require.Equal(t, want, rebuilt[acct].Total, "rebuilt")
		again, err := st.Analytics.Reaggregate(ctx, month)
		require.NoError(t, err, "reaggregate again")
		require.Equal(t, want, again[acct].Total, "rebuilt twice")
		require.Equal(t, want, read(t, st, acct).Total, "after the rebuild")

		_, err = st.Deliveries.Update(ctx, running, func(d *domain.Delivery) error {
			_, err := d.Cancel(at.Add(2 * time.Minute))
			return err
		})
		require.NoError(t, err, "cancel")
		require.Equal(t, domain.Figures{Count: 2, Failed: 1, Cancelled: 1}, read(t, st, acct).Total, "a transition after the rebuild")
		require.Equal(t, domain.Figures{Count: 2, Failed: 1, Cancelled: 1}, read(t, st, domain.BucketKey(domain.ScopeArea, domain.UnzonedArea)).Total, "the unzoned area")
	})
}
