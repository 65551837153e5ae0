package domain_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// The drones ChooseTakeovers offers all await takeoff and would deliver
// by the deadline, come best first by the dispatch rule, and are exactly
// the ones a walk over every drone finds (within the bound on their
// number); the best of them is what Choose picks among the same drones
// set free.
func TestChooseTakeoversProperties(t *testing.T) {
	t.Parallel()
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 2))
		var drones, freed []*domain.Drone
		for i := range 1 + r.IntN(40) {
			d := randomDrone(r, i)
			switch r.IntN(4) {
			case 0:
				d.Status = domain.DroneInFlight
				d.CurrentDeliveryID = "flying"
			case 1, 2:
				d.Status, d.CurrentDeliveryID, d.CurrentGeneration = domain.DroneAssigned, "plain-"+d.ID, r.IntN(3)
				f := *d
				f.Status, f.CurrentDeliveryID, f.CurrentGeneration = domain.DroneAvailable, "", 0
				freed = append(freed, &f)
			}
			drones = append(drones, d)
		}
		req := randomRequest(r)
		req.Expedited = true
		air := airspaceFor(seed)
		got, err := domain.ChooseTakeovers(nearest(drones, req.PickupLocation), req, air, limitsFor(drones), now)
		require.NoError(t, err)
		var best *domain.Plan
		if len(got) > 0 {
			best = &got[0]
		}
		if !assertSameBest(t, seed, bruteForce(freed, req, air), best, ": the best is what Choose picks among them set free") {
			continue
		}
		eligible := 0
		for _, f := range freed {
			leg, _ := air.Route(req.PickupLocation, req.DropoffLocation, now)
			if _, why := domain.PlanFor(f, domain.DistanceKm(f.Location, req.PickupLocation), req, air, leg, now); why == "" {
				eligible++
			}
		}
		assert.Len(t, got, eligible, "seed %d: every drone that could be taken", seed)
		for i, p := range got {
			assert.True(t, p.Drone.AwaitsTakeoff(), "seed %d: %s does not await takeoff", seed, p.Drone.ID)
			assert.False(t, p.ETA.Delivery.After(req.Deadline), "seed %d: delivers after the deadline", seed)
			if i > 0 {
				assert.False(t, p.ETA.Delivery.Before(got[i-1].ETA.Delivery), "seed %d: not best first", seed)
			}
		}
	}
}

func TestChooseTakeoversStopsAtItsBound(t *testing.T) {
	t.Parallel()
	var drones []*domain.Drone
	for i := range 10 {
		d := aDrone(fmt.Sprint("d", i), near(0.001*float64(i), 0), 15)
		d.Status, d.CurrentDeliveryID = domain.DroneAssigned, fmt.Sprint("plain-", i)
		drones = append(drones, d)
	}
	req := request(center, near(0.01, 0), 1, time.Hour)
	got, err := domain.ChooseTakeovers(nearest(drones, center), req, nil, domain.ChoiceLimits{MaxEligible: 3}, now)
	require.NoError(t, err)
	assert.Len(t, got, 3)
}

// Preempt and TakeOver, from each kind of state they meet: allowed,
// already made (ErrNoChange) or refused.
func TestPreemptTransitions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		d    func() *domain.Delivery
		want error
	}{
		{"scheduled, not flying", func() *domain.Delivery { return assigned(domain.StageScheduled) }, nil},
		{"created, drone just claimed", func() *domain.Delivery { return assigned(domain.StageCreated) }, nil},
		{"expedited", func() *domain.Delivery {
			d := assigned(domain.StageScheduled)
			d.Request.Expedited = true
			return d
		}, domain.ErrNotPreemptible},
		{"headed to pickup", func() *domain.Delivery { return assigned(domain.StageHeadedToPickup) }, domain.ErrNotPreemptible},
		{"picked up", func() *domain.Delivery {
			d := assigned(domain.StageHeadedToDropoff)
			d.PickedUpAt = &t0
			return d
		}, domain.ErrNotPreemptible},
		{"cancelled", func() *domain.Delivery { return assigned(domain.StageCancelled) }, domain.ErrNotPreemptible},
		{"no drone", func() *domain.Delivery { return delivery(domain.StageCreated) }, domain.ErrNotPreemptible},
		{"rescheduled since", func() *domain.Delivery {
			d := assigned(domain.StageRescheduled)
			d.Generation = 1
			return d
		}, domain.ErrNotPreemptible},
		{"already preempted by it", func() *domain.Delivery {
			d := assigned(domain.StageScheduled)
			_, err := d.Preempt(0, "drone-1", "urgent", t0)
			if err != nil {
				panic(err)
			}
			return d
		}, domain.ErrNoChange},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.d()
			before := fmt.Sprintf("%+v", *d)
			n, err := d.Preempt(0, "drone-1", "urgent", t0.Add(time.Minute))
			if tc.want != nil {
				require.True(t, errors.Is(err, tc.want), "%v", err)
				assert.Equal(t, before, fmt.Sprintf("%+v", *d), "nothing changed")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, domain.StageRescheduled, d.Stage)
			assert.Equal(t, 1, d.Generation)
			assert.Equal(t, "urgent", d.PreemptedBy)
			assert.Equal(t, domain.NotifyPreempted, n.Kind)
			assert.Nil(t, d.PickupETA)
			assert.Nil(t, d.DispatchAt)
			assert.Equal(t, "drone-1", d.DroneID, "kept until its new dispatch gives it back, if it still serves it")
			if len(d.History) > 0 {
				assert.Equal(t, domain.StageRescheduled, d.History[len(d.History)-1].Stage)
			}
		})
	}
}

func TestTakeOverTransitions(t *testing.T) {
	t.Parallel()
	req := &delivery(domain.StageCreated).Request
	waiting := func() *domain.Drone {
		dr := drone()
		dr.Status, dr.CurrentDeliveryID, dr.CurrentGeneration = domain.DroneAssigned, "plain", 0
		return dr
	}
	dr := waiting()
	require.NoError(t, dr.TakeOver("plain", 0, "urgent", 2, req, t0))
	assert.Equal(t, "urgent", dr.CurrentDeliveryID)
	assert.Equal(t, 2, dr.CurrentGeneration)
	assert.Equal(t, domain.DroneAssigned, dr.Status)
	assert.Equal(t, domain.ErrNoChange, dr.TakeOver("plain", 0, "urgent", 2, req, t0), "already taken")

	flying := waiting()
	flying.Status = domain.DroneInFlight
	assert.ErrorIs(t, flying.TakeOver("plain", 0, "urgent", 2, req, t0), domain.ErrDroneUnavailable, "it took off")
	assert.Equal(t, "plain", flying.CurrentDeliveryID)

	other := waiting()
	assert.ErrorIs(t, other.TakeOver("plain", 1, "urgent", 2, req, t0), domain.ErrDroneUnavailable, "another generation's")

	free := drone()
	require.NoError(t, free.TakeOver("plain", 0, "urgent", 2, req, t0), "given back meanwhile: claimed as any free drone")
	assert.Equal(t, "urgent", free.CurrentDeliveryID)

	weak := waiting()
	weak.RangeKm = 1
	assert.ErrorIs(t, weak.TakeOver("plain", 0, "urgent", 2, req, t0), domain.ErrDroneUnavailable, "unfit")
}
