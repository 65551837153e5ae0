package e2e

// The HTTP edge against a hostile client: connections held open, made-up
// credentials, secrets on the terminal and on disk, links that outlive
// their use. Each test drives the real binary.

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// holder keeps connections open from one loopback address, as a client
// exhausting the server would: some silent, some sending a body that
// never ends.
type holder struct {
	t     *testing.T
	addr  string // the server's host:port
	conns []net.Conn
}

// hold opens a connection from src and leaves it silent (slow false) or
// sends headers promising a body and a first byte of it (slow true).
func (h *holder) hold(src string, slow bool) net.Conn {
	h.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", h.addr)
	require.NoError(h.t, err)
	h.t.Cleanup(func() { c.Close() })
	if slow {
		_, err = fmt.Fprintf(c, "POST /api/accounts HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", h.addr)
		require.NoError(h.t, err)
	}
	h.conns = append(h.conns, c)
	return c
}

// refusedAtOnce reports whether the server answered c with its refusal
// (a 503 with Retry-After, before any request was read) and closed it.
func refusedAtOnce(t *testing.T, c net.Conn) bool {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(patience)))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" &&
		resp.Header.Get("Content-Type") == "application/problem+json" && strings.Contains(string(body), "too many connections")
}

// closedByServer waits until the server has closed c, reading whatever it
// answered first.
func closedByServer(t *testing.T, c net.Conn) bool {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(patience)))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// plainGet is a GET from src on a fresh connection. It goes around the
// contract-checking client: a connection refusal comes from the listener,
// before any operation of the API is reached.
func plainGet(t *testing.T, src, url string) int {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true, DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: patience}).Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// stillOpen reports whether the server has not closed c yet.
func stillOpen(t *testing.T, c net.Conn) bool {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
	defer c.SetReadDeadline(time.Time{})
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestConnectionCapsKeepANormalClientServed holds more silent and
// slow-body connections than the caps allow. From one address, those over
// its own cap are refused at once while a client elsewhere is served. From
// several addresses, a connection over the global cap is refused clearly
// (503 and Retry-After), or takes the place of a held one that has waited
// 2 s, and the normal client is served again without anyone letting go.
//
// Which of the two happens is timing: the refusals of the first part wait
// up to a second each for a request's head, so the held connections may
// have waited 2 s by then; and the 5 s read timeout cuts them all. So a
// connection over a cap must be refused, or find that the server has
// closed a held connection to make room for it; the test says which. The
// refusal at the global cap while every held connection is fresh is
// TestLimitListenerRefusesClearlyOverEitherCap's.
func TestConnectionCapsKeepANormalClientServed(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir(), "-max-connections", "12", "-max-connections-per-address", "4", "-read-timeout", "5s")
	h := &holder{t: t, addr: strings.TrimPrefix(p.base, "http://")}
	health := p.base + "/api/healthz"
	refusedOrRoomMade := func(c net.Conn, held []net.Conn, what string) {
		t.Helper()
		if refusedAtOnce(t, c) {
			return
		}
		closed := 0
		for _, c := range held {
			if !stillOpen(t, c) {
				closed++
			}
		}
		require.Positive(t, closed, "%s was let in while every held connection was open", what)
		t.Logf("%s was let in: %d of the %d held connections had been closed to make room (cut by the read timeout, or its place taken)", what, closed, len(held))
	}

	// One address: four held, the rest refused at once.
	for i := range 4 {
		h.hold("127.0.0.2", i%2 == 1)
	}
	for i := range 6 {
		refusedOrRoomMade(h.hold("127.0.0.2", i%2 == 1), h.conns[:4], fmt.Sprintf("connection %d over the address's cap", i))
	}
	held := h.conns[:4]
	h.conns = held
	assert.Equal(t, http.StatusOK, plainGet(t, "127.0.0.1", health), "another client is served")
	open := 0
	for _, c := range held {
		if stillOpen(t, c) {
			open++
		}
	}
	t.Logf("%d of the 4 held connections were open while the other client was served", open)

	// Two more addresses fill the global cap of 12; the next connection,
	// from anywhere, is refused clearly, or served in the place of a held
	// one, which the server closes before it serves it: a whole request,
	// answered at once either way.
	for _, src := range []string{"127.0.0.3", "127.0.0.4"} {
		for j := range 4 {
			h.hold(src, j%2 == 0)
		}
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.5")}}
	c, err := d.Dial("tcp", h.addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = fmt.Fprintf(c, "GET /api/healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", h.addr)
	require.NoError(t, err)
	refusedOrRoomMade(c, h.conns, "a request over the global cap")

	// Nothing lets go; the server's timeouts cut the silent and slow
	// connections, and the normal client is served again.
	eventually(t, "a normal client to be served again", func() bool {
		return plainGet(t, "127.0.0.1", health) == http.StatusOK
	})
	for i, c := range h.conns {
		assert.True(t, closedByServer(t, c), "held connection %d was closed by the server", i)
	}
	assert.NotContains(t, p.logs.String(), `"level":"ERROR"`)
}

// TestKeepAliveConnectionsCannotLockEveryoneOut: two addresses fill the
// global cap with keep-alive connections, each used for a request so that
// no timeout cuts it (the server's idle timeout is minutes). A client from
// elsewhere is served all the same, in the place of one of them, once they
// have waited a moment; before, it was refused for as long as they liked.
func TestKeepAliveConnectionsCannotLockEveryoneOut(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir(), "-max-connections", "6", "-max-connections-per-address", "3")
	addr := strings.TrimPrefix(p.base, "http://")
	held := holdTheCap(t, addr, func(c net.Conn, src string) {
		_, err := fmt.Fprintf(c, "GET /api/healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(patience)))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "held connection from %s", src)
	})
	closed := servedAtTheCap(t, p, held)
	assert.Positive(t, closed, "one of the held connections made room")
	assert.Less(t, closed, len(held), "not all of them")
}

// TestTrickledBodiesCannotLockEveryoneOut: two addresses fill the global
// cap with requests whose heads arrive and whose bodies do not (a few
// bytes of the thousand announced), which no timeout cuts before the read
// timeout (minutes here). A client from elsewhere is served all the same,
// in the place of one of them, once they have waited a moment; before, it
// was refused until the read timeout cut them.
func TestTrickledBodiesCannotLockEveryoneOut(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir(), "-max-connections", "6", "-max-connections-per-address", "3", "-read-timeout", "5m")
	addr := strings.TrimPrefix(p.base, "http://")
	held := holdTheCap(t, addr, func(c net.Conn, _ string) {
		_, err := fmt.Fprintf(c, "POST /api/accounts HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"na", addr)
		require.NoError(t, err)
	})
	assert.Positive(t, servedAtTheCap(t, p, held), "one of the trickling connections made room")
}

// holdTheCap opens three connections to addr from each of two loopback
// addresses, each begun by begin, and returns them.
func holdTheCap(t *testing.T, addr string, begin func(c net.Conn, src string)) []net.Conn {
	t.Helper()
	var held []net.Conn
	for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
		for range 3 {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			c, err := d.Dial("tcp", addr)
			require.NoError(t, err)
			t.Cleanup(func() { c.Close() })
			begin(c, src)
			held = append(held, c)
		}
	}
	return held
}

// servedAtTheCap waits until a client from a third address is served
// while held fill the cap, and returns how many of held were closed.
func servedAtTheCap(t *testing.T, p *proc, held []net.Conn) int {
	t.Helper()
	eventually(t, "a client from elsewhere to be served while the cap is held", func() bool {
		return plainGet(t, "127.0.0.1", p.base+"/api/healthz") == http.StatusOK
	})
	closed := 0
	for _, c := range held {
		if !stillOpen(t, c) {
			closed++
		}
	}
	return closed
}

// TestMadeUpBearerTokensShareTheAddressLimit: a fresh random token on each
// request to an anonymous endpoint is charged to the sender's address like
// no token at all, while a real key, once it has authenticated, keeps its
// own bucket.
func TestMadeUpBearerTokensShareTheAddressLimit(t *testing.T) {
	t.Parallel()
	// Five an hour: the test counts the burst, and at five a minute a
	// machine stalled for twelve seconds would refill a token mid-count.
	p := startServeEnv(t, t.TempDir(), []string{"RATE_LIMIT=5/h", "RATE_BURST=5"})
	a := signUp(t, p.base)
	require.Equal(t, http.StatusOK, a.call(t, "GET", "/api/deliveries/summary", nil).Status, "the key authenticates (charged to the address)")

	limited := 0
	for i := range 10 {
		tok := make([]byte, 16)
		_, _ = rand.Read(tok)
		resp := callAs(t, hex.EncodeToString(tok), "GET", p.base+"/api/track/nothing.x/feed", nil)
		if resp.Status == http.StatusTooManyRequests {
			limited = i
			assert.NotEmpty(t, resp.Header.Get("Retry-After"))
			break
		}
		require.Equal(t, http.StatusNotFound, resp.Status, string(resp.Body))
	}
	assert.Equal(t, 4, limited, "the address's burst of 5, one spent by the key's first request, then 429 whatever the token")
	forged := domain.APIKeyTag + strings.Repeat("q", domain.KeyPrefixLength) + "_" + strings.Repeat("q", domain.KeySecretLength)
	assert.Equal(t, http.StatusTooManyRequests, callAs(t, forged, "GET", p.base+"/api/track/nothing.x/feed", nil).Status, "a well-formed made-up key too")
	assert.Equal(t, http.StatusTooManyRequests, call(t, "GET", p.base+"/api/track/nothing.x/feed", nil).Status, "and no token at all")
	assert.Equal(t, http.StatusOK, a.call(t, "GET", "/api/deliveries/summary", nil).Status, "the real key has its own bucket")
}

// TestBannerHidesAConfiguredOperatorKey: the banner shows an operator key
// only when it generated one; a configured one stays off the terminal.
func TestBannerHidesAConfiguredOperatorKey(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir(), "-banner")
	eventually(t, "the banner", func() bool { return strings.Contains(p.out.String(), "The operator key") })
	assert.NotContains(t, p.out.String(), e2eOperatorKey)
	assert.NotContains(t, p.logs.String(), e2eOperatorKey)
	assert.Contains(t, p.out.String(), `Authorization: Bearer $OPERATOR_KEY`, "the banner still shows how to use it")
}

