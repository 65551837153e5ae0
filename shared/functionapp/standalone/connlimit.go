package standalone

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Connection limits. Each open connection costs a goroutine and buffers
// however little it sends, so a client that opens thousands and sends
// nothing (or a body a byte a minute) could hold the server without
// tripping any request limit. The server's timeouts bound how long a
// connection may stay silent or slow; these caps bound how many may be
// open at once.
//
// The cap per client address is what keeps everyone else served: one
// address that opens more than its share gets refusals while the global
// cap still has room for other clients. The global cap bounds memory when
// many addresses do it at once. At the global cap a new connection takes
// the place of one of the address that holds the most that has waited on
// its client for 2 s or more (defaultEvictAfter), which is closed: a
// keep-alive connection idle between requests, a new one that has sent no
// request (or only part of its head), or one whose request's body has
// arrived, since its head, slower than defaultMinBodyRate, or has had no
// byte for 2 s (defaultBodyStall). A few addresses that
// open their share each and keep it alive with a request now and then,
// open silent ones again as the header timeout cuts them, or trickle
// bodies a byte at a time within the read timeout could otherwise hold
// every place. Closing a connection idle that long is what its idle
// timeout would do, sooner; a client that sends a request on it as it
// closes meets the race every keep-alive client handles; an upload that
// keeps up defaultMinBodyRate, its bytes still coming, is left alone,
// however long it takes. Only when no
// connection has waited that long (each one's request has arrived, or is
// arriving fast enough, or is being answered) are new ones refused,
// clearly.
//
// The cap per address is a quarter of the global one: one address may be a
// whole fleet's gateway or an office behind NAT (the simulator, one
// connection per drone in flight, passed 256 under the crash test), yet no
// single address can take more than a quarter of the server. An idle
// connection costs about 16 KiB (its goroutine and buffers), so the global
// cap bounds them to some 64 MiB.
const (
	DefaultMaxConns        = 4096
	DefaultMaxConnsPerAddr = 1024
	// refusalsInFlight bounds the goroutines answering refused
	// connections; beyond it a refused connection is closed without an
	// answer, as a flood of them would otherwise cost what the cap saves.
	refusalsInFlight = 64
	// refusalWait bounds how long a refused connection is given to send
	// its request's head, and then to take its answer.
	refusalWait = time.Second
	// refusalHeadBytes bounds what is read of a refused request's head.
	refusalHeadBytes = 16 << 10
	// defaultEvictAfter is how long a connection must have waited on its
	// client (idle, new without a request, or for the rest of a body)
	// before a newcomer at the cap may take its place.
	defaultEvictAfter = 2 * time.Second
	// maxBodyDrain bounds what is read and dropped of a refused request's
	// body before its connection is closed.
	maxBodyDrain = 64 << 10
)

// limitListener accepts connections up to a global cap and a cap per
// remote address; a connection over either is answered with a minimal
// 503 problem document and Retry-After and closed, unlike
// netutil.LimitListener, which stops accepting and leaves clients waiting
// in the kernel's queue with no answer.
type limitListener struct {
	net.Listener
	max, perAddr int // zero: no cap

	mu     sync.Mutex
	open   int
	byAddr map[string]int
	// waiting are the connections waiting on their client, with since
	// when: new or between requests (connState), or with a request whose
	// body has not all arrived (from its head to the body's end, arrived):
	// those a new connection over the global cap may take the place of,
	// once they have waited evictAfter (and, for a body, while it arrives
	// slower than minBodyRate or has stalled for bodyStall).
	waiting     map[*limitedConn]waitingSince
	evictAfter  time.Duration
	minBodyRate float64       // bytes a second
	bodyStall   time.Duration // with no byte of a body for this long, it waits

	refusing chan struct{}

	// Refusals are logged at most once per refusalLogGap, with how many
	// there were since the last line.
	log        *slog.Logger
	refused    int
	lastLogged time.Time
}

// refusalLogGap spaces the log lines about refused connections, so a flood
// of them does not become a flood of log lines.
const refusalLogGap = 10 * time.Second

