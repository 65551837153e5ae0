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
	return &Response{
		Status: status,
		Header: http.Header{"Content-Type": {"application/problem+json"}},
		Body:   b,
	}
}

// JSON builds a JSON response from v.
func JSON(status int, v any) *Response {
	b, err := json.Marshal(v)
	if err != nil {
		return Problem(http.StatusInternalServerError, "", "internal error")
	}
	return &Response{Status: status, Header: http.Header{"Content-Type": {"application/json"}}, Body: b}
}
