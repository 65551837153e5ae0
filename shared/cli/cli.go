// Package cli is the command line of the one binary: under the Functions
// host it serves the custom-handler protocol; otherwise its subcommands run
// the standalone server and seed a fleet.
package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/adapters/webhook"
	"github.com/fabrikam/dronedelivery/shared/backend"
	"github.com/fabrikam/dronedelivery/shared/config"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/fleetgen"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/functionapp/host"
	"github.com/fabrikam/dronedelivery/shared/functionapp/standalone"
	"github.com/fabrikam/dronedelivery/shared/logctx"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/tracing"
	"github.com/fabrikam/dronedelivery/tools/bench"
	"github.com/fabrikam/dronedelivery/tools/simulator"
)

const usage = `usage: dronedelivery <command> [flags]

commands:
  serve     run the standalone server: every HTTP route and every queue consumer
  host      serve the Azure Functions custom-handler protocol (the default when
            FUNCTIONS_CUSTOMHANDLER_PORT or FUNCTIONS_HTTPWORKER_PORT is set)
  seed      add a generated drone fleet to the store and exit
  simulate  fly every assigned drone and report its telemetry to a running service
  deadletters  list the dead-lettered messages of every queue, or replay one (-queue q -replay id)
  reaggregate  re-derive a month's analytics from its deliveries (-month 2026-12), or compare (-check)
  bench     measure the service and its steps on this machine (make bench)
  lambda    serve AWS Lambda's runtime API (the default when Lambda starts the binary)

Run 'dronedelivery <command> -h' for the flags of each.`

// Main runs the command line and returns the process exit code. app holds
// host.json and functions/*/function.json.
func Main(args []string, app fs.FS, stdout, stderr io.Writer) int {
	env := os.Getenv
	cmd := ""
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	} else if _, ok := host.ListenAddr(); ok {
		cmd = "host"
	}
	if env(lambdaEnv) != "" {
		cmd = "lambda" // Lambda passes no arguments, the emulator the handler name
	}
	if err := checkSettings(env); err != nil {
		fmt.Fprintln(stderr, "dronedelivery:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := logctx.NewLogger(stderr, logLevel(env("LOG_LEVEL")))
	if cmd == "host" {
		// The host turns every stderr line into an Error trace; see
		// logctx.NewSplitLogger.
		log = logctx.NewSplitLogger(stdout, stderr, logLevel(env("LOG_LEVEL")))
	}
	slog.SetDefault(log)
	if cmd == "serve" || cmd == "host" || cmd == "lambda" {
		shutdown, err := tracing.Setup(ctx, env)
		if err != nil {
			fmt.Fprintln(stderr, "dronedelivery: tracing:", err)
			return 1
		}
		defer func() {
			// The spans still buffered go out before the process ends.
			flush, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := shutdown(flush); err != nil {
				log.Warn("exporting the last spans failed", "err", err)
			}
		}()
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, args, app, env, stdout, log)
	case "host":
		err = hostMode(ctx, args, app, env, log)
	case "seed":
		err = seed(ctx, args, env, stdout)
	case "lambda":
		err = lambdaMode(ctx, app, env, log)
	case "bench":
		err = bench.Run(ctx, args, env, stdout)
	case "simulate":
		err = simulate(ctx, args, env, stdout)
	case "deadletters":
		err = deadLetters(ctx, args, env, stdout, log)
	case "reaggregate":
		err = reaggregate(ctx, args, env, stdout, log)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return 0
	default:
		fmt.Fprintln(stderr, usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "dronedelivery:", err)
		return 1
	}
	return 0
}

func logLevel(s string) slog.Level {
	var l slog.Level
	if l.UnmarshalText([]byte(s)) != nil {
		return slog.LevelInfo
	}
	return l
}

// DefaultMaxBacklog bounds the embedded queues' backlog: at the measured
// throughput it is well under a minute of work, so a client told to retry
// is told early, and the SQLite file stays small.
const DefaultMaxBacklog = 50000

// common are the flags every serving command shares.
type common struct {
	dataDir   string
	fleetSize int
	center    string
	lock      time.Duration
}

func (c *common) register(fs *flag.FlagSet, env func(string) string) {
	fs.StringVar(&c.dataDir, "data-dir", envOr(env, "DATA_DIR", ".data"), "folder of the embedded backend (env DATA_DIR)")
	fs.IntVar(&c.fleetSize, "seed", envInt(env, "FLEET_SIZE", 0), "seed this many drones when the fleet has none of them yet (env FLEET_SIZE)")
	fs.StringVar(&c.center, "fleet-center", envOr(env, "FLEET_CENTER", "47.6062,-122.3321"), "latitude,longitude the seeded fleet is spread around (env FLEET_CENTER)")
	fs.DurationVar(&c.lock, "lock-duration", envDuration(env, "QUEUE_LOCK_DURATION", 30*time.Second), "embedded queue: how long a received message stays locked; after a crash its messages return after this (env QUEUE_LOCK_DURATION)")
}

// app wires handlers to a backend and reads the function bindings.
type appParts struct {
	backend   *backend.Backend
	messaging *backend.Messaging
	reg       functionapp.Registry
	fns       []functionapp.FunctionConfig
}

