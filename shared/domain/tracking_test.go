package domain_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// scheduledFlight is a delivery created and scheduled at start, with the
// pickup and dropoff it flies between, 2.2 km apart.
func scheduledFlight(start time.Time) (d *domain.Delivery, pickup, drop domain.Location) {
	pickup = domain.Location{Latitude: 47.60, Longitude: -122.33}
	drop = domain.Location{Latitude: 47.62, Longitude: -122.33}
	d = &domain.Delivery{ID: "d", Stage: domain.StageScheduled, Request: domain.DeliveryRequest{PickupLocation: pickup, DropoffLocation: drop}}
	d.History = []domain.Event{{Stage: domain.StageCreated, At: start}, {Stage: domain.StageScheduled, At: start}}
	return d, pickup, drop
}

func TestTrackStagesAndETAChanges(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	d, pickup, drop := scheduledFlight(start)
	eta := start.Add(20 * time.Minute)
	d.NotifiedDeliveryETA = &eta
	drone := &domain.Drone{CruiseSpeedMps: 10}
	cfg := domain.TrackingConfig{}

	report := func(loc domain.Location, at time.Time) (bool, []domain.Notification) {
		return domain.Track(d, drone, domain.Telemetry{Location: loc, BatteryPercent: 50, Timestamp: at}, cfg)
	}
	away := domain.Location{Latitude: 47.59, Longitude: -122.33}
	changed, notes := report(away, start.Add(time.Minute))
	require.True(t, changed)
	assert.Equal(t, domain.StageHeadedToPickup, d.Stage)
	require.Len(t, notes, 1, "the plan said 20 minutes; the drone is about 9 minutes out")
	assert.Equal(t, domain.NotifyETAChanged, notes[0].Kind)

	changed, _ = report(pickup, start.Add(time.Minute))
	assert.False(t, changed, "same timestamp: a duplicate")
	earlier := domain.Location{Latitude: 47.585, Longitude: -122.33}
	changed, _ = report(earlier, start.Add(30*time.Second))
	assert.True(t, changed, "a late report is filed in the trail")
	assert.Equal(t, away, *d.LastKnownLocation, "but does not move the drone back")
	require.Len(t, d.Trail, 2)
	assert.True(t, d.Trail[0].At.Before(d.Trail[1].At), "the trail stays in time order")
	assert.InDelta(t, domain.DistanceKm(earlier, away), d.TraveledKm, 1e-9)

	// 40 m from the pickup is within the default 50 m radius.
	near := domain.Location{Latitude: pickup.Latitude + 0.00036, Longitude: pickup.Longitude}
	_, notes = report(near, start.Add(3*time.Minute))
	assert.Equal(t, domain.StageHeadedToDropoff, d.Stage)
	require.NotEmpty(t, notes)
	assert.Equal(t, domain.NotifyPickedUp, notes[0].Kind)
	require.NotNil(t, d.PickedUpAt)

	_, _ = report(domain.Location{Latitude: 47.61, Longitude: -122.33}, start.Add(4*time.Minute))
	assert.Equal(t, domain.StageHeadedToDropoff, d.Stage)
	want := domain.FlightETA(start.Add(4*time.Minute), domain.Location{Latitude: 47.61, Longitude: -122.33}, 10, &d.Request, nil, true)
	assert.Equal(t, want.Delivery, *d.DeliveryETA)

	_, notes = report(drop, start.Add(6*time.Minute))
	assert.Equal(t, domain.StageCompleted, d.Stage)
	assert.Equal(t, domain.NotifyDelivered, notes[len(notes)-1].Kind)
	assert.NoError(t, domain.LegalHistory(d.History))
	changed, _ = report(away, start.Add(7*time.Minute))
	assert.False(t, changed, "a completed delivery does not move")
}

