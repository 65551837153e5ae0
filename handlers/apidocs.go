package handlers

import (
	"context"
	"net/http"

	"github.com/fabrikam/dronedelivery/shared/apidoc"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

// OpenAPIDocument serves GET /api/openapi.json: the OpenAPI 3.1 document of
// the whole HTTP API, as built into this binary. Clients should revalidate
// it, since the next deployment may change it.
func (h *Handlers) OpenAPIDocument(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	return &functionapp.Response{Status: http.StatusOK, Body: apidoc.JSON(), Header: http.Header{
		"Content-Type":           {"application/json"},
		"Cache-Control":          {"no-cache"},
		"X-Content-Type-Options": {"nosniff"},
	}}
}

// APIReference serves GET /api/docs: the reference page generated from the
// OpenAPI document. It is one HTML file without scripts that loads nothing
// from elsewhere, which its Content-Security-Policy holds it to.
func (h *Handlers) APIReference(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	page, err := apidoc.Reference()
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	return &functionapp.Response{Status: http.StatusOK, Body: page, Header: http.Header{
		"Content-Type":            {"text/html; charset=utf-8"},
		"Cache-Control":           {"no-cache"},
		"Content-Security-Policy": {"default-src 'none'; style-src 'unsafe-inline'"},
		"Referrer-Policy":         {"no-referrer"},
		"X-Content-Type-Options":  {"nosniff"},
	}}
}
