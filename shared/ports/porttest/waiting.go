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

// Waiting checks Store.Waiting: pages walk the waiting deliveries of every
// owner once, newest or oldest first, leave out those with a drone, in
// flight or ended, and follow a delivery that takes off. open must return
// a store of its own: the listing spans every owner.
func Waiting(t *testing.T, open func(t *testing.T) ports.Store) {
	st := open(t)
	require.NotNil(t, st.Waiting, "the store lists waiting deliveries")
	owners := []string{unique("owner"), unique("owner")}
	var want []string
	assigned := listAt.Add(time.Hour)
	for i := range 12 {
		// Pairs share a creation time, so the id breaks the tie.
		at := listAt.Add(time.Duration(i/2) * time.Minute)
		id := fmt.Sprintf("w-%02d", i)
		d := listed(id, owners[i%2], at)
		switch i % 4 {
		case 0: // waits: Created
			want = append(want, id)
		case 1: // waits: booked
			d.Stage, d.DispatchAt = domain.StageScheduled, &assigned
			want = append(want, id)
		case 2: // Scheduled with its drone: does not wait
			d.Stage, d.DroneID, d.DroneAssignedAt = domain.StageScheduled, "drone-1", &assigned
		case 3: // in flight
			d.Stage, d.DroneID, d.DroneAssignedAt = domain.StageHeadedToPickup, "drone-1", &assigned
		}
		require.NoError(t, st.Deliveries.Create(ctxFor(t), id, d), "create")
	}
	newest := slices.Clone(want)
	slices.Reverse(newest)
	for _, limit := range []int{1, 2, 5, 20} {
		require.Equal(t, newest, walkWaiting(t, st.Waiting, ports.WaitingFilter{Limit: limit}), fmt.Sprintf("newest first, %d a page", limit))
		require.Equal(t, want, walkWaiting(t, st.Waiting, ports.WaitingFilter{Oldest: true, Limit: limit}), fmt.Sprintf("oldest first, %d a page", limit))
	}
	// The first waiting delivery takes off: it is no longer listed.
	_, err := st.Deliveries.Update(ctxFor(t), want[0], func(d *domain.Delivery) error {
		d.DroneID, d.DroneAssignedAt = "drone-2", &assigned
		d.SetStage(domain.StageHeadedToPickup, assigned, "")
		return nil
	})
	require.NoError(t, err, "take off")
	require.Equal(t, want[1:], walkWaiting(t, st.Waiting, ports.WaitingFilter{Oldest: true, Limit: 3}), "after a take-off")
}

// walkWaiting follows a listing of waiting deliveries to its end.
func walkWaiting(t *testing.T, w ports.WaitingDeliveries, f ports.WaitingFilter) []string {
	t.Helper()
	var ids []string
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("the listing does not end")
		}
		page, err := w.PageWaiting(ctxFor(t), f)
		require.NoError(t, err, "page")
		require.LessOrEqual(t, len(page.Deliveries), f.Limit, "deliveries in a page of the limit")
		for _, d := range page.Deliveries {
			ids = append(ids, d.ID)
		}
		if page.Next == nil {
			return ids
		}
		f.After = page.Next
	}
}
