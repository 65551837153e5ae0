// Package simulator flies the fleet's assigned drones over the public HTTP
// API, posting telemetry as real drones would, so that a laptop running the
// service sees deliveries move through every stage and the tracking page
// come alive. It is a plain API client: it never touches a store.
package simulator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/geo"
	"github.com/fabrikam/dronedelivery/tools/apiclient"
)

// Options configure Run; zero fields take the documented defaults.
type Options struct {
	// BaseURL is the service's root, for example http://127.0.0.1:7071.
	BaseURL string
	// Interval is how often each drone reports (default 1 s of real time).
	Interval time.Duration
	// TimeScale is how many simulated seconds pass per real second
	// (default 10): drones fly that much faster and their reports carry
	// timestamps that run that much faster, so the ETAs stay consistent.
	// Each flight has a clock of its own, which starts at the real time
	// (or just after the drone's last report, if that is later), so the
	// simulated time runs ahead of the real one only by what one drone's
	// flights back to back gained, not by all the time the simulator has
	// run.
	TimeScale float64
	// Out receives progress; a terminal gets lines redrawn in place.
	Out io.Writer
	// OperatorKey, when set, is sent as "Authorization: Bearer <key>".
	OperatorKey string
	// UntilIdle makes Run return once no drone has had an active delivery
	// for a few intervals, instead of running until ctx is cancelled.
	UntilIdle bool
	// HTTPClient is the client to use (default: one with a 10 s timeout).
	HTTPClient *http.Client
	// Step, when set, dates each report of a flight exactly Step of
	// simulated time after the one before, however late the real tick
	// came, so that the path flown does not depend on how busy the machine
	// is; the first report still carries the simulated clock's time.
	Step time.Duration
	// AfterReport, when set, is called after each report the API accepted,
	// and the flight waits for it before the next: a test that watches the
	// service (the tracking page, say) returns once it has seen the report,
	// so that the drone flies at the watcher's pace, step by step.
	AfterReport func(ctx context.Context, r Report)
}

// Report is a telemetry report the API accepted, as AfterReport sees it.
type Report struct {
	DroneID, DeliveryID string
	Latitude, Longitude float64
	At                  time.Time // the report's timestamp, in simulated time
}

const (
	// listEvery is how many intervals pass between polls of the drone list
	// (and of each flight's delivery): new assignments show up within a few
	// seconds without a list query per report.
	listEvery = 3
	// idleLists is how many drone lists in a row must show nothing to fly
	// before UntilIdle returns, so a delivery still being scheduled is not
	// mistaken for the end of the work.
	idleLists = 2
	// confirmWait is how many intervals a flight waits after its last report
	// for the backend's queue step to mark the delivery Completed.
	confirmWait = 5
	// cruiseAltitudeM is reported in flight; 0 on the ground.
	cruiseAltitudeM = 120.0
	// fallbackSpeedMps flies a drone whose record has no usable speed.
	fallbackSpeedMps = 15.0
)