// open builds the app. cfg.PublicBaseURL is the runtime's guess at where
// customers reach it; the PUBLIC_BASE_URL setting overrides it.
func open(ctx context.Context, c common, app fs.FS, env func(string) string, log *slog.Logger, cfg handlers.Config) (*appParts, error) {
	fns, err := functionapp.LoadFunctions(app, "functions")
	if err != nil {
		return nil, err
	}
	mcfg, err := config.LoadMessaging(env)
	if err != nil {
		return nil, err
	}
	if mcfg.PublicBaseURL != "" {
		cfg.PublicBaseURL = mcfg.PublicBaseURL
	}
	if cfg.PublicBaseURL == "" {
		log.Warn(config.PublicBaseURL + " is not set: the links in customer messages are paths without a host")
	}
	msg, err := backend.OpenMessaging(mcfg, log)
	if err != nil {
		return nil, err
	}
	settings, err := config.Load(env)
	if err != nil {
		return nil, err
	}
	if err := dispatchSettings(env, &cfg); err != nil {
		return nil, err
	}
	cfg.Confirmation.RadiusKm = settings.ConfirmationRadiusMeters / 1000
	if settings.TelemetryClockSkew > 0 {
		cfg.Tracking.ClockSkew = settings.TelemetryClockSkew
	}
	w := settings.Webhooks
	cfg.AllowPrivateWebhooks = w.AllowPrivate
	webhooks := webhook.NewSender(webhook.Options{Timeout: w.Timeout, AllowPrivate: w.AllowPrivate},
		webhook.FairOptions{PerAccount: w.PerAccount, SlowTotal: w.SlowTotal, FailuresToOpen: w.FailuresToOpen, CoolDown: w.CoolDown, Log: log})
	timeout := w.Timeout
	if timeout == 0 {
		timeout = webhook.DefaultTimeout
	}
	if c.lock > 0 && 2*timeout > c.lock {
		// Nothing renews a message's lock while its step runs: an attempt
		// that outlives the lock lets the message run again beside it, so
		// the endpoint may be called twice (webhooks are at least once).
		// Under Lambda (no lock given) the lock is the queue's visibility
		// timeout, six times the function's timeout, which no attempt
		// outlives.
		log.Warn(config.WebhookTimeout+" is more than half the queue lock duration: a slow endpoint may get a notification twice",
			"webhookTimeout", timeout, "lockDuration", c.lock)
	}
	if w.AllowPrivate {
		log.Warn(config.WebhookAllowPrivate + " is on: webhooks may reach loopback and private addresses; never set it in production")
	}
	if cfg.TrackingLinkLifetime, err = trackingLinkLifetime(env); err != nil {
		return nil, err
	}
	cfg.Push.PollInterval = envDuration(env, PushPollIntervalSetting, 0)
	cfg.Push.KeepAlive = envDuration(env, PushKeepAliveSetting, 0)
	cfg.Push.MaxLifetime = envDuration(env, PushMaxLifetimeSetting, 0)
	wps, err := config.LoadWebPubSub(env)
	if err != nil {
		return nil, err
	}
	var push ports.Push
	if wps != nil && !cfg.Push.Events {
		client, err := backend.OpenPush(wps)
		if err != nil {
			return nil, err
		}
		push = client
		log.Info("tracking pages and the console are pushed to through " + client.Describe())
	}
	b, err := openBackendWith(ctx, c, settings, env, log)
	if err != nil {
		return nil, err
	}
	if c.fleetSize > 0 {
		if _, err := seedFleet(ctx, b, c); err != nil {
			b.Close()
			return nil, err
		}
	}
	h := handlers.New(handlers.Deps{Store: b.Store, Bus: b.Bus, Airspace: b.Airspace, Clock: platform.Clock{}, IDs: platform.IDs{},
		Webhooks: webhooks, Messenger: msg.Messenger, Outbox: msg.Outbox, Push: push, DeadLetters: b.Bus, Log: log, Config: cfg})
	reg := h.Registry()
	if err := reg.Check(fns); err != nil {
		b.Close()
		return nil, err
	}
	log.Info("customer messages", "email", msg.Email, "sms", msg.SMS, "linksStartWith", cfg.PublicBaseURL)
	return &appParts{backend: b, messaging: msg, reg: reg, fns: fns}, nil
}

// openBackend opens what the settings name: Cosmos DB and Service Bus when
// configured, the embedded backend in the data folder otherwise.
func openBackend(ctx context.Context, c common, env func(string) string, log *slog.Logger) (*backend.Backend, error) {
	cfg, err := config.Load(env)
	if err != nil {
		return nil, err
	}
	return openBackendWith(ctx, c, cfg, env, log)
}

// openExistingBackend is openBackend for the tools that read what a
// service wrote (dead letters, analytics): on the embedded backend the
// data folder must hold a store already, since a new empty one would only
// answer "nothing" about a service that keeps its data elsewhere.
func openExistingBackend(ctx context.Context, c common, env func(string) string, log *slog.Logger) (*backend.Backend, error) {
	cfg, err := config.Load(env)
	if err != nil {
		return nil, err
	}
	if !cfg.Azure && !cfg.AWS {
		path := filepath.Join(c.dataDir, backend.EmbeddedFile)
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("no embedded store at %s: name the service's data folder with -data-dir or DATA_DIR", path)
		}
	}
	return openBackendWith(ctx, c, cfg, env, log)
}

