package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func delivery(stage domain.Stage) *domain.Delivery {
	return &domain.Delivery{ID: "d-1", Stage: stage, Request: domain.DeliveryRequest{
		PickupLocation:  domain.Location{Latitude: 47.61, Longitude: -122.34},
		DropoffLocation: domain.Location{Latitude: 47.62, Longitude: -122.35},
		PickupTime:      t0, Deadline: t0.Add(2 * time.Hour),
		PackageInfo: domain.PackageInfo{PackageID: "p-1", Size: domain.SizeSmall, Weight: 1},
	}}
}

func assigned(stage domain.Stage) *domain.Delivery {
	d := delivery(stage)
	at := t0
	d.DroneID, d.DroneAssignedAt = "drone-1", &at
	return d
}

func drone() *domain.Drone {
	return &domain.Drone{ID: "drone-1", Status: domain.DroneAvailable, Location: domain.Location{Latitude: 47.60, Longitude: -122.33},
		HomeBase: domain.Location{Latitude: 47.60, Longitude: -122.33}, MaxPayloadKg: 5, MaxPackageSize: domain.SizeLarge,
		RangeKm: 50, CruiseSpeedMps: 15, BatteryPercent: 90}
}

// Each transition, from each kind of state it meets: allowed (the change
// is made), already made (ErrNoChange, nothing changed) or refused.
// deliveryChange is one case of a table of state changes: the change
// applied to from gives want (nil, domain.ErrNoChange) or an error with
// code, and then passes check.
type deliveryChange struct {
	name   string
	from   *domain.Delivery
	change func(*domain.Delivery) error
	want   error
	code   string
	check  func(*testing.T, *domain.Delivery)
}

// runDeliveryChanges runs each case as a subtest; a refused or repeated
// change must leave the delivery as it was.
func runDeliveryChanges(t *testing.T, tests []deliveryChange) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := *tc.from
			err := tc.change(tc.from)
			switch {
			case tc.code != "":
				assert.Equal(t, tc.code, domain.ErrorCode(err))
			case tc.want != nil:
				assert.ErrorIs(t, err, tc.want)
			default:
				require.NoError(t, err)
			}
			if err != nil {
				assert.Equal(t, before, *tc.from, "a refused or repeated change leaves the delivery as it was")
			}
			if tc.check != nil {
				tc.check(t, tc.from)
			}
		})
	}
}

