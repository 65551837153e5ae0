package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

var byOperator = domain.OperatorAction{Name: "reassign", By: "operator", Reason: "rotor check", ActionID: "a-1"}

// withETAs gives d the ETAs of a delivery on its way.
func withETAs(d *domain.Delivery) *domain.Delivery {
	p, e := t0.Add(5*time.Minute), t0.Add(15*time.Minute)
	d.PickupETA, d.DeliveryETA = &p, &e
	return d
}

func pickedUp() *domain.Delivery {
	d := assigned(domain.StageHeadedToDropoff)
	at := t0
	d.PickedUpAt = &at
	return d
}

// Each operator action on a delivery, from each kind of state it meets.
func TestOperatorDeliveryActions(t *testing.T) {
	reassign := func(d *domain.Delivery) error { _, err := d.Reassign(byOperator, t0); return err }
	abort := func(o domain.AbortOutcome) func(d *domain.Delivery) error {
		return func(d *domain.Delivery) error { _, err := d.Abort(o, byOperator, t0); return err }
	}
	handOver := func(drone string, gen int) func(d *domain.Delivery) error {
		return func(d *domain.Delivery) error { _, _, err := d.HandOver(drone, gen, byOperator, t0); return err }
	}
	seen := func(d *domain.Delivery) *domain.Delivery {
		d.History = append(d.History, domain.Event{Stage: d.Stage, At: t0, Kind: domain.EventOperator, ActionID: "a-1"})
		return d
	}
	tests := []deliveryChange{
		{"reassign a scheduled delivery", assigned(domain.StageScheduled), reassign, nil, "", func(t *testing.T, d *domain.Delivery) {
			assert.Equal(t, domain.StageRescheduled, d.Stage)
			assert.Equal(t, 1, d.Generation, "a new generation for dispatch")
			assert.Equal(t, "drone-1", d.AvoidDroneID)
			assert.Nil(t, d.PickupETA)
			require.Len(t, d.History, 2)
			assert.Equal(t, domain.EventOperator, d.History[0].Kind)
			assert.Equal(t, "operator", d.History[0].By)
			assert.Equal(t, "reassign: rotor check", d.History[0].Note)
			assert.Equal(t, domain.NotifyReassigned, d.Notifications[0].Kind)
		}},
		{"reassign the same action again", seen(assigned(domain.StageScheduled)), reassign, domain.ErrNoChange, "", nil},
		{"reassign again before dispatch ran", func() *domain.Delivery {
			d := assigned(domain.StageScheduled)
			_, err := d.Reassign(domain.OperatorAction{Name: "reassign", By: "operator", Reason: "rotor check"}, t0)
			require.NoError(t, err)
			return d
		}(), func(d *domain.Delivery) error {
			_, err := d.Reassign(domain.OperatorAction{Name: "reassign", By: "operator", Reason: "rotor check"}, t0)
			return err
		}, domain.ErrNoChange, "", nil},
		{"reassign a delivery without a drone", delivery(domain.StageCreated), reassign, nil, domain.ECONFLICT, nil},
		{"reassign with the package aboard", pickedUp(), reassign, nil, domain.ECONFLICT, nil},
		{"reassign a completed delivery", assigned(domain.StageCompleted), reassign, nil, domain.ECONFLICT, nil},
		{"abort in flight", pickedUp(), abort(domain.OutcomeFailed), nil, "", func(t *testing.T, d *domain.Delivery) {
			assert.Equal(t, domain.StageFailed, d.Stage)
			assert.Equal(t, "rotor check", d.FailureReason)
			assert.Equal(t, domain.OutcomeFailed, d.Outcome)
		}},
		{"abort returned to sender", assigned(domain.StageHeadedToPickup), abort(domain.OutcomeReturnedToSender), nil, "", func(t *testing.T, d *domain.Delivery) {
			assert.Equal(t, domain.StageFailed, d.Stage)
			assert.Equal(t, domain.OutcomeReturnedToSender, d.Outcome)
			assert.Contains(t, d.Notifications[0].Message, "returned to the sender")
		}},
		{"abort twice", delivery(domain.StageFailed), abort(domain.OutcomeFailed), domain.ErrNoChange, "", nil},
		{"abort a completed delivery", delivery(domain.StageCompleted), abort(domain.OutcomeFailed), nil, domain.ECONFLICT, nil},
		{"hand over from the grounded drone", assigned(domain.StageHeadedToPickup), handOver("drone-1", 0), nil, "", func(t *testing.T, d *domain.Delivery) {
			assert.Equal(t, domain.StageRescheduled, d.Stage)
		}},
		{"hand over the package aboard", withETAs(pickedUp()), handOver("drone-1", 0), nil, "", func(t *testing.T, d *domain.Delivery) {
			assert.Equal(t, domain.StageFailed, d.Stage, "a package aboard cannot change drones")
			assert.Equal(t, domain.OutcomeReturnedToSender, d.Outcome)
			n := d.Notifications[len(d.Notifications)-1]
			assert.Equal(t, "Your package is being returned to the sender: its drone was reassigned with the package aboard (rotor check).", n.Message)
			assert.Nil(t, n.PickupETA, "no drone is coming: no ETAs")
			assert.Nil(t, n.DeliveryETA)
			assert.Equal(t, "drone-1", d.History[len(d.History)-2].DroneID, "the history names the drone")
		}},
		{"hand over twice", func() *domain.Delivery { d := assigned(domain.StageRescheduled); d.Generation = 1; return d }(), handOver("drone-1", 0), domain.ErrNoChange, "", nil},
		{"hand over from another drone", assigned(domain.StageScheduled), handOver("drone-9", 0), domain.ErrNoChange, "", nil},
	}
	runDeliveryChanges(t, tests)
}

