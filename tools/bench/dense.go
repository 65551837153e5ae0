package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/fleetgen"
	"github.com/fabrikam/dronedelivery/tools/loadgen"
	"github.com/fabrikam/dronedelivery/tools/simulator"
)

// The dense scenarios of issue 17: the fleet a new user seeds with
// FLEET_SIZE=40000 (all within 5 km of the centre) and pickups within the
// same 5 km, fresh and with its inner half unavailable; and the chain with
// the simulator's telemetry flowing beside it.
const denseRadiusKm = 5

// denseOptions are the flags of the dense scenarios.
type denseOptions struct {
	fleet, deliveries, depleted int
	telemetryRate               float64
}

func (o *denseOptions) flags(fs interface {
	IntVar(*int, string, int, string)
	Float64Var(*float64, string, float64, string)
}) {
	fs.IntVar(&o.fleet, "dense-fleet", 40000, "drones of the dense fleet, all within 5 km of the centre")
	fs.IntVar(&o.deliveries, "dense-deliveries", 20000, "deliveries of the dense closed-loop run (pickups within 5 km)")
	fs.IntVar(&o.depleted, "depleted-deliveries", 10000, "deliveries of the depleted run, on the dense fleet with its inner half in maintenance")
	fs.Float64Var(&o.telemetryRate, "telemetry-rate", 200, "deliveries per second offered in the run with the simulator's telemetry flowing")
}

// denseTemplate seeds the dense fleet once; depleted puts the drones of
// the inner half of the disc (within radius/√2, half its area) in
// maintenance, so that every search near the centre walks past them.
func (b *benchRun) denseTemplate(ctx context.Context, depleted bool) (string, error) {
	name := "fleet-dense"
	if depleted {
		name = "fleet-depleted"
	}
	dir := filepath.Join(b.work, name)
	start := time.Now()
	drones := fleetgen.Generate(b.o.dense.fleet, benchCenter, denseRadiusKm, 2, time.Now().UTC())
	off := 0
	if depleted {
		inner := denseRadiusKm / math.Sqrt2
		for _, d := range drones {
			if domain.DistanceKm(benchCenter, d.Location) < inner {
				d.Status = domain.DroneMaintenance
				off++
			}
		}
	}
	if err := seedTemplate(ctx, dir, drones); err != nil {
		return "", err
	}
	b.say("   %s: %d drones within %d km seeded in %.1fs (%d in maintenance)", name, len(drones), denseRadiusKm, time.Since(start).Seconds(), off)
	return dir, nil
}

// denseScenario is the closed loop of -dense-deliveries on the dense fleet,
// then the open loop at -e2e-rate on a fresh copy of it.
func (b *benchRun) denseScenario(ctx context.Context) error {
	tmpl, err := b.denseTemplate(ctx, false)
	if err != nil {
		return err
	}
	if err := b.closedLoopOn(ctx, "dense-max", tmpl, b.o.dense.deliveries); err != nil {
		return err
	}
	return b.openLoopOn(ctx, fmt.Sprintf("dense-e2e-%g/s", b.o.e2eRate), tmpl, b.o.e2eRate, nil)
}

// depletedScenario is the closed loop of -depleted-deliveries on the dense
// fleet with its inner half unavailable.
func (b *benchRun) depletedScenario(ctx context.Context) error {
	tmpl, err := b.denseTemplate(ctx, true)
	if err != nil {
		return err
	}
	return b.closedLoopOn(ctx, "depleted-max", tmpl, b.o.dense.depleted)
}

// telemetryScenario offers -telemetry-rate deliveries a second on the
// small sparse fleet while the simulator flies every assigned drone,
// reporting once a second each, so the chain shares the server with the
// telemetry of every delivery in flight.
func (b *benchRun) telemetryScenario(ctx context.Context) error {
	if b.small == "" {
		return errors.New("no sparse fleet template")
	}
	var reports atomic.Int64
	sim := func(ctx context.Context, s *server) func() {
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- simulator.Run(ctx, simulator.Options{BaseURL: s.p.Base, OperatorKey: s.key, Interval: time.Second, TimeScale: 10,
				Out: io.Discard, AfterReport: func(context.Context, simulator.Report) { reports.Add(1) }})
		}()
		start := time.Now()
		return func() {
			cancel()
			if err := <-done; err != nil {
				b.note("The simulator stopped with: %v", err)
			}
			secs := time.Since(start).Seconds()
			b.note("Telemetry beside the chain: the simulator's reports accepted, %d in %.0f s (%.0f/s), while %g deliveries/s were offered.",
				reports.Load(), secs, float64(reports.Load())/secs, b.o.dense.telemetryRate)
		}
	}
	return b.openLoopOn(ctx, fmt.Sprintf("telemetry-e2e-%g/s", b.o.dense.telemetryRate), b.small, b.o.dense.telemetryRate, sim)
}

