// Package standalone runs the function app as one process: it serves every
// httpTrigger route itself and consumes every serviceBusTrigger queue from
// the configured bus, as the Functions host would, so the app runs on a
// laptop or in a container without the host.
package standalone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	goruntime "runtime"
	"slices"
	"sync"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// Options tunes the runtime; zero values mean the defaults.
type Options struct {
	// Workers is how many messages of one queue are processed at once
	// (the host's maxConcurrentCalls).
	Workers int
	// Prefetch is how many messages one receive asks for.
	Prefetch int
	// DrainTimeout bounds how long shutdown waits for in-flight work.
	DrainTimeout time.Duration
	// RateLimits are applied to every HTTP request before it is routed;
	// the zero value limits nothing.
	RateLimits RateLimits
	// Retry says when a message whose step failed transiently is tried
	// again; zero fields take DefaultRetry's.
	Retry Backoff
	// Conns bounds the HTTP server's connections and how long each may
	// take; zero fields take the defaults.
	Conns ConnLimits
	// Streams bounds the event streams held open; zero fields take the
	// defaults.
	Streams StreamLimits
}

// Backoff is when a message whose step failed because a dependency was
// unavailable (domain.EUNAVAILABLE: Cosmos DB throttling or down, the bus
// or the store refusing) is tried again.
//
// Abandoning it would have the bus deliver it again at once and count a
// delivery each time: Service Bus increments a message's delivery count on
// every abandon and dead-letters it when the count passes the queue's
// maxDeliveryCount (https://learn.microsoft.com/azure/service-bus-messaging/message-transfers-locks-settlement#peeklock,
// https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues#maximum-delivery-count),
// so a Cosmos DB throttle of a few seconds would dead-letter messages that
// would have succeeded a little later. Instead the runtime sends a copy
// scheduled for later, as a scheduled message
// (https://learn.microsoft.com/azure/service-bus-messaging/message-sequencing#scheduled-messages;
// azservicebus Message.ScheduledEnqueueTime) under a new id
// (wire.RedeliveryID), and completes the original, both in one commit on
// the embedded backend. The copy is a first delivery to the bus; the step
// is told the copies before it as deliveries. When the copies are used up
// the message is abandoned and left to the queue's maxDeliveryCount. Any
// other transient failure (a panic, a delivery not found yet) is abandoned
// at once: waiting would not help it, and the dead-letter queue is where
// a failure that repeats should show.
type Backoff struct {
	// First is the wait before the first copy; each later one waits twice
	// as long, up to Max, plus up to a quarter more at random so that
	// messages that failed together do not come back together.
	First, Max time.Duration
	// Attempts is how many copies are scheduled.
	Attempts int
}

// DefaultRetry waits 1 s, 2 s, 4 s, … up to 30 s between ten copies: about
// three minutes in all. The cap bounds how long after an outage ends a
// message waits to be tried again.
var DefaultRetry = Backoff{First: time.Second, Max: 30 * time.Second, Attempts: 10}

// delay is the wait before copy n (1 for the first).
func (b Backoff) delay(n int) time.Duration {
	d := b.First
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	return d + time.Duration(rand.Int64N(int64(d)/4+1))
}

// ConnLimits bounds the HTTP server's connections: how many may be open,
// and how long a client may take to send a request, to take an answer, and
// to send its next request on a kept-alive connection.
type ConnLimits struct {
	// MaxConns caps open connections; MaxConnsPerAddr caps those from one
	// client address, so one client cannot take them all. A connection
	// over either gets a 503 with Retry-After and is closed. Negative
	// means no cap.
	MaxConns, MaxConnsPerAddr int
	// ReadHeaderTimeout bounds reading a request's headers, and how long
	// a new connection may stay silent; ReadTimeout bounds reading the
	// whole request, body included (at most MaxBodyBytes).
	ReadHeaderTimeout, ReadTimeout time.Duration
	// WriteTimeout bounds handling a request and writing its answer. The
	// one long-lived answer, an event stream, is bounded write by write
	// instead (functionapp.StreamWriteWait).
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a kept-alive connection may wait for
	// its next request. It stays above the idle timeouts of the proxies
	// and load balancers usually put in front (60 s is common), which
	// otherwise may reuse a connection just as this server closes it.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's header block.
	MaxHeaderBytes int
}

