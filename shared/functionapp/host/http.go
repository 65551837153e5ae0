package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

// httpData is Data.<trigger> of an HTTP invocation. Fields whose shape
// varies between host versions stay raw until decoded defensively.
type httpData struct {
	URL     string                     `json:"Url"`
	Method  string                     `json:"Method"`
	Query   json.RawMessage            `json:"Query"`
	Headers map[string]json.RawMessage `json:"Headers"`
	Params  map[string]json.RawMessage `json:"Params"`
	Body    json.RawMessage            `json:"Body"`
}

// httpOutput is an http output binding's value. The host parses statusCode
// from a string, and a body it receives as a string reaches the caller as
// is, so both are strings.
type httpOutput struct {
	StatusCode string            `json:"statusCode"`
	Body       string            `json:"body"`
	Headers    map[string]string `json:"headers"`
}

func (h *handler) invokeHTTP(w http.ResponseWriter, r *http.Request, fn *function, inv *invocation) {
	ctx := r.Context()
	raw, ok := binding(inv.Data, fn.trigger.Name)
	if !ok || isNull(raw) {
		h.malformed(w, r, fmt.Errorf("missing Data.%s", fn.trigger.Name))
		return
	}
	req, err := decodeHTTPRequest(raw)
	if err != nil {
		h.malformed(w, r, fmt.Errorf("bad Data.%s: %w", fn.trigger.Name, err))
		return
	}
	var resp *functionapp.Response
	switch {
	case len(req.Body) > functionapp.MaxBodyBytes:
		// The same answer the router gives a forwarded request.
		resp = functionapp.Problem(http.StatusRequestEntityTooLarge, "body", fmt.Sprintf("must be at most %d bytes", functionapp.MaxBodyBytes))
	case len(fn.methods) > 0 && !slices.Contains(fn.methods, req.Method):
		resp = functionapp.Problem(http.StatusMethodNotAllowed, "", "method not allowed")
		resp.Header.Set("Allow", strings.Join(fn.methods, ", "))
	default:
		resp = functionapp.Call(ctx, fn.http, req)
	}
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	line := fmt.Sprintf("%s %s answered %d", req.Method, req.Path, status)
	// A 503 is the service saying "not now" (a dependency out, readiness,
	// backpressure), whose cause the function logged itself; the host
	// would turn an error line into an Error trace for every probe.
	level := slog.LevelInfo
	switch {
	case status == http.StatusServiceUnavailable:
		level = slog.LevelWarn
	case status >= http.StatusInternalServerError:
		level = slog.LevelError
	}
	h.log.Log(ctx, level, "http invocation", "method", req.Method, "path", req.Path, "status", status)

	out := httpOutput{StatusCode: strconv.Itoa(status), Body: string(resp.Body), Headers: map[string]string{}}
	for k, vs := range resp.Header {
		// The output binding takes one string per header; a comma-joined
		// list is the HTTP equivalent of repeated fields.
		out.Headers[k] = strings.Join(vs, ", ")
	}
	rep := reply{Logs: []string{line}}
	if fn.out == "$return" {
		rep.ReturnValue = out
	} else {
		// A 4xx for the caller travels here, inside a 200: any non-2xx to
		// the host fails the invocation and the caller would see a 500.
		rep.Outputs = map[string]any{fn.out: out}
	}
	writeReply(w, rep)
}

// malformed answers an invocation the host built wrongly.
func (h *handler) malformed(w http.ResponseWriter, r *http.Request, err error) {
	h.reject(w, r, http.StatusBadRequest, err)
}

// reject fails an invocation: the host fails it on any non-2xx and records
// only that, so our log line is the one place that says why.
func (h *handler) reject(w http.ResponseWriter, r *http.Request, status int, err error) {
	h.log.ErrorContext(r.Context(), "invocation rejected", "status", status, "err", err)
	functionapp.WriteResponse(w, functionapp.Problem(status, "", err.Error()))
}