func newLimitListener(ln net.Listener, max, perAddr int, log *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, max: max, perAddr: perAddr, byAddr: map[string]int{}, waiting: map[*limitedConn]waitingSince{}, evictAfter: defaultEvictAfter, minBodyRate: defaultMinBodyRate, bodyStall: defaultBodyStall,
		refusing: make(chan struct{}, refusalsInFlight), log: log}
}

// Accept returns the next connection within the caps, answering and
// closing those over them.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := remoteHost(c)
		why, evict := l.admit(addr)
		if why != "" {
			l.refuse(c, why)
			continue
		}
		if evict != nil {
			// Closed outside the lock: it gives its place back.
			evict.Close()
		}
		lc := &limitedConn{Conn: c, addr: addr}
		lc.release = func() { l.release(addr, lc) }
		return lc, nil
	}
}

// serve wires srv to the listener and serves it: the server's connection
// states, and its handler's news of when a request has arrived whole, tell
// the listener which connections wait on their client.
func (l *limitListener) serve(srv *http.Server) error {
	srv.ConnState = l.connState
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}
	next := srv.Handler
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if lc, ok := r.Context().Value(connKey{}).(*limitedConn); ok {
			if r.Body == nil || r.Body == http.NoBody {
				l.arrived(lc)
			} else {
				r.Body = &arrivingBody{ReadCloser: r.Body, l: l, c: lc}
			}
		}
		next.ServeHTTP(w, r)
	})
	return srv.Serve(l)
}

// connKey is the request context's key of the connection it came on.
type connKey struct{}

// connState follows the server's connections (http.Server.ConnState): new,
// or idle between requests, a connection waits on its client; active, its
// request's head has arrived and it still does until the body has
// (arrived). The server reports a connection active only once the head
// has been read, so a head sent slowly leaves it waiting as new or idle.
func (l *limitListener) connState(c net.Conn, st http.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch st {
	case http.StateNew, http.StateIdle:
		l.waiting[lc] = waitingSince{at: time.Now()}
	case http.StateActive:
		now := time.Now()
		lc.bodyBytes.Store(0)
		lc.lastBody.Store(int64(now.Sub(epoch)))
		l.waiting[lc] = waitingSince{at: now, body: true}
	default:
		delete(l.waiting, lc)
	}
}

// arrived records that c's request has arrived whole: it is the server's
// turn now.
func (l *limitListener) arrived(c *limitedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.waiting, c)
}

// waitingSince is since when a connection has waited on its client, and
// whether for the rest of a request's body.
type waitingSince struct {
	at   time.Time
	body bool
}

// defaultMinBodyRate is the pace, in bytes a second since its head, below
// which a request's body waits on its client like an idle connection: well
// under the 35 KiB/s at which the largest body fits the read timeout
// (DefaultReadTimeout), and far above a byte now and then.
const defaultMinBodyRate = 8 << 10

// defaultBodyStall is how long a body may have no byte arrive before it
// waits on its client whatever its pace so far: a burst up front then
// silence is a stall, not an upload.
const defaultBodyStall = 2 * time.Second

// epoch is what body times are counted from: durations since it follow
// the monotonic clock, which a step of the wall clock does not move.
var epoch = time.Now()

// arrivingBody counts the bytes of its body on its connection c, and tells
// l when it has been read to its end.
type arrivingBody struct {
	io.ReadCloser
	l *limitListener
	c *limitedConn
}

func (b *arrivingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.c.bodyBytes.Add(int64(n))
		b.c.lastBody.Store(int64(time.Since(epoch)))
	}
	if err == io.EOF {
		b.l.arrived(b.c)
	}
	return n, err
}

// admit counts a connection from addr in, or says why it cannot be. At
// the global cap it takes the place of a waiting connection (evictee), which
// the caller closes.
func (l *limitListener) admit(addr string) (why string, evict *limitedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	over := l.max > 0 && l.open >= l.max
	if over && !(l.perAddr > 0 && l.byAddr[addr] >= l.perAddr) {
		if evict = l.evictee(); evict != nil {
			delete(l.waiting, evict)
			over = false
		}
	}
	switch {
	case over:
		why = fmt.Sprintf("the server has %d connections open, its limit", l.open)
	case l.perAddr > 0 && l.byAddr[addr] >= l.perAddr:
		why = fmt.Sprintf("this address has %d connections open, its limit", l.byAddr[addr])
	default:
		l.open++
		l.byAddr[addr]++
		return "", evict
	}
	l.refused++
	if now := time.Now(); l.log != nil && now.Sub(l.lastLogged) >= refusalLogGap {
		l.log.Warn("connections refused over the cap", "refused", l.refused, "latest", why, "address", addr,
			"open", l.open, "maxConnections", l.max, "maxConnectionsPerAddress", l.perAddr)
		l.refused, l.lastLogged = 0, now
	}
	return why, nil
}