// openBackendWith is openBackend with the settings already read.
func openBackendWith(ctx context.Context, c common, cfg *config.Config, env func(string) string, log *slog.Logger) (*backend.Backend, error) {
	cfg.DataDir = c.dataDir
	return backend.Open(ctx, cfg, backend.Options{
		// DRONEDELIVERY_TEST_STORE_FAULT is the outage tests' switch (see
		// embedded.Options.FaultSwitch); unset, nothing is checked.
		Embedded:  embedded.Options{LockDuration: c.lock, FaultSwitch: env("DRONEDELIVERY_TEST_STORE_FAULT")},
		Bootstrap: envBool(env, "COSMOS_BOOTSTRAP", false),
		Log:       log,
	})
}

func seedFleet(ctx context.Context, b *backend.Backend, c common) (int, error) {
	center, err := parseCenter(c.center)
	if err != nil {
		return 0, err
	}
	return fleetgen.Seed(ctx, b.Store.Fleet, fleetgen.Generate(c.fleetSize, center, 5, 1, platform.Clock{}.Now()))
}

func serve(ctx context.Context, args []string, app fs.FS, env func(string) string, stdout io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var c common
	c.register(fs, env)
	addr := fs.String("addr", "127.0.0.1:"+envOr(env, "PORT", "7071"), "listen address (env PORT sets the port)")
	banner := fs.Bool("banner", false, "print how to use the running service; with OPERATOR_KEY unset, generate an operator key and print it")
	workers := fs.Int("workers", 16, "messages processed at once per queue")
	simulate := fs.Bool("simulate", envBool(env, "SIMULATE", false),
		"also fly every assigned drone and report its telemetry, so deliveries reach Completed (env SIMULATE=1)")
	maxBacklog := fs.Int("max-backlog", envInt(env, "MAX_BACKLOG", DefaultMaxBacklog),
		"messages waiting in the chain's queues beyond which new deliveries get 503 with Retry-After; 0 for no bound (env MAX_BACKLOG)")
	var limits rateFlags
	limits.register(fs, env)
	var conns connFlags
	conns.register(fs, env)
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file when the server stops (go tool pprof reads it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rl, err := limits.limits()
	if err != nil {
		return err
	}
	opKey, generated, err := operatorKey(env, *banner, c.dataDir)
	if err != nil {
		return err
	}
	if opKey == "" {
		log.Warn(OperatorKeySetting + " is not set: the fleet endpoints (drones, telemetry) refuse every caller")
	}
	// Listening first tells the app its own address, which the links in
	// customer messages start with unless PUBLIC_BASE_URL says otherwise.
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	hcfg := handlers.Config{OperatorKey: opKey, MaxBacklog: *maxBacklog, PublicBaseURL: base}
	hcfg.Push.Events = true
	if *simulate {
		// The simulator dates a flight ahead of the real clock (its time scale):
		// take its reports up to a day ahead unless the setting says otherwise.
		hcfg.Tracking.ClockSkew = config.MaxTelemetryClockSkew
	}
	parts, err := open(ctx, c, app, env, log, hcfg)
	if err != nil {
		ln.Close()
		return err
	}
	defer parts.backend.Close()
	srv, err := standalone.New(parts.reg, parts.fns, parts.backend.Bus, log, standalone.Options{Workers: *workers, RateLimits: rl, Conns: conns.limits(),
		Streams: standalone.StreamLimits{Max: envInt(env, "MAX_STREAMS", 0), PerAddr: envInt(env, "MAX_STREAMS_PER_ADDRESS", 0), PerPath: envInt(env, "MAX_STREAMS_PER_LINK", 0)}})
	if err != nil {
		ln.Close()
		return err
	}
	// Profiled from here, once the server has all it needs, so that a
	// start that fails leaves an earlier profile as it was.
	stopProfile, err := startCPUProfile(*cpuProfile, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopProfile()
	log.Info("standalone runtime listening", "addr", base, "backend", parts.backend.Name,
		"rateLimit", rl.PerKey.String(), "signUpRateLimit", rl.SignUp.String(),
		"maxConnections", conns.max, "maxConnectionsPerAddress", conns.perAddr)
	if *banner {
		printBanner(stdout, base, parts.backend.Name, opKey, generated, filepath.Join(c.dataDir, operatorKeyFile))
		printMessagingBanner(stdout, base, parts.messaging)
	}
	if *simulate {
		go func() {
			opts := simulator.Options{BaseURL: base, Out: stdout, OperatorKey: opKey}
			if err := simulator.Run(ctx, opts); err != nil {
				log.Error("simulator stopped", "err", err)
			}
		}()
	}
	return srv.Run(ctx, ln)
}

// OperatorKeySetting names the setting that holds the operator key.
const OperatorKeySetting = config.OperatorKey

// operatorKey reads the operator key; when it is unset and generate is
// true (make run), it makes one for this run.
func operatorKey(env func(string) string, generate bool, dataDir string) (key string, generated bool, err error) {
	key = env(OperatorKeySetting)
	if key != "" {
		return key, false, validOperatorKey(key)
	}
	if !generate {
		return "", false, nil
	}
	if key, err = keptOperatorKey(dataDir); key != "" || err != nil {
		return key, true, err
	}
	b := make([]byte, 20)
	rand.Read(b) // crypto/rand.Read never fails on supported platforms
	key = "op_" + hex.EncodeToString(b)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", false, err
	}
	path := filepath.Join(dataDir, operatorKeyFile)
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("keep the generated operator key: %w", err)
	}
	return key, true, nil
}

