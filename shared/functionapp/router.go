package functionapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"runtime/debug"
	"strings"
	"time"

	"github.com/fabrikam/dronedelivery/shared/logctx"
)

// MaxBodyBytes bounds every request body; larger bodies get 413.
const MaxBodyBytes = 1 << 20

// RoutePrefix is the Functions host's default HTTP route prefix.
const RoutePrefix = "api"

// Router serves every httpTrigger function at its route, and answers
// everything else with a problem document instead of ServeMux's plain-text
// 404 and 405.
//
// A route matches as the Functions host matches it, so that a path the
// host forwards is one this router serves and every runtime answers the
// same paths: literal segments ignore case and a trailing slash is
// ignored. The host's routes are ASP.NET Core routes (the HTTP extension's
// WebJobsRouteBuilder), whose RoutePatternMatcher compares literals with
// StringComparison.OrdinalIgnoreCase and whose PathTokenizer drops a
// trailing slash; the host then forwards the path as the client wrote it
// (DefaultHttpWorkerService.GetPathValue). Path parameters keep their case.
type Router struct {
	mux *http.ServeMux
	// routes holds the segments of every route's pattern, for the match
	// that ignores case when the exact one finds nothing.
	routes [][]string
}

// RouterOption tunes NewRouter.
type RouterOption func(*routerOptions)

type routerOptions struct {
	streams       bool
	drain         int64
	drainTime     time.Duration
	invocationIDs bool
}

// WithInvocationIDs logs the Functions host's invocation id a request
// carries (InvocationID). Only the host sets one: elsewhere the header is
// the caller's, and logging it would let a caller forge the key that ties
// log lines together.
func WithInvocationIDs() RouterOption { return func(o *routerOptions) { o.invocationIDs = true } }

// WithDrain reads the rest of a body refused as too large, up to limit
// bytes in all and for at most within from the refusal (0: within the
// server's read timeout), before answering 413. The
// Functions host streams a forwarded body to the handler with its
// Content-Length (HttpRequestExtensions.ToHttpRequestMessage,
// Azure/azure-functions-host) and its HttpClient fails the whole send,
// answering the caller 500, when the handler closes the connection before
// the upload ends; the host takes bodies up to 104,857,600 bytes
// (ScriptConstants.DefaultMaxRequestBodySize, or
// FUNCTIONS_REQUEST_BODY_SIZE_LIMIT). A caller uploading at a normal pace
// thus gets the 413; one trickling a large body is cut off after within,
// rather than holding a request slot of the host's until the read
// timeout. Without it, net/http reads 256 KB of what is left and
// closes the connection.
func WithDrain(limit int64, within time.Duration) RouterOption {
	return func(o *routerOptions) { o.drain, o.drainTime = limit, within }
}

// NewRouter serves every httpTrigger function of fns at its route under
// prefix, with the methods function.json allows.
func NewRouter(reg Registry, fns []FunctionConfig, prefix string, opts ...RouterOption) (*Router, error) {
	var o routerOptions
	for _, opt := range opts {
		opt(&o)
	}
	mux := http.NewServeMux()
	rt := &Router{mux: mux}
	for _, fc := range fns {
		t := fc.Trigger()
		if t == nil {
			return nil, fmt.Errorf("function %s has no trigger", fc.Name)
		}
		if t.Type != "httpTrigger" {
			continue
		}
		h := reg[fc.Name].HTTP
		if h == nil {
			return nil, fmt.Errorf("function %s has no HTTP handler", fc.Name)
		}
		route := t.Route
		if route == "" {
			route = fc.Name
		}
		pattern := RoutePattern(prefix, route)
		rt.routes = append(rt.routes, strings.Split(pattern, "/"))
		serve := serveFunc(fc.Name, h, o)
		if s := reg[fc.Name].Stream; s != nil && o.streams {
			serve = serveStream(fc.Name, s)
		}
		methods := fc.Methods()
		if len(methods) == 0 {
			mux.Handle(pattern, serve)
			continue
		}
		for _, m := range methods {
			mux.Handle(m+" "+pattern, serve)
		}
	}
	return rt, nil
}

func serveFunc(name string, h HTTPFunc, o routerOptions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := logctx.With(r.Context(), "function", name)
		if id := InvocationID(r.Header); id != "" && o.invocationIDs {
			ctx = logctx.With(ctx, "invocationId", id)
		}
		query, err := ParseQuery(r.URL.RawQuery)
		if err != nil {
			WriteResponse(w, Problem(http.StatusBadRequest, err.Field, err.Detail))
			return
		}
		sent := r.Body
		body, rerr := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		if rerr != nil {
			var tooBig *http.MaxBytesError
			if errors.As(rerr, &tooBig) {
				if o.drain > MaxBodyBytes && r.ContentLength <= o.drain {
					if o.drainTime > 0 {
						// From now: a body that took most of the read
						// timeout to reach the limit may read on this long.
						_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(o.drainTime))
					}
					io.CopyN(io.Discard, sent, o.drain-MaxBodyBytes)
				}
				WriteResponse(w, Problem(http.StatusRequestEntityTooLarge, "body", fmt.Sprintf("must be at most %d bytes", MaxBodyBytes)))
				return
			}
			WriteResponse(w, Problem(http.StatusBadRequest, "body", "could not be read"))
			return
		}
		req := FromHTTP(r, body)
		req.Query = query
		WriteResponse(w, Call(ctx, h, req))
	})
}

