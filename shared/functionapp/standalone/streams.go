package standalone

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

// StreamLimits bounds the event streams (server-sent events) the server
// holds open. A stream is a connection that stays open for as long as its
// delivery runs, so streams get caps of their own, below the connection
// caps, so that they can never take the connections every other request
// needs. A stream over a cap gets 429 with Retry-After, and the tracking
// page falls back to polling.
type StreamLimits struct {
	// Max caps the streams open at once; PerAddr those from one client
	// address; PerPath those on one path (one tracking link). Negative
	// means no cap.
	Max, PerAddr, PerPath int
}

// Defaults of StreamLimits: a quarter of the connection caps for all
// streams, so a flood of watchers leaves three quarters of the server to
// everything else; 32 from one address (a household or an office behind
// NAT watching its deliveries); 8 on one tracking link (the tabs and
// devices of the people it was sent to).
const (
	DefaultMaxStreams        = DefaultMaxConns / 4
	DefaultMaxStreamsPerAddr = 32
	DefaultMaxStreamsPerPath = 8
)

func (l StreamLimits) withDefaults() StreamLimits {
	if l.Max == 0 {
		l.Max = DefaultMaxStreams
	}
	if l.PerAddr == 0 {
		l.PerAddr = DefaultMaxStreamsPerAddr
	}
	if l.PerPath == 0 {
		l.PerPath = DefaultMaxStreamsPerPath
	}
	return l
}

// streamGate counts the open streams and ends them all at shutdown: the
// HTTP server's Shutdown waits for every answer to finish, and a stream's
// answer finishes only when its delivery does.
type streamGate struct {
	lim  StreamLimits
	xff  bool
	stop chan struct{}
	once sync.Once

	mu     sync.Mutex
	open   int
	byAddr map[string]int
	byPath map[string]int
	wg     sync.WaitGroup
}

func newStreamGate(lim StreamLimits, trustForwardedFor bool) *streamGate {
	return &streamGate{lim: lim, xff: trustForwardedFor, stop: make(chan struct{}), byAddr: map[string]int{}, byPath: map[string]int{}}
}

// wrap admits the requests of stream functions (isStream) within the caps.
// It stands after the router's Resolving, so a link is counted by the path
// it is served as, whatever its case or trailing slash.
func (g *streamGate) wrap(next http.Handler, isStream func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isStream(r) {
			next.ServeHTTP(w, r)
			return
		}
		addr, path := clientAddr(r, g.xff), r.URL.Path
		if why := g.admit(addr, path); why != "" {
			resp := functionapp.Problem(http.StatusTooManyRequests, "", "too many event streams: "+why+"; retry after 5 s, or poll the feed")
			resp.Header.Set("Retry-After", strconv.Itoa(5))
			functionapp.WriteResponse(w, resp)
			return
		}
		defer g.release(addr, path)
		ctx, cancel := contextUntil(r.Context(), g.stop)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func (g *streamGate) admit(addr, path string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.lim.Max > 0 && g.open >= g.lim.Max:
		return fmt.Sprintf("the server holds %d, its limit", g.open)
	case g.lim.PerAddr > 0 && g.byAddr[addr] >= g.lim.PerAddr:
		return fmt.Sprintf("this address holds %d, its limit", g.byAddr[addr])
	case g.lim.PerPath > 0 && g.byPath[path] >= g.lim.PerPath:
		return fmt.Sprintf("this link has %d open, its limit", g.byPath[path])
	}
	g.open++
	g.byAddr[addr]++
	g.byPath[path]++
	g.wg.Add(1)
	return ""
}

func (g *streamGate) release(addr, path string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open--
	if g.byAddr[addr]--; g.byAddr[addr] <= 0 {
		delete(g.byAddr, addr)
	}
	if g.byPath[path]--; g.byPath[path] <= 0 {
		delete(g.byPath, path)
	}
	g.wg.Done()
}

// counts reports the streams open.
func (g *streamGate) counts() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open
}

// close ends every stream and waits for their handlers to return.
func (g *streamGate) close() {
	g.once.Do(func() { close(g.stop) })
	g.wg.Wait()
}

// contextUntil is ctx, also cancelled when stop closes.
func contextUntil(ctx context.Context, stop <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