// A report dated before the drone was claimed (its clock behind the
// service's, or a report queued long) still moves the delivery, but no ETA
// is made earlier than the claim: the ETAs were minutes in the past. Its
// notice keeps the report's date, by which a redelivered report finds it.
func TestAReportDatedBeforeTheClaim(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	claimed := start.Add(6 * time.Minute)
	pickup := domain.Location{Latitude: 47.60, Longitude: -122.33}
	drop := domain.Location{Latitude: 47.62, Longitude: -122.33}
	d := &domain.Delivery{ID: "d", Stage: domain.StageScheduled, CreatedAt: start, DroneAssignedAt: &claimed,
		Request: domain.DeliveryRequest{PickupLocation: pickup, DropoffLocation: drop}}
	d.History = []domain.Event{{Stage: domain.StageCreated, At: start}, {Stage: domain.StageScheduled, At: claimed}}
	eta := claimed.Add(40 * time.Minute)
	d.NotifiedDeliveryETA = &eta
	d.Notify(domain.NotifyScheduled, "Scheduled.", claimed)
	drone := &domain.Drone{CruiseSpeedMps: 10}

	away := domain.Location{Latitude: 47.59, Longitude: -122.33}
	backdated := start.Add(3 * time.Minute)
	changed, notes := domain.Track(d, drone, domain.Telemetry{Location: away, BatteryPercent: 50, Timestamp: backdated}, domain.TrackingConfig{})
	require.True(t, changed)
	require.Len(t, notes, 1)
	assert.Equal(t, domain.NotifyETAChanged, notes[0].Kind)
	assert.Equal(t, backdated, notes[0].At, "dated with its report")
	assert.Regexp(t, `^Your delivery's estimated time changed to \d\d:\d\d UTC\.$`, notes[0].Message, "a time for a person, not RFC 3339")
	want := domain.FlightETA(claimed, away, 10, &d.Request, nil, false)
	assert.Equal(t, want.Pickup, *d.PickupETA, "counted from the claim")
	assert.Equal(t, want.Delivery, *d.DeliveryETA)
}

// TestTrackIgnoresArrivalOrder replays one flight in order and shuffled,
// with duplicates, and expects the same outcome: queues do not keep order.
func TestTrackIgnoresArrivalOrder(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	pickup := domain.Location{Latitude: 47.60, Longitude: -122.33}
	drop := domain.Location{Latitude: 47.62, Longitude: -122.31}
	home := domain.Location{Latitude: 47.59, Longitude: -122.34}
	var route []domain.Telemetry
	add := func(a, b domain.Location, n int) {
		for i := range n {
			f := float64(i) / float64(n)
			route = append(route, domain.Telemetry{
				Location:  domain.Location{Latitude: a.Latitude + f*(b.Latitude-a.Latitude), Longitude: a.Longitude + f*(b.Longitude-a.Longitude)},
				Timestamp: start.Add(time.Duration(len(route)+1) * 10 * time.Second),
			})
		}
	}
	add(home, pickup, 7)
	add(pickup, drop, 9)
	route = append(route, domain.Telemetry{Location: drop, Timestamp: start.Add(time.Duration(len(route)+1) * 10 * time.Second)})

	fly := func(reports []domain.Telemetry) *domain.Delivery {
		d := &domain.Delivery{ID: "d", Stage: domain.StageScheduled, Request: domain.DeliveryRequest{PickupLocation: pickup, DropoffLocation: drop}}
		d.History = []domain.Event{{Stage: domain.StageCreated, At: start}, {Stage: domain.StageScheduled, At: start}}
		for _, r := range reports {
			domain.Track(d, &domain.Drone{CruiseSpeedMps: 12}, r, domain.TrackingConfig{})
		}
		return d
	}
	want := fly(route)
	require.Equal(t, domain.StageCompleted, want.Stage)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		// Everything but the landing arrives shuffled and some of it twice;
		// the landing comes last, as a drone reports it after the flight.
		body := slices.Clone(route[:len(route)-1])
		body = append(body, body[:rng.IntN(len(body))]...)
		rng.Shuffle(len(body), func(i, j int) { body[i], body[j] = body[j], body[i] })
		got := fly(append(body, route[len(route)-1]))
		assert.Equal(t, want.Stage, got.Stage)
		assert.Equal(t, want.Trail, got.Trail)
		assert.InDelta(t, want.TraveledKm, got.TraveledKm, 1e-9)
		assert.Equal(t, want.PickedUpAt, got.PickedUpAt)
		assert.Equal(t, want.CompletedAt, got.CompletedAt)
		assert.Equal(t, *want.LastKnownLocation, *got.LastKnownLocation)
		assert.NoError(t, domain.LegalHistory(got.History))
	}
}

