package standalone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

func TestParseRate(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Rate{
		"50/s": {50, time.Second}, "600/m": {600, time.Minute}, "20/h": {20, time.Hour}, "0.5/s": {0.5, time.Second},
		"off": {}, "0": {},
	} {
		got, err := ParseRate(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
		if want != (Rate{}) {
			again, err := ParseRate(got.String())
			require.NoError(t, err)
			assert.Equal(t, got, again, "String reads back")
		}
	}
	for _, bad := range []string{"", "50", "50/d", "-1/s", "x/s", "NaN/s", "Inf/s", "1e999/s", "/s"} {
		_, err := ParseRate(bad)
		assert.Error(t, err, bad)
	}
}

// clock is a settable time for the buckets.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.now = c.now.Add(d) }

func TestBucketsRefillAndStayBounded(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	bs := newBuckets(Rate{N: 2, Per: time.Second}, 3, 10)
	for i := range 3 {
		ok, _ := bs.take("k", now)
		require.True(t, ok, "token %d of the burst", i)
	}
	ok, wait := bs.take("k", now)
	require.False(t, ok)
	assert.Equal(t, 500*time.Millisecond, wait, "one token comes every half second")
	ok, _ = bs.take("k", now.Add(499*time.Millisecond))
	assert.False(t, ok)
	ok, _ = bs.take("k", now.Add(500*time.Millisecond))
	assert.True(t, ok)
	ok, _ = bs.take("other", now)
	assert.True(t, ok, "buckets are per key")

	for i := range 1000 {
		bs.take(fmt.Sprint("flood-", i), now)
	}
	assert.LessOrEqual(t, bs.len(), 10, "a flood of keys cannot grow the limiter without bound")
	// Idle buckets are the first forgotten: after a refill a new key evicts them.
	bs.take("late", now.Add(time.Hour))
	assert.LessOrEqual(t, bs.len(), 2)
}

// limited serves one function that authenticates a key ending in "good"
// (as the handlers' guard does, telling the limiter so) and answers 401 to
// anything else, one open sign-up function, one open function that reads
// no credential (as the tracking feed), and health.
func limited(t *testing.T, limits RateLimits) (*httptest.Server, *clock) {
	t.Helper()
	fn := func(public bool) functionapp.Function {
		return functionapp.Function{Public: public, HTTP: func(ctx context.Context, req *functionapp.Request) *functionapp.Response {
			if public {
				if req.Header.Get("X-Test-Refuse") != "" {
					return functionapp.Problem(http.StatusBadRequest, "name", "is required")
				}
				return functionapp.JSON(http.StatusOK, map[string]string{"ok": "yes"})
			}
			if auth := req.Header.Get("Authorization"); strings.HasSuffix(auth, "good") {
				prefix, _ := domain.SplitAPIKey(strings.TrimPrefix(auth, "Bearer "))
				functionapp.NoteAuthenticated(ctx, "key:"+prefix)
				return functionapp.JSON(http.StatusOK, map[string]string{"ok": "yes"})
			}
			return functionapp.Problem(http.StatusUnauthorized, "Authorization", "no")
		}}
	}
	reg := functionapp.Registry{"Work": fn(false), "SignUp": fn(true), "Healthz": fn(true), "Track": fn(true)}
	httpFn := func(name, method, route, auth string) functionapp.FunctionConfig {
		return functionapp.FunctionConfig{Name: name, Bindings: []functionapp.Binding{
			{Type: "httpTrigger", Direction: "in", Name: "req", AuthLevel: auth, Methods: []string{method}, Route: route},
			{Type: "http", Direction: "out", Name: "res"},
		}}
	}
	fns := []functionapp.FunctionConfig{
		httpFn("Work", "get", "work/{id}", "function"),
		httpFn("SignUp", "post", "accounts", "anonymous"),
		httpFn("Healthz", "get", "healthz", "anonymous"),
		httpFn("Track", "get", "track/{id}", "anonymous"),
	}
	limits.SignUpFunctions = []string{"SignUp"}
	for _, renamed := range []RateLimits{{Exempt: []string{"Health"}}, {SignUpFunctions: []string{"Signup"}}} {
		_, err := New(reg, fns, nil, slog.New(slog.DiscardHandler), Options{RateLimits: renamed})
		require.ErrorContains(t, err, "which is no HTTP function of the app", "a name the app does not have would limit its function as any other")
	}
	limits.Exempt = []string{"Healthz"}
	srv, err := New(reg, fns, nil, slog.New(slog.DiscardHandler), Options{RateLimits: limits})
	require.NoError(t, err)
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	if lim, ok := srv.limiter(); ok {
		lim.now = c.Now
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts, c
}

func get(t *testing.T, ts *httptest.Server, method, path, key string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, nil)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := ts.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp
}

// apiKey makes a well-formed key whose prefix is p repeated.
func apiKey(p byte, suffix string) string {
	return domain.APIKeyTag + strings.Repeat(string(p), domain.KeyPrefixLength) + "_" + strings.Repeat("a", domain.KeySecretLength-len(suffix)) + suffix
}

func TestRateLimitPerKeyAnswers429WithRetryAfter(t *testing.T) {
	t.Parallel()
	ts, c := limited(t, RateLimits{PerKey: Rate{N: 1, Per: time.Second}, Burst: 3, SignUp: Rate{N: 1, Per: time.Hour}, SignUpBurst: 2})
	a, b := apiKey('a', "good"), apiKey('b', "good")
	// A key's first request is charged to its address; once it has
	// authenticated the key has its own bucket.
	require.Equal(t, http.StatusOK, get(t, ts, "GET", "/api/work/1", a).StatusCode, "the first request")
	for i := range 3 {
		require.Equal(t, http.StatusOK, get(t, ts, "GET", "/api/work/1", a).StatusCode, "request %d of the burst", i)
	}
	resp := get(t, ts, "GET", "/api/work/1", a)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	assert.Equal(t, http.StatusOK, get(t, ts, "GET", "/api/work/1", b).StatusCode, "another key has its own bucket")
	c.Advance(time.Second)
	assert.Equal(t, http.StatusOK, get(t, ts, "GET", "/api/work/1", a).StatusCode, "refilled")

	// Health is never limited; sign-up has its own, stricter, bucket per address.
	for range 10 {
		require.Equal(t, http.StatusOK, get(t, ts, "GET", "/api/healthz", "").StatusCode)
	}
	assert.Equal(t, http.StatusOK, get(t, ts, "POST", "/api/accounts", "").StatusCode)
	assert.Equal(t, http.StatusOK, get(t, ts, "POST", "/api/accounts", "").StatusCode)
	resp = get(t, ts, "POST", "/api/accounts", "")
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	wait, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err)
	assert.InDelta(t, 3600, wait, 2, "one sign-up an hour")
	// The route written in another case, or with a trailing slash, is the
	// same function and the same bucket.
	assert.Equal(t, http.StatusTooManyRequests, get(t, ts, "POST", "/API/Accounts/", "").StatusCode)
}