// A reassign sent again while the delivery waits for its next drone is the
// same action (no change); once something else has happened to it since
// (a reschedule, a preemption), a new reassign is judged afresh: with no
// drone, 409.
func TestAReassignIsTheSameOnlyUntilSomethingElseHappens(t *testing.T) {
	t.Parallel()
	act := domain.OperatorAction{Name: "reassign", By: "operator", Reason: "rotor check"}
	d := assigned(domain.StageScheduled)
	_, err := d.Reassign(act, t0)
	require.NoError(t, err)
	require.NoError(t, d.ResetAssignment(d.Generation, t0.Add(time.Second)))
	require.Empty(t, d.DroneID, "dispatch let the drone go and found no other")
	_, err = d.Reassign(act, t0.Add(2*time.Second))
	assert.ErrorIs(t, err, domain.ErrNoChange, "sent again")

	d.SetStage(domain.StageRescheduled, t0.Add(3*time.Second), "rescheduled by the business")
	_, err = d.Reassign(act, t0.Add(4*time.Second))
	assert.True(t, domain.IsCode(err, domain.ECONFLICT), "a new reassign of a delivery with no drone: %v", err)
}

func TestOperatorDroneActions(t *testing.T) {
	busy := func() *domain.Drone {
		dr := drone()
		require.NoError(t, dr.Claim("d-1", 2, &delivery(domain.StageCreated).Request, t0))
		return dr
	}
	dr := busy()
	id, gen, err := dr.Ground("rotor check", domain.TrackingConfig{}, t0)
	require.NoError(t, err)
	assert.Equal(t, "d-1", id)
	assert.Equal(t, 2, gen)
	assert.Equal(t, domain.DroneMaintenance, dr.Status)
	assert.Empty(t, dr.CurrentDeliveryID)
	assert.Equal(t, "rotor check", dr.StatusReason)
	_, _, err = dr.Ground("again", domain.TrackingConfig{}, t0)
	assert.ErrorIs(t, err, domain.ErrNoChange, "grounding twice")

	dr = busy()
	dr.Location = domain.Location{Latitude: 47.65, Longitude: -122.33}
	id, _, err = dr.Recall("storm", "d-1", domain.TrackingConfig{}, t0)
	require.NoError(t, err)
	assert.Equal(t, "d-1", id)
	assert.True(t, dr.Recalled)
	assert.Equal(t, domain.DroneInFlight, dr.Status)
	_, _, err = dr.Recall("storm", "", domain.TrackingConfig{}, t0)
	assert.ErrorIs(t, err, domain.ErrNoChange, "recalling twice")

	away := domain.Telemetry{DroneID: dr.ID, Location: domain.Location{Latitude: 47.63, Longitude: -122.33}, BatteryPercent: 60, Timestamp: t0.Add(time.Minute)}
	_, err = dr.ApplyReport(away, "", false, domain.TrackingConfig{}, t0)
	require.NoError(t, err)
	assert.Equal(t, domain.DroneInFlight, dr.Status, "still flying home")
	home := away
	home.Location, home.Timestamp = dr.HomeBase, t0.Add(2*time.Minute)
	_, err = dr.ApplyReport(home, "", false, domain.TrackingConfig{}, t0)
	require.NoError(t, err)
	assert.Equal(t, domain.DroneAvailable, dr.Status, "landed at its home base")
	assert.False(t, dr.Recalled)

	// A grounded drone recalled home stays grounded there.
	dr = busy()
	dr.Location = away.Location
	_, _, err = dr.Ground("rotor check", domain.TrackingConfig{}, t0)
	require.NoError(t, err)
	_, _, err = dr.Recall("bring it in", "", domain.TrackingConfig{}, t0)
	require.NoError(t, err)
	assert.Equal(t, domain.DroneInFlight, dr.Status)
	_, err = dr.ApplyReport(home, "", false, domain.TrackingConfig{}, t0)
	require.NoError(t, err)
	assert.Equal(t, domain.DroneMaintenance, dr.Status, "still grounded at home")
	assert.False(t, dr.Recalled)
	assert.Equal(t, "bring it in", dr.StatusReason)
	assert.False(t, dr.Dispatchable())

	// A drone flying home on a recall and grounded on the way goes on
	// home, and stays grounded there (it stopped where it was, and a
	// resume left it there, away from its base).
	dr = busy()
	dr.Location = away.Location
	_, _, err = dr.Recall("end of shift", "d-1", domain.TrackingConfig{}, t0)
	require.NoError(t, err)
	_, _, err = dr.Ground("rotor noise", domain.TrackingConfig{}, t0)
	require.NoError(t, err)
	assert.Equal(t, domain.DroneInFlight, dr.Status, "still flying home")
	assert.True(t, dr.Recalled)
	assert.True(t, dr.Grounded)
	_, _, err = dr.Ground("again", domain.TrackingConfig{}, t0)
	assert.ErrorIs(t, err, domain.ErrNoChange, "grounding twice")
	_, err = dr.ApplyReport(home, "", false, domain.TrackingConfig{}, t0)
	require.NoError(t, err)
	assert.Equal(t, domain.DroneMaintenance, dr.Status, "grounded at home")
	assert.False(t, dr.Recalled)
	assert.Equal(t, "rotor noise", dr.StatusReason)
}

