package functionapp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/logctx"
)

// routed is a router for two functions: one delivery by id (GET, DELETE)
// and the literal route beside it (GET).
func routed(t *testing.T) http.Handler {
	t.Helper()
	var fns []functionapp.FunctionConfig
	for name, binding := range map[string]string{
		"GetDelivery":  `{"type":"httpTrigger","direction":"in","name":"req","methods":["get","delete"],"route":"deliveries/{id}"}`,
		"DeliverySums": `{"type":"httpTrigger","direction":"in","name":"req","methods":["get"],"route":"deliveries/summary"}`,
	} {
		fc := functionapp.FunctionConfig{Name: name}
		require.NoError(t, json.Unmarshal([]byte(`{"bindings":[`+binding+`,{"type":"http","direction":"out","name":"res"}]}`), &fc))
		fns = append(fns, fc)
	}
	reg := functionapp.Registry{
		"GetDelivery": {HTTP: func(_ context.Context, req *functionapp.Request) *functionapp.Response {
			return functionapp.JSON(http.StatusOK, map[string]string{"id": req.Params["id"], "method": req.Method})
		}},
		"DeliverySums": {HTTP: func(context.Context, *functionapp.Request) *functionapp.Response {
			return functionapp.JSON(http.StatusOK, map[string]string{"summary": "yes"})
		}},
	}
	router, err := functionapp.NewRouter(reg, fns, "api")
	require.NoError(t, err)
	return router
}

func serve(h http.Handler, method, target string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec
}

// TestRouterMatchesAsTheHostDoes: the Functions host matches a route's
// literal segments in any case and ignores a trailing slash, then forwards
// the path as written; the router serves those paths too, with path
// parameters as written and literal routes before parameters.
func TestRouterMatchesAsTheHostDoes(t *testing.T) {
	h := routed(t)
	for target, want := range map[string]string{
		"/api/deliveries/Ab-1":      `{"id":"Ab-1","method":"GET"}`,
		"/api/deliveries/Ab-1/":     `{"id":"Ab-1","method":"GET"}`,
		"/API/Deliveries/Ab-1":      `{"id":"Ab-1","method":"GET"}`,
		"/Api/DELIVERIES/Ab-1/":     `{"id":"Ab-1","method":"GET"}`,
		"/api/deliveries/a%2Fb/":    `{"id":"a/b","method":"GET"}`,
		"/api/deliveries/summary/":  `{"summary":"yes"}`,
		"/api/Deliveries/Summary":   `{"summary":"yes"}`,
		"/api/deliveries/SUMMARY":   `{"summary":"yes"}`,
		"/api/deliveries/Summary-1": `{"id":"Summary-1","method":"GET"}`,
	} {
		rec := serve(h, "GET", target)
		require.Equal(t, http.StatusOK, rec.Code, target)
		assert.JSONEq(t, want, rec.Body.String(), target)
	}
	rec := serve(h, "PUT", "/API/deliveries/x/")
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	assert.Contains(t, rec.Header().Get("Allow"), "DELETE")
	for _, target := range []string{"/api/deliveries", "/api/deliveries/x/y", "/api/deliveriesx/x", "/apix/deliveries/x"} {
		rec := serve(h, "GET", target)
		assert.Equal(t, http.StatusNotFound, rec.Code, target)
		assert.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"), target)
	}
}

func TestRouterRefusesPathsTheMuxWouldClean(t *testing.T) {
	h := routed(t)
	for _, target := range []string{
		"/api//deliveries/x", "/api/deliveries/./x", "/api/deliveries/../deliveries/x",
		"/api/deliveries/%2E", "/api/deliveries/%2e%2e", "/api/x/../../etc", "//api/deliveries/x",
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
		assert.Equal(t, http.StatusNotFound, rec.Code, target)
		assert.Empty(t, rec.Header().Get("Location"), target)
		assert.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"), target)
	}
	rec := serve(h, "GET", "/api/deliveries/x")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.JSONEq(t, `{"id":"x","method":"GET"}`, rec.Body.String())
	// An encoded slash keeps a segment whole: the handler judges the id.
	rec = serve(h, "GET", "/api/deliveries/..%2Fx")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.JSONEq(t, `{"id":"../x","method":"GET"}`, rec.Body.String())
}

func TestRouterAnswersProblems(t *testing.T) {
	h := routed(t)
	rec := serve(h, "POST", "/api/deliveries/x")
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	assert.Contains(t, rec.Header().Get("Allow"), "GET")
	rec = serve(h, "GET", "/api/nothing")
	assert.Equal(t, http.StatusNotFound, rec.Code)
	assert.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))
	assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
}

func TestParseQueryNamesTheParameterItCannotRead(t *testing.T) {
	for raw, field := range map[string]string{
		"limit=%zz":        "limit",
		"limit=5;after=x":  "limit",
		"a=1&after=x%":     "after",
		"%zz=1":            "query",
		"limit;after=5":    "limit;after",
		"status=ok&limit=": "", // empty values are the handlers' to judge
	} {
		q, err := functionapp.ParseQuery(raw)
		if field == "" {
			require.Nil(t, err, raw)
			continue
		}
		require.NotNil(t, err, raw)
		assert.Equal(t, field, err.Field, raw)
		assert.Nil(t, q)
	}
	q, err := functionapp.ParseQuery("a=1&a=2&b=x+y&c=%2F")
	require.Nil(t, err)
	assert.Equal(t, []string{"1", "2"}, q["a"])
	assert.Equal(t, "x y", q.Get("b"))
	assert.Equal(t, "/", q.Get("c"))
}