func TestDeliveryTransitions(t *testing.T) {
	reschedule := &domain.Reschedule{PickupTime: ptr(t0.Add(time.Hour))}
	tests := []deliveryChange{
		{"reserve a free delivery", delivery(domain.StageCreated), func(d *domain.Delivery) error { return d.Reserve("drone-1", "188:-490", t0) }, nil, "",
			func(t *testing.T, d *domain.Delivery) {
				assert.Equal(t, "drone-1", d.DroneID)
				assert.Equal(t, "188:-490", d.HoldingArea(), "counted in its drone's area, not its pickup's")
			}},
		{"reserve a reserved delivery", func() *domain.Delivery { d := delivery(domain.StageCreated); d.DroneID = "drone-9"; return d }(),
			func(d *domain.Delivery) error { return d.Reserve("drone-1", "188:-490", t0) }, domain.ErrNoChange, "", nil},
		{"reserve a cancelled delivery", delivery(domain.StageCancelled), func(d *domain.Delivery) error { return d.Reserve("drone-1", "188:-490", t0) }, domain.ErrNoChange, "", nil},
		{"drop the reservation", func() *domain.Delivery {
			d := delivery(domain.StageCreated)
			d.DroneID, d.DroneArea = "drone-1", "188:-490"
			return d
		}(),
			func(d *domain.Delivery) error { return d.DropReservation("drone-1", t0) }, nil, "",
			func(t *testing.T, d *domain.Delivery) {
				assert.Empty(t, d.DroneID)
				assert.Equal(t, domain.AreaOf(d.Request.PickupLocation), d.HoldingArea(), "no drone: its pickup's area")
			}},
		{"drop another drone's reservation", func() *domain.Delivery { d := delivery(domain.StageCreated); d.DroneID = "drone-9"; return d }(),
			func(d *domain.Delivery) error { return d.DropReservation("drone-1", t0) }, domain.ErrNoChange, "", nil},
		{"record the reserved drone", func() *domain.Delivery { d := delivery(domain.StageCreated); d.DroneID = "drone-1"; return d }(),
			func(d *domain.Delivery) error { return d.RecordAssignment("drone-1", t0) }, nil, "",
			func(t *testing.T, d *domain.Delivery) { require.NotNil(t, d.DroneAssignedAt) }},
		{"record a drone twice", assigned(domain.StageCreated), func(d *domain.Delivery) error { return d.RecordAssignment("drone-1", t0) }, domain.ErrNoChange, "", nil},
		{"record the package", assigned(domain.StageCreated), func(d *domain.Delivery) error { return d.RecordPackage("p-1", t0) }, nil, "",
			func(t *testing.T, d *domain.Delivery) { assert.Equal(t, "p-1", d.PackageID) }},
		{"record the package of a cancelled delivery", assigned(domain.StageCancelled), func(d *domain.Delivery) error { return d.RecordPackage("p-1", t0) }, domain.ErrNoChange, "", nil},
		{"fail a waiting delivery", delivery(domain.StageCreated), func(d *domain.Delivery) error { _, err := d.Fail("no drone", t0); return err }, nil, "",
			func(t *testing.T, d *domain.Delivery) {
				assert.Equal(t, domain.StageFailed, d.Stage)
				assert.Equal(t, domain.NotifyFailed, d.Notifications[0].Kind)
			}},
		// The caller releases the drone (handlers' fail): a delivery whose
		// package could not be recorded must not stay Created with it booked.
		{"fail an assigned delivery not yet scheduled", assigned(domain.StageCreated), func(d *domain.Delivery) error { _, err := d.Fail("no package", t0); return err }, nil, "",
			func(t *testing.T, d *domain.Delivery) {
				assert.Equal(t, domain.StageFailed, d.Stage)
				assert.Equal(t, "drone-1", d.DroneID, "the drone to release stays named")
			}},
		{"fail a scheduled delivery", assigned(domain.StageScheduled), func(d *domain.Delivery) error { _, err := d.Fail("late", t0); return err }, domain.ErrNoChange, "", nil},
		{"cancel", assigned(domain.StageScheduled), func(d *domain.Delivery) error { _, err := d.Cancel(t0); return err }, nil, "",
			func(t *testing.T, d *domain.Delivery) { assert.Equal(t, domain.StageCancelled, d.Stage) }},
		{"cancel twice", delivery(domain.StageCancelled), func(d *domain.Delivery) error { _, err := d.Cancel(t0); return err }, domain.ErrNoChange, "", nil},
		{"cancel a completed delivery", delivery(domain.StageCompleted), func(d *domain.Delivery) error { _, err := d.Cancel(t0); return err }, nil, domain.ECONFLICT, nil},
		{"cancel with the package on board", delivery(domain.StageHeadedToDropoff), func(d *domain.Delivery) error { _, err := d.Cancel(t0); return err }, nil, domain.ECONFLICT, nil},
		{"reschedule", assigned(domain.StageScheduled), func(d *domain.Delivery) error { return d.Reschedule(reschedule, t0, 0) }, nil, "",
			func(t *testing.T, d *domain.Delivery) {
				assert.Equal(t, 1, d.Generation)
				assert.Equal(t, domain.StageRescheduled, d.Stage)
				assert.Nil(t, d.PickupETA)
			}},
		{"reschedule a package in flight", assigned(domain.StageHeadedToDropoff), func(d *domain.Delivery) error { return d.Reschedule(reschedule, t0, 0) }, nil, domain.ECONFLICT, nil},
		{"reset the assignment of the earlier generation", func() *domain.Delivery {
			d := assigned(domain.StageRescheduled)
			d.Generation, d.LastKnownLocation = 1, &domain.Location{Latitude: 1, Longitude: 2}
			return d
		}(),
			func(d *domain.Delivery) error { return d.ResetAssignment(1, t0) }, nil, "",
			func(t *testing.T, d *domain.Delivery) {
				assert.Equal(t, "drone-1", d.PreviousDroneID)
				assert.Empty(t, d.DroneID)
				assert.Nil(t, d.DroneAssignedAt)
				assert.Nil(t, d.LastKnownLocation, "where the drone that no longer serves it was says nothing of the delivery")
			}},
		{"reset twice", func() *domain.Delivery {
			d := delivery(domain.StageRescheduled)
			d.Generation, d.ResetGeneration = 1, 1
			return d
		}(),
			func(d *domain.Delivery) error { return d.ResetAssignment(1, t0) }, domain.ErrNoChange, "", nil},
		// Where an update runs its change again on the stored document
		// (Cosmos DB), a cancel may land between dispatch's read and its
		// reset: the ended delivery keeps the drone and the held time its
		// end recorded.
		{"reset the assignment of a delivery cancelled meanwhile", func() *domain.Delivery {
			d := assigned(domain.StageCancelled)
			d.Generation = 1
			return d
		}(),
			func(d *domain.Delivery) error { return d.ResetAssignment(1, t0.Add(time.Hour)) }, domain.ErrNoChange, "", nil},
		{"schedule", assigned(domain.StageCreated), func(d *domain.Delivery) error {
			_, err := d.Schedule(0, domain.ETA{Pickup: t0.Add(time.Minute), Delivery: t0.Add(5 * time.Minute)}, nil, domain.Location{}, t0)
			return err
		}, nil, "", func(t *testing.T, d *domain.Delivery) {
			assert.Equal(t, domain.StageScheduled, d.Stage)
			require.NotNil(t, d.DeliveryETA)
			assert.Equal(t, domain.NotifyScheduled, d.Notifications[0].Kind)
			assert.Equal(t, "A drone is on its way: pickup at "+domain.ClockTime(t0.Add(time.Minute), t0)+", delivery by "+domain.ClockTime(domain.ByMinute(t0.Add(5*time.Minute)), t0)+".",
				d.Notifications[0].Message, "times for a person")
		}},
		{"schedule with an earlier generation's message", func() *domain.Delivery { d := assigned(domain.StageRescheduled); d.Generation = 2; return d }(),
			func(d *domain.Delivery) error {
				_, err := d.Schedule(1, domain.ETA{}, nil, domain.Location{}, t0)
				return err
			}, domain.ErrNoChange, "", nil},
		{"schedule a delivery in flight", assigned(domain.StageHeadedToPickup),
			func(d *domain.Delivery) error {
				_, err := d.Schedule(0, domain.ETA{}, nil, domain.Location{}, t0)
				return err
			}, domain.ErrNoChange, "", nil},
	}
	runDeliveryChanges(t, tests)
}