// A recall finds the drone at its home base (within the radius a report
// must come within to arrive there): it lands at once as a report placing
// it there would, since a drone parked at home may never report again.
func TestRecallAtHomeLandsAtOnce(t *testing.T) {
	t.Parallel()
	near := domain.Location{Latitude: 47.6003, Longitude: -122.33} // about 33 m from home
	claimed := func(dr *domain.Drone) *domain.Drone {
		require.NoError(t, dr.Claim("d-1", 2, &delivery(domain.StageCreated).Request, t0))
		return dr
	}
	grounded := func(dr *domain.Drone) *domain.Drone {
		_, _, err := dr.Ground("rotor check", domain.TrackingConfig{}, t0)
		require.NoError(t, err)
		return dr
	}
	with := func(edit func(*domain.Drone)) *domain.Drone { dr := drone(); edit(dr); return dr }
	t1 := t0.Add(time.Minute)
	tests := []struct {
		name     string
		dr       *domain.Drone
		from     string
		want     error
		held     string
		status   domain.DroneStatus
		reason   string
		recalled bool
	}{
		{name: "parked at home", dr: drone(), want: domain.ErrNoChange, status: domain.DroneAvailable},
		{name: "parked within the arrival radius", dr: with(func(dr *domain.Drone) { dr.Location = near }), want: domain.ErrNoChange, status: domain.DroneAvailable},
		{name: "parked low", dr: with(func(dr *domain.Drone) { dr.SetBattery(10, domain.TrackingConfig{}) }), status: domain.DroneCharging},
		{name: "grounded at home", dr: grounded(drone()), status: domain.DroneMaintenance, reason: "end of shift"},
		{name: "serving a delivery at home", dr: claimed(drone()), from: "d-1", held: "d-1", status: domain.DroneAvailable},
		{name: "claimed at home after the recall was asked", dr: claimed(drone()), from: "", want: domain.ErrNoChange, status: domain.DroneAssigned},
		{name: "away from home", dr: with(func(dr *domain.Drone) { dr.Location = domain.Location{Latitude: 47.61, Longitude: -122.33} }),
			status: domain.DroneInFlight, reason: "end of shift", recalled: true},
		{name: "grounded away from home", dr: grounded(with(func(dr *domain.Drone) { dr.Location = domain.Location{Latitude: 47.61, Longitude: -122.33} })),
			status: domain.DroneInFlight, reason: "end of shift", recalled: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dr := tt.dr
			before := dr.Clone()
			held, _, err := dr.Recall("end of shift", tt.from, domain.TrackingConfig{}, t1)
			if tt.want != nil {
				require.ErrorIs(t, err, tt.want)
				assert.Equal(t, before, dr, "unchanged")
			} else {
				require.NoError(t, err)
				assert.Equal(t, t1, dr.UpdatedAt)
			}
			assert.Equal(t, tt.held, held)
			assert.Equal(t, tt.status, dr.Status)
			assert.Equal(t, tt.recalled, dr.Recalled)
			if tt.want == nil {
				assert.Equal(t, tt.reason, dr.StatusReason)
				assert.Empty(t, dr.CurrentDeliveryID)
			}
			if tt.status == domain.DroneCharging {
				require.NotNil(t, dr.ChargeDueAt, "on charge from the recall")
			}
			_, _, err = dr.Recall("end of shift", tt.from, domain.TrackingConfig{}, t1.Add(time.Minute))
			assert.ErrorIs(t, err, domain.ErrNoChange, "recalled again")
		})
	}

	// A drone charging at home goes on charging: its charge keeps its due
	// time, for which its check is scheduled.
	dr := with(func(dr *domain.Drone) {
		dr.SetBattery(10, domain.TrackingConfig{})
		dr.StartCharging(domain.TrackingConfig{}, t0)
	})
	due := *dr.ChargeDueAt
	_, _, err := dr.Recall("end of shift", "", domain.TrackingConfig{}, t1)
	assert.ErrorIs(t, err, domain.ErrNoChange)
	assert.Equal(t, domain.DroneCharging, dr.Status)
	assert.Equal(t, due, *dr.ChargeDueAt)

	// So does a charge the operator started above the low mark (it ended
	// on the recall, the drone Available at the battery it went on charge
	// with).
	dr = with(func(dr *domain.Drone) { dr.SetBattery(30, domain.TrackingConfig{}) })
	require.NoError(t, dr.Charge("long trips ahead", domain.TrackingConfig{}, t0))
	due = *dr.ChargeDueAt
	_, _, err = dr.Recall("end of shift", "", domain.TrackingConfig{}, t1)
	require.NoError(t, err)
	assert.Equal(t, domain.DroneCharging, dr.Status)
	assert.Equal(t, due, *dr.ChargeDueAt)
	assert.InDelta(t, 31, dr.BatteryPercent, 0.01, "a minute's charge at 60 % an hour")
}

