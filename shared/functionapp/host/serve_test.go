package host

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/logctx"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

func TestNewRejectsWhatItCannotServe(t *testing.T) {
	t.Parallel()
	queue := func(context.Context, *ports.Delivered) ([]ports.Message, error) { return nil, nil }
	httpTrigger := functionapp.Binding{Type: "httpTrigger", Direction: "in", Name: "req", Route: "x"}
	httpOut := functionapp.Binding{Type: "http", Direction: "out", Name: "res"}
	sbTrigger := functionapp.Binding{Type: "serviceBusTrigger", Direction: "in", Name: "msg", QueueName: "q"}
	pub := &fakePublisher{ev: &events{}}
	tests := []struct {
		name    string
		reg     functionapp.Registry
		fns     []functionapp.FunctionConfig
		pub     ports.Publisher
		wantErr string
	}{
		{
			name:    "a function without a handler",
			reg:     functionapp.Registry{},
			fns:     []functionapp.FunctionConfig{{Name: "Echo", Bindings: []functionapp.Binding{httpTrigger, httpOut}}},
			wantErr: "has no handler",
		},
		{
			name:    "a function without a trigger",
			reg:     functionapp.Registry{"Echo": {HTTP: echo}},
			fns:     []functionapp.FunctionConfig{{Name: "Echo", Bindings: []functionapp.Binding{httpOut}}},
			wantErr: "no trigger binding",
		},
		{
			name:    "an HTTP function without an http output",
			reg:     functionapp.Registry{"Echo": {HTTP: echo}},
			fns:     []functionapp.FunctionConfig{{Name: "Echo", Bindings: []functionapp.Binding{httpTrigger}}},
			wantErr: "no http output binding",
		},
		{
			name:    "a queue function without a publisher",
			reg:     functionapp.Registry{"Q": {Queue: queue}},
			fns:     []functionapp.FunctionConfig{{Name: "Q", Bindings: []functionapp.Binding{sbTrigger}}},
			wantErr: "no publisher",
		},
		{
			name:    "a queue function bound to another queue than the chain's",
			reg:     functionapp.Registry{"Q": {Queue: queue, Reads: "elsewhere"}},
			fns:     []functionapp.FunctionConfig{{Name: "Q", Bindings: []functionapp.Binding{sbTrigger}}},
			pub:     pub,
			wantErr: `reads queue "q", but its handler reads "elsewhere"`,
		},
		{
			name:    "a function named like the route prefix",
			reg:     functionapp.Registry{"API": {Queue: queue}},
			fns:     []functionapp.FunctionConfig{{Name: "API", Bindings: []functionapp.Binding{sbTrigger}}},
			pub:     pub,
			wantErr: "forwarded HTTP",
		},
		{
			name: "two functions whose names differ only in case",
			reg:  functionapp.Registry{"Q": {Queue: queue}, "q": {Queue: queue}},
			fns: []functionapp.FunctionConfig{
				{Name: "Q", Bindings: []functionapp.Binding{sbTrigger}},
				{Name: "q", Bindings: []functionapp.Binding{sbTrigger}},
			},
			pub:     pub,
			wantErr: "configured twice",
		},
		{
			name: "an HTTP-only app needs no publisher",
			reg:  functionapp.Registry{"Echo": {HTTP: echo}},
			fns:  []functionapp.FunctionConfig{{Name: "Echo", Bindings: []functionapp.Binding{httpTrigger, httpOut}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, err := New(tt.reg, tt.fns, tt.pub, nil, Options{})
			if tt.wantErr == "" {
				require.NoError(t, err)
				assert.NotNil(t, h)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func TestListenAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		env    map[string]string
		want   string
		wantOK bool
	}{
		{name: "custom handler port", env: map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "40123"}, want: "127.0.0.1:40123", wantOK: true},
		{name: "older http worker port", env: map[string]string{"FUNCTIONS_HTTPWORKER_PORT": "40124"}, want: "127.0.0.1:40124", wantOK: true},
		{
			name: "the custom handler port wins",
			env:  map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "40123", "FUNCTIONS_HTTPWORKER_PORT": "40124"},
			want: "127.0.0.1:40123", wantOK: true,
		},
		{
			name: "an empty custom handler port falls back",
			env:  map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": " ", "FUNCTIONS_HTTPWORKER_PORT": "40124"},
			want: "127.0.0.1:40124", wantOK: true,
		},
		{name: "neither set", env: map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := listenAddr(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			assert.Equal(t, tt.wantOK, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestListenAddrReadsTheEnvironment cannot run in parallel: it sets
// process environment variables.
func TestListenAddrReadsTheEnvironment(t *testing.T) {
	t.Setenv("FUNCTIONS_CUSTOMHANDLER_PORT", "40125")
	t.Setenv("FUNCTIONS_HTTPWORKER_PORT", "40126")
	addr, ok := ListenAddr()
	require.True(t, ok)
	assert.Equal(t, "127.0.0.1:40125", addr)
}

func TestServeListener(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	entered, release := make(chan struct{}), make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/Slow", func(w http.ResponseWriter, _ *http.Request) {
		close(entered)
		<-release
		w.WriteHeader(http.StatusOK)
	})
	mux.Handle("/", f.h)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- ServeListener(ctx, ln, mux, slog.New(slog.DiscardHandler)) }()

	// Ready: the host accepts any answer, even a 404.
	resp, err := http.Get(base + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)

	// An invocation over a real connection.
	resp, err = http.Post(base+"/ScheduleDrone", "application/json", bytes.NewReader(golden(t, "servicebus_base64_body.json")))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Len(t, f.delivered(), 1)
	assert.Equal(t, envelopeBody, string(f.delivered()[0].Body))

	// Shutdown waits for the invocation in flight.
	slow := make(chan int, 1)
	go func() {
		resp, err := http.Post(base+"/Slow", "application/json", nil)
		if err != nil {
			slow <- 0
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	<-entered
	cancel()
	// A while without a return (the wait only gives a wrong early return
	// the chance to show; a slow machine cannot fail it).
	select {
	case err := <-served:
		t.Fatalf("ServeListener returned %v with an invocation in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	assert.Equal(t, http.StatusOK, <-slow)
	select {
	case err := <-served:
		assert.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("ServeListener did not return after shutdown")
	}
}

func TestServeFailsToListen(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	err = Serve(context.Background(), ln.Addr().String(), http.NotFoundHandler(), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "listen on")
}

func TestServeListenerReportsAFailedListener(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, ln.Close())
	err = ServeListener(context.Background(), ln, http.NotFoundHandler(), nil)
	require.Error(t, err)
}

// TestForwardedRequestsAsTheHostSendsThem sends, over a real connection,
// requests as the host forwards them: the caller's own invocation-id
// header before the host's, and a body larger than the handler takes,
// written to the end before the answer is read, as the host's HttpClient
// writes it (a send cut short fails the invocation, and the caller gets
// 500 instead of the 413).
func TestForwardedRequestsAsTheHostSendsThem(t *testing.T) {
	t.Parallel()
	ids := make(chan string, 1)
	reg := functionapp.Registry{"Echo": {HTTP: func(ctx context.Context, req *functionapp.Request) *functionapp.Response {
		for _, a := range logctx.Attrs(ctx) {
			if a.Key == "invocationId" {
				ids <- a.Value.String()
			}
		}
		return echo(ctx, req)
	}}}
	h, err := New(reg, testFunctions()[:1], nil, slog.New(slog.DiscardHandler), Options{})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go ServeListener(ctx, ln, h, slog.New(slog.DiscardHandler))

	send := func(t *testing.T, header string, body io.Reader, size int64) *http.Response {
		t.Helper()
		conn, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		_, err = fmt.Fprintf(conn, "POST /api/echo/7 HTTP/1.1\r\nHost: func.example\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n", size, header)
		require.NoError(t, err)
		n, err := io.Copy(conn, body)
		require.NoError(t, err, "the whole body is sent (%d of %d bytes)", n, size)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	t.Run("the host's invocation id, not the caller's", func(t *testing.T) {
		body := `{"a":1}`
		resp := send(t, "X-Azure-Functions-InvocationId: forged-by-caller\r\nX-Azure-Functions-InvocationId: 3f1c0b8e-host\r\n", strings.NewReader(body), int64(len(body)))
		assert.Equal(t, http.StatusCreated, resp.StatusCode)
		assert.Equal(t, "3f1c0b8e-host", <-ids)
	})
	t.Run("a body too large is read to the end and refused", func(t *testing.T) {
		size := int64(20 << 20)
		resp := send(t, "X-Azure-Functions-InvocationId: 3f1c0b8e-big\r\n", io.LimitReader(zeros{}, size), size)
		assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
		var p functionapp.ProblemDetails
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&p))
		assert.Equal(t, "body", p.Field)
	})
}

// zeros reads as an endless run of spaces.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

func TestForwardedBodyLimit(t *testing.T) {
	t.Parallel()
	env := func(v string) func(string) (string, bool) {
		return func(k string) (string, bool) { return v, k == "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT" && v != "" }
	}
	assert.EqualValues(t, 104857600, forwardedBodyLimit(env("")), "the host's default")
	assert.EqualValues(t, 209715200, forwardedBodyLimit(env("209715200")))
	assert.EqualValues(t, 104857600, forwardedBodyLimit(env("lots")))
}

// TestServerTimeoutsLeaveTheHostRoom holds the server's timeouts to what
// the host needs: an invocation may run to host.json's functionTimeout,
// and a pooled connection stays idle up to .NET's pool timeout (2 minutes
// at most) before the host drops it.
func TestServerTimeoutsLeaveTheHostRoom(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "host.json"))
	require.NoError(t, err)
	var hj struct {
		FunctionTimeout string `json:"functionTimeout"`
	}
	require.NoError(t, json.Unmarshal(raw, &hj))
	var h, m, s int
	_, err = fmt.Sscanf(hj.FunctionTimeout, "%d:%d:%d", &h, &m, &s)
	require.NoError(t, err, hj.FunctionTimeout)
	fnTimeout := time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second
	assert.Equal(t, functionTimeout, fnTimeout, "the budget of an invocation is counted from host.json's functionTimeout")
	assert.Greater(t, writeTimeout, fnTimeout, "an invocation may run for functionTimeout")
	assert.LessOrEqual(t, DefaultStartWait+90*time.Second, invocationBudget, "an invocation held while the backend opens leaves its step a minute and a half")
	assert.Greater(t, idleTimeout, 2*time.Minute, "the host's pooled connections idle up to 2 minutes")
	assert.Greater(t, maxHeaderBytes, 32<<10, "the host forwards up to 32 KB of headers")
}

// TestServerSetsEveryTimeout: without them a caller the host forwards, or
// anything else that reaches the port, could hold a connection for ever.
func TestServerSetsEveryTimeout(t *testing.T) {
	t.Parallel()
	srv := newServer(http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	assert.Positive(t, srv.ReadHeaderTimeout)
	assert.Positive(t, srv.ReadTimeout)
	assert.Positive(t, srv.WriteTimeout)
	assert.Positive(t, srv.IdleTimeout)
	assert.Positive(t, srv.MaxHeaderBytes)
	assert.Less(t, srv.MaxHeaderBytes, http.DefaultMaxHeaderBytes)
}

// ctxPublisher refuses to publish on a context that has ended, as the
// Service Bus client does.
type ctxPublisher struct{ fakePublisher }

func (p *ctxPublisher) Publish(ctx context.Context, msgs ...ports.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return p.fakePublisher.Publish(ctx, msgs...)
}

// A step that outlives its invocation's budget is stopped by its context
// ending, and the invocation is answered as for any transient failure,
// with its retry scheduled, instead of running on until the host's
// functionTimeout restarts the handler with every invocation in flight.
func TestAnInvocationEndsWithinItsBudget(t *testing.T) {
	t.Parallel()
	logs := &logBuffer{}
	pub := &ctxPublisher{fakePublisher{ev: &events{}}}
	reg := functionapp.Registry{
		"Echo": {HTTP: echo},
		"ScheduleDrone": {Queue: func(ctx context.Context, _ *ports.Delivered) ([]ports.Message, error) {
			<-ctx.Done() // a webhook or a store that does not answer
			return nil, ctx.Err()
		}},
	}
	h, err := New(reg, testFunctions(), pub, logctx.NewLogger(logs, slog.LevelDebug),
		Options{Now: func() time.Time { return fixtureNow }, Jitter: func() float64 { return 0 }})
	require.NoError(t, err)
	req := newRequest(http.MethodPost, "/ScheduleDrone", golden(t, "servicebus_double_encoded.json"))
	rec := httptest.NewRecorder()
	budgeted(h, 50*time.Millisecond).ServeHTTP(rec, req)

	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	rep := decodeReply(t, &recorder{ResponseRecorder: rec})
	require.NotEmpty(t, rep.Logs)
	assert.Contains(t, rep.Logs[len(rep.Logs)-1], "retry 1 of 8 is scheduled as d-0042.ingest:redelivery-1")
	assert.Contains(t, rep.Logs[len(rep.Logs)-1], "context deadline exceeded")
	require.Len(t, pub.published(), 1, "the retry was published on a context of its own")
	assert.Equal(t, "d-0042.ingest:redelivery-1", pub.published()[0][0].ID)
}