// InvocationHeader names the Functions host's invocation id, the key that
// ties log lines to the invocation in Application Insights.
const InvocationHeader = "X-Azure-Functions-InvocationId"

// InvocationID is the Functions host's id of the invocation a request
// carries, "" when it carries none. The host copies the caller's headers
// onto a forwarded request and then adds its own id
// (DefaultHttpWorkerService.AddHeaders, Headers.Add), so a caller that
// sent the header itself arrives first in the list: the host's is the last.
func InvocationID(h http.Header) string {
	vals := h.Values(InvocationHeader)
	if len(vals) == 0 {
		return ""
	}
	last := vals[len(vals)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.TrimSpace(last)
}

// ServeHTTP serves r by its route. A path ServeMux would clean (a doubled
// slash, a "." or ".." segment, either percent-encoded) is not served: the
// mux's answer to it is a redirect, which an API client would follow with
// its method and credentials to wherever the cleaned path leads, so the
// API asks for canonical paths.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !canonicalPath(r) {
		WriteResponse(w, Problem(http.StatusNotFound, "", fmt.Sprintf("%s %s is not served: the path is not in canonical form (no empty, . or .. segments)", r.Method, r.URL.EscapedPath())))
		return
	}
	r, pattern := rt.resolved(r)
	if pattern != "" {
		rt.mux.ServeHTTP(w, r) // sets the request's pattern and path values
		return
	}
	h, _ := rt.mux.Handler(r)
	rec := &statusRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	status := rec.status
	if status != http.StatusMethodNotAllowed {
		status = http.StatusNotFound
	}
	resp := Problem(status, "", fmt.Sprintf("%s %s is not served", r.Method, r.URL.Path))
	if allow := rec.header.Get("Allow"); allow != "" && status == http.StatusMethodNotAllowed {
		resp.Header.Set("Allow", allow)
	}
	WriteResponse(w, resp)
}

// Resolving hands next each request as the router will serve it (its
// literal segments in its route's case, no trailing slash), matched once:
// what stands before the router (rate limits, stream caps) then sees the
// path it serves, and Pattern and ServeHTTP do not match it again.
func (rt *Router) Resolving(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, pattern := rt.resolve(r)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), resolvedKey{}, pattern)))
	})
}

// resolvedKey holds, in a request Resolving handed on, the pattern it
// resolved.
type resolvedKey struct{}

// Pattern is the pattern r is served by ("" when none), matched as
// ServeHTTP matches it.
func (rt *Router) Pattern(r *http.Request) string {
	_, pattern := rt.resolved(r)
	return pattern
}

// resolved is resolve, or what Resolving found for r already.
func (rt *Router) resolved(r *http.Request) (*http.Request, string) {
	if pattern, ok := r.Context().Value(resolvedKey{}).(string); ok {
		return r, pattern
	}
	return rt.resolve(r)
}

// resolve returns r and the pattern that serves it. The route is the one
// whose literal segments match r's in any case, the one with the most
// literal segments when several do (so /api/deliveries/SUMMARY is the
// summary, not a delivery of that id, as under the host); when r is not
// written as that route writes its literals, or ends in a slash, it returns
// a copy of r written so. The copy is returned when only the method
// differs too, so that the 405 names the methods of the route the path
// meant. A path no route matches is served as written.
func (rt *Router) resolve(r *http.Request) (*http.Request, string) {
	esc := r.URL.EscapedPath()
	if len(esc) > 1 {
		esc = strings.TrimSuffix(esc, "/")
	}
	segs := strings.Split(esc, "/")
	var best []string
	bestLiterals := -1
	for _, route := range rt.routes {
		if len(route) != len(segs) {
			continue
		}
		literals := 0
		for i, s := range route {
			if isParameter(s) {
				if segs[i] == "" {
					literals = -1
					break
				}
				continue
			}
			if !strings.EqualFold(s, segs[i]) {
				literals = -1
				break
			}
			literals++
		}
		// The route with more literal segments is the more specific, as
		// the mux and ASP.NET Core both prefer.
		if literals > bestLiterals {
			best, bestLiterals = route, literals
		}
	}
	if best == nil {
		_, pattern := rt.mux.Handler(r)
		return r, pattern
	}
	for i, s := range best {
		if !isParameter(s) {
			segs[i] = s
		}
	}
	canonical := strings.Join(segs, "/")
	if canonical == r.URL.EscapedPath() {
		_, pattern := rt.mux.Handler(r)
		return r, pattern
	}
	u, err := url.Parse(canonical)
	if err != nil {
		return r, ""
	}
	folded := new(http.Request)
	*folded = *r
	folded.URL = new(url.URL)
	*folded.URL = *r.URL
	folded.URL.Path, folded.URL.RawPath = u.Path, u.RawPath
	_, pattern := rt.mux.Handler(folded)
	return folded, pattern
}