func TestMadeUpTokensShareTheirAddressBucket(t *testing.T) {
	t.Parallel()
	ts, c := limited(t, RateLimits{PerKey: Rate{N: 1, Per: time.Minute}, Burst: 3})
	// An endpoint that checks no credential: each request's new token is
	// charged to the address all the same.
	for i := range 3 {
		require.Equal(t, http.StatusOK, get(t, ts, "GET", "/api/track/x", apiKey('t', fmt.Sprint("r", i))).StatusCode, "request %d of the burst", i)
	}
	for _, token := range []string{apiKey('t', "r9"), "made-up", apiKey('z', "good")} {
		resp := get(t, ts, "GET", "/api/track/x", token)
		assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, token)
	}
	assert.Equal(t, http.StatusTooManyRequests, get(t, ts, "GET", "/api/track/x", "").StatusCode)

	// A real key, once it has authenticated, is not held back by its
	// address's bucket, and a made-up token is not let through by it.
	c.Advance(time.Minute)
	good := apiKey('g', "good")
	require.Equal(t, http.StatusOK, get(t, ts, "GET", "/api/work/1", good).StatusCode, "authenticates, charged to the address")
	for i := range 3 {
		require.Equal(t, http.StatusOK, get(t, ts, "GET", "/api/track/x", good).StatusCode, "request %d on the key's own bucket", i)
	}
	assert.Equal(t, http.StatusTooManyRequests, get(t, ts, "GET", "/api/track/x", "made-up").StatusCode, "the address's bucket is spent")
	// A token borrowing the real key's prefix is not the key.
	assert.Equal(t, http.StatusTooManyRequests, get(t, ts, "GET", "/api/track/x", apiKey('g', "bad")).StatusCode)
}

func TestFailedAuthenticationsAreLimitedPerAddress(t *testing.T) {
	t.Parallel()
	ts, _ := limited(t, RateLimits{PerKey: Rate{N: 1, Per: time.Hour}, Burst: 2, FailedAuth: Rate{N: 1, Per: time.Hour}, FailedAuthBurst: 3})
	victim := apiKey('v', "good")
	// Guesses borrowing the victim's prefix spend the guesser's allowance,
	// not the victim's bucket.
	for i := range 3 {
		require.Equal(t, http.StatusUnauthorized, get(t, ts, "GET", "/api/work/1", apiKey('v', "bad")).StatusCode, "guess %d", i)
	}
	resp := get(t, ts, "GET", "/api/work/1", apiKey('w', "bad"))
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "the address has used up its failures")
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))

	// From another address the victim still has its whole burst.
	ts2 := ts.Config.Handler
	for i := range 2 {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/api/work/1", nil)
		req.RemoteAddr = "192.0.2.7:4000"
		req.Header.Set("Authorization", "Bearer "+victim)
		ts2.ServeHTTP(rec, req)
		require.Equal(t, http.StatusOK, rec.Code, "victim request %d", i)
	}
}

