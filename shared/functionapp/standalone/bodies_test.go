package standalone

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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