func decodeHTTPRequest(raw json.RawMessage) (*functionapp.Request, error) {
	var d httpData
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("not an HTTP request object: %w", err)
	}
	if d.Method == "" {
		return nil, errors.New("missing Method")
	}
	if !validMethod(d.Method) {
		return nil, fmt.Errorf("bad Method %.40q: want an HTTP method token", d.Method)
	}
	u, err := url.Parse(d.URL)
	if err != nil {
		return nil, fmt.Errorf("bad Url: %w", err)
	}
	if u.Path != "" && !strings.HasPrefix(u.Path, "/") {
		// The host sends the absolute URL it received; a relative one is
		// not from a host, and its path would mean something else again.
		return nil, fmt.Errorf("bad Url %.60q: want an absolute URL", d.URL)
	}
	query, err := decodeQuery(d.Query)
	if err != nil {
		return nil, fmt.Errorf("bad Query: %w", err)
	}
	// Url ends with the query string as the client sent it (the host
	// builds it from request.QueryString: azure-functions-host,
	// src/WebJobs.Script/Extensions/HttpRequestExtensions.cs,
	// GetRequestAsJObject), while Query joins a repeated key's values with
	// commas: the query string says what was sent, so a key given twice
	// is seen, and refused, as under the standalone runtime. A host that
	// leaves Query out still forwards the URL it received.
	if u.RawQuery != "" {
		if fromURL, err := url.ParseQuery(u.RawQuery); err == nil || len(query) == 0 {
			query = fromURL
		}
	}
	header := http.Header{}
	for k, raw := range d.Headers {
		vs, err := stringList(raw)
		if err != nil {
			return nil, fmt.Errorf("bad Headers.%s: %w", k, err)
		}
		for _, v := range vs {
			header.Add(k, v)
		}
	}
	params := make(map[string]string, len(d.Params))
	for k, raw := range d.Params {
		v, err := paramString(raw)
		if err != nil {
			return nil, fmt.Errorf("bad Params.%s: %w", k, err)
		}
		params[k] = v
	}
	return &functionapp.Request{
		Method: strings.ToUpper(d.Method),
		Path:   u.Path,
		Params: params,
		Query:  query,
		Header: header,
		Body:   httpBody(d.Body),
	}, nil
}

// validMethod reports whether m is an RFC 9110 token, as every method is.
func validMethod(m string) bool {
	if len(m) > 32 {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// paramString decodes a route parameter: the text the route matched, sent
// as a JSON string (a number on hosts that type constrained parameters).
// Unlike trigger metadata it is never double-encoded, so a string is taken
// as it is: a segment that itself reads as a quoted string, such as
// %22abc%22, must reach the handler as "abc" with its quotes, the value
// the forwarded route gives it, not as abc.
func paramString(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	if s, ok := jsonString(raw); ok {
		return s, nil
	}
	return scalarString(raw)
}

// decodeQuery accepts the object current hosts send and the JSON string
// older ones send; a string that is not JSON is taken for a raw query.
func decodeQuery(raw json.RawMessage) (url.Values, error) {
	q := url.Values{}
	if isNull(raw) {
		return q, nil
	}
	if s, ok := jsonString(raw); ok {
		s = strings.TrimSpace(s)
		if s == "" || s == "null" {
			return q, nil
		}
		if !strings.HasPrefix(s, "{") {
			return url.ParseQuery(strings.TrimPrefix(s, "?"))
		}
		raw = json.RawMessage(s)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("want an object or a string holding one, got %.40s", raw)
	}
	for k, v := range m {
		vs, err := stringList(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		q[k] = vs
	}
	return q, nil
}

// httpBody takes a string body as is (binary content arrives base64 and
// the handler is the one that knows it) and any other JSON value as its
// raw text, which is what the caller sent when the host parsed it for us.
func httpBody(raw json.RawMessage) []byte {
	if isNull(raw) {
		return nil
	}
	if s, ok := jsonString(raw); ok {
		return []byte(s)
	}
	return raw
}