// TestDataFilesAreTheServiceUsersAlone: the data folder is 0700 and the
// SQLite file and its WAL and shared-memory files 0600, also when the
// folder was made earlier with looser modes (it is tightened).
func TestDataFilesAreTheServiceUsersAlone(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.Chmod(dir, 0o777))
	p := startServe(t, dir)
	a := signUp(t, p.base) // a write: the WAL and shared-memory files exist
	require.Equal(t, http.StatusOK, a.call(t, "GET", "/api/deliveries/summary", nil).Status)
	mode := func(name string) os.FileMode {
		fi, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err, name)
		return fi.Mode().Perm()
	}
	assert.Equal(t, os.FileMode(0o700), mode("."))
	for _, f := range []string{"dronedelivery.db", "dronedelivery.db-wal", "dronedelivery.db-shm"} {
		assert.Equal(t, os.FileMode(0o600), mode(f), f)
	}
}

// TestTrackingLinksExpire: a finished delivery's tracking page and feed
// answer 410 once TRACKING_LINK_LIFETIME has passed since it ended; while
// the link lives the page may not be framed.
func TestTrackingLinksExpire(t *testing.T) {
	t.Parallel()
	p := startServeEnv(t, t.TempDir(), []string{"TRACKING_LINK_LIFETIME=1s"})
	a := signUp(t, p.base)
	registerFleet(t, a, testFleet(2))
	near := domain.Location{Latitude: 47.6062, Longitude: -122.3321}
	resp := a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("ends", near, domain.Location{Latitude: 47.61, Longitude: -122.33}, "Small", 1))
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	var acc struct{ TrackingID string }
	resp.decode(t, &acc)
	waitStage(t, a, "ends", domain.StageScheduled)

	page := call(t, "GET", p.base+"/api/track/"+acc.TrackingID, nil)
	require.Equal(t, http.StatusOK, page.Status)
	assert.Contains(t, page.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
	assert.Equal(t, "nosniff", page.Header.Get("X-Content-Type-Options"))

	require.Equal(t, http.StatusNoContent, a.call(t, "DELETE", "/api/deliveryrequests/ends", nil).Status)
	waitStage(t, a, "ends", domain.StageCancelled)
	eventually(t, "the link to expire", func() bool {
		return call(t, "GET", p.base+"/api/track/"+acc.TrackingID+"/feed", nil).Status == http.StatusGone
	})
	for _, path := range []string{"/api/track/" + acc.TrackingID, "/api/track/" + acc.TrackingID + "/feed"} {
		resp := call(t, "GET", p.base+path, nil)
		assert.Equal(t, http.StatusGone, resp.Status, path)
		assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), path)
	}
	assert.Equal(t, http.StatusOK, a.call(t, "GET", "/api/deliveries/ends", nil).Status, "the business still reads its delivery")
}

// TestAPIAnswersAreNotSniffedOrStored: JSON answers, successes and
// problems alike, carry nosniff and no-store; the public API document
// keeps its own caching.
func TestAPIAnswersAreNotSniffedOrStored(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir())
	a := signUp(t, p.base)
	for _, r := range []*response{
		a.call(t, "GET", "/api/deliveries/summary", nil),
		a.call(t, "GET", "/api/deliveries?limit=5", nil),
		a.call(t, "GET", "/api/deliveries/none", nil),
		call(t, "GET", p.base+"/api/healthz", nil),
		call(t, "GET", p.base+"/api/nowhere", nil),
	} {
		assert.Equal(t, "nosniff", r.Header.Get("X-Content-Type-Options"), "%d %s", r.Status, r.Body)
		assert.Equal(t, "no-store", r.Header.Get("Cache-Control"), "%d %s", r.Status, r.Body)
	}
	doc := call(t, "GET", p.base+"/api/openapi.json", nil)
	assert.Equal(t, "nosniff", doc.Header.Get("X-Content-Type-Options"))
	assert.Equal(t, "no-cache", doc.Header.Get("Cache-Control"))
}