// Defaults of ConnLimits.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultReadTimeout lets a 1 MiB body arrive at 35 KiB/s.
	DefaultReadTimeout    = 30 * time.Second
	DefaultWriteTimeout   = 60 * time.Second
	DefaultIdleTimeout    = 120 * time.Second
	DefaultMaxHeaderBytes = 64 << 10
)

func (c ConnLimits) withDefaults() ConnLimits {
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConnsPerAddr == 0 {
		c.MaxConnsPerAddr = DefaultMaxConnsPerAddr
	}
	c.ReadTimeout = positiveOr(c.ReadTimeout, DefaultReadTimeout)
	c.ReadHeaderTimeout = positiveOr(c.ReadHeaderTimeout, min(DefaultReadHeaderTimeout, c.ReadTimeout))
	c.WriteTimeout = positiveOr(c.WriteTimeout, DefaultWriteTimeout)
	c.IdleTimeout = positiveOr(c.IdleTimeout, DefaultIdleTimeout)
	c.MaxHeaderBytes = positiveOr(c.MaxHeaderBytes, DefaultMaxHeaderBytes)
	return c
}

// positiveOr is v, or def when v is zero or negative: what a setting left
// out, or set to nonsense, falls back to.
func positiveOr[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func (o Options) withDefaults() Options {
	if o.Workers <= 0 {
		// The Functions host's default maxConcurrentCalls. On the embedded
		// bus more workers mean more writes waiting at once, so larger
		// groups per commit: on two cores 32 beat 16 and 64 (BenchmarkQueueSteps).
		o.Workers = 16 * goruntime.GOMAXPROCS(0)
	}
	o.Prefetch = positiveOr(o.Prefetch, 32)
	o.DrainTimeout = positiveOr(o.DrainTimeout, 20*time.Second)
	o.Retry.First = positiveOr(o.Retry.First, DefaultRetry.First)
	if o.Retry.Max < o.Retry.First {
		o.Retry.Max = max(DefaultRetry.Max, o.Retry.First)
	}
	o.Retry.Attempts = positiveOr(o.Retry.Attempts, DefaultRetry.Attempts)
	o.Conns = o.Conns.withDefaults()
	o.Streams = o.Streams.withDefaults()
	if o.RateLimits.TrustForwardedFor {
		// Behind a proxy every connection comes from the proxy's address.
		o.Conns.MaxConnsPerAddr = -1
	}
	return o
}

// Server is the standalone runtime.
type Server struct {
	reg     functionapp.Registry
	fns     []functionapp.FunctionConfig
	bus     ports.Bus
	log     *slog.Logger
	opts    Options
	handler http.Handler
	lim     *limiter
	streams *streamGate
}

// New builds the runtime for the functions fns, checking that each has a
// handler of the right kind.
func New(reg functionapp.Registry, fns []functionapp.FunctionConfig, bus ports.Bus, log *slog.Logger, opts Options) (*Server, error) {
	reg, log, err := functionapp.Prepare(reg, fns, log)
	if err != nil {
		return nil, err
	}
	router, err := functionapp.NewRouter(reg, fns, functionapp.RoutePrefix, functionapp.WithStreams())
	if err != nil {
		return nil, err
	}
	// The limiter learns which function a request is for from the pattern
	// the router would route it by.
	names := map[string]string{}
	for _, fc := range fns {
		t := fc.Trigger()
		if t.Type != "httpTrigger" {
			continue
		}
		route := t.Route
		if route == "" {
			route = fc.Name
		}
		pattern := functionapp.RoutePattern(functionapp.RoutePrefix, route)
		names[pattern] = fc.Name
		for _, m := range fc.Methods() {
			names[m+" "+pattern] = fc.Name
		}
	}
	function := func(r *http.Request) string {
		return names[router.Pattern(r)]
	}
	s := &Server{reg: reg, fns: fns, bus: bus, log: log, opts: opts.withDefaults(), handler: router}
	s.streams = newStreamGate(s.opts.Streams, opts.RateLimits.TrustForwardedFor)
	s.handler = s.streams.wrap(s.handler, func(r *http.Request) bool { return reg[function(r)].Stream != nil })
	s.handler = newBodyBudget(opts.RateLimits.TrustForwardedFor, MaxBodyBytesPerAddr, MaxBodyBytesInFlight).wrap(s.handler)
	// A name the app does not have would silently leave its function
	// limited as any other (after a rename, say): refuse to start.
	for _, n := range slices.Concat(opts.RateLimits.SignUpFunctions, opts.RateLimits.Exempt) {
		if reg[n].HTTP == nil {
			return nil, fmt.Errorf("the rate limits name function %s, which is no HTTP function of the app", n)
		}
	}
	if opts.RateLimits.PerKey != (Rate{}) || opts.RateLimits.SignUp != (Rate{}) {
		s.lim = newLimiter(opts.RateLimits)
		s.handler = s.lim.wrap(s.handler, function)
	}
	// Outermost: every layer sees the request as the router serves it.
	s.handler = router.Resolving(s.handler)
	return s, nil
}

// limiter returns the rate limiter, if the options asked for one.
func (s *Server) limiter() (*limiter, bool) { return s.lim, s.lim != nil }

// Handler returns the HTTP side alone.
func (s *Server) Handler() http.Handler { return s.handler }

// Run serves HTTP on ln and consumes every queue until ctx ends, then stops
// taking requests and messages, lets in-flight work finish (messages not
// started go back to the queue when their lock expires), and returns.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	c := s.opts.Conns
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		ReadTimeout:       c.ReadTimeout,
		WriteTimeout:      c.WriteTimeout,
		IdleTimeout:       c.IdleTimeout,
		MaxHeaderBytes:    c.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	limited := newLimitListener(ln, max(c.MaxConns, 0), max(c.MaxConnsPerAddr, 0), s.log)
	httpErr := make(chan error, 1)
	go func() { httpErr <- limited.serve(srv) }()

	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		s.Consume(ctx)
	}()

	var err error
	select {
	case <-ctx.Done():
	case err = <-httpErr:
	}
	started := time.Now()
	s.log.Info("shutting down: no new requests or messages; those under way finish", "drainTimeout", s.opts.DrainTimeout.String())
	drain, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.DrainTimeout)
	defer cancel()
	// Streams last as long as their deliveries: they are ended, and their
	// clients reconnect to another instance or poll.
	srv.RegisterOnShutdown(s.streams.close)
	if serr := srv.Shutdown(drain); serr != nil && err == nil {
		err = serr
	}
	<-consumed
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	s.log.Info("stopped", "drainedIn", time.Since(started).Round(time.Millisecond).String())
	return err
}