func TestRouterRefusesAnUnreadableQuery(t *testing.T) {
	fc := functionapp.FunctionConfig{Name: "List"}
	require.NoError(t, json.Unmarshal([]byte(`{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","methods":["get"],"route":"things"},{"type":"http","direction":"out","name":"res"}]}`), &fc))
	fns := []functionapp.FunctionConfig{fc}
	reg := functionapp.Registry{"List": {HTTP: func(_ context.Context, req *functionapp.Request) *functionapp.Response {
		return functionapp.JSON(http.StatusOK, req.Query)
	}}}
	mux, err := functionapp.NewRouter(reg, fns, "api")
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/api/things?limit=%zz", nil))
	assert.Equal(t, http.StatusBadRequest, rec.Code)
	assert.Contains(t, rec.Body.String(), `"field":"limit"`)
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/api/things?limit=5", nil))
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.JSONEq(t, `{"limit":["5"]}`, rec.Body.String())
	assert.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))
	assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
}

// FuzzParseQuery: the strict query decoder never panics, agrees with
// net/url wherever net/url reads the whole query without complaint, and
// what it accepts survives a round trip.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "a=1", "limit=%zz", "a=1;b=2", "a=1&a=2&b", "x+y=%2B&&=", "%=", "k=%E2%82%AC"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, qerr := functionapp.ParseQuery(raw)
		want, err := url.ParseQuery(raw)
		if err == nil {
			require.Nil(t, qerr, "net/url reads %q", raw)
			assert.Equal(t, len(want), len(q))
			for k, vs := range want {
				assert.Equal(t, vs, q[k], k)
			}
		}
		if qerr != nil {
			assert.NotEmpty(t, qerr.Field)
			return
		}
		again, qerr := functionapp.ParseQuery(q.Encode())
		require.Nil(t, qerr)
		assert.Equal(t, len(q), len(again))
	})
}

// TestARefusedBodyIsDrainedForAWhileOnly: WithDrain reads a body over the
// limit so that its caller gets the 413, but a caller that stops sending
// midway is answered once the drain's time is up, not held until the
// server's read timeout.
func TestARefusedBodyIsDrainedForAWhileOnly(t *testing.T) {
	t.Parallel()
	fc := functionapp.FunctionConfig{Name: "Post"}
	require.NoError(t, json.Unmarshal([]byte(`{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","methods":["post"],"route":"things"},{"type":"http","direction":"out","name":"res"}]}`), &fc))
	reg := functionapp.Registry{"Post": {HTTP: func(context.Context, *functionapp.Request) *functionapp.Response {
		return functionapp.JSON(http.StatusCreated, map[string]string{})
	}}}
	router, err := functionapp.NewRouter(reg, []functionapp.FunctionConfig{fc}, "api", functionapp.WithDrain(100<<20, 200*time.Millisecond))
	require.NoError(t, err)
	srv := httptest.NewServer(router)
	t.Cleanup(srv.Close)

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	_, err = fmt.Fprintf(conn, "POST /api/things HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", 50<<20)
	require.NoError(t, err)
	_, err = conn.Write(make([]byte, 2<<20)) // then nothing more
	require.NoError(t, err)
	// Generous for a busy machine; without the drain's deadline the answer
	// waits for the server's read timeout, which httptest does not set.
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err, "answered once the drain's time is up")
	defer resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
}

// TestOnlyTheHostsInvocationIDIsLogged: a router not behind the Functions
// host (WithInvocationIDs) takes no invocation id from a caller's header,
// which would let the caller forge the key that ties log lines together.
func TestOnlyTheHostsInvocationIDIsLogged(t *testing.T) {
	t.Parallel()
	fc := functionapp.FunctionConfig{Name: "Get"}
	require.NoError(t, json.Unmarshal([]byte(`{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","methods":["get"],"route":"things"},{"type":"http","direction":"out","name":"res"}]}`), &fc))
	for _, host := range []bool{false, true} {
		var logged []string
		reg := functionapp.Registry{"Get": {HTTP: func(ctx context.Context, _ *functionapp.Request) *functionapp.Response {
			for _, a := range logctx.Attrs(ctx) {
				if a.Key == "invocationId" {
					logged = append(logged, a.Value.String())
				}
			}
			return functionapp.JSON(http.StatusOK, map[string]string{})
		}}}
		var opts []functionapp.RouterOption
		if host {
			opts = append(opts, functionapp.WithInvocationIDs())
		}
		router, err := functionapp.NewRouter(reg, []functionapp.FunctionConfig{fc}, "api", opts...)
		require.NoError(t, err)
		req := httptest.NewRequest(http.MethodGet, "/api/things", nil)
		req.Header.Add(functionapp.InvocationHeader, "forged-by-caller")
		req.Header.Add(functionapp.InvocationHeader, "3f1c0b8e-host")
		router.ServeHTTP(httptest.NewRecorder(), req)
		if host {
			assert.Equal(t, []string{"3f1c0b8e-host"}, logged, "behind the host: the host's, the last")
		} else {
			assert.Empty(t, logged, "elsewhere: none")
		}
	}
}