func TestForwardedForOnlyWhenTrusted(t *testing.T) {
	t.Parallel()
	for _, trust := range []bool{false, true} {
		ts, _ := limited(t, RateLimits{PerKey: Rate{N: 1, Per: time.Hour}, Burst: 1, SignUp: Rate{N: 1, Per: time.Hour}, SignUpBurst: 1, TrustForwardedFor: trust})
		require.Equal(t, http.StatusOK, get(t, ts, "POST", "/api/accounts", "", "X-Forwarded-For", "198.51.100.1").StatusCode)
		status := get(t, ts, "POST", "/api/accounts", "", "X-Forwarded-For", "10.0.0.1, 198.51.100.2").StatusCode
		if trust {
			assert.Equal(t, http.StatusOK, status, "behind a proxy the last hop names the client")
		} else {
			assert.Equal(t, http.StatusTooManyRequests, status, "without one a client cannot pick its address")
		}
	}
}

// TestARefusedSignUpGivesItsTokenBack: a sign-up the service refuses
// creates nothing, so it does not spend the address's sign-ups; it is
// charged to the address's ordinary requests instead, which bound a flood
// of them.
func TestARefusedSignUpGivesItsTokenBack(t *testing.T) {
	t.Parallel()
	ts, _ := limited(t, RateLimits{PerKey: Rate{N: 1, Per: time.Hour}, Burst: 3, SignUp: Rate{N: 1, Per: time.Hour}, SignUpBurst: 1})
	for i := range 2 {
		require.Equal(t, http.StatusBadRequest, get(t, ts, "POST", "/api/accounts", "", "X-Test-Refuse", "1").StatusCode, "typo %d", i)
	}
	assert.Equal(t, http.StatusOK, get(t, ts, "POST", "/api/accounts", "").StatusCode, "the fixed sign-up still has its token")
	assert.Equal(t, http.StatusTooManyRequests, get(t, ts, "POST", "/api/accounts", "").StatusCode, "one sign-up an hour")

	ts, _ = limited(t, RateLimits{PerKey: Rate{N: 1, Per: time.Hour}, Burst: 2, SignUp: Rate{N: 1, Per: time.Hour}, SignUpBurst: 5})
	for i := range 2 {
		require.Equal(t, http.StatusBadRequest, get(t, ts, "POST", "/api/accounts", "", "X-Test-Refuse", "1").StatusCode, "refused %d", i)
	}
	resp := get(t, ts, "POST", "/api/accounts", "", "X-Test-Refuse", "1")
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "refused sign-ups are held to the ordinary rate")
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
}

// TestAnIPv6SubnetCountsAsOneClient: the per-client limits count an IPv6
// client by its /64, which one subscriber holds whole, and an IPv4 client
// by its address, however it is written.
func TestAnIPv6SubnetCountsAsOneClient(t *testing.T) {
	t.Parallel()
	ts, _ := limited(t, RateLimits{PerKey: Rate{N: 100, Per: time.Hour}, Burst: 100, SignUp: Rate{N: 1, Per: time.Hour}, SignUpBurst: 1})
	signUp := func(remote string) int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/api/accounts", nil)
		req.RemoteAddr = remote
		ts.Config.Handler.ServeHTTP(rec, req)
		return rec.Code
	}
	for _, c := range []struct {
		remote string
		want   int
		why    string
	}{
		{"[2001:db8:1:2::1]:4000", http.StatusOK, "the subnet's first sign-up"},
		{"[2001:db8:1:2:a:b:c:d]:4001", http.StatusTooManyRequests, "another address of the same /64"},
		{"[2001:db8:1:2::1%eth0]:4002", http.StatusTooManyRequests, "a zone does not make it another client"},
		{"[2001:db8:1:3::1]:4000", http.StatusOK, "the next /64 is another client"},
		{"192.0.2.1:4000", http.StatusOK, "an IPv4 client"},
		{"[::ffff:192.0.2.1]:4001", http.StatusTooManyRequests, "the same IPv4 client written as IPv6"},
		{"192.0.2.2:4000", http.StatusOK, "its neighbour is another client"},
	} {
		assert.Equal(t, c.want, signUp(c.remote), c.why)
	}
}