func TestLegalHistory(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	ev := func(stages ...domain.Stage) []domain.Event {
		out := make([]domain.Event, len(stages))
		for i, s := range stages {
			out[i] = domain.Event{Stage: s, At: at.Add(time.Duration(i) * time.Minute)}
		}
		return out
	}
	assert.NoError(t, domain.LegalHistory(ev(domain.StageCreated, domain.StageScheduled, domain.StageHeadedToPickup, domain.StageHeadedToDropoff, domain.StageCompleted)))
	assert.NoError(t, domain.LegalHistory(ev(domain.StageCreated, domain.StageScheduled, domain.StageRescheduled, domain.StageScheduled, domain.StageCancelled)))
	assert.Error(t, domain.LegalHistory(ev(domain.StageScheduled)))
	assert.Error(t, domain.LegalHistory(ev(domain.StageCreated, domain.StageCompleted)))
	assert.Error(t, domain.LegalHistory(ev(domain.StageCreated, domain.StageScheduled, domain.StageCompleted, domain.StageCancelled)))
	back := ev(domain.StageCreated, domain.StageScheduled)
	back[1].At = at.Add(-time.Minute)
	assert.Error(t, domain.LegalHistory(back))

	// A proof of delivery is an event in the stage it was given in.
	proved := append(ev(domain.StageCreated, domain.StageScheduled, domain.StageHeadedToPickup, domain.StageHeadedToDropoff, domain.StageCompleted),
		domain.Event{Stage: domain.StageCompleted, At: at.Add(time.Hour), Kind: domain.EventConfirmed})
	assert.NoError(t, domain.LegalHistory(proved))
	proved[len(proved)-1].Stage = domain.StageFailed
	assert.Error(t, domain.LegalHistory(proved), "an event of another stage than the delivery's")
}