// operatorKeyFile, in the data folder, keeps the operator key serve
// -banner generates, so that the key stays the same across restarts and
// the simulator beside the service finds it.
const operatorKeyFile = "operator.key"

// keptOperatorKey reads the key operatorKey kept in dataDir: "" when there
// is none, an error when the file is there but its key is not usable.
func keptOperatorKey(dataDir string) (string, error) {
	path := filepath.Join(dataDir, operatorKeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	key := strings.TrimSpace(string(b))
	if err := validOperatorKey(key); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	// A copy or a restore may have widened its mode: the key opens the
	// fleet, so only its owner may read it.
	if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return "", fmt.Errorf("%s is readable by others and could not be made private: %w", path, err)
		}
	}
	return key, nil
}

// validOperatorKey refuses a key too short to resist guessing, or a
// placeholder left in a settings file.
func validOperatorKey(key string) error {
	if len(key) < 16 {
		return fmt.Errorf("%s must be at least 16 characters (openssl rand -hex 32 makes a good one)", OperatorKeySetting)
	}
	for _, c := range key {
		if c <= ' ' || c > '~' {
			return fmt.Errorf("%s must be printable ASCII without spaces (openssl rand -hex 32 makes a good one)", OperatorKeySetting)
		}
	}
	if strings.HasPrefix(key, domain.APIKeyTag) {
		return fmt.Errorf("%s must not start with %s, which marks business API keys", OperatorKeySetting, domain.APIKeyTag)
	}
	return nil
}

// rateFlags are the standalone runtime's rate-limit flags.
type rateFlags struct {
	perKey, signUp     string
	burst, signUpBurst int
	trustForwarded     bool
}

func (f *rateFlags) register(fs *flag.FlagSet, env func(string) string) {
	fs.StringVar(&f.perKey, "rate-limit", envOr(env, "RATE_LIMIT", standalone.DefaultPerKey.String()),
		"requests per account, all its API keys together (per drone, for the operator, or per client address without a key), e.g. 50/s or 600/m; off disables it and the failed-authentication limit (env RATE_LIMIT)")
	fs.IntVar(&f.burst, "rate-burst", envInt(env, "RATE_BURST", standalone.DefaultBurst), "requests an account (or a drone, the operator, an address) may send at once above its rate (env RATE_BURST)")
	fs.StringVar(&f.signUp, "signup-rate-limit", envOr(env, "SIGNUP_RATE_LIMIT", standalone.DefaultSignUp.String()),
		"sign-ups (POST /api/accounts) per client address, e.g. 20/h; off disables it (env SIGNUP_RATE_LIMIT)")
	fs.IntVar(&f.signUpBurst, "signup-burst", envInt(env, "SIGNUP_BURST", standalone.DefaultSignUpBurst), "sign-ups an address may make at once (env SIGNUP_BURST)")
	fs.BoolVar(&f.trustForwarded, "trust-forwarded-for", envBool(env, "TRUST_FORWARDED_FOR", false),
		"take the client address from X-Forwarded-For; only behind a proxy that sets it (env TRUST_FORWARDED_FOR)")
}

func (f *rateFlags) limits() (standalone.RateLimits, error) {
	perKey, err := standalone.ParseRate(f.perKey)
	if err != nil {
		return standalone.RateLimits{}, fmt.Errorf("-rate-limit: %w", err)
	}
	signUp, err := standalone.ParseRate(f.signUp)
	if err != nil {
		return standalone.RateLimits{}, fmt.Errorf("-signup-rate-limit: %w", err)
	}
	return standalone.RateLimits{
		PerKey: perKey, Burst: f.burst,
		SignUp: signUp, SignUpBurst: f.signUpBurst, SignUpFunctions: []string{"CreateAccount"},
		Exempt:            []string{"Healthz", "Readyz"},
		TrustForwardedFor: f.trustForwarded,
	}, nil
}

// connFlags are the standalone server's connection limits.
type connFlags struct {
	max, perAddr      int
	read, idle, write time.Duration
}

func (f *connFlags) register(fs *flag.FlagSet, env func(string) string) {
	fs.IntVar(&f.max, "max-connections", envInt(env, "MAX_CONNECTIONS", standalone.DefaultMaxConns),
		"open connections beyond which new ones get 503 with Retry-After; -1 for no cap (env MAX_CONNECTIONS)")
	fs.IntVar(&f.perAddr, "max-connections-per-address", envInt(env, "MAX_CONNECTIONS_PER_ADDRESS", standalone.DefaultMaxConnsPerAddr),
		"open connections from one client address beyond which its new ones get 503; -1 for no cap; off with -trust-forwarded-for (env MAX_CONNECTIONS_PER_ADDRESS)")
	fs.DurationVar(&f.read, "read-timeout", envDuration(env, "READ_TIMEOUT", standalone.DefaultReadTimeout),
		"how long a client may take to send a whole request, and at most how long a new connection may stay silent (env READ_TIMEOUT)")
	fs.DurationVar(&f.write, "write-timeout", envDuration(env, "WRITE_TIMEOUT", standalone.DefaultWriteTimeout),
		"how long handling a request and writing its answer may take (env WRITE_TIMEOUT)")
	fs.DurationVar(&f.idle, "idle-timeout", envDuration(env, "IDLE_TIMEOUT", standalone.DefaultIdleTimeout),
		"how long a kept-alive connection may wait for its next request (env IDLE_TIMEOUT)")
}

