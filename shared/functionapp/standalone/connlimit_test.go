package standalone

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dialFrom connects to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// refused reads the answer to a refused connection.
func refused(t *testing.T, c net.Conn) *http.Response {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	return resp
}

func TestLimitListenerRefusesClearlyOverEitherCap(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := newLimitListener(inner, 3, 2, nil)
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	addr := inner.Addr().String()
	take := func() net.Conn {
		t.Helper()
		select {
		case c := <-accepted:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("no connection accepted")
			return nil
		}
	}

	dialFrom(t, "127.0.0.1", addr)
	first := take()
	dialFrom(t, "127.0.0.1", addr)
	take()
	// A third from the same address is over its cap: a 503 at once, and
	// nothing reaches the server.
	resp := refused(t, dialFrom(t, "127.0.0.1", addr))
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	open, mine := ln.counts("127.0.0.1")
	assert.Equal(t, 2, open)
	assert.Equal(t, 2, mine)

	// Another address is still served, up to the global cap.
	dialFrom(t, "127.0.0.2", addr)
	take()
	resp = refused(t, dialFrom(t, "127.0.0.3", addr))
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)

	// A closed connection gives its place back.
	require.NoError(t, first.Close())
	_ = first.Close() // closing twice releases once
	dialFrom(t, "127.0.0.3", addr)
	take()
	open, mine = ln.counts("127.0.0.1")
	assert.Equal(t, 3, open)
	assert.Equal(t, 1, mine)
}

// TestANewConnectionTakesThePlaceOfAnIdleOne: a few addresses that open
// their share of connections and keep them alive with a request now and
// then no longer lock everyone else out at the global cap: a newcomer
// takes the place of an idle connection of the address holding the most,
// which is closed, once it has waited evictAfter; a connection busy with a
// request is never closed.
func TestANewConnectionTakesThePlaceOfAnIdleOne(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := newLimitListener(inner, 3, 2, nil)
	ln.evictAfter = time.Hour
	release := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		w.WriteHeader(http.StatusNoContent)
	})}
	go ln.serve(srv)
	t.Cleanup(func() { close(release); srv.Close() })
	addr := inner.Addr().String()

	// Two idle keep-alive connections from .2, and one from .3 busy with a
	// slow request: the server is at its cap.
	hog1, hog2 := dialFrom(t, "127.0.0.2", addr), dialFrom(t, "127.0.0.2", addr)
	for _, c := range []net.Conn{hog1, hog2} {
		resp := getOn(t, c, "/")
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
	}
	busy := dialFrom(t, "127.0.0.3", addr)
	_, err = busy.Write([]byte("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		ln.mu.Lock()
		defer ln.mu.Unlock()
		return ln.open == 3 && len(ln.waiting) == 2
	}, 10*time.Second, 5*time.Millisecond)

	// Idle for less than evictAfter, they are left alone: a newcomer is
	// refused.
	assert.Equal(t, http.StatusServiceUnavailable, refused(t, dialFrom(t, "127.0.0.4", addr)).StatusCode)

	// Idle long enough, one of .2's makes room: a newcomer is served.
	ln.mu.Lock()
	ln.evictAfter = 0
	ln.mu.Unlock()
	newcomer := dialFrom(t, "127.0.0.4", addr)
	resp := getOn(t, newcomer, "/")
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	_, fromHog := ln.counts("127.0.0.2")
	assert.Equal(t, 1, fromHog, "one of the hog's idle connections was closed")
	_, fromBusy := ln.counts("127.0.0.3")
	assert.Equal(t, 1, fromBusy, "the busy one was left alone")

	// With every connection busy, a newcomer is refused, clearly.
	for _, c := range []net.Conn{hog1, hog2, newcomer} {
		_, _ = c.Write([]byte("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")) // one of the hog's is closed
	}
	require.Eventually(t, func() bool {
		ln.mu.Lock()
		defer ln.mu.Unlock()
		return len(ln.waiting) == 0 && ln.open == 3
	}, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, http.StatusServiceUnavailable, refused(t, dialFrom(t, "127.0.0.5", addr)).StatusCode)
}

// TestASilentConnectionMakesRoomToo: a connection that has sent no request
// since it was opened waits like an idle one, and a newcomer at the cap
// takes its place once it has waited evictAfter, rather than the cap being
// held by connections opened again as the header timeout cuts them.
func TestASilentConnectionMakesRoomToo(t *testing.T) {
	t.Parallel()
	ln, addr := capOfOne(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))

	dialFrom(t, "127.0.0.2", addr) // says nothing
	require.Eventually(t, func() bool {
		ln.mu.Lock()
		defer ln.mu.Unlock()
		return ln.open == 1 && len(ln.waiting) == 1
	}, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, http.StatusNoContent, getOn(t, dialFrom(t, "127.0.0.3", addr), "/").StatusCode)
	_, silent := ln.counts("127.0.0.2")
	assert.Zero(t, silent, "the silent one was closed")
}