// Run flies every Assigned or InFlight drone with a current delivery from
// where it is to the pickup and on to the dropoff, and every drone the
// operator recalled to its home base, posting a telemetry report each
// Interval, until ctx is cancelled (or, with UntilIdle, until
// there is nothing left to fly). A cancelled ctx is a clean stop and returns
// nil; an unreachable API at the start or a refused operator key is an error.
func Run(ctx context.Context, opts Options) error {
	base, err := url.Parse(strings.TrimRight(opts.BaseURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fmt.Errorf("simulator: base URL %q must be an http or https URL", opts.BaseURL)
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.TimeScale <= 0 || math.IsNaN(opts.TimeScale) || math.IsInf(opts.TimeScale, 0) {
		opts.TimeScale = 10
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	s := &sim{
		opts:    opts,
		api:     apiclient.Client{Base: base.String(), Key: opts.OperatorKey, HTTP: hc, UserAgent: "dronedelivery-simulator"},
		prog:    newProgress(opts.Out),
		flights: map[string]*flight{},
		done:    map[string]bool{},
		fatal:   make(chan error, 1),
	}
	return s.run(ctx)
}

type sim struct {
	opts Options
	api  apiclient.Client
	prog *progress

	mu      sync.Mutex
	flights map[string]*flight // by drone id
	done    map[string]bool    // droneID + "\x00" + deliveryID flown to the end
	wg      sync.WaitGroup
	fatal   chan error
}

// flight is one drone flying one delivery.
type flight struct {
	drone   *domain.Drone // as the list showed it when the flight began
	cancel  context.CancelCauseFunc
	arrived atomic.Bool // the last report has gone; only confirmation is left
}

// doneKey names a flight: a drone's for one generation of a delivery (a
// reschedule that keeps the drone is a flight of its own, on a new route).
func doneKey(dr *domain.Drone) string {
	return dr.ID + "\x00" + dr.CurrentDeliveryID + "\x00" + strconv.Itoa(dr.CurrentGeneration)
}

// flightClock is the simulated clock of one flight: it reads from at the
// real moment began and runs scale times as fast.
type flightClock struct {
	from  time.Time
	began time.Time // real, with the monotonic reading
	scale float64
}

func (c flightClock) now() time.Time {
	return c.from.Add(time.Duration(float64(time.Since(c.began)) * c.scale))
}

// clockFor starts the clock of a flight of dr: at the real time, or just
// after dr's last report if that is later (the backend ignores reports no
// newer than a drone's last one, and an earlier flight may have dated its
// last ahead of the real time).
func (s *sim) clockFor(dr *domain.Drone) flightClock {
	began := time.Now()
	from := began.UTC()
	if last := dr.LastTelemetryAt; last != nil && !from.After(*last) {
		from = last.Add(time.Millisecond)
	}
	return flightClock{from: from, began: began, scale: s.opts.TimeScale}
}

func (s *sim) run(parent context.Context) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	ticker := time.NewTicker(s.opts.Interval)
	defer ticker.Stop()
	s.prog.eventf("simulating drones against %s: a report every %s, time ×%g", s.api.Base, s.opts.Interval, s.opts.TimeScale)

	var fatal error
	idle := 0
loop:
	for round := 0; ; round++ {
		if round%listEvery == 0 {
			pending, err := s.refresh(ctx)
			switch {
			case err == nil && pending == 0 && s.active() == 0:
				idle++
			case err == nil:
				idle = 0
			case ctx.Err() != nil:
				break loop
			case apiclient.Unauthorized(err):
				fatal = fmt.Errorf("simulator: the API refused the operator key (set -operator-key or OPERATOR_KEY): %w", err)
				break loop
			case round == 0:
				fatal = fmt.Errorf("simulator: cannot list drones at %s (is the service running? make run): %w", s.api.Base, err)
				break loop
			default:
				s.prog.eventf("drone list failed, retrying: %v", err)
			}
		}
		s.prog.render()
		if s.opts.UntilIdle && idle >= idleLists && s.active() == 0 {
			s.prog.eventf("no drone has a delivery to fly: done")
			break
		}
		select {
		case <-ctx.Done():
			break loop
		case fatal = <-s.fatal:
			break loop
		case <-ticker.C:
		}
	}
	cancel()
	s.wg.Wait()
	if fatal == nil && parent.Err() == nil {
		select {
		case fatal = <-s.fatal: // raised while the last flights wound down
		default:
		}
	}
	s.prog.render()
	return fatal
}

func (s *sim) active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.flights)
}

// fail stops the whole run: some errors (a refused key) no retry can fix.
func (s *sim) fail(err error) {
	select {
	case s.fatal <- err:
	default:
	}
}