func (f *connFlags) limits() standalone.ConnLimits {
	return standalone.ConnLimits{MaxConns: f.max, MaxConnsPerAddr: f.perAddr, ReadTimeout: f.read, WriteTimeout: f.write, IdleTimeout: f.idle}
}

// Under the Functions host the backend opens after the handler listens, and
// is retried until it opens: a failure at start-up would make the process
// exit, and the host shuts itself down after three failed starts of its
// handler within 30 minutes (see host.Gate). The first
// retry comes soon, for a token that was slow to arrive; later ones back off
// to backendRetryMax, for a role assignment that takes minutes to propagate.
// backendAttemptTimeout bounds one attempt, whose requests the SDKs already
// retry on their own.
const (
	backendRetryFirst     = 500 * time.Millisecond
	backendRetryMax       = 30 * time.Second
	backendAttemptTimeout = time.Minute
)

func hostMode(ctx context.Context, args []string, app fs.FS, env func(string) string, log *slog.Logger) error {
	fs := flag.NewFlagSet("host", flag.ContinueOnError)
	var c common
	c.register(fs, env)
	startWait := fs.Duration("start-wait", host.DefaultStartWait, "how long an invocation that arrives before the backend is open waits for it before it is refused")
	if err := fs.Parse(args); err != nil {
		return err
	}
	addr, ok := host.ListenAddr()
	if !ok {
		return errors.New("FUNCTIONS_CUSTOMHANDLER_PORT is not set: the Functions host sets it when it starts this handler")
	}
	opKey := hostOperatorKey(env, log)
	// What no wait can mend stops the handler before it listens: the
	// package's own function.json files and settings that do not parse.
	fns, err := functionapp.LoadFunctions(app, "functions")
	if err != nil {
		return err
	}
	if err := handlers.New(handlers.Deps{}).Registry().Check(fns); err != nil {
		return err
	}
	if _, err := config.Load(env); err != nil {
		return err
	}
	consumeLocal := envBool(env, ConsumeEmbeddedQueuesSetting, true)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	// The platform names the app's host in WEBSITE_HOSTNAME; a custom
	// domain in front of it is PUBLIC_BASE_URL's to say.
	var public string
	if hn := env("WEBSITE_HOSTNAME"); hn != "" {
		public = "https://" + hn
	}
	gate := host.NewGate(*startWait)
	sctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var parts *appParts
	var consuming sync.WaitGroup
	opened := make(chan struct{})
	go func() {
		defer close(opened)
		p, err := openRetrying(sctx, log, func(actx context.Context) (*appParts, error) {
			return open(actx, c, app, env, log, handlers.Config{OperatorKey: opKey, PublicBaseURL: public})
		})
		if err != nil {
			return // the handler is stopping
		}
		h, err := host.New(p.reg, p.fns, p.backend.Bus, log, host.Options{})
		if err != nil {
			p.backend.Close()
			stop(err)
			return
		}
		if p.backend.Local && consumeLocal {
			// The host's serviceBusTrigger functions listen on Service Bus,
			// which never sees the embedded queues: without this the chain
			// would stop at its first message (a local `func start` with
			// no Service Bus settings).
			srv, err := standalone.New(p.reg, p.fns, p.backend.Bus, log, standalone.Options{})
			if err != nil {
				p.backend.Close()
				stop(err)
				return
			}
			consuming.Add(1)
			go func() {
				defer consuming.Done()
				srv.Consume(sctx)
			}()
			log.Warn("the embedded backend's queues are consumed by this handler, not by the host's Service Bus triggers; a deployment sets ServiceBusConnection__fullyQualifiedNamespace and CosmosDBConnection__accountEndpoint")
		}
		parts = p
		gate.Open(h)
		log.Info("custom handler ready", "backend", p.backend.Name)
	}()
	err = host.ServeListener(sctx, ln, gate, log)
	stop(nil) // ends the opener's retries if the server stopped first
	<-opened
	consuming.Wait()
	if parts != nil {
		parts.backend.Close()
	}
	if cause := context.Cause(sctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// ConsumeEmbeddedQueuesSetting, false, stops a handler under the host on
// the embedded backend from consuming its queues itself, for tests that
// play the host's Service Bus triggers on those queues by hand.
const ConsumeEmbeddedQueuesSetting = "CONSUME_EMBEDDED_QUEUES"

// hostOperatorKey reads the operator key under the host. Without a usable
// key the fleet endpoints stay closed, as serve's do, rather than the whole
// app staying down: the business API and the chain need no operator key.
func hostOperatorKey(env func(string) string, log *slog.Logger) string {
	key, _, err := operatorKey(env, false, "")
	switch {
	case err != nil:
		log.Error(OperatorKeySetting+" is not usable, so the fleet endpoints (drones, telemetry) refuse every caller", "err", err)
		return ""
	case key == "":
		log.Warn(OperatorKeySetting + " is not set: the fleet endpoints (drones, telemetry) refuse every caller")
	}
	return key
}

// openRetrying calls open until it succeeds or ctx ends, waiting a doubling
// delay between attempts, and logs every failure.
func openRetrying(ctx context.Context, log *slog.Logger, open func(context.Context) (*appParts, error)) (*appParts, error) {
	delay := backendRetryFirst
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, backendAttemptTimeout)
		parts, err := open(actx)
		cancel()
		if err == nil {
			return parts, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		log.Error("opening the backend failed; the handler answers 503 until it opens", "attempt", attempt, "retryIn", delay.String(), "err", err)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		delay = min(2*delay, backendRetryMax)
	}
}

func seed(ctx context.Context, args []string, env func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	var c common
	c.register(fs, env)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.fleetSize <= 0 {
		c.fleetSize = 50
	}
	b, err := openBackend(ctx, c, env, slog.Default())
	if err != nil {
		return err
	}
	defer b.Close()
	n, err := seedFleet(ctx, b, c)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "seeded %d new drones (fleet of %d requested) in %s\n", n, c.fleetSize, b.Name)
	return nil
}

