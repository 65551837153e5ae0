package standalone

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

// ticking streams a counter until its client goes or the server stops.
func ticking(ctx context.Context, _ *functionapp.Request, s functionapp.Stream) *functionapp.Response {
	for i := 0; ; i++ {
		if s.Event("", []byte(strconv.Itoa(i))) != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// openStream opens the stream at url and returns its answer once the
// first event has arrived.
func openStream(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	if resp.StatusCode == http.StatusOK {
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "data: 0\n", line)
	}
	return resp
}

// Not parallel: goleak counts every goroutine of the process.
func TestStreamsEndWithTheirClientsAndAtShutdownLeavingNoGoroutine(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	reg := functionapp.Registry{"Events": {HTTP: func(context.Context, *functionapp.Request) *functionapp.Response {
		return functionapp.Problem(http.StatusNotImplemented, "", "no streams here")
	}, Stream: ticking, Public: true}}
	fns := []functionapp.FunctionConfig{{Name: "Events", Bindings: []functionapp.Binding{
		{Type: "httpTrigger", Direction: "in", Name: "req", AuthLevel: "anonymous", Methods: []string{"get"}, Route: "events/{id}"},
		{Type: "http", Direction: "out", Name: "res"},
	}}}
	srv, err := New(reg, fns, nil, slog.New(slog.DiscardHandler), Options{Streams: StreamLimits{Max: 10, PerAddr: 10, PerPath: 2}})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx, ln) }()
	base := "http://" + ln.Addr().String() + "/api/events/"

	a := openStream(t, base+"a")
	assert.Equal(t, "text/event-stream", a.Header.Get("Content-Type"))
	a2 := openStream(t, base+"a")
	b := openStream(t, base+"b")
	assert.Equal(t, 3, srv.streams.counts())

	// A third on one path is over its cap: 429, and the page polls.
	over := openStream(t, base+"a")
	assert.Equal(t, http.StatusTooManyRequests, over.StatusCode)
	assert.NotEmpty(t, over.Header.Get("Retry-After"))
	over.Body.Close()

	// A client that goes frees its stream and the handler's goroutine.
	a.Body.Close()
	require.Eventually(t, func() bool { return srv.streams.counts() == 2 },
		time.Minute, 10*time.Millisecond, "the stream of a client that left was not ended")
	again := openStream(t, base+"a")

	// Shutdown ends the streams still open rather than waiting for them.
	stop()
	select {
	case err := <-ran:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("the server did not stop while streams were open")
	}
	for _, r := range []*http.Response{a2, b, again} {
		// Each stream was ended properly, not cut.
		_, err := io.Copy(io.Discard, r.Body)
		assert.NoError(t, err)
		r.Body.Close()
	}
	assert.Equal(t, 0, srv.streams.counts())
	http.DefaultClient.CloseIdleConnections()
}