// A report of the drone a delivery awaiting its schedule has claimed is
// filed without moving the stage; one of another drone, or of the drone an
// earlier generation held, is not filed at all. A reset for a new
// generation forgets the report time, so the next drone is judged by its
// own clock, and Schedule then FollowTrail take the delivery on.
func TestTrackBeforeTheSchedule(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	pickup := domain.Location{Latitude: 47.60, Longitude: -122.33}
	drop := domain.Location{Latitude: 47.62, Longitude: -122.33}
	d := &domain.Delivery{ID: "d", Stage: domain.StageCreated, DroneID: "a", Generation: 1,
		Request: domain.DeliveryRequest{PickupLocation: pickup, DropoffLocation: drop}}
	d.History = []domain.Event{{Stage: domain.StageCreated, At: start}}
	claimed := &domain.Drone{ID: "a", CurrentDeliveryID: "d", CurrentGeneration: 1, CruiseSpeedMps: 10}
	cfg := domain.TrackingConfig{}
	report := func(dr *domain.Drone, loc domain.Location, at time.Time) bool {
		changed, notes := domain.Track(d, dr, domain.Telemetry{DroneID: dr.ID, Location: loc, Timestamp: at}, cfg)
		assert.Empty(t, notes)
		return changed
	}

	stranger := &domain.Drone{ID: "b", CurrentDeliveryID: "d", CurrentGeneration: 1}
	assert.False(t, report(stranger, pickup, start.Add(time.Second)), "not the reserved drone")
	earlier := &domain.Drone{ID: "a", CurrentDeliveryID: "d", CurrentGeneration: 0}
	assert.False(t, report(earlier, pickup, start.Add(time.Second)), "an earlier generation's claim")
	assert.Empty(t, d.Trail)

	away := domain.Location{Latitude: 47.59, Longitude: -122.33}
	assert.True(t, report(claimed, away, start.Add(time.Minute)))
	assert.Equal(t, domain.StageCreated, d.Stage)
	assert.Nil(t, d.PickedUpAt)
	assert.True(t, report(claimed, pickup, start.Add(90*time.Second)))
	assert.Equal(t, domain.StageCreated, d.Stage, "no stage moves before the schedule")
	require.Len(t, d.Trail, 2)
	assert.Equal(t, pickup, *d.LastKnownLocation)
	require.NotNil(t, d.PickedUpAt, "but the package is aboard")
	assert.Equal(t, start.Add(90*time.Second), *d.PickedUpAt)
	assert.Empty(t, domain.FollowTrail(d, claimed, cfg), "not scheduled yet")

	// So nothing that would free the drone with the package aboard is
	// allowed.
	_, err := d.Clone().Cancel(start.Add(100 * time.Second))
	assert.True(t, domain.IsCode(err, domain.ECONFLICT), "cancel: %v", err)
	moved := domain.Location{Latitude: 47.61, Longitude: -122.33}
	err = d.Clone().Reschedule(&domain.Reschedule{DropoffLocation: &moved}, start.Add(100*time.Second), 0)
	assert.True(t, domain.IsCode(err, domain.ECONFLICT), "reschedule: %v", err)
	_, err = d.Clone().Reassign(domain.OperatorAction{Name: "reassign", ActionID: "a1", Reason: "test"}, start.Add(100*time.Second))
	assert.True(t, domain.IsCode(err, domain.ECONFLICT), "reassign: %v", err)

	onward := domain.Location{Latitude: 47.605, Longitude: -122.33}
	assert.True(t, report(claimed, onward, start.Add(2*time.Minute)))
	_, err = d.Schedule(1, domain.ETA{Pickup: start.Add(5 * time.Minute), Delivery: start.Add(9 * time.Minute)}, nil,
		domain.Location{Latitude: 1, Longitude: 1}, start.Add(3*time.Minute))
	require.NoError(t, err)
	assert.Equal(t, onward, *d.LastKnownLocation, "the newest report's position, not the one the step read")
	notes := domain.FollowTrail(d, claimed, cfg)
	assert.Equal(t, domain.StageHeadedToDropoff, d.Stage)
	require.NotEmpty(t, notes)
	assert.Equal(t, domain.NotifyPickedUp, notes[0].Kind)
	assert.NoError(t, domain.LegalHistory(d.History))
	last := d.History[len(d.History)-1]
	require.NotNil(t, last.Location)
	assert.Equal(t, pickup, *last.Location, "the pickup's event is where the drone was at the pickup")

	// A new generation's dispatch starts the next drone's flight afresh;
	// the last one's distance and time stay counted.
	r := &domain.Delivery{Generation: 2, DroneID: "a", DroneAssignedAt: &start, LastTelemetryAt: &start,
		LastKnownLocation: &pickup, Trail: d.Trail, TraveledKm: 1.5, AssignedBeforeMs: 1000}
	require.NoError(t, r.ResetAssignment(2, start.Add(time.Minute)))
	assert.Nil(t, r.LastTelemetryAt)
	assert.Nil(t, r.LastKnownLocation)
	assert.Empty(t, r.Trail)
	assert.Equal(t, 1.5, r.TraveledKm)
	assert.Equal(t, int64(61_000), r.AssignedBeforeMs)
	assert.Equal(t, "a", r.PreviousDroneID)
}

// While the drone is still at the pickup after the pickup, its delivery
// ETA counts the landing, the loading and the climb still ahead, so it
// holds steady through reports from the pad instead of falling by those
// two minutes at the pickup and creeping back; on the pad past them, the
// climb is still ahead.
func TestTheETAFromThePickupPadCountsTheHandlingAhead(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	d, pickup, _ := scheduledFlight(start)
	drone := &domain.Drone{CruiseSpeedMps: 10}
	report := func(loc domain.Location, at time.Time) time.Time {
		_, _ = domain.Track(d, drone, domain.Telemetry{Location: loc, Timestamp: at}, domain.TrackingConfig{})
		return *d.DeliveryETA
	}
	report(domain.Location{Latitude: 47.59, Longitude: -122.33}, start)
	arrived := start.Add(2 * time.Minute)
	atPad := report(pickup, arrived)
	require.NotNil(t, d.PickedUpAt)
	picked := d.Notifications[len(d.Notifications)-1]
	require.Equal(t, domain.NotifyPickedUp, picked.Kind)
	require.NotNil(t, picked.DeliveryETA)
	assert.Equal(t, atPad, *picked.DeliveryETA, "the picked-up notice tells the time the report that made it gave")
	leg := domain.FlightETA(arrived, pickup, 10, &d.Request, nil, true).Delivery.Sub(arrived)
	assert.WithinDuration(t, arrived.Add(2*time.Minute+leg), atPad, time.Second, "landing, loading and climb ahead")
	for _, after := range []time.Duration{30 * time.Second, 60 * time.Second, 90 * time.Second} {
		assert.WithinDuration(t, atPad, report(pickup, arrived.Add(after)), time.Second, "steady on the pad %s after", after)
	}
	late := arrived.Add(5 * time.Minute)
	assert.WithinDuration(t, late.Add(30*time.Second+leg), report(pickup, late), time.Second, "still on the pad: the climb is ahead")
	away := domain.Location{Latitude: 47.605, Longitude: -122.33}
	gone := late.Add(time.Minute)
	assert.Equal(t, domain.FlightETA(gone, away, 10, &d.Request, nil, true).Delivery, report(away, gone), "in the air")
}