func printBanner(w io.Writer, base, backendName, opKey string, generated bool, keyFile string) {
	fmt.Fprintf(w, `
Drone delivery backend is running at %[1]s (%[2]s).
Stop it with Ctrl-C. The API reference: %[1]s/api/docs

Sign up; the answer holds your API key, shown only this once:
  curl -s -X POST %[1]s/api/accounts -H 'Content-Type: application/json' \
    -d '{"name": "Fabrikam", "contactEmail": "ops@fabrikam.example"}'
  KEY=dd_...   # the apiKey from the answer

Request a delivery (each time a new one: its id, and its package's, are made for it):
  curl -si -X POST %[1]s/api/deliveryrequests -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d '{
    "pickupLocation": {"latitude": 47.6101, "longitude": -122.3421},
    "dropOffLocation": {"latitude": 47.6205, "longitude": -122.3493},
    "packageInfo": {"size": "Small", "weight": 1.2}
  }'

Then, with the deliveryId from the answer (its package has the same id):
  curl -s -H "Authorization: Bearer $KEY" %[1]s/api/deliveries/<deliveryId>/status
  curl -s -H "Authorization: Bearer $KEY" %[1]s/api/packages/<deliveryId>
`, base, backendName)
	if opKey == "" {
		fmt.Fprintf(w, "\nThe fleet endpoints (drones, telemetry) are closed: set %s to open them.\n\n", OperatorKeySetting)
		return
	}
	if !generated {
		// A configured key is a standing secret: a banner ends up in
		// terminal scroll-back, CI logs and screenshots, so it is not shown.
		fmt.Fprintf(w, `
The operator key opens the fleet endpoints; it is the one %[2]s holds (not shown here):
  curl -s -H "Authorization: Bearer $%[2]s" '%[1]s/api/drones?status=Available&limit=5'
The operator console (paste the key into it): %[1]s/api/console

`, base, OperatorKeySetting)
		return
	}
	fmt.Fprintf(w, `
The operator key (generated once and kept in %[4]s, so it stays the same across restarts with this data folder; set %[2]s to use your own) opens the fleet endpoints:
  %[2]s=%[3]s
  curl -s -H "Authorization: Bearer $%[2]s" '%[1]s/api/drones?status=Available&limit=5'
The operator console (paste the key into it): %[1]s/api/console

`, base, OperatorKeySetting, opKey, keyFile)
}

// printMessagingBanner says where customer e-mail and SMS go, and how to
// read them back when they are kept rather than sent, in one write, so
// that a reader of the output sees all of it or none.
func printMessagingBanner(out io.Writer, base string, m *backend.Messaging) {
	var w strings.Builder
	defer func() { io.WriteString(out, w.String()) }()
	switch {
	case m.Email == backend.KeptInOutbox && m.SMS == backend.KeptInOutbox:
		fmt.Fprintf(&w, "Customer e-mail and SMS (notify-me requests) are not sent: neither SMTP nor Azure Communication\n"+
			"Services is configured. Each message is logged and kept in an outbox instead.\n")
	case m.Unsent():
		fmt.Fprintf(&w, "Customer messages (notify-me requests): %s. Those kept in the outbox are logged without their text; GET /api/deliveries/{id}/outbox shows them.\n", m.Describe())
	default:
		fmt.Fprintf(&w, "Customer messages (notify-me requests): %s.\n\n", m.Describe())
		return
	}
	fmt.Fprintf(&w, `The delivery's business reads the outbox:
  curl -s -H "Authorization: Bearer $KEY" %[1]s/api/deliveries/<deliveryId>/outbox
Set %[2]s and %[3]s (or %[4]s and %[5]s) to send e-mail, %[4]s and %[6]s to send SMS.

`, base, config.SMTPHost, config.SMTPFrom, config.ACSEndpoint, config.ACSEmailSender, config.ACSSMSSender)
}

