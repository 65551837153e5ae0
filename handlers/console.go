package handlers

import (
	"context"
	_ "embed"
	"net/http"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

//go:embed assets/console.html
var consolePage []byte

// Console serves GET /api/console: the operator's console, a
// self-contained HTML page. It is served to anyone because it holds no
// data: the operator pastes the operator key into it, the page keeps the
// key in sessionStorage and sends it as the bearer token of the operator
// API it calls from its own origin, never in a URL.
func (h *Handlers) Console(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	return &functionapp.Response{Status: http.StatusOK, Body: consolePage, Header: http.Header{
		"Content-Type":            {"text/html; charset=utf-8"},
		"Cache-Control":           {"no-store"},
		"Content-Security-Policy": {"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"},
		"X-Frame-Options":         {"DENY"},
		"Referrer-Policy":         {"no-referrer"},
		"X-Content-Type-Options":  {"nosniff"},
	}}
}