func TestNoLimitsNoLimiter(t *testing.T) {
	t.Parallel()
	ts, _ := limited(t, RateLimits{})
	for range 50 {
		require.Equal(t, http.StatusOK, get(t, ts, "POST", "/api/accounts", "").StatusCode)
	}
	var p functionapp.ProblemDetails
	resp, err := ts.Client().Get(ts.URL + "/api/nowhere")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&p))
	assert.Equal(t, http.StatusNotFound, p.Status)
}

// TestBodiesInFlightAreBoundedPerAddress: while one address's bodies hold
// its budget, its next upload is refused before it is read, with 503 and
// Retry-After; the bytes come back when a request ends, and requests
// without a body are never held back.
func TestBodiesInFlightAreBoundedPerAddress(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	h := newBodyBudget(false, 100, 1000).wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/hold" {
			entered <- struct{}{}
			<-release
		}
	}))
	post := func(path string, n int) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", path, strings.NewReader(strings.Repeat("x", n)))
		req.RemoteAddr = "192.0.2.1:1234"
		h.ServeHTTP(rec, req)
		return rec
	}
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- post("/hold", 60) }()
	<-entered
	refused := post("/other", 60)
	assert.Equal(t, http.StatusServiceUnavailable, refused.Code)
	assert.Equal(t, "1", refused.Header().Get("Retry-After"))
	assert.Equal(t, http.StatusOK, post("/other", 40).Code, "within what is left")

	rec := httptest.NewRecorder()
	get := httptest.NewRequest("GET", "/other", nil)
	get.RemoteAddr = "192.0.2.1:1234"
	h.ServeHTTP(rec, get)
	assert.Equal(t, http.StatusOK, rec.Code, "a request without a body takes nothing")

	close(release)
	require.Equal(t, http.StatusOK, (<-done).Code)
	assert.Equal(t, http.StatusOK, post("/other", 100).Code, "the budget came back")
}

// TestAnnouncedBodiesHoldNothing: an upload is charged for the bytes it
// sends, not the length it announces, so connections that announce the
// largest body and send nothing of it keep nobody out, the same address
// included; a body announced larger than the bound is refused unread.
func TestAnnouncedBodiesHoldNothing(t *testing.T) {
	t.Parallel()
	var seen, entered atomic.Int64
	budget := newBodyBudget(false, 2*functionapp.MaxBodyBytes, 4*functionapp.MaxBodyBytes)
	inner := budget.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, functionapp.MaxBodyBytes))
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		case err != nil:
			w.WriteHeader(http.StatusBadRequest)
		default:
			seen.Add(int64(len(b)))
		}
	}))
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered.Add(1)
		}
		inner.ServeHTTP(w, r)
	}))
	defer ts.Close()
	for range 8 { // four times what the address may hold, announced
		c, err := net.Dial("tcp", ts.Listener.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		_, err = fmt.Fprintf(c, "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n{", functionapp.MaxBodyBytes)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return entered.Load() == 8 }, 10*time.Second, time.Millisecond, "the uploads reach the budget")
	resp, err := ts.Client().Post(ts.URL+"/ok", "application/json", strings.NewReader(`{"a":1}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.EqualValues(t, 7, seen.Load())

	req, _ := http.NewRequest("POST", ts.URL+"/big", strings.NewReader(strings.Repeat("x", functionapp.MaxBodyBytes+1)))
	resp, err = ts.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
}

// TestABodyIsChargedForTheMemoryItHolds: what a body's reading is charged
// is its buffer's capacity, never short of it: a body that sends nothing
// holds a first small buffer, and a large one at most twice what it sent.
func TestABodyIsChargedForTheMemoryItHolds(t *testing.T) {
	t.Parallel()
	b := newBodyBudget(false, MaxBodyBytesPerAddr, MaxBodyBytesInFlight)
	buf, charged, err := b.read(erringReader{io.ErrUnexpectedEOF}, functionapp.MaxBodyBytes, "192.0.2.1")
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Empty(t, buf)
	assert.EqualValues(t, firstBodyBuffer, charged, "nothing sent, a first buffer held")

	sent := functionapp.MaxBodyBytes/2 + 1
	buf, charged, err = b.read(iotest.OneByteReader(strings.NewReader(strings.Repeat("x", sent))), -1, "192.0.2.1")
	require.NoError(t, err)
	assert.Len(t, buf, sent)
	assert.EqualValues(t, cap(buf), charged, "charged for the buffer it holds")
	assert.LessOrEqual(t, charged, int64(2*sent))
	b.give("192.0.2.1", charged+firstBodyBuffer)
	assert.Empty(t, b.byAddr, "all given back")
	assert.Zero(t, b.total)
}