// The settings of the tracking page's event streams (handlers.PushConfig),
// as Go durations.
const (
	PushPollIntervalSetting = "PUSH_POLL_INTERVAL"
	PushKeepAliveSetting    = "PUSH_KEEPALIVE"
	PushMaxLifetimeSetting  = "PUSH_MAX_LIFETIME"
)

// TrackingLinkLifetimeSetting names the setting of how long a finished
// delivery's tracking link keeps working.
const TrackingLinkLifetimeSetting = "TRACKING_LINK_LIFETIME"

// trackingLinkLifetime reads TRACKING_LINK_LIFETIME: a Go duration such as
// 720h; "off" keeps links for ever; unset means the handlers' default.
func trackingLinkLifetime(env func(string) string) (time.Duration, error) {
	v := strings.TrimSpace(env(TrackingLinkLifetimeSetting))
	switch v {
	case "":
		return 0, nil
	case "off":
		return -1, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s %q must be a duration such as 720h (30 days), or off", TrackingLinkLifetimeSetting, v)
	}
	return d, nil
}

func parseCenter(s string) (domain.Location, error) {
	lat, lon, ok := strings.Cut(s, ",")
	if ok {
		la, err1 := strconv.ParseFloat(strings.TrimSpace(lat), 64)
		lo, err2 := strconv.ParseFloat(strings.TrimSpace(lon), 64)
		if err1 == nil && err2 == nil && la >= -90 && la <= 90 && lo >= -180 && lo <= 180 {
			return domain.Location{Latitude: la, Longitude: lo}, nil
		}
	}
	return domain.Location{}, fmt.Errorf("FLEET_CENTER %q must be latitude,longitude", s)
}

func envOr(env func(string) string, key, def string) string {
	if v := env(key); v != "" {
		return v
	}
	return def
}

// The settings read as numbers, which checkSettings holds to their form
// before any command runs, so that a value that does not parse stops
// start-up naming the setting rather than leaving its default in force
// unsaid. envInt and envDuration read only settings listed here.
var (
	intSettings = []string{"FLEET_SIZE", "MAX_BACKLOG", "MAX_STREAMS", "MAX_STREAMS_PER_ADDRESS", "MAX_STREAMS_PER_LINK",
		"RATE_BURST", "SIGNUP_BURST", "MAX_CONNECTIONS", "MAX_CONNECTIONS_PER_ADDRESS"}
	durationSettings = []string{"READ_TIMEOUT", "WRITE_TIMEOUT", "IDLE_TIMEOUT", "QUEUE_LOCK_DURATION",
		PushPollIntervalSetting, PushKeepAliveSetting, PushMaxLifetimeSetting}
	// boolSettings take true or false in any case (SIMULATE also 1);
	// envBool reads them.
	boolSettings = []string{"SIMULATE", "TRUST_FORWARDED_FOR", "COSMOS_BOOTSTRAP", ConsumeEmbeddedQueuesSetting}
)

// checkSettings refuses, naming it, a numeric setting or LOG_LEVEL whose
// value does not parse.
func checkSettings(env func(string) string) error {
	for _, key := range intSettings {
		if v := env(key); v != "" {
			if _, err := strconv.Atoi(strings.TrimSpace(v)); err != nil {
				return fmt.Errorf("%s is %q: it must be a whole number", key, v)
			}
		}
	}
	for _, key := range durationSettings {
		if v := env(key); v != "" {
			if d, err := time.ParseDuration(strings.TrimSpace(v)); err != nil || d <= 0 {
				return fmt.Errorf("%s is %q: it must be a positive duration such as 30s or 5m", key, v)
			}
		}
	}
	for _, key := range boolSettings {
		if _, ok := parseBoolSetting(key, env(key)); !ok {
			return fmt.Errorf("%s is %q: it must be true or false", key, env(key))
		}
	}
	if v := env("LOG_LEVEL"); v != "" {
		var l slog.Level
		if l.UnmarshalText([]byte(strings.TrimSpace(v))) != nil {
			return fmt.Errorf("LOG_LEVEL is %q: it must be debug, info, warn or error", v)
		}
	}
	return nil
}

// envBool reads a boolean setting (boolSettings); unset is def.
func envBool(env func(string) string, key string, def bool) bool {
	mustBeListed(boolSettings, key)
	v := env(key)
	if strings.TrimSpace(v) == "" {
		return def
	}
	b, _ := parseBoolSetting(key, v) // checkSettings refused any other value before a command ran
	return b
}

// parseBoolSetting reads v, the value of boolean setting key: true or
// false in any case (SIMULATE also 1); empty is false. ok is false for
// anything else.
func parseBoolSetting(key, v string) (value, ok bool) {
	v = strings.TrimSpace(v)
	switch {
	case v == "" || strings.EqualFold(v, "false"):
		return false, true
	case strings.EqualFold(v, "true") || key == "SIMULATE" && v == "1":
		return true, true
	}
	return false, false
}

func envDuration(env func(string) string, key string, def time.Duration) time.Duration {
	mustBeListed(durationSettings, key)
	if d, err := time.ParseDuration(strings.TrimSpace(env(key))); err == nil && d > 0 {
		return d
	}
	return def
}

