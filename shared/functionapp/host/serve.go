package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// shutdownGrace is how long in-flight invocations may run on after the
// context ends; an invocation cut off mid-way is redelivered, so this only
// spares work, and it stays short because the host will not wait long.
const shutdownGrace = 20 * time.Second

// functionTimeout is host.json's: past it the host does not just give the
// invocation up, it restarts the worker, killing the handler with every
// other invocation in flight (WebScriptHostExceptionHandler.OnTimeoutExceptionAsync:
// "A function timeout has occurred. Restarting worker process",
// HttpFunctionInvocationDispatcher.RestartWorkerWithInvocationIdAsync,
// WorkerProcess.Dispose killing the process, in Azure/azure-functions-host),
// and it sends the invocation without a deadline the handler could see
// (DefaultHttpWorkerService). A test holds the two together.
const functionTimeout = 5 * time.Minute

// invocationBudget is how long an invocation may run here, from its
// arrival (a Gate's wait included), before its context ends: its step then
// stops as on any transient failure, and settleTime is left to schedule
// its retry and answer, before functionTimeout.
const (
	settleTime       = 30 * time.Second
	invocationBudget = functionTimeout - settleTime
)

// Timeouts of the server the Functions host talks to. Only the local host
// connects, but it forwards what callers send, so the server bounds what a
// request may take without cutting off anything the host may need:
//   - writeTimeout bounds an invocation from its request to the end of its
//     answer. It stays above host.json's functionTimeout (5 minutes), which
//     invocationBudget keeps every invocation within.
//     https://learn.microsoft.com/azure/azure-functions/functions-host-json#functiontimeout
//   - idleTimeout stays above the idle time after which the host's .NET
//     HttpClient drops a pooled connection (1 minute on .NET 6 and later, 2
//     before), so the handler never closes a connection the host is about
//     to reuse, which would fail that invocation.
//     https://learn.microsoft.com/dotnet/api/system.net.http.socketshttphandler.pooledconnectionidletimeout
//   - maxHeaderBytes stays above the 32 KB of headers the host's Kestrel
//     accepts from a caller, so whatever it forwards fits.
//     https://learn.microsoft.com/aspnet/core/fundamentals/servers/kestrel/options#maximum-request-header-size
//
// No connection cap applies: the host's own settings (http
// maxConcurrentRequests, serviceBus maxConcurrentCalls in host.json) bound
// how many invocations it makes at once, and a refused invocation is a
// failed one.
const (
	readHeaderTimeout = 10 * time.Second
	// readTimeout bounds reading an invocation, body included. The host
	// streams a forwarded body at the pace its caller uploads it
	// (HttpRequestExtensions.ToHttpRequestMessage, a StreamContent over
	// the caller's body), and a body cut off makes the host answer the
	// caller 500; but the bodies the API takes are at most 1 MiB, most a
	// few hundred bytes, and a caller who takes two minutes over one is
	// holding one of the host's request slots (http maxConcurrentRequests)
	// more than sending.
	readTimeout    = 2 * time.Minute
	writeTimeout   = 10 * time.Minute
	idleTimeout    = 5 * time.Minute
	maxHeaderBytes = 64 << 10
)

// ListenAddr returns the loopback address the host told us to serve on,
// reading the older variable too so the handler runs under any v4 host.
func ListenAddr() (string, bool) { return listenAddr(os.LookupEnv) }

func listenAddr(lookup func(string) (string, bool)) (string, bool) {
	for _, key := range []string{"FUNCTIONS_CUSTOMHANDLER_PORT", "FUNCTIONS_HTTPWORKER_PORT"} {
		if v, ok := lookup(key); ok && strings.TrimSpace(v) != "" {
			return net.JoinHostPort("127.0.0.1", strings.TrimSpace(v)), true
		}
	}
	return "", false
}

// Serve listens on addr at once, because the host counts the handler ready
// when the port answers, and serves h until ctx ends.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ServeListener(ctx, ln, h, log)
}

// newServer is the server for h, with the timeouts above and each
// invocation's context ending after invocationBudget.
func newServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           budgeted(h, invocationBudget),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// ServeListener serves h on ln until ctx ends, then lets in-flight
// invocations finish so their messages settle instead of being redelivered;
// it returns nil after such a shutdown.
func ServeListener(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	srv := newServer(h, log)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.InfoContext(ctx, "custom handler listening", "addr", ln.Addr().String())

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close() // the grace is over; cut the stragglers off
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.InfoContext(ctx, "custom handler stopped")
	return nil
}

// budgeted ends each request's context budget after it arrived.
func budgeted(h http.Handler, budget time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), budget)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}
