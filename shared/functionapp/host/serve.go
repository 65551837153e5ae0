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

// ServeListener serves h on ln until ctx ends, then lets in-flight
// invocations finish so their messages settle instead of being redelivered;
// it returns nil after such a shutdown.
func ServeListener(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	srv := &http.Server{
		Handler: h,
		// No read or write timeout: an invocation runs as long as the
		// function's timeout allows, and only the local host connects.
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
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
