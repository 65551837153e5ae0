package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/tools/loadgen"
)

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
	key    string // the operator key it was started with
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
	return &server{p: p, client: c, dir: dir, key: key}, nil
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
