package host

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

// httpOut is Outputs.res as the host reads it; statusCode stays raw so the
// test can insist it is a JSON string.
type httpOut struct {
	StatusCode json.RawMessage   `json:"statusCode"`
	Body       *string           `json:"body"`
	Headers    map[string]string `json:"headers"`
}

func decodeHTTPOut(t *testing.T, raw json.RawMessage) httpOut {
	t.Helper()
	var out httpOut
	require.NoError(t, json.Unmarshal(raw, &out))
	require.NotNil(t, out.Body, "body must be present: %s", raw)
	require.NotNil(t, out.Headers, "headers must be present: %s", raw)
	return out
}

func TestHTTPInvocation(t *testing.T) {
	t.Parallel()
	const reqBody = `{"ownerId":"owner-1","expedited":true,"tag":"a"}`
	tests := []struct {
		name       string
		doc        func(t *testing.T) []byte
		status     string
		headers    map[string]string
		body       string // JSON the caller must receive
		logLine    string
		wantCalled bool
	}{
		{
			name:   "GET with Query as an object",
			doc:    func(t *testing.T) []byte { return golden(t, "http_get_query_object.json") },
			status: `"200"`,
			headers: map[string]string{
				"Content-Type": "application/json",
				"Vary":         "Accept, Accept-Encoding",
			},
			body:    `{"method":"GET","path":"/api/echo/42","params":{"id":"42"},"query":{"units":["km"],"verbose":["true"]},"body":"","contentType":""}`,
			logLine: "GET /api/echo/42 answered 200",
		},
		{
			name:   "POST with Query as a JSON string and a string body",
			doc:    func(t *testing.T) []byte { return golden(t, "http_post_query_string.json") },
			status: `"201"`,
			headers: map[string]string{
				"Content-Type": "application/json",
				"Location":     "/api/echo/7",
				"Vary":         "Accept, Accept-Encoding",
			},
			body:    `{"method":"POST","path":"/api/echo/7","params":{"id":"7"},"query":{"units":["mi"]},"body":` + quote(reqBody) + `,"contentType":"application/json; charset=utf-8"}`,
			logLine: "POST /api/echo/7 answered 201",
		},
		{
			name:   "POST with the body as a JSON object",
			doc:    func(t *testing.T) []byte { return golden(t, "http_post_body_object.json") },
			status: `"201"`,
			headers: map[string]string{
				"Content-Type": "application/json",
				"Location":     "/api/echo/7",
				"Vary":         "Accept, Accept-Encoding",
			},
			body:    `{"method":"POST","path":"/api/echo/7","params":{"id":"7"},"query":{},"body":` + quote(reqBody) + `,"contentType":"application/json"}`,
			logLine: "POST /api/echo/7 answered 201",
		},
		{
			name:    "a 400 for the caller travels inside a 200",
			doc:     func(t *testing.T) []byte { return golden(t, "http_get_bad_id.json") },
			status:  `"400"`,
			headers: map[string]string{"Content-Type": "application/problem+json"},
			body:    `{"type":"about:blank","title":"Bad Request","status":400,"detail":"id must be a number","field":"id"}`,
			logLine: "GET /api/echo/abc answered 400",
		},
		{
			name: "a base64 body is passed on as is",
			doc: func(t *testing.T) []byte {
				return patch(t, golden(t, "http_post_body_object.json"), "Data.req", "Body", base64.StdEncoding.EncodeToString([]byte{0xff, 0x00, 0x10}))
			},
			status:  `"201"`,
			headers: map[string]string{"Content-Type": "application/json", "Location": "/api/echo/7", "Vary": "Accept, Accept-Encoding"},
			body:    `{"method":"POST","path":"/api/echo/7","params":{"id":"7"},"query":{},"body":"/wAQ","contentType":"application/json"}`,
			logLine: "POST /api/echo/7 answered 201",
		},
		{
			name: "without Query the URL's query is used",
			doc: func(t *testing.T) []byte {
				return patch(t, golden(t, "http_get_query_object.json"), "Data.req", "Query", nil)
			},
			status:  `"200"`,
			headers: map[string]string{"Content-Type": "application/json", "Vary": "Accept, Accept-Encoding"},
			body:    `{"method":"GET","path":"/api/echo/42","params":{"id":"42"},"query":{"units":["km"],"verbose":["true"]},"body":"","contentType":""}`,
			logLine: "GET /api/echo/42 answered 200",
		},
		{
			name: "a method function.json does not allow gets 405",
			doc: func(t *testing.T) []byte {
				return patch(t, golden(t, "http_post_body_object.json"), "Data.req", "Method", "DELETE")
			},
			status:  `"405"`,
			headers: map[string]string{"Content-Type": "application/problem+json", "Allow": "GET, POST"},
			body:    `{"type":"about:blank","title":"Method Not Allowed","status":405,"detail":"method not allowed"}`,
			logLine: "DELETE /api/echo/7 answered 405",
		},
		{
			name: "a body over the limit gets 413",
			doc: func(t *testing.T) []byte {
				return patch(t, golden(t, "http_post_body_object.json"), "Data.req", "Body", strings.Repeat("x", functionapp.MaxBodyBytes+1))
			},
			status:  `"413"`,
			headers: map[string]string{"Content-Type": "application/problem+json"},
			body:    `{"type":"about:blank","title":"Request Entity Too Large","status":413,"detail":"body must be at most 1048576 bytes","field":"body"}`,
			logLine: "POST /api/echo/7 answered 413",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			rep := decodeReply(t, f.invoke("Echo", "inv-http", tt.doc(t)))

			assert.JSONEq(t, `null`, string(rep.ReturnValue))
			require.Len(t, rep.Outputs, 1)
			out := decodeHTTPOut(t, rep.Outputs["res"])
			assert.Equal(t, tt.status, string(out.StatusCode), "statusCode must be a JSON string")
			// Every answer carries the API's default headers under the host too.
			want := maps.Clone(tt.headers)
			want["X-Content-Type-Options"] = "nosniff"
			want["Cache-Control"] = "no-store"
			assert.Equal(t, want, out.Headers)
			assert.JSONEq(t, tt.body, *out.Body)
			assert.Equal(t, []string{tt.logLine}, rep.Logs)
		})
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestAnUnavailableAnswerIsAWarning: a 503 (a dependency out, a probe
// saying not ready, backpressure) is logged as a warning, since the
// function logs its own cause and the host turns an error line into an
// Error trace; any other 5xx stays an error.
func TestAnUnavailableAnswerIsAWarning(t *testing.T) {
	t.Parallel()
	for answer, level := range map[string]string{"503": "WARN", "500": "ERROR", "200": "INFO"} {
		f := newFixture(t, nil)
		doc := patch(t, golden(t, "http_get_query_object.json"), "Data.req", "Url", "https://fabrikam-drone.azurewebsites.net/api/echo/42?answer="+answer)
		rec := f.invoke("Echo", "inv-"+answer, doc)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var seen bool
		for _, l := range f.logs.lines(t) {
			if l["msg"] == "http invocation" {
				seen = true
				assert.Equal(t, level, l["level"], "a %s answer", answer)
			}
		}
		assert.True(t, seen, "a %s answer is logged", answer)
	}
}

func TestHTTPInvocationReturnBinding(t *testing.T) {
	t.Parallel()
	fns := []functionapp.FunctionConfig{{Name: "Echo", Bindings: []functionapp.Binding{
		{Type: "httpTrigger", Direction: "in", Name: "req", Methods: []string{"get"}, Route: "echo/{id}"},
		{Type: "http", Direction: "out", Name: "$return"},
	}}}
	h, err := New(functionapp.Registry{"Echo": {HTTP: echo}}, fns, nil, nil, Options{})
	require.NoError(t, err)
	f := &fixture{h: h, ev: &events{}}

	rep := decodeReply(t, f.invoke("Echo", "inv-ret", golden(t, "http_get_query_object.json")))
	assert.Empty(t, rep.Outputs)
	out := decodeHTTPOut(t, rep.ReturnValue)
	assert.Equal(t, `"200"`, string(out.StatusCode))
}

func TestForwardedHTTP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, method, target, body string
		status                     int
		location                   string
		echo                       string // the echoed request, when the handler answers one
	}{
		{
			name: "GET reaches the route with its parameters", method: http.MethodGet, target: "/api/echo/42?units=km&units=mi",
			status: http.StatusOK,
			echo:   `{"method":"GET","path":"/api/echo/42","params":{"id":"42"},"query":{"units":["km","mi"]},"body":"","contentType":""}`,
		},
		{
			name: "POST carries its body", method: http.MethodPost, target: "/api/echo/7", body: `{"a":1}`,
			status: http.StatusCreated, location: "/api/echo/7",
			echo: `{"method":"POST","path":"/api/echo/7","params":{"id":"7"},"query":{},"body":"{\"a\":1}","contentType":"application/json"}`,
		},
		{name: "a 400 is answered directly", method: http.MethodGet, target: "/api/echo/abc", status: http.StatusBadRequest},
		{name: "a method the function does not allow", method: http.MethodDelete, target: "/api/echo/7", status: http.StatusMethodNotAllowed},
		{name: "an unknown route", method: http.MethodGet, target: "/api/nothing", status: http.StatusNotFound},
		{name: "a queue function has no route", method: http.MethodPost, target: "/api/ScheduleDrone", status: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			req := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			req.Header.Set(functionapp.InvocationHeader, "inv-fwd")
			rec := httptest.NewRecorder()
			f.h.ServeHTTP(rec, req)

			require.Equal(t, tt.status, rec.Code, rec.Body.String())
			assert.Equal(t, tt.location, rec.Header().Get("Location"))
			if tt.echo != "" {
				assert.JSONEq(t, tt.echo, rec.Body.String())
			}
			assert.Empty(t, f.delivered())
		})
	}
}

func TestInvocationUsesTheRequestContext(t *testing.T) {
	t.Parallel()
	type key struct{}
	var seen []any
	fns := testFunctions()[:1]
	h, err := New(functionapp.Registry{"Echo": {HTTP: func(ctx context.Context, req *functionapp.Request) *functionapp.Response {
		seen = append(seen, ctx.Value(key{}))
		return echo(ctx, req)
	}}}, fns, nil, nil, Options{})
	require.NoError(t, err)

	req := httptest.NewRequest(http.MethodPost, "/Echo", strings.NewReader(string(golden(t, "http_get_query_object.json"))))
	req = req.WithContext(context.WithValue(req.Context(), key{}, "from the host connection"))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, []any{"from the host connection"}, seen, "a cancelled host request must cancel the handler")
}