func TestDroneTransitions(t *testing.T) {
	req := &delivery(domain.StageCreated).Request

	dr := drone()
	require.NoError(t, dr.Claim("d-1", 0, req, t0))
	assert.Equal(t, domain.DroneAssigned, dr.Status)
	assert.ErrorIs(t, dr.Claim("d-1", 0, req, t0), domain.ErrNoChange, "claimed already by this generation")
	assert.ErrorIs(t, dr.Claim("d-2", 0, req, t0), domain.ErrDroneUnavailable, "busy with another delivery")
	require.NoError(t, dr.Claim("d-1", 1, req, t0), "kept across a reschedule when it can do the new job")
	assert.Equal(t, 1, dr.CurrentGeneration)

	heavy := *req
	heavy.PackageInfo.Weight = 50
	assert.ErrorIs(t, drone().Claim("d-1", 0, &heavy, t0), domain.ErrDroneUnavailable, "unfit for the package")

	assert.ErrorIs(t, dr.ReleaseEarlier("d-1", 1, domain.TrackingConfig{}, t0), domain.ErrNoChange, "the new generation holds it")
	assert.ErrorIs(t, dr.Release("d-2", domain.TrackingConfig{}, t0), domain.ErrNoChange, "not this delivery's drone")
	require.NoError(t, dr.Release("d-1", domain.TrackingConfig{}, t0))
	assert.Equal(t, domain.DroneAvailable, dr.Status)
	assert.Empty(t, dr.CurrentDeliveryID)

	low := drone()
	require.NoError(t, low.Claim("d-1", 0, req, t0))
	low.BatteryPercent = 5
	require.NoError(t, low.Release("d-1", domain.TrackingConfig{}, t0))
	assert.Equal(t, domain.DroneCharging, low.Status, "a drone low on battery goes to charge")
}