// Before the pickup, a report's delivery ETA counts the pickup → dropoff
// leg as dispatch routed it round the zones, not the straight line: a
// detour kept in the plan is not dropped at the first report (which moved
// the ETA minutes earlier, and told the customer so, right after the
// scheduled notice).
func TestAReportCountsTheRoutedLeg(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	d, pickup, drop := scheduledFlight(start)
	straight := domain.DistanceKm(pickup, drop)
	d.PlannedRoute = &domain.PlannedRoute{Dropoff: domain.Route{Km: straight + 3}}
	drone := &domain.Drone{CruiseSpeedMps: 10}
	away := domain.Location{Latitude: 47.59, Longitude: -122.33}
	at := start.Add(time.Minute)
	changed, _ := domain.Track(d, drone, domain.Telemetry{Location: away, BatteryPercent: 50, Timestamp: at}, domain.TrackingConfig{})
	require.True(t, changed)
	assert.Equal(t, domain.FlightETA(at, away, 10, &d.Request, d.PlannedRoute, false).Delivery, *d.DeliveryETA)
	assert.Equal(t, 300*time.Second, domain.FlightETA(at, away, 10, &d.Request, d.PlannedRoute, false).Delivery.Sub(
		domain.FlightETA(at, away, 10, &d.Request, nil, false).Delivery), "3 km more at 10 m/s")
}

// A drone whose clock runs behind the service's dates its reports before
// the delivery's pickup time, which for a delivery picked up as soon as a
// drone can is the time it was accepted: its report at the pickup counts
// all the same, and its flight ends at the dropoff. (Only a pickup booked
// ahead waits for its time; the drone waits there with it.)
func TestADroneClockBehindTheServicesStillPicksUp(t *testing.T) {
	t.Parallel()
	accepted := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	claimed := accepted.Add(time.Second)
	d, pickup, drop := scheduledFlight(accepted)
	d.CreatedAt, d.DroneAssignedAt, d.Request.PickupTime = accepted, &claimed, accepted
	drone := &domain.Drone{CruiseSpeedMps: 10}
	behind := 30 * time.Minute // every report is dated this much before it was sent
	report := func(loc domain.Location, sent time.Time) {
		_, _ = domain.Track(d, drone, domain.Telemetry{Location: loc, BatteryPercent: 50, Timestamp: sent.Add(-behind)}, domain.TrackingConfig{})
	}
	report(domain.Location{Latitude: 47.59, Longitude: -122.33}, accepted.Add(time.Minute))
	report(pickup, accepted.Add(3*time.Minute))
	require.NotNil(t, d.PickedUpAt, "at the pickup")
	assert.Equal(t, domain.StageHeadedToDropoff, d.Stage)
	report(drop, accepted.Add(8*time.Minute))
	assert.Equal(t, domain.StageCompleted, d.Stage)
	assert.NoError(t, domain.LegalHistory(d.History))
}

