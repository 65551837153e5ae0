package functionapp

import (
	"encoding/json"
	"net/http"
)

// ProblemDetails is an RFC 9457 problem document. Field names the offending
// input by its JSON path, so a client can point at it.
type ProblemDetails struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Field  string `json:"field,omitempty"`
}

// Problem builds an application/problem+json response.
func Problem(status int, field, detail string) *Response {
	p := ProblemDetails{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail, Field: field}
	if field != "" && detail != "" {
		p.Detail = field + " " + detail
	}
	b, _ := json.Marshal(p) // a flat struct of strings cannot fail to encode
	resp := &Response{
		Status: status,
		Header: http.Header{"Content-Type": {"application/problem+json"}},
		Body:   b,
	}
	defaultHeaders(resp.Header)
	return resp
}

// JSON builds a JSON response from v.
func JSON(status int, v any) *Response {
	b, err := json.Marshal(v)
	if err != nil {
		return Problem(http.StatusInternalServerError, "", "internal error")
	}
	resp := &Response{Status: status, Header: http.Header{"Content-Type": {"application/json"}}, Body: b}
	defaultHeaders(resp.Header)
	return resp
}

// defaultHeaders adds what every answer of the API carries unless its
// handler said otherwise: browsers must not guess a JSON body to be HTML
// or script (nosniff), and no cache, shared or private, may keep an answer
// that holds one account's data (no-store); the few public documents that
// may be cached (the OpenAPI document, the reference page) set their own
// Cache-Control.
func defaultHeaders(h http.Header) {
	if h.Get("X-Content-Type-Options") == "" {
		h.Set("X-Content-Type-Options", "nosniff")
	}
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", "no-store")
	}
}
