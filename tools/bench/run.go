// Package bench is `dronedelivery bench`: it starts the service as a separate
// process beside a bare net/http baseline, loads both over loopback with
// tools/loadgen, and writes a JSON and markdown report. One file per
// scenario: startup, ingest, end to end, dispatch; run.go holds the flags and
// the order they run in.
package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/fleetgen"
	"github.com/fabrikam/dronedelivery/tools/loadgen"
)

// benchOptions are the flags of `dronedelivery bench`.
type benchOptions struct {
	out, binary, scenarios  string
	self                    string // this binary, which serves the baseline
	connections             int
	baselineDur, ingestDur  time.Duration
	e2eRate                 float64
	e2eDur, maxDur, drain   time.Duration
	maxDeliveries           int
	startupRuns             int
	dispatchFleet, dispatch int
	analyticsLarge          int
	analyticsReads          int
	dense                   denseOptions
	quiet                   bool
	serverEnv               []string
	serveFlags              []string
}

// The bench fleet is spread wider than a demo fleet so that 100,000 drones
// are about as dense as a real city's, and pickups fall inside it.
const (
	benchFleetRadiusKm  = 20
	benchPickupRadiusKm = 15
	benchDropoffKm      = 2
	benchDataFile       = "dronedelivery.db"
)

var benchCenter = domain.Location{Latitude: 47.6062, Longitude: -122.3321}

// bench runs `dronedelivery bench`: it measures the service as a separate
// process under load from this one, beside a bare net/http baseline run on
// the same machine in the same session, and writes report.json and
// report.md. Every figure is paired with a same-run baseline, because on a
// shared machine only ratios survive.
func Run(ctx context.Context, args []string, env func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o benchOptions
	fs.StringVar(&o.out, "out", "bench", "folder for report.json and report.md")
	fs.StringVar(&o.binary, "binary", "", "the dronedelivery binary to measure (default: this one)")
	fs.StringVar(&o.scenarios, "scenarios", "startup,dispatch,baseline,ingest,e2e,e2e-max,dense,depleted,telemetry,analytics", "which scenarios to run, comma-separated")
	fs.IntVar(&o.connections, "connections", 32, "concurrent connections of the closed-loop runs, and the open-loop runs' bound on requests in flight")
	fs.DurationVar(&o.baselineDur, "baseline-duration", 5*time.Second, "length of each baseline run")
	fs.DurationVar(&o.ingestDur, "ingest-duration", 8*time.Second, "length of the ingest-only run")
	fs.Float64Var(&o.e2eRate, "e2e-rate", 1000, "deliveries per second offered in the end-to-end run")
	fs.DurationVar(&o.e2eDur, "e2e-duration", 20*time.Second, "length of the end-to-end run at -e2e-rate")
	fs.DurationVar(&o.maxDur, "max-duration", 15*time.Second, "length of the end-to-end maximum-throughput run")
	fs.IntVar(&o.maxDeliveries, "max-deliveries", 60000, "cap on the deliveries of the maximum-throughput run, which sizes its fleet")
	fs.DurationVar(&o.drain, "drain", 60*time.Second, "how long to wait for accepted deliveries to reach Scheduled after a run")
	fs.IntVar(&o.startupRuns, "startup-runs", 7, "start-ups timed per process kind (the median is reported)")
	fs.IntVar(&o.dispatchFleet, "dispatch-fleet", 100000, "fleet size of the dispatch measurement")
	fs.IntVar(&o.dispatch, "dispatch-count", 2000, "assignments timed in the dispatch measurement")
	fs.IntVar(&o.analyticsLarge, "analytics-deliveries", 100000, "deliveries in the month of the analytics scenario's large account (the small one has 1,000)")
	fs.IntVar(&o.analyticsReads, "analytics-reads", 2000, "reads timed per endpoint and account in the analytics scenario")
	o.dense.flags(fs)
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines")
	fs.Func("server-env", "KEY=VALUE added to the environment of the servers under test (repeatable), e.g. GOGC=200", func(s string) error {
		if !strings.Contains(s, "=") {
			return fmt.Errorf("want KEY=VALUE, got %q", s)
		}
		o.serverEnv = append(o.serverEnv, s)
		return nil
	})
	fs.Func("serve-flag", "flag added to the serve command of the servers under test (repeatable), e.g. -workers=32", func(s string) error {
		o.serveFlags = append(o.serveFlags, s)
		return nil
	})
	serveBaseline := fs.String("serve-baseline", "", "run only the bare net/http baseline server on this address (used by bench itself)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected argument %q", fs.Arg(0))
	}
	if *serveBaseline != "" {
		return serveBaselineHTTP(ctx, *serveBaseline)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: find this binary: %w", err)
	}
	o.self = exe
	if o.binary == "" {
		o.binary = exe
	}
	want := map[string]bool{}
	for _, s := range strings.Split(o.scenarios, ",") {
		if s = strings.TrimSpace(s); s != "" {
			want[s] = true
		}
	}
	work, err := os.MkdirTemp("", "dronedelivery-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	b := &benchRun{o: o, env: env, work: work, want: want, out: stdout,
		rep: &loadgen.Report{Title: "Drone delivery benchmark", Started: time.Now(), Machine: loadgen.DescribeMachine(),
			Command: "dronedelivery bench " + strings.Join(args, " ")}}
	if o.quiet {
		b.progress = nil
	} else {
		b.progress = stdout
	}
	err = b.run(ctx)
	b.rep.Finish()
	md, werr := b.rep.Write(o.out)
	if werr != nil {
		return errors.Join(err, werr)
	}
	fmt.Fprintf(stdout, "\n%s", md)
	fmt.Fprintf(stdout, "Report written to %s and %s\n", filepath.Join(o.out, "report.md"), filepath.Join(o.out, "report.json"))
	return err
}

