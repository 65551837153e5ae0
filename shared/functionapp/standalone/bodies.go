package standalone

import (
	"net/http"
	"sync"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

// Request bodies are read whole before a handler runs (functionapp reads up
// to MaxBodyBytes, then the handler checks the caller), so a client that
// opens many uploads and sends them slowly holds memory for each without
// ever being authenticated. The bodies in flight are therefore bounded, per
// client address and in all, by the bytes they announce (MaxBodyBytes for
// one whose length is not announced); a request over either bound is
// answered 503 with Retry-After before its body is read.
const (
	// MaxBodyBytesPerAddr is the body bytes one client address may have in
	// flight: sixteen uploads of the largest size at once, and thousands
	// of the API's usual bodies of a few hundred bytes.
	MaxBodyBytesPerAddr = 16 * functionapp.MaxBodyBytes
	// MaxBodyBytesInFlight is the body bytes all clients together may have
	// in flight.
	MaxBodyBytesInFlight = 256 * functionapp.MaxBodyBytes
)

type bodyBudget struct {
	xff          bool
	perAddr, all int64
	mu           sync.Mutex
	byAddr       map[string]int64
	total        int64
}

func newBodyBudget(trustForwardedFor bool, perAddr, all int64) *bodyBudget {
	return &bodyBudget{xff: trustForwardedFor, perAddr: perAddr, all: all, byAddr: map[string]int64{}}
}

func (b *bodyBudget) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		n := r.ContentLength
		if n < 0 || n > functionapp.MaxBodyBytes {
			n = functionapp.MaxBodyBytes // the most functionapp will read
		}
		addr := clientAddr(r, b.xff)
		if !b.take(addr, n) {
			resp := functionapp.Problem(http.StatusServiceUnavailable, "", "too many request bodies are being received at once; retry after 1 s")
			resp.Header.Set("Retry-After", "1")
			resp.Header.Set("Connection", "close")
			functionapp.WriteResponse(w, resp)
			return
		}
		defer b.give(addr, n)
		next.ServeHTTP(w, r)
	})
}

func (b *bodyBudget) take(addr string, n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.byAddr[addr]+n > b.perAddr || b.total+n > b.all {
		return false
	}
	b.byAddr[addr] += n
	b.total += n
	return true
}

func (b *bodyBudget) give(addr string, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total -= n
	if b.byAddr[addr] -= n; b.byAddr[addr] <= 0 {
		delete(b.byAddr, addr)
	}
}