// Consume consumes every queue until ctx ends, then lets the messages
// taken finish and returns. Run does it beside serving HTTP; a process
// whose HTTP comes another way (the Functions host's) can do it alone.
func (s *Server) Consume(ctx context.Context) {
	var consumers sync.WaitGroup
	for _, fc := range s.fns {
		t := fc.Trigger()
		if t.Type != "serviceBusTrigger" {
			continue
		}
		consumers.Add(1)
		go func() {
			defer consumers.Done()
			s.consume(ctx, fc.Name, t.QueueName, s.reg[fc.Name].Queue)
		}()
	}
	consumers.Wait()
}

// consume receives from queue and processes with a bounded worker pool.
// Processing and settlement use a context that outlives ctx, so a message
// taken before shutdown is finished rather than abandoned half-way.
func (s *Server) consume(ctx context.Context, name, queue string, fn functionapp.QueueFunc) {
	work := make(chan *ports.Delivered, s.opts.Workers)
	var workers sync.WaitGroup
	runCtx := context.WithoutCancel(ctx)
	for range s.opts.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for msg := range work {
				s.handle(runCtx, ctx.Done(), name, fn, msg)
			}
		}()
	}
	defer func() {
		close(work)
		workers.Wait()
	}()
	for {
		msgs, err := s.bus.Receive(ctx, queue, s.opts.Prefetch)
		if ctx.Err() != nil {
			// Messages received as ctx ended are still locked to us: finish them.
			for _, m := range msgs {
				work <- m
			}
			return
		}
		if err != nil {
			s.log.ErrorContext(ctx, "receive failed", "queue", queue, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		for _, m := range msgs {
			work <- m
		}
	}
}

// maxRuns bounds how often a step is run again at once because another
// writer changed a document it read (a lost race for a drone, say) before
// the message goes back to the bus.
const maxRuns = 8

// held keeps what a step publishes, so that it can go out together with
// the completion of the step's message.
type held struct{ msgs []ports.Message }

func (h *held) Publish(_ context.Context, msgs ...ports.Message) error {
	h.msgs = append(h.msgs, msgs...)
	return nil
}

// handle runs a step for msg and settles it. On a transactional backend
// (the embedded one) each run is a unit of work: the step's writes, what it
// publishes and the completion of msg commit in one transaction, and a run
// that lost a race to another writer is run again on fresh reads. Elsewhere
// the step writes as it goes, its messages are published, then msg is
// completed; a crash in between is repaired by the idempotent step when msg
// comes back.
//
// A step that failed transiently is tried again later (see Backoff). A
// settlement the bus refuses for a passing reason (an outage) is tried
// again with backoff while the message's lock may still hold, rather than
// left to the lock's expiry: the adapter renews a Service Bus lock for
// minutes, and the message would wait that long after the bus is back.
// stopping ends those waits at shutdown.
func (s *Server) handle(ctx context.Context, stopping <-chan struct{}, name string, fn functionapp.QueueFunc, msg *ports.Delivered) {
	tx, transactional := s.bus.(ports.Transactional)
	outside := s.reg[name].ActsOutside
	// A scheduled copy is a first delivery to the bus; the step is told
	// every earlier attempt too, so that a rule such as "not found yet, try
	// again twice" counts the copies.
	_, copies := wire.Redelivery(msg.ID)
	msg.DeliveryCount += copies
	var (
		outcome    functionapp.Outcome
		perr, serr error
	)
	for run := 1; ; run++ {
		var out held
		var pub ports.Publisher = s.bus
		var uow ports.UnitOfWork
		runCtx := ctx
		stale := func() bool { return false }
		if transactional {
			uow, pub = tx.Begin(), &out
			runCtx = ports.WithStore(ctx, uow.Store())
			if f, ok := uow.(ports.FreshReader); ok && outside {
				// Run again, it would post or send again: it reads what is
				// stored now, and a change after that leaves it be.
				f.ReadFresh()
			}
			if rc, ok := uow.(ports.ReadChecker); ok && run < maxRuns {
				// Asked once a run: by the log of a failure, then here.
				stale = sync.OnceValue(func() bool { return errors.Is(rc.CheckReads(ctx), ports.ErrStale) })
				runCtx = functionapp.WithRerun(runCtx, stale)
			}
		}
		outcome, perr = functionapp.Process(runCtx, fn, pub, msg)
		if outcome != functionapp.Done {
			if stale() {
				continue // it failed on a cached document that has changed
			}
			break
		}
		if !transactional {
			serr = s.persist(ctx, stopping, func() error { return s.bus.Complete(ctx, msg) })
			break
		}
		serr = uow.Commit(ctx, msg, out.msgs...)
		if errors.Is(serr, ports.ErrStale) && run < maxRuns {
			continue
		}
		if serr != nil && !domain.IsCode(serr, domain.ECONFLICT) {
			// Nothing was written, published or completed: the step is
			// tried again later, as when a publish fails.
			s.log.WarnContext(ctx, "committing the step failed; it will be retried", "function", name, "messageId", msg.ID, "err", serr)
			serr = s.retryLater(ctx, stopping, msg, serr)
		}
		break
	}
	switch outcome {
	case functionapp.Retry:
		serr = s.retryLater(ctx, stopping, msg, perr)
	case functionapp.Poisonous:
		serr = s.persist(ctx, stopping, func() error {
			return s.bus.DeadLetter(ctx, msg, functionapp.PoisonReason, functionapp.PoisonDescription(perr))
		})
	}
	if serr != nil {
		// The lock is gone or the bus failed: the message comes back and the
		// idempotent step runs again.
		s.log.WarnContext(ctx, "settle failed", "function", name, "messageId", msg.ID, "err", serr)
	}
}

// retryLater schedules the next copy of msg and completes msg when cause
// is a dependency's unavailability (see Backoff), or races for the same
// documents that its runs lost maxRuns times in a row (a burst of requests
// for the same drones): a copy a moment later meets less of it, where an
// abandon would come back at once and count towards the queue's
// maxDeliveryCount, and so towards the dead-letter queue. Otherwise, or
// once the copies are used up, it abandons msg.
func (s *Server) retryLater(ctx context.Context, stopping <-chan struct{}, msg *ports.Delivered, cause error) error {
	_, done := wire.Redelivery(msg.ID)
	waits := domain.ErrorCode(cause) == domain.EUNAVAILABLE || errors.Is(cause, ports.ErrStale)
	if !waits || done >= s.opts.Retry.Attempts {
		if done >= s.opts.Retry.Attempts {
			s.log.ErrorContext(ctx, "message failed after its scheduled retries; it is left to the queue's maxDeliveryCount", "messageId", msg.ID, "retries", done, "err", cause)
		} else {
			s.log.WarnContext(ctx, "message failed; it is abandoned for redelivery", "messageId", msg.ID, "err", cause)
		}
		return s.persist(ctx, stopping, func() error { return s.bus.Abandon(ctx, msg) })
	}
	next := msg.Message
	next.ID = wire.RedeliveryID(msg.ID, done+1)
	next.NotBefore = time.Now().Add(s.opts.Retry.delay(done + 1))
	if tx, ok := s.bus.(ports.Transactional); ok {
		return s.persist(ctx, stopping, func() error { return tx.Begin().Commit(ctx, msg, next) })
	}
	// The copy goes out before the original is completed: a failure in
	// between brings both back, and the idempotent step runs twice.
	return s.persist(ctx, stopping, func() error {
		if err := s.bus.Publish(ctx, next); err != nil {
			return err
		}
		return s.bus.Complete(ctx, msg)
	})
}

// Settlement retries: from settleFirst, doubling up to settleMax, for at
// most settleFor; a lock lasts a minute by default, and a message held
// longer is redelivered anyway when its lock ends.
const (
	settleFirst = 200 * time.Millisecond
	settleMax   = 5 * time.Second
	settleFor   = 2 * time.Minute
)

// persist runs a settlement until it succeeds, fails for good (a lost lock,
// an invalid request), stopping closes or settleFor has passed.
func (s *Server) persist(ctx context.Context, stopping <-chan struct{}, settle func() error) error {
	wait, deadline := settleFirst, time.Now().Add(settleFor)
	for {
		err := settle()
		if err == nil || domain.ErrorCode(err) != domain.EUNAVAILABLE || time.Now().Add(wait).After(deadline) {
			return err
		}
		s.log.WarnContext(ctx, "settling a message failed; trying again", "retryIn", wait.String(), "err", err)
		select {
		case <-stopping:
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, settleMax)
	}
}
