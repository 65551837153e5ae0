package lambda

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/logctx"
)

// httpSide turns an HTTP API event into a net/http request for the router
// every runtime shares, so that routes, methods and path parameters come
// from function.json exactly as they do elsewhere.
type httpSide struct {
	h http.Handler
}

func newHTTPSide(reg functionapp.Registry, fns []functionapp.FunctionConfig) (*httpSide, error) {
	router, err := functionapp.NewRouter(reg, fns, functionapp.RoutePrefix)
	if err != nil {
		return nil, err
	}
	return &httpSide{h: router}, nil
}

func (h *Handler) serveHTTP(ctx context.Context, event json.RawMessage) (*events.APIGatewayV2HTTPResponse, error) {
	var e events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(event, &e); err != nil {
		return nil, fmt.Errorf("decode the HTTP API event: %w", err)
	}
	req, err := toRequest(ctx, &e)
	if err != nil {
		// A request API Gateway let through but we cannot read is the
		// client's: answer it rather than fail the invocation.
		return toResponse(functionapp.Problem(http.StatusBadRequest, "", err.Error())), nil
	}
	if id := e.RequestContext.RequestID; id != "" {
		req = req.WithContext(logctx.With(req.Context(), "apiRequestId", id))
	}
	rec := &recorder{header: http.Header{}}
	h.http.serve(rec, req)
	return rec.response(), nil
}

func (s *httpSide) serve(w http.ResponseWriter, r *http.Request) { s.h.ServeHTTP(w, r) }

// toRequest rebuilds the request API Gateway received. The payload joins a
// repeated header's values with commas and moves cookies to their own list.
func toRequest(ctx context.Context, e *events.APIGatewayV2HTTPRequest) (*http.Request, error) {
	path := e.RawPath
	// A named stage (not $default) prefixes the path it was invoked under.
	if st := e.RequestContext.Stage; st != "" && st != "$default" {
		if rest, ok := strings.CutPrefix(path, "/"+st); ok && (rest == "" || rest[0] == '/') {
			path = rest
		}
	}
	if path == "" {
		path = "/"
	}
	u := &url.URL{Path: path, RawQuery: e.RawQueryString}
	if raw, err := url.PathUnescape(path); err == nil && raw != path {
		u.Path, u.RawPath = raw, path
	}
	body := []byte(e.Body)
	if e.IsBase64Encoded {
		var err error
		if body, err = base64.StdEncoding.DecodeString(e.Body); err != nil {
			return nil, fmt.Errorf("the body is marked base64 but is not: %w", err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, e.RequestContext.HTTP.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("the request line: %w", err)
	}
	for k, v := range e.Headers {
		req.Header.Set(k, v)
	}
	if len(e.Cookies) > 0 {
		req.Header.Set("Cookie", strings.Join(e.Cookies, "; "))
	}
	req.Host = e.RequestContext.DomainName
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
	}
	req.RemoteAddr = e.RequestContext.HTTP.SourceIP
	req.RequestURI = u.RequestURI()
	req.ContentLength = int64(len(body))
	return req, nil
}

// recorder keeps what a handler writes, which Lambda returns in one piece.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) response() *events.APIGatewayV2HTTPResponse {
	status := r.status
	if status == 0 {
		status = http.StatusOK
	}
	return toResponse(&functionapp.Response{Status: status, Header: r.header, Body: r.body.Bytes()})
}

// toResponse shapes a response for payload format 2.0: one value per
// header, repeated values joined by commas, cookies in their own list, and
// a body that is not text in base64.
func toResponse(resp *functionapp.Response) *events.APIGatewayV2HTTPResponse {
	out := &events.APIGatewayV2HTTPResponse{StatusCode: resp.Status, Headers: map[string]string{}}
	if out.StatusCode == 0 {
		out.StatusCode = http.StatusOK
	}
	for k, vs := range resp.Header {
		if http.CanonicalHeaderKey(k) == "Set-Cookie" {
			out.Cookies = append(out.Cookies, vs...)
			continue
		}
		out.Headers[k] = strings.Join(vs, ", ")
	}
	if len(resp.Body) == 0 {
		return out
	}
	if isText(resp.Header.Get("Content-Type")) && utf8.Valid(resp.Body) {
		out.Body = string(resp.Body)
		return out
	}
	out.Body = base64.StdEncoding.EncodeToString(resp.Body)
	out.IsBase64Encoded = true
	return out
}

// isText reports whether API Gateway may carry a body of this type as is.
func isText(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch {
	case strings.HasPrefix(mt, "text/"),
		strings.HasSuffix(mt, "+json"), strings.HasSuffix(mt, "+xml"),
		mt == "application/json", mt == "application/xml", mt == "application/javascript",
		mt == "application/x-www-form-urlencoded", mt == "image/svg+xml":
		return true
	}
	return false
}
