package host

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// teapot stands for the real handler behind a Gate.
var teapot = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })

func serveGate(g *Gate, method, target string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec
}

func TestGateAnswersWhileStarting(t *testing.T) {
	t.Parallel()
	g := NewGate(0)
	tests := []struct{ name, method, target string }{
		{"the host's readiness probe", http.MethodGet, "/"},
		{"a forwarded request", http.MethodGet, "/api/healthz"},
		{"a queue invocation", http.MethodPost, "/ScheduleDrone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := serveGate(g, tt.method, tt.target)
			require.Equal(t, http.StatusServiceUnavailable, rec.Code)
			assert.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
			assert.Equal(t, "5", rec.Header().Get("Retry-After"))
			assert.Contains(t, rec.Body.String(), "starting")
		})
	}
}

func TestGateForwardedRequestsDoNotWait(t *testing.T) {
	t.Parallel()
	g := NewGate(time.Hour) // a wait that would hang the test if it applied
	for _, target := range []string{"/api/deliveryrequests", "/API/deliveryrequests", "/Api"} {
		rec := serveGate(g, http.MethodPost, target)
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code, target)
		assert.Equal(t, "5", rec.Header().Get("Retry-After"), target)
	}
}

func TestGateHoldsAnInvocationUntilOpen(t *testing.T) {
	t.Parallel()
	g := NewGate(time.Hour)
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- serveGate(g, http.MethodPost, "/ScheduleDrone") }()
	g.Open(teapot)
	select {
	case rec := <-done:
		assert.Equal(t, http.StatusTeapot, rec.Code, "the held invocation reaches the real handler")
	case <-time.After(10 * time.Second):
		t.Fatal("the invocation was still held after Open")
	}
	<-g.Ready()
}

func TestGateRefusesAnInvocationAfterItsWait(t *testing.T) {
	t.Parallel()
	g := NewGate(10 * time.Millisecond)
	rec := serveGate(g, http.MethodPost, "/ScheduleDrone")
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code, "a non-2xx fails the invocation, so the message is delivered again")
}

func TestGateOpenServesEverything(t *testing.T) {
	t.Parallel()
	g := NewGate(0)
	g.Open(teapot)
	g.Open(http.NotFoundHandler()) // a second Open changes nothing
	for _, target := range []string{"/", "/api/healthz", "/ScheduleDrone"} {
		assert.Equal(t, http.StatusTeapot, serveGate(g, http.MethodPost, target).Code, target)
	}
}

// An invocation whose budget runs out while the Gate holds it (a start
// wait set longer than the budget) is refused, not answered with an empty
// 200, which the host would take for success and complete the message
// unread.
func TestAGateHoldingPastTheBudgetRefuses(t *testing.T) {
	t.Parallel()
	g := NewGate(time.Minute)
	req := newRequest(http.MethodPost, "/ScheduleDrone", golden(t, "servicebus_double_encoded.json"))
	rec := httptest.NewRecorder()
	budgeted(g, 50*time.Millisecond).ServeHTTP(rec, req)
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
}