func TestApplyReport(t *testing.T) {
	dr := drone()
	require.NoError(t, dr.Claim("d-1", 0, &delivery(domain.StageCreated).Request, t0))
	r := domain.Telemetry{DroneID: dr.ID, Location: domain.Location{Latitude: 47.615, Longitude: -122.34}, BatteryPercent: 45, Timestamp: t0.Add(time.Minute)}
	freed, err := dr.ApplyReport(r, "d-1", false, domain.TrackingConfig{}, t0)
	require.NoError(t, err)
	assert.False(t, freed)
	assert.Equal(t, domain.DroneInFlight, dr.Status)
	assert.InDelta(t, 21.875, dr.RangeKm, 1e-9, "range follows the charge: 62.5 km at 100 % (50 km at 90 %, keeping 10 %) × (45 − 10) %")

	_, err = dr.ApplyReport(r, "d-1", false, domain.TrackingConfig{}, t0)
	assert.ErrorIs(t, err, domain.ErrNoChange, "the same report again changes nothing")

	late := r
	late.Timestamp = t0
	freed, err = dr.ApplyReport(late, "d-1", true, domain.TrackingConfig{}, t0)
	require.NoError(t, err)
	assert.True(t, freed, "a late report still settles an ended delivery")
	assert.Equal(t, r.Location, dr.Location, "but does not move the drone back")
}

func ptr[T any](v T) *T { return &v }

func TestConfirm(t *testing.T) {
	t.Parallel()
	drop := delivery(domain.StageCompleted).Request.DropoffLocation
	near := domain.Location{Latitude: drop.Latitude + 0.0005, Longitude: drop.Longitude} // about 56 m
	far := domain.Location{Latitude: drop.Latitude + 0.0015, Longitude: drop.Longitude}  // about 167 m
	picture := domain.Confirmation{DateTime: t0, GeoCoordinates: near, ConfirmationType: domain.ConfirmationPicture}
	with := func(c domain.Confirmation, change func(*domain.Confirmation)) domain.Confirmation {
		change(&c)
		return c
	}
	completed := func(required domain.ConfirmationType) *domain.Delivery {
		d := delivery(domain.StageCompleted)
		d.Request.ConfirmationRequired = required
		for i, s := range []domain.Stage{domain.StageCreated, domain.StageScheduled, domain.StageHeadedToPickup, domain.StageHeadedToDropoff, domain.StageCompleted} {
			d.History = append(d.History, domain.Event{Stage: s, At: t0.Add(time.Duration(i) * 15 * time.Minute)})
		}
		return d
	}
	confirmed := completed(domain.ConfirmationPicture)
	first := picture
	confirmed.Confirmation = &first

	for _, c := range []struct {
		name  string
		d     *domain.Delivery
		c     domain.Confirmation
		rules domain.ConfirmationRules
		code  string // "" when it is taken
		field string
	}{
		{"as required", completed(domain.ConfirmationPicture), picture, domain.ConfirmationRules{}, "", ""},
		{"any type when None is required", completed(domain.ConfirmationNone), with(picture, func(c *domain.Confirmation) { c.ConfirmationType = domain.ConfirmationVoice }), domain.ConfirmationRules{}, "", ""},
		{"another type than required", completed(domain.ConfirmationPicture), with(picture, func(c *domain.Confirmation) { c.ConfirmationType = domain.ConfirmationFingerPrint }), domain.ConfirmationRules{}, domain.EUNPROCESSABLE, "confirmationType"},
		{"beyond the default 100 m", completed(domain.ConfirmationPicture), with(picture, func(c *domain.Confirmation) { c.GeoCoordinates = far }), domain.ConfirmationRules{}, domain.EUNPROCESSABLE, "geoCoordinates"},
		{"within a wider radius", completed(domain.ConfirmationPicture), with(picture, func(c *domain.Confirmation) { c.GeoCoordinates = far }), domain.ConfirmationRules{RadiusKm: 0.2}, "", ""},
		{"beyond a narrower radius", completed(domain.ConfirmationPicture), picture, domain.ConfirmationRules{RadiusKm: 0.05}, domain.EUNPROCESSABLE, "geoCoordinates"},
		{"dated later than the skew allows", completed(domain.ConfirmationPicture), with(picture, func(c *domain.Confirmation) { c.DateTime = t0.Add(2 * time.Hour) }), domain.ConfirmationRules{}, domain.EUNPROCESSABLE, "dateTime"},
		{"dated within the skew", completed(domain.ConfirmationPicture), with(picture, func(c *domain.Confirmation) { c.DateTime = t0.Add(4 * time.Minute) }), domain.ConfirmationRules{}, "", ""},
		{"in flight", delivery(domain.StageHeadedToDropoff), picture, domain.ConfirmationRules{}, domain.ECONFLICT, ""},
		{"cancelled", delivery(domain.StageCancelled), picture, domain.ConfirmationRules{}, domain.ECONFLICT, ""},
		{"a second time", confirmed, picture, domain.ConfirmationRules{}, domain.ECONFLICT, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := *c.d
			before.History = append([]domain.Event(nil), c.d.History...)
			err := c.d.Confirm(c.c, c.rules, t0)
			if c.code != "" {
				assert.Equal(t, c.code, domain.ErrorCode(err), "%v", err)
				assert.Equal(t, c.field, domain.ErrorField(err))
				assert.Equal(t, before, *c.d, "a refused confirmation changes nothing")
				return
			}
			require.NoError(t, err)
			require.NotNil(t, c.d.Confirmation)
			assert.Equal(t, t0, c.d.Confirmation.ReceivedAt)
			want := domain.DistanceKm(c.c.GeoCoordinates, drop) * 1000
			assert.InDelta(t, want, c.d.Confirmation.DistanceMeters, 0.05, "to 0.1 m")
			last := c.d.History[len(c.d.History)-1]
			assert.Equal(t, domain.EventConfirmed, last.Kind)
			assert.Equal(t, domain.StageCompleted, last.Stage)
			assert.Equal(t, t0.Add(time.Hour), last.At, "never before the event it follows")
			assert.Equal(t, "confirmed by "+c.c.ConfirmationType.Describe(), last.Note)
			assert.NoError(t, domain.LegalHistory(c.d.History))
		})
	}
}