func envInt(env func(string) string, key string, def int) int {
	mustBeListed(intSettings, key)
	if n, err := strconv.Atoi(strings.TrimSpace(env(key))); err == nil {
		return n
	}
	return def
}

func mustBeListed(settings []string, key string) {
	if !slices.Contains(settings, key) {
		panic("setting " + key + " is read as a number but checkSettings does not check it")
	}
}

// The settings of dispatch, as Go durations ("90s", "168h").
const (
	// MaxHorizonSetting is how far ahead a deadline may be (default 7 days).
	MaxHorizonSetting = "DISPATCH_MAX_HORIZON"
	// PickupToleranceSetting is how far in the past a pickupTime may be
	// (default 5 minutes).
	PickupToleranceSetting = "DISPATCH_PICKUP_TOLERANCE"
	// DispatchMarginSetting is how much earlier than its flight needs a
	// booked pickup's drone is dispatched (default 2 minutes).
	DispatchMarginSetting = "DISPATCH_MARGIN"
	// PickupEarlinessSetting is how long before pickupTime telemetry may
	// count a pickup (default 1 minute).
	PickupEarlinessSetting = "PICKUP_EARLINESS"
	// MaxAccountShareSetting caps the share (0 to 1) of an area's drones
	// one account may hold; unset, no cap.
	MaxAccountShareSetting = "DISPATCH_MAX_ACCOUNT_SHARE"
	// MaxActiveDeliveriesSetting limits the deliveries that have not
	// ended per account; unset, no limit.
	MaxActiveDeliveriesSetting = "MAX_ACTIVE_DELIVERIES"
	// DispatchRetryMaxSetting is the longest wait between two dispatch
	// attempts for a delivery no drone could take, or one a pause holds
	// (a duration; default 1 minute).
	DispatchRetryMaxSetting = "DISPATCH_RETRY_MAX"
)

// The settings of the battery model (docs/operating.md#battery-and-charging),
// each a percentage but the rate, in percent per hour.
const (
	// BatteryReserveSetting is the share of a full charge a drone never
	// flies on (default 10).
	BatteryReserveSetting = "BATTERY_RESERVE_PERCENT"
	// BatteryLowSetting sends a drone that ends a delivery below it to
	// charge (default 20).
	BatteryLowSetting = "BATTERY_LOW_PERCENT"
	// BatteryChargedSetting is the battery at which a charging drone is
	// Available again (default 95).
	BatteryChargedSetting = "BATTERY_CHARGED_PERCENT"
	// BatteryChargeRateSetting is how fast a drone charges, in percent per
	// hour, when no report says how far it got (default 60).
	BatteryChargeRateSetting = "BATTERY_CHARGE_RATE"
)

// dispatchSettings reads the dispatch settings into cfg.
func dispatchSettings(env func(string) string, cfg *handlers.Config) error {
	for _, s := range []struct {
		name string
		to   *time.Duration
	}{
		{MaxHorizonSetting, &cfg.Feasibility.MaxHorizon},
		{PickupToleranceSetting, &cfg.Feasibility.PickupTolerance},
		{DispatchMarginSetting, &cfg.DispatchMargin},
		{PickupEarlinessSetting, &cfg.Tracking.PickupTolerance},
	} {
		v := env(s.name)
		if v == "" {
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%s: %q is not a positive duration such as 90s or 168h", s.name, v)
		}
		*s.to = d
	}
	if v := env(DispatchRetryMaxSetting); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%s: %q is not a positive duration such as 90s", DispatchRetryMaxSetting, v)
		}
		cfg.RetryMax = d
		cfg.RetryBase = min(time.Second, d)
	}
	for _, s := range []struct {
		name string
		max  float64
		to   *float64
	}{
		{BatteryReserveSetting, 100, &cfg.Tracking.ReservePercent},
		{BatteryLowSetting, 100, &cfg.Tracking.LowBatteryPercent},
		{BatteryChargedSetting, 100, &cfg.Tracking.ChargedPercent},
		{BatteryChargeRateSetting, 1e9, &cfg.Tracking.ChargePercentPerHour},
	} {
		v := env(s.name)
		if v == "" {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0 && f <= s.max) {
			return fmt.Errorf("%s: %q is not a number above 0 and at most %g", s.name, v, s.max)
		}
		*s.to = f
	}
	if t := cfg.Tracking.WithDefaults(); t.ChargedPercent <= t.LowBatteryPercent || t.ReservePercent >= t.ChargedPercent {
		return fmt.Errorf("%s (%g) must be above %s (%g) and %s (%g)", BatteryChargedSetting, t.ChargedPercent,
			BatteryLowSetting, t.LowBatteryPercent, BatteryReserveSetting, t.ReservePercent)
	}
	if v := env(MaxAccountShareSetting); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > 1 {
			return fmt.Errorf("%s: %q is not a share between 0 and 1", MaxAccountShareSetting, v)
		}
		cfg.MaxAccountShare = f
	}
	if v := env(MaxActiveDeliveriesSetting); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("%s: %q is not a count", MaxActiveDeliveriesSetting, v)
		}
		cfg.MaxActiveDeliveries = n
	}
	return nil
}