// TestATrickledBodyMakesRoomToo: a connection whose request's head has
// arrived but whose body follows slower than minBodyRate waits on its
// client like an idle one, and a newcomer at the cap takes its place once
// it has waited evictAfter, rather than the cap being held by bodies sent a
// byte at a time within the read timeout. Once the body has all arrived,
// the server is busy with it, and the connection is left alone.
func TestATrickledBodyMakesRoomToo(t *testing.T) {
	t.Parallel()
	reading, read, release := make(chan struct{}, 2), make(chan error, 2), make(chan struct{})
	ln, addr := capOfOne(t, bodyReader(reading, read, release))
	t.Cleanup(func() { close(release) }) // before the server closes
	ln.setBodyPace(1<<30, time.Hour)     // a pace no body keeps: two bytes are a trickle

	// .2's head arrives, and two bytes of the hundred its body announces.
	trickler := dialFrom(t, "127.0.0.2", addr)
	_, err := trickler.Write([]byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab"))
	require.NoError(t, err)
	within(t, reading, "the trickler's handler to start")
	newcomer := dialFrom(t, "127.0.0.3", addr)
	_, err = newcomer.Write([]byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok"))
	require.NoError(t, err)
	within(t, reading, "the newcomer to be served: the trickler's place was not taken")
	// One read failed, the trickler's, its connection closed under its
	// handler; the newcomer's body arrived whole (in either order).
	var failed int
	for range 2 {
		if err := within(t, read, "a handler's body"); err != nil {
			failed++
		}
	}
	assert.Equal(t, 1, failed, "the trickler's body could not be read to its end")
	_, fromTrickler := ln.counts("127.0.0.2")
	assert.Zero(t, fromTrickler, "the trickler's connection was closed")

	// The newcomer's handler holds its request, whose body has arrived
	// whole: the next newcomer is refused rather than taking its place.
	assert.Equal(t, http.StatusServiceUnavailable, refused(t, dialFrom(t, "127.0.0.4", addr)).StatusCode)
	_, fromNewcomer := ln.counts("127.0.0.3")
	assert.Equal(t, 1, fromNewcomer, "the connection being answered was left alone")
}

// TestAnUploadKeepingItsPaceIsLeftAlone: a body still arriving, but at
// minBodyRate or faster since its head, is an upload under way, not a
// trickle: a newcomer at the cap is refused rather than taking its place,
// however long the upload has taken so far.
func TestAnUploadKeepingItsPaceIsLeftAlone(t *testing.T) {
	t.Parallel()
	reading, read := make(chan struct{}, 1), make(chan error, 1)
	ln, addr := capOfOne(t, bodyReader(reading, read, nil))
	ln.setBodyPace(1, time.Hour) // a byte a second: the thousand bytes sent keep it up for minutes

	uploader := dialFrom(t, "127.0.0.2", addr)
	_, err := uploader.Write(append([]byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n"), make([]byte, 1000)...))
	require.NoError(t, err)
	within(t, reading, "the uploader's handler to start")
	assert.Equal(t, http.StatusServiceUnavailable, refused(t, dialFrom(t, "127.0.0.3", addr)).StatusCode, "the upload keeps its place")
	_, fromUploader := ln.counts("127.0.0.2")
	assert.Equal(t, 1, fromUploader)

	_, err = uploader.Write(make([]byte, 1000))
	require.NoError(t, err)
	require.NoError(t, within(t, read, "the upload's end"))
}

// TestAStalledUploadMakesRoomToo: a body that came in a burst and then
// stopped is not an upload under way, however far ahead of the pace the
// burst put it: once no byte has come for bodyStall, a newcomer at the cap
// takes its place.
func TestAStalledUploadMakesRoomToo(t *testing.T) {
	t.Parallel()
	reading, read := make(chan struct{}, 2), make(chan error, 2)
	ln, addr := capOfOne(t, bodyReader(reading, read, nil))
	ln.setBodyPace(1, 0) // far ahead of a byte a second, and stalled at once

	staller := dialFrom(t, "127.0.0.2", addr)
	_, err := staller.Write(append([]byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"), make([]byte, 1000)...))
	require.NoError(t, err)
	within(t, reading, "the staller's handler to start")
	assert.Equal(t, http.StatusNoContent, getOn(t, dialFrom(t, "127.0.0.3", addr), "/").StatusCode, "the newcomer was served")
	_, fromStaller := ln.counts("127.0.0.2")
	assert.Zero(t, fromStaller, "the stalled upload was closed")
}

// getOn sends one GET on c and reads its answer.
func getOn(t *testing.T, c net.Conn, path string) *http.Response {
	t.Helper()
	_, err := c.Write([]byte("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	return resp
}

// bodyReader is a handler that says it started on reading, reads the body
// to its end and sends how that went on read, then, the body read, waits
// for hold (when there is one) before answering 204.
func bodyReader(reading chan<- struct{}, read chan<- error, hold <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reading <- struct{}{}
		_, err := io.ReadAll(r.Body)
		read <- err
		if err == nil && hold != nil {
			<-hold
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// capOfOne serves h on loopback behind a listener that takes one
// connection in all and from each address, where a newcomer may take the
// place of one that waits at once (evictAfter 0).
func capOfOne(t *testing.T, h http.Handler) (*limitListener, string) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := newLimitListener(inner, 1, 1, nil)
	ln.evictAfter = 0
	srv := &http.Server{Handler: h}
	go ln.serve(srv)
	t.Cleanup(func() { srv.Close() })
	return ln, inner.Addr().String()
}

// setBodyPace sets the pace below which a body waits on its client, and
// how long it may have no byte arrive.
func (l *limitListener) setBodyPace(bytesPerSecond float64, stall time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.minBodyRate, l.bodyStall = bytesPerSecond, stall
}

// within receives from ch, failing t if nothing comes in 10 s.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		require.FailNow(t, "timed out waiting for "+what)
	}
	var zero T
	return zero
}