func isParameter(seg string) bool { return strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") }

// canonicalPath reports whether r's path is one ServeMux would route as it
// is rather than redirect to a cleaned form.
func canonicalPath(r *http.Request) bool {
	p := r.URL.EscapedPath()
	if p == "" || p[0] != '/' {
		return false
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	if clean != p {
		return false
	}
	// The mux cleans the escaped path; a segment of %2E or %2E%2E is "." or
	// ".." to every server that decodes first. (A segment such as
	// ..%2Fx is one segment, an id the handler refuses.)
	for seg := range strings.SplitSeq(p, "/") {
		if dec, err := url.PathUnescape(seg); err == nil && (dec == "." || dec == "..") {
			return false
		}
	}
	return true
}

type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(status int)      { r.status = status }

// QueryError names the query parameter a request could not be read by.
type QueryError struct {
	Field  string
	Detail string
}

func (e *QueryError) Error() string { return e.Field + " " + e.Detail }

// ParseQuery decodes a raw query string. Unlike url.URL.Query, which drops
// a pair it cannot decode, it refuses the request, naming the parameter,
// so a malformed value is never taken as absent.
func ParseQuery(raw string) (url.Values, *QueryError) {
	q := url.Values{}
	for pair := range strings.SplitSeq(raw, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return nil, &QueryError{Field: "query", Detail: fmt.Sprintf("has a parameter name that is not URL-encoded text: %.40q", k)}
		}
		field := key
		if field == "" {
			field = "query"
		}
		if strings.Contains(k, ";") {
			return nil, &QueryError{Field: field, Detail: "must not contain ';' (parameters are separated by '&')"}
		}
		if strings.Contains(v, ";") {
			return nil, &QueryError{Field: field, Detail: "must not contain ';' (parameters are separated by '&'; encode it as %3B)"}
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return nil, &QueryError{Field: field, Detail: "is not URL-encoded text"}
		}
		q[key] = append(q[key], val)
	}
	return q, nil
}

// FromHTTP converts a net/http request whose body was already read.
func FromHTTP(r *http.Request, body []byte) *Request {
	params := map[string]string{}
	// ServeMux knows the wildcard names of the matched pattern only through
	// PathValue; the pattern string lists them.
	for _, seg := range strings.Split(r.Pattern, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			name := strings.TrimSuffix(strings.TrimPrefix(seg, "{"), "}")
			params[name] = r.PathValue(name)
		}
	}
	return &Request{
		Method: r.Method,
		Path:   r.URL.Path,
		Params: params,
		Query:  r.URL.Query(),
		Header: r.Header,
		Body:   body,
	}
}

type authNoteKey struct{}

// WithAuthNote returns ctx carrying note, which NoteAuthenticated calls
// with whom the request's credential proved it to be. A rate limiter in
// front of the handlers uses it to learn which bearer tokens are real
// without checking them itself.
func WithAuthNote(ctx context.Context, note func(principal string)) context.Context {
	return context.WithValue(ctx, authNoteKey{}, note)
}

// NoteAuthenticated tells whoever asked through WithAuthNote that the
// request's credential authenticated as principal (an API key's prefix,
// say); without such a listener it does nothing.
func NoteAuthenticated(ctx context.Context, principal string) {
	if note, ok := ctx.Value(authNoteKey{}).(func(string)); ok {
		note(principal)
	}
}

// HandlerTimeout bounds an HTTP function's work. A dependency that takes
// connections and never answers (a Cosmos DB or Service Bus that stopped
// responding) would otherwise hold the caller until the server's write
// timeout closed the connection with no answer at all; at the deadline
// the function's calls fail, and it answers 503 with Retry-After. It is
// below the standalone server's write timeout (60 s) and API Gateway's
// integration timeout (29 s). A few functions finish what they started
// after a failure on a context of their own, briefly (a cancel's release
// of its drone, up to 10 s more; the removal of a proof's losing blob), so
// their answer may come later than this in an outage.
const HandlerTimeout = 20 * time.Second

// Call runs an HTTP handler within HandlerTimeout, turning a panic into a
// 500 problem.
func Call(ctx context.Context, h HTTPFunc, req *Request) (resp *Response) {
	ctx, cancel := context.WithTimeout(ctx, HandlerTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			logPanic(ctx, r)
			resp = Problem(http.StatusInternalServerError, "", "internal error")
		}
	}()
	resp = h(ctx, req)
	if resp == nil {
		resp = Problem(http.StatusInternalServerError, "", "internal error")
	}
	if resp.Header == nil {
		resp.Header = http.Header{}
	}
	defaultHeaders(resp.Header)
	return resp
}

func logPanic(ctx context.Context, r any) {
	slog.ErrorContext(ctx, "handler panic", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
}

// WriteResponse writes a handler's response to w.
func WriteResponse(w http.ResponseWriter, resp *Response) {
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write(resp.Body) // the client has gone if this fails
}