// evictee is the waiting connection a new one over the global cap takes
// the place of: of the address with the most connections open, the one
// waiting longest, if it has waited l.evictAfter (a body: and arrives
// slower than l.minBodyRate, or has stalled for l.bodyStall); nil when none
// has. Called with l.mu held.
func (l *limitListener) evictee() *limitedConn {
	var pick *limitedConn
	var pickSince time.Time
	pickCount := 0
	now := time.Now()
	waited := now.Add(-l.evictAfter)
	for c, w := range l.waiting {
		since := w.at
		if since.After(waited) {
			continue
		}
		if w.body && float64(c.bodyBytes.Load()) >= l.minBodyRate*now.Sub(since).Seconds() &&
			now.Sub(epoch)-time.Duration(c.lastBody.Load()) < l.bodyStall {
			continue // an upload keeping up its pace
		}
		n := l.byAddr[c.addr]
		if pick == nil || n > pickCount || n == pickCount && since.Before(pickSince) {
			pick, pickSince, pickCount = c, since, n
		}
	}
	return pick
}

func (l *limitListener) release(addr string, c *limitedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.waiting, c)
	l.open--
	if l.byAddr[addr]--; l.byAddr[addr] <= 0 {
		delete(l.byAddr, addr)
	}
}

// counts reports the connections open, and those from addr.
func (l *limitListener) counts(addr string) (open, fromAddr int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, l.byAddr[addr]
}

// refuse answers c with a 503 and closes it. The request's head is read
// first, for at most refusalWait: an HTTP client takes an answer that
// arrives before it has sent its request for a broken connection, not for
// a refusal. After the answer the connection is half-closed and what the
// client still sends is drained briefly, because closing with unread
// input makes the kernel reset the connection, which can destroy the
// answer before the client reads it.
func (l *limitListener) refuse(c net.Conn, why string) {
	select {
	case l.refusing <- struct{}{}:
	default:
		c.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(refusalWait))
		// Whatever the head turns out to be (or none, by the deadline),
		// the answer is the same.
		_, _ = http.ReadRequest(bufio.NewReader(io.LimitReader(c, refusalHeadBytes)))
		_ = c.SetDeadline(time.Now().Add(refusalWait))
		if _, err := c.Write(refusal(why)); err != nil {
			return
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(c, maxBodyDrain))
	}()
}

// refusal is the whole HTTP/1.1 answer to a connection over the cap.
func refusal(why string) []byte {
	body, _ := json.Marshal(map[string]any{
		"type": "about:blank", "title": http.StatusText(http.StatusServiceUnavailable), "status": http.StatusServiceUnavailable,
		"detail": "too many connections: " + why + "; retry after 1 s",
	})
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"+
		"Retry-After: 1\r\nConnection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"+
		"Content-Length: %d\r\n\r\n%s", len(body), body)
}

// remoteHost is the client a connection comes from, as the per-client
// limits count it (clientKey).
func remoteHost(c net.Conn) string {
	a := c.RemoteAddr()
	if tcp, ok := a.(*net.TCPAddr); ok {
		return clientKey(tcp.IP.String())
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return clientKey(host)
	}
	return a.String()
}

// limitedConn gives its slot back when closed, once.
type limitedConn struct {
	net.Conn
	addr string // as the caps count it
	// bodyBytes counts the bytes of the current request's body read so
	// far (arrivingBody), from its head on (connState), and lastBody is
	// when the last of them came (since epoch, on the monotonic clock; the
	// head's time before any).
	bodyBytes, lastBody atomic.Int64
	once                sync.Once
	release             func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite half-closes a TCP connection, which the HTTP server does
// before closing one whose request it did not read to the end.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
