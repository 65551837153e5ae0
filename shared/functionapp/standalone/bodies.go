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
// ever being authenticated. The memory bodies hold is therefore bounded,
// per client address and in all: each body is read here into a buffer
// that grows as its bytes arrive, and each growth is charged before it is
// made (what a client only announces, or sends nothing of, holds a first
// small buffer and takes that much from the bounds); an upload that would
// go over either bound is answered 503 with Retry-After and its connection
// closed.
const (
	// MaxBodyBytesPerAddr is the body bytes one client address may hold:
	// sixteen uploads of the largest size at once, and thousands of the
	// API's usual bodies of a few hundred bytes.
	MaxBodyBytesPerAddr = 16 * functionapp.MaxBodyBytes
	// MaxBodyBytesInFlight is the body bytes all clients together may
	// hold.
	MaxBodyBytesInFlight = 256 * functionapp.MaxBodyBytes
	// firstBodyBuffer is the buffer a body is first read into: enough for
	// most of the API's bodies, and all that a connection that sends
	// nothing holds.
	firstBodyBuffer = 512
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
		body, charged, err := b.read(r.Body, r.ContentLength, addr)
		defer b.give(addr, charged)
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

// read reads body, of length n (-1: not announced), for addr: n bytes, or
// up to one byte past MaxBodyBytes when n is not announced (enough for the
// handler to find it too large). What is charged is the memory the reading
// holds, its buffer's capacity, taken before each growth: a first buffer
// of at most firstBodyBuffer bytes, then twice as much each time it fills,
// never past what is to be read. It returns what it read, what it charged,
// and errOverBudget, or the error that ended the reading, or nil at the
// body's end.
func (b *bodyBudget) read(body io.Reader, n int64, addr string) (buf []byte, charged int64, err error) {
	limit := int(n)
	if n < 0 {
		limit = functionapp.MaxBodyBytes + 1
	}
	for len(buf) < limit {
		if len(buf) == cap(buf) {
			grow := min(max(cap(buf), firstBodyBuffer), limit-len(buf))
			if !b.take(addr, int64(grow)) {
				return buf, charged, errOverBudget
			}
			charged += int64(grow)
			grown := make([]byte, len(buf), len(buf)+grow)
			copy(grown, buf)
			buf = grown
		}
		read, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+read]
		if err == io.EOF {
			return buf, charged, nil
		}
		if err != nil {
			return buf, charged, err
		}
	}
	return buf, charged, nil
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