// A delivery's updatedAt never goes back: a report dated ahead of the
// service's clock (within the skew allowed) may have set it, and a proof of
// delivery received just after must not date the delivery earlier, or a
// client reading changes since the updatedAt it saw would miss it.
func TestUpdatedAtNeverGoesBack(t *testing.T) {
	t.Parallel()
	d := delivery(domain.StageCompleted)
	d.History = []domain.Event{{Stage: domain.StageCreated, At: t0.Add(-time.Hour)}, {Stage: domain.StageCompleted, At: t0.Add(3 * time.Minute)}}
	d.UpdatedAt = t0.Add(3 * time.Minute) // the report that completed it, dated ahead
	c := domain.Confirmation{DateTime: t0, GeoCoordinates: d.Request.DropoffLocation, ConfirmationType: domain.ConfirmationPicture}
	require.NoError(t, d.Confirm(c, domain.ConfirmationRules{}, t0))
	assert.Equal(t, t0.Add(3*time.Minute), d.UpdatedAt)
	d.Touch(t0.Add(10 * time.Minute))
	assert.Equal(t, t0.Add(10*time.Minute), d.UpdatedAt, "and moves on with the clock")
}

// A booking clears a hold: nothing is dispatched for it before its
// dispatch time, when a pause is judged again.
func TestABookingIsHeldByNothingUntilItsDispatchTime(t *testing.T) {
	t.Parallel()
	d := delivery(domain.StageCreated)
	d.History = []domain.Event{{Stage: domain.StageCreated, At: t0}}
	require.NoError(t, d.Hold("squall", t0))
	_, err := d.Book(0, t0.Add(time.Hour), domain.ETA{Pickup: t0.Add(70 * time.Minute), Delivery: t0.Add(80 * time.Minute)}, t0)
	require.NoError(t, err)
	assert.Empty(t, d.HeldReason)
	kind, _ := d.WaitReason(t0, time.Minute)
	assert.Equal(t, domain.WaitBooked, kind)
}
