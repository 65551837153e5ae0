package standalone

import (
	"bufio"
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
