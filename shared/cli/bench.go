package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/adapters/sys"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/fleet"
	"github.com/fabrikam/dronedelivery/shared/loadgen"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
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
func bench(ctx context.Context, args []string, env func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o benchOptions
	fs.StringVar(&o.out, "out", "bench", "folder for report.json and report.md")
	fs.StringVar(&o.binary, "binary", "", "the dronedelivery binary to measure (default: this one)")
	fs.StringVar(&o.scenarios, "scenarios", "startup,dispatch,baseline,ingest,e2e,e2e-max", "which scenarios to run, comma-separated")
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
	need := b.want["dispatch"] || b.want["ingest"] || b.want["e2e"] || b.want["e2e-max"]
	if !need {
		return nil
	}
	small, large := b.fleetSizes()
	start := time.Now()
	drones := fleet.Generate(large, benchCenter, benchFleetRadiusKm, 1, time.Now().UTC())
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

func seedTemplate(ctx context.Context, dir string, drones []*domain.Drone) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	db, err := embedded.Open(filepath.Join(dir, benchDataFile), embedded.Options{})
	if err != nil {
		return err
	}
	f := db.Store().Fleet
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	// Several writers at once, so the embedded store can batch their commits.
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(drones) || ctx.Err() != nil {
					return
				}
				if err := f.Create(ctx, drones[i].ID, drones[i]); err != nil && !domain.IsCode(err, domain.ECONFLICT) {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return errors.Join(<-errs, ctx.Err(), db.Close())
}

// copyData copies a closed data folder's database (its WAL was
// checkpointed when it closed; a leftover one is copied too).
func copyData(from, to string) error {
	if err := os.MkdirAll(to, 0o755); err != nil {
		return err
	}
	for _, suffix := range []string{"", "-wal"} {
		src := filepath.Join(from, benchDataFile+suffix)
		in, err := os.Open(src)
		if errors.Is(err, os.ErrNotExist) && suffix != "" {
			continue
		}
		if err != nil {
			return err
		}
		out, err := os.Create(filepath.Join(to, benchDataFile+suffix))
		if err != nil {
			in.Close()
			return err
		}
		_, err = io.Copy(out, in)
		in.Close()
		if err := errors.Join(err, out.Close()); err != nil {
			return err
		}
	}
	return nil
}

// --- the server under test ----------------------------------------------

// childEnv is a clean environment for a child process: inheriting ours
// could point it at Azure or set a Functions port and measure something
// else. LOG_LEVEL is not inherited either: the servers log as they do by
// default, and their listen address is read from an info line.
func (b *benchRun) childEnv(extra ...string) []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "GOMAXPROCS", "GOGC", "GOMEMLIMIT"} {
		if v := b.env(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return append(env, extra...)
}

// serverEnv is the environment of a dronedelivery server under test.
func (b *benchRun) serverEnv(operatorKey string, extra ...string) []string {
	// The per-key rate limit stays in the request path, where it costs what
	// it costs in production, but set far above any load the bench offers
	// with its one API key.
	env := b.childEnv("OPERATOR_KEY="+operatorKey, "RATE_LIMIT=1000000/s", "RATE_BURST=1000000")
	env = append(env, b.o.serverEnv...)
	return append(env, extra...)
}

// server is a running dronedelivery serve with a client for it.
type server struct {
	p      *loadgen.Process
	client *loadgen.Client
	dir    string
}

// startServer runs `serve` on a copy of a fleet template.
func (b *benchRun) startServer(ctx context.Context, name, template string) (*server, error) {
	dir := filepath.Join(b.work, name)
	if template != "" {
		if err := copyData(template, dir); err != nil {
			return nil, err
		}
	}
	key := randomHex(16)
	opts := loadgen.StartOptions{
		Path:     b.o.binary,
		Args:     append([]string{"serve", "-addr", "127.0.0.1:0", "-data-dir", dir}, b.o.serveFlags...),
		Env:      b.serverEnv(key),
		ReadyMsg: "standalone runtime listening",
	}
	var p *loadgen.Process
	var err error
	if b.quietServer() {
		// No info line will name the address: choose the port and wait
		// for the health check instead.
		addr, aerr := loadgen.FreeAddr()
		if aerr != nil {
			return nil, aerr
		}
		opts.Args[2], opts.Base = addr, "http://"+addr
		_, p, err = loadgen.TimeToReady(ctx, opts, opts.Base+"/api/healthz")
	} else {
		p, err = loadgen.Start(ctx, opts)
	}
	if err != nil {
		return nil, err
	}
	c := loadgen.NewClient(p.Base, loadgen.ClientOptions{Connections: b.o.connections, OperatorKey: key,
		OperatorPaths: []string{"/api/drones"}, Owner: "bench", SignUp: signUp})
	// A read of a missing delivery costs nothing and makes the client get
	// an API key now, rather than inside a timed run, if the service asks.
	if _, _, err := c.Do(ctx, http.MethodGet, "/api/deliveries/bench-probe", nil, false); err != nil {
		p.Kill()
		return nil, fmt.Errorf("probe %s: %w", p.Base, err)
	}
	return &server{p: p, client: c, dir: dir}, nil
}

// quietServer reports whether -server-env sets a log level above info.
func (b *benchRun) quietServer() bool {
	for _, kv := range b.o.serverEnv {
		if v, ok := strings.CutPrefix(kv, "LOG_LEVEL="); ok {
			var l slog.Level
			return l.UnmarshalText([]byte(v)) == nil && l > slog.LevelInfo
		}
	}
	return false
}

func (s *server) stop() {
	s.client.Close()
	s.p.Stop(10 * time.Second)
}

// signUp registers a business and returns its API key; the service asks
// for one by answering 401.
func signUp(ctx context.Context, c *loadgen.Client) (loadgen.Credentials, error) {
	status, body, err := c.DoRaw(ctx, http.MethodPost, "/api/accounts", []byte(`{"name":"Bench Co","contactEmail":"bench@example.com"}`))
	if err != nil {
		return loadgen.Credentials{}, err
	}
	if status != http.StatusCreated && status != http.StatusOK {
		return loadgen.Credentials{}, fmt.Errorf("POST /api/accounts answered %d: %.200s", status, body)
	}
	var v struct {
		APIKey    string `json:"apiKey"`
		AccountID string `json:"accountId"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.APIKey == "" {
		return loadgen.Credentials{}, fmt.Errorf("POST /api/accounts gave no apiKey: %.200s", body)
	}
	return loadgen.Credentials{Key: v.APIKey, Owner: v.AccountID}, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// --- requests -----------------------------------------------------------

// requestBody is delivery request i of a run: a pickup somewhere in the
// city and a dropoff a short hop away, mostly small parcels, so every
// request is one some nearby drone can take.
func requestBody(id, owner string, i int) []byte {
	pickup := offsetKm(benchCenter, benchPickupRadiusKm*math.Sqrt(unit(i, 1)), 2*math.Pi*unit(i, 2))
	drop := offsetKm(pickup, benchDropoffKm*unit(i, 3), 2*math.Pi*unit(i, 4))
	size := "Small"
	if i%4 == 3 {
		size = "Medium"
	}
	b := make([]byte, 0, 320)
	b = append(b, `{"deliveryId":"`...)
	b = append(b, id...)
	b = append(b, `","ownerId":"`...)
	b = append(b, owner...)
	b = append(b, `","pickupLocation":{"latitude":`...)
	b = strconv.AppendFloat(b, pickup.Latitude, 'f', 6, 64)
	b = append(b, `,"longitude":`...)
	b = strconv.AppendFloat(b, pickup.Longitude, 'f', 6, 64)
	b = append(b, `},"dropOffLocation":{"latitude":`...)
	b = strconv.AppendFloat(b, drop.Latitude, 'f', 6, 64)
	b = append(b, `,"longitude":`...)
	b = strconv.AppendFloat(b, drop.Longitude, 'f', 6, 64)
	b = append(b, `},"packageInfo":{"size":"`...)
	b = append(b, size...)
	b = append(b, `","weight":`...)
	b = strconv.AppendFloat(b, 1+float64(i%10)/10, 'f', 1, 64)
	b = append(b, `,"tag":"bench"}}`...)
	return b
}

// unit is a deterministic pseudo-random number in [0,1) for request i.
func unit(i, salt int) float64 {
	x := uint64(i)*0x9e3779b97f4a7c15 + uint64(salt)*0xbf58476d1ce4e5b9
	x ^= x >> 31
	x *= 0x94d049bb133111eb
	x ^= x >> 29
	return float64(x>>11) / (1 << 53)
}

// offsetKm moves from c by km along bearing (radians from north) on a
// flat-earth approximation, plenty for a few kilometres.
func offsetKm(c domain.Location, km, bearing float64) domain.Location {
	dLat := km * math.Cos(bearing) / 111.32
	dLon := km * math.Sin(bearing) / (111.32 * math.Cos(c.Latitude*math.Pi/180))
	return domain.Location{Latitude: c.Latitude + dLat, Longitude: c.Longitude + dLon}
}

// ingestOp posts delivery request i; ids[i] records what was accepted.
func ingestOp(c *loadgen.Client, prefix string, accepted []bool) loadgen.Op {
	return func(ctx context.Context, i int) error {
		id := prefix + strconv.Itoa(i)
		status, _, err := c.Do(ctx, http.MethodPost, "/api/deliveryrequests", func(owner string) []byte {
			return requestBody(id, owner, i)
		}, false)
		if err != nil {
			return err
		}
		if status == http.StatusServiceUnavailable {
			// Shed for a backlog: a well-behaved client waits before its
			// next request rather than hammering a service that said no.
			time.Sleep(time.Second)
			return errors.New("status 503 (shed)")
		}
		if status != http.StatusAccepted {
			return fmt.Errorf("status %d", status)
		}
		if accepted != nil {
			accepted[i] = true
		}
		return nil
	}
}

// --- scenarios ----------------------------------------------------------

// startup times exec → first 200 on /api/healthz for the standalone server,
// the custom handler and the bare baseline, each on a fresh data folder.
func (b *benchRun) startup(ctx context.Context) error {
	kinds := []struct {
		name string
		opts func(addr, dir string) loadgen.StartOptions
	}{
		{"dronedelivery serve", func(addr, dir string) loadgen.StartOptions {
			return loadgen.StartOptions{Path: b.o.binary, Args: []string{"serve", "-addr", addr, "-data-dir", dir}, Env: b.serverEnv(randomHex(8))}
		}},
		{"dronedelivery as custom handler", func(addr, dir string) loadgen.StartOptions {
			_, port, _ := net.SplitHostPort(addr)
			return loadgen.StartOptions{Path: b.o.binary, Env: b.serverEnv(randomHex(8), "FUNCTIONS_CUSTOMHANDLER_PORT="+port, "DATA_DIR="+dir)}
		}},
		{"bare net/http baseline", func(addr, dir string) loadgen.StartOptions {
			return loadgen.StartOptions{Path: b.o.self, Args: []string{"bench", "-serve-baseline", addr}, Env: b.childEnv()}
		}},
	}
	for _, k := range kinds {
		var samples []time.Duration
		for run := range b.o.startupRuns {
			addr, err := loadgen.FreeAddr()
			if err != nil {
				return err
			}
			dir := filepath.Join(b.work, fmt.Sprintf("startup-%d", run))
			os.RemoveAll(dir)
			d, p, err := loadgen.TimeToReady(ctx, k.opts(addr, dir), "http://"+addr+"/api/healthz")
			if err != nil {
				return fmt.Errorf("%s: %w", k.name, err)
			}
			samples = append(samples, d)
			if run == 0 {
				// Idle: after start-up work such as the first GC has settled.
				time.Sleep(time.Second)
				if m, err := p.ReadMemory(); err == nil {
					b.rep.Memory = append(b.rep.Memory, loadgen.MemoryRow{Process: k.name, When: "idle after start-up, empty data folder", RSSMB: m.RSSMB, PeakMB: m.PeakMB})
				}
			}
			p.Stop(5 * time.Second)
		}
		s := loadgen.NewStartup(k.name, samples)
		b.rep.Startups = append(b.rep.Startups, s)
		b.say("   %-32s median %.1f ms (min %.1f, max %.1f) over %d runs", k.name, s.MedianMs, s.MinMs, s.MaxMs, s.Runs)
		if strings.HasPrefix(k.name, "bare") {
			b.baseStartMs = s.MedianMs
		}
	}
	return nil
}

// baseline measures a bare net/http server decoding and re-encoding the
// same delivery requests, in a process of its own like the server under
// test, with the same client: the yardstick for every HTTP figure.
func (b *benchRun) baseline(ctx context.Context) error {
	p, err := loadgen.Start(ctx, loadgen.StartOptions{Path: b.o.self, Args: []string{"bench", "-serve-baseline", "127.0.0.1:0"},
		Env: b.childEnv(), ReadyMsg: "baseline listening"})
	if err != nil {
		return err
	}
	defer p.Stop(5 * time.Second)
	c := loadgen.NewClient(p.Base, loadgen.ClientOptions{Connections: b.o.connections, Owner: "bench"})
	defer c.Close()
	peak := p.SampleMemory(250 * time.Millisecond)
	cpu0, _ := p.CPUTime()
	b.baseMax = loadgen.Run(ctx, loadgen.Config{Name: "baseline-max", Concurrency: b.o.connections, Duration: b.o.baselineDur, Progress: b.progress},
		ingestOp(c, "base-", nil))
	if cpu1, err := p.CPUTime(); err == nil {
		b.rep.CPU = append(b.rep.CPU, loadgen.NewCPURow("bare net/http baseline", b.baseMax.Name, cpu1-cpu0, int(b.baseMax.OK), "requests"))
	}
	b.base1000 = loadgen.Run(ctx, loadgen.Config{Name: fmt.Sprintf("baseline-%g/s", b.o.e2eRate), Rate: b.o.e2eRate, Concurrency: b.o.connections,
		Duration: b.o.baselineDur, Progress: b.progress}, ingestOp(c, "base1-", nil))
	b.baseRSS = peak()
	b.rep.Runs = append(b.rep.Runs, b.baseMax, b.base1000)
	b.rep.Memory = append(b.rep.Memory, loadgen.MemoryRow{Process: "bare net/http baseline", When: "under its load runs", RSSMB: b.baseRSS, PeakMB: b.baseRSS})
	return nil
}

// ingest measures accepting deliveries as fast as the server answers,
// with the chain consuming behind it as it always does.
func (b *benchRun) ingest(ctx context.Context) error {
	s, err := b.startServer(ctx, "ingest", b.large)
	if err != nil {
		return err
	}
	defer s.stop()
	_, large := b.fleetSizes()
	cpu0, _ := s.p.CPUTime()
	r := loadgen.Run(ctx, loadgen.Config{Name: "ingest-max", Concurrency: b.o.connections, Duration: b.o.ingestDur,
		MaxOps: large * 9 / 10, Progress: b.progress}, ingestOp(s.client, "ingest-", nil))
	if cpu1, err := s.p.CPUTime(); err == nil {
		b.rep.CPU = append(b.rep.CPU, loadgen.NewCPURow("dronedelivery serve", "ingest-max, the chain running behind", cpu1-cpu0, int(r.OK), "requests"))
	}
	b.rep.Runs = append(b.rep.Runs, r)
	return nil
}

// endToEnd offers deliveries at a constant rate and then reads every
// accepted delivery's createdAt and scheduledAt: the ingest latency at that
// rate, the accept → Scheduled latency, and the memory under that load.
func (b *benchRun) endToEnd(ctx context.Context) error {
	s, err := b.startServer(ctx, "e2e", b.small)
	if err != nil {
		return err
	}
	defer s.stop()
	name := fmt.Sprintf("e2e-%g/s", b.o.e2eRate)
	if m, err := s.p.ReadMemory(); err == nil {
		small, _ := b.fleetSizes()
		b.rep.Memory = append(b.rep.Memory, loadgen.MemoryRow{Process: "dronedelivery serve", When: fmt.Sprintf("idle, %d drones loaded", small), RSSMB: m.RSSMB, PeakMB: m.PeakMB})
	}
	total := int(b.o.e2eRate * b.o.e2eDur.Seconds())
	accepted := make([]bool, total)
	peak := s.p.SampleMemory(250 * time.Millisecond)
	cpu0, _ := s.p.CPUTime()
	r := loadgen.Run(ctx, loadgen.Config{Name: name, Rate: b.o.e2eRate, Concurrency: b.o.connections, Duration: b.o.e2eDur,
		Progress: b.progress}, ingestOp(s.client, "e2e-", accepted))
	loadEnd := time.Now()
	// Sampled while the load ran, not during the read-back that follows,
	// which loads the server far harder than the rate under test.
	rss := peak()
	m, _ := s.p.ReadMemory()
	b.rep.Memory = append(b.rep.Memory, loadgen.MemoryRow{Process: "dronedelivery serve", When: fmt.Sprintf("under %g deliveries/s (largest sample)", b.o.e2eRate), RSSMB: rss, PeakMB: m.PeakMB})
	b.rep.Runs = append(b.rep.Runs, r)
	c, err := b.finish(ctx, s, name, "e2e-", accepted, loadEnd, cpu0)
	if m, merr := s.p.ReadMemory(); merr == nil {
		b.rep.Memory = append(b.rep.Memory, loadgen.MemoryRow{Process: "dronedelivery serve", When: "after reading every delivery back at full speed", RSSMB: m.RSSMB, PeakMB: m.PeakMB})
	}
	if err != nil {
		return err
	}
	b.rep.Completions = append(b.rep.Completions, c)
	return nil
}

// endToEndMax accepts deliveries as fast as the server answers, up to
// -max-deliveries, and reports how fast they were carried to Scheduled.
func (b *benchRun) endToEndMax(ctx context.Context) error {
	s, err := b.startServer(ctx, "e2e-max", b.large)
	if err != nil {
		return err
	}
	defer s.stop()
	accepted := make([]bool, b.o.maxDeliveries)
	cpu0, _ := s.p.CPUTime()
	r := loadgen.Run(ctx, loadgen.Config{Name: "e2e-max", Concurrency: b.o.connections, Duration: b.o.maxDur,
		MaxOps: b.o.maxDeliveries, Progress: b.progress}, ingestOp(s.client, "max-", accepted))
	loadEnd := time.Now()
	b.rep.Runs = append(b.rep.Runs, r)
	c, err := b.finish(ctx, s, "e2e-max", "max-", accepted, loadEnd, cpu0)
	if err != nil {
		return err
	}
	b.rep.Completions = append(b.rep.Completions, c)
	return nil
}

// finish waits for the chain to drain, records the server's CPU time per
// delivery up to then, and reads the deliveries back.
func (b *benchRun) finish(ctx context.Context, s *server, name, prefix string, accepted []bool, loadEnd time.Time, cpu0 time.Duration) (loadgen.Completion, error) {
	ids := acceptedIDs(prefix, accepted)
	if len(ids) == 0 {
		return loadgen.Completion{}, errors.New("no delivery was accepted")
	}
	b.waitDrain(ctx, s, ids, loadEnd)
	cpu1, cerr := s.p.CPUTime()
	c, err := b.readBack(ctx, s, name, ids, loadEnd)
	if err == nil && cerr == nil {
		b.rep.CPU = append(b.rep.CPU, loadgen.NewCPURow("dronedelivery serve", name+", ingest through Scheduled", cpu1-cpu0, c.Completed, "deliveries"))
	}
	return c, err
}

// deliveryTimes is what the read-back needs of GET /api/deliveries/{id}.
type deliveryTimes struct {
	Stage       domain.Stage `json:"stage"`
	CreatedAt   time.Time    `json:"createdAt"`
	ScheduledAt *time.Time   `json:"scheduledAt"`
}

// acceptedIDs lists the ids of the deliveries a run had accepted.
func acceptedIDs(prefix string, accepted []bool) []string {
	var ids []string
	for i, ok := range accepted {
		if ok {
			ids = append(ids, prefix+strconv.Itoa(i))
		}
	}
	return ids
}

// waitDrain waits until the last deliveries accepted have left the chain,
// watching only those few so that the server is not loaded by polling.
func (b *benchRun) waitDrain(ctx context.Context, s *server, ids []string, loadEnd time.Time) {
	deadline := loadEnd.Add(b.o.drain)
	last := ids[max(0, len(ids)-16):]
	for time.Now().Before(deadline) && ctx.Err() == nil {
		done := 0
		for _, id := range last {
			if t, err := fetchTimes(ctx, s.client, id); err == nil && (t.Stage == domain.StageScheduled || t.Stage == domain.StageFailed) {
				done++
			}
		}
		if done == len(last) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.say("   chain drained %.1fs after the load", time.Since(loadEnd).Seconds())
}

// readBack reads each accepted delivery's own timestamps, reading again
// those still in the chain until the drain time is up.
func (b *benchRun) readBack(ctx context.Context, s *server, name string, ids []string, loadEnd time.Time) (loadgen.Completion, error) {
	deadline := loadEnd.Add(b.o.drain)
	spans := make([]loadgen.Span, len(ids))
	final := make([]bool, len(ids))
	for pass := 0; ; pass++ {
		var todo []int
		for i := range ids {
			if !final[i] {
				todo = append(todo, i)
			}
		}
		if len(todo) == 0 || (pass > 0 && !time.Now().Before(deadline)) || ctx.Err() != nil {
			break
		}
		if pass > 0 {
			time.Sleep(time.Second)
		}
		r := loadgen.Run(ctx, loadgen.Config{Name: name + " read-back", Concurrency: b.o.connections, Duration: time.Hour, MaxOps: len(todo)},
			func(ctx context.Context, k int) error {
				i := todo[k]
				t, err := fetchTimes(ctx, s.client, ids[i])
				if err != nil {
					return err
				}
				spans[i] = loadgen.Span{Start: t.CreatedAt, Failed: t.Stage == domain.StageFailed}
				if t.ScheduledAt != nil && t.Stage != domain.StageFailed {
					spans[i].End = *t.ScheduledAt
				}
				final[i] = t.Stage == domain.StageFailed || t.ScheduledAt != nil
				return nil
			})
		if pass == 0 {
			b.rep.Runs = append(b.rep.Runs, r)
		}
		if r.Failed > 0 {
			return loadgen.Completion{}, fmt.Errorf("read-back: %d of %d reads failed: %v", r.Failed, len(todo), r.ErrorKinds())
		}
	}
	c := loadgen.Summarise(name, spans, loadEnd)
	b.say("   %d scheduled, %d failed, %d pending; %.0f/s over %.1fs; accept→Scheduled p50 %.1f ms p99 %.1f ms",
		c.Completed, c.Failed, c.Pending, c.Throughput, c.SpanSec, c.Latency.P50Ms, c.Latency.P99Ms)
	return c, nil
}

func fetchTimes(ctx context.Context, c *loadgen.Client, id string) (*deliveryTimes, error) {
	status, body, err := c.Do(ctx, http.MethodGet, "/api/deliveries/"+id, nil, true)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET delivery: status %d", status)
	}
	var t deliveryTimes
	if err := json.Unmarshal(body, &t); err != nil {
		return nil, fmt.Errorf("GET delivery: %w", err)
	}
	return &t, nil
}

// --- dispatch -----------------------------------------------------------

// dispatchScenario times the scheduling step in this process on a fleet of
// -dispatch-fleet drones: the whole ScheduleDrone handler per assignment
// (search, reservation, claim, record), its candidate search alone through
// the spatial index, and the same search as a linear scan of the fleet.
func (b *benchRun) dispatchScenario(ctx context.Context) error {
	dir := filepath.Join(b.work, "dispatch")
	if err := copyData(b.large, dir); err != nil {
		return err
	}
	db, err := embedded.Open(filepath.Join(dir, benchDataFile), embedded.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	store := db.Store()
	all, err := listFleet(ctx, store.Fleet)
	if err != nil {
		return err
	}
	if len(all) > b.o.dispatchFleet {
		// Drop the surplus so the fleet is the size asked for.
		for _, d := range all[b.o.dispatchFleet:] {
			if _, err := store.Fleet.Update(ctx, d.ID, func(d *domain.Drone) error { d.Status = domain.DroneMaintenance; return nil }); err != nil {
				return err
			}
		}
		all = all[:b.o.dispatchFleet]
	}
	n := b.o.dispatch
	now := time.Now().UTC()
	reqs := make([]*domain.DeliveryRequest, n)
	for i := range n {
		p, err := domain.ParseDeliveryRequest(requestBody(fmt.Sprintf("dispatch-%d", i), "bench", i))
		if err != nil {
			return err
		}
		p.Request.Defaults(now, fmt.Sprintf("dispatch-%d", i))
		reqs[i] = &p.Request
	}
	tag := fmt.Sprintf("%dk drones", len(all)/1000)

	// The searches first, on the untouched fleet.
	const radius = 200.0
	var sink atomic.Int64
	searches := min(n, 500)
	// Each timed run starts from a collected heap, so that garbage of the
	// setup (the whole fleet decoded for the linear scan) is not charged
	// to it as GC work.
	goruntime.GC()
	index := loadgen.Run(ctx, loadgen.Config{Name: "dispatch search, spatial index, " + tag, Concurrency: 1, Duration: time.Hour, MaxOps: n},
		func(ctx context.Context, i int) error {
			for d, km := range store.Fleet.NearestAvailable(ctx, reqs[i].PickupLocation) {
				if km > radius {
					break
				}
				if domain.Unfit(d, reqs[i]) == "" {
					sink.Add(1)
					return nil
				}
			}
			return errors.New("no drone")
		})

	linear := loadgen.Run(ctx, loadgen.Config{Name: "dispatch search, linear scan, " + tag, Concurrency: 1, Duration: time.Hour, MaxOps: searches},
		func(_ context.Context, i int) error {
			best, bestKm := -1, math.Inf(1)
			for k, d := range all {
				if domain.Unfit(d, reqs[i]) != "" {
					continue
				}
				if km := domain.DistanceKm(d.Location, reqs[i].PickupLocation); km < bestKm && km <= radius {
					best, bestKm = k, km
				}
			}
			if best < 0 {
				return errors.New("no drone")
			}
			sink.Add(int64(best))
			return nil
		})
	all = nil
	goruntime.GC()

	// Then whole assignments, which claim drones as a real run does.
	h := handlers.New(handlers.Deps{Store: store, Bus: db.Bus(), Clock: sys.Clock{}, IDs: sys.IDs{}, Log: slog.New(slog.DiscardHandler)})
	msgs := make([]*ports.Delivered, n)
	for i := range n {
		id := fmt.Sprintf("dispatch-%d", i)
		d := &domain.Delivery{ID: id, TrackingID: randomHex(10), OwnerID: "bench", CorrelationID: id, Request: *reqs[i],
			Stage: domain.StageCreated, CreatedAt: now, UpdatedAt: now, History: []domain.Event{{Stage: domain.StageCreated, At: now}}}
		if err := store.Deliveries.Create(ctx, id, d); err != nil {
			return err
		}
		body, _ := json.Marshal(domain.Envelope{Operation: domain.OpDelivery, DeliveryID: id, CorrelationID: id})
		msgs[i] = &ports.Delivered{Message: ports.Message{ID: id + ":requested", Queue: topology.QueueDeliveryRequests, Body: body, CorrelationID: id}, DeliveryCount: 1}
	}
	// Each assigned drone is freed again, untimed, so that every
	// assignment searches a fleet of the full size.
	whole := loadgen.Measure(ctx, "dispatch ScheduleDrone, "+tag, n, func(ctx context.Context, i int) (time.Duration, error) {
		start := time.Now()
		out, err := h.ScheduleDrone(ctx, msgs[i])
		took := time.Since(start)
		if err != nil {
			return 0, err
		}
		if len(out) != 1 || out[0].Queue != topology.QueueDroneScheduled {
			return 0, errors.New("no drone assigned")
		}
		d, err := store.Deliveries.Find(ctx, msgs[i].CorrelationID)
		if err != nil {
			return 0, err
		}
		_, err = store.Fleet.Update(ctx, d.DroneID, func(dr *domain.Drone) error {
			dr.Status, dr.CurrentDeliveryID = domain.DroneAvailable, ""
			return nil
		})
		return took, err
	})
	b.rep.Runs = append(b.rep.Runs, whole, index, linear)
	b.say("   ScheduleDrone p99 %.3f ms; search p99 %.3f ms with the index, %.3f ms by linear scan (%s)",
		whole.Latency.P99Ms, index.Latency.P99Ms, linear.Latency.P99Ms, tag)
	return nil
}

func listFleet(ctx context.Context, f ports.Fleet) ([]*domain.Drone, error) {
	var all []*domain.Drone
	after := ""
	for {
		page, err := f.List(ctx, domain.DroneAvailable, after, 1000)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < 1000 {
			return all, nil
		}
		after = page[len(page)-1].ID
	}
}

// --- the baseline server ------------------------------------------------

// serveBaselineHTTP is the bare net/http server of the baseline: it decodes
// each delivery request and encodes it back, the least any JSON API does.
func serveBaselineHTTP(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("POST /api/deliveryrequests", func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		json.NewEncoder(w).Encode(m)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	slog.Info("baseline listening", "addr", "http://"+ln.Addr().String())
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// --- targets ------------------------------------------------------------

// targets sets the report's target table from the runs of this session.
func (b *benchRun) targets() {
	find := func(prefix string) *loadgen.Result {
		for _, r := range b.rep.Runs {
			if strings.HasPrefix(r.Name, prefix) {
				return r
			}
		}
		return nil
	}
	completion := func(name string) *loadgen.Completion {
		for i := range b.rep.Completions {
			if b.rep.Completions[i].Name == name {
				return &b.rep.Completions[i]
			}
		}
		return nil
	}
	var t []loadgen.Target

	through := loadgen.Target{Name: "deliveries/s accepted and carried to Scheduled", Goal: "≥ 5,000/s", Limit: 5000, HigherIsBetter: true, Unit: "/s",
		Reference: "1,100/s (35 workflow replicas on AKS)"}
	if c := completion("e2e-max"); c != nil {
		through.Measured, through.Value = true, c.Throughput
	}
	if b.baseMax != nil {
		through.Baseline, through.BaselineValue = fmt.Sprintf("bare net/http %.0f req/s", b.baseMax.Throughput), b.baseMax.Throughput
	}
	t = append(t, through)

	e2eName := fmt.Sprintf("e2e-%g/s", b.o.e2eRate)
	ingest := loadgen.Target{Name: fmt.Sprintf("ingest p99 at %g/s", b.o.e2eRate), Goal: "≤ 10 ms", Limit: 10, Unit: "ms",
		Reference: "2,540 ms (ingestion p99, 10 replicas)"}
	if r := find(e2eName); r != nil && r.OK > 0 {
		ingest.Measured, ingest.Value = true, r.Latency.P99Ms
	}
	if b.base1000 != nil {
		ingest.Baseline, ingest.BaselineValue = fmt.Sprintf("bare net/http p99 %.2f ms", b.base1000.Latency.P99Ms), b.base1000.Latency.P99Ms
	}
	t = append(t, ingest)

	sched := loadgen.Target{Name: fmt.Sprintf("accept → Scheduled p99 at %g/s", b.o.e2eRate), Goal: "≤ 100 ms", Limit: 100, Unit: "ms",
		Reference: "2,540 ms (workflow p99)"}
	if c := completion(e2eName); c != nil && c.Completed > 0 {
		sched.Measured, sched.Value = true, c.Latency.P99Ms
	}
	if b.base1000 != nil {
		sched.Baseline, sched.BaselineValue = fmt.Sprintf("bare net/http p99 %.2f ms", b.base1000.Latency.P99Ms), b.base1000.Latency.P99Ms
	}
	t = append(t, sched)

	disp := loadgen.Target{Name: fmt.Sprintf("dispatch p99 per assignment, %d drones", b.o.dispatchFleet), Goal: "≤ 1 ms", Limit: 1, Unit: "ms",
		Reference: "none: a stub returning a random id"}
	if r := find("dispatch ScheduleDrone"); r != nil && r.OK > 0 {
		disp.Measured, disp.Value = true, r.Latency.P99Ms
	}
	if r := find("dispatch search, linear"); r != nil && r.OK > 0 {
		disp.Baseline, disp.BaselineValue = fmt.Sprintf("linear-scan search p99 %.2f ms", r.Latency.P99Ms), r.Latency.P99Ms
	}
	t = append(t, disp)

	for _, name := range []string{"dronedelivery serve", "dronedelivery as custom handler"} {
		st := loadgen.Target{Name: "start-up to first 200, " + strings.TrimPrefix(name, "dronedelivery "), Goal: "≤ 50 ms", Limit: 50, Unit: "ms", Reference: "not published"}
		for _, s := range b.rep.Startups {
			if s.Name == name && s.Runs > 0 {
				st.Measured, st.Value = true, s.MedianMs
			}
		}
		if b.baseStartMs > 0 {
			st.Baseline, st.BaselineValue = fmt.Sprintf("bare net/http %.1f ms", b.baseStartMs), b.baseStartMs
		}
		t = append(t, st)
	}

	mem := loadgen.Target{Name: fmt.Sprintf("resident memory at %g deliveries/s", b.o.e2eRate), Goal: "≤ 60 MB", Limit: 60, Unit: "MB", Reference: "not published"}
	for _, m := range b.rep.Memory {
		if m.Process == "dronedelivery serve" && strings.HasPrefix(m.When, "under") {
			mem.Measured, mem.Value = true, m.RSSMB
		}
	}
	if b.baseRSS > 0 {
		mem.Baseline, mem.BaselineValue = fmt.Sprintf("bare net/http %.1f MB", b.baseRSS), b.baseRSS
	}
	t = append(t, mem)
	b.rep.Targets = t
	if !slices.ContainsFunc(t, func(x loadgen.Target) bool { return x.Measured }) {
		b.note("No target was measured in this session.")
	}
}