// A report on a leg routed round a zone counts what is left of the detour
// the drone flies, not the straight line through the zone: the pickup ETA
// of a drone still at its start does not move minutes earlier at its first
// report (telling the customer so), and one halfway round counts the half
// left; after the pickup, the same holds for the dropoff leg.
func TestAReportCountsWhatIsLeftOfTheRoutedLegs(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	d, pickup, drop := scheduledFlight(start)
	from := domain.Location{Latitude: pickup.Latitude, Longitude: pickup.Longitude - 0.05}
	north := 0.03
	corner1 := domain.Location{Latitude: from.Latitude + north, Longitude: from.Longitude}
	corner2 := domain.Location{Latitude: pickup.Latitude + north, Longitude: pickup.Longitude}
	around := func(a, b, c, d domain.Location) domain.Route {
		return domain.Route{Points: []domain.Location{a, b, c, d}, Km: domain.DistanceKm(a, b) + domain.DistanceKm(b, c) + domain.DistanceKm(c, d)}
	}
	d.PlannedRoute = &domain.PlannedRoute{Pickup: around(from, corner1, corner2, pickup), Dropoff: domain.StraightRoute(pickup, drop)}
	speed := 10.0
	leg := func(km float64) time.Duration { return time.Duration(km / speed * 1000 * float64(time.Second)) }

	straight := domain.FlightETA(start, from, speed, &d.Request, nil, false)
	routed := domain.FlightETA(start, from, speed, &d.Request, d.PlannedRoute, false)
	assert.InDelta(t, leg(d.PlannedRoute.Pickup.Km-domain.DistanceKm(from, pickup)).Seconds(), routed.Pickup.Sub(straight.Pickup).Seconds(), 1,
		"at its start the whole detour is ahead")
	halfway := domain.Location{Latitude: corner1.Latitude, Longitude: (corner1.Longitude + corner2.Longitude) / 2}
	left := domain.DistanceKm(halfway, corner2) + domain.DistanceKm(corner2, pickup)
	got := domain.FlightETA(start, halfway, speed, &d.Request, d.PlannedRoute, false)
	assert.InDelta(t, leg(left).Seconds(), got.Pickup.Sub(domain.FlightETA(start, pickup, speed, &d.Request, d.PlannedRoute, false).Pickup).Seconds(), 1,
		"halfway round, the half left")

	changed, _ := domain.Track(d, &domain.Drone{CruiseSpeedMps: speed}, domain.Telemetry{Location: from, BatteryPercent: 50, Timestamp: start}, domain.TrackingConfig{})
	require.True(t, changed)
	assert.Equal(t, routed.Pickup, *d.PickupETA, "the report keeps the routed pickup ETA")

	// After the pickup, on a dropoff leg routed round a zone.
	beyond := domain.Location{Latitude: drop.Latitude + north, Longitude: drop.Longitude}
	d.PlannedRoute.Dropoff = around(pickup, corner2, beyond, drop)
	onTop := domain.Location{Latitude: corner2.Latitude, Longitude: (corner2.Longitude + beyond.Longitude) / 2}
	after := domain.FlightETA(start, onTop, speed, &d.Request, d.PlannedRoute, true)
	assert.InDelta(t, leg(domain.DistanceKm(onTop, beyond)+domain.DistanceKm(beyond, drop)).Seconds(),
		after.Delivery.Sub(start.Add(domain.LandingDuration)).Seconds(), 1, "the rest of the detour, then the landing")
}

// A report from the ground short of the pickup (the drone's first, before
// it takes off) keeps the climb ahead of it in the ETAs, as the schedule
// counted it; in the air, there is none left.
func TestAReportFromTheGroundKeepsTheClimbAhead(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	away := domain.Location{Latitude: 47.59, Longitude: -122.33}
	for _, c := range []struct {
		name     string
		altitude *float64
		climb    time.Duration
	}{
		{"on the ground", ptr(0.0), domain.TakeoffDuration},
		{"in the air", ptr(120.0), 0},
		{"no altitude reported", nil, 0},
	} {
		d, _, _ := scheduledFlight(start)
		loc := away
		loc.Altitude = c.altitude
		changed, _ := domain.Track(d, &domain.Drone{CruiseSpeedMps: 10}, domain.Telemetry{Location: loc, BatteryPercent: 90, Timestamp: start}, domain.TrackingConfig{})
		require.True(t, changed, c.name)
		want := domain.FlightETA(start.Add(c.climb), away, 10, &d.Request, nil, false)
		assert.Equal(t, want.Pickup, *d.PickupETA, c.name)
		assert.Equal(t, want.Delivery, *d.DeliveryETA, c.name)
	}
}
