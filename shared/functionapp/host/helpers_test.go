package host

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/logctx"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/tools/testdoubles"
)

// envelopeBody is the queue message every Service Bus golden file carries,
// in one encoding or another.
const envelopeBody = `{"operation":"delivery","deliveryId":"d-0042","correlationId":"corr-7f3a","payload":{"ownerId":"owner-1"}}`

// testFunctions is what the function.json files of a small app would declare.
func testFunctions() []functionapp.FunctionConfig {
	return []functionapp.FunctionConfig{
		{Name: "Echo", Bindings: []functionapp.Binding{
			{Type: "httpTrigger", Direction: "in", Name: "req", AuthLevel: "function", Methods: []string{"get", "post"}, Route: "echo/{id}"},
			{Type: "http", Direction: "out", Name: "res"},
		}},
		{Name: "ScheduleDrone", Bindings: []functionapp.Binding{
			{Type: "serviceBusTrigger", Direction: "in", Name: "msg", QueueName: topology.QueueDeliveryRequests, Connection: "ServiceBusConnection", DataType: "binary"},
		}},
	}
}

// echoed is what the Echo function answers, so tests can see what it got.
type echoed struct {
	Method      string            `json:"method"`
	Path        string            `json:"path"`
	Params      map[string]string `json:"params"`
	Query       url.Values        `json:"query"`
	Body        string            `json:"body"`
	ContentType string            `json:"contentType"`
}

func echo(_ context.Context, req *functionapp.Request) *functionapp.Response {
	id := req.Params["id"]
	if _, err := strconv.Atoi(id); err != nil {
		return functionapp.Problem(http.StatusBadRequest, "id", "must be a number")
	}
	if answer, err := strconv.Atoi(req.Query.Get("answer")); err == nil {
		return functionapp.Problem(answer, "", "answered as asked")
	}
	status := http.StatusOK
	if req.Method == http.MethodPost {
		status = http.StatusCreated
	}
	resp := functionapp.JSON(status, echoed{
		Method: req.Method, Path: req.Path, Params: req.Params, Query: req.Query,
		Body: string(req.Body), ContentType: req.Header.Get("Content-Type"),
	})
	if status == http.StatusCreated {
		resp.Header.Set("Location", "/api/echo/"+id)
	}
	resp.Header["Vary"] = []string{"Accept", "Accept-Encoding"}
	return resp
}

// events orders what the publisher and the response writer saw.
type events struct {
	mu   sync.Mutex
	list []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, s)
}

func (e *events) get() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.list...)
}

type fakePublisher struct {
	mu    sync.Mutex
	ev    *events
	err   error
	calls [][]ports.Message
}

func (p *fakePublisher) Publish(_ context.Context, msgs ...ports.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ev.add("publish")
	p.calls = append(p.calls, msgs)
	return p.err
}

func (p *fakePublisher) published() [][]ports.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]ports.Message(nil), p.calls...)
}

// recorder notes when the status goes out, to prove publishing came first.
type recorder struct {
	*httptest.ResponseRecorder
	ev *events
}

func (r *recorder) WriteHeader(code int) {
	r.ev.add(fmt.Sprintf("status %d", code))
	r.ResponseRecorder.WriteHeader(code)
}

// logBuffer holds what the server under test logs, one JSON record a line.
type logBuffer struct{ testdoubles.LockedBuffer }

// lines returns the JSON log records written so far.
func (s *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		out = append(out, m)
	}
	return out
}

type stepFunc func(*ports.Delivered) ([]ports.Message, error)

type fixture struct {
	h    http.Handler
	pub  *fakePublisher
	ev   *events
	logs *logBuffer
	opts Options

	mu  sync.Mutex
	got []*ports.Delivered
}

// fixtureNow is the fixture's clock, which retries are scheduled from.
var fixtureNow = time.Date(2025, 3, 14, 9, 27, 0, 0, time.UTC)

func newFixture(t *testing.T, step stepFunc) *fixture {
	t.Helper()
	return newFixtureWith(t, step, Options{Now: func() time.Time { return fixtureNow }, Jitter: func() float64 { return 0 }})
}

func newFixtureWith(t *testing.T, step stepFunc, opts Options) *fixture {
	t.Helper()
	f := &fixture{ev: &events{}, logs: &logBuffer{}, opts: opts}
	f.pub = &fakePublisher{ev: f.ev}
	reg := functionapp.Registry{
		"Echo": {HTTP: echo},
		"ScheduleDrone": {Queue: func(_ context.Context, msg *ports.Delivered) ([]ports.Message, error) {
			f.mu.Lock()
			f.got = append(f.got, msg)
			f.mu.Unlock()
			if step == nil {
				return nil, nil
			}
			return step(msg)
		}},
	}
	h, err := New(reg, testFunctions(), f.pub, logctx.NewLogger(f.logs, slog.LevelDebug), f.opts)
	require.NoError(t, err)
	f.h = h
	return f
}

func (f *fixture) delivered() []*ports.Delivered {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*ports.Delivered(nil), f.got...)
}

// invoke POSTs an invocation the way the host does.
func (f *fixture) invoke(name, invocationID string, body []byte) *recorder {
	req := newRequest(http.MethodPost, "/"+name, body)
	req.Header.Set(functionapp.InvocationHeader, invocationID)
	rec := &recorder{ResponseRecorder: httptest.NewRecorder(), ev: f.ev}
	f.h.ServeHTTP(rec, req)
	return rec
}

// newRequest carries the headers the host puts on every request.
func newRequest(method, target string, body []byte) *http.Request {
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(functionapp.InvocationHeader, "inv-0")
	req.Header.Set("X-Azure-Functions-HostVersion", "4.1037.1.1")
	req.Header.Set("User-Agent", "Azure-Functions-Host/4.1037.1.1")
	return req
}

func golden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

// patch replaces one key of a golden invocation's Data.<binding> or
// Metadata (section "Data.req", "Data", "Metadata"); a nil value deletes it.
func patch(t *testing.T, doc []byte, section, key string, value any) []byte {
	t.Helper()
	var inv map[string]any
	require.NoError(t, json.Unmarshal(doc, &inv))
	var m map[string]any
	switch section {
	case "Data.req":
		m = inv["Data"].(map[string]any)["req"].(map[string]any)
	default:
		m = inv[section].(map[string]any)
	}
	if value == nil {
		delete(m, key)
	} else {
		m[key] = value
	}
	b, err := json.Marshal(inv)
	require.NoError(t, err)
	return b
}

// hostReply is an invocation response as the host parses it.
type hostReply struct {
	Outputs     map[string]json.RawMessage
	Logs        []string
	ReturnValue json.RawMessage
}

// decodeReply checks what the host insists on in every successful reply.
func decodeReply(t *testing.T, rec *recorder) hostReply {
	t.Helper()
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var keys map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &keys))
	require.Contains(t, keys, "Outputs")
	require.Contains(t, keys, "Logs")
	require.Contains(t, keys, "ReturnValue")
	var rep hostReply
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &rep))
	require.NotNil(t, rep.Logs, "Logs must be an array, not null")
	for name, v := range rep.Outputs {
		// The host would try a bare string as base64 and mangle it.
		require.Equal(t, byte('{'), bytes.TrimSpace(v)[0], "output %s must be an object: %s", name, v)
	}
	return rep
}

// problemOf decodes a problem answered straight to the host.
func problemOf(t *testing.T, rec *recorder) functionapp.ProblemDetails {
	t.Helper()
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	var p functionapp.ProblemDetails
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
	require.Equal(t, rec.Code, p.Status)
	return p
}