// refresh reads the drones that have a delivery, starts a flight for each
// new one, stops flights whose drone was released, and returns how many
// drones still have a delivery to fly.
func (s *sim) refresh(ctx context.Context) (int, error) {
	want := map[string]*domain.Drone{}
	// Assigned before InFlight: a drone moving between the two during the
	// two reads is then seen at least once.
	for _, st := range []domain.DroneStatus{domain.DroneAssigned, domain.DroneInFlight} {
		ds, err := s.api.ListDrones(ctx, st)
		if err != nil {
			return 0, err
		}
		for _, d := range ds {
			// A drone with a delivery, or one the operator recalled,
			// which flies home serving none.
			if d.CurrentDeliveryID != "" || d.Recalled && st == domain.DroneInFlight {
				want[d.ID] = d
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, f := range s.flights {
		if d, ok := want[id]; (!ok || doneKey(d) != doneKey(f.drone)) && !f.arrived.Load() {
			f.cancel(errReleased)
		}
	}
	for key := range s.done {
		droneID, _, _ := strings.Cut(key, "\x00")
		if d, ok := want[droneID]; !ok || doneKey(d) != key {
			delete(s.done, key) // released at last: nothing to guard against
		}
	}
	pending := 0
	for id, d := range want {
		if s.done[doneKey(d)] {
			continue
		}
		pending++
		if _, flying := s.flights[id]; flying {
			continue
		}
		fctx, cancel := context.WithCancelCause(ctx)
		f := &flight{drone: d, cancel: cancel}
		s.flights[id] = f
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer cancel(nil)
			var final bool
			if d.CurrentDeliveryID == "" {
				final = s.flyHome(fctx, f)
			} else {
				final = s.fly(fctx, f)
				if errors.Is(context.Cause(fctx), errReleased) && ctx.Err() == nil {
					final = s.released(ctx, d.CurrentDeliveryID)
				}
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.flights[id] == f {
				delete(s.flights, id)
			}
			if final {
				s.done[doneKey(d)] = true
			}
		}()
	}
	return pending, nil
}

// interrupted retires the line of a flight stopped by shutdown; a released
// drone's line is retired by released, which knows why.
func (s *sim) interrupted(ctx context.Context, id string, pct int) {
	if !errors.Is(context.Cause(ctx), errReleased) {
		s.prog.done(id, fmt.Sprintf("%s: stopped at %d%%", id, pct))
	}
}

// errReleased cancels a flight whose drone the list no longer shows on its
// delivery: the backend completed, cancelled or reassigned it.
var errReleased = errors.New("drone released")

// released says what became of a delivery whose drone was let go while the
// simulator was still flying it; a delivery completed on a report inside the
// arrival radius is the common case. The drone of one the operator aborted
// or grounded may be on its way home rather than free, so the line names
// the delivery's stage, not the drone's.
func (s *sim) released(ctx context.Context, id string) bool {
	d, err := s.api.GetDelivery(ctx, id)
	switch {
	case err != nil:
		s.prog.done(id, fmt.Sprintf("%s: the flight ended early; the delivery could not be read: %v", id, err))
	case d.Stage == "Completed":
		s.prog.done(id, fmt.Sprintf("%s  %-15s  %s 100%%  delivered", id, "Completed", strings.Repeat("█", 10)))
	default:
		s.prog.done(id, fmt.Sprintf("%s: the flight ended early; the delivery is %s", id, d.Stage))
	}
	return true
}

func terminalStage(s domain.Stage) bool { return s == "Completed" || s == "Cancelled" || s == "Failed" }

// fly flies one delivery and reports whether it is finished with, as
// opposed to interrupted by a transient error and worth another try.
func (s *sim) fly(ctx context.Context, f *flight) bool {
	dr := f.drone
	id := dr.CurrentDeliveryID
	del, err := s.api.GetDelivery(ctx, id)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return false
	case apiclient.Unauthorized(err):
		s.fail(fmt.Errorf("simulator: the API refused the operator key: %w", err))
		return false
	case apiclient.StatusOf(err) == http.StatusNotFound:
		s.prog.eventf("%s: drone %s is assigned a delivery that does not exist; leaving it", id, dr.ID)
		return true
	default:
		s.prog.eventf("%s: cannot read the delivery, will retry: %v", id, err)
		return false
	}
	if terminalStage(del.Stage) {
		return true
	}

	pos := point(dr.Location)
	// The drone flies the delivery's planned route, round the no-fly
	// zones the backend routed it round, landing at the pickup and the
	// dropoff.
	legs := flightPath(point(del.PickupLocation), point(del.DropoffLocation), del.PlannedRoute)
	// A drone at the pickup before the package's pickupTime waits there,
	// on the pad, reporting, until that time: the backend counts no pickup
	// earlier.
	waitUntil := del.PickupTime
	if del.Stage == "HeadedToDropoff" {
		// The package is already aboard (a restarted simulator).
		for len(legs) > 0 && !legs[0].stop {
			legs = legs[1:]
		}
		legs = legs[1:]
		waitUntil = time.Time{}
	}
	totalKm := pathKm(pos, legs)
	speed, fullRangeKm := performance(dr)
	clock := s.clockFor(dr)
	s.prog.eventf("%s: drone %s takes off, %.2f km to fly at %g m/s", id, dr.ID, totalKm, speed)

	stage, etaAt := string(del.Stage), del.DeliveryETA
	var lastTS, tookOff time.Time
	flownKm := 0.0
	failures := 0
	hold := false // a landing report failed: stay on the pad and send it again
	ticker := time.NewTicker(s.opts.Interval)
	defer ticker.Stop()
	for tick := 1; ; tick++ {
		ts := s.reportTime(clock, lastTS)
		// The first report is from where the drone stands; a landing, at the
		// pickup or the dropoff, is sent again until the API takes it, or
		// the backend never sees the drone arrive and the delivery never ends.
		waiting := stopsLeft(legs) == 1 && ts.Before(waitUntil)
		grounded := lastTS.IsZero() || len(legs) == 0 || hold || waiting
		landed := false
		if !lastTS.IsZero() && len(legs) > 0 && !hold && !waiting {
			prev, since := pos, lastTS
			if stopsLeft(legs) == 1 && waitUntil.After(since) {
				since = waitUntil // it took off from the pickup at the pickup time
			}
			var reached bool
			pos, reached = advance(pos, legs[0].Point, speed*ts.Sub(since).Seconds()/1000)
			flownKm += geo.DistanceKm(prev, pos)
			if reached {
				// A corner is flown past; a stop is landed at.
				landed = legs[0].stop
				legs = legs[1:]
				grounded = landed
			}
		}
		landing := landed || hold
		alt := cruiseAltitudeM
		if grounded {
			alt = 0
		}
		err := s.report(ctx, dr, pos, alt, flownKm, fullRangeKm, ts)
		if lastTS.IsZero() {
			tookOff = ts
		}
		lastTS = ts
		hold = false
		if stop, done := s.reportEnds(ctx, err, id, fmt.Sprintf("drone %s grounded", dr.ID), flownKm, totalKm); stop {
			return done
		}
		if err == nil {
			failures = 0
		} else {
			if failures++; failures == 1 {
				s.prog.eventf("%s: telemetry failed, flying on: %v", id, err)
			}
			hold = landing && len(legs) > 0
		}

		if err == nil && s.opts.AfterReport != nil {
			s.opts.AfterReport(ctx, Report{DroneID: dr.ID, DeliveryID: id, Latitude: pos.Lat, Longitude: pos.Lon, At: ts})
		}
		if len(legs) == 0 && err == nil {
			f.arrived.Store(true)
			return s.confirm(ctx, id, totalKm, ts.Sub(tookOff))
		}
		if tick%listEvery == 0 {
			if d, err := s.api.GetDelivery(ctx, id); err == nil {
				stage, etaAt = string(d.Stage), d.DeliveryETA
				if d.Stage == "Cancelled" || d.Stage == "Failed" {
					s.prog.done(id, fmt.Sprintf("%s: %s by the backend; drone %s stops", id, d.Stage, dr.ID))
					return true
				}
			} else if apiclient.Unauthorized(err) {
				s.fail(fmt.Errorf("simulator: the API refused the operator key: %w", err))
				return false
			}
		}
		shown := stage
		if shown == "" || shown == "Scheduled" || shown == "Created" {
			shown = "HeadedToPickup"
		}
		var eta time.Duration
		if etaAt != nil {
			eta = max(etaAt.Sub(ts), 0)
		} else {
			eta = time.Duration(pathKm(pos, legs) * 1000 / speed * float64(time.Second))
		}
		s.prog.set(id, status{stage: shown, frac: frac(flownKm, totalKm), eta: eta})

		select {
		case <-ctx.Done():
			s.interrupted(ctx, id, percent(flownKm, totalKm))
			return false
		case <-ticker.C:
		}
	}
}

// reportEnds says whether err, what a flight's report got, stops the
// flight labelled label, and if so what the flight answers: not done when
// it was interrupted or the API refused the operator key; done when the
// drone was refused for good, which the flight's line tells as grounded.
func (s *sim) reportEnds(ctx context.Context, err error, label, grounded string, flownKm, totalKm float64) (stop, done bool) {
	switch {
	case err == nil:
		return false, false
	case ctx.Err() != nil:
		s.interrupted(ctx, label, percent(flownKm, totalKm))
		return true, false
	case apiclient.Unauthorized(err):
		s.fail(fmt.Errorf("simulator: the API refused the operator key: %w", err))
		return true, false
	case refusedForGood(err):
		s.prog.done(label, fmt.Sprintf("%s: %s: %v", label, grounded, err))
		return true, true
	}
	return false, false
}

// refusedForGood says the API will refuse every report like this one
// alike (a 4xx other than 429).
func refusedForGood(err error) bool {
	code := apiclient.StatusOf(err)
	return code >= 400 && code < 500 && code != http.StatusTooManyRequests
}

// performance is how fast dr flies and how far a full charge takes it
// (fullRangeKm), with a fallback for a record that does not say.
func performance(dr *domain.Drone) (speedMps, fullRangeKm float64) {
	speedMps, fullRangeKm = dr.CruiseSpeedMps, dr.FullRangeKm
	if !(speedMps > 0) {
		speedMps = fallbackSpeedMps
	}
	if !(fullRangeKm > 0) {
		fullRangeKm = math.Inf(1)
	}
	return speedMps, fullRangeKm
}

// report posts dr's telemetry at pos, altM up, dated ts, its battery
// drained as the service's range model has it (docs/operating.md, Battery
// and charging): a full charge's share per km, fullRangeKm flown taking
// 100 %, so that a drone that flies the range it was given lands with the
// reserve left. (A drain in proportion to the range left, as before, took
// a drone at 20 % down twice as fast and landed it under the reserve.)
func (s *sim) report(ctx context.Context, dr *domain.Drone, pos geo.Point, altM, flownKm, fullRangeKm float64, ts time.Time) error {
	battery := min(max(dr.BatteryPercent-flownKm/fullRangeKm*100, 0), 100)
	return s.api.PostTelemetry(ctx, dr.ID, apiclient.Report{
		Location:       domain.Location{Latitude: pos.Lat, Longitude: pos.Lon, Altitude: &altM},
		BatteryPercent: math.Round(battery*100) / 100,
		Timestamp:      ts.Format("2006-01-02T15:04:05.000Z07:00"),
	})
}

// reportTime dates the next report of a flight whose last was dated last:
// the flight's clock, or Step after the last with Step set, and always
// after the last.
func (s *sim) reportTime(clock flightClock, last time.Time) time.Time {
	ts := clock.now().Truncate(time.Millisecond)
	if s.opts.Step > 0 && !last.IsZero() {
		ts = last.Add(s.opts.Step).Truncate(time.Millisecond)
	}
	if !ts.After(last) {
		ts = last.Add(time.Millisecond)
	}
	return ts
}

// flyHome flies a drone the operator recalled, which serves no delivery,
// to its home base, where the backend lands it (Available, or Maintenance
// if it was grounded). It reports whether it is finished with.
func (s *sim) flyHome(ctx context.Context, f *flight) bool {
	dr := f.drone
	label := dr.ID + " (recalled)"
	pos, home := point(dr.Location), point(dr.HomeBase)
	totalKm := geo.DistanceKm(pos, home)
	speed, fullRangeKm := performance(dr)
	clock := s.clockFor(dr)
	s.prog.eventf("%s: flies home, %.2f km at %g m/s", label, totalKm, speed)
	var lastTS time.Time
	flownKm := 0.0
	ticker := time.NewTicker(s.opts.Interval)
	defer ticker.Stop()
	for {
		ts := s.reportTime(clock, lastTS)
		landed := totalKm == 0
		if !lastTS.IsZero() {
			prev := pos
			pos, landed = advance(pos, home, speed*ts.Sub(lastTS).Seconds()/1000)
			flownKm += geo.DistanceKm(prev, pos)
		}
		alt := cruiseAltitudeM
		if landed || lastTS.IsZero() {
			alt = 0
		}
		err := s.report(ctx, dr, pos, alt, flownKm, fullRangeKm, ts)
		lastTS = ts
		if stop, done := s.reportEnds(ctx, err, label, "grounded", flownKm, totalKm); stop {
			return done
		}
		if landed && err == nil {
			f.arrived.Store(true)
			s.prog.done(label, fmt.Sprintf("%s: landed at its home base after %.2f km", label, flownKm))
			return true
		}
		s.prog.set(label, status{stage: "ReturningHome", frac: frac(flownKm, totalKm),
			eta: time.Duration(geo.DistanceKm(pos, home) * 1000 / speed * float64(time.Second))})
		select {
		case <-ctx.Done():
			s.interrupted(ctx, label, percent(flownKm, totalKm))
			return false
		case <-ticker.C:
		}
	}
}

// confirm waits a few intervals for the backend to mark the delivery
// Completed after the report at the dropoff, so the output says what the
// service made of the flight rather than what the simulator hoped.
func (s *sim) confirm(ctx context.Context, id string, totalKm float64, took time.Duration) bool {
	stage := domain.Stage("")
wait:
	for range confirmWait + 1 {
		if d, err := s.api.GetDelivery(ctx, id); err == nil {
			stage = d.Stage
			if terminalStage(stage) {
				break
			}
		}
		select {
		case <-ctx.Done():
			break wait
		case <-time.After(s.opts.Interval):
		}
	}
	switch stage {
	case "Completed":
		s.prog.done(id, fmt.Sprintf("%s  %-15s  %s 100%%  delivered: %.2f km in %s simulated", id, "Completed", strings.Repeat("█", 10), totalKm, formatDuration(took)))
	case "":
		s.prog.done(id, fmt.Sprintf("%s: landed at the dropoff; the delivery could not be read back", id))
	default:
		s.prog.done(id, fmt.Sprintf("%s: landed at the dropoff but the backend still says %s", id, stage))
	}
	return true
}

func frac(done, total float64) float64 {
	if total <= 0 {
		return 1
	}
	return min(done/total, 1)
}

func percent(done, total float64) int { return int(frac(done, total)*100 + 1e-9) }