// Grounding a drone on charge keeps the charge it took so far, worked
// back from when the charge is due; a charge due already counts as done.
func TestGroundKeepsTheChargeSoFar(t *testing.T) {
	t.Parallel()
	cfg := domain.TrackingConfig{}
	for _, tt := range []struct {
		name  string
		after time.Duration
		want  float64
	}{
		{"at once", 0, 30},
		{"half an hour", 30 * time.Minute, 60},
		{"past its due time", 3 * time.Hour, 95},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dr := drone()
			dr.FullRangeKm = 20
			dr.SetBattery(30, cfg)
			require.NoError(t, dr.Charge("top up", cfg, t0))
			_, _, err := dr.Ground("charger fault", cfg, t0.Add(tt.after))
			require.NoError(t, err)
			assert.Equal(t, domain.DroneMaintenance, dr.Status)
			assert.Nil(t, dr.ChargeDueAt)
			assert.InDelta(t, tt.want, dr.BatteryPercent, 0.01)
			assert.InDelta(t, cfg.UsableRangeKm(20, tt.want), dr.RangeKm, 0.01)
		})
	}
}

// A delivery stored before ReassignedFrom was kept starts it, at its next
// reassign, from the reassigns its history holds, so that it does not go
// back to a drone it was moved off before.
func TestReassignedFromStartsFromTheHistory(t *testing.T) {
	t.Parallel()
	d := assigned(domain.StageScheduled)
	d.History = append(d.History,
		domain.Event{Stage: domain.StageScheduled, At: t0, Kind: domain.EventOperator, DroneID: "old-1", Note: "reassign: noisy rotor"},
		domain.Event{Stage: domain.StageScheduled, At: t0, Kind: domain.EventOperator, DroneID: "old-2", Note: "ground: bird strike"})
	_, err := d.Reassign(domain.OperatorAction{Name: "reassign", By: "operator", Reason: "wrong drone"}, t0)
	require.NoError(t, err)
	assert.Equal(t, []string{"old-1", "drone-1"}, d.ReassignedFrom, "the earlier reassign, not the ground")
	assert.True(t, d.Avoids("old-1"))
	assert.False(t, d.Avoids("old-2"))
}