// closedLoopOn accepts n deliveries as fast as the server answers on a
// copy of template, pickups within the dense radius, and reports how fast
// they reached Scheduled.
func (b *benchRun) closedLoopOn(ctx context.Context, name, template string, n int) error {
	s, err := b.startServer(ctx, name, template)
	if err != nil {
		return err
	}
	defer s.stop()
	accepted := make([]string, n)
	cpu0, _ := s.p.CPUTime()
	r := loadgen.Run(ctx, loadgen.Config{Name: name, Concurrency: b.o.connections, Duration: 10 * time.Minute,
		MaxOps: n, Progress: b.progress}, ingestOp(s.client, denseRadiusKm, accepted))
	loadEnd := time.Now()
	b.rep.Runs = append(b.rep.Runs, r)
	c, err := b.finish(ctx, s, name, accepted, loadEnd, cpu0)
	if err != nil {
		return err
	}
	b.rep.Completions = append(b.rep.Completions, c)
	return nil
}

// openLoopOn offers rate deliveries a second for -e2e-duration on a copy of
// template; beside, when set, runs alongside the load and returns the
// function that stops it.
func (b *benchRun) openLoopOn(ctx context.Context, name, template string, rate float64, beside func(context.Context, *server) func()) error {
	s, err := b.startServer(ctx, name, template)
	if err != nil {
		return err
	}
	defer s.stop()
	var stop func()
	if beside != nil {
		stop = beside(ctx, s)
	}
	total := int(rate * b.o.e2eDur.Seconds())
	accepted := make([]string, total)
	cpu0, _ := s.p.CPUTime()
	r := loadgen.Run(ctx, loadgen.Config{Name: name, Rate: rate, Concurrency: b.o.connections, Duration: b.o.e2eDur,
		Progress: b.progress}, ingestOp(s.client, denseRadiusKm, accepted))
	loadEnd := time.Now()
	b.rep.Runs = append(b.rep.Runs, r)
	c, err := b.finish(ctx, s, name, accepted, loadEnd, cpu0)
	if stop != nil {
		stop()
	}
	if err != nil {
		return err
	}
	b.rep.Completions = append(b.rep.Completions, c)
	return nil
}

// denseTargets are the target rows of the dense scenarios, each beside its
// same-run baseline.
func (b *benchRun) denseTargets(completion func(string) *loadgen.Completion) []loadgen.Target {
	var t []loadgen.Target
	sparse := completion("e2e-max")
	for _, run := range []struct{ name, what string }{
		{"dense-max", fmt.Sprintf("deliveries/s to Scheduled, dense fleet (%d drones within %d km, %d deliveries)", b.o.dense.fleet, denseRadiusKm, b.o.dense.deliveries)},
		{"depleted-max", fmt.Sprintf("deliveries/s to Scheduled, the dense fleet with its inner half unavailable (%d deliveries)", b.o.dense.depleted)},
	} {
		x := loadgen.Target{Name: run.what, Goal: "≥ 0.8 × the sparse e2e-max figure", HigherIsBetter: true, Unit: "/s",
			Reference: "390/s on the dense fleet before (issue 17)"}
		if sparse != nil && sparse.Throughput > 0 {
			x.Limit = 0.8 * sparse.Throughput
			x.Goal = fmt.Sprintf("≥ %.0f/s (0.8 × sparse %.0f/s)", x.Limit, sparse.Throughput)
		}
		if c := completion(run.name); c != nil && c.Completed > 0 {
			x.Measured, x.Value = true, c.Throughput
		}
		if b.baseMax != nil {
			x.Baseline, x.BaselineValue = fmt.Sprintf("bare net/http %.0f req/s", b.baseMax.Throughput), b.baseMax.Throughput
		}
		t = append(t, x)
	}
	dense := loadgen.Target{Name: fmt.Sprintf("accept → Scheduled p99 at %g/s, dense fleet", b.o.e2eRate), Goal: "≤ 100 ms", Limit: 100, Unit: "ms",
		Reference: "4 s before (issue 17)"}
	if c := completion(fmt.Sprintf("dense-e2e-%g/s", b.o.e2eRate)); c != nil && c.Completed > 0 {
		dense.Measured, dense.Value = true, c.Latency.P99Ms
	}
	if b.base1000 != nil {
		dense.Baseline, dense.BaselineValue = fmt.Sprintf("bare net/http p99 %.2f ms", b.base1000.Latency.P99Ms), b.base1000.Latency.P99Ms
	}
	t = append(t, dense)
	tele := loadgen.Target{Name: fmt.Sprintf("accept → Scheduled p99 at %g/s with telemetry flowing", b.o.dense.telemetryRate), Goal: "≤ 100 ms", Limit: 100, Unit: "ms",
		Reference: "not published"}
	if c := completion(fmt.Sprintf("telemetry-e2e-%g/s", b.o.dense.telemetryRate)); c != nil && c.Completed > 0 {
		tele.Measured, tele.Value = true, c.Latency.P99Ms
	}
	if b.base1000 != nil {
		tele.Baseline, tele.BaselineValue = fmt.Sprintf("bare net/http p99 %.2f ms", b.base1000.Latency.P99Ms), b.base1000.Latency.P99Ms
	}
	t = append(t, tele)
	return t
}