// benchRun is one session's state.
type benchRun struct {
	o        benchOptions
	env      func(string) string
	work     string
	want     map[string]bool
	out      io.Writer
	progress io.Writer
	rep      *loadgen.Report

	// baselines measured earlier in the session, for the targets' ratios.
	baseMax, base1000 *loadgen.Result
	baseStartMs       float64
	baseRSS           float64
	// small and large are fleet templates: data folders to copy.
	small, large string
}

func (b *benchRun) say(format string, args ...any) {
	if b.progress != nil {
		fmt.Fprintf(b.progress, format+"\n", args...)
	}
}

func (b *benchRun) note(format string, args ...any) {
	b.rep.Notes = append(b.rep.Notes, fmt.Sprintf(format, args...))
}

func (b *benchRun) run(ctx context.Context) error {
	if err := b.fleets(ctx); err != nil {
		return err
	}
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"startup", b.startup},
		{"dispatch", b.dispatchScenario},
		{"baseline", b.baseline},
		{"ingest", b.ingest},
		{"e2e", b.endToEnd},
		{"e2e-max", b.endToEndMax},
		{"dense", b.denseScenario},
		{"depleted", b.depletedScenario},
		{"telemetry", b.telemetryScenario},
		{"analytics", b.analyticsScenario},
	}
	var errs []error
	for _, s := range steps {
		if !b.want[s.name] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		b.say("== %s", s.name)
		if err := s.fn(ctx); err != nil {
			b.say("   %s failed: %v", s.name, err)
			b.note("The %s scenario failed: %v", s.name, err)
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
		}
	}
	b.targets()
	return errors.Join(errs...)
}

// --- fleets -------------------------------------------------------------

// fleetSizes sizes the two fleet templates so that drones never run out:
// the small one for the constant-rate run, whose memory is a target, the
// large one for the maximum-throughput run and dispatch.
func (b *benchRun) fleetSizes() (small, large int) {
	small = int(math.Ceil(b.o.e2eRate*b.o.e2eDur.Seconds()*1.25)) + 100
	large = max(b.o.dispatchFleet, int(float64(b.o.maxDeliveries)*1.1)+100, small)
	return small, large
}

// fleets seeds the two fleet templates once (the small one holds a prefix
// of the large one's drones); each server then starts on a copy, so no
// scenario pays for seeding and none sees another's deliveries.
func (b *benchRun) fleets(ctx context.Context) error {
	need := b.want["dispatch"] || b.want["ingest"] || b.want["e2e"] || b.want["e2e-max"] || b.want["telemetry"]
	if !need {
		return nil
	}
	small, large := b.fleetSizes()
	start := time.Now()
	drones := fleetgen.Generate(large, benchCenter, benchFleetRadiusKm, 1, time.Now().UTC())
	b.small = filepath.Join(b.work, "fleet-small")
	b.large = filepath.Join(b.work, "fleet-large")
	if err := seedTemplate(ctx, b.small, drones[:small]); err != nil {
		return err
	}
	if err := copyData(b.small, b.large); err != nil {
		return err
	}
	if err := seedTemplate(ctx, b.large, drones[small:]); err != nil {
		return err
	}
	b.say("== fleets: %d and %d drones seeded in %.1fs", small, large, time.Since(start).Seconds())
	return nil
}
