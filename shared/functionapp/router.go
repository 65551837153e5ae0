package functionapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/fabrikam/dronedelivery/shared/logctx"
)

// MaxBodyBytes bounds every request body; larger bodies get 413.
const MaxBodyBytes = 1 << 20

// RoutePrefix is the Functions host's default HTTP route prefix.
const RoutePrefix = "api"

// NewRouter serves every httpTrigger function of fns at its route under
// prefix, with the methods function.json allows.
func NewRouter(reg Registry, fns []FunctionConfig, prefix string) (*http.ServeMux, error) {
	mux := http.NewServeMux()
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
		methods := fc.Methods()
		if len(methods) == 0 {
			mux.Handle(pattern, serveFunc(fc.Name, h))
			continue
		}
		for _, m := range methods {
			mux.Handle(m+" "+pattern, serveFunc(fc.Name, h))
		}
	}
	return mux, nil
}

func serveFunc(name string, h HTTPFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := logctx.With(r.Context(), "function", name)
		if id := r.Header.Get("X-Azure-Functions-InvocationId"); id != "" {
			ctx = logctx.With(ctx, "invocationId", id)
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				WriteResponse(w, Problem(http.StatusRequestEntityTooLarge, "body", fmt.Sprintf("must be at most %d bytes", MaxBodyBytes)))
				return
			}
			WriteResponse(w, Problem(http.StatusBadRequest, "body", "could not be read"))
			return
		}
		WriteResponse(w, Call(ctx, h, FromHTTP(r, body)))
	})
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

// Call runs an HTTP handler, turning a panic into a 500 problem.
func Call(ctx context.Context, h HTTPFunc, req *Request) (resp *Response) {
	defer func() {
		if r := recover(); r != nil {
			slog.ErrorContext(ctx, "handler panic", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			resp = Problem(http.StatusInternalServerError, "", "internal error")
		}
	}()
	resp = h(ctx, req)
	if resp == nil {
		resp = Problem(http.StatusInternalServerError, "", "internal error")
	}
	return resp
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
