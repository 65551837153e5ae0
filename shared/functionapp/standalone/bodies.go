package standalone

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"sync"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

// Request bodies are read whole before a handler runs (functionapp reads up
// to MaxBodyBytes, then the handler checks the caller), so a client that
// opens many uploads and sends them slowly holds memory for each without
// ever being authenticated. The body bytes held are therefore bounded, per
// client address and in all: each body is read here, and charged, as its
// bytes arrive (what a client only announces, or sends nothing of, holds
// no memory and takes nothing from anyone); an upload that would go over
// either bound is answered 503 with Retry-After and its connection closed.
const (
	// MaxBodyBytesPerAddr is the body bytes one client address may hold:
	// sixteen uploads of the largest size at once, and thousands of the
	// API's usual bodies of a few hundred bytes.
	MaxBodyBytesPerAddr = 16 * functionapp.MaxBodyBytes
	// MaxBodyBytesInFlight is the body bytes all clients together may
	// hold.
	MaxBodyBytesInFlight = 256 * functionapp.MaxBodyBytes
	// bodyChunk is how much of a body is read, and charged, at a time.
	bodyChunk = 32 << 10
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

// errOverBudget stops the reading of a body that would go over a bound.
var errOverBudget = errors.New("over the body budget")

func (b *bodyBudget) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > functionapp.MaxBodyBytes {
			// Refused unread (and so without a 100 Continue) by the
			// handler's own bound, as a body found too large is.
			r.Body = io.NopCloser(erringReader{&http.MaxBytesError{Limit: functionapp.MaxBodyBytes}})
			next.ServeHTTP(w, r)
			return
		}
		addr := clientAddr(r, b.xff)
		body, err := b.read(r.Body, addr)
		defer b.give(addr, int64(len(body)))
		if errors.Is(err, errOverBudget) {
			resp := functionapp.Problem(http.StatusServiceUnavailable, "", "too many request bodies are being received at once; retry after 1 s")
			resp.Header.Set("Retry-After", "1")
			resp.Header.Set("Connection", "close")
			functionapp.WriteResponse(w, resp)
			return
		}
		// What was read, then the error that ended the reading, if any:
		// the handler answers a body too large or cut short as it would.
		var rest io.Reader = bytes.NewReader(body)
		if err != nil {
			rest = io.MultiReader(rest, erringReader{err})
		}
		r.Body = io.NopCloser(rest)
		next.ServeHTTP(w, r)
	})
}

// read reads body for addr, charging each chunk as it arrives, up to one
// byte past MaxBodyBytes (enough for the handler to find it too large).
// It returns what it read and charged, and errOverBudget, or the error
// that ended the reading, or nil at the body's end.
func (b *bodyBudget) read(body io.Reader, addr string) ([]byte, error) {
	var buf []byte
	for len(buf) <= functionapp.MaxBodyBytes {
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, min(max(cap(buf), bodyChunk), functionapp.MaxBodyBytes+1-len(buf)))...)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):min(cap(buf), len(buf)+bodyChunk)])
		if n > 0 {
			if !b.take(addr, int64(n)) {
				return buf, errOverBudget
			}
			buf = buf[:len(buf)+n]
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// erringReader answers every read with its error.
type erringReader struct{ err error }

func (e erringReader) Read([]byte) (int, error) { return 0, e.err }

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
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total -= n
	if b.byAddr[addr] -= n; b.byAddr[addr] <= 0 {
		delete(b.byAddr, addr)
	}
}
